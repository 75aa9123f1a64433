//! TCP segmentation offload and generic receive offload on real bytes: a TSO/GSO super-packet
//! (one IPv4/TCP packet carrying up to 64 KB of consecutive segments, `skb_shinfo(skb)->gso_size`
//! payload bytes each) cut into the segments a wire carries, and consecutive segments of one
//! flow merged back into one, as Linux does.
//!
//! - Segmentation follows `tcp_gso_segment` (net/ipv4/tcp_offload.c) and `inet_gso_segment`
//!   (net/ipv4/af_inet.c): each segment repeats the headers, its sequence number advances by
//!   `gso_size`, CWR stays on the first segment only and FIN and PSH on the last only, each IPv4
//!   header (the outer one too, for a tunnel: `skb_udp_tunnel_segment`, `ipip_gso_segment`)
//!   takes the super-packet's ID plus the segment's index, and every length and checksum is
//!   that of the segment (an outer UDP checksum of zero stays zero).
//! - Merging follows `tcp_gro_receive` (net/ipv4/tcp_offload.c) under `inet_gro_receive` and,
//!   for VXLAN/Geneve and IPIP, `udp_gro_receive` / `vxlan_gro_receive` / `geneve_gro_receive`
//!   and `ipip_gro_receive`: a segment joins the held packet of its flow when every header
//!   matches except the fields that change per segment (IPv4 ID, lengths, checksums), its
//!   sequence number continues the held payload, its ACK number and TCP options are the
//!   same, its flags differ at most in CWR, FIN and PSH (and it has no CWR), it is not longer
//!   than the first segment (`gso_size`) and the result stays below 64 KB
//!   (`GRO_LEGACY_MAX_SIZE`). A merged segment shorter than `gso_size`, or with PSH or FIN,
//!   ends the packet (the caller flushes it).
//!
//! A super-packet's TCP checksum is `CHECKSUM_PARTIAL`, as Linux keeps every GSO packet's
//! (`tcp_v4_send_check`, `tcp_gro_complete`): the field holds the pseudo-header's sum only
//! ([`Held::finish`]), and the full checksum is written per segment when it is cut
//! ([`segment`]; the NIC's TSO or software GSO). A capture records a super-packet with its
//! checksum completed ([`fill_checksums`] on a copy), so that tshark validates it; tcpdump on
//! Linux would show the partial one.

use smoltcp::wire::{IpProtocol, Ipv4Packet, TcpPacket, UdpPacket};

use super::packet::{ETH_HEADER, UDP_HEADER};

/// `GSO_LEGACY_MAX_SIZE` / `GRO_LEGACY_MAX_SIZE` (include/linux/netdevice.h): 65,536 bytes.
pub const GSO_MAX_SIZE: usize = 65_536;
/// `MAX_GRO_SKBS` (include/net/gro.h): packets a NAPI instance holds for merging at once.
pub const MAX_GRO_SKBS: usize = 8;

/// What wraps the TCP segment of a (super-)packet: `skb_shinfo(skb)->gso_type`'s
/// encapsulation bits (`SKB_GSO_UDP_TUNNEL`, `SKB_GSO_IPXIP4`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encap {
    /// Ethernet, IPv4, TCP.
    Plain,
    /// An outer IPv4 header of protocol 4 around the inner IPv4/TCP packet.
    Ipip,
    /// Outer IPv4 and UDP headers, then `header` bytes of VXLAN or Geneve header, then the
    /// inner Ethernet frame.
    Udp { header: u8 },
}

/// A super-packet's GSO state (`skb_shinfo`): payload bytes per segment and what wraps them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gso {
    pub size: u16,
    pub encap: Encap,
}

/// Where the headers of a TCP packet are, within its Ethernet frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Layers {
    outer_ip: Option<usize>,
    udp: Option<usize>,
    ip: usize,
    tcp: usize,
    payload: usize,
}

