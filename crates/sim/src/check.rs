//! The invariants checked after every simulation (names are also checked at every instant, by
//! [`crate::journal::ServerWatch`]).

use std::time::Duration;

use crate::journal::Records;

/// Checks the state at the end of a run; returns every broken invariant.
pub fn final_state(r: &Records) -> Vec<String> {
    let mut v = Vec::new();
    if r.cluster {
        // The servers of a cluster are watched by `cluster` below, not connection by connection.
        return v;
    }
    delivery(r, &mut v);
    let latest = r.servers.keys().max().copied();
    let Some(latest) = latest else { return v };
    let server = &r.servers[&latest];
    let server_alive = !server.crashed && !server.shut_down;
    // Which client holds each live connection of the latest server.
    let owner = |conn: u64| -> Option<(&String, bool)> {
        let peer = r.conns.get(&(latest, conn))?.peer?;
        let (name, c) = r.client_at(peer)?;
        Some((
            name,
            c.local == Some(peer) && c.closed.is_none() && !c.crashed,
        ))
    };
    // The server has yet to read lines a client wrote on this connection before it closed it
    // or crashed (what it wrote is in flight or in the server's buffer, and is read): a client
    // that flooded and went is still being read, at the flood rate, and its name held until its
    // QUIT is read, or (crashed) until the server finds the connection silent (seed 3900507 at
    // 80 steps: 40 flood lines and long messages read for 22 s after the crash). Were it lost,
    // the server would time the connection out, and its name would go with it.
    let unread = |conn: u64| -> bool {
        let Some(record) = r.conns.get(&(latest, conn)) else {
            return false;
        };
        let Some((client, peer)) = record
            .peer
            .and_then(|peer| Some((r.client_at(peer)?.1, peer)))
        else {
            return false;
        };
        record.read < client.sent.get(&peer).copied().unwrap_or(0)
    };
    if server_alive {
        // A name is free once its holder has left (and the server has read all it wrote) or
        // timed out.
        for (conn, nick) in &server.nicks {
            match owner(*conn) {
                Some((_, true)) => {}
                Some((_, false)) if unread(*conn) => {}
                Some((name, false)) => v.push(format!(
                    "the name {nick:?} is still held for {name}, which has left"
                )),
                None => v.push(format!(
                    "the name {nick:?} is held by connection c{conn}, which no client owns"
                )),
            }
        }
        let everyone_left = r
            .clients
            .values()
            .all(|c| c.closed.is_some() || c.crashed || !c.connected);
        if everyone_left && (server.conns > 0 || !server.nicks.is_empty()) {
            v.push(format!(
                "everyone has left but the server still has {} connection(s) and names {:?}",
                server.conns, server.nicks
            ));
        }
    }
    for (name, c) in &r.clients {
        // One that is connecting again after losing its connection is between connections
        // (and never heard of a shutdown that came after the loss).
        if c.crashed || c.closed.is_some() || !c.connected || c.raw || c.reconnecting() {
            continue;
        }
        if server.shut_down {
            v.push(format!("{name} is still open after the server shut down"));
            continue;
        }
        // No client hangs: an open client must have a live connection on a live server.
        let live = server_alive
            && c.local.is_some()
            && r.conns
                .iter()
                .any(|(&(inc, _), conn)| inc == latest && !conn.closed && conn.peer == c.local);
        if !live {
            v.push(format!(
                "{name} is still open but has no live connection to the server: it hangs"
            ));
        }
    }
    v
}

/// Lines queued this close to the end of a run may still be on the wire.
const IN_FLIGHT: Duration = Duration::from_secs(5);

