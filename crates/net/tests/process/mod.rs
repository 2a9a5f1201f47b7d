//! A real `parla-server` process for tests: started with flags, its output read line by line,
//! signalled, and killed by a guard if the test fails. Every wait is bounded by [`WAIT`].
#![allow(dead_code)]

use std::net::SocketAddr;
use std::process::{Command, ExitStatus, Stdio};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use parla_testkit::WAIT;
use parla_testkit::process::{Lines, Watched, without_parla_env};

/// A running `parla-server`. Dropping it SIGKILLs the process unless it has exited.
pub struct Server {
    pub pid: Pid,
    process: Watched,
    /// stdout and stderr, merged, line by line (its log goes to stdout, errors to stderr).
    output: Lines,
    /// Its history's directory (`--data-dir`), unless the test chose.
    _data: Option<tempfile::TempDir>,
}

impl Server {
    pub fn spawn(args: &[&str]) -> Server {
        Server::spawn_with(args, &[])
    }

    /// [`Server::spawn`] with these environment variables (and no `GLIBC_TUNABLES` unless
    /// among them).
    pub fn spawn_with(args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut command = Command::new(env!("CARGO_BIN_EXE_parla-server"));
        command
            .env_remove("GLIBC_TUNABLES")
            .envs(env.iter().copied());
        // Each server its own history, never the user's.
        let chose = args
            .iter()
            .any(|a| a.starts_with("--data-dir") || a.starts_with("--history"));
        let data = (!chose).then(|| tempfile::tempdir().expect("a temporary directory"));
        if let Some(dir) = &data {
            command.arg("--data-dir").arg(dir.path());
        }
        command
            .args(args)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = without_parla_env(&mut command)
            .spawn()
            .expect("parla-server starts");
        let output = Lines::read(
            "parla-server",
            vec![
                Box::new(child.stdout.take().unwrap()),
                Box::new(child.stderr.take().unwrap()),
            ],
        );
        let process = Watched::new(child);
        Server {
            _data: data,
            pid: process.pid,
            process,
            output,
        }
    }

    /// Reads output until a line contains `needle`; fails on timeout or end of output.
    pub async fn expect_output(&mut self, needle: &str) -> String {
        self.output.expect(needle).await
    }

    /// The address from the `listening addr=…` log line.
    pub async fn listening_addr(&mut self) -> SocketAddr {
        let line = self.expect_output("listening").await;
        let addr = line
            .split("addr=")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no addr in {line:?}"));
        addr.parse().unwrap()
    }

    /// Waits (bounded) for the process to exit; returns its status and the rest of its output.
    pub async fn exit(&mut self) -> (ExitStatus, Vec<String>) {
        let status = (self.process.status().await)
            .unwrap_or_else(|| panic!("parla-server still running after {WAIT:?}"));
        (status, self.output.all().await)
    }

    pub fn signal(&self, signal: Signal) {
        kill(self.pid, signal).expect("signal parla-server");
    }
}
