//! `parla-net`: Parla's network edges, one layer per module.
//!
//! - [`transport`]: the [`Transport`]/[`Listener`] traits and real TCP ([`Tcp`]).
//! - [`cluster`]: the cluster's shared log ([`cluster::Log`]) and its NATS JetStream
//!   implementation ([`cluster::NatsLog`]).
//! - [`codec`]: bytes ↔ lines, with a maximum line length.
//! - [`server`]: the server runtime around the sans-IO core, in layers: accept and shutdown,
//!   the shared core and its timer, outboxes, the connection loop, flood control
//!   ([`server::run`]).
//! - [`local`]: that runtime on a loopback port in the background ([`LocalServer`]), for tests
//!   and embedding.
//! - [`client`]: the client session's async driver: one task that owns the connection and the
//!   pinger and feeds the sans-IO client core (`parla_room::client`) ([`client::connect`]).
//! - [`history`]: the core's history on disk ([`history::DiskHistory`], fjall).
//! - [`ping`]: the [`Pinger`] trait; ICMP packets, sockets, and the miss-counting watcher.
//! - [`process`]: what every binary's `main` sets up: logging, the open-files limit.
//! - [`addr`]: parsing what a person types as a server address.
//! - [`tls`]: TLS on any transport (rustls): the server's certificate and listener, the
//!   client's verification (system roots, a CA file, or a pinned fingerprint).

pub mod addr;
pub mod client;
pub mod clock;
pub mod cluster;
pub mod codec;
pub mod history;
pub mod local;
pub mod operators;
pub mod ping;
pub mod process;
pub mod server;
pub mod tls;
pub mod transport;

pub use local::LocalServer;
pub use ping::{IcmpPinger, PingConfig, Pinger};
pub use server::{ServerOptions, run};
pub use transport::{Both, Listener, Tcp, Transport};

/// An error followed by its chain of causes, separated by ": " — how Parla shows an error to a
/// person (the outermost says what failed, the innermost the operating system's reason).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
