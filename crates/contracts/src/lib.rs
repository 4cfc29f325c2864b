//! The contracts of Tributary's seams for scale-out, as suites a second
//! implementation runs against itself; each panics, naming the broken rule,
//! when the implementation breaks it.
//!
//! - [`caches`]: cache invalidation ([`tributary_ingest::Invalidate`]);
//!   `tests/caches.rs` runs it against the ingest caches
//! - [`log`]: the event log ([`tributary_log::EventLog`]);
//!   `tests/log.rs` runs it against the local write-ahead log
//! - [`meta`]: the metadata store ([`tributary_store::MetaStore`]);
//!   `tests/meta.rs` runs it against SQLite
//! - [`series`]: the series store ([`tributary_store::SeriesWriter`] and
//!   [`tributary_store::SeriesReader`]); `tests/series.rs` runs it against
//!   the engine and the SQLite store
//!
//! Durability under kill -9 is checked end to end (the e2e `durability.rs`
//! and `crash_events.rs`); that connections are closed when told is the
//! end-to-end `revocation.rs`.

pub mod caches;
pub mod log;
pub mod meta;
pub mod series;
