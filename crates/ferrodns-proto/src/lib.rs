//! The DNS formats ferrodns speaks, with no I/O: names, record types, RDATA in
//! presentation and wire form, query parsing and response writing, and RFC 1982
//! serials.
//!
//! Everything here is pure and synchronous so that the zone model, the answer
//! path, the fuzzers and the tests can all share it.

pub mod message;
pub mod name;
pub mod network;
pub mod rdata;
pub mod rtype;
pub mod serial;
pub mod tsig;

pub use message::{parse_query, parse_query_into, Edns, MessageWriter, Query, QueryError, Section};
pub use name::{Name, NameError};
pub use rdata::{RdataError, RdataLayout, Token};
pub use rtype::{Class, Opcode, Rcode, RecordType};
pub use serial::Serial;
