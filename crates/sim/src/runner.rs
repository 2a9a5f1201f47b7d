//! Runs a [`Script`] in a turmoil simulation under a seed, with the real server runtime and
//! client session, and returns its transcript and every broken invariant or expectation.

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Once, OnceLock};
use std::time::{Duration, UNIX_EPOCH};

use parla_net::addr::ServerAddr;
use parla_net::client::{self, ClientConfig, Command, Event, Reconnect};
use parla_net::server::{
    ClusterOptions, HistorySlot, ObserverSlot, ServerOptions, run as run_server,
};
use parla_net::tls::{self, Fingerprint, ServerTls};
use parla_net::transport::{Both, Transport};
use parla_room::Millis;
use parla_room::history::{MemoryHistory, Retention};
use parla_room::server::Window;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::Bug;
use crate::broker::{SimLog, Store, broker};
use crate::check;
use crate::journal::{Conduct, Journal, Recorder};
use crate::model::SharedBooks;
use crate::ping::{UdpPinger, echo_responder};
use crate::script::{ClientFlags, Expectation, Script, ServerFlags, Step};
use crate::transport::Sim;

/// The simulated wall clock starts here (2026-11-18), so transcripts never depend on the date.
pub const EPOCH_SECS: u64 = 1_795_000_000;
/// The server's port inside the simulation.
pub const PORT: u16 = 8080;
/// Its TLS port (with `server --tls`).
pub const TLS_PORT: u16 = 6697;

/// The simulated server's TLS certificate (made once per process; the clients pin it) and its
/// fingerprint. Made with the same code as `parla-server self-signed`, loaded by the same code
/// as `--tls-cert`.
fn sim_tls() -> &'static (ServerTls, Fingerprint) {
    static TLS: OnceLock<(ServerTls, Fingerprint)> = OnceLock::new();
    TLS.get_or_init(|| {
        let (cert, key) = tls::self_signed(vec!["server".to_owned()])
            .expect("a self-signed certificate for the simulated server");
        let dir = std::env::temp_dir().join(format!("parla-sim-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a directory for the simulation's certificate");
        let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
        tls::write_pem(&cert_path, &cert, false).expect("writing the simulation's certificate");
        tls::write_pem(&key_path, &key, true).expect("writing the simulation's key");
        let server = ServerTls::load(&cert_path, &key_path).expect("loading the certificate");
        let _ = std::fs::remove_dir_all(&dir);
        let pin = server.fingerprint();
        (server, pin)
    })
}

/// How to run a script.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The seed for turmoil's randomness (latency jitter, loss, host order within a tick).
    pub seed: u64,
    /// How long to let things settle after the last step before the final checks.
    pub settle: Duration,
    /// A deliberate bug to plant in the core (to test the checkers).
    pub bug: Option<Bug>,
    /// The simulation's tick.
    pub tick: Duration,
    /// Skip idle time: when nothing is on the wire and no host has a timer due, jump to the next
    /// delivery or timer in one step instead of ticking through it. The transcript is the same
    /// either way (tested); only the speed differs.
    pub skip_idle: bool,
    /// Run only the hosts with work in each step (a timer due, a message arriving), except the
    /// first step after the script acts (it may have handed any host work): the others catch up
    /// in one tick when they next have some. The transcript is the same either way (tested).
    pub lazy_hosts: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            seed: 1,
            settle: Duration::from_secs(60),
            bug: None,
            tick: Duration::from_millis(1),
            skip_idle: true,
            lazy_hosts: true,
        }
    }
}

/// What a run produced.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The seed it ran under.
    pub seed: u64,
    /// Everything each host saw or did, stamped with simulated time.
    pub transcript: String,
    /// Broken invariants.
    pub violations: Vec<String>,
    /// `expect` steps that did not hold (with file and line).
    pub failed_expectations: Vec<String>,
}

impl Outcome {
    /// No violation and no failed expectation.
    pub fn passed(&self) -> bool {
        self.violations.is_empty() && self.failed_expectations.is_empty()
    }
}

/// What the harness sends to a client host.
#[derive(Debug)]
enum ClientCmd {
    Session(Command),
    Write(Vec<u8>),
    StopReading,
}

thread_local! {
    /// Panics on this thread (turmoil runs every host on the test's thread).
    static PANICS: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.with(|p| p.borrow_mut().push(info.to_string()));
            previous(info);
        }));
    });
}

