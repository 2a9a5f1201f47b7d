//! The `parla` command line.

use std::time::Duration;

use clap::Parser;
use parla_net::PingConfig;
use parla_net::addr::ServerAddr;
use parla_net::client::ClientConfig;

/// Parla chat client. Give the server's address (host, host:port or [v6]:port; the port
/// defaults to 8080) or type it when asked. Leave with `quit`, `/quit`, Ctrl-C or the window's
/// close button. The client pings the server's IP every few seconds and closes when it stops
/// answering. Every flag can also be set through the environment variable shown.
#[derive(Debug, Clone, Parser)]
#[command(name = "parla", version, about, long_about)]
pub struct Args {
    /// The server: host, host:port or [v6]:port (port 8080 by default). Asked for if omitted.
    #[arg(env = "PARLA_SERVER")]
    pub addr: Option<String>,
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
    /// Run in the terminal instead of opening a window.
    #[arg(long, env = "PARLA_HEADLESS")]
    pub headless: bool,
}

impl Args {
    /// The session configuration for `addr`.
    pub fn client_config(&self, addr: ServerAddr) -> ClientConfig {
        let mut config = ClientConfig::new(addr);
        config.session.password = self.password.clone();
        config.session.room = Some(self.room.clone());
        config.session.username = self
            .name
            .clone()
            .unwrap_or_else(|| std::env::var("USER").unwrap_or_else(|_| "parla".into()));
        config.ping = (!self.no_ping).then(|| PingConfig {
            interval: self.ping_interval,
            timeout: self.ping_interval.min(Duration::from_secs(2)),
            max_misses: self.ping_misses,
        });
        config
    }
}
