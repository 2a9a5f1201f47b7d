//! A stock IRC client and `parla --headless` meet in `#lobby` and talk.
//!
//! The stock client is WeeChat (Debian's `weechat-headless` package): it runs without a
//! terminal, logs every buffer to files, and reads commands from a FIFO, so the test can drive
//! it step by step. The server runs in-process on a free loopback port. Nothing leaves
//! 127.0.0.1.
//!
//! Without `weechat-headless` the test is skipped by [`parla_testkit::require`]: a
//! `skipped: …` line locally, a failure under `CI=true`, since CI installs it
//! (`ci/install-test-deps`).

use std::fs::{self, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use parla_net::LocalServer;
use parla_net::server::ServerOptions;
use parla_testkit::require;

const WEECHAT: &str = "weechat-headless";
/// How long any one step may take: every wait below is bounded by it.
const STEP: Duration = Duration::from_secs(15);
/// How often the WeeChat log files are read while waiting for a line.
const POLL: Duration = Duration::from_millis(150);

#[test]
fn weechat_and_parla_talk_in_the_lobby() {
    let version = weechat_version();
    if !require(WEECHAT, version.clone().map(drop)) {
        return;
    }
    let version = version.unwrap();
    eprintln!("stock client: {WEECHAT} {version}");

    let mut world = World::new();
    let port = world.start_server();

    // Our client and the stock one connect at the same time; each is put in #lobby on arrival.
    let mut parla = world.start_parla(port);
    let weechat = world.start_weechat(port);

    parla.expect(|l| l.starts_with("You joined #lobby"), "parla joins #lobby");
    // WeeChat opens (and logs) the #lobby buffer only once it has understood the JOIN echo.
    weechat.expect_lobby(
        |l| l.contains("weechatter") && l.contains("#lobby"),
        "weechat shows that it joined #lobby",
    );

    weechat.send("irc.parla.#lobby *hello from weechat");
    parla.expect(
        |l| l.ends_with("<weechatter> hello from weechat"),
        "parla shows weechat's message",
    );
    // weechatter joined before it spoke, so a member list naming it has been printed by now.
    assert!(
        parla.lines.iter().any(|l| l
            .strip_prefix("In #lobby: ")
            .is_some_and(|names| names.split(", ").any(|n| n == "weechatter"))),
        "parla never listed weechatter among #lobby's members; its output:\n{}",
        parla.lines.join("\n")
    );

    parla.say("hello from parla");
    weechat.expect_lobby(
        |l| l.contains("parlauser") && l.ends_with("hello from parla"),
        "weechat receives parla's message",
    );

    // Nothing WeeChat sent on its own (CAP LS 302, CAP REQ, MODE #lobby...) was refused.
    let server_log = weechat.log("irc.server.parla.weechatlog");
    for refusal in ["Unknown command", "have not registered"] {
        assert!(
            !server_log.contains(refusal),
            "the server answered weechat with {refusal:?}; weechat's server buffer:\n{server_log}"
        );
    }
}

/// `weechat-headless --version`, or why it can't be run.
fn weechat_version() -> Result<String, String> {
    let out = Command::new(WEECHAT)
        .arg("--version")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run `{WEECHAT} --version`: {e}"))?;
    if !out.status.success() {
        return Err(format!("`{WEECHAT} --version` failed: {}", out.status));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Everything the test starts; dropping it stops all of it, in bounded time.
struct World {
    dir: PathBuf,
    server: Option<LocalServer>,
    children: Vec<Child>,
}

impl World {
    fn new() -> World {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .expect("the clock is after 1970")
            .subsec_nanos();
        let dir =
            std::env::temp_dir().join(format!("parla-stock-client-{}-{nanos}", std::process::id()));
        fs::create_dir_all(&dir).expect("create the test's temporary directory");
        World {
            dir,
            server: None,
            children: Vec::new(),
        }
    }

    /// Starts `parla_net::run` on a free loopback port; returns the port.
    fn start_server(&mut self) -> u16 {
        let options = ServerOptions {
            epoch_millis: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .expect("the clock is after 1970")
                .as_millis() as u64,
            ..ServerOptions::default()
        };
        let server = LocalServer::start_own(options).expect("start the server on 127.0.0.1");
        let port = server.addr().port();
        self.server = Some(server);
        port
    }

    /// Starts `parla --headless` as `parlauser`, reading its stdout on a thread.
    fn start_parla(&mut self, port: u16) -> Parla {
        let mut child = Command::new(env!("CARGO_BIN_EXE_parla"))
            .args(["--headless", &format!("127.0.0.1:{port}")])
            .args(["--name", "parlauser", "--no-ping"])
            .env_remove("PARLA_SERVER")
            .env_remove("PARLA_NAME")
            .env_remove("PARLA_ROOM")
            .env_remove("PARLA_PASSWORD")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start parla");
        let stdin = child.stdin.take().expect("parla's stdin is piped");
        let stdout = child.stdout.take().expect("parla's stdout is piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        self.children.push(child);
        Parla {
            stdin,
            rx,
            lines: Vec::new(),
        }
    }

    /// Starts WeeChat with its own home in the test directory, logging every buffer to
    /// `logs/` at once and reading commands from the FIFO `fifo`, then connects it as
    /// `weechatter`. Its autojoin list is empty: the server puts it in #lobby.
    fn start_weechat(&mut self, port: u16) -> Weechat {
        let home = self.dir.join("weechat");
        let logs = self.dir.join("logs");
        let fifo = self.dir.join("fifo");
        // `-notls`: WeeChat 4 connects with TLS by default; WeeChat 3 ignores the option.
        let commands = [
            format!("/set logger.file.path {}", logs.display()),
            "/set logger.file.flush_delay 0".to_owned(),
            format!("/set fifo.file.path {}", fifo.display()),
            format!("/server add parla 127.0.0.1/{port} -notls"),
            "/set irc.server.parla.nicks weechatter".to_owned(),
            "/set irc.server.parla.autoreconnect off".to_owned(),
            "/connect parla".to_owned(),
        ]
        .join(";");
        let output = fs::File::create(self.dir.join("weechat.out")).expect("create weechat.out");
        let child = Command::new(WEECHAT)
            .arg("--dir")
            .arg(&home)
            .args(["--plugins", "irc,logger,fifo", "--run-command", &commands])
            .stdin(Stdio::null())
            .stdout(output.try_clone().expect("clone a file handle"))
            .stderr(output)
            .spawn()
            .expect("start weechat-headless");
        self.children.push(child);
        Weechat {
            logs,
            fifo,
            output: self.dir.join("weechat.out"),
        }
    }
}

impl Drop for World {
    fn drop(&mut self) {
        for child in &mut self.children {
            // SIGKILL: `wait` returns at once.
            let _ = child.kill();
            let _ = child.wait();
        }
        // Stops the server, bounded.
        self.server = None;
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// The running `parla --headless`.
struct Parla {
    stdin: ChildStdin,
    rx: mpsc::Receiver<String>,
    /// Every line it has printed so far.
    lines: Vec<String>,
}

impl Parla {
    /// Reads its output until a line matches; panics with the transcript after [`STEP`].
    fn expect(&mut self, matches: impl Fn(&str) -> bool, what: &str) {
        let deadline = Instant::now() + STEP;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => {
                    let hit = matches(&line);
                    self.lines.push(line);
                    if hit {
                        return;
                    }
                }
                Err(why) => panic!(
                    "{what}: no such line from parla within {STEP:?} ({why}); its output:\n{}",
                    self.lines.join("\n")
                ),
            }
        }
    }

    /// Types a line.
    fn say(&mut self, text: &str) {
        writeln!(self.stdin, "{text}").expect("write to parla's stdin");
        self.stdin.flush().expect("flush parla's stdin");
    }
}

/// The running WeeChat: its log directory, its command FIFO and its terminal output.
struct Weechat {
    logs: PathBuf,
    fifo: PathBuf,
    output: PathBuf,
}

impl Weechat {
    /// Polls the #lobby buffer's log until a line matches; panics with every log after [`STEP`].
    fn expect_lobby(&self, matches: impl Fn(&str) -> bool, what: &str) {
        let deadline = Instant::now() + STEP;
        loop {
            if self
                .log("irc.parla.#lobby.weechatlog")
                .lines()
                .any(&matches)
            {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "{what}: no such line in weechat's #lobby log within {STEP:?}\n{}",
                    self.dump()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// The text of one of its log files ("" while it doesn't exist).
    fn log(&self, name: &str) -> String {
        fs::read_to_string(self.logs.join(name)).unwrap_or_default()
    }

    /// Writes one line to its FIFO: `<buffer> *<text or /command>`.
    fn send(&self, line: &str) {
        // Read-write, so opening never blocks (Linux, fifo(7)) even if WeeChat isn't reading;
        // then the test fails on its next bounded wait instead of hanging here.
        let deadline = Instant::now() + STEP;
        while !self.fifo.exists() {
            assert!(
                Instant::now() < deadline,
                "weechat never created its FIFO {}",
                self.fifo.display()
            );
            std::thread::sleep(POLL);
        }
        let mut fifo = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.fifo)
            .expect("open weechat's FIFO");
        writeln!(fifo, "{line}").expect("write to weechat's FIFO");
    }

    /// Every log file and WeeChat's own output, for a failure message.
    fn dump(&self) -> String {
        let mut text = String::new();
        let mut files: Vec<PathBuf> = fs::read_dir(&self.logs)
            .map(|entries| entries.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        files.sort();
        files.push(self.output.clone());
        for file in files {
            let body = fs::read_to_string(&file).unwrap_or_else(|e| format!("({e})"));
            text.push_str(&format!("--- {}\n{body}\n", file.display()));
        }
        text
    }
}