/// Runs `script` under `options` and checks every invariant.
pub fn run(script: &Script, options: &RunOptions) -> Outcome {
    install_panic_hook();
    PANICS.with(|p| p.borrow_mut().clear());
    let journal = Journal::default();
    let due = Timers::default();
    let _watch = due.watch();
    let mut runner = Runner::new(journal.clone(), options, due);
    let completed = runner.run_steps(script);
    if completed {
        runner.settle(options.settle);
    }
    journal.lock().ended_at = runner.sim.elapsed();
    let mut failed = std::mem::take(&mut runner.failed);
    drop(runner);
    let panics = PANICS.with(|p| std::mem::take(&mut *p.borrow_mut()));
    for panic in panics {
        journal.violation(format!("a host panicked: {panic}"));
    }
    let records = journal.lock();
    let mut violations = records.violations.clone();
    violations.extend(check::final_state(&records));
    violations.extend(crate::conduct::check(&records));
    violations.extend(check::cluster(&records));
    drop(records);
    failed.dedup();
    Outcome {
        seed: options.seed,
        transcript: journal.transcript(),
        violations,
        failed_expectations: failed,
    }
}

/// When the hosts' timers are due, in simulated time since the start, host by host: every timer
/// the real server and client arm is announced through [`parla_net::clock::watch_timers`], on the
/// host whose software armed it. Timers that were dropped before they fired stay listed until
/// their time passes; they only cost a short step.
#[derive(Clone, Default)]
struct Timers(Rc<RefCell<HashMap<IpAddr, BinaryHeap<Reverse<Duration>>>>>);

impl Timers {
    /// Starts listening to the timers armed on this thread (where turmoil runs every host).
    fn watch(&self) -> parla_net::clock::TimerWatch {
        let due = self.0.clone();
        parla_net::clock::watch_timers(move |at| {
            let (Some(sim_now), Some(host)) = (turmoil::sim_elapsed(), turmoil::current_host())
            else {
                return;
            };
            let after = at.saturating_duration_since(tokio::time::Instant::now());
            // In whole milliseconds, rounded down: stopping a little early is harmless.
            let at = Duration::from_millis((sim_now + after).as_millis() as u64);
            due.borrow_mut().entry(host).or_default().push(Reverse(at));
        })
    }

    /// The earliest timer of any host due at or after `now` (those before `now` have fired and
    /// run).
    fn next(&self, now: Duration) -> Option<Duration> {
        let mut due = self.0.borrow_mut();
        due.values_mut().filter_map(|heap| next_of(heap, now)).min()
    }

    /// Whether `host` has a timer due from `now` to `end` (inclusive: one due at the very end
    /// fires there, and the task it wakes runs in the next step).
    fn due_by(&self, host: IpAddr, now: Duration, end: Duration) -> bool {
        let mut due = self.0.borrow_mut();
        due.get_mut(&host)
            .and_then(|heap| next_of(heap, now))
            .is_some_and(|at| at <= end)
    }
}

/// The earliest of `heap`'s timers at or after `now`, forgetting those before it.
fn next_of(heap: &mut BinaryHeap<Reverse<Duration>>, now: Duration) -> Option<Duration> {
    while heap.peek().is_some_and(|Reverse(at)| *at < now) {
        heap.pop();
    }
    heap.peek().map(|Reverse(at)| *at)
}

struct Runner<'a> {
    sim: turmoil::Sim<'a>,
    tick: Duration,
    skip_idle: bool,
    lazy_hosts: bool,
    due: Timers,
    journal: Journal,
    bug: Option<Bug>,
    clients: BTreeMap<String, mpsc::UnboundedSender<ClientCmd>>,
    server_token: Arc<Mutex<Option<CancellationToken>>>,
    server_incarnation: Arc<AtomicU32>,
    pings_blocked: Arc<AtomicBool>,
    crashed: BTreeSet<String>,
    failed: Vec<String>,
    /// The server's history store, in memory behind the same trait as the disk store: it
    /// outlives a crash and restart of the server, as a disk would.
    history: Arc<Mutex<MemoryHistory>>,
    /// What the model knows that history must hold, across incarnations.
    books: SharedBooks,
    /// In a cluster (`server --cluster N`): the broker and the servers after the first.
    cluster_hosts: Vec<String>,
    /// The broker's log, which outlives a crash and restart of the broker.
    store: Store,
}

