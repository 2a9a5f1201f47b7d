//! A real `parla-server` process for tests: started with flags, its output read line by line,
//! signalled, and killed by a guard if the test fails. Every wait is bounded by [`WAIT`].
#![allow(dead_code)]

use std::io::BufRead;
use std::net::SocketAddr;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use parla_testkit::WAIT;
use tokio::sync::{mpsc, oneshot};

/// A running `parla-server`. Dropping it SIGKILLs the process unless it has exited.
pub struct Server {
    pub pid: Pid,
    exited: Arc<AtomicBool>,
    /// stdout and stderr, merged, line by line (its log goes to stdout, errors to stderr).
    output: mpsc::UnboundedReceiver<String>,
    seen: Vec<String>,
    status: Option<oneshot::Receiver<ExitStatus>>,
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
        // Flags only from the command line: no PARLA_* from the environment running the tests.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("PARLA_") {
                command.env_remove(key);
            }
        }
        let mut child = command.spawn().expect("parla-server starts");
        let pid = Pid::from_raw(child.id() as i32);
        let (tx, output) = mpsc::unbounded_channel();
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        for stream in [
            Box::new(stdout) as Box<dyn std::io::Read + Send>,
            Box::new(stderr),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        let exited = Arc::new(AtomicBool::new(false));
        let (status_tx, status) = oneshot::channel();
        let flag = exited.clone();
        std::thread::spawn(move || {
            let status = child.wait().expect("wait for parla-server");
            flag.store(true, Ordering::SeqCst);
            let _ = status_tx.send(status);
        });
        Server {
            _data: data,
            pid,
            exited,
            output,
            seen: Vec::new(),
            status: Some(status),
        }
    }

    /// Reads output until a line contains `needle`; fails on timeout or end of output.
    pub async fn expect_output(&mut self, needle: &str) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.output.recv()).await {
                Ok(Some(line)) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Ok(None) => panic!("output ended before {needle:?}: {:#?}", self.seen),
                Err(_) => panic!("no {needle:?} within {WAIT:?}: {:#?}", self.seen),
            }
        }
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
        let status = tokio::time::timeout(WAIT, self.status.take().unwrap())
            .await
            .unwrap_or_else(|_| panic!("parla-server still running after {WAIT:?}"))
            .unwrap();
        while let Ok(Some(line)) = tokio::time::timeout(WAIT, self.output.recv()).await {
            self.seen.push(line);
        }
        (status, self.seen.clone())
    }

    pub fn signal(&self, signal: Signal) {
        kill(self.pid, signal).expect("signal parla-server");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if !self.exited.load(Ordering::SeqCst) {
            let _ = kill(self.pid, Signal::SIGKILL);
        }
    }
}
