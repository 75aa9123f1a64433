//! The Internet checksum (RFC 1071), and the TCP and UDP checksums over
//! IPv4 (RFC 793 §3.1, RFC 768) computed with it.
//!
//! smoltcp sums 16-bit words into a `u32`; this sums 32-bit words into eight `u64` lanes.
//! The ones' complement sum is the same (2^16 is 1 modulo 2^16 - 1, so a 32-bit word adds
//! what its two 16-bit halves add, RFC 1071 §2(C)), and a lane cannot overflow before 2^32
//! words; it runs at smoltcp's speed (20-30 GB/s here, both vectorised). What it adds is the
//! API the kernel's paths need: checksums over IPv4 addresses for any buffer, the
//! `CHECKSUM_PARTIAL` pseudo-header sum, and RFC 1624's incremental update for NAT, which
//! spares NAT a pass over the packet.

use smoltcp::wire::{IpProtocol, Ipv4Address};

/// The 16-bit ones' complement sum of `data` (not complemented), an odd last byte padded with
/// zero: what `smoltcp::wire::ip::checksum::data` returns.
pub fn sum(data: &[u8]) -> u16 {
    fold(wide(data))
}

/// The sum of `data` (16-bit big-endian words, an odd last byte padded with zero), folded to
/// 16 bits but held in a `u64` for the pseudo-header to be added to.
fn wide(data: &[u8]) -> u64 {
    // Native-endian 32-bit words in eight lanes (the compiler turns them into vector adds),
    // byte-swapped once at the end: the ones' complement sum does not depend on byte order
    // (RFC 1071 §2(B)).
    let mut blocks = data.chunks_exact(32);
    let mut lanes = [0u64; 8];
    for block in &mut blocks {
        for (lane, w) in lanes.iter_mut().zip(block.chunks_exact(4)) {
            *lane += u64::from(u32::from_ne_bytes([w[0], w[1], w[2], w[3]]));
        }
    }
    let mut total = lanes.iter().sum::<u64>();
    let mut words = blocks.remainder().chunks_exact(4);
    for w in &mut words {
        total += u64::from(u32::from_ne_bytes([w[0], w[1], w[2], w[3]]));
    }
    let tail = words.remainder();
    let mut last = [0u8; 4];
    last[..tail.len()].copy_from_slice(tail);
    total += u64::from(u32::from_ne_bytes(last));
    u64::from(u16::from_be(fold(total)))
}

