//! Cursor pagination shared by every list: keyset on (sort column, id), with an
//! opaque cursor that encodes the last row's sort value and id.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};

/// Column a list is sorted by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SortField {
    /// By name (or email for users).
    Name,
    /// By creation time.
    #[default]
    CreatedAt,
}

/// Sort order of a list: `name`, `-name`, `created_at`, `-created_at`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Sort {
    /// The column.
    pub field: SortField,
    /// Descending when true.
    pub desc: bool,
}

impl std::str::FromStr for Sort {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (desc, name) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let field = match name {
            "name" => SortField::Name,
            "created_at" => SortField::CreatedAt,
            other => return Err(format!("cannot sort by {other:?} (use name, created_at, or - before either for descending)")),
        };
        Ok(Sort { field, desc })
    }
}

/// Where a list starts and how long it is.
#[derive(Clone, Debug, Default)]
pub struct ListParams {
    /// Most items to return.
    pub limit: u32,
    /// Cursor from a previous page's `next_cursor`.
    pub cursor: Option<String>,
    /// Order.
    pub sort: Sort,
}

/// One page of a list.
#[derive(Clone, Debug)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; `None` on the last one.
    pub next_cursor: Option<String>,
}

/// Rows that can be paginated.
pub(crate) trait Keyed {
    fn key_id(&self) -> String;
    fn key_name(&self) -> &str;
    fn key_created_at(&self) -> i64;
}

/// What a page's `next_cursor` encodes: the sort value and id of its last item.
#[derive(Serialize, Deserialize)]
pub(crate) struct Cursor {
    pub(crate) s: serde_json::Value,
    pub(crate) i: String,
}

/// Cuts the extra row off and makes the cursor from the last item kept.
pub(crate) fn finish<T: Keyed>(mut rows: Vec<T>, params: &ListParams) -> Page<T> {
    let more = rows.len() > params.limit as usize;
    rows.truncate(params.limit as usize);
    let next_cursor = more.then(|| rows.last()).flatten().map(|last| {
        let s = match params.sort.field {
            SortField::Name => serde_json::Value::String(last.key_name().to_string()),
            SortField::CreatedAt => serde_json::Value::from(last.key_created_at()),
        };
        let json = serde_json::to_vec(&Cursor {
            s,
            i: last.key_id(),
        })
        .unwrap_or_default();
        URL_SAFE_NO_PAD.encode(json)
    });
    Page {
        items: rows,
        next_cursor,
    }
}
