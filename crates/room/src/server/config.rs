//! How the core behaves ([`Config`]), and the bugs a test may plant in it (`Bug`). Kept apart
//! from the state machine so that a front end reading the settings needn't read the rules.

use crate::limits::*;

/// How the core behaves. The defaults are what `parla-server` runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// The server's name, used as the source of its own messages.
    pub server_name: String,
    /// The network name advertised in `005 NETWORK=` and the welcome line.
    pub network: String,
    /// The room every user joins on registering; `None` gives plain IRC semantics.
    pub default_room: Option<String>,
    /// Message-of-the-day lines; empty sends `422`.
    pub motd: Vec<String>,
    /// The connection password (`PASS`), if the server has one.
    pub password: Option<String>,
    /// A registered connection silent this long is sent a `PING`.
    pub ping_interval_ms: u64,
    /// After a `PING`, how long the connection has to show any sign of life.
    pub ping_timeout_ms: u64,
    /// How long a new connection has to finish registering.
    pub registration_timeout_ms: u64,
    /// Longest nick, in bytes (`NICKLEN`).
    pub nick_len: usize,
    /// Longest room name, in bytes (`CHANNELLEN`).
    pub channel_len: usize,
    /// Longest topic, in bytes (`TOPICLEN`); longer topics are cut at a character boundary.
    pub topic_len: usize,
    /// How many rooms one user may be in (`CHANLIMIT`).
    pub max_rooms_per_user: usize,
    /// The software version shown in `002`/`004`/`351`.
    pub version: String,
    /// Above this many members, the default room stops broadcasting individual JOIN, PART and
    /// QUIT lines (everyone is in it, so 10,000 joins would be ~50 million lines), and a join
    /// gets only its own `JOIN`, the topic and an empty NAMES (`366`); `NAMES` still lists
    /// everyone on request, and members see a person when they speak. `None` always broadcasts.
    /// Other rooms are not affected: people join those on purpose and expect to see each other.
    pub quiet_joins_above: Option<usize>,
    /// How much a room's messages may put in each member's queue: a burst, then a rate. A
    /// message that overdraws it is still relayed, but its sender, if it already sent a room
    /// message within the last second, is paused (its next lines are not read) until the
    /// room's budget is back; so a burst from many senders at once is paced instead of filling
    /// every member's SendQ, while someone who speaks now and then is never held up. `None`:
    /// no budget.
    pub room_budget: Option<RoomBudget>,
    /// Renames a registered user may make within a window; more get `438` until the oldest
    /// of them is that old. Every rename goes to everyone who shares a room. `None`: no limit.
    pub nick_changes: Option<Window>,
    /// Topic changes one user may make (in any rooms) within a window; more get `FAIL TOPIC
    /// RATE_LIMITED`. Every change goes to the whole room. `None`: no limit.
    pub topic_changes: Option<Window>,
    /// Server operators (`OPER`): each may moderate any room, `KILL` and `WALLOPS`.
    pub operators: Vec<super::operators::Operator>,
    /// Departed users and given-up names `WHOWAS` remembers (the oldest is forgotten); 0:
    /// none.
    pub whowas_history: usize,
    /// Messages per room (and direct messages server-wide) that may still be redacted
    /// (`draft/message-redaction`); older ones get `FAIL REDACT UNKNOWN_MSGID`. 0: none.
    pub redactable: usize,
    /// A multiline message's most lines and bytes of text (`draft/multiline`; more get
    /// `FAIL BATCH MULTILINE_MAX_LINES` / `MULTILINE_MAX_BYTES`).
    pub multiline_max_lines: usize,
    pub multiline_max_bytes: usize,
    /// Messages of the default room replayed to a client that joins it without asking for
    /// `draft/chathistory` (which asks for what it wants); 0: none.
    pub history_replay: usize,
    /// Most messages one `CHATHISTORY` returns (`005 CHATHISTORY=`).
    pub chathistory_max: usize,
    /// Whether direct messages are kept in history too (for their two parties only).
    pub history_direct_messages: bool,
    /// A name's new holder reads the conversations of the one before it only if it comes from
    /// the same address within this long of that one leaving (a reconnect).
    pub history_reclaim_ms: u64,
    /// Checks a password against an operator's stored hash (argon2 in `parla-server`); the
    /// core never sees how. `None`: no `OPER` succeeds.
    pub verify_password: Option<fn(&str, &str) -> bool>,
    /// A deliberate bug to plant (tests of the simulation's checkers only).
    #[cfg(feature = "deliberate-bugs")]
    pub bug: Option<Bug>,
}

/// A room's budget (see [`Config::room_budget`]), in bytes each member is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomBudget {
    /// Bytes a room may send each member at once after a quiet spell.
    pub burst_bytes: u64,
    /// Bytes per second after that.
    pub bytes_per_second: u64,
}

impl Default for RoomBudget {
    /// 64 KiB at once, then 32 KiB/s: ~160 messages of 400 bytes at once and ~80/s after, far
    /// above any conversation, far below what fills a 512 KiB SendQ in a few seconds.
    fn default() -> Self {
        RoomBudget {
            burst_bytes: 64 * 1024,
            bytes_per_second: 32 * 1024,
        }
    }
}

