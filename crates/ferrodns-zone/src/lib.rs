//! The zone model: immutable zone snapshots, the master-file parser and
//! writer, load-time checks, and the in-zone lookup algorithm.
//!
//! This crate does no network I/O and knows nothing of tokio, SQL or HTTP.
//! Reading zone files from disk ([`load`], and `masterfile` for `$INCLUDE`)
//! is its only contact with the outside world.

pub mod edit;
pub mod index;
pub mod live;
pub mod load;
pub mod lookup;
pub mod masterfile;
pub mod memory;
pub mod rules;
pub mod writer;
pub mod zone;
pub mod zoneset;

pub use load::{load_zone_file, load_zone_file_as, LoadError, Loaded};
pub use lookup::{Answer, Lookup};
pub use zone::{
    name_hash, prefetch_address, Node, NodeCursor, RRset, RateLimit, Zone, ZoneAddresses, ZoneBuilder, ZoneError,
};
pub use zoneset::{SetProbe, ZoneSet};