impl<'a> Runner<'a> {
    fn new(journal: Journal, options: &RunOptions, due: Timers) -> Runner<'a> {
        let sim = turmoil::Builder::new()
            .rng_seed(options.seed)
            .epoch(UNIX_EPOCH + Duration::from_secs(EPOCH_SECS))
            .tick_duration(options.tick)
            .simulation_duration(Duration::from_secs(24 * 3600))
            .build();
        Runner {
            sim,
            tick: options.tick,
            skip_idle: options.skip_idle,
            lazy_hosts: options.lazy_hosts,
            due,
            journal,
            bug: options.bug,
            clients: BTreeMap::new(),
            server_token: Arc::default(),
            server_incarnation: Arc::default(),
            pings_blocked: Arc::default(),
            crashed: BTreeSet::new(),
            failed: Vec::new(),
            history: Arc::new(Mutex::new(MemoryHistory::new(Retention::default()))),
            books: SharedBooks::default(),
            cluster_hosts: Vec::new(),
            store: Store::default(),
        }
    }

    /// Every host: the server (once started) and the clients.
    fn hosts(&self) -> Vec<String> {
        let server =
            (self.server_incarnation.load(Ordering::Relaxed) > 0).then(|| "server".to_owned());
        server
            .into_iter()
            .chain(self.cluster_hosts.iter().cloned())
            .chain(self.clients.keys().cloned())
            .collect()
    }

    /// Runs the simulation for `d`; `false` if a host failed (recorded as a violation).
    ///
    /// With `skip_idle`, time in which nothing can happen passes in one step: the first step is
    /// always an ordinary tick (the script may just have handed a host work), then each step runs
    /// to the next timer or to the tick before the next delivery, whichever is sooner. That is
    /// exactly what ticking through the idle time gives (the same transcript; tested), because
    /// turmoil draws its randomness only when a message is sent, and hosts only act on a timer or
    /// a delivery.
    ///
    /// With `lazy_hosts`, every step after the first runs only the hosts with work in it: a
    /// timer of theirs due by its end, a message arriving, or a wake from another host (turmoil
    /// knows those: a connection accepted, room made on a full connection). The others catch up
    /// in one tick when they next have work, and all of them before the script acts again.
    fn wait(&mut self, d: Duration) -> bool {
        let target = self.sim.elapsed() + d;
        let mut first = true;
        while self.sim.elapsed() < target {
            let step = if self.skip_idle && !first {
                self.idle_for(target)
            } else {
                self.tick
            };
            let now = self.sim.elapsed();
            let stepped = if first || !self.lazy_hosts {
                self.sim.step_for(step)
            } else {
                let due = &self.due;
                self.sim
                    .step_only(step, |host| due.due_by(host, now, now + step))
            };
            first = false;
            if let Err(err) = stepped {
                self.journal
                    .violation(format!("host software failed: {err}"));
                return false;
            }
            if self.journal.lock().stuck {
                return false;
            }
            self.report_woke_early();
        }
        // The script acts next, possibly handing a host work: every host must be at the
        // simulation's time for it.
        if let Err(err) = self.sim.catch_up_all() {
            self.journal
                .violation(format!("host software failed: {err}"));
            return false;
        }
        self.report_woke_early();
        true
    }

    /// A host that woke inside a stretch of time it was given as idle (in one long step, or
    /// while catching up on steps it was left out of) had work nobody announced.
    fn report_woke_early(&self) {
        if let Some((host, into)) = self.sim.woke_early().first() {
            self.journal.violation(format!(
                "{host} woke {into:?} into a stretch the simulation skipped as idle for it: it \
                 armed a timer without parla_net::clock (or had work nobody announced), so \
                 anything it sent then arrived late; run with --no-skip-idle --tick-every-host \
                 to compare"
            ));
        }
    }

    /// Lets the run settle after the script, for at most `limit`: it ends as soon as the final
    /// checks pass, nothing is in flight, and every client still open has heard from the server
    /// since the script ended (so a connection that only looks alive, a dead link nobody has
    /// noticed yet, is given the time to be noticed).
    fn settle(&mut self, limit: Duration) {
        let (began, end) = (self.sim.elapsed(), self.sim.elapsed() + limit);
        while self.sim.elapsed() < end {
            let chunk = Duration::from_secs(1).min(end - self.sim.elapsed());
            if !self.wait(chunk) {
                return;
            }
            if self.sim.until_next_delivery().is_some() {
                continue;
            }
            let mut r = self.journal.lock();
            r.ended_at = self.sim.elapsed();
            let heard = r.clients.values().all(|c| {
                c.raw
                    || c.crashed
                    || c.closed.is_some()
                    || !c.connected
                    || c.last_read.is_some_and(|t| t > began)
            });
            if heard && r.violations.is_empty() && check::final_state(&r).is_empty() {
                return;
            }
        }
    }

    /// How long nothing can happen from now (at least one tick, at most until `target`): until
    /// the next timer, or the tick before the network's next delivery (turmoil hands a message
    /// over at the start of the tick in which it arrives).
    fn idle_for(&self, target: Duration) -> Duration {
        // A host woken directly by another runs at the start of the next step; what it sends
        // then must be delivered on time, not at the end of a long step.
        if self.sim.has_pending_wakes() {
            return self.tick;
        }
        let now = self.sim.elapsed();
        let mut until = target;
        if let Some(at) = self.due.next(now) {
            until = until.min(at);
        }
        if let Some(after) = self.sim.until_next_delivery() {
            let ticks = after.as_nanos().div_ceil(self.tick.as_nanos()).max(1);
            let arrives = now + self.tick * u32::try_from(ticks).unwrap_or(u32::MAX);
            until = until.min(arrives - self.tick);
        }
        until.saturating_sub(now).max(self.tick)
    }

    fn script_line(&self, text: &str) {
        self.journal.line_at(self.sim.elapsed(), "script", text);
    }

    fn run_steps(&mut self, script: &Script) -> bool {
        for (line, text, step) in &script.steps {
            self.script_line(text);
            let where_ = format!("{}:{line}", script.file);
            if !self.apply(&where_, step) {
                return false;
            }
        }
        true
    }

    fn send(&mut self, where_: &str, client: &str, cmd: ClientCmd) {
        match self.clients.get(client) {
            Some(tx) => {
                let _ = tx.send(cmd);
            }
            None => self.failed.push(format!(
                "{where_}: there is no client {client:?}; add it first with `client {client}`"
            )),
        }
    }

    fn apply(&mut self, where_: &str, step: &Step) -> bool {
        match step {
            Step::Server(flags) if flags.cluster > 0 => self.start_cluster(flags.clone()),
            Step::Server(flags) => self.start_server(flags.clone()),
            Step::Client { name, flags } => self.start_client(name, flags.clone(), false),
            Step::Raw { name } => self.start_client(name, ClientFlags::default(), true),
            Step::Name { client, nick } => self.send(
                where_,
                client,
                ClientCmd::Session(Command::Nick(nick.clone())),
            ),
            Step::Say { client, text } => self.send(
                where_,
                client,
                ClientCmd::Session(Command::Say(text.clone())),
            ),
            Step::Me { client, text } => self.send(
                where_,
                client,
                ClientCmd::Session(Command::Action(text.clone())),
            ),
            Step::SayMany {
                client,
                count,
                text,
            } => {
                for i in 1..=*count {
                    self.send(
                        where_,
                        client,
                        ClientCmd::Session(Command::Say(format!("{text} {i}"))),
                    );
                }
            }
            Step::Join { client, room } => self.send(
                where_,
                client,
                ClientCmd::Session(Command::Join(room.clone())),
            ),
            Step::Msg { client, to, text } => self.send(
                where_,
                client,
                ClientCmd::Session(Command::Msg {
                    to: to.clone(),
                    text: text.clone(),
                }),
            ),
            Step::Quote { client, line } => self.send(
                where_,
                client,
                ClientCmd::Session(Command::Raw(line.clone())),
            ),
            Step::Names { client } => self.send(where_, client, ClientCmd::Session(Command::Names)),
            Step::Command { client, command } => {
                self.send(where_, client, ClientCmd::Session(command.clone()))
            }
            Step::Quit { client } => {
                self.send(where_, client, ClientCmd::Session(Command::Quit(None)))
            }
            Step::Close { client } => self.send(
                where_,
                client,
                ClientCmd::Session(Command::Quit(Some("Window closed".into()))),
            ),
            Step::CtrlC { host } if host == "server" => {
                if let Some(token) = self
                    .server_token
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .as_ref()
                {
                    token.cancel();
                }
            }
            Step::CtrlC { host } => self.send(
                where_,
                host,
                ClientCmd::Session(Command::Quit(Some("Ctrl-C".into()))),
            ),
            Step::Write { client, bytes } => {
                self.send(where_, client, ClientCmd::Write(bytes.clone()))
            }
            Step::StopReading { client } => self.send(where_, client, ClientCmd::StopReading),
            Step::Wait(d) => return self.wait(*d),
            Step::Partition(a, b) => self.sim.partition(a.as_str(), b.as_str()),
            Step::Repair(a, b) => self.sim.repair(a.as_str(), b.as_str()),
            Step::Hold(a, b) => self.sim.hold(a.as_str(), b.as_str()),
            Step::Release(a, b) => self.sim.release(a.as_str(), b.as_str()),
            Step::PartitionOneway(a, b) => self.sim.partition_oneway(a.as_str(), b.as_str()),
            Step::RepairOneway(a, b) => self.sim.repair_oneway(a.as_str(), b.as_str()),
            Step::Crash(host) => {
                // A host that loses power sends nothing more, not even a FIN: cut its links first
                // (turmoil's crash alone closes its sockets like a killed process would).
                for other in self.hosts() {
                    if other != *host {
                        self.sim.partition(host.as_str(), other.as_str());
                    }
                }
                self.sim.crash(host.as_str());
                self.crashed.insert(host.clone());
                let mut r = self.journal.lock();
                if host == "server" {
                    let inc = self
                        .server_incarnation
                        .load(Ordering::Relaxed)
                        .saturating_sub(1);
                    r.servers.entry(inc).or_default().crashed = true;
                } else if let Some(c) = r.clients.get_mut(host) {
                    c.crashed = true;
                }
            }
            Step::Restart(host) => {
                self.crashed.remove(host);
                if let Some(c) = self.journal.lock().clients.get_mut(host) {
                    // A restarted client is a new session: checked like any other from here on.
                    c.log.push((crate::journal::now(), Conduct::Restarted));
                    c.crashed = false;
                    c.closed = None;
                    c.stopped_reading = false;
                }
                for other in self.hosts() {
                    if other != *host {
                        self.sim.repair(host.as_str(), other.as_str());
                    }
                }
                self.sim.bounce(host.as_str());
            }
            Step::Latency(a, b, d) => self.sim.set_link_latency(a.as_str(), b.as_str(), *d),
            Step::Jitter(d) => self.sim.set_max_message_latency(*d),
            Step::Loss(a, b, rate) => self.sim.set_link_fail_rate(a.as_str(), b.as_str(), *rate),
            Step::BlockPings => self.pings_blocked.store(true, Ordering::Relaxed),
            Step::UnblockPings => self.pings_blocked.store(false, Ordering::Relaxed),
            Step::Expect { client, what } => self.expect(where_, client, what),
            Step::ExpectOne { clients, text } => {
                let r = self.journal.lock();
                let saw: Vec<&String> = clients
                    .iter()
                    .filter(|c| {
                        r.clients
                            .get(*c)
                            .is_some_and(|rec| rec.seen.iter().any(|l| l.contains(text.as_str())))
                    })
                    .collect();
                let problem = (saw.len() != 1).then(|| {
                    format!(
                        "expected exactly one of {} to have seen {text:?}, but {} did: {saw:?}",
                        clients.join(", "),
                        saw.len()
                    )
                });
                drop(r);
                if let Some(problem) = problem {
                    self.fail(where_, &problem);
                }
            }
        }
        true
    }

    fn expect(&mut self, where_: &str, client: &str, what: &Expectation) {
        let r = self.journal.lock();
        let Some(c) = r.clients.get(client) else {
            self.failed
                .push(format!("{where_}: there is no client {client:?}"));
            return;
        };
        let tail = || {
            c.seen
                .iter()
                .rev()
                .take(5)
                .rev()
                .cloned()
                .collect::<Vec<_>>()
                .join(" | ")
        };
        let problem = match what {
            Expectation::Saw(text) if !c.seen.iter().any(|l| l.contains(text.as_str())) => {
                Some(format!(
                    "expected {client} to have seen {text:?}, but it did not (its last lines: {})",
                    tail()
                ))
            }
            Expectation::NotSaw(text) => {
                c.seen.iter().find(|l| l.contains(text.as_str())).map(|l| {
                    format!("expected {client} not to have seen {text:?}, but it saw {l:?}")
                })
            }
            Expectation::Closed(reason) => match (&c.closed, reason) {
                (None, _) => Some(format!(
                    "expected {client} to have closed, but it is still open (its last lines: {})",
                    tail()
                )),
                (Some(got), Some(want)) if !got.contains(want.as_str()) => Some(format!(
                    "expected {client} to have closed because of {want:?}, but it closed because {got:?}"
                )),
                _ => None,
            },
            Expectation::Open if c.closed.is_some() || c.crashed => Some(format!(
                "expected {client} to be open, but it closed: {}",
                c.closed.clone().unwrap_or("crashed".into())
            )),
            _ => None,
        };
        drop(r);
        if let Some(problem) = problem {
            self.fail(where_, &problem);
        }
    }

    /// Records a failed expectation in the transcript and in the outcome.
    fn fail(&mut self, where_: &str, problem: &str) {
        self.journal.line_at(
            self.sim.elapsed(),
            "script",
            &format!("EXPECTATION FAILED: {problem}"),
        );
        self.failed.push(format!("{where_}: {problem}"));
    }

    /// `server --cluster N`: a broker host and N servers sharing its log. The reference model
    /// follows one server, so it is off here; each server's digest of the shared state after
    /// every log position is recorded for [`check::cluster`], and the clients' conduct, the
    /// transcript and the script's expectations are checked as ever.
    fn start_cluster(&mut self, flags: ServerFlags) {
        self.journal.lock().cluster = true;
        let store = self.store.clone();
        self.sim.host("broker", move || broker(store.clone()));
        self.cluster_hosts.push("broker".into());
        for k in 1..=flags.cluster {
            let host = if k == 1 {
                "server".to_owned()
            } else {
                format!("server{k}")
            };
            if k > 1 {
                self.cluster_hosts.push(host.clone());
            } else {
                self.server_incarnation.fetch_add(1, Ordering::Relaxed);
            }
            let (journal, flags, bug) = (self.journal.clone(), flags.clone(), self.bug);
            let token_slot = (k == 1).then(|| self.server_token.clone());
            let incarnation = Arc::new(AtomicU32::new(0));
            self.sim.host(host.clone(), move || {
                let inc = incarnation.fetch_add(1, Ordering::Relaxed);
                let epoch_millis = epoch_now();
                let token = CancellationToken::new();
                if let Some(slot) = &token_slot {
                    *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(token.clone());
                }
                let history: Arc<Mutex<dyn parla_room::history::History>> =
                    Arc::new(Mutex::new(MemoryHistory::new(Retention::default())));
                let watch = crate::journal::ReplicaWatch {
                    host: host.clone(),
                    journal: journal.clone(),
                };
                let options = ServerOptions {
                    cluster: Some(ClusterOptions {
                        log: Arc::new(SimLog::new("broker")),
                        name: host.clone(),
                        beat: flags.beat,
                        snapshot_every: flags.snapshot_every,
                        snapshots_kept: flags.snapshots_kept,
                        // Each incarnation its own: it tells its hello from its predecessor's.
                        nonce: (k as u64) << 32 | u64::from(inc),
                        refused: Default::default(),
                    }),
                    ..server_options(
                        &flags,
                        core_config(&flags, bug),
                        epoch_millis,
                        history,
                        watch,
                    )
                };
                let (journal, host) = (journal.clone(), host.clone());
                async move {
                    journal.line(&host, &format!("started (incarnation {inc})"));
                    let any = SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), PORT);
                    run_server(Sim.bind(any).await?, options, token).await;
                    journal.line(&host, "stopped");
                    Ok(())
                }
            });
        }
    }

    fn start_server(&mut self, flags: ServerFlags) {
        let journal = self.journal.clone();
        let token_slot = self.server_token.clone();
        let incarnation = self.server_incarnation.clone();
        let blocked = self.pings_blocked.clone();
        let bug = self.bug;
        let (history, books) = (self.history.clone(), self.books.clone());
        self.sim.host("server", move || {
            let inc = incarnation.fetch_add(1, Ordering::Relaxed);
            let epoch_millis = epoch_now();
            let token = CancellationToken::new();
            *token_slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(token.clone());
            let core = core_config(&flags, bug);
            let settings = core.clone();
            let watch = journal.server_observer(inc, settings, Millis(epoch_millis), books.clone());
            let options = server_options(&flags, core, epoch_millis, history.clone(), watch);
            let (journal, blocked, tls) = (journal.clone(), blocked.clone(), flags.tls);
            async move {
                journal.line("server", &format!("started (incarnation {inc})"));
                tokio::spawn(echo_responder(blocked));
                let any = |port| SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), port);
                let listener = Sim.bind(any(PORT)).await?;
                if tls {
                    let secure = sim_tls().0.listener(Sim.bind(any(TLS_PORT)).await?);
                    run_server(Both::new(listener, secure), options, token).await;
                } else {
                    run_server(listener, options, token).await;
                }
                journal.lock().servers.entry(inc).or_default().shut_down = true;
                journal.line("server", "stopped");
                Ok(())
            }
        });
    }

    fn start_client(&mut self, name: &str, flags: ClientFlags, raw: bool) {
        let (tx, rx) = mpsc::unbounded_channel();
        self.clients.insert(name.to_owned(), tx);
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        let journal = self.journal.clone();
        {
            let mut records = journal.lock();
            let record = records.clients.entry(name.to_owned()).or_default();
            record.raw = raw;
            record.password = flags.password.clone();
        }
        let (host, bug) = (name.to_owned(), self.bug);
        self.sim.host(name, move || {
            let (rx, journal, host, flags) =
                (rx.clone(), journal.clone(), host.clone(), flags.clone());
            async move {
                let transport = Recorder {
                    host: host.clone(),
                    journal: journal.clone(),
                    tls: flags.tls.then(|| sim_tls().1),
                };
                let mut rx = rx.lock().await;
                if raw {
                    raw_client(&host, &journal, &transport, &mut rx).await
                } else {
                    session_client(&host, &journal, &transport, flags, bug, &mut rx).await
                }
            }
        });
    }
}