/// At most `count` of something within `ms` milliseconds (a sliding window).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// How many.
    pub count: usize,
    /// Within how long.
    pub ms: u64,
}

/// Bugs the simulation's explorer must be able to find (feature `deliberate-bugs`).
#[cfg(feature = "deliberate-bugs")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bug {
    /// Name uniqueness is checked case-sensitively: `Alice` and `alice` can both be taken.
    CaseSensitiveNames,
    /// Every 5th room message is not delivered to the room's second member.
    DropForOneMember,
    /// A name stays reserved when its holder leaves any way but `QUIT` (a timeout, a dropped
    /// connection): the kind of slip a mutant makes on one path of `remove_conn`.
    NameKeptOnDisconnect,
    /// A departing user's `QUIT` is not told to the first of its peers.
    QuitUntoldToOne,
    /// A room's `PART` is not shown to the one leaving (a mutant of the recipients' filter).
    PartUnseenByLeaver,
    /// Literally the cargo-mutants mutant `messaging.rs: replace > with >=` of the relay-length
    /// check: a message whose relayed line is exactly 512 bytes is refused.
    RelayLimitOffByOne,
    /// Literally the mutant `leaving.rs: replace -= with +=` of the invisible-user count: an
    /// invisible user leaving adds one to the count `LUSERS` shows instead of removing one.
    InvisibleCountKept,
    /// Literally the mutant `timers.rs: replace Server::handle_timeout with ()`: no deadline is
    /// ever handled, so the runtime wakes the core for the same one again and again (one of the
    /// mutants that only timed out before the simulation stopped a spinning server).
    TimeoutsIgnored,
    /// `VERSION` panics halfway through its handler, after a reply was queued (tests of the
    /// server runtime's panic policy).
    PanicInHandler,
    /// In a cluster, a topic change is kept only by the server its setter is on (the others
    /// relay it but keep the old topic): a decision on what one server alone knows, the slip
    /// that makes replicas of the chat disagree.
    TopicKeptByItsServerOnly,
    /// A history page one message short: `CHATHISTORY … <limit>` gives at most `limit - 1`
    /// (the kind of slip an exclusive bound written as inclusive makes).
    HistoryPageShort,
    /// In the client core: literally the mutant `messages.rs: replace + with - in
    /// message_pieces` of the `"!"` in the relayed line's overhead: a long message is cut two
    /// bytes later than fits (missed before the conduct check derived the exact split).
    ClientSplitOffByTwo,
    /// In the client core: literally the mutant `rooms.rs: replace == with != in
    /// Session::on_part`: leaving the current room keeps it current (and leaving another room
    /// clears it).
    ClientPartKeepsRoom,
}

impl Config {
    /// What every server of a cluster must agree on, as a number: every setting that decides
    /// what happens to the shared state (names, rooms, limits, operators, history rules), not
    /// the ones that only shape this server's own lines or liveness (its name, MOTD, PING
    /// timing). Servers whose fingerprints differ would make different decisions from the same
    /// log, so a cluster refuses a server whose fingerprint is not its first server's.
    pub fn cluster_fingerprint(&self) -> u64 {
        let shared = Config {
            server_name: String::new(),
            motd: Vec::new(),
            ping_interval_ms: 0,
            ping_timeout_ms: 0,
            registration_timeout_ms: 0,
            history_replay: 0,
            chathistory_max: 0,
            // A function's address differs from process to process.
            verify_password: None,
            ..self.clone()
        };
        // FNV-1a: stable across processes and versions of Rust (unlike `DefaultHasher`).
        format!("{shared:?}")
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
            })
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            server_name: "parla.local".to_owned(),
            network: "Parla".to_owned(),
            default_room: Some("#lobby".to_owned()),
            motd: vec!["Welcome to Parla. Be kind; type /quit or quit to leave.".to_owned()],
            password: None,
            ping_interval_ms: 60_000,
            ping_timeout_ms: 30_000,
            registration_timeout_ms: 60_000,
            nick_len: NICK_LEN,
            channel_len: CHANNEL_LEN,
            topic_len: TOPIC_LEN,
            max_rooms_per_user: MAX_ROOMS_PER_USER,
            version: concat!("parla-", env!("CARGO_PKG_VERSION")).to_owned(),
            quiet_joins_above: Some(1000),
            room_budget: Some(RoomBudget::default()),
            nick_changes: Some(Window {
                count: 5,
                ms: 60_000,
            }),
            topic_changes: Some(Window {
                count: 5,
                ms: 60_000,
            }),
            operators: Vec::new(),
            whowas_history: 100,
            redactable: 256,
            multiline_max_lines: 32,
            multiline_max_bytes: 4096,
            history_replay: 50,
            chathistory_max: 100,
            history_direct_messages: true,
            history_reclaim_ms: 3600 * 1000,
            verify_password: None,
            #[cfg(feature = "deliberate-bugs")]
            bug: None,
        }
    }
}
