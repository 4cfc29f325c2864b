//! The live hub: clients subscribe to devices (optionally some keys) and get
//! every committed update for them. Each client has a bounded queue; when it
//! fills, updates coalesce to the latest value per key and the client is told
//! it lagged, so a slow client never slows ingestion or grows memory.

mod hub;
mod queue;

pub use hub::{Hub, HubConfig, SubscribeError, Subscription};
pub use queue::{Event, Update};
