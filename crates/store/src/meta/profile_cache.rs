//! Profile schemas cached for ingest, so validating a batch costs no query.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use tributary_model::profile::ProfileSchema;
use tributary_model::profile::ProfileViolation;
use tributary_model::Point;
use tributary_model::TenantId;

use crate::{Device, MetaStore, StoreError};

/// Profile schemas by id; bounded by the number of profiles, dropped on change.
#[derive(Default)]
pub struct ProfileCache {
    schemas: RwLock<HashMap<String, Arc<ProfileSchema>>>,
}

impl ProfileCache {
    /// The schema of profile `id` of `tenant` (`None` if it is gone).
    pub async fn get(
        &self,
        meta: &dyn MetaStore,
        tenant: TenantId,
        id: &str,
    ) -> Result<Option<Arc<ProfileSchema>>, StoreError> {
        if let Some(s) = self.schemas.read().ok().and_then(|m| m.get(id).cloned()) {
            return Ok(Some(s));
        }
        let Some(profile) = meta.get_profile(tenant, id).await? else {
            return Ok(None);
        };
        let schema = Arc::new(profile.schema);
        if let Ok(mut m) = self.schemas.write() {
            m.insert(id.to_string(), schema.clone());
        }
        Ok(Some(schema))
    }

    /// Forgets a profile after it changed or was deleted.
    pub fn forget(&self, id: &str) {
        if let Ok(mut m) = self.schemas.write() {
            m.remove(id);
        }
    }
}

impl ProfileCache {
    /// Checks a device's batch against its profile (if it has one that still exists).
    pub async fn check(
        &self,
        meta: &dyn MetaStore,
        device: &Device,
        points: &[Point],
    ) -> Result<Result<(), ProfileViolation>, StoreError> {
        let Some(profile) = &device.profile else {
            return Ok(Ok(()));
        };
        Ok(match self.get(meta, device.tenant, profile).await? {
            Some(schema) => schema.validate(points),
            None => Ok(()),
        })
    }
}
