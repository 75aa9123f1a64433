use super::*;

/// A super-packet of 10 payload bytes in segments of 4 (ACK|PSH, ID 7, seq 1000), and its
/// second and third segments as `tcp_gso_segment` cuts them. Checksums computed independently
/// (python3, RFC 1071 over the header and the pseudo-header).
#[rustfmt::skip]
const SUPER: [u8; 50] = [
    0x45, 0x00, 0x00, 0x32, 0x00, 0x07, 0x40, 0x00, 0x40, 0x06, 0x21, 0xd3, 0x0a, 0xf4, 0x01, 0x02,
    0x0a, 0xf4, 0x02, 0x03, 0x9c, 0x40, 0x14, 0x51, 0x00, 0x00, 0x03, 0xe8, 0x00, 0x00, 0x13, 0x88,
    0x50, 0x18, 0x10, 0x00, 0xb9, 0xca, 0x00, 0x00, 0x30, 0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x37,
    0x38, 0x39,
];
/// Segment 2 of 3: seq 1004, ID 8, PSH cleared (not the last).
#[rustfmt::skip]
const SEG1: [u8; 44] = [
    0x45, 0x00, 0x00, 0x2c, 0x00, 0x08, 0x40, 0x00, 0x40, 0x06, 0x21, 0xd8, 0x0a, 0xf4, 0x01, 0x02,
    0x0a, 0xf4, 0x02, 0x03, 0x9c, 0x40, 0x14, 0x51, 0x00, 0x00, 0x03, 0xec, 0x00, 0x00, 0x13, 0x88,
    0x50, 0x10, 0x10, 0x00, 0x54, 0x72, 0x00, 0x00, 0x34, 0x35, 0x36, 0x37,
];
/// Segment 3 of 3: seq 1008, ID 9, PSH kept (the last), 2 bytes.
#[rustfmt::skip]
const SEG2: [u8; 42] = [
    0x45, 0x00, 0x00, 0x2a, 0x00, 0x09, 0x40, 0x00, 0x40, 0x06, 0x21, 0xd9, 0x0a, 0xf4, 0x01, 0x02,
    0x0a, 0xf4, 0x02, 0x03, 0x9c, 0x40, 0x14, 0x51, 0x00, 0x00, 0x03, 0xf0, 0x00, 0x00, 0x13, 0x88,
    0x50, 0x18, 0x10, 0x00, 0x86, 0x9b, 0x00, 0x00, 0x38, 0x39,
];

fn framed(ip: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; ETH_HEADER];
    f[12] = 0x08;
    f.extend_from_slice(ip);
    f
}

const PLAIN4: Gso = Gso { size: 4, encap: Encap::Plain };

#[test]
fn a_super_packet_is_cut_as_tcp_gso_segment_cuts_it() {
    let segs = segment(&framed(&SUPER), PLAIN4).unwrap();
    assert_eq!(segs.len(), 3);
    assert_eq!(segs[1][ETH_HEADER..], SEG1);
    assert_eq!(segs[2][ETH_HEADER..], SEG2);
    // The first keeps the ID and sequence number, loses PSH, carries 4 bytes.
    let first = Ipv4Packet::new_unchecked(&segs[0][ETH_HEADER..]);
    assert_eq!((first.ident(), first.total_len()), (7, 44));
    assert!(first.verify_checksum());
    let tcp = TcpPacket::new_unchecked(first.payload());
    assert_eq!((tcp.seq_number().0, tcp.psh(), tcp.payload()), (1000, false, &b"0123"[..]));
    assert!(tcp.verify_checksum(&first.src_addr().into(), &first.dst_addr().into()));
    assert_eq!(segment_count(&framed(&SUPER), PLAIN4), 3);
    assert_eq!(network_header_len(&framed(&SUPER), Encap::Plain), Some(40));
}