impl Layers {
    fn parse(frame: &[u8], encap: Encap) -> Option<Layers> {
        let ip_at = |off: usize| -> Option<(usize, IpProtocol)> {
            let ip = Ipv4Packet::new_checked(frame.get(off..)?).ok()?;
            let hl = ip.header_len() as usize;
            if ip.more_frags() || ip.frag_offset() != 0 || (ip.total_len() as usize) < hl {
                return None;
            }
            Some((off + hl, ip.next_header()))
        };
        let (outer_ip, udp, ip) = match encap {
            Encap::Plain => (None, None, ETH_HEADER),
            Encap::Ipip => match ip_at(ETH_HEADER)? {
                (inner, IpProtocol::Unknown(4)) => (Some(ETH_HEADER), None, inner),
                _ => return None,
            },
            Encap::Udp { header } => match ip_at(ETH_HEADER)? {
                (udp, IpProtocol::Udp) => {
                    (Some(ETH_HEADER), Some(udp), udp + UDP_HEADER + header as usize + ETH_HEADER)
                }
                _ => return None,
            },
        };
        let (tcp, proto) = ip_at(ip)?;
        if proto != IpProtocol::Tcp {
            return None;
        }
        let t = TcpPacket::new_checked(frame.get(tcp..)?).ok()?;
        let payload = tcp + t.header_len() as usize;
        (payload <= frame.len()).then_some(Layers { outer_ip, udp, ip, tcp, payload })
    }
}

/// Bytes of a segment before its TCP payload, from the (outer) IPv4 header on: with
/// `gso_size` bytes of payload, a segment's network length (`skb_gso_validate_network_len`).
pub fn network_header_len(frame: &[u8], encap: Encap) -> Option<usize> {
    Layers::parse(frame, encap).map(|l| l.payload - ETH_HEADER)
}

/// How many segments of `gso.size` payload bytes the super-packet in `frame` carries.
pub fn segment_count(frame: &[u8], gso: Gso) -> usize {
    Layers::parse(frame, gso.encap)
        .map_or(1, |l| (frame.len() - l.payload).div_ceil(gso.size.max(1) as usize))
}

/// Writes the lengths and the IPv4, TCP (and outer UDP) checksums of a TCP packet wrapped as
/// `encap`; false when it is not one.
pub fn fill_checksums(frame: &mut [u8], encap: Encap) -> bool {
    let Some(l) = Layers::parse(frame, encap) else { return false };
    finish(frame, &l, 0, TcpSum::Full);
    true
}

/// Whether the (inner) TCP checksum of a TCP packet wrapped as `encap` is right: what GRO
/// checks before it merges a segment (`skb_gro_checksum_validate` in `tcp4_gro_receive`).
pub fn tcp_checksum_ok(frame: &[u8], encap: Encap) -> bool {
    let Some(l) = Layers::parse(frame, encap) else { return false };
    let ip = Ipv4Packet::new_unchecked(&frame[l.ip..]);
    crate::wire::csum::tcp_ok(&frame[l.tcp..], ip.src_addr(), ip.dst_addr())
}

/// Cuts a super-packet into its segments (`skb_gso_segment`); `None` when the frame is not a
/// TCP packet wrapped as `gso.encap` says.
pub fn segment(frame: &[u8], gso: Gso) -> Option<Vec<Vec<u8>>> {
    let l = Layers::parse(frame, gso.encap)?;
    let size = gso.size.max(1) as usize;
    let payload = &frame[l.payload..];
    if payload.is_empty() {
        return Some(vec![frame.to_vec()]);
    }
    let n = payload.len().div_ceil(size);
    let mut out = Vec::with_capacity(n);
    for (i, chunk) in payload.chunks(size).enumerate() {
        let mut seg = Vec::with_capacity(l.payload + chunk.len());
        seg.extend_from_slice(&frame[..l.payload]);
        seg.extend_from_slice(chunk);
        {
            let mut tcp = TcpPacket::new_unchecked(&mut seg[l.tcp..]);
            let seq = tcp.seq_number();
            tcp.set_seq_number(seq + i * size);
            if i > 0 {
                tcp.set_cwr(false);
            }
            if i + 1 < n {
                tcp.set_fin(false);
                tcp.set_psh(false);
            }
        }
        finish(&mut seg, &l, i as u16, TcpSum::Full);
        out.push(seg);
    }
    Some(out)
}

