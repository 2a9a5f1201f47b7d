//! Protocol limits and fixed strings that the server core and the client core (and every front
//! end) share: one source of truth, so no crate repeats a server limit as a magic number.
//!
//! The numbers the server can be configured with (`Config::nick_len` and friends) default to
//! these; a client should prefer what the server advertises in `005 ISUPPORT` where it can.

pub use crate::message::{MAX_BODY_LEN, MAX_TAGS_LEN};

/// Longest nick (`NICKLEN`), the default of `Config::nick_len`.
pub const NICK_LEN: usize = 30;
/// Longest room name (`CHANNELLEN`), the default of `Config::channel_len`.
pub const CHANNEL_LEN: usize = 50;
/// Longest topic (`TOPICLEN`), the default of `Config::topic_len`.
pub const TOPIC_LEN: usize = 390;
/// Rooms one user may be in at once (`CHANLIMIT=#:20`), the default of
/// `Config::max_rooms_per_user`.
pub const MAX_ROOMS_PER_USER: usize = 20;
/// Longest away message (`AWAYLEN`).
pub const AWAY_LEN: usize = 200;
/// Longest username as the server shows it, `~` included (`USERLEN`).
pub const USER_LEN: usize = 16;
/// Longest real name kept from `USER`.
pub const REALNAME_LEN: usize = 100;
/// Targets one `PRIVMSG`/`NOTICE` may name (`MAXTARGETS`).
pub const MAX_TARGETS: usize = 4;
/// The longest host the server puts in a `nick!user@host` prefix (an IP address as text; 64
/// leaves room for any IPv6 form). Clients budget for it when splitting long messages.
pub const HOST_LEN: usize = 64;

/// Longest KICK reason (`KICKLEN`); longer ones are cut.
pub const KICK_LEN: usize = 255;
/// Bans one room may hold (`MAXLIST=b:100`).
pub const MAX_BANS: usize = 100;
/// Longest ban mask; longer ones are refused (`696`).
pub const BAN_MASK_LEN: usize = 128;
/// Longest room key (`+k`), as RFC 2812 allows.
pub const KEY_LEN: usize = 23;
/// Invitations a room remembers at once (the oldest is forgotten first).
pub const MAX_INVITES: usize = 64;

/// The capabilities Parla offers in `CAP LS`.
pub const CAPS: &[&str] = &[
    "away-notify",
    "draft/chathistory",
    "draft/read-marker",
    "draft/message-redaction",
    "draft/multiline",
    "batch",
    "echo-message",
    "extended-monitor",
    "invite-notify",
    "labeled-response",
    "message-tags",
    "multi-prefix",
    "server-time",
    "setname",
    "userhost-in-names",
];

/// What `CAP LS` offers: [`CAPS`], with `draft/multiline`'s limits as its value.
pub fn cap_ls(multiline_max_bytes: usize, multiline_max_lines: usize) -> String {
    let caps: Vec<String> = CAPS
        .iter()
        .map(|&cap| match cap {
            "draft/multiline" => format!(
                "draft/multiline=max-bytes={multiline_max_bytes},max-lines={multiline_max_lines}"
            ),
            cap => cap.to_owned(),
        })
        .collect();
    caps.join(" ")
}

/// The reason in the `ERROR` line every client gets when the server shuts down. Clients tell a
/// shutdown from any other closed link by this exact reason.
pub const SHUTDOWN_ERROR: &str = "Server shutting down";
/// The notice sent to every client just before [`SHUTDOWN_ERROR`].
pub const SHUTDOWN_NOTICE: &str = "Server is shutting down. Goodbye!";
