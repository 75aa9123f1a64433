//! ICMPv4 Destination Unreachable, Fragmentation Needed and DF Set (type 3, code 4), with the
//! next-hop MTU of RFC 1191 §4, and Port Unreachable (code 3, bytes 4-7 unused):
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |   Type = 3    |   Code = 4    |           Checksum            |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |           unused = 0          |         Next-Hop MTU          |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |      Internet Header + 64 bits of Original Datagram Data      |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! smoltcp's `Icmpv4Repr::DstUnreachable` cannot carry the MTU (it writes bytes 4-7 as unused)
//! and re-emits the quoted header from an `Ipv4Repr`, losing its ident and flags; its `parse`
//! also rejects a quote shorter than the quoted header's Total Length, i.e. every real one.
//! So the type, code, quote and checksum go through `Icmpv4Packet`, and the MTU bytes are
//! written here.
//! The message is the ICMP part only: the caller wraps it in an IPv4 header (protocol 1).

use smoltcp::wire::{Icmpv4DstUnreachable, Icmpv4Message, Icmpv4Packet};

/// Length of the ICMP header before the quoted datagram.
const HEADER_LEN: usize = 8;
/// Where the next-hop MTU sits (RFC 1191 §4; bytes 4-5 stay "unused = 0").
const MTU: core::ops::Range<usize> = 6..8;
/// "Internet Header + 64 bits of Original Datagram Data" (RFC 792).
const QUOTED_PAYLOAD: usize = 8;

/// Builds the ICMP "fragmentation needed" message for `orig_ip_packet` (an IPv4 packet with DF
/// set that did not fit `next_hop_mtu`). It quotes the original IP header (options included)
/// and the first 8 bytes of its payload, or less if the packet is shorter, verbatim.
pub fn frag_needed(orig_ip_packet: &[u8], next_hop_mtu: u16) -> Vec<u8> {
    let ihl = orig_ip_packet.first().map_or(0, |b| (b & 0x0f) as usize * 4);
    frag_needed_quoting(orig_ip_packet, next_hop_mtu, (ihl + QUOTED_PAYLOAD).min(orig_ip_packet.len()))
}

/// Most of the original datagram Linux quotes: "as much as we can without exceeding 576
/// bytes" (net/ipv4/icmp.c `__icmp_send`): 576 - 20 (IPv4) - 8 (ICMP).
pub const LINUX_MAX_QUOTE: usize = 548;

/// The message as Linux sends it: quoting up to [`LINUX_MAX_QUOTE`] bytes of the original.
pub fn frag_needed_linux(orig_ip_packet: &[u8], next_hop_mtu: u16) -> Vec<u8> {
    frag_needed_quoting(orig_ip_packet, next_hop_mtu, orig_ip_packet.len().min(LINUX_MAX_QUOTE))
}

/// ICMP Destination Unreachable, Port Unreachable (type 3, code 3) for `orig_ip_packet`, as
/// Linux sends it (quoting up to [`LINUX_MAX_QUOTE`] bytes; bytes 4-7 unused, zero):
/// what `-j REJECT` sends by default (`--reject-with icmp-port-unreachable`,
/// `nf_send_unreach`, net/ipv4/netfilter/nf_reject_ipv4.c) and Cilium's answer for a Service
/// without backends (`--service-no-backend-response=reject`, cilium/cilium#28157).
pub fn port_unreachable_linux(orig_ip_packet: &[u8]) -> Vec<u8> {
    let quote_len = orig_ip_packet.len().min(LINUX_MAX_QUOTE);
    unreachable(orig_ip_packet, Icmpv4DstUnreachable::PortUnreachable, 0, quote_len)
}

/// Whether `icmp` is a Port Unreachable with a right checksum; the quoted datagram if so.
pub fn parse_port_unreachable(icmp: &[u8]) -> Option<&[u8]> {
    let packet = Icmpv4Packet::new_checked(icmp).ok()?;
    let ok = packet.msg_type() == Icmpv4Message::DstUnreachable
        && packet.msg_code() == u8::from(Icmpv4DstUnreachable::PortUnreachable)
        && packet.verify_checksum();
    ok.then(|| &icmp[HEADER_LEN..])
}

fn frag_needed_quoting(orig_ip_packet: &[u8], next_hop_mtu: u16, quote_len: usize) -> Vec<u8> {
    unreachable(orig_ip_packet, Icmpv4DstUnreachable::FragRequired, next_hop_mtu, quote_len)
}

fn unreachable(
    orig_ip_packet: &[u8],
    code: Icmpv4DstUnreachable,
    next_hop_mtu: u16,
    quote_len: usize,
) -> Vec<u8> {
    let mut bytes = vec![0u8; HEADER_LEN + quote_len];
    bytes[MTU].copy_from_slice(&next_hop_mtu.to_be_bytes());
    let mut icmp = Icmpv4Packet::new_unchecked(&mut bytes[..]);
    icmp.set_msg_type(Icmpv4Message::DstUnreachable);
    icmp.set_msg_code(code.into());
    icmp.data_mut().copy_from_slice(&orig_ip_packet[..quote_len]);
    icmp.fill_checksum();
    bytes
}

