//! The real server runtime and client session, unchanged, inside turmoil.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use parla_net::addr::ServerAddr;
use parla_net::client::{self, ClientConfig, Command, Event, Said};
use parla_net::server::{ServerOptions, run};
use parla_net::transport::Transport;
use parla_sim::Sim;
use parla_testkit::{Answer, FakePinger};
use tokio_util::sync::CancellationToken;

/// A pinger that is never used (ICMP is off in this test).
fn no_ping() -> FakePinger {
    FakePinger::always(Answer::Timeout)
}

fn client_config(name: &str) -> ClientConfig {
    let mut config = ClientConfig::new(ServerAddr::plain("server", 8080));
    config.ping = None;
    config.session.username = name.into();
    config
}

/// Waits for the first event matching `pred`, returning it.
async fn until(
    events: &mut tokio::sync::mpsc::Receiver<Event>,
    pred: impl Fn(&Event) -> bool,
) -> Event {
    loop {
        let ev = events.recv().await.expect("session ended early");
        if pred(&ev) {
            return ev;
        }
    }
}

#[test]
fn two_clients_chat_through_the_real_server_in_simulation() {
    let mut sim = turmoil::Builder::new()
        .rng_seed(7)
        .epoch(std::time::UNIX_EPOCH + Duration::from_secs(1_795_000_000))
        .simulation_duration(Duration::from_secs(60))
        .build();
    sim.host("server", || async {
        let listener = Sim
            .bind(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 8080))
            .await?;
        let options = ServerOptions {
            epoch_millis: 1_795_000_000_000,
            ..ServerOptions::default()
        };
        run(listener, options, CancellationToken::new()).await;
        Ok(())
    });
    sim.client("alice", async {
        let mut c = client::connect(&Sim, no_ping(), client_config("alice")).await?;
        c.commands.send(Command::Nick("alice".into())).await?;
        until(&mut c.events, |e| matches!(e, Event::Members { members, .. } if members.len() == 2)).await;
        c.commands.send(Command::Say("hi bob".into())).await?;
        let reply = until(&mut c.events, |e| matches!(e, Event::Message(Said { own: false, .. }))).await;
        assert!(matches!(reply, Event::Message(Said { ref from, ref text, .. }) if from == "bob" && text == "hi alice"));
        c.commands.send(Command::Quit(None)).await?;
        until(&mut c.events, |e| matches!(e, Event::Disconnected(_))).await;
        Ok(())
    });
    sim.client("bob", async {
        let mut c = client::connect(&Sim, no_ping(), client_config("bob")).await?;
        c.commands.send(Command::Nick("bob".into())).await?;
        let got = until(&mut c.events, |e| matches!(e, Event::Message { .. })).await;
        assert!(matches!(got, Event::Message(Said { ref from, ref text, .. }) if from == "alice" && text == "hi bob"));
        c.commands.send(Command::Say("hi alice".into())).await?;
        until(&mut c.events, |e| matches!(e, Event::UserQuit { name, .. } if name == "alice")).await;
        Ok(())
    });
    sim.run().expect("the simulation succeeds");
}
