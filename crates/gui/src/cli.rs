//! The `parla` command line.

use std::time::Duration;

use clap::Parser;
use parla_net::PingConfig;
use parla_net::addr::{AddrError, ServerAddr};
use parla_net::client::ClientConfig;
use parla_net::tls::{Fingerprint, Trust};

/// Parla chat client. Give the server's address (host, host:port or [v6]:port; the port
/// defaults to 8080; ircs://host for TLS, port 6697 by default) or type it when asked. Leave with `quit`, `/quit`, Ctrl-C or the window's
/// close button. The client pings the server's IP every few seconds and closes when it stops
/// answering; a connection lost otherwise is made again by itself, and what was said meanwhile
/// is shown. Every flag can also be set through the environment variable shown.
#[derive(Debug, Clone, Parser)]
#[command(name = "parla", version, about, long_about)]
pub struct Args {
    /// The server: host, host:port or [v6]:port (port 8080 by default), or ircs://host[:port]
    /// for TLS (port 6697 by default). Asked for if omitted.
    #[arg(env = "PARLA_SERVER")]
    pub addr: Option<String>,
    /// Connect with TLS (port 6697 unless the address gives one), verifying the server
    /// against the system's root certificates.
    #[arg(long, env = "PARLA_TLS")]
    pub tls: bool,
    /// Trust exactly the server certificate with this SHA-256 fingerprint (a self-signed
    /// server; the fingerprint as parla-server or openssl prints it). Implies --tls.
    #[arg(long, env = "PARLA_TLS_FINGERPRINT", conflicts_with = "tls_ca")]
    pub tls_fingerprint: Option<Fingerprint>,
    /// Verify the server against the root certificates in this PEM file instead of the
    /// system's (a private certificate authority). Implies --tls.
    #[arg(long, env = "PARLA_TLS_CA")]
    pub tls_ca: Option<std::path::PathBuf>,
    /// Your name in the chat. Asked for if omitted (and again if the server refuses it).
    #[arg(long, env = "PARLA_NAME")]
    pub name: Option<String>,
    /// How often to ping the server's IP (ICMP).
    #[arg(long, env = "PARLA_PING_INTERVAL", default_value = "5s", value_parser = humantime::parse_duration)]
    pub ping_interval: Duration,
    /// Close after this many pings in a row go unanswered (1 = close at the first miss).
    #[arg(long, env = "PARLA_PING_MISSES", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub ping_misses: u32,
    /// Don't ping the server with ICMP; watch the connection with IRC PING instead.
    #[arg(long, env = "PARLA_NO_PING")]
    pub no_ping: bool,
    /// The server's password, if it has one.
    #[arg(long, env = "PARLA_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// The room to chat in.
    #[arg(long, env = "PARLA_ROOM", default_value = "#lobby")]
    pub room: String,
    /// Don't connect again by itself when the connection is lost (by default it does: after
    /// 1 s, then twice as long each failed try up to a minute; never after you quit, after
    /// the server said it is shutting down or closed the link on purpose, or after pings
    /// failed, which close the client).
    #[arg(long, env = "PARLA_NO_RECONNECT")]
    pub no_reconnect: bool,
    /// No desktop notifications from the window (by default, a mention of your name or a
    /// direct message while the window is not focused shows one).
    #[arg(long, env = "PARLA_NO_NOTIFY")]
    pub no_notify: bool,
    /// Run in the terminal instead of opening a window.
    #[arg(long, env = "PARLA_HEADLESS")]
    pub headless: bool,
}

impl Args {
    /// TLS was asked for by a flag (an `ircs://` address asks for it too).
    pub fn wants_tls(&self) -> bool {
        self.tls || self.tls_fingerprint.is_some() || self.tls_ca.is_some()
    }

    /// Reads an address as typed, with TLS if a flag asks for it.
    pub fn parse_addr(&self, text: &str) -> Result<ServerAddr, AddrError> {
        ServerAddr::parse_with(text, self.wants_tls())
    }

    /// Whom TLS connections trust.
    pub fn trust(&self) -> Trust {
        match (&self.tls_fingerprint, &self.tls_ca) {
            (Some(pin), _) => Trust::Pinned(*pin),
            (None, Some(ca)) => Trust::CaFile(ca.clone()),
            (None, None) => Trust::System,
        }
    }

    /// The session configuration for `addr`.
    pub fn client_config(&self, mut addr: ServerAddr) -> ClientConfig {
        addr.tls |= self.wants_tls();
        let mut config = ClientConfig::new(addr);
        config.trust = self.trust();
        config.session.password = self.password.clone();
        config.session.room = Some(self.room.clone());
        config.session.username = self
            .name
            .clone()
            .unwrap_or_else(|| std::env::var("USER").unwrap_or_else(|_| "parla".into()));
        if self.no_reconnect {
            config.reconnect = None;
        }
        config.ping = (!self.no_ping).then(|| PingConfig {
            interval: self.ping_interval,
            timeout: self.ping_interval.min(Duration::from_secs(2)),
            max_misses: self.ping_misses,
        });
        config
    }
}
