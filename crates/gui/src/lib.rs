//! `parla-gui`: the `parla` client.
//!
//! - [`input`]: what a person types, as commands (`quit`, `/nick`, `/me`, `/msg`, `/join`).
//! - [`headless`]: the terminal client (`parla --headless`): reads stdin, prints the room.
//! - [`cli`]: the command-line flags shared by every front end.

pub mod cli;
pub mod headless;
pub mod input;
