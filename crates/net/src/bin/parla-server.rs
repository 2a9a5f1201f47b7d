//! `parla-server`: the Parla chat server. Parses flags, installs logging, binds, and hands the
//! listener to [`parla_net::server::run`] with a token that Ctrl-C or SIGTERM cancels.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::sync::{Arc, Mutex};

use parla_net::cluster::{NatsLog, NatsOptions};
use parla_net::history::DiskHistory;
use parla_net::server::ClusterOptions;
use parla_net::server::{FloodControl, HistorySlot, Limits, ServerOptions, Trim};
use parla_net::tls::ServerTls;
use parla_net::{Both, Listener, Tcp, Transport};
use parla_room::history::{History, MemoryHistory, Retention};
use parla_room::server::{RoomBudget, Window};
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

/// Parla chat server: an IRC server with one shared room everybody joins.
///
/// Connect with `parla --headless HOST` or any IRC client (irssi, weechat, HexChat) on the
/// listen port. Ctrl-C (or SIGTERM) tells every client the server is shutting down and exits.
/// Every flag can also be set through the environment variable shown.
#[derive(Debug, Parser)]
#[command(version, about, long_about)]
struct Args {
    /// Address and port to listen on (plain text).
    #[arg(long, env = "PARLA_LISTEN", default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    /// Also listen for TLS connections here (IRC's convention is port 6697, e.g.
    /// 0.0.0.0:6697). Needs --tls-cert and --tls-key.
    #[arg(long, env = "PARLA_TLS_LISTEN", requires_all = ["tls_cert", "tls_key"])]
    tls_listen: Option<SocketAddr>,
    /// The TLS certificate chain (PEM, the server's own certificate first). Read again on
    /// SIGHUP, with the key: connections already up keep theirs.
    #[arg(long, env = "PARLA_TLS_CERT", requires = "tls_listen")]
    tls_cert: Option<PathBuf>,
    /// The TLS certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "PARLA_TLS_KEY", requires = "tls_listen")]
    tls_key: Option<PathBuf>,
    /// Serve TLS only: no plain-text port (--listen is ignored).
    #[arg(long, env = "PARLA_TLS_ONLY", requires = "tls_listen")]
    tls_only: bool,
    /// The shared room every user joins on connecting.
    #[arg(long, env = "PARLA_ROOM", default_value = "#lobby")]
    room: String,
    /// Don't put users in a shared room (plain IRC: they JOIN rooms themselves).
    #[arg(long, env = "PARLA_NO_DEFAULT_ROOM")]
    no_default_room: bool,
    /// The server's name, shown as the source of its messages.
    #[arg(long, env = "PARLA_SERVER_NAME", default_value = "parla.local")]
    server_name: String,
    /// The network name shown to IRC clients.
    #[arg(long, env = "PARLA_NETWORK", default_value = "Parla")]
    network: String,
    /// Message of the day; `\n` separates lines. An empty string sends none.
    #[arg(long, env = "PARLA_MOTD", conflicts_with = "motd_file")]
    motd: Option<String>,
    /// Read the message of the day from this file.
    #[arg(long, env = "PARLA_MOTD_FILE")]
    motd_file: Option<PathBuf>,
    /// Require this password (IRC `PASS`) from clients.
    #[arg(long, env = "PARLA_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// Most clients connected at once; more are told the server is full.
    #[arg(long, env = "PARLA_MAX_CLIENTS", default_value_t = 10_000)]
    max_clients: usize,
    /// Send a PING to a client silent for this long.
    #[arg(long, env = "PARLA_PING_INTERVAL", default_value = "60s", value_parser = humantime::parse_duration)]
    ping_interval: Duration,
    /// Disconnect a pinged client that stays silent this long ("Ping timeout").
    #[arg(long, env = "PARLA_PING_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    ping_timeout: Duration,
    /// Disconnect a connection that has not registered (NICK + USER) within this time.
    #[arg(long, env = "PARLA_REGISTRATION_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    registration_timeout: Duration,
    /// Bytes that may wait for one slow client before it is disconnected ("SendQ exceeded").
    #[arg(long, env = "PARLA_SENDQ_BYTES", default_value_t = 512 * 1024)]
    sendq_bytes: usize,
    /// Lines a client may send in a burst before flood control slows it down.
    #[arg(long, env = "PARLA_FLOOD_BURST", default_value_t = 20)]
    flood_burst: u32,
    /// Lines per second a client may send after its burst.
    #[arg(long, env = "PARLA_FLOOD_RATE", default_value_t = 5.0)]
    flood_rate: f64,
    /// Turn input flood control off (for benchmarks and trusted networks).
    #[arg(long, env = "PARLA_NO_FLOOD_CONTROL")]
    no_flood_control: bool,
    /// Bytes of room messages a room may send each member at once (its burst); a message
    /// that overdraws it is relayed and its sender paused until the room's budget is back.
    #[arg(long, env = "PARLA_ROOM_BURST_BYTES", default_value_t = 64 * 1024)]
    room_burst_bytes: u64,
    /// Bytes per second a room's budget refills (0 = no room budget).
    #[arg(long, env = "PARLA_ROOM_BYTES_PER_SECOND", default_value_t = 32 * 1024)]
    room_bytes_per_second: u64,
    /// Renames a user may make within --nick-window (0 = no limit); more get 438.
    #[arg(long, env = "PARLA_NICK_CHANGES", default_value_t = 5)]
    nick_changes: usize,
    /// The window for --nick-changes.
    #[arg(long, env = "PARLA_NICK_WINDOW", default_value = "60s", value_parser = humantime::parse_duration)]
    nick_window: Duration,
    /// Topic changes a user may make within --topic-window (0 = no limit); more get
    /// FAIL TOPIC RATE_LIMITED.
    #[arg(long, env = "PARLA_TOPIC_CHANGES", default_value_t = 5)]
    topic_changes: usize,
    /// The server operators file: one `<name> <argon2 hash>` per line (hashes made by
    /// `parla-server hash-password`). Operators (`OPER name password`) moderate any room, and
    /// may KILL and WALLOPS.
    #[arg(long, env = "PARLA_OPERATORS")]
    operators: Option<PathBuf>,
    /// Departed users and given-up names WHOWAS remembers (the oldest is forgotten; 0 = none).
    #[arg(long, env = "PARLA_WHOWAS_HISTORY", default_value_t = 100)]
    whowas_history: usize,
    /// Recent messages per room (and direct messages server-wide) that REDACT can still remove
    /// (draft/message-redaction); older ones are refused with FAIL REDACT UNKNOWN_MSGID (0 = none).
    #[arg(long, env = "PARLA_REDACTABLE_MESSAGES", default_value_t = 256)]
    redactable_messages: usize,
    /// Most lines of one multiline message (draft/multiline; more are refused with
    /// FAIL BATCH MULTILINE_MAX_LINES).
    #[arg(long, env = "PARLA_MULTILINE_MAX_LINES", default_value_t = 32)]
    multiline_max_lines: usize,
    /// Most bytes of text of one multiline message (more are refused with
    /// FAIL BATCH MULTILINE_MAX_BYTES).
    #[arg(long, env = "PARLA_MULTILINE_MAX_BYTES", default_value_t = 4096)]
    multiline_max_bytes: usize,
    /// The window for --topic-changes.
    #[arg(long, env = "PARLA_TOPIC_WINDOW", default_value = "60s", value_parser = humantime::parse_duration)]
    topic_window: Duration,
    /// Bytes of replies that cost a client one line of flood credit (a WHO of a big room costs
    /// more than a PING).
    #[arg(long, env = "PARLA_REPLY_BYTES_PER_LINE", default_value_t = 8192, value_parser = clap::value_parser!(u64).range(1..))]
    reply_bytes_per_line: u64,
    /// Connections at once from one address (an IPv4 address or an IPv6 /64); 0 = no limit.
    #[arg(long, env = "PARLA_MAX_PER_IP", default_value_t = 16)]
    max_per_ip: usize,
    /// New connections one address may open at once before --connects-per-minute applies.
    #[arg(long, env = "PARLA_CONNECT_BURST", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..))]
    connect_burst: u32,
    /// New connections per minute one address may open after its burst; 0 = no limit.
    #[arg(long, env = "PARLA_CONNECTS_PER_MINUTE", default_value_t = 10.0)]
    connects_per_minute: f64,
    /// Connections still registering (no NICK and USER yet), server-wide; 0 = no limit.
    #[arg(long, env = "PARLA_MAX_UNREGISTERED", default_value_t = 1000)]
    max_unregistered: usize,
    /// Address ranges exempt from the per-address limits, each connection with flood credit
    /// of its own (e.g. a school behind NAT: --trusted 10.0.0.0/8). Repeat or separate with
    /// commas.
    #[arg(long, env = "PARLA_TRUSTED", value_delimiter = ',')]
    trusted: Vec<ipnet::IpNet>,
    /// How much of an IPv6 address counts as one address for the per-address limits.
    #[arg(long, env = "PARLA_IPV6_PREFIX", default_value_t = 64, value_parser = clap::value_parser!(u8).range(1..=128))]
    ipv6_prefix: u8,
    /// Above this many members the default room stops broadcasting individual joins, parts
    /// and quits, and sends no member list on join (NAMES still lists everyone). 0 = never.
    #[arg(long, env = "PARLA_QUIET_JOINS_ABOVE", default_value_t = 1000)]
    quiet_joins_above: usize,
    /// How long queued messages may take to reach clients at shutdown.
    #[arg(long, env = "PARLA_SHUTDOWN_GRACE", default_value = "5s", value_parser = humantime::parse_duration)]
    shutdown_grace: Duration,
    /// How often to look at the memory the allocator holds free and give it back to the
    /// system (after many clients left); 0s = never.
    #[arg(long, env = "PARLA_TRIM_MEMORY_EVERY", default_value = "10s", value_parser = humantime::parse_duration)]
    trim_memory_every: Duration,
    /// Give freed memory back only once at least this many more bytes are free.
    #[arg(long, env = "PARLA_TRIM_MEMORY_ABOVE", default_value_t = 64 * 1024)]
    trim_memory_above: usize,
    /// Where history (what was said, read markers) is kept: `disk` (under --data-dir, survives
    /// restarts), `memory` (until the server stops), or `off` (nothing is kept).
    #[arg(long, env = "PARLA_HISTORY", value_enum, default_value = "disk")]
    history: HistoryKind,
    /// The directory history is kept in (created if missing); one server per directory.
    /// Default: $XDG_DATA_HOME/parla, else ~/.local/share/parla.
    #[arg(long, env = "PARLA_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Messages older than this are deleted and no longer given back (0s = kept for ever).
    #[arg(long, env = "PARLA_HISTORY_MAX_AGE", default_value = "30days", value_parser = humantime::parse_duration)]
    history_max_age: Duration,
    /// Most messages kept per room or conversation; the oldest go first (0 = no limit).
    #[arg(long, env = "PARLA_HISTORY_MAX_MESSAGES", default_value_t = 100_000)]
    history_max_messages: usize,
    /// How often history is synced to disk (fsync): at most this much of it can be lost if the
    /// machine crashes or loses power (0s = when the operating system decides). Every message is
    /// written to the operating system before it is delivered, so a crash of the server alone
    /// (kill -9 included) loses nothing.
    #[arg(long, env = "PARLA_HISTORY_SYNC_EVERY", default_value = "1s", value_parser = humantime::parse_duration)]
    history_sync_every: Duration,
    /// Messages of the default room replayed to a client that joins it without asking for
    /// draft/chathistory (0 = none).
    #[arg(long, env = "PARLA_HISTORY_REPLAY", default_value_t = 50)]
    history_replay: usize,
    /// Most messages one CHATHISTORY request returns.
    #[arg(long, env = "PARLA_CHATHISTORY_MAX", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    chathistory_max: u64,
    /// Don't keep direct messages in history (rooms only).
    #[arg(long, env = "PARLA_NO_DIRECT_MESSAGE_HISTORY")]
    no_direct_message_history: bool,
    /// A name's next holder may read its earlier conversations only if it connects from the
    /// same address within this long of the last holder leaving (a reconnect).
    #[arg(long, env = "PARLA_HISTORY_RECLAIM", default_value = "1h", value_parser = humantime::parse_duration)]
    history_reclaim: Duration,
    /// Run as one server of a cluster whose shared log is this NATS server (JetStream on),
    /// e.g. nats://127.0.0.1:4222: every server given the same NATS is the same chat. All of a
    /// cluster's servers must run with the same chat flags (room, limits, history).
    #[arg(long, env = "PARLA_CLUSTER", value_name = "NATS_URL")]
    cluster: Option<String>,
    /// This server's name in the cluster (shown when its users quit because it stopped);
    /// default: --server-name and the --listen port.
    #[arg(long, env = "PARLA_CLUSTER_NAME", requires = "cluster")]
    cluster_name: Option<String>,
    /// A NATS credentials file (.creds: JWT and nkey seed) to authenticate with.
    #[arg(long, env = "PARLA_CLUSTER_CREDS", requires = "cluster")]
    cluster_creds: Option<PathBuf>,
    /// A CA certificate (PEM) NATS's TLS certificate must chain to; TLS is then required.
    #[arg(long, env = "PARLA_CLUSTER_TLS_CA", requires = "cluster")]
    cluster_tls_ca: Option<PathBuf>,
    /// A client certificate (PEM) for NATS, if it asks for one (with --cluster-tls-key).
    #[arg(long, env = "PARLA_CLUSTER_TLS_CERT", requires_all = ["cluster", "cluster_tls_key"])]
    cluster_tls_cert: Option<PathBuf>,
    /// The key of --cluster-tls-cert.
    #[arg(long, env = "PARLA_CLUSTER_TLS_KEY", requires = "cluster_tls_cert")]
    cluster_tls_key: Option<PathBuf>,
    /// The JetStream stream that is the cluster's log (one per cluster).
    #[arg(
        long,
        env = "PARLA_CLUSTER_STREAM",
        default_value = "PARLA",
        requires = "cluster"
    )]
    cluster_stream: String,
    /// How often this server tells the cluster it is alive. A server silent for three of
    /// another's beats is gone: its users quit everywhere and their names are free.
    #[arg(long, env = "PARLA_CLUSTER_BEAT", default_value = "5s", value_parser = humantime::parse_duration, requires = "cluster")]
    cluster_beat: Duration,
    /// Take a snapshot of the chat every this many inputs in the cluster's log (lines,
    /// connections, departures; one server does), so that a starting server loads it and
    /// replays only what came after; 0 = never (the log is then kept whole and replayed at
    /// every start).
    #[arg(
        long,
        env = "PARLA_CLUSTER_SNAPSHOT_EVERY",
        default_value_t = 100_000,
        requires = "cluster"
    )]
    cluster_snapshot_every: u64,
    /// Snapshots kept in NATS; the log keeps only the entries after the oldest of them.
    #[arg(long, env = "PARLA_CLUSTER_SNAPSHOTS_KEPT", default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=100), requires = "cluster")]
    cluster_snapshots_kept: u64,
    #[command(subcommand)]
    command: Option<Command>,
}

