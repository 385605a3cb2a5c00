//! Replication: how zones leave and enter this server by standard protocols.
//!
//! - [`primary::Primary`] answers the control traffic the DNS engine hands
//!   off: AXFR and IXFR (with TSIG and address access control), TSIG-signed
//!   queries, and NOTIFY (passed to the secondary role, if any).
//! - [`notify::Notifier`] announces every new serial to the configured
//!   secondaries, with retries and coalescing.
//! - [`peers::Peers`] records which serial each secondary holds, and
//!   [`drift`] (a leader duty) checks it and re-announces to laggards.
//! - [`catalog::Catalog`] keeps the RFC 9432 catalog zone of hosted zones.
//! - [`secondary::Secondary`] follows zones (and a catalog) from primaries,
//!   with [`client`] doing the SOA queries and transfers.
//!
//! This crate owns replication sockets and timers; zone data comes from the
//! served zone set (`ferrodns-zone`), older IXFR steps from a [`primary::Journal`]
//! the binary backs with the store.

pub mod acl;
pub mod catalog;
pub mod client;
pub mod clock;
pub mod drift;
pub mod exchange;
pub mod notify;
pub mod peers;
pub mod primary;
pub mod secondary;
pub mod target;
