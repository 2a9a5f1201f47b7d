//! The bytes of an ICMP echo exchange: the request we send and the test for "this is the reply
//! to it". Kept apart from the sockets so that every case (our own request looped back, a stale
//! or foreign reply, a kernel-rewritten identifier) is tested on byte slices.

use std::net::IpAddr;

use super::SocketKind;

const ICMPV4_ECHO_REPLY: u8 = 0;
const ICMPV4_ECHO_REQUEST: u8 = 8;
const ICMPV6_ECHO_REQUEST: u8 = 128;
const ICMPV6_ECHO_REPLY: u8 = 129;

/// Length of the ICMP echo header: type, code, checksum, identifier, sequence.
const HEADER_LEN: usize = 8;
/// Start of every payload we send; replies echo it back verbatim.
const MAGIC: [u8; 8] = *b"ParlaPng";
/// Header + magic + identifier + sequence.
const PACKET_LEN: usize = HEADER_LEN + MAGIC.len() + 4;

/// The IP version of a target, which decides the ICMP flavour (ICMP or ICMPv6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Family {
    V4,
    V6,
}

impl Family {
    pub(super) fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }

    fn echo_request_type(self) -> u8 {
        match self {
            Family::V4 => ICMPV4_ECHO_REQUEST,
            Family::V6 => ICMPV6_ECHO_REQUEST,
        }
    }

    fn echo_reply_type(self) -> u8 {
        match self {
            Family::V4 => ICMPV4_ECHO_REPLY,
            Family::V6 => ICMPV6_ECHO_REPLY,
        }
    }
}