/// `--history`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum HistoryKind {
    Disk,
    Memory,
    Off,
}

/// `--data-dir`'s default: the XDG data directory.
fn default_data_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join("parla"));
    }
    match std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".local/share/parla")),
        None => anyhow::bail!(
            "no directory for history: neither XDG_DATA_HOME nor HOME is set; give one with --data-dir, or run with --history memory"
        ),
    }
}

/// Helpers that do something else than serve.
#[derive(Debug, Subcommand)]
enum Command {
    /// Make a throw-away self-signed TLS certificate and key for trying TLS (clients must pin
    /// it: its fingerprint is printed), then exit.
    SelfSigned {
        /// Where to write the certificate (PEM).
        #[arg(long, default_value = "parla-cert.pem")]
        cert: PathBuf,
        /// Where to write the private key (PEM, readable by you only).
        #[arg(long, default_value = "parla-key.pem")]
        key: PathBuf,
        /// Host names and IP addresses the certificate names.
        #[arg(long = "name", default_values = ["localhost", "127.0.0.1", "::1"])]
        names: Vec<String>,
    },
    /// Read a password from standard input and print its argon2 hash, for a line of the
    /// operators file (`<name> <hash>`).
    HashPassword,
}

fn main() -> anyhow::Result<()> {
    without_thread_caches();
    one_malloc_arena();
    let args = Args::parse();
    match &args.command {
        Some(Command::SelfSigned { cert, key, names }) => {
            return self_signed(cert, key, names.clone());
        }
        Some(Command::HashPassword) => return hash_password(),
        None => {}
    }
    // The store's own chatter (recovering each keyspace, every flush) only when asked for.
    parla_net::process::init_logging("info,fjall=warn,lsm_tree=warn");
    parla_net::process::raise_fd_limit(None);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(serve(args))
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let motd = match (&args.motd, &args.motd_file) {
        (_, Some(path)) => std::fs::read_to_string(path)
            .with_context(|| {
                format!(
                    "could not read the MOTD file {}; check the path given to --motd-file",
                    path.display()
                )
            })?
            .lines()
            .map(str::to_owned)
            .collect(),
        (Some(text), None) => text
            .split("\\n")
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect(),
        (None, None) => parla_room::Config::default().motd,
    };
    if !parla_room::names::is_valid_channel(&args.room, 50) {
        anyhow::bail!(
            "--room {:?} is not a valid room name: it must start with # and have no spaces or commas",
            args.room
        );
    }
    let core = parla_room::Config {
        server_name: args.server_name,
        network: args.network,
        default_room: (!args.no_default_room).then_some(args.room),
        motd,
        password: args.password,
        ping_interval_ms: args.ping_interval.as_millis() as u64,
        ping_timeout_ms: args.ping_timeout.as_millis() as u64,
        registration_timeout_ms: args.registration_timeout.as_millis() as u64,
        quiet_joins_above: (args.quiet_joins_above > 0).then_some(args.quiet_joins_above),
        room_budget: (args.room_bytes_per_second > 0).then_some(RoomBudget {
            burst_bytes: args.room_burst_bytes,
            bytes_per_second: args.room_bytes_per_second,
        }),
        nick_changes: (args.nick_changes > 0).then_some(Window {
            count: args.nick_changes,
            ms: args.nick_window.as_millis() as u64,
        }),
        topic_changes: (args.topic_changes > 0).then_some(Window {
            count: args.topic_changes,
            ms: args.topic_window.as_millis() as u64,
        }),
        operators: match &args.operators {
            Some(path) => parla_net::operators::load(path)?,
            None => Vec::new(),
        },
        verify_password: Some(parla_net::operators::verify),
        whowas_history: args.whowas_history,
        redactable: args.redactable_messages,
        multiline_max_lines: args.multiline_max_lines,
        multiline_max_bytes: args.multiline_max_bytes,
        history_replay: if args.history == HistoryKind::Off {
            0
        } else {
            args.history_replay
        },
        chathistory_max: args.chathistory_max as usize,
        history_direct_messages: !args.no_direct_message_history,
        history_reclaim_ms: args.history_reclaim.as_millis() as u64,
        ..parla_room::Config::default()
    };
    let retention = Retention {
        max_age_ms: (!args.history_max_age.is_zero())
            .then_some(args.history_max_age.as_millis() as u64),
        max_per_target: (args.history_max_messages > 0).then_some(args.history_max_messages),
    };
    let history: Arc<Mutex<dyn History>> = match args.history {
        // In a cluster every server rebuilds history from the cluster's log, which JetStream
        // keeps on disk.
        HistoryKind::Disk if args.cluster.is_some() => {
            info!("in a cluster, history is rebuilt from the cluster's log (kept by JetStream)");
            Arc::new(Mutex::new(MemoryHistory::new(retention)))
        }
        HistoryKind::Disk => {
            let dir = match &args.data_dir {
                Some(dir) => dir.clone(),
                None => default_data_dir()?,
            };
            let sync = (!args.history_sync_every.is_zero()).then_some(args.history_sync_every);
            Arc::new(Mutex::new(DiskHistory::open(&dir, retention, sync)?))
        }
        HistoryKind::Memory => Arc::new(Mutex::new(MemoryHistory::new(retention))),
        HistoryKind::Off => Arc::new(Mutex::new(MemoryHistory::new(Retention {
            max_age_ms: None,
            max_per_target: Some(0),
        }))),
    };
    let cluster = match &args.cluster {
        None => None,
        Some(url) => {
            let name = (args.cluster_name.clone())
                .unwrap_or_else(|| format!("{}:{}", core.server_name, args.listen.port()));
            let log = NatsLog::connect(&NatsOptions {
                url: url.clone(),
                creds: args.cluster_creds.clone(),
                tls_ca: args.cluster_tls_ca.clone(),
                tls_cert: (args.cluster_tls_cert.clone()).zip(args.cluster_tls_key.clone()),
                stream: args.cluster_stream.clone(),
                client_name: name.clone(),
            })
            .await?;
            let mut nonce = [0u8; 8];
            ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce)
                .map_err(|_| anyhow::anyhow!("the system's random number generator failed"))?;
            Some(ClusterOptions {
                log: Arc::new(log),
                name,
                beat: args.cluster_beat,
                snapshot_every: args.cluster_snapshot_every,
                snapshots_kept: args.cluster_snapshots_kept as usize,
                nonce: u64::from_le_bytes(nonce),
                refused: Default::default(),
            })
        }
    };
    let options = ServerOptions {
        core,
        cluster,
        max_clients: args.max_clients,
        sendq_bytes: args.sendq_bytes,
        flood: (!args.no_flood_control).then_some(FloodControl {
            burst: args.flood_burst,
            per_second: args.flood_rate,
        }),
        limits: Limits {
            per_ip: args.max_per_ip,
            connects: (args.connects_per_minute > 0.0).then_some(FloodControl {
                burst: args.connect_burst,
                per_second: args.connects_per_minute / 60.0,
            }),
            max_unregistered: args.max_unregistered,
            trusted: args.trusted.clone(),
            ipv6_prefix: args.ipv6_prefix,
        },
        reply_bytes_per_token: args.reply_bytes_per_line as usize,
        shutdown_grace: args.shutdown_grace,
        trim: (!args.trim_memory_every.is_zero()).then_some(Trim {
            every: args.trim_memory_every,
            min_free: args.trim_memory_above,
        }),
        history: HistorySlot(Some(history)),
        epoch_millis: SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)?
            .as_millis() as u64,
        ..ServerOptions::default()
    };
    let bind = |addr: SocketAddr, flag: &'static str| async move {
        Tcp.bind(addr).await.with_context(|| {
            format!(
                "could not listen on {addr}; is another server using that port? Pick another with {flag} (e.g. {flag} 0.0.0.0:{})",
                addr.port().wrapping_add(1).max(1)
            )
        })
    };
    let tls = match (&args.tls_listen, &args.tls_cert, &args.tls_key) {
        (Some(addr), Some(cert), Some(key)) => Some((ServerTls::load(cert, key)?, *addr)),
        _ => None,
    };
    let refused = (options.cluster.as_ref()).map(|c| c.refused.clone());
    // Handlers are installed before serving, so a Ctrl-C at any moment shuts down cleanly.
    let signals = Signals::install()?;
    let shutdown = CancellationToken::new();
    tokio::spawn(signals.cancel_on_signal(shutdown.clone()));
    match tls {
        None => parla_net::run(bind(args.listen, "--listen").await?, options, shutdown).await,
        Some((tls, addr)) => {
            let secure = tls.listener(bind(addr, "--tls-listen").await?);
            let bound = secure.local_addr()?;
            info!(addr = %bound, fingerprint = %tls.fingerprint(), "listening for TLS");
            tokio::spawn(reload_on_sighup(tls)?);
            if args.tls_only {
                parla_net::run(secure, options, shutdown).await;
            } else {
                let plain = bind(args.listen, "--listen").await?;
                parla_net::run(Both::new(plain, secure), options, shutdown).await;
            }
        }
    }
    if let Some(why) = refused.as_ref().and_then(|r| r.get()) {
        anyhow::bail!("{why}");
    }
    Ok(())
}

