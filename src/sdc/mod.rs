//! Statistical disclosure control: no small count of persons leaves cruscotto, nor anything it
//! could be recomputed from. The rules are data — each saved query's metadata declares its counts
//! of persons (`persons`), the columns derived from them (`persons_derived`), the groups whose
//! totals are published (`persons_groups`) and its row key (`persons_key`) — and hold for every
//! output below analyst (public dashboard data and map layers, partner datasets in every format):
//!
//! - primary: a count in 1..k−1 (`[access] min_count`) is suppressed;
//! - secondary: a group left with a single suppressed cell gets its smallest other cell suppressed;
//! - derived: a declared column derived from a suppressed count is suppressed in that row;
//! - inherited: a saved query reading another is evaluated over that query's published version
//!   (`published`), so whatever it computes from a suppressed cell it computes from NULL.
//!
//! Suppressed cells are overwritten, not masked: the buffers under every published NULL are zero.

mod published;
mod suppress;

pub use published::{Lineage, PUBLISHED_SCHEMA, PublishError, published};
pub use suppress::{SdcError, inherit_flags, overwrite, scrub_nulls, suppress};