#[test]
fn gro_merges_the_segments_back_into_the_super_packet() {
    let segs = segment(&framed(&SUPER), PLAIN4).unwrap();
    let mut held = Held::start(segs[0].clone(), Encap::Plain).unwrap();
    assert!(held.same_flow(&segs[1]));
    assert_eq!(held.merge(&segs[1]), Merge::Merged { flush: false });
    // The last is shorter than gso_size and has PSH: merged, and the packet is complete.
    assert_eq!(held.merge(&segs[2]), Merge::Merged { flush: true });
    assert_eq!(held.segments(), 3);
    let (mut frame, gso) = held.finish();
    assert_eq!(gso, Some(PLAIN4));
    // The TCP checksum is partial (CHECKSUM_PARTIAL): the pseudo-header's sum, 0a f4 + 01 02 +
    // 0a f4 + 02 03 + 6 + 30 B = 0x1911, computed by hand.
    assert_eq!(frame[ETH_HEADER + 36..ETH_HEADER + 38], [0x19, 0x11]);
    // Completed, byte for byte the super-packet, but for the ID: GRO keeps the first segment's.
    assert!(fill_checksums(&mut frame, Encap::Plain));
    let mut expected = framed(&SUPER);
    expected[ETH_HEADER + 5] = 0x07;
    assert_eq!(frame, expected);
}

#[test]
fn gro_refuses_what_tcp_gro_receive_refuses() {
    let segs = segment(&framed(&SUPER), PLAIN4).unwrap();
    // A segment with PSH is never held on its own.
    assert!(Held::start(segs[2].clone(), Encap::Plain).is_err());
    // A gap in the sequence: not merged, the held packet goes up.
    let mut held = Held::start(segs[0].clone(), Encap::Plain).unwrap();
    assert_eq!(held.merge(&segs[2]), Merge::Flush);
    // A different ACK number: not merged.
    let mut other = segs[1].clone();
    other[ETH_HEADER + 20 + 11] ^= 1;
    assert_eq!(held.merge(&other), Merge::Flush);
    // Another flow (destination port) is not this packet's.
    let mut other = segs[1].clone();
    other[ETH_HEADER + 23] ^= 1;
    assert!(!held.same_flow(&other));
    // A segment longer than the first one's payload is not merged.
    let longer = segment(&framed(&SUPER), Gso { size: 8, encap: Encap::Plain }).unwrap();
    assert_eq!(held.merge(&longer[0]), Merge::Flush);
    // A held packet of one segment completes as it came, without GSO state.
    let (frame, gso) = Held::start(segs[0].clone(), Encap::Plain).unwrap().finish();
    assert_eq!((frame, gso), (segs[0].clone(), None));
}

#[test]
fn a_vxlan_super_packet_is_cut_at_both_layers() {
    // Outer IPv4 (ID 0x100, DF clear) / UDP 4789 with a zero checksum / 8 B VXLAN / the inner
    // frame: the inner super-packet behind a 14-byte inner Ethernet header.
    let inner = framed(&SUPER);
    let udp_len = 8 + 8 + inner.len();
    let mut f = vec![0u8; ETH_HEADER];
    f[12] = 0x08;
    let total = 20 + udp_len;
    #[rustfmt::skip]
    f.extend_from_slice(&[
        0x45, 0x00, (total >> 8) as u8, total as u8, 0x01, 0x00, 0x00, 0x00, 0x40, 0x11, 0, 0,
        192, 168, 0, 1, 192, 168, 0, 2,
        0x9c, 0x41, 0x12, 0xb5, (udp_len >> 8) as u8, udp_len as u8, 0, 0,
        0x08, 0, 0, 0, 0, 0, 1, 0,
    ]);
    f.extend_from_slice(&inner);
    let gso = Gso { size: 4, encap: Encap::Udp { header: 8 } };
    assert_eq!(network_header_len(&f, gso.encap), Some(20 + 8 + 8 + 14 + 40));
    let segs = segment(&f, gso).unwrap();
    assert_eq!(segs.len(), 3);
    let outer = Ipv4Packet::new_unchecked(&segs[1][ETH_HEADER..]);
    assert_eq!((outer.ident(), outer.total_len() as usize), (0x101, 20 + 8 + 8 + 14 + 44));
    assert!(outer.verify_checksum());
    let udp = UdpPacket::new_unchecked(outer.payload());
    assert_eq!((udp.len() as usize, udp.checksum()), (8 + 8 + 14 + 44, 0));
    // Behind the outer headers, exactly the plain segment.
    assert_eq!(segs[1][ETH_HEADER + 36 + ETH_HEADER..], SEG1);
    // GRO at the outer and inner layers gives the super-packet back.
    let mut held = Held::start(segs[0].clone(), gso.encap).unwrap();
    assert_eq!(held.merge(&segs[1]), Merge::Merged { flush: false });
    assert_eq!(held.merge(&segs[2]), Merge::Merged { flush: true });
    let (mut frame, _) = held.finish();
    assert!(fill_checksums(&mut frame, gso.encap));
    let mut expected = f.clone();
    expected[ETH_HEADER + 36 + ETH_HEADER + 5] = 0x07;
    let mut ip = Ipv4Packet::new_unchecked(&mut expected[ETH_HEADER..]);
    ip.fill_checksum();
    assert_eq!(frame, expected);
}

