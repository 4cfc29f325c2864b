//! SQLite: keyset pagination in queries (the cursor after a page's last item).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sqlx::{QueryBuilder, Sqlite};

use crate::meta::page::{Cursor, ListParams, Sort, SortField};
use crate::StoreError;

pub(crate) use crate::meta::page::finish;

fn column(sort: &Sort, name_col: &str) -> String {
    match sort.field {
        SortField::Name => name_col.to_string(),
        SortField::CreatedAt => "created_at".to_string(),
    }
}

/// Appends ` AND (col, id) > (?, ?)` for the cursor, if any.
pub(crate) fn push_keyset(
    qb: &mut QueryBuilder<'_, Sqlite>,
    params: &ListParams,
    name_col: &str,
) -> Result<(), StoreError> {
    let Some(raw) = &params.cursor else {
        return Ok(());
    };
    let invalid = || StoreError::Invalid("cursor is not one this API returned".into());
    let bytes = URL_SAFE_NO_PAD.decode(raw).map_err(|_| invalid())?;
    let cursor: Cursor = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    let op = if params.sort.desc { "<" } else { ">" };
    qb.push(format!(
        " AND ({}, id) {op} (",
        column(&params.sort, name_col)
    ));
    match (params.sort.field, cursor.s) {
        (SortField::Name, serde_json::Value::String(s)) => qb.push_bind(s),
        (SortField::CreatedAt, serde_json::Value::Number(n)) => {
            qb.push_bind(n.as_i64().ok_or_else(invalid)?)
        }
        _ => return Err(invalid()),
    };
    qb.push(", ").push_bind(cursor.i).push(")");
    Ok(())
}

/// Appends ORDER BY and LIMIT (one extra row, to know whether a next page exists).
pub(crate) fn push_order(qb: &mut QueryBuilder<'_, Sqlite>, params: &ListParams, name_col: &str) {
    let dir = if params.sort.desc { "DESC" } else { "ASC" };
    qb.push(format!(
        " ORDER BY {} {dir}, id {dir} LIMIT ",
        column(&params.sort, name_col)
    ));
    qb.push_bind(params.limit as i64 + 1);
}