/// When a simulated server's process starts, as its clock's epoch: each incarnation's clock
/// starts when it does (a restarted server's messages are later than its predecessor's, as on
/// a real machine).
fn epoch_now() -> u64 {
    EPOCH_SECS * 1000 + turmoil::sim_elapsed().unwrap_or_default().as_millis() as u64
}

/// The runtime's settings for a simulated server with `flags` (one server or each of a
/// cluster's): its core's `core`, its clock from `epoch_millis`, its history, its watcher.
fn server_options(
    flags: &ServerFlags,
    core: parla_room::Config,
    epoch_millis: u64,
    history: Arc<Mutex<dyn parla_room::history::History>>,
    observer: impl parla_net::server::Observer,
) -> ServerOptions {
    ServerOptions {
        core,
        max_clients: flags.max_clients,
        sendq_bytes: flags.sendq_bytes,
        flood: flags.flood,
        epoch_millis,
        observer: ObserverSlot(Some(Arc::new(observer))),
        history: HistorySlot(Some(history)),
        abort_on_core_panic: false,
        ..ServerOptions::default()
    }
}

/// The core's settings for a simulated server with `flags` (one server or each of a cluster's).
fn core_config(flags: &ServerFlags, bug: Option<Bug>) -> parla_room::Config {
    #[cfg(not(feature = "deliberate-bugs"))]
    if let Some(bug) = bug {
        match bug {}
    }
    parla_room::Config {
        default_room: flags.room.clone(),
        motd: Vec::new(),
        ping_interval_ms: flags.ping_interval.as_millis() as u64,
        ping_timeout_ms: flags.ping_timeout.as_millis() as u64,
        registration_timeout_ms: flags.registration_timeout.as_millis() as u64,
        quiet_joins_above: flags.quiet_joins_above,
        password: flags.password.clone(),
        // Tighter than parla-server's 5 per minute, so that random runs reach them.
        nick_changes: Some(Window {
            count: 2,
            ms: 10_000,
        }),
        topic_changes: Some(Window {
            count: 2,
            ms: 10_000,
        }),
        // One server operator, `OPER boss hunter2`; its password is kept as is (the
        // real server's argon2 would cost the simulation seconds per check).
        operators: vec![parla_room::server::Operator {
            name: "boss".into(),
            password_hash: "plain:hunter2".into(),
        }],
        verify_password: Some(plain_password),
        #[cfg(feature = "deliberate-bugs")]
        bug,
        ..parla_room::Config::default()
    }
}

