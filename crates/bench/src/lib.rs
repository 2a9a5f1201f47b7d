//! `parla-bench`: a load bench that speaks plain IRC (RFC 1459 registration, `JOIN`, `PRIVMSG`,
//! `PING`/`PONG`), so it drives any IRC server the same way: Parla, ngircd, InspIRCd.
//!
//! - [`client`]: one bench connection: a chosen 127.0.0.x source, registration, join, a line
//!   reader that hands out complete lines without copying.
//! - [`fanout`]: C members in one room, S of them sending M messages each (bounded in-flight
//!   window or fixed rate); latency from timestamps carried in the messages, loss and order.
//! - [`idle`]: N registered idle connections; the server's RSS per connection.
//! - [`churn`]: sessions that connect, register, join, speak and quit, in a loop; sessions per
//!   second and whether the server's memory returns to its baseline.
//! - [`attack`]: the room-emptying attack from the safety issue: innocents with a latency
//!   probe, many one-address attackers with one burst each; who was cut, probe latency, memory.
//! - [`procfs`]: the server's CPU seconds and RSS from `/proc/PID`.
//! - [`report`]: results as JSON lines, and the side-by-side table with Parla/peer ratios.
//!
//! The bench never touches the server's internals: it only sees what any IRC client sees, plus
//! `/proc` for the server's PID. It is bounded: every workload has a count and a timeout.

pub mod attack;
pub mod churn;
pub mod client;
pub mod fanout;
pub mod history;
pub mod idle;
pub mod procfs;
pub mod report;

pub use client::Target;
pub use report::Record;
