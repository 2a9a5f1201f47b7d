//! Process-wide setup that every Parla binary (`parla-server`, `parla`, `parla-bench`,
//! `parla-sim`) shares: logging and the open-files limit. Libraries never call these; only a
//! `main` does, once, before it starts serving.

use std::io::IsTerminal;

use tracing::warn;
use tracing_subscriber::EnvFilter;

/// Logs go to stderr through `tracing`, filtered by `RUST_LOG` (else `default_filter`, e.g.
/// `"info"`), in colour only when stderr is a terminal: a log file or a CI log gets no escape
/// codes.
pub fn init_logging(default_filter: &str) {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter)),
        )
        .init();
}

/// Many connections need many file descriptors: raise the soft open-files limit to `want` (the
/// hard limit when `None`), raising the hard limit too where permitted (root with
/// `CAP_SYS_RESOURCE`). Returns the soft limit now in force; a limit that cannot be raised is
/// logged, since the process may then refuse connections early.
pub fn raise_fd_limit(want: Option<u64>) -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return 0;
    };
    let want = want.unwrap_or(hard);
    if soft >= want {
        return soft;
    }
    if hard < want && setrlimit(Resource::RLIMIT_NOFILE, want, want).is_ok() {
        return want;
    }
    let new = want.min(hard);
    match setrlimit(Resource::RLIMIT_NOFILE, new, hard) {
        Ok(()) => new,
        Err(err) => {
            warn!(cause = %err, soft, "could not raise the open-files limit; connections may be refused early");
            soft
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raising_to_the_current_limit_or_below_changes_nothing() {
        let (soft, _) =
            nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
        assert_eq!(raise_fd_limit(Some(soft)), soft);
        assert_eq!(raise_fd_limit(Some(1)), soft);
    }

    #[test]
    fn raising_to_the_hard_limit_reaches_it() {
        let (_, hard) =
            nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
        assert_eq!(raise_fd_limit(None), hard);
    }
}