fn closed(journal: &Journal, host: &str, reason: String) {
    journal
        .lock()
        .clients
        .entry(host.to_owned())
        .or_default()
        .closed = Some(reason);
}

/// The session clients' own liveness check: a `PING` after this much silence...
pub const CLIENT_IRC_PING_INTERVAL_MS: u64 = 10_000;
/// ...and giving up this long after it.
pub const CLIENT_IRC_PING_TIMEOUT_MS: u64 = 10_000;

/// A person using Parla's client session.
async fn session_client(
    host: &str,
    journal: &Journal,
    transport: &Recorder,
    flags: ClientFlags,
    bug: Option<Bug>,
    rx: &mut mpsc::UnboundedReceiver<ClientCmd>,
) -> turmoil::Result {
    // Over TLS, the recorder speaks it (so that it records what the session reads and writes):
    // the session sees a plain stream.
    let port = if flags.tls { TLS_PORT } else { PORT };
    let mut config = ClientConfig::new(ServerAddr::plain(&flags.server, port));
    config.ping = flags.ping;
    config.session.username = host.to_owned();
    config.session.password = flags.password.clone();
    #[cfg(feature = "deliberate-bugs")]
    {
        config.session.bug = bug;
    }
    #[cfg(not(feature = "deliberate-bugs"))]
    if let Some(bug) = bug {
        match bug {}
    }
    config.connect_timeout = Duration::from_secs(5);
    config.reconnect = flags.reconnect.then(Reconnect::default);
    config.session.irc_ping_interval_ms = CLIENT_IRC_PING_INTERVAL_MS;
    config.session.irc_ping_timeout_ms = CLIENT_IRC_PING_TIMEOUT_MS;
    let pinger = match &config.ping {
        Some(ping) => UdpPinger::recording(journal.clone(), host, ping.max_misses.max(1)),
        None => UdpPinger::default(),
    };
    let mut client = match client::connect(transport, pinger, config).await {
        Ok(client) => client,
        Err(err) => {
            journal.client_saw(host, &format!("! {err}"));
            closed(journal, host, err.to_string());
            return Ok(());
        }
    };
    let mut commands_open = true;
    loop {
        tokio::select! {
            biased;
            event = client.events.recv() => {
                let Some(event) = event else { break };
                journal.conduct(host, Conduct::Event(event.clone()));
                if let Some(text) = summarize(&event) {
                    journal.client_saw(host, &text);
                }
                if let Event::Disconnected(why) = event {
                    closed(journal, host, why.to_string());
                    break;
                }
            }
            cmd = rx.recv(), if commands_open => match cmd {
                Some(ClientCmd::Session(cmd)) => {
                    journal.conduct(host, Conduct::Command(cmd.clone()));
                    let _ = client.commands.send(cmd).await;
                }
                Some(_) => {}
                None => commands_open = false,
            },
        }
    }
    Ok(())
}