/// The RFC 1071 internet checksum of `data`.
fn internet_checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut words = data.chunks_exact(2);
    for word in &mut words {
        sum += u32::from(u16::from_be_bytes([word[0], word[1]]));
    }
    if let [last] = words.remainder() {
        sum += u32::from(*last) << 8;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Builds an echo request. The payload repeats identifier and sequence number because a datagram
/// socket's kernel rewrites the header's identifier.
pub(super) fn echo_request(family: Family, identifier: u16, sequence: u16) -> [u8; PACKET_LEN] {
    let mut packet = [0u8; PACKET_LEN];
    packet[0] = family.echo_request_type();
    packet[4..6].copy_from_slice(&identifier.to_be_bytes());
    packet[6..8].copy_from_slice(&sequence.to_be_bytes());
    packet[8..16].copy_from_slice(&MAGIC);
    packet[16..18].copy_from_slice(&identifier.to_be_bytes());
    packet[18..20].copy_from_slice(&sequence.to_be_bytes());
    // The kernel fills in ICMPv6 checksums (it needs the IPv6 pseudo-header) and those of ICMP
    // datagram sockets; for raw IPv4 sockets it is our job. Computing it always is harmless.
    if family == Family::V4 {
        let checksum = internet_checksum(&packet);
        packet[2..4].copy_from_slice(&checksum.to_be_bytes());
    }
    packet
}

/// Whether `received` (as read from a socket of `family` and `kind`) is the echo reply to our
/// request `identifier`/`sequence`. Everything else — our own request looped back to a raw
/// socket, other processes' pings, replies to earlier (timed-out) requests — is not.
pub(super) fn is_echo_reply(
    family: Family,
    kind: SocketKind,
    received: &[u8],
    identifier: u16,
    sequence: u16,
) -> bool {
    let icmp = if family == Family::V4 && kind == SocketKind::Raw {
        // Raw IPv4 sockets hand us the IP header too; ICMPv6 and datagram sockets do not.
        let Some(&first) = received.first() else {
            return false;
        };
        let header_len = usize::from(first & 0x0f) * 4;
        if first >> 4 != 4 || header_len < 20 {
            return false;
        }
        match received.get(header_len..) {
            Some(icmp) => icmp,
            None => return false,
        }
    } else {
        received
    };
    if icmp.len() < PACKET_LEN || icmp[0] != family.echo_reply_type() || icmp[1] != 0 {
        return false;
    }
    if family == Family::V4 && kind == SocketKind::Raw && internet_checksum(icmp) != 0 {
        return false;
    }
    let be16 = |at: usize| u16::from_be_bytes([icmp[at], icmp[at + 1]]);
    // A datagram socket's kernel replaced the header's identifier with its own (and only gives
    // us replies to it), so only a raw socket can check it.
    let header_identifier_ok = kind == SocketKind::Datagram || be16(4) == identifier;
    header_identifier_ok
        && be16(6) == sequence
        && icmp[8..16] == MAGIC
        && be16(16) == identifier
        && be16(18) == sequence
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_matches_rfc_1071_example() {
        // RFC 1071 section 3: words 0001 f203 f4f5 f6f7 sum to ddf2, complemented 220d.
        assert_eq!(
            internet_checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            0x220d
        );
        assert_eq!(internet_checksum(&[0xff]), !0xff00);
        let request = echo_request(Family::V4, 0x1234, 7);
        assert_eq!(
            internet_checksum(&request),
            0,
            "a valid packet sums to zero"
        );
    }

    /// Turns our request into the reply a host would send (type changed, checksum fixed).
    fn reply_to(request: &[u8], family: Family) -> Vec<u8> {
        let mut reply = request.to_vec();
        reply[0] = family.echo_reply_type();
        reply[2..4].fill(0);
        if family == Family::V4 {
            let checksum = internet_checksum(&reply);
            reply[2..4].copy_from_slice(&checksum.to_be_bytes());
        }
        reply
    }

    fn with_ipv4_header(icmp: &[u8]) -> Vec<u8> {
        // Version 4, IHL 6 (one word of options) to check that the header length is honoured.
        let mut packet = vec![
            0x46, 0, 0, 0, 0, 0, 0, 0, 64, 1, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1,
        ];
        packet.extend_from_slice(&[1, 1, 1, 0]);
        packet.extend_from_slice(icmp);
        packet
    }

    #[test]
    fn matches_only_our_reply() {
        use SocketKind::{Datagram, Raw};
        for family in [Family::V4, Family::V6] {
            let request = echo_request(family, 0xbeef, 42);
            let reply = reply_to(&request, family);
            let raw = |icmp: &[u8]| match family {
                Family::V4 => with_ipv4_header(icmp),
                Family::V6 => icmp.to_vec(),
            };
            assert!(is_echo_reply(family, Raw, &raw(&reply), 0xbeef, 42));
            assert!(is_echo_reply(family, Datagram, &reply, 0xbeef, 42));
            // Our own request, looped back to a raw socket.
            assert!(!is_echo_reply(family, Raw, &raw(&request), 0xbeef, 42));
            // A stale reply to an earlier sequence number.
            let stale = reply_to(&echo_request(family, 0xbeef, 41), family);
            assert!(!is_echo_reply(family, Raw, &raw(&stale), 0xbeef, 42));
            assert!(!is_echo_reply(family, Datagram, &stale, 0xbeef, 42));
            // Another pinger's reply (different identifier).
            let other = reply_to(&echo_request(family, 0xcafe, 42), family);
            assert!(!is_echo_reply(family, Raw, &raw(&other), 0xbeef, 42));
            assert!(!is_echo_reply(family, Datagram, &other, 0xbeef, 42));
            // A datagram socket's kernel rewrote the header identifier: still ours.
            let mut rewritten = reply.clone();
            rewritten[4..6].copy_from_slice(&0x0102u16.to_be_bytes());
            assert!(is_echo_reply(family, Datagram, &rewritten, 0xbeef, 42));
            // Truncated, empty, or foreign payload.
            assert!(!is_echo_reply(
                family,
                Datagram,
                &reply[..PACKET_LEN - 1],
                0xbeef,
                42
            ));
            assert!(!is_echo_reply(family, Raw, &[], 0xbeef, 42));
            let mut foreign = reply.clone();
            foreign[8] ^= 0xff;
            assert!(!is_echo_reply(family, Datagram, &foreign, 0xbeef, 42));
        }
        // A corrupted IPv4 packet on a raw socket.
        let mut corrupt = reply_to(&echo_request(Family::V4, 1, 2), Family::V4);
        corrupt[19] ^= 0x01;
        corrupt[8] ^= 0x01;
        assert!(!is_echo_reply(
            Family::V4,
            Raw,
            &with_ipv4_header(&corrupt),
            1,
            2
        ));
    }
}
