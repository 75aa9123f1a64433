//! IPv4 fragmentation and reassembly over raw IPv4 packets, RFC 791 §2.3 and §3.2.
//!
//! [`fragment`] splits a datagram that does not fit an MTU, as a router or the sending host
//! does when DF is clear. [`Reassembler`] puts fragments back together at the destination,
//! with Linux's limits: a time budget per datagram (`ipfrag_time`) and a cap on the bytes held
//! for incomplete datagrams (`ipfrag_high_thresh`). Headers are read and written with
//! smoltcp's `Ipv4Packet`.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use smoltcp::wire::Ipv4Packet;

/// Length of an IPv4 header without options: the only header [`fragment`] writes.
pub const HEADER_LEN: usize = 20;
/// RFC 791: "Every internet module must be able to forward a datagram of 68 octets without
/// further fragmentation" (a 60-byte header and 8 bytes of data).
pub const MIN_MTU: usize = 68;
/// Linux's default cap on bytes held for incomplete datagrams (`net.ipv4.ipfrag_high_thresh`).
pub const LINUX_HIGH_THRESH: usize = 4 * 1024 * 1024;
/// Linux's default lifetime of an incomplete datagram (`net.ipv4.ipfrag_time`, 30 s), in
/// nanoseconds.
pub const LINUX_FRAG_TIME_NS: u64 = 30_000_000_000;
/// The largest IPv4 datagram (the 16-bit Total Length).
const MAX_DATAGRAM: usize = 65535;

/// Why [`fragment`] did not fragment a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FragError {
    /// The bytes are not an IPv4 packet (version, lengths, offset past 65535): a cnisim bug if
    /// cnisim built them.
    #[error("not a well-formed IPv4 packet")]
    Malformed,
    /// DF is set and the packet exceeds the MTU: drop it and answer with ICMP "fragmentation
    /// needed" ([`super::icmp_frag::frag_needed`]) carrying `mtu`.
    #[error("packet of {len} bytes exceeds MTU {mtu} with DF set")]
    DontFragment { len: usize, mtu: usize },
    /// The header carries options. cnisim never sends them, so per-option copy rules
    /// (RFC 791 §3.1, the "copied" flag) are not implemented.
    #[error("IPv4 options are not supported by fragmentation")]
    Options,
    /// The MTU is below [`MIN_MTU`]: a link configured that small is a scenario error.
    #[error("MTU {0} is below the IPv4 minimum of 68")]
    MtuTooSmall(usize),
}

/// Splits `ip_packet` into fragments of at most `mtu` bytes each (RFC 791 §3.2, "An Example
/// Fragmentation Procedure"). A packet that fits is returned whole and unchanged, DF or not.
///
/// Each fragment gets a copy of the 20-byte header with its own Total Length, Fragment Offset
/// and MF, and a fresh header checksum; the Identification is kept. Every fragment's data but
/// the last is a multiple of 8 bytes. Fragmenting a fragment works: offsets start at its
/// offset, and its last piece keeps its MF.
pub fn fragment(ip_packet: &[u8], mtu: usize) -> Result<Vec<Vec<u8>>, FragError> {
    let ip = Ipv4Packet::new_checked(ip_packet).map_err(|_| FragError::Malformed)?;
    if ip.version() != 4 {
        return Err(FragError::Malformed);
    }
    let total = ip.total_len() as usize;
    if total <= mtu {
        return Ok(vec![ip_packet[..total].to_vec()]);
    }
    if ip.dont_frag() {
        return Err(FragError::DontFragment { len: total, mtu });
    }
    if ip.header_len() as usize != HEADER_LEN {
        return Err(FragError::Options);
    }
    if mtu < MIN_MTU {
        return Err(FragError::MtuTooSmall(mtu));
    }
    let payload = ip.payload();
    let base = ip.frag_offset() as usize;
    if base + payload.len() > MAX_DATAGRAM {
        return Err(FragError::Malformed);
    }
    let last_mf = ip.more_frags();
    // "NFB <- (MTU-IHL*4)/8": the data of every fragment but the last, in 8-byte blocks.
    let chunk = (mtu - HEADER_LEN) & !7;
    let mut out = Vec::with_capacity(payload.len().div_ceil(chunk));
    for (i, part) in payload.chunks(chunk).enumerate() {
        let last = (i + 1) * chunk >= payload.len();
        let mut f = Vec::with_capacity(HEADER_LEN + part.len());
        f.extend_from_slice(&ip_packet[..HEADER_LEN]);
        f.extend_from_slice(part);
        let mut p = Ipv4Packet::new_unchecked(&mut f[..]);
        p.set_total_len((HEADER_LEN + part.len()) as u16);
        p.set_more_frags(!last || last_mf);
        p.set_frag_offset((base + i * chunk) as u16);
        p.fill_checksum();
        out.push(f);
    }
    Ok(out)
}

