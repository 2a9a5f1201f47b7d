//! What a person types as a server address: `host`, `host:port`, `[v6]:port`, or a bare IPv6;
//! `ircs://` in front (or the clients' `--tls`) means TLS, on port 6697 unless one is given.

use std::fmt;
use std::str::FromStr;

/// The port Parla listens on unless told otherwise (the original design's).
pub const DEFAULT_PORT: u16 = 8080;
/// The port TLS connections go to unless told otherwise (IRC's convention).
pub const DEFAULT_TLS_PORT: u16 = 6697;

/// A server to connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerAddr {
    /// A name or an IP address (IPv6 without brackets).
    pub host: String,
    /// The TCP port.
    pub port: u16,
    /// Speak TLS (`ircs://`).
    pub tls: bool,
}

/// Why an address could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddrError {
    /// Nothing was typed.
    #[error(
        "no server address given; type a host name or IP, optionally with :port (default {DEFAULT_PORT})"
    )]
    Empty,
    /// The part after the last `:` is not a port number.
    #[error(
        "{port:?} is not a port number; use a number from 1 to 65535, e.g. localhost:{DEFAULT_PORT}"
    )]
    BadPort { port: String },
    /// A `[` without its `]`.
    #[error(
        "{input:?} opens an IPv6 bracket but does not close it; write it like [::1]:{DEFAULT_PORT}"
    )]
    Unclosed { input: String },
}

impl FromStr for ServerAddr {
    type Err = AddrError;

    fn from_str(input: &str) -> Result<Self, AddrError> {
        ServerAddr::parse_with(input, false)
    }
}

impl ServerAddr {
    /// A plain-text address.
    pub fn plain(host: impl Into<String>, port: u16) -> ServerAddr {
        ServerAddr {
            host: host.into(),
            port,
            tls: false,
        }
    }

    /// Parses what a person typed; `tls` (a `--tls` flag) asks for TLS even without
    /// `ircs://`. A path after the address (`ircs://host/#room`) is ignored.
    pub fn parse_with(input: &str, tls: bool) -> Result<Self, AddrError> {
        let s = input.trim();
        let scheme = |prefix: &str| {
            s.get(..prefix.len())
                .filter(|p| p.eq_ignore_ascii_case(prefix))
                .map(|_| &s[prefix.len()..])
        };
        let (tls, s) = match (scheme("ircs://"), scheme("irc://")) {
            (Some(rest), _) => (true, rest),
            (None, Some(rest)) => (tls, rest),
            (None, None) => (tls, s),
        };
        let s = s.split('/').next().unwrap_or_default();
        let default_port = if tls { DEFAULT_TLS_PORT } else { DEFAULT_PORT };
        let mut addr = ServerAddr::parse_host_port(s, default_port)?;
        addr.tls = tls;
        Ok(addr)
    }

    fn parse_host_port(s: &str, default_port: u16) -> Result<Self, AddrError> {
        if s.is_empty() {
            return Err(AddrError::Empty);
        }
        let port = |p: &str| -> Result<u16, AddrError> {
            match p.parse::<u16>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(AddrError::BadPort { port: p.to_owned() }),
            }
        };
        if let Some(rest) = s.strip_prefix('[') {
            let (host, after) = rest.split_once(']').ok_or_else(|| AddrError::Unclosed {
                input: s.to_owned(),
            })?;
            let port = match after.strip_prefix(':') {
                Some(p) => port(p)?,
                None if after.is_empty() => default_port,
                None => {
                    return Err(AddrError::BadPort {
                        port: after.to_owned(),
                    });
                }
            };
            return Ok(ServerAddr::plain(host, port));
        }
        match s.matches(':').count() {
            0 => Ok(ServerAddr::plain(s, default_port)),
            1 => {
                let (host, p) = s.split_once(':').expect("one colon");
                if host.is_empty() {
                    return Err(AddrError::Empty);
                }
                Ok(ServerAddr::plain(host, port(p)?))
            }
            // Several colons and no brackets: a bare IPv6 address.
            _ => Ok(ServerAddr::plain(s, default_port)),
        }
    }
}

impl fmt::Display for ServerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.tls {
            f.write_str("ircs://")?;
        }
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("localhost", "localhost", 8080)]
    #[case(" chat.example.org:6667 ", "chat.example.org", 6667)]
    #[case("127.0.0.1", "127.0.0.1", 8080)]
    #[case("127.0.0.1:9000", "127.0.0.1", 9000)]
    #[case("[::1]:8081", "::1", 8081)]
    #[case("[::1]", "::1", 8080)]
    #[case("::1", "::1", 8080)]
    #[case("fe80::1:2", "fe80::1:2", 8080)]
    fn parses(#[case] input: &str, #[case] host: &str, #[case] port: u16) {
        assert_eq!(input.parse(), Ok(ServerAddr::plain(host, port)));
    }

    #[rstest]
    #[case("ircs://chat.example.org", false, "chat.example.org", 6697, true)]
    #[case(
        "IRCS://chat.example.org:7000/#rust",
        false,
        "chat.example.org",
        7000,
        true
    )]
    #[case("irc://chat.example.org/", false, "chat.example.org", 8080, false)]
    #[case("chat.example.org", true, "chat.example.org", 6697, true)]
    #[case("irc://[::1]", true, "::1", 6697, true)]
    #[case("127.0.0.1:9999", true, "127.0.0.1", 9999, true)]
    fn parses_tls(
        #[case] input: &str,
        #[case] flag: bool,
        #[case] host: &str,
        #[case] port: u16,
        #[case] tls: bool,
    ) {
        let addr = ServerAddr::parse_with(input, flag).expect("parses");
        assert_eq!(
            addr,
            ServerAddr {
                host: host.into(),
                port,
                tls
            }
        );
    }

    #[test]
    fn displays_tls_as_an_ircs_url() {
        let a = ServerAddr::parse_with("example.org", true).unwrap();
        assert_eq!(a.to_string(), "ircs://example.org:6697");
        assert_eq!(
            ServerAddr::parse_with("ircs://", false),
            Err(AddrError::Empty)
        );
    }

    #[rstest]
    #[case("", AddrError::Empty)]
    #[case(":8080", AddrError::Empty)]
    #[case("host:http", AddrError::BadPort { port: "http".into() })]
    #[case("host:0", AddrError::BadPort { port: "0".into() })]
    #[case("host:70000", AddrError::BadPort { port: "70000".into() })]
    #[case("[::1", AddrError::Unclosed { input: "[::1".into() })]
    #[case("[::1]x", AddrError::BadPort { port: "x".into() })]
    fn refuses(#[case] input: &str, #[case] err: AddrError) {
        assert_eq!(input.parse::<ServerAddr>(), Err(err));
    }

    #[test]
    fn displays_ipv6_in_brackets() {
        let a: ServerAddr = "::1".parse().unwrap();
        assert_eq!(a.to_string(), "[::1]:8080");
        assert!(AddrError::Empty.to_string().contains("8080"));
    }
}