/// Reads the certificate and key again on every SIGHUP; a bad file is logged and the
/// certificate in use stays.
fn reload_on_sighup(tls: ServerTls) -> anyhow::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = signal(SignalKind::hangup()).context("could not install the SIGHUP handler")?;
    Ok(async move {
        while hup.recv().await.is_some() {
            match tls.reload() {
                Ok(fingerprint) => info!(%fingerprint, "SIGHUP: TLS certificate reloaded"),
                Err(err) => {
                    error!(cause = %err, "SIGHUP: TLS certificate not reloaded; the old one stays in use")
                }
            }
        }
    })
}

/// `parla-server self-signed`.
/// `parla-server hash-password`: reads a password (one line; not echoed on a terminal) and
/// prints its argon2 hash for the operators file.
fn hash_password() -> anyhow::Result<()> {
    use std::io::{BufRead, IsTerminal, Write};
    let stdin = std::io::stdin();
    let terminal = stdin.is_terminal();
    let saved = if terminal {
        eprint!("Password (not shown): ");
        std::io::stderr().flush()?;
        let saved = nix::sys::termios::tcgetattr(&stdin)?;
        let mut quiet = saved.clone();
        quiet
            .local_flags
            .remove(nix::sys::termios::LocalFlags::ECHO);
        nix::sys::termios::tcsetattr(&stdin, nix::sys::termios::SetArg::TCSANOW, &quiet)?;
        Some(saved)
    } else {
        None
    };
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    if let Some(saved) = saved {
        nix::sys::termios::tcsetattr(&stdin, nix::sys::termios::SetArg::TCSANOW, &saved)?;
        eprintln!();
    }
    read.context("could not read the password from standard input")?;
    let password = line.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        anyhow::bail!("the password is empty: type one (or pipe it in), then Enter");
    }
    println!("{}", parla_net::operators::hash(password));
    Ok(())
}