/// Reads a "fragmentation needed" message: the next-hop MTU and the quoted datagram (the
/// original IP header followed by the payload bytes quoted with it). `None` if `icmp` is not
/// type 3 code 4, its checksum is wrong, or the quote does not hold a whole IPv4 header.
/// An MTU of 0 comes from a router older than RFC 1191; the caller picks a plateau value.
pub fn parse_frag_needed(icmp: &[u8]) -> Option<(u16, &[u8])> {
    let packet = Icmpv4Packet::new_checked(icmp).ok()?;
    if packet.msg_type() != Icmpv4Message::DstUnreachable
        || packet.msg_code() != u8::from(Icmpv4DstUnreachable::FragRequired)
        || !packet.verify_checksum()
    {
        return None;
    }
    let quote = packet.data();
    let version = quote.first()? >> 4;
    let ihl = (quote[0] & 0x0f) as usize * 4;
    if version != 4 || ihl < 20 || quote.len() < ihl {
        return None;
    }
    Some((u16::from_be_bytes([icmp[MTU.start], icmp[MTU.start + 1]]), quote))
}

#[cfg(test)]
mod tests {
    use super::*;

    // The DF-set UDP datagram of `net::packet`'s test: 10.244.0.2:40000 -> 10.244.1.2:5201,
    // 4 bytes of payload (32 bytes in all).
    #[rustfmt::skip]
    static ORIG_PACKET: [u8; 32] = [
        0x45, 0x00, 0x00, 0x20, 0x00, 0x01, 0x40, 0x00, 0x40, 0x11, 0x23, 0xe1,
        0x0a, 0xf4, 0x00, 0x02, 0x0a, 0xf4, 0x01, 0x02,
        0x9c, 0x40, 0x14, 0x51, 0x00, 0x0c, 0x38, 0x59,
        0x00, 0x00, 0x00, 0x00,
    ];

    // Next-hop MTU 1450 (0x05aa). Checksum 0x0e5b computed by hand with RFC 1071's
    // one's-complement sum (python3, independently of this code and of smoltcp).
    #[rustfmt::skip]
    static MESSAGE: [u8; 36] = [
        0x03, 0x04, 0x0e, 0x5b,
        0x00, 0x00, 0x05, 0xaa,
        // the IP header, verbatim
        0x45, 0x00, 0x00, 0x20, 0x00, 0x01, 0x40, 0x00, 0x40, 0x11, 0x23, 0xe1,
        0x0a, 0xf4, 0x00, 0x02, 0x0a, 0xf4, 0x01, 0x02,
        // 64 bits of the original data: the UDP header
        0x9c, 0x40, 0x14, 0x51, 0x00, 0x0c, 0x38, 0x59,
    ];

    #[test]
    fn port_unreachable_quotes_the_whole_short_datagram() {
        // Type 3 code 3, bytes 4-7 zero, the 32-byte datagram quoted whole (shorter than 548).
        // Checksum 0x1406 by hand (python3, RFC 1071).
        let msg = port_unreachable_linux(&ORIG_PACKET);
        assert_eq!(msg[..8], [0x03, 0x03, 0x14, 0x06, 0, 0, 0, 0]);
        assert_eq!(msg[8..], ORIG_PACKET);
        assert_eq!(parse_port_unreachable(&msg), Some(&ORIG_PACKET[..]));
        assert_eq!(parse_port_unreachable(&MESSAGE), None, "a fragmentation-needed is not one");
        assert_eq!(parse_frag_needed(&msg), None);
    }

    #[test]
    fn emit() {
        assert_eq!(frag_needed(&ORIG_PACKET, 1450), MESSAGE);
    }

    #[test]
    fn parse() {
        assert_eq!(parse_frag_needed(&MESSAGE), Some((1450, &ORIG_PACKET[..28])));
    }

    #[test]
    fn smoltcp_reads_type_code_and_checksum() {
        // Not `Icmpv4Repr::parse`: it checks the quoted header against its own Total Length,
        // so it rejects every RFC 792 quote of a datagram longer than header + 8 bytes.
        let packet = Icmpv4Packet::new_checked(&MESSAGE[..]).unwrap();
        assert_eq!(packet.msg_type(), Icmpv4Message::DstUnreachable);
        assert_eq!(packet.msg_code(), u8::from(Icmpv4DstUnreachable::FragRequired));
        assert!(packet.verify_checksum());
        assert_eq!(packet.data(), &ORIG_PACKET[..28]);
    }

    #[test]
    fn short_packet_quoted_whole() {
        let msg = frag_needed(&ORIG_PACKET[..24], 1400);
        assert_eq!(msg.len(), 8 + 24);
        assert_eq!(parse_frag_needed(&msg), Some((1400, &ORIG_PACKET[..24])));
    }

    #[test]
    fn bad_checksum_rejected() {
        let mut msg = MESSAGE;
        msg[7] ^= 1;
        assert_eq!(parse_frag_needed(&msg), None);
    }

    #[test]
    fn other_codes_rejected() {
        // Port unreachable (code 3), checksum adjusted: the first word drops by 1, so its
        // complement rises by 1.
        let mut msg = MESSAGE;
        msg[1] = 3;
        msg[2..4].copy_from_slice(&0x0e5cu16.to_be_bytes());
        assert!(Icmpv4Packet::new_checked(&msg[..]).unwrap().verify_checksum());
        assert_eq!(parse_frag_needed(&msg), None);
    }

    #[test]
    fn truncated_rejected() {
        assert_eq!(parse_frag_needed(&MESSAGE[..7]), None);
        // Header intact, quote shorter than an IP header (checksum no longer matches either).
        assert_eq!(parse_frag_needed(&MESSAGE[..20]), None);
        assert_eq!(parse_frag_needed(&frag_needed(&ORIG_PACKET[..12], 1400)), None);
    }
}
