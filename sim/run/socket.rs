//! The flows' UDP sockets: each end's send and receive buffers, charged an skb's truesize as
//! Linux charges `sk_wmem_alloc` and `sk_rmem_alloc`; the frees of sent skbs when their frames
//! leave the host; and the kernel queuing a datagram on its socket for the application.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::Ipv4Addr;

use super::{Event, Simulation, Work};
use crate::cost::Step;
use crate::datapath::Action;
use crate::net::packet::{skb_truesize, tuple_hash, DataTag, Dir, Hop, Packet, NET_SKB_PAD};
use crate::net::NsId;
use crate::observe::DropReason;
use crate::time::Instant;

/// The (source, destination) address and port of a UDP datagram's frame.
pub(super) fn udp_ends(pkt: &Packet) -> ((Ipv4Addr, u16), (Ipv4Addr, u16)) {
    let ip = smoltcp::wire::Ipv4Packet::new_unchecked(pkt.ip());
    let udp = smoltcp::wire::UdpPacket::new_unchecked(ip.payload());
    ((ip.src_addr(), udp.src_port()), (ip.dst_addr(), udp.dst_port()))
}

/// One end of a flow: its UDP socket's buffers and the thread that uses it.
#[derive(Clone, Debug, Default)]
pub struct Sock {
    /// `SO_SNDBUF` and `SO_RCVBUF`: the node's `wmem_default` and `rmem_default`.
    pub sndbuf: u32,
    pub rcvbuf: u32,
    /// Bytes of sent skbs not yet freed (`sk_wmem_alloc`).
    pub wmem: u64,
    /// (when, bytes) of the frees still to come.
    pub(super) releases: BinaryHeap<Reverse<(Instant, u32)>>,
    /// A send found the buffer full and waits for the next free.
    pub(super) blocked: bool,
    /// Bytes of datagrams queued for the application (`sk_rmem_alloc`).
    pub rmem: u64,
    /// The thread is in its previous `sendmsg` until then.
    pub(super) thread_free: Instant,
    /// Largest `wmem` and `rmem` seen.
    pub peak_wmem: u64,
    pub peak_rmem: u64,
}

impl Sock {
    pub(super) fn new(sndbuf: u32, rcvbuf: u32) -> Sock {
        Sock { sndbuf, rcvbuf, ..Default::default() }
    }
    /// Frees the skbs whose frames have left the host by `now`.
    pub(super) fn reclaim(&mut self, now: Instant) {
        while let Some(&Reverse((at, bytes))) = self.releases.peek() {
            if at > now {
                break;
            }
            self.releases.pop();
            self.wmem -= u64::from(bytes);
        }
    }
}

/// Index into [`Flow::socks`](super::Flow::socks) of the socket that sends datagrams of
/// direction `dir`.
pub(super) fn sender(dir: Dir) -> usize {
    match dir {
        Dir::Forward => 0,
        Dir::Reverse => 1,
    }
}

impl Simulation {
    /// The socket that sent `tag`'s datagram gets `bytes` of send buffer back at `at`; a send
    /// waiting for room goes on then.
    pub(super) fn release(&mut self, tag: DataTag, at: Instant, bytes: u32) {
        let s = &mut self.flows[tag.flow as usize].socks[sender(tag.dir)];
        s.releases.push(Reverse((at, bytes)));
        if std::mem::take(&mut s.blocked) {
            self.queue.schedule(at, Event::Send { flow: tag.flow });
        }
    }

    /// The kernel queues a datagram on its socket (`__udp_enqueue_schedule_skb`: dropped once
    /// `sk_rmem_alloc` is over `sk_rcvbuf`, net/ipv4/udp.c); the application's `recvmsg` then
    /// runs on its core, after whatever that core is already doing.
    pub(super) fn deliver(&mut self, t: Instant, ns: NsId, mut pkt: Packet) {
        let Some(tag) = pkt.meta.data else { return };
        let flow = tag.flow;
        let (from, to) = udp_ends(&pkt);
        if tag.dir == Dir::Reverse {
            let f = &self.flows[flow as usize];
            // A connected UDP socket only accepts datagrams from its peer.
            if from != f.peer || to.1 != f.sport {
                return self.drop(pkt, DropReason::UnexpectedSource);
            }
        }
        let truesize = skb_truesize(pkt.frame.len() + NET_SKB_PAD);
        let s = &mut self.flows[flow as usize].socks[1 - sender(tag.dir)];
        if s.rmem > u64::from(s.rcvbuf) {
            if let Some(tr) = pkt.meta.trace.as_mut() {
                tr.push(Hop {
                    time_ns: t.as_nanos(),
                    place: self.world.place(ns),
                    device: "socket".into(),
                    action: "drop".into(),
                    why: format!("receive buffer full: {} B queued, SO_RCVBUF {}", s.rmem, s.rcvbuf),
                    size: pkt.frame.len(),
                });
            }
            return self.drop(pkt, DropReason::RcvbufFull);
        }
        s.rmem += u64::from(truesize);
        s.peak_rmem = s.peak_rmem.max(s.rmem);
        let node = self.world.netns[ns].node;
        let hash = tuple_hash(from.0, to.0, 17, (from.1 as u32) << 16 | to.1 as u32);
        let payload = tag.payload as usize;
        self.chain(node, t, hash, Work::Read, Some(flow), |w, cx| {
            cx.charge(Step::Socket, w.costs.udp_recvmsg);
            cx.add(Step::Copy, w.costs.copy(payload));
            if let Some(tr) = pkt.meta.trace.as_mut() {
                tr.push(Hop {
                    time_ns: cx.now().as_nanos(),
                    place: w.place(ns),
                    device: "socket".into(),
                    action: "recvmsg".into(),
                    why: format!("the application reads {payload} B"),
                    size: pkt.frame.len(),
                });
            }
            cx.actions.push(Action::Read { ns, pkt });
        });
    }
}
