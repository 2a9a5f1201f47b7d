//! What a person types as a server address: `host`, `host:port`, `[v6]:port`, or a bare IPv6.

use std::fmt;
use std::str::FromStr;

/// The port Parla listens on unless told otherwise (the original design's).
pub const DEFAULT_PORT: u16 = 8080;

/// A server to connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerAddr {
    /// A name or an IP address (IPv6 without brackets).
    pub host: String,
    /// The TCP port.
    pub port: u16,
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
        let s = input.trim();
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
                None if after.is_empty() => DEFAULT_PORT,
                None => {
                    return Err(AddrError::BadPort {
                        port: after.to_owned(),
                    });
                }
            };
            return Ok(ServerAddr {
                host: host.to_owned(),
                port,
            });
        }
        match s.matches(':').count() {
            0 => Ok(ServerAddr {
                host: s.to_owned(),
                port: DEFAULT_PORT,
            }),
            1 => {
                let (host, p) = s.split_once(':').expect("one colon");
                if host.is_empty() {
                    return Err(AddrError::Empty);
                }
                Ok(ServerAddr {
                    host: host.to_owned(),
                    port: port(p)?,
                })
            }
            // Several colons and no brackets: a bare IPv6 address.
            _ => Ok(ServerAddr {
                host: s.to_owned(),
                port: DEFAULT_PORT,
            }),
        }
    }
}

impl fmt::Display for ServerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
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
        assert_eq!(
            input.parse(),
            Ok(ServerAddr {
                host: host.into(),
                port
            })
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