/// Identifies the datagram a fragment belongs to. RFC 791: "the identification field ... used
/// together with the source and destination address, and the protocol fields".
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FragKey {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub protocol: u8,
    pub ident: u16,
}

/// Why [`Reassembler::push`] dropped a fragment. Each variant says what was dropped; none
/// is a cnisim bug, all are for counting as drops.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReassemblyError {
    /// Not a valid IPv4 fragment (bad lengths, or a non-final fragment whose data is empty or
    /// not a multiple of 8): this fragment is dropped, the rest of its datagram kept.
    #[error("malformed IPv4 fragment")]
    Malformed,
    /// Holding this fragment would take the pending bytes past the limit: this fragment is
    /// dropped (as Linux does above `ipfrag_high_thresh`); pending datagrams are kept until
    /// they complete or expire.
    #[error("fragment of {len} bytes dropped: {pending} of {limit} pending bytes held")]
    OverLimit { len: usize, pending: usize, limit: usize },
    /// The fragment overlaps another without duplicating it exactly, or disagrees about where
    /// the datagram ends: the whole datagram is discarded (Linux since 4.19, after RFC 5722).
    #[error("overlapping IPv4 fragments: datagram discarded")]
    Overlap,
    /// The datagram would exceed 65535 bytes: the whole datagram is discarded.
    #[error("reassembled IPv4 datagram would exceed 65535 bytes: datagram discarded")]
    Oversize,
}

/// One incomplete datagram.
#[derive(Debug)]
struct Entry {
    /// When its first fragment arrived (ns); not refreshed by later ones, as in Linux.
    arrived: u64,
    /// The header of the offset-0 fragment, once it arrived.
    header: Option<Vec<u8>>,
    /// Fragment data by offset; no two overlap.
    parts: BTreeMap<usize, Vec<u8>>,
    /// Length of the data, known once the fragment with MF clear arrived.
    end: Option<usize>,
    /// Data bytes held (sum of `parts`).
    received: usize,
    /// Bytes counted against the limit (whole fragments, headers included).
    cost: usize,
}

/// Reassembles IPv4 datagrams from fragments arriving in any order, duplicates tolerated.
///
/// Deterministic: state is kept in ordered maps and time is the caller's `u64` nanoseconds.
#[derive(Debug)]
pub struct Reassembler {
    limit: usize,
    pending: usize,
    entries: BTreeMap<FragKey, Entry>,
}

impl Reassembler {
    /// A reassembler holding at most `max_pending_bytes` of incomplete datagrams (fragments
    /// counted whole, headers included); see [`LINUX_HIGH_THRESH`].
    pub fn new(max_pending_bytes: usize) -> Reassembler {
        Reassembler { limit: max_pending_bytes, pending: 0, entries: BTreeMap::new() }
    }

    /// Bytes held for incomplete datagrams.
    pub fn pending_bytes(&self) -> usize {
        self.pending
    }

