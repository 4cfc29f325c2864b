//! The rules an attribute write meets, whoever writes it (a device, over
//! any transport, or a user).

use std::collections::BTreeMap;

use crate::IngestError;

/// Most attributes set by one write.
pub const MAX_ATTRIBUTES: usize = 1000;
/// Largest attribute value, as JSON text (bytes).
pub const MAX_VALUE_BYTES: usize = 64 * 1024;

/// Whether `k` is a valid attribute (or label) key: 1–63 characters of
/// letters, digits, `_ - . /`.
pub fn valid_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 63
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'))
}

/// Attribute values from a payload: a JSON object, checked by [`check_values`].
pub fn parse(payload: &[u8]) -> Result<BTreeMap<String, serde_json::Value>, IngestError> {
    let values = serde_json::from_slice(payload).map_err(|e| IngestError::Malformed {
        detail: format!("expected a JSON object of attributes: {e}"),
    })?;
    check_values(&values)?;
    Ok(values)
}

/// Checks keys and values of attributes to set.
pub fn check_values(values: &BTreeMap<String, serde_json::Value>) -> Result<(), IngestError> {
    if values.is_empty() {
        return Err(IngestError::attribute("body", "no attributes to set"));
    }
    if values.len() > MAX_ATTRIBUTES {
        return Err(IngestError::attribute(
            "body",
            format!("at most {MAX_ATTRIBUTES} attributes per request"),
        ));
    }
    for (k, v) in values {
        check_key(k)?;
        if v.is_null() {
            return Err(IngestError::attribute(
                k,
                format!("attribute {k:?} is null; delete it instead"),
            ));
        }
        if v.to_string().len() > MAX_VALUE_BYTES {
            return Err(IngestError::attribute(
                k,
                format!("attribute {k:?} is larger than {MAX_VALUE_BYTES} bytes"),
            ));
        }
    }
    Ok(())
}

/// Checks one attribute key.
pub fn check_key(k: &str) -> Result<(), IngestError> {
    if valid_key(k) {
        Ok(())
    } else {
        Err(IngestError::attribute(
            "attribute",
            format!(
                "attribute key {:?} must be 1-63 characters of letters, digits, _ - . /",
                k.chars().take(64).collect::<String>()
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_payloads_are_objects_of_valid_keys_and_values() {
        assert!(parse(br#"{"fw":"1.2","n":3}"#).is_ok());
        assert!(matches!(parse(b"[1]"), Err(IngestError::Malformed { .. })));
        assert!(matches!(
            parse(b"{}"),
            Err(IngestError::InvalidAttribute { .. })
        ));
        assert!(matches!(
            parse(br#"{"a":null}"#),
            Err(IngestError::InvalidAttribute { field, .. }) if field == "a"
        ));
        assert!(matches!(
            parse(br#"{"bad key":1}"#),
            Err(IngestError::InvalidAttribute { .. })
        ));
        let big = format!(r#"{{"a":"{}"}}"#, "x".repeat(MAX_VALUE_BYTES));
        assert!(matches!(
            parse(big.as_bytes()),
            Err(IngestError::InvalidAttribute { .. })
        ));
    }
}