/// A super-packet with SUPER's headers and `n` payload bytes (lengths and checksums written).
fn super_of(n: usize) -> Vec<u8> {
    let mut f = framed(&SUPER[..40]);
    f.extend((0..n).map(|i| (i * 7) as u8));
    assert!(fill_checksums(&mut f, Encap::Plain));
    f
}

#[test]
fn segments_written_in_place_merge_as_merge_does() {
    let gso = Gso { size: 100, encap: Encap::Plain };
    let segs = segment(&super_of(350), gso).unwrap();
    assert_eq!(segs.len(), 4);
    let copy = |seg: &[u8]| {
        let seg = seg[ETH_HEADER..].to_vec();
        move |buf: &mut [u8]| buf.copy_from_slice(&seg)
    };
    let mut by_copy = Held::start(segs[0].clone(), Encap::Plain).unwrap();
    let mut in_place = Held::start(segs[0].clone(), Encap::Plain).unwrap();
    for seg in &segs[1..3] {
        let want = by_copy.merge(seg);
        let (_, got) = in_place.merge_written(seg.len() - ETH_HEADER, copy(seg));
        assert_eq!((want, got), (Merge::Merged { flush: false }, Written::Merged { flush: false }));
    }
    // A segment that does not continue the sequence comes back whole; the held packet is
    // as it was.
    let (_, apart) = in_place.merge_written(segs[2].len() - ETH_HEADER, copy(&segs[2]));
    assert_eq!(apart, Written::Apart(segs[2].clone()));
    // The last one (50 B, PSH) completes it.
    let (_, last) = in_place.merge_written(segs[3].len() - ETH_HEADER, copy(&segs[3]));
    assert_eq!(last, Written::Merged { flush: true });
    assert_eq!(by_copy.merge(&segs[3]), Merge::Merged { flush: true });
    assert_eq!(in_place.segments(), 4);
    let (mut a, ga) = in_place.finish();
    let (b, gb) = by_copy.finish();
    assert_eq!((&a, ga), (&b, gb));
    // Completed, it is the super-packet (the first segment's ID, as GRO keeps it).
    assert!(fill_checksums(&mut a, Encap::Plain));
    let mut whole = super_of(350);
    whole[ETH_HEADER + 5] = 0x07;
    assert_eq!(a, whole);
}

#[test]
fn short_segments_written_apart_merge_too() {
    // 4 B payloads: the headers would not fit over the held payload, so the segment is
    // written apart and merged by copy.
    let segs = segment(&framed(&SUPER), PLAIN4).unwrap();
    let mut held = Held::start(segs[0].clone(), Encap::Plain).unwrap();
    for (seg, flush) in [(&segs[1], false), (&segs[2], true)] {
        let bytes = seg[ETH_HEADER..].to_vec();
        let (_, w) = held.merge_written(bytes.len(), |b| b.copy_from_slice(&bytes));
        assert_eq!(w, Written::Merged { flush });
    }
    let (mut frame, _) = held.finish();
    assert!(fill_checksums(&mut frame, Encap::Plain));
    let mut expected = framed(&SUPER);
    expected[ETH_HEADER + 5] = 0x07;
    assert_eq!(frame, expected);
}