/// Every line the core queued for a connection reaches its client exactly once and in order,
/// unless the connection broke (then a prefix); when the client read the final `ERROR`, or is
/// still connected at the end, all of it (but what was queued in the last moments).
fn delivery(r: &Records, v: &mut Vec<String>) {
    for (&(inc, conn), record) in &r.conns {
        let Some(peer) = record.peer else { continue };
        let Some((name, client)) = r.client_at(peer) else {
            continue;
        };
        let got = &client.received[&peer];
        let queued: Vec<&String> = record.queued.iter().map(|(_, l)| l).collect();
        if let Some(i) = got.iter().zip(&queued).position(|(a, b)| a != *b) {
            v.push(format!(
                "{name} (server {inc} c{conn}) read line {} as {:?}, but the server queued {:?}",
                i + 1,
                got[i],
                queued[i]
            ));
            continue;
        }
        if got.len() > queued.len() {
            v.push(format!(
                "{name} (server {inc} c{conn}) read {} lines, more than the {} the server queued",
                got.len(),
                queued.len()
            ));
            continue;
        }
        let read_error = got.last().is_some_and(|l| l.starts_with("ERROR"));
        let server_crashed = r.servers.get(&inc).is_some_and(|s| s.crashed);
        let still_connected = !server_crashed
            && client.closed.is_none()
            && !client.crashed
            && !client.stopped_reading
            // One that saw this connection end and is connecting again reads no more of it.
            && !client.reconnecting()
            && client.local == Some(peer)
            && !record.closed;
        let in_flight = |i: usize| record.queued[i].0 + IN_FLIGHT >= r.ended_at;
        let missing =
            got.len() < queued.len() && !(still_connected && !read_error && in_flight(got.len()));
        if (read_error || still_connected) && missing {
            v.push(format!(
                "{name} (server {inc} c{conn}) lost messages: it read {} of the {} lines queued for it; the first missing is {:?}",
                got.len(),
                queued.len(),
                queued[got.len()]
            ));
        }
    }
}

/// A cluster's invariants (nothing to check for one server):
/// - every server has the same names and rooms at the same position of the log, and in that
///   picture a name (compared as IRC folds it) has one holder: a name is held once in the whole
///   cluster at every position;
/// - one order: the messages each connection received live (not history) carry ids that only
///   grow (ids count in log order), and a message id means the same message to everyone.
pub fn cluster(r: &Records) -> Vec<String> {
    let mut v = Vec::new();
    for (seq, pictures) in &r.replicas {
        let mut distinct = pictures.values().collect::<Vec<_>>();
        distinct.dedup();
        if distinct.len() > 1 {
            v.push(format!(
                "the servers disagree at log position {seq}: {pictures:?}"
            ));
            break; // later positions only repeat it
        }
        if let Some(picture) = pictures.values().next()
            && let Some(name) = held_twice(picture)
        {
            v.push(format!(
                "two connections hold the name {name:?} at log position {seq}: {picture}"
            ));
            break;
        }
    }
    if !r.cluster {
        return v;
    }
    let mut meaning: std::collections::BTreeMap<String, String> = Default::default();
    for (name, client) in &r.clients {
        for (conn, lines) in &client.received {
            let mut last: Option<(u64, &str)> = None;
            for line in lines {
                let Some((id, message)) = live_message(line) else {
                    continue;
                };
                let Some(n) = id
                    .rsplit('-')
                    .next()
                    .and_then(|n| u64::from_str_radix(n, 16).ok())
                else {
                    continue;
                };
                // The same id twice in a row is one message and its echo (to oneself).
                if let Some((before, earlier)) = last
                    && n < before
                {
                    v.push(format!(
                        "{name} ({conn}) received {line:?} after {earlier:?}: not in log order"
                    ));
                }
                last = Some((n, line));
                match meaning.get(&id) {
                    Some(m) if m != message => v.push(format!(
                        "message id {id} is {m:?} to one client and {message:?} to {name}"
                    )),
                    Some(_) => {}
                    None => {
                        meaning.insert(id, message.to_owned());
                    }
                }
            }
        }
    }
    v
}

/// A name two connections hold in a server's digest (`Server::digest`: a line per connection,
/// `ConnId(n) Some("nick") …`), if any.
fn held_twice(picture: &str) -> Option<String> {
    let mut held = std::collections::BTreeSet::new();
    for line in picture.lines().filter(|l| l.starts_with("ConnId(")) {
        let Some(nick) = line
            .split(' ')
            .nth(1)
            .and_then(|n| n.strip_prefix("Some(\""))
        else {
            continue;
        };
        let folded = parla_room::names::casefold(nick.trim_end_matches("\")"));
        if !held.insert(folded.clone()) {
            return Some(folded);
        }
    }
    None
}

