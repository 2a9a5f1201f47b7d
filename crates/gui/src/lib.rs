//! `parla-gui`: the `parla` client, a desktop window (or a terminal client with `--headless`).
//!
//! - [`app`]: the window: [`ParlaApp`], its state and every way to close (`app/mod.rs`), the
//!   connect screen (`app/connect.rs`), the chat screen (`app/chat_view.rs`), and the colours
//!   and fonts (`app/theme.rs`).
//! - [`chat`]: what the chat screen shows (lines, members, status, long-input rules), no egui.
//! - [`net_thread`]: the thread that owns the tokio runtime and the session for the window.
//! - [`input`]: what a person types, as commands (`quit`, `/nick`, `/me`, `/msg`, `/join`).
//! - [`headless`]: the terminal client (`parla --headless`): reads stdin, prints the room.
//! - [`terminal`]: its input and output: a line editor on a terminal (messages printed above
//!   the line being typed), plain lines when piped.
//! - [`cli`]: the command-line flags shared by every front end.
//! - [`safe`]: received text made safe to show: IRC formatting as styles, every control
//!   character shown as a picture, never obeyed.

pub mod app;
pub mod chat;
pub mod cli;
pub mod headless;
pub mod input;
pub mod net_thread;
pub mod safe;
pub mod terminal;

pub use app::{AppConfig, ParlaApp};