/// The session's events worth a transcript line (the wire lines show the rest).
fn summarize(event: &Event) -> Option<String> {
    Some(match event {
        Event::Registered { name, .. } => format!("! registered as {name}"),
        Event::NameRefused { name, reason } => format!("! name {name:?} refused: {reason}"),
        Event::PingMissed { consecutive, error } => {
            format!("! ping missed ({consecutive} in a row): {error}")
        }
        Event::PingUnavailable { reason } => format!("! pings unavailable: {reason}"),
        Event::ServerShutdown { message } => format!("! server shutting down: {message}"),
        Event::ServerError { text } => format!("! server error: {text}"),
        Event::Disconnected(why) => format!("! closed: {why}"),
        Event::Reconnecting {
            reason,
            after,
            attempt,
        } => format!(
            "! reconnecting in {:.3}s (attempt {attempt}): {reason}",
            after.as_secs_f64()
        ),
        Event::History {
            target,
            page,
            messages,
            more,
        } => {
            let said: Vec<String> = messages
                .iter()
                .map(|m| format!("<{}> {}", m.from, m.text))
                .collect();
            let more = if *more { " (more before)" } else { "" };
            format!(
                "! history of {target} ({page:?}, {}){more}: {}",
                messages.len(),
                said.join(" | ")
            )
        }
        _ => return None,
    })
}

