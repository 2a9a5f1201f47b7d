//! `parla-room`: the chat core of Parla.
//!
//! Like quinn-proto, this crate is deterministic and does no I/O: no sockets, no clock, no tokio,
//! no threads. The caller feeds it events (a connection opened, a line arrived, a connection
//! closed, the time is now T) and drains the effects it decided on (send these bytes to this
//! connection, close that one), so the same inputs always give the same outputs, byte for byte.
//! The real TCP server and the turmoil simulation drive this same code.
//!
//! - [`client`]: the client's side of a connection as a state machine ([`client::Session`]),
//!   sans-IO like the server; the TCP session and the simulation drive it.
//! - [`cluster`]: many servers as one chat: the shared log's entries and the [`cluster::Replica`]
//!   that applies them.
//! - [`history`]: what the server keeps of what was said ([`history::History`]), and its
//!   in-memory backend.
//! - [`limits`]: protocol limits and fixed strings both cores share.
//! - [`message`]: the IRC message model, parser and serializer.
//! - [`names`]: nick and room name rules, case folding, glob masks.
//! - [`numerics`]: IRC numeric reply codes as named constants.
//! - [`server`]: the state machine itself ([`Server`]), with its [`Config`] and [`Output`]: one
//!   `impl Server` over child modules by concern (the command table, registration, rooms,
//!   messaging, queries, leaving, timers, replies).

pub mod client;
pub mod cluster;
pub mod history;
pub mod limits;
pub mod message;
pub mod names;
pub mod numerics;
pub mod server;
mod time;

pub use message::{Message, ParseError};
#[cfg(feature = "deliberate-bugs")]
pub use server::Bug;
pub use server::{Config, ConnId, Output, Server};
pub use time::Millis;