/// Folds a wide sum to 16 bits with end-around carries.
fn fold(mut s: u64) -> u16 {
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// The pseudo-header's sum for a TCP or UDP segment of `len` bytes (RFC 793 §3.1).
fn pseudo(src: Ipv4Address, dst: Ipv4Address, proto: IpProtocol, len: usize) -> u64 {
    u64::from(u32::from_be_bytes(src.octets()))
        + u64::from(u32::from_be_bytes(dst.octets()))
        + u64::from(u8::from(proto))
        + len as u64
}

/// Writes the checksum of the TCP segment `tcp` (header and payload) between `src` and `dst`:
/// what `smoltcp::wire::TcpPacket::fill_checksum` writes.
///
/// # Panics
/// If `tcp` is shorter than a TCP header's checksum field (bytes 16..18).
pub fn fill_tcp(tcp: &mut [u8], src: Ipv4Address, dst: Ipv4Address) {
    tcp[16..18].fill(0);
    let s = !fold(pseudo(src, dst, IpProtocol::Tcp, tcp.len()) + wide(tcp));
    tcp[16..18].copy_from_slice(&s.to_be_bytes());
}

/// Writes what a `CHECKSUM_PARTIAL` TCP segment carries in its checksum field: the
/// pseudo-header's sum, not complemented, for the device to complete over the segment
/// (`tcp_v4_send_check`: `th->check = ~tcp_v4_check(len, saddr, daddr, 0)`,
/// net/ipv4/tcp_ipv4.c).
///
/// # Panics
/// If `tcp` is shorter than a TCP header's checksum field (bytes 16..18).
pub fn fill_tcp_partial(tcp: &mut [u8], src: Ipv4Address, dst: Ipv4Address) {
    let s = fold(pseudo(src, dst, IpProtocol::Tcp, tcp.len()));
    tcp[16..18].copy_from_slice(&s.to_be_bytes());
}

/// Whether the TCP segment `tcp` between `src` and `dst` carries a right checksum. Always true
/// in a fuzzing build, as smoltcp's `verify_checksum` is, so that fuzzed bytes reach the code
/// behind the check.
pub fn tcp_ok(tcp: &[u8], src: Ipv4Address, dst: Ipv4Address) -> bool {
    cfg!(fuzzing) || fold(pseudo(src, dst, IpProtocol::Tcp, tcp.len()) + wide(tcp)) == 0xffff
}

/// Writes the checksum of the UDP datagram `udp` between `src` and `dst`, a computed zero sent
/// as all ones (RFC 768): what `smoltcp::wire::UdpPacket::fill_checksum` writes.
///
/// # Panics
/// If `udp` is shorter than a UDP header.
pub fn fill_udp(udp: &mut [u8], src: Ipv4Address, dst: Ipv4Address) {
    udp[6..8].fill(0);
    let s = match !fold(pseudo(src, dst, IpProtocol::Udp, udp.len()) + wide(udp)) {
        0 => 0xffff,
        s => s,
    };
    udp[6..8].copy_from_slice(&s.to_be_bytes());
}

/// Whether the UDP datagram `udp` between `src` and `dst` carries a right checksum; a zero
/// checksum (none sent) is right, as smoltcp's `verify_checksum` takes it. Always true in a
/// fuzzing build, as smoltcp's is.
pub fn udp_ok(udp: &[u8], src: Ipv4Address, dst: Ipv4Address) -> bool {
    if cfg!(fuzzing) || udp.get(6..8) == Some(&[0, 0]) {
        return true;
    }
    fold(pseudo(src, dst, IpProtocol::Udp, udp.len()) + wide(udp)) == 0xffff
}

/// A checksum updated for a change of some of the words it covers, `old` replaced by `new`
/// (equal lengths, even): RFC 1624's eqn. 3, HC' = ~(~HC + ~m + m'), as the kernel's NAT does
/// it (`inet_proto_csum_replace4`, net/core/utils.c) rather than summing the packet again. A
/// checksum that was right stays right; one that was wrong stays wrong by as much.
pub fn replace(check: u16, old: &[u8], new: &[u8]) -> u16 {
    debug_assert!(old.len() == new.len() && old.len() % 2 == 0);
    !fold(u64::from(!check) + u64::from(!sum(old)) + u64::from(sum(new)))
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};
    use smoltcp::wire::{IpAddress, TcpPacket, UdpPacket};

    use super::*;

    const SRC: Ipv4Address = Ipv4Address::new(10, 244, 1, 2);
    const DST: Ipv4Address = Ipv4Address::new(10, 244, 2, 3);

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3's worked example: 00 01 f2 03 f4 f5 f6 f7 sums to 0xddf2.
        assert_eq!(sum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]), 0xddf2);
        // An odd byte is padded with zero on the right.
        assert_eq!(sum(&[0x12]), 0x1200);
        assert_eq!(sum(&[]), 0);
    }

    /// RFC 1071 §4.1's loop: 16-bit words into a 32-bit sum, carries folded at the end.
    fn naive(b: &[u8]) -> u16 {
        let mut s: u32 = b.chunks(2).map(|w| u32::from(w[0]) << 8 | u32::from(*w.get(1).unwrap_or(&0))).sum();
        while s >> 16 != 0 {
            s = (s & 0xffff) + (s >> 16);
        }
        s as u16
    }

    #[test]
    fn equals_rfc1071_loop_on_random_buffers() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let lens = (0..1600).chain([65_535, 65_536 - 321]);
        for len in lens {
            let mut b = vec![0u8; len];
            rng.fill(&mut b[..]);
            assert_eq!(sum(&b), naive(&b), "length {len}");
            // All ones is where carries pile up.
            let ones = vec![0xffu8; len];
            assert_eq!(sum(&ones), naive(&ones), "all ones, length {len}");
        }
    }

    #[test]
    fn tcp_and_udp_as_smoltcp_writes_them() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(8);
        let (s, d) = (IpAddress::Ipv4(SRC), IpAddress::Ipv4(DST));
        for len in [20usize, 21, 32, 1_468, 65_215] {
            let mut ours = vec![0u8; len];
            rng.fill(&mut ours[..]);
            let mut theirs = ours.clone();
            fill_tcp(&mut ours, SRC, DST);
            TcpPacket::new_unchecked(&mut theirs[..]).fill_checksum(&s, &d);
            assert_eq!(ours, theirs, "TCP, {len} bytes");
            assert!(tcp_ok(&ours, SRC, DST));
            ours[len - 1] ^= 1;
            assert!(!tcp_ok(&ours, SRC, DST));
        }
        for len in [8usize, 9, 60, 1_472] {
            let mut ours = vec![0u8; len];
            rng.fill(&mut ours[..]);
            ours[4..6].copy_from_slice(&(len as u16).to_be_bytes());
            let mut theirs = ours.clone();
            fill_udp(&mut ours, SRC, DST);
            UdpPacket::new_unchecked(&mut theirs[..]).fill_checksum(&s, &d);
            assert_eq!(ours, theirs, "UDP, {len} bytes");
            assert!(udp_ok(&ours, SRC, DST));
            ours[7] ^= 0x10;
            assert!(!udp_ok(&ours, SRC, DST));
        }
    }

    #[test]
    fn a_partial_checksum_completes_to_the_full_one() {
        // The device sums the segment with the partial value in place and writes the
        // complement: the full checksum.
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(10);
        let mut seg = vec![0u8; 1_480];
        rng.fill(&mut seg[..]);
        fill_tcp_partial(&mut seg, SRC, DST);
        let completed = !sum(&seg);
        fill_tcp(&mut seg, SRC, DST);
        assert_eq!(completed.to_be_bytes(), [seg[16], seg[17]]);
    }

    #[test]
    fn replace_equals_a_full_recompute() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        for _ in 0..2_000 {
            let len = rng.random_range(20..200);
            let mut seg = vec![0u8; len];
            rng.fill(&mut seg[..]);
            fill_tcp(&mut seg, SRC, DST);
            // DNAT: a new destination address and port, as a Service's rule writes them.
            let to = Ipv4Address::from(rng.random::<u32>());
            let port: u16 = rng.random();
            let old = [&DST.octets()[..], &seg[2..4]].concat();
            let new = [&to.octets()[..], &port.to_be_bytes()[..]].concat();
            let check = u16::from_be_bytes([seg[16], seg[17]]);
            let updated = replace(check, &old, &new);
            seg[2..4].copy_from_slice(&port.to_be_bytes());
            let mut full = seg.clone();
            fill_tcp(&mut full, SRC, to);
            assert_eq!(updated.to_be_bytes(), [full[16], full[17]]);
        }
    }

    #[test]
    fn udp_zero_is_sent_as_all_ones() {
        // A datagram whose checksum computes to zero: find one by adjusting a payload word.
        let mut d = vec![0u8; 10];
        d[4..6].copy_from_slice(&10u16.to_be_bytes());
        fill_udp(&mut d, SRC, DST);
        let c = u16::from_be_bytes([d[6], d[7]]);
        // Put the complement of the checksum into the payload: the sum becomes all ones.
        let w = u16::from_be_bytes([d[8], d[9]]);
        let (nw, carry) = w.overflowing_add(c);
        d[8..10].copy_from_slice(&(nw + u16::from(carry)).to_be_bytes());
        fill_udp(&mut d, SRC, DST);
        assert_eq!(&d[6..8], &[0xff, 0xff]);
        assert!(udp_ok(&d, SRC, DST));
    }
}