/// A host that writes raw bytes and reads (or stops reading) what comes back.
async fn raw_client(
    host: &str,
    journal: &Journal,
    transport: &Recorder,
    rx: &mut mpsc::UnboundedReceiver<ClientCmd>,
) -> turmoil::Result {
    let (stream, _) = match transport.connect("server", PORT).await {
        Ok(pair) => pair,
        Err(err) => {
            journal.client_saw(host, &format!("! could not connect: {err}"));
            closed(journal, host, err.to_string());
            return Ok(());
        }
    };
    let (mut reader, mut writer) = tokio::io::split(stream);
    let mut buf = vec![0u8; 4096];
    let (mut reading, mut commands_open) = (true, true);
    loop {
        tokio::select! {
            biased;
            n = reader.read(&mut buf), if reading => match n {
                Ok(0) | Err(_) => {
                    journal.client_saw(host, "! connection closed");
                    closed(journal, host, "connection closed".into());
                    break;
                }
                Ok(_) => {}
            },
            cmd = rx.recv(), if commands_open => match cmd {
                Some(ClientCmd::Write(bytes)) => {
                    if writer.write_all(&bytes).await.is_err() {
                        journal.client_saw(host, "! write failed");
                    }
                }
                Some(ClientCmd::StopReading) => {
                    reading = false;
                    journal.lock().clients.entry(host.to_owned()).or_default().stopped_reading = true;
                }
                Some(ClientCmd::Session(_)) => {}
                None => commands_open = false,
            },
            _ = std::future::pending::<()>(), if !reading && !commands_open => {}
        }
    }
    Ok(())
}

/// The simulation's password check: the stored form is `plain:<password>`.
fn plain_password(stored: &str, given: &str) -> bool {
    stored.strip_prefix("plain:") == Some(given)
}
