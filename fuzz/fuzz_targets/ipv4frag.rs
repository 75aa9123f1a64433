//! IPv4 fragmentation and reassembly (RFC 791): `fragment` and `Reassembler::push` must never
//! panic on any bytes; fragmenting a whole datagram and reassembling its fragments in any
//! order (with a duplicate) gives the datagram back; the reassembler's byte accounting holds.
//!
//! Input: `mtu: u16`, `order: u8`, `limit: u8`, then records `len: u16` + `len` bytes + `dt: u8`.
//! Record 0 is the datagram for the round trip; every record is also pushed, as a received
//! packet, into a reassembler holding at most `limit` KiB (0: Linux's 4 MiB), `dt` microseconds
//! after the previous one.

#![no_main]

use cnisim::wire::ipv4frag::{fragment, FragError, Reassembler, HEADER_LEN, LINUX_HIGH_THRESH, MIN_MTU};
use libfuzzer_sys::fuzz_target;
use smoltcp::wire::Ipv4Packet;

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let mtu = u16::from_be_bytes([data[0], data[1]]) as usize;
    let order = data[2];
    let limit = if data[3] == 0 { LINUX_HIGH_THRESH } else { data[3] as usize * 1024 };
    let records = records(&data[4..]);

    received(&records, limit);
    if let Some((first, _)) = records.first() {
        round_trip(first, mtu, order);
    }
});

fn records(mut rest: &[u8]) -> Vec<(&[u8], u8)> {
    let mut out = Vec::new();
    while rest.len() >= 2 {
        let len = (u16::from_be_bytes([rest[0], rest[1]]) as usize).min(rest.len() - 2);
        let bytes = &rest[2..2 + len];
        rest = &rest[2 + len..];
        let dt = rest.first().copied().unwrap_or(0);
        rest = rest.get(1..).unwrap_or(&[]);
        out.push((bytes, dt));
    }
    out
}

/// Arbitrary packets into a reassembler: whatever it hands back is a whole, valid datagram,
/// it never holds more than its limit, and expiring everything frees every byte.
fn received(records: &[(&[u8], u8)], limit: usize) {
    let mut r = Reassembler::new(limit);
    let mut now = 0u64;
    for (bytes, dt) in records {
        now += *dt as u64 * 1_000;
        let whole = Ipv4Packet::new_checked(*bytes).is_ok_and(|ip| !ip.more_frags() && ip.frag_offset() == 0);
        if let Ok(Some(d)) = r.push(bytes, now) {
            let ip = Ipv4Packet::new_checked(&d[..]).expect("a datagram out is a valid IPv4 packet");
            assert_eq!(ip.total_len() as usize, d.len());
            assert!(!ip.more_frags() && ip.frag_offset() == 0);
            if whole {
                // Not a fragment: handed back as it came.
                assert_eq!(&d[..], &bytes[..d.len()]);
            } else {
                assert!(ip.verify_checksum(), "a reassembled datagram has a fresh checksum");
            }
        }
        assert!(r.pending_bytes() <= limit, "{} pending over the limit {limit}", r.pending_bytes());
        assert_eq!(r.pending_datagrams() == 0, r.pending_bytes() == 0);
    }
    // Half-way expiry, then everything: the accounting comes back to zero.
    r.expire(now / 2);
    assert!(r.pending_bytes() <= limit);
    r.expire(u64::MAX);
    assert_eq!((r.pending_bytes(), r.pending_datagrams()), (0, 0));
}

/// Fragment `dg` at `mtu`, check each fragment, reassemble them shuffled by `order`.
fn round_trip(dg: &[u8], mtu: usize, order: u8) {
    let frags = match fragment(dg, mtu) {
        Ok(f) => f,
        Err(e) => {
            let ip = Ipv4Packet::new_checked(dg);
            match e {
                FragError::Malformed => assert!(match &ip {
                    Err(_) => true,
                    Ok(ip) => ip.version() != 4 || ip.frag_offset() as usize + ip.payload().len() > 65535,
                }),
                FragError::DontFragment { len, mtu: m } => {
                    let ip = ip.unwrap();
                    assert!(ip.dont_frag() && len > m && m == mtu);
                }
                FragError::Options => assert_ne!(ip.unwrap().header_len() as usize, HEADER_LEN),
                FragError::MtuTooSmall(m) => assert!(m < MIN_MTU && m == mtu),
            }
            return;
        }
    };
    let ip = Ipv4Packet::new_checked(dg).expect("fragment accepted it");
    let total = ip.total_len() as usize;
    if frags.len() == 1 && frags[0].len() == total && total <= mtu {
        assert_eq!(&frags[0][..], &dg[..total], "a datagram that fits is returned unchanged");
        return;
    }
    assert!(frags.len() >= 2, "{} fragments of a datagram over the MTU", frags.len());
    let base = ip.frag_offset() as usize;
    let mut data = Vec::new();
    for (i, f) in frags.iter().enumerate() {
        assert!(f.len() <= mtu, "fragment of {} bytes over MTU {mtu}", f.len());
        let p = Ipv4Packet::new_checked(&f[..]).expect("a fragment is a valid IPv4 packet");
        assert!(p.verify_checksum());
        assert_eq!(p.total_len() as usize, f.len());
        assert_eq!(p.frag_offset() as usize, base + data.len());
        assert_eq!((p.src_addr(), p.dst_addr(), p.ident()), (ip.src_addr(), ip.dst_addr(), ip.ident()));
        let last = i + 1 == frags.len();
        assert_eq!(p.more_frags(), !last || ip.more_frags());
        if !last {
            assert!(p.payload().len() % 8 == 0 && !p.payload().is_empty());
        }
        data.extend_from_slice(p.payload());
    }
    assert_eq!(&data[..], ip.payload(), "the fragments' data is the datagram's");

    // Shuffle (Fisher-Yates with a small LCG), then push one fragment twice before the end.
    let mut idx: Vec<usize> = (0..frags.len()).collect();
    let mut s = order as u32 | 1;
    for i in (1..idx.len()).rev() {
        s = s.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        idx.swap(i, (s >> 16) as usize % (i + 1));
    }
    let dup = idx[order as usize % (idx.len() - 1)];
    idx.insert(idx.len() - 1, dup);

    let mut r = Reassembler::new(LINUX_HIGH_THRESH);
    let whole = base == 0 && !ip.more_frags();
    let mut out = None;
    for (n, &i) in idx.iter().enumerate() {
        let got = r.push(&frags[i], n as u64);
        if !whole {
            // A fragment's fragments never complete a datagram. If the input was itself a
            // non-final fragment whose data is not a multiple of 8, so is its last piece, which
            // the reassembler rejects as Linux's ip_frag_queue does.
            let ragged = ip.more_frags() && ip.payload().len() % 8 != 0;
            use cnisim::wire::ipv4frag::ReassemblyError as E;
            assert!(
                matches!(got, Ok(None) | Err(E::Oversize)) || (ragged && matches!(got, Err(E::Malformed))),
                "{got:?}"
            );
            continue;
        }
        let got = got.expect("fragments of one datagram fit each other");
        if n + 1 < idx.len() {
            assert_eq!(got, None, "complete before the last fragment");
        } else {
            out = got;
        }
    }
    if !whole {
        return;
    }
    let out = out.expect("the last fragment completes the datagram");
    let mut expected = dg[..total].to_vec();
    Ipv4Packet::new_unchecked(&mut expected[..]).fill_checksum();
    assert_eq!(out, expected);
    assert_eq!((r.pending_bytes(), r.pending_datagrams()), (0, 0));
}