/// What [`finish`] writes into the TCP checksum field.
#[derive(Clone, Copy, PartialEq, Eq)]
enum TcpSum {
    /// The checksum.
    Full,
    /// The pseudo-header's sum (`CHECKSUM_PARTIAL`).
    Partial,
}

/// Writes the lengths and checksums of a packet whose payload ends at the end of `frame`;
/// `index`: the segment's place in its super-packet, added to each IPv4 ID.
fn finish(frame: &mut [u8], l: &Layers, index: u16, tcp: TcpSum) {
    let len = frame.len();
    let (src, dst) = {
        let mut ip = Ipv4Packet::new_unchecked(&mut frame[l.ip..]);
        ip.set_total_len((len - l.ip) as u16);
        ip.set_ident(ip.ident().wrapping_add(index));
        ip.fill_checksum();
        (ip.src_addr(), ip.dst_addr())
    };
    match tcp {
        TcpSum::Full => crate::wire::csum::fill_tcp(&mut frame[l.tcp..], src, dst),
        TcpSum::Partial => crate::wire::csum::fill_tcp_partial(&mut frame[l.tcp..], src, dst),
    }
    if let Some(outer) = l.outer_ip {
        let (src, dst) = {
            let mut ip = Ipv4Packet::new_unchecked(&mut frame[outer..]);
            ip.set_total_len((len - outer) as u16);
            ip.set_ident(ip.ident().wrapping_add(index));
            ip.fill_checksum();
            (ip.src_addr(), ip.dst_addr())
        };
        if let Some(u) = l.udp {
            let mut udp = UdpPacket::new_unchecked(&mut frame[u..]);
            udp.set_len((len - u) as u16);
            if udp.checksum() != 0 {
                crate::wire::csum::fill_udp(&mut frame[u..], src, dst);
            }
        }
    }
}

/// TCP flags in the 13th and 14th header bytes (data offset masked off).
fn flags(frame: &[u8], l: &Layers) -> u16 {
    u16::from_be_bytes([frame[l.tcp + 12] & 0x0f, frame[l.tcp + 13]])
}
const FIN: u16 = 0x01;
const SYN: u16 = 0x02;
const RST: u16 = 0x04;
const PSH: u16 = 0x08;
const URG: u16 = 0x20;
const CWR: u16 = 0x80;

/// A packet GRO holds for merging (an entry of `napi->gro_hash`).
#[derive(Clone, Debug)]
pub struct Held {
    frame: Vec<u8>,
    layers: Layers,
    encap: Encap,
    /// The first segment's payload: the merged packet's `gso_size`.
    size: u16,
    segs: u16,
    first_seq: u32,
    next_seq: u32,
}

/// What GRO did with a segment offered to a held packet of its flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Merge {
    /// Merged; `flush`: the held packet is complete and goes up now.
    Merged { flush: bool },
    /// Not merged: the held packet goes up now, and the segment is handled on its own.
    Flush,
}

/// What [`Held::merge_written`] did with a segment written behind the held packet.
#[derive(Debug, PartialEq, Eq)]
pub enum Written {
    /// Merged; `flush`: the held packet is complete.
    Merged { flush: bool },
    /// Not merged: the segment, as a frame of its own.
    Apart(Vec<u8>),
}

