//! Device attributes in the three ThingsBoard scopes.

use std::collections::BTreeMap;

use async_trait::async_trait;
use tributary_model::{AttributeChange, DeviceId, TenantId};

use crate::StoreError;

pub use tributary_model::AttributeScope;

/// One attribute value and when it was last set (ms).
#[derive(Clone, Debug, PartialEq)]
pub struct Attribute {
    /// The value (any JSON).
    pub value: serde_json::Value,
    /// Last update (ms).
    pub updated_at: i64,
}

/// Device attributes (client, shared, server scope).
#[async_trait]
pub trait AttributeStore: Send + Sync {
    /// Applies an attribute change from the event log: its sets and
    /// deletions in one transaction, stamped with the change's time. A
    /// change for a device no longer in `tenant` is passed over (false).
    /// Applying the same change again leaves the same state.
    async fn apply_attribute_change(&self, c: &AttributeChange) -> Result<bool, StoreError>;

    /// Attributes of a device by scope; `scopes`/`keys` empty mean all.
    async fn get_attributes(
        &self,
        tenant: TenantId,
        device: DeviceId,
        scopes: &[AttributeScope],
        keys: &[String],
    ) -> Result<BTreeMap<AttributeScope, BTreeMap<String, Attribute>>, StoreError>;
}
