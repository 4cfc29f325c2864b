//! The live hub: clients subscribe to devices or a whole tenant (optionally
//! some keys) and get every committed update and attribute change for them.
//! Each client has a bounded queue; when it fills, updates coalesce to the
//! latest value per key and the client is told it lagged, so a slow client
//! never slows ingestion or grows memory. A bounded ring of recent commits
//! lets reconnecting clients resume from their last sequence number.

mod hub;
mod queue;
mod ring;

pub use hub::{ConnectError, Hub, HubConfig, SubscribeError, Subscription};
pub use queue::{AttributeChange, Event, Update};

/// Which keys of a device a subscription wants (`None`: all).
pub type KeyFilter = Option<std::collections::HashSet<String>>;

/// Registers the hub's metrics so they are exported (at zero) from the start.
pub fn describe_metrics() {
    metrics::describe_gauge!("tributary_live_clients", "Connected live clients");
    metrics::describe_counter!(
        "tributary_live_updates_total",
        "Updates queued to live clients"
    );
    metrics::describe_counter!(
        "tributary_live_lagged_total",
        "Times a live client fell behind and updates coalesced"
    );
    metrics::gauge!("tributary_live_clients").set(0.0);
    metrics::counter!("tributary_live_updates_total").absolute(0);
    metrics::counter!("tributary_live_lagged_total").absolute(0);
}
