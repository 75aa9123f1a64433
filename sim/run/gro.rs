//! Generic receive offload at a node's NIC: NAPI merges the consecutive segments of a TCP flow
//! that wait in the receive ring together into one packet, which then takes the stack's path
//! once (`napi_gro_receive`, net/core/gro.c; the merge rules are `net::gso`'s).
//!
//! A segment is held when the core its RSS hash picks is busy: it waits in the ring, and the
//! poll that reaches it merges it with what else of its flow waits there. Segments of the
//! flow that arrive before then join it (each occupying its ring descriptor until the poll);
//! the poll (`Event::GroFlush`, when the core is free) sends every held packet up, as
//! `napi_complete_done` flushes `gro_hash` (`gro_flush_timeout` is 0 by default). A segment
//! GRO cannot merge sends its flow's held packet up first, so a flow's order is kept; a
//! segment that arrives at an idle core goes up at once, alone, as it would with one
//! interrupt per packet (cnisim models no interrupt moderation). UDP tunnels merge when
//! their port is a kernel tunnel socket's (VXLAN, Geneve: `udp_gro_receive` finds the
//! socket's `gro_receive`), IPIP always (`ipip_gro_receive`).

use super::{Event, Simulation, Work};
use crate::datapath;
use crate::net::gso::{Encap, Held, Merge, MAX_GRO_SKBS};
use crate::net::packet::{Meta, Packet, ETH_HEADER};
use crate::net::route::DevId;
use crate::time::Instant;
use crate::world::{GroHeld, TunnelProto};

impl Simulation {
    /// Whether GRO may hold or merge a frame for the core `hash` picks on `node`: GRO is on,
    /// and the core is busy (the poll comes later) or holds packets already.
    pub(super) fn gro_may_take(&self, node: usize, t: Instant, hash: u32) -> bool {
        let n = &self.world.nodes[node];
        let core = &n.cores[hash as usize % n.cores.len()];
        n.kernel.offloads.gro && (!core.gro.is_empty() || core.busy_until > t)
    }

    /// GRO for a frame that arrived at `nic` of `node` (its ring had room; `gro_may_take`
    /// holds): `None` when GRO holds or merged it, else the frame to process now.
    pub(super) fn gro_receive(
        &mut self,
        t: Instant,
        node: usize,
        nic: DevId,
        hash: u32,
        pkt: Packet,
    ) -> Option<Packet> {
        let ncores = self.world.nodes[node].cores.len();
        let ci = hash as usize % ncores;
        let Some(encap) = self.gro_encap(nic, &pkt.frame) else { return Some(pkt) };
        if !crate::net::gso::tcp_checksum_ok(&pkt.frame, encap) {
            // Not validated: it goes up alone, and `tcp_v4_rcv` drops it.
            return Some(pkt);
        }
        let core = &mut self.world.nodes[node].cores[ci];
        if let Some(i) = core.gro.iter().position(|g| g.nic == nic && g.held.same_flow(&pkt.frame)) {
            match core.gro[i].held.merge(&pkt.frame) {
                Merge::Merged { flush } => {
                    self.ring_hold(node, ci);
                    if flush {
                        let g = self.world.nodes[node].cores[ci].gro.remove(i);
                        self.gro_up(t, node, g);
                    }
                    return None;
                }
                Merge::Flush => {
                    let g = core.gro.remove(i);
                    self.gro_up(t, node, g);
                }
            }
        }
        let core = &mut self.world.nodes[node].cores[ci];
        if core.busy_until <= t {
            return Some(pkt);
        }
        let Packet { frame, meta } = pkt;
        match Held::start(frame, encap) {
            Ok(held) => {
                if core.gro.len() >= MAX_GRO_SKBS {
                    // gro_hash full: the oldest goes up to make room (`gro_flush_oldest`).
                    let g = core.gro.remove(0);
                    self.gro_up(t, node, g);
                }
                let core = &mut self.world.nodes[node].cores[ci];
                core.gro.push(GroHeld { nic, hash, held, meta });
                if core.gro_flush_at.is_none() {
                    let at = core.busy_until;
                    core.gro_flush_at = Some(at);
                    self.queue.schedule(at, Event::GroFlush { node, core: ci });
                }
                self.ring_hold(node, ci);
                None
            }
            Err(frame) => Some(Packet { frame, meta }),
        }
    }

    /// How GRO would parse the frame: a TCP segment over IPv4, in IPIP, or in a UDP tunnel
    /// whose port a kernel tunnel device of the NIC's namespace listens on.
    fn gro_encap(&self, nic: DevId, frame: &[u8]) -> Option<Encap> {
        let ip = frame.get(ETH_HEADER..)?;
        if frame[12..14] != [0x08, 0x00] || ip.len() < 20 || ip[0] >> 4 != 4 {
            return None;
        }
        match ip[9] {
            6 => Some(Encap::Plain),
            4 => Some(Encap::Ipip),
            17 => {
                let udp = ip.get((ip[0] & 0x0f) as usize * 4..)?;
                let port = u16::from_be_bytes([*udp.get(2)?, *udp.get(3)?]);
                let ns = &self.world.netns[self.world.devices[nic].ns];
                let dev = *ns.tunnel_ports.get(&port)?;
                let header = match self.world.devices[dev].tunnel()?.proto {
                    TunnelProto::Vxlan => crate::wire::vxlan::HEADER_LEN,
                    // The Geneve header and its options (`opt_len`, in 4-byte words).
                    TunnelProto::Geneve => {
                        crate::wire::geneve::HEADER_LEN + (*udp.get(8)? & 0x3f) as usize * 4
                    }
                };
                Some(Encap::Udp { header: u8::try_from(header).ok()? })
            }
            _ => None,
        }
    }

    /// A merged or held segment keeps its ring descriptor until the poll reaches it.
    fn ring_hold(&mut self, node: usize, ci: usize) {
        let core = &mut self.world.nodes[node].cores[ci];
        let until = core.gro_flush_at.unwrap_or(core.busy_until);
        let until = core.rx_waiting.back().map_or(until, |&b| b.max(until));
        core.rx_waiting.push_back(until);
    }

    /// The poll reached the packets GRO holds for core `ci` of `node`: each goes up.
    pub(super) fn gro_flush(&mut self, t: Instant, node: usize, ci: usize) {
        let core = &mut self.world.nodes[node].cores[ci];
        core.gro_flush_at = None;
        for g in std::mem::take(&mut core.gro) {
            self.gro_up(t, node, g);
        }
    }

    /// A held packet goes up the stack (`napi_gro_complete`): one chain for all its segments.
    fn gro_up(&mut self, t: Instant, node: usize, g: GroHeld) {
        let (frame, gso) = g.held.finish();
        let pkt = Packet { frame, meta: Meta { gso, ..g.meta } };
        let (nic, flow) = (g.nic, pkt.meta.flow());
        self.chain(node, t, g.hash, Work::Gro, flow, |w, cx| datapath::nic_rx(w, cx, nic, pkt));
    }
}
