//! Why the gateway refused something.

use tributary_log::WalError;
use tributary_store::StoreError;

/// A refusal: what the transport tells the sender, in its own terms.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The access token names no device.
    #[error("unknown device access token")]
    UnknownDevice,
    /// The payload is not in a form we read (not JSON, not an object…).
    #[error("{detail}")]
    Malformed {
        /// What was wrong.
        detail: String,
    },
    /// The payload reads but breaks a rule; `field` names the key when there is one.
    #[error("{detail}")]
    Invalid {
        /// The offending key or field.
        field: Option<String>,
        /// What was wrong.
        detail: String,
    },
    /// An attribute write breaks a rule of [`crate::attributes`].
    #[error("{detail}")]
    InvalidAttribute {
        /// The offending key, or `body`.
        field: String,
        /// What was wrong.
        detail: String,
    },
    /// The points do not meet the device's profile.
    #[error("{detail}")]
    Profile {
        /// The offending key.
        field: String,
        /// What was wrong.
        detail: String,
    },
    /// The log did not take the event: nothing was stored.
    #[error("not stored: {0}")]
    NotStored(#[from] WalError),
    /// The metadata store failed.
    #[error("metadata store: {0}")]
    Store(#[from] StoreError),
    /// The credential could not be checked (the store behind it failed).
    #[error("cannot check the credential now: {0}")]
    Unavailable(String),
}

impl IngestError {
    /// The reason it is counted under in `tributary_batches_rejected_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            IngestError::UnknownDevice => "unauthorized",
            IngestError::Malformed { .. } => "malformed",
            IngestError::Invalid { .. } | IngestError::InvalidAttribute { .. } => "invalid",
            IngestError::Profile { .. } => "profile",
            IngestError::NotStored(_) | IngestError::Store(_) | IngestError::Unavailable(_) => {
                "unavailable"
            }
        }
    }

    /// An [`IngestError::InvalidAttribute`] naming `field`.
    pub fn attribute(field: impl Into<String>, detail: impl Into<String>) -> Self {
        IngestError::InvalidAttribute {
            field: field.into(),
            detail: detail.into(),
        }
    }
}

/// Counts a refusal for `reason` (the transports count what they refuse
/// before the gateway sees it, such as a body over the size limit).
pub fn count_rejected(reason: &'static str) {
    metrics::counter!("tributary_batches_rejected_total", "reason" => reason).increment(1);
}