impl Held {
    /// Starts holding `frame`, if GRO would hold it: a TCP segment with payload and none of
    /// SYN, RST, URG, PSH or FIN (those go up at once, `tcp_gro_receive`'s final check).
    pub fn start(frame: Vec<u8>, encap: Encap) -> Result<Held, Vec<u8>> {
        let Some(l) = Layers::parse(&frame, encap) else { return Err(frame) };
        let len = frame.len() - l.payload;
        let ip_len = Ipv4Packet::new_unchecked(&frame[l.ip..]).total_len() as usize;
        if len == 0 || flags(&frame, &l) & (SYN | RST | URG | PSH | FIN) != 0 || l.ip + ip_len != frame.len()
        {
            return Err(frame);
        }
        let seq = TcpPacket::new_unchecked(&frame[l.tcp..]).seq_number().0 as u32;
        // Room for the whole merged packet at once (what `skb_gro_receive` appends to).
        let mut frame = frame;
        frame.reserve((GSO_MAX_SIZE + ETH_HEADER).saturating_sub(frame.len()));
        Ok(Held {
            first_seq: seq,
            next_seq: seq.wrapping_add(len as u32),
            size: len as u16,
            segs: 1,
            layers: l,
            encap,
            frame,
        })
    }

    /// Whether `frame` belongs to this packet's flow (`tcp_gro_lookup`, `inet_gro_receive`):
    /// the same addresses and protocols at every layer, the same outer UDP ports and tunnel
    /// header, the same TCP ports.
    pub fn same_flow(&self, frame: &[u8]) -> bool {
        let Some(l) = Layers::parse(frame, self.encap) else { return false };
        if l != self.layers {
            return false;
        }
        let h = &self.frame;
        let ip_addrs = |off: usize| h[off + 12..off + 20] == frame[off + 12..off + 20];
        h[..ETH_HEADER] == frame[..ETH_HEADER]
            && ip_addrs(l.ip)
            && l.outer_ip.is_none_or(ip_addrs)
            && l.udp.is_none_or(|u| h[u..u + 4] == frame[u..u + 4] && h[u + 8..l.ip] == frame[u + 8..l.ip])
            && h[l.tcp..l.tcp + 4] == frame[l.tcp..l.tcp + 4]
    }

    /// Offers the next segment of this flow (`same_flow` holds).
    pub fn merge(&mut self, frame: &[u8]) -> Merge {
        let Some((len, seq, f)) = self.admits(frame) else { return Merge::Flush };
        self.frame.extend_from_slice(&frame[self.layers.payload..]);
        Merge::Merged { flush: self.joined(len, seq, f) }
    }

    /// [`Self::merge`] for a segment a sending stack writes in place: `write` writes its `len`
    /// bytes (from the IPv4 header on, plain TCP) right behind the held payload, its headers
    /// over the payload's last bytes (kept aside meanwhile). Merged, its payload has joined
    /// the held one without a copy; not merged (or not this flow's), the segment comes back
    /// as a frame of its own and the held packet is as it was. The segment's Ethernet header
    /// is the held packet's (a stack's frames all have the same blank one).
    pub fn merge_written<R>(&mut self, len: usize, write: impl FnOnce(&mut [u8]) -> R) -> (R, Written) {
        let old = self.frame.len();
        let overlay = self.layers.payload;
        // The new segment's frame starts `overlay` bytes before the held packet's end, over
        // payload only (never over the held headers the checks compare with).
        let mut kept = [0u8; 128];
        if self.encap != Encap::Plain || overlay > kept.len() || old < 2 * overlay {
            let mut frame = vec![0u8; ETH_HEADER + len];
            frame[..ETH_HEADER].copy_from_slice(&self.frame[..ETH_HEADER]);
            let r = write(&mut frame[ETH_HEADER..]);
            return match self.same_flow(&frame) {
                true => match self.merge(&frame) {
                    Merge::Merged { flush } => (r, Written::Merged { flush }),
                    Merge::Flush => (r, Written::Apart(frame)),
                },
                false => (r, Written::Apart(frame)),
            };
        }
        let at = old - overlay;
        kept[..overlay].copy_from_slice(&self.frame[at..]);
        self.frame.copy_within(..ETH_HEADER, at);
        self.frame.resize(at + ETH_HEADER + len, 0);
        let r = write(&mut self.frame[at + ETH_HEADER..]);
        let seg = &self.frame[at..];
        let admitted = if self.same_flow(seg) { self.admits(seg) } else { None };
        match admitted {
            Some((plen, seq, f)) => {
                // Its headers were exactly as long as the held ones (`same_flow`): its payload
                // starts where the held one ended.
                self.frame[at..old].copy_from_slice(&kept[..overlay]);
                (r, Written::Merged { flush: self.joined(plen, seq, f) })
            }
            None => {
                let apart = self.frame[at..].to_vec();
                // Back to the held length (a segment shorter than the overlay shortened it).
                self.frame.resize(old, 0);
                self.frame[at..].copy_from_slice(&kept[..overlay]);
                (r, Written::Apart(apart))
            }
        }
    }

