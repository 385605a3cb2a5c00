//! The ferrodns node as a library: [`App`] builds a node from its
//! [`config::ServeSettings`] and runs it on [`Listeners`] until shutdown.
//! The `ferrodns` binary (`main.rs`) is the command line around it: `serve`,
//! the API client commands and `check-zone`.

pub mod app;
pub mod config;
mod control;
pub mod http;
pub mod logging;
mod metrics;
mod replication;
mod tls;
pub mod zonefiles;

pub use app::{App, Listeners};
pub use control::create_admin_offline;
