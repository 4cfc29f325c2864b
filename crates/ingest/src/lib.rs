//! The ingest gateway: the one path from a device-facing transport (HTTP
//! device API, MQTT device API, line protocol, WebSocket) into the event
//! log. A transport reads its wire format and answers in it; everything in
//! between is decided here, once:
//!
//! credential → device and tenant → parse → validate (limits, device
//! profile) → append to the log (durable) → the LSN to acknowledge.
//!
//! - [`gateway`]: [`Gateway`], what transports call, and where metadata
//!   changes (device and tenant lifecycle) are appended
//! - [`attributes`]: the rules attribute writes must meet
//! - [`caches`]: the caches ingest reads through, and the log consumer that
//!   invalidates them (the only place anything is forgotten)
//! - [`revocation`]: notices that make open connections check their
//!   credential at once
//! - [`series_devices`]: devices of line-protocol series keys
//! - [`error`]: [`IngestError`], why something was refused, with the
//!   reason it is counted under in `tributary_batches_rejected_total`
//!
//! The gateway has no side effects of its own beyond the append: storing,
//! live fan-out, pushing shared attributes to devices and (later) metering
//! are consumers of the log.

pub mod attributes;
pub mod caches;
pub mod error;
pub mod gateway;
pub mod revocation;
pub mod series_devices;

pub use caches::{Caches, CachesConsumer, Invalidate};
pub use error::IngestError;
pub use gateway::{Gateway, GatewayConfig};