    /// Whether the next segment of this flow in `frame` merges (`tcp_gro_receive`'s checks):
    /// its payload length, sequence number and flags if so.
    fn admits(&self, frame: &[u8]) -> Option<(usize, u32, u16)> {
        let l = self.layers;
        let h = &self.frame;
        let len = frame.len() - l.payload;
        let ip_len = Ipv4Packet::new_unchecked(&frame[l.ip..]).total_len() as usize;
        // The IPv4 headers agree but for ID, length and checksum (TOS, TTL, flags, protocol).
        let ip_same =
            |off: usize| h[off + 1] == frame[off + 1] && h[off + 6..off + 10] == frame[off + 6..off + 10];
        let seq = TcpPacket::new_unchecked(&frame[l.tcp..]).seq_number().0 as u32;
        let (f, hf) = (flags(frame, &l), flags(h, &l));
        let ok = len > 0
            && l.ip + ip_len == frame.len()
            && ip_same(l.ip)
            && l.outer_ip.is_none_or(ip_same)
            && seq == self.next_seq
            // ACK number and window are not compared: the ACK number is (tcp_gro_receive), the
            // window is taken from the first segment.
            && h[l.tcp + 8..l.tcp + 12] == frame[l.tcp + 8..l.tcp + 12]
            && h[l.tcp + 18..l.payload] == frame[l.tcp + 18..l.payload]
            && f & CWR == 0
            && (f ^ hf) & !(CWR | FIN | PSH) == 0
            && len <= self.size as usize
            && self.merged_len() + len < GSO_MAX_SIZE;
        ok.then_some((len, seq, f))
    }

    /// The IPv4 length the held packet has (its payload appended so far).
    fn merged_len(&self) -> usize {
        self.next_seq.wrapping_sub(self.first_seq) as usize + self.layers.payload - ETH_HEADER
    }

    /// A segment of `len` payload bytes from `seq`, with flags `f`, has joined; whether the
    /// held packet is complete (a short segment, PSH or FIN).
    fn joined(&mut self, len: usize, seq: u32, f: u16) -> bool {
        self.frame[self.layers.tcp + 13] |= (f & (FIN | PSH)) as u8;
        self.segs += 1;
        self.next_seq = seq.wrapping_add(len as u32);
        len < self.size as usize || f & (PSH | FIN) != 0
    }

    /// Segments merged so far.
    pub fn segments(&self) -> u16 {
        self.segs
    }

    /// The completed packet (`napi_gro_complete`): its frame with lengths and IPv4 checksums
    /// written, and its GSO state when it holds more than one segment (its TCP checksum then
    /// partial, as `tcp_gro_complete` leaves it; one segment keeps its own).
    pub fn finish(mut self) -> (Vec<u8>, Option<Gso>) {
        if self.segs == 1 {
            return (self.frame, None);
        }
        let l = self.layers;
        finish(&mut self.frame, &l, 0, TcpSum::Partial);
        (self.frame, Some(Gso { size: self.size, encap: self.encap }))
    }
}

#[cfg(test)]
mod tests;