    /// Number of incomplete datagrams.
    pub fn pending_datagrams(&self) -> usize {
        self.entries.len()
    }

    /// Takes one IPv4 packet that arrived at time `now` (ns). Returns the whole datagram when
    /// this fragment completes it, `None` while fragments are missing or when the fragment is
    /// an exact duplicate. A packet that is not a fragment (MF clear, offset 0) is returned
    /// as is.
    ///
    /// The reassembled datagram has the header of the first fragment (offset 0) with MF
    /// cleared, Total Length set and the checksum recomputed.
    pub fn push(&mut self, fragment: &[u8], now: u64) -> Result<Option<Vec<u8>>, ReassemblyError> {
        let ip = Ipv4Packet::new_checked(fragment).map_err(|_| ReassemblyError::Malformed)?;
        let ihl = ip.header_len() as usize;
        if ip.version() != 4 || ihl < HEADER_LEN {
            return Err(ReassemblyError::Malformed);
        }
        let offset = ip.frag_offset() as usize;
        let mf = ip.more_frags();
        let total = ip.total_len() as usize;
        if offset == 0 && !mf {
            return Ok(Some(fragment[..total].to_vec()));
        }
        let data = ip.payload();
        // RFC 791: the data of every fragment but the last is a whole number of 8-byte blocks.
        if mf && (data.is_empty() || data.len() % 8 != 0) {
            return Err(ReassemblyError::Malformed);
        }
        let key = FragKey {
            src: ip.src_addr(),
            dst: ip.dst_addr(),
            protocol: ip.next_header().into(),
            ident: ip.ident(),
        };
        let end = offset + data.len();
        if HEADER_LEN + end > MAX_DATAGRAM {
            self.discard(&key);
            return Err(ReassemblyError::Oversize);
        }
        if let Some(entry) = self.entries.get(&key) {
            match fits(entry, offset, end, mf) {
                Fit::New => {}
                Fit::Duplicate => return Ok(None),
                Fit::Overlap => {
                    self.discard(&key);
                    return Err(ReassemblyError::Overlap);
                }
            }
        }
        if self.pending + total > self.limit {
            return Err(ReassemblyError::OverLimit { len: total, pending: self.pending, limit: self.limit });
        }
        self.pending += total;
        let entry = self.entries.entry(key).or_insert_with(|| Entry {
            arrived: now,
            header: None,
            parts: BTreeMap::new(),
            end: None,
            received: 0,
            cost: 0,
        });
        entry.parts.insert(offset, data.to_vec());
        entry.received += data.len();
        entry.cost += total;
        if offset == 0 {
            entry.header = Some(fragment[..ihl].to_vec());
        }
        if !mf {
            entry.end = Some(end);
        }
        // No overlaps, so once the data held equals the length, every byte is there.
        let (Some(header), Some(len)) = (&entry.header, entry.end) else {
            return Ok(None);
        };
        if entry.received != len {
            return Ok(None);
        }
        if header.len() + len > MAX_DATAGRAM {
            self.discard(&key);
            return Err(ReassemblyError::Oversize);
        }
        let entry = self.entries.remove(&key).expect("entry just updated");
        self.pending -= entry.cost;
        let header = entry.header.expect("checked above");
        let mut datagram = Vec::with_capacity(header.len() + len);
        datagram.extend_from_slice(&header);
        for part in entry.parts.values() {
            datagram.extend_from_slice(part);
        }
        let mut p = Ipv4Packet::new_unchecked(&mut datagram[..]);
        p.set_more_frags(false);
        p.set_frag_offset(0);
        p.set_total_len((header.len() + len) as u16);
        p.fill_checksum();
        Ok(Some(datagram))
    }