fn self_signed(
    cert: &std::path::Path,
    key: &std::path::Path,
    names: Vec<String>,
) -> anyhow::Result<()> {
    let (cert_pem, key_pem) = parla_net::tls::self_signed(names.clone())
        .map_err(|e| anyhow::anyhow!("could not make a certificate for {names:?}: {e}"))?;
    parla_net::tls::write_pem(cert, &cert_pem, false)
        .with_context(|| format!("could not write {}", cert.display()))?;
    parla_net::tls::write_pem(key, &key_pem, true)
        .with_context(|| format!("could not write {}", key.display()))?;
    let tls = ServerTls::load(cert, key)?;
    println!(
        "Wrote a self-signed certificate for {} to {} and its key to {}.\n\
         Serve with: parla-server --tls-listen 0.0.0.0:6697 --tls-cert {} --tls-key {}\n\
         Clients must pin it: parla --tls-fingerprint {} ircs://localhost:6697",
        names.join(", "),
        cert.display(),
        key.display(),
        cert.display(),
        key.display(),
        tls.fingerprint()
    );
    Ok(())
}

/// SIGINT and SIGTERM, registered with the kernel as soon as they exist.
struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            int: signal(SignalKind::interrupt()).context("could not install the Ctrl-C handler")?,
            term: signal(SignalKind::terminate())
                .context("could not install the SIGTERM handler")?,
        })
    }

    async fn cancel_on_signal(mut self, token: CancellationToken) {
        let name = tokio::select! {
            _ = self.int.recv() => "SIGINT",
            _ = self.term.recv() => "SIGTERM",
        };
        info!(signal = name, "shutdown requested");
        token.cancel();
    }
}