/// A message received live (not in a batch): its id and the rest of the line after the tags.
fn live_message(line: &str) -> Option<(String, &str)> {
    let msg = parla_room::Message::parse(line).ok()?;
    // A multiline message's id is on its BATCH line for those who take batches, and on its
    // first line for the others: not one text to compare.
    if msg.verb == "BATCH" || msg.tags.iter().any(|t| t.key == "batch") {
        return None;
    }
    let id = msg
        .tags
        .iter()
        .find(|t| t.key == "msgid")?
        .value
        .to_string();
    let (_, rest) = line.strip_prefix('@')?.split_once(' ')?;
    Some((id, rest))
}

#[cfg(test)]
mod cluster_tests {
    use super::cluster;
    use crate::journal::Records;

    fn two_servers(a: &str, b: &str) -> Records {
        let mut r = Records {
            cluster: true,
            ..Records::default()
        };
        let at = r.replicas.entry(7).or_default();
        at.insert("server".into(), a.into());
        at.insert("server2".into(), b.into());
        r
    }

    fn received(r: &mut Records, client: &str, lines: &[&str]) {
        let c = r.clients.entry(client.into()).or_default();
        let conn = "192.168.0.9:49152".parse().unwrap();
        c.received
            .insert(conn, lines.iter().map(|l| l.to_string()).collect());
    }

    #[test]
    fn servers_that_disagree_at_one_position_are_found() {
        assert!(cluster(&two_servers("names [\"a\"]", "names [\"a\"]")).is_empty());
        let v = cluster(&two_servers("names [\"a\"]", "names [\"a\", \"a\"]"));
        assert!(v[0].contains("disagree at log position 7"), "{v:?}");
    }

    #[test]
    fn messages_out_of_log_order_or_with_two_meanings_are_found() {
        let mut r = two_servers("x", "x");
        let m = |id: &str, text: &str| format!("@msgid=e-{id} :a!~a@h PRIVMSG #lobby :{text}");
        received(
            &mut r,
            "alice",
            &[&m("1", "one"), &m("3", "three"), &m("2", "two")],
        );
        received(&mut r, "bob", &[&m("1", "one"), &m("3", "other")]);
        // Replayed history comes in a batch, in its own order: not checked.
        received(
            &mut r,
            "carol",
            &[
                &m("3", "three"),
                "@batch=H1;msgid=e-1 :a!~a@h PRIVMSG #lobby :one",
            ],
        );
        let v = cluster(&r);
        assert_eq!(v.len(), 2, "{v:?}");
        assert!(v[0].contains("not in log order"), "{v:?}");
        assert!(v[1].contains("message id e-3"), "{v:?}");
    }
}

#[cfg(test)]
mod tests {
    use parla_room::{Config, Millis, Server};

    /// The digest of a core where alice registered, as the cluster check reads it.
    fn digest_with_alice() -> String {
        let mut core = Server::new(Config::default(), Millis(1));
        let id = core.handle_connect(Millis(1), "192.0.2.1");
        core.handle_line(Millis(1), id, b"NICK alice");
        core.handle_line(Millis(1), id, b"USER a 0 * :A");
        core.digest()
    }

    #[test]
    fn a_name_held_twice_in_a_picture_is_found_as_irc_folds_it() {
        let picture = digest_with_alice();
        assert_eq!(super::held_twice(&picture), None, "{picture}");
        let line = picture
            .lines()
            .find(|l| l.starts_with("ConnId(1)"))
            .unwrap();
        let twin = line
            .replacen("ConnId(1)", "ConnId(2)", 1)
            .replacen("\"alice\"", "\"ALICE\"", 1);
        let doubled = format!("{picture}{twin}\n");
        assert_eq!(super::held_twice(&doubled).as_deref(), Some("alice"));
    }
}
