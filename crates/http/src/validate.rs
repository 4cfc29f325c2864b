//! Field rules shared by the resource endpoints; errors name the field.

use std::collections::BTreeMap;

use crate::problem::ApiError;

/// A non-empty, trimmed-meaningful text of at most `max` characters without control characters.
pub fn text(field: &str, value: &str, max: usize) -> Result<(), ApiError> {
    if value.trim().is_empty() {
        return Err(ApiError::validation(
            field,
            format!("{field} must not be empty"),
        ));
    }
    if value.chars().count() > max {
        return Err(ApiError::validation(
            field,
            format!("{field} must be at most {max} characters"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(ApiError::validation(
            field,
            format!("{field} must not contain control characters"),
        ));
    }
    Ok(())
}

/// A label or attribute key: 1–63 characters of letters, digits, `_ - . /`.
pub fn key(field: &str, k: &str) -> Result<(), ApiError> {
    let ok = !k.is_empty()
        && k.len() <= 63
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::validation(
            field,
            format!(
                "{field} key {:?} must be 1-63 characters of letters, digits, _ - . /",
                k.chars().take(64).collect::<String>()
            ),
        ))
    }
}

/// Labels: at most 64, valid keys, values of at most 256 characters.
pub fn labels(l: &BTreeMap<String, String>) -> Result<(), ApiError> {
    if l.len() > 64 {
        return Err(ApiError::validation("labels", "at most 64 labels"));
    }
    for (k, v) in l {
        key("labels", k)?;
        if v.chars().count() > 256 || v.chars().any(char::is_control) {
            return Err(ApiError::validation(
                "labels",
                format!(
                    "label {k:?}: value must be at most 256 characters without control characters"
                ),
            ));
        }
    }
    Ok(())
}

/// Tags: at most 64, each a valid text of at most 64 characters.
pub fn tags(t: &[String]) -> Result<(), ApiError> {
    if t.len() > 64 {
        return Err(ApiError::validation("tags", "at most 64 tags"));
    }
    for tag in t {
        text("tags", tag, 64)?;
    }
    Ok(())
}

/// An email address, loosely: something@something, at most 320 characters.
pub fn email(e: &str) -> Result<(), ApiError> {
    let ok = e.len() <= 320
        && e.split_once('@')
            .is_some_and(|(a, b)| !a.is_empty() && b.contains('.') && !b.starts_with('.'))
        && !e.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok {
        Ok(())
    } else {
        Err(ApiError::validation(
            "email",
            format!(
                "{:?} is not an email address",
                e.chars().take(64).collect::<String>()
            ),
        ))
    }
}

/// An optional description of at most 1024 characters.
pub fn description(d: Option<&str>) -> Result<(), ApiError> {
    match d {
        Some(d) if d.chars().count() > 1024 => Err(ApiError::validation(
            "description",
            "description must be at most 1024 characters",
        )),
        _ => Ok(()),
    }
}