/// glibc keeps up to seven freed blocks of each small size per thread (its tcache) to hand
/// out again without a lock. Those blocks count as in use, are never given back by
/// `malloc_trim`, and sit wherever they were allocated: after the attack of 200 connections
/// (docs/benchmarks.md, attack-200x20) they were ~300 KB of a heap whose live data was back at
/// its pre-attack 0.21 MB, and they pinned the pages around them (RSS +20–25% a minute later;
/// without them +9%). Turning them off measured no cost (fan-out 1000×10 and churn as fast or
/// faster; churn's RSS growth 7% → 1%). glibc reads the setting only when a program starts, so
/// the server starts itself again, once, with `GLIBC_TUNABLES` saying so (same PID, same
/// arguments), unless `GLIBC_TUNABLES` is already set (set it, even empty, to keep glibc's
/// defaults). Runs first of all, before any thread or file exists.
fn without_thread_caches() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("GLIBC_TUNABLES").is_none()
        && let Ok(exe) = std::env::current_exe()
    {
        use std::os::unix::process::CommandExt;
        let mut args = std::env::args_os();
        let mut command = std::process::Command::new(exe);
        if let Some(arg0) = args.next() {
            command.arg0(arg0);
        }
        let error = command
            .args(args)
            .env("GLIBC_TUNABLES", "glibc.malloc.tcache_count=0")
            .exec();
        // exec returns only if it failed: carry on as we are, with the caches.
        eprintln!(
            "note: could not restart without glibc's thread caches ({error}); memory freed after an attack may stay resident"
        );
    }
}

/// glibc gives each thread that allocates its own malloc arena; memory freed by another thread
/// returns to the arena it came from, and each arena keeps its own free pages. With lines
/// allocated on one worker and freed on another, that fragmentation cost ~30% more resident
/// memory per idle connection (docs/benchmarks.md: 2,352 against 1,795 bytes at 10,000
/// connections) and no measurable CPU: the per-thread caches in front of the arena take the
/// hot path. One arena, unless `MALLOC_ARENA_MAX` says otherwise. Runs before any thread.
fn one_malloc_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets an allocator parameter; it is called before any other
        // thread exists.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 1);
        }
    }
}
