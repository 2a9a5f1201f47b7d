//! A program a test started: its exit watched from a thread, and killed (SIGKILL) by a guard if
//! the test ends while it still runs.

use std::process::{Child, Command, ExitStatus};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::sync::oneshot;

use crate::WAIT;

/// A running child process. Dropping it SIGKILLs the process unless it has exited.
pub struct Watched {
    pub pid: Pid,
    exited: Arc<AtomicBool>,
    status: Option<oneshot::Receiver<ExitStatus>>,
}

impl Watched {
    /// Watches `child` (whose pipes the caller has taken) until it exits.
    pub fn new(mut child: Child) -> Watched {
        let pid = Pid::from_raw(child.id() as i32);
        let exited = Arc::new(AtomicBool::new(false));
        let (status_tx, status) = oneshot::channel();
        let flag = exited.clone();
        std::thread::spawn(move || {
            let status = child.wait().expect("wait for a child process");
            flag.store(true, Ordering::SeqCst);
            let _ = status_tx.send(status);
        });
        Watched {
            pid,
            exited,
            status: Some(status),
        }
    }

    /// Its exit status, once it exits within [`WAIT`]; `None` if it is still running then.
    pub async fn status(&mut self) -> Option<ExitStatus> {
        let status = self.status.take().expect("the status is asked for once");
        tokio::time::timeout(WAIT, status)
            .await
            .ok()
            .map(|s| s.expect("the watching thread reports"))
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        if !self.exited.load(Ordering::SeqCst) {
            let _ = kill(self.pid, Signal::SIGKILL);
        }
    }
}

/// Takes every `PARLA_*` variable of the environment running the tests out of `command`: the
/// program under test gets its flags from the test alone.
pub fn without_parla_env(command: &mut Command) -> &mut Command {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PARLA_") {
            command.env_remove(key);
        }
    }
    command
}

/// A program's output, line by line (its streams merged, in the order lines arrive), with
/// what was read so far.
pub struct Lines {
    name: &'static str,
    rx: tokio::sync::mpsc::UnboundedReceiver<String>,
    /// Every line read so far.
    pub seen: Vec<String>,
}

impl Lines {
    /// Reads `streams` (stdout, stderr, …) on threads of their own.
    pub fn read(name: &'static str, streams: Vec<Box<dyn std::io::Read + Send>>) -> Lines {
        use std::io::BufRead;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        for stream in streams {
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
        Lines {
            name,
            rx,
            seen: Vec::new(),
        }
    }

    /// Reads until a line contains `needle` and returns it. Fails on timeout ([`WAIT`]) or end
    /// of output, showing what was read.
    pub async fn expect(&mut self, needle: &str) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(line)) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Ok(None) => panic!("{} ended before {needle:?}: {:#?}", self.name, self.seen),
                Err(_) => panic!(
                    "{}: no {needle:?} within {WAIT:?}: {:#?}",
                    self.name, self.seen
                ),
            }
        }
    }

    /// Everything up to the end of output (bounded by [`WAIT`]), including what was seen.
    pub async fn all(&mut self) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(line)) => self.seen.push(line),
                Ok(None) => return self.seen.clone(),
                Err(_) => panic!(
                    "{} did not end within {WAIT:?}: {:#?}",
                    self.name, self.seen
                ),
            }
        }
    }
}
