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
    if tributary_ingest::attributes::valid_key(k) {
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
    let ok = e.chars().count() <= 320
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

/// The OpenAPI schemas of the rules above, so that the document says what
/// they accept (a schema-valid request passes them). Used through
/// `#[schema(schema_with = …)]`.
pub mod schema {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
    use utoipa::openapi::{Object, RefOr, Schema};

    /// Characters [`super::text`] refuses (`char::is_control`).
    const CONTROL: &str = "\\u0000-\\u001f\\u007f-\\u009f";

    fn string() -> ObjectBuilder {
        ObjectBuilder::new().schema_type(Type::String)
    }

    /// A [`super::text`] of at most `max` characters: not blank, no control characters.
    pub fn text(max: usize) -> Object {
        string()
            .min_length(Some(1))
            .max_length(Some(max))
            .pattern(Some(format!("^[^{CONTROL}]*[^\\s{CONTROL}][^{CONTROL}]*$")))
            .build()
    }

    /// A name: a text of at most 128 characters.
    pub fn name() -> Object {
        text(128)
    }

    /// [`super::tags`]: at most 64 texts of at most 64 characters.
    pub fn tags() -> Schema {
        Schema::Array(
            ArrayBuilder::new()
                .items(text(64))
                .max_items(Some(64))
                .build(),
        )
    }

    /// A [`super::key`]: 1–63 letters, digits, `_ - . /`.
    pub fn key() -> Object {
        string().pattern(Some("^[A-Za-z0-9_./-]{1,63}$")).build()
    }

    /// [`super::labels`]: at most 64, keys as [`key`], values of at most 256
    /// characters without control characters.
    pub fn labels() -> Object {
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .property_names(Some(key()))
            .additional_properties(Some(RefOr::T(Schema::Object(
                string()
                    .max_length(Some(256))
                    .pattern(Some(format!("^[^{CONTROL}]*$")))
                    .build(),
            ))))
            .max_properties(Some(64))
            .build()
    }

    /// [`super::email`].
    pub fn email() -> Object {
        let ok = format!("[^@\\s{CONTROL}]");
        let any = format!("[^\\s{CONTROL}]");
        string()
            .max_length(Some(320))
            .pattern(Some(format!("^{ok}+@(?!\\.){any}*\\.{any}*$")))
            .build()
    }

    /// [`super::description`]: at most 1024 characters, or null.
    pub fn description() -> Object {
        ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::SchemaType::from_iter([
                Type::String,
                Type::Null,
            ]))
            .max_length(Some(1024))
            .build()
    }

    /// Any JSON value.
    pub fn any() -> Object {
        ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::SchemaType::AnyValue)
            .build()
    }

    /// `schema`, or null (an optional field that may also be sent as null).
    fn or_null(schema: impl Into<Schema>) -> Schema {
        Schema::OneOf(
            utoipa::openapi::schema::OneOfBuilder::new()
                .item(schema.into())
                .item(ObjectBuilder::new().schema_type(Type::Null))
                .build(),
        )
    }

    /// [`name`], or null.
    pub fn name_or_null() -> Schema {
        or_null(name())
    }

    /// [`labels`], or null.
    pub fn labels_or_null() -> Schema {
        or_null(labels())
    }

    /// [`tags`], or null.
    pub fn tags_or_null() -> Schema {
        or_null(tags())
    }

    /// A label selector: `key=value` pairs joined with `,`.
    pub fn label_selector() -> Object {
        string()
            .pattern(Some("^(,*[A-Za-z0-9_./-]{1,63}=[^,]*)*,*$"))
            .build()
    }

    /// One of `values`.
    pub fn one_of(values: &[&str]) -> Object {
        string().enum_values(Some(values.iter().copied())).build()
    }

    /// A member role.
    pub fn role() -> Object {
        one_of(&["owner", "admin", "editor", "viewer"])
    }

    /// An API key scope.
    pub fn key_scope() -> Object {
        one_of(&["read", "write", "admin"])
    }
}

/// Whole numbers in JSON bodies, also when written `4293.0` (JSON Schema's
/// `integer` allows it), for `#[serde(deserialize_with = …)]`.
pub mod whole {
    use serde::de::Error;
    use serde::{Deserialize, Deserializer};

    fn of<T: TryFrom<i64>>(n: &serde_json::Number) -> Option<T> {
        let i = n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                .map(|f| f as i64)
        })?;
        T::try_from(i).ok()
    }

    /// An optional whole number.
    pub fn option<'de, D: Deserializer<'de>, T: TryFrom<i64>>(d: D) -> Result<Option<T>, D::Error> {
        match Option::<serde_json::Number>::deserialize(d)? {
            None => Ok(None),
            Some(n) => of(&n).map(Some).ok_or_else(|| {
                D::Error::custom(format!("expected a whole number in range, got {n}"))
            }),
        }
    }

    /// A field that may be missing (outer `None`), null, or a whole number.
    pub fn double_option<'de, D: Deserializer<'de>, T: TryFrom<i64>>(
        d: D,
    ) -> Result<Option<Option<T>>, D::Error> {
        option(d).map(Some)
    }
}