    /// Drops every incomplete datagram whose first fragment arrived before `older_than` (ns),
    /// e.g. `now - LINUX_FRAG_TIME_NS`. Returns how many were dropped.
    pub fn expire(&mut self, older_than: u64) -> usize {
        let before = self.entries.len();
        let mut freed = 0;
        self.entries.retain(|_, e| {
            let keep = e.arrived >= older_than;
            if !keep {
                freed += e.cost;
            }
            keep
        });
        self.pending -= freed;
        before - self.entries.len()
    }

    fn discard(&mut self, key: &FragKey) {
        if let Some(e) = self.entries.remove(key) {
            self.pending -= e.cost;
        }
    }
}

enum Fit {
    New,
    Duplicate,
    Overlap,
}

/// How data `offset..end` (final fragment if `!mf`) fits what `entry` holds.
fn fits(entry: &Entry, offset: usize, end: usize, mf: bool) -> Fit {
    if let Some(held) = entry.parts.get(&offset) {
        let same_end = offset + held.len() == end;
        // A duplicate of the last fragment must also agree it is the last one.
        let same_kind = mf || entry.end == Some(end);
        return if same_end && same_kind { Fit::Duplicate } else { Fit::Overlap };
    }
    let before = entry.parts.range(..offset).next_back();
    if before.is_some_and(|(o, d)| o + d.len() > offset) {
        return Fit::Overlap;
    }
    if entry.parts.range(offset..).next().is_some_and(|(o, _)| *o < end) {
        return Fit::Overlap;
    }
    match entry.end {
        Some(e) if end > e || (!mf && end != e) => Fit::Overlap,
        None if !mf => {
            let held_end = entry.parts.iter().next_back().map_or(0, |(o, d)| o + d.len());
            if held_end > end {
                Fit::Overlap
            } else {
                Fit::New
            }
        }
        _ => Fit::New,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // 10.244.0.2 -> 10.244.1.2, UDP, ident 0x1234, DF clear, TTL 64, total length 1500.
    // Header checksums here and below computed independently (python3, RFC 1071).
    #[rustfmt::skip]
    static ORIG_HEADER: [u8; 20] = [
        0x45, 0x00, 0x05, 0xdc, 0x12, 0x34, 0x00, 0x00, 0x40, 0x11, 0x4b, 0xf2,
        0x0a, 0xf4, 0x00, 0x02, 0x0a, 0xf4, 0x01, 0x02,
    ];
    // First fragment: total length 1444, MF, offset 0.
    #[rustfmt::skip]
    static FRAG1_HEADER: [u8; 20] = [
        0x45, 0x00, 0x05, 0xa4, 0x12, 0x34, 0x20, 0x00, 0x40, 0x11, 0x2c, 0x2a,
        0x0a, 0xf4, 0x00, 0x02, 0x0a, 0xf4, 0x01, 0x02,
    ];
    // Second fragment: total length 76, MF clear, offset 1424 (178 blocks of 8).
    #[rustfmt::skip]
    static FRAG2_HEADER: [u8; 20] = [
        0x45, 0x00, 0x00, 0x4c, 0x12, 0x34, 0x00, 0xb2, 0x40, 0x11, 0x50, 0xd0,
        0x0a, 0xf4, 0x00, 0x02, 0x0a, 0xf4, 0x01, 0x02,
    ];

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 256) as u8).collect()
    }

    /// The 1500-byte datagram: ORIG_HEADER and 1480 bytes of data.
    fn original() -> Vec<u8> {
        let mut p = ORIG_HEADER.to_vec();
        p.extend(data(1480));
        p
    }

    #[test]
    fn fragment_1500_at_1450() {
        let frags = fragment(&original(), 1450).unwrap();
        // (1450 - 20) rounded down to 8 bytes: 1424 bytes of data, then the other 56.
        assert_eq!(frags.len(), 2);
        assert_eq!(frags[0].len(), 1444);
        assert_eq!(frags[1].len(), 76);
        assert_eq!(frags[0][..20], FRAG1_HEADER);
        assert_eq!(frags[1][..20], FRAG2_HEADER);
        assert_eq!(frags[0][20..], data(1480)[..1424]);
        assert_eq!(frags[1][20..], data(1480)[1424..]);
        for f in &frags {
            assert!(Ipv4Packet::new_checked(&f[..]).unwrap().verify_checksum());
        }
    }

    #[test]
    fn reassemble_out_of_order() {
        let frags = fragment(&original(), 1450).unwrap();
        let mut r = Reassembler::new(LINUX_HIGH_THRESH);
        assert_eq!(r.push(&frags[1], 10), Ok(None));
        assert_eq!(r.pending_bytes(), 76);
        assert_eq!(r.pending_datagrams(), 1);
        assert_eq!(r.push(&frags[0], 20), Ok(Some(original())));
        assert_eq!(r.pending_bytes(), 0);
        assert_eq!(r.pending_datagrams(), 0);
    }

    #[test]
    fn reassemble_from_literal_fragments() {
        let mut f1 = FRAG1_HEADER.to_vec();
        f1.extend(&data(1480)[..1424]);
        let mut f2 = FRAG2_HEADER.to_vec();
        f2.extend(&data(1480)[1424..]);
        let mut r = Reassembler::new(LINUX_HIGH_THRESH);
        assert_eq!(r.push(&f1, 0), Ok(None));
        assert_eq!(r.push(&f2, 0), Ok(Some(original())));
    }

    #[test]
    fn many_fragments_any_order_with_duplicates() {
        let frags = fragment(&original(), 576).unwrap();
        // 556 -> 552 bytes of data each: 552, 552, 376.
        let sizes: Vec<usize> = frags.iter().map(Vec::len).collect();
        assert_eq!(sizes, [572, 572, 396]);
        let mut r = Reassembler::new(LINUX_HIGH_THRESH);
        assert_eq!(r.push(&frags[2], 0), Ok(None));
        assert_eq!(r.push(&frags[2], 1), Ok(None));
        assert_eq!(r.push(&frags[0], 2), Ok(None));
        assert_eq!(r.push(&frags[0], 3), Ok(None));
        assert_eq!(r.pending_bytes(), 572 + 396);
        assert_eq!(r.push(&frags[1], 4), Ok(Some(original())));
    }

    #[test]
    fn refragmenting_a_fragment() {
        let frags = fragment(&original(), 1450).unwrap();
        let pieces = fragment(&frags[0], 600).unwrap();
        // 1424 bytes at offset 0, MF: 576 + 576 + 272, all with MF set.
        let mut r = Reassembler::new(LINUX_HIGH_THRESH);
        for p in &pieces {
            assert!(Ipv4Packet::new_checked(&p[..]).unwrap().more_frags());
            assert_eq!(r.push(p, 0), Ok(None));
        }
        assert_eq!(r.push(&frags[1], 0), Ok(Some(original())));
    }

    #[test]
    fn fits_unchanged() {
        let p = original();
        assert_eq!(fragment(&p, 1500), Ok(vec![p.clone()]));
        let mut df = p.clone();
        df[6] = 0x40;
        assert_eq!(fragment(&df, 9000), Ok(vec![df.clone()]));
        let mut r = Reassembler::new(0);
        assert_eq!(r.push(&p, 0), Ok(Some(p)));
    }

    #[test]
    fn dont_fragment() {
        let mut p = original();
        p[6] = 0x40;
        Ipv4Packet::new_unchecked(&mut p[..]).fill_checksum();
        assert_eq!(fragment(&p, 1450), Err(FragError::DontFragment { len: 1500, mtu: 1450 }));
    }

    #[test]
    fn fragment_errors() {
        assert_eq!(fragment(&original()[..100], 1450), Err(FragError::Malformed));
        assert_eq!(fragment(&original(), 60), Err(FragError::MtuTooSmall(60)));
        let mut opts = original();
        opts[0] = 0x46;
        assert_eq!(fragment(&opts, 1450), Err(FragError::Options));
    }

    #[test]
    fn overlap_discards_datagram() {
        let frags = fragment(&original(), 1450).unwrap();
        // The second fragment's data moved back 8 bytes: overlaps the first's tail.
        let mut bad = frags[1].clone();
        let mut p = Ipv4Packet::new_unchecked(&mut bad[..]);
        p.set_frag_offset(1416);
        p.fill_checksum();
        let mut r = Reassembler::new(LINUX_HIGH_THRESH);
        assert_eq!(r.push(&frags[0], 0), Ok(None));
        assert_eq!(r.push(&bad, 0), Err(ReassemblyError::Overlap));
        assert_eq!(r.pending_datagrams(), 0);
        assert_eq!(r.pending_bytes(), 0);
    }

    #[test]
    fn malformed_fragment_dropped() {
        let frags = fragment(&original(), 1450).unwrap();
        let mut r = Reassembler::new(LINUX_HIGH_THRESH);
        // MF set but 1420 bytes of data: not a multiple of 8.
        let mut bad = frags[0][..1440].to_vec();
        Ipv4Packet::new_unchecked(&mut bad[..]).set_total_len(1440);
        assert_eq!(r.push(&bad, 0), Err(ReassemblyError::Malformed));
        assert_eq!(r.push(&frags[0][..10], 0), Err(ReassemblyError::Malformed));
        assert_eq!(r.pending_datagrams(), 0);
    }

    #[test]
    fn over_limit_drops_fragment() {
        let frags = fragment(&original(), 1450).unwrap();
        let mut r = Reassembler::new(1500);
        assert_eq!(r.push(&frags[0], 0), Ok(None));
        let other = {
            let mut f = frags[1].clone();
            let mut p = Ipv4Packet::new_unchecked(&mut f[..]);
            p.set_ident(0x9999);
            p.fill_checksum();
            f
        };
        assert_eq!(
            r.push(&other, 0),
            Err(ReassemblyError::OverLimit { len: 76, pending: 1444, limit: 1500 })
        );
        assert_eq!(r.pending_datagrams(), 1);
        // Still over the limit for the datagram's own last fragment: it waits or expires.
        assert!(matches!(r.push(&frags[1], 0), Err(ReassemblyError::OverLimit { .. })));
        assert_eq!(r.expire(1), 1);
        assert_eq!(r.pending_bytes(), 0);
    }

    #[test]
    fn expire_by_first_arrival() {
        let a = fragment(&original(), 1450).unwrap();
        let mut other = original();
        other[4] = 0x99;
        Ipv4Packet::new_unchecked(&mut other[..]).fill_checksum();
        let b = fragment(&other, 1450).unwrap();
        let mut r = Reassembler::new(LINUX_HIGH_THRESH);
        assert_eq!(r.push(&a[0], 100), Ok(None));
        assert_eq!(r.push(&b[0], 200), Ok(None));
        assert_eq!(r.expire(100), 0);
        assert_eq!(r.expire(150), 1);
        assert_eq!(r.pending_datagrams(), 1);
        assert_eq!(r.pending_bytes(), 1444);
        // The expired datagram's last fragment now starts a new, incomplete datagram.
        assert_eq!(r.push(&a[1], 300), Ok(None));
        assert_eq!(r.push(&b[1], 300), Ok(Some(other)));
    }

    #[test]
    fn oversize_discards_datagram() {
        // A last fragment at offset 65528 with 16 bytes of data: past 65535.
        let mut f = ORIG_HEADER.to_vec();
        f.extend([0u8; 16]);
        let mut p = Ipv4Packet::new_unchecked(&mut f[..]);
        p.set_total_len(36);
        p.set_frag_offset(65528);
        p.fill_checksum();
        let mut r = Reassembler::new(LINUX_HIGH_THRESH);
        assert_eq!(r.push(&f, 0), Err(ReassemblyError::Oversize));
    }
}
