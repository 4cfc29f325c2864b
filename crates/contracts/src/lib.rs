//! The contracts of Tributary's seams for scale-out, as suites a second
//! implementation runs against itself; each panics, naming the broken rule,
//! when the implementation breaks it.
//!
//! - [`series`]: the series store ([`tributary_store::SeriesWriter`] and
//!   [`tributary_store::SeriesReader`]); `tests/series.rs` runs it against
//!   the engine and the SQLite store
//!
//! The event log's contract is `crates/pipeline/tests/pipeline.rs` and the
//! kill -9 end-to-end tests; cache invalidation's is the end-to-end
//! `revocation.rs` (both need a running log, so they live with it).

pub mod series;
