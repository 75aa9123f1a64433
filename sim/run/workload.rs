//! The workloads: a client sends its next datagram (a CBR slot, at once for a stream, a request)
//! when its thread and send buffer let it, opens a connection (a fresh ephemeral port, the
//! Service's address or a headless pick, Cilium's socket LB at connect()), and the datagram runs
//! down the sender's kernel; the application reads what its socket received, a server answers
//! whoever sent, and a client's reply closes its request.

use std::cmp::Reverse;
use std::net::Ipv4Addr;

use rand::Rng;

use super::socket::{sender, udp_ends};
use super::{Event, Simulation, Work};
use crate::cluster::{Client, ProxyMode, ServiceKind, Target, WorkloadKind};
use crate::cost::Step;
use crate::datapath::{self, Action};
use crate::net::packet::{
    skb_truesize, tuple_hash, udp_frame, DataTag, Dir, Hop, Meta, Packet, NET_SKB_PAD, SEND_HEADROOM,
};
use crate::net::NsId;
use crate::observe::DropReason;
use crate::time::{Duration, Instant};

impl Simulation {
    /// The client of `flow` sends its next datagram, if its thread and socket let it: a thread
    /// still in its previous `sendmsg` sends when that returns; a full send buffer blocks it
    /// until a sent frame leaves the host (`sock_alloc_send_pskb` waits while `sk_wmem_alloc`
    /// >= `sk_sndbuf`, net/core/sock.c).
    pub(super) fn send(&mut self, t: Instant, flow: u32) {
        let f = &mut self.flows[flow as usize];
        if t >= f.end {
            return;
        }
        if f.kind.is_tcp() {
            return self.tcp_start(t, flow);
        }
        let s = &mut f.socks[0];
        if t < s.thread_free {
            let at = s.thread_free;
            return self.queue.schedule(at, Event::Send { flow });
        }
        s.reclaim(t);
        if s.wmem >= u64::from(s.sndbuf) {
            self.obs.flows[flow as usize].send_blocks += 1;
            match s.releases.peek() {
                Some(&Reverse((at, _))) => self.queue.schedule(at, Event::Send { flow }),
                // The frees are not known yet (the frames are still in the kernel): the first
                // one registered wakes the sender.
                None => s.blocked = true,
            }
            return;
        }
        let seq = f.next_seq;
        f.next_seq += 1;
        let payload = match f.kind {
            WorkloadKind::UdpCbr { payload, .. } | WorkloadKind::UdpStream { payload } => payload,
            WorkloadKind::UdpRr { request, .. } => request,
            WorkloadKind::TcpStream { .. } | WorkloadKind::TcpRr { .. } | WorkloadKind::TcpCrr { .. } => {
                return self.tcp_start(t, flow);
            }
        };
        if let WorkloadKind::UdpRr { timeout, .. } = f.kind {
            f.outstanding = Some((seq, t));
            self.queue.schedule(t + timeout, Event::Timeout { flow, seq });
        }
        let opens = seq == 0 || self.flows[flow as usize].per_request;
        let mut sock_lb = None;
        if opens {
            match self.open_connection(flow) {
                Ok(lb) => sock_lb = lb,
                Err(reason) => {
                    // connect() failed (socket LB found no backend): nothing leaves the pod.
                    let tag = DataTag { flow, dir: Dir::Forward, seq, sent_at: t, payload, opens };
                    self.obs.sent(&tag);
                    self.obs.dropped(Some(&tag), 0, reason);
                    self.schedule_next_send(flow, seq, t);
                    return;
                }
            }
        }
        let f = &self.flows[flow as usize];
        let (ns, src, sport, peer) = (f.client_ns, f.client_ip, f.sport, f.peer);
        let tuple = (src, peer.0, sport, peer.1);
        let done = self.transmit(t, flow, Dir::Forward, seq, payload, ns, tuple, opens, sock_lb);
        self.flows[flow as usize].socks[0].thread_free = done;
        self.schedule_next_send(flow, seq, done);
    }

    /// After datagram `seq` of a sending workload, whose `sendmsg` returned at `done`: a CBR
    /// sender waits for the next slot of its schedule (datagram k at start + k x payload bits /
    /// rate, computed exactly) or, behind it, sends at once, as iperf3 catches up; a stream
    /// sender sends at once. Request/response clients send on the answer or the timeout.
    fn schedule_next_send(&mut self, flow: u32, seq: u64, done: Instant) {
        let f = &self.flows[flow as usize];
        let next = match f.kind {
            WorkloadKind::UdpCbr { rate, payload } => {
                let k = (seq + 1) as u128;
                let ns = k * payload as u128 * 8 * 1_000_000_000 / rate.0 as u128;
                (f.start + Duration::from_nanos(ns as u64)).max(done)
            }
            WorkloadKind::UdpStream { .. } => done,
            WorkloadKind::UdpRr { .. }
            | WorkloadKind::TcpStream { .. }
            | WorkloadKind::TcpRr { .. }
            | WorkloadKind::TcpCrr { .. } => return,
        };
        if next < f.end {
            self.queue.schedule(next, Event::Send { flow });
        }
    }

    /// Opens the flow's next connection: a new socket with a fresh ephemeral port, the
    /// destination for this connection, and with Cilium's socket LB the backend chosen at
    /// connect(). Returns the CPU the connect-time translation cost, if any.
    pub(super) fn open_connection(&mut self, flow: u32) -> Result<Option<Duration>, DropReason> {
        let f = &self.flows[flow as usize];
        let (cns, target, old, node) = (f.client_ns, f.target, f.sport, self.world.netns[f.client_ns].node);
        let udp = &mut self.world.netns[cns].udp_ports;
        if old != 0 {
            udp.remove(&old);
        }
        // An ephemeral port from Linux's default ip_local_port_range, 32768-60999.
        let sport = loop {
            let p = self.rng.random_range(32768..=60999u16);
            if !udp.contains(&p) {
                break p;
            }
        };
        udp.insert(sport);
        // The Services as the client's node knows them; an external host sees the latest.
        let table = match self.world.proxies.get(node) {
            Some(p) => p.table.clone(),
            None => self.world.service_tables.last().expect("the scenario's table").clone(),
        };
        let wl_port = self.world.cluster.workloads[self.flows[flow as usize].workload].port;
        let service_dst = |service: usize, port: usize, rng: &mut rand_chacha::ChaCha8Rng| {
            let s = &table.services[service];
            match s.cluster_ip {
                Some(vip) => Some((vip, s.ports[port].port)),
                // Headless: DNS answers with the ready endpoints; the client takes one.
                None => {
                    let ready: Vec<_> = s.ready().collect();
                    (!ready.is_empty())
                        .then(|| (ready[rng.random_range(0..ready.len())].1.ip, s.ports[port].target_port))
                }
            }
        };
        let (dst, service) = match target {
            Target::Pod(p) => ((self.world.cluster.pods[p].ip, wl_port), None),
            Target::External(e) => ((self.world.cluster.externals[e].ip, wl_port), None),
            Target::Service { service, port } => (
                service_dst(service, port, &mut self.rng).ok_or(DropReason::ServiceNoEndpoints)?,
                Some((service, port)),
            ),
            Target::NodePort { service, port, node } => {
                let np = table.services[service].ports[port].node_port.expect("resolved: NodePort service");
                ((self.world.cluster.nodes[node].ip, np), None)
            }
            Target::AnyService { first, count } => {
                let service = first + self.rng.random_range(0..count);
                (
                    service_dst(service, 0, &mut self.rng).ok_or(DropReason::ServiceNoEndpoints)?,
                    Some((service, 0)),
                )
            }
        };
        let mut peer = dst;
        let mut cost = None;
        // Cilium's cgroup hooks serve the cluster's pods, not outside hosts.
        let socket_lb = self.world.cluster.proxy == ProxyMode::Ebpf { socket_lb: true }
            && matches!(self.flows[flow as usize].client, Client::Pod(_));
        if let Some((si, pi)) =
            service.filter(|&(si, _)| socket_lb && table.services[si].kind != ServiceKind::Headless)
        {
            // cgroup/connect4: service map lookup, random backend, sockaddr rewritten.
            let s = &table.services[si];
            let ready: Vec<_> = s.ready().collect();
            let p = &mut self.world.proxies[node];
            p.stats.new_connections += 1;
            p.stats.lookups += 2;
            p.stats.new_connection_cpu += self.world.costs.sock_lb;
            if ready.is_empty() {
                p.stats.rejected += 1;
                return Err(DropReason::ServiceNoEndpoints);
            }
            p.stats.translated += 1;
            p.stats.translated_cpu += self.world.costs.sock_lb;
            p.stats.translated_lookups += 2;
            let e = ready[self.rng.random_range(0..ready.len())].1;
            *p.stats.per_endpoint.entry((si, e.pod)).or_default() += 1;
            peer = (e.ip, s.ports[pi].target_port);
            cost = Some(self.world.costs.sock_lb);
        }
        let f = &mut self.flows[flow as usize];
        f.sport = sport;
        f.dst = dst;
        f.peer = peer;
        f.connections += 1;
        Ok(cost)
    }

    /// Builds a datagram of `flow` and runs the sender's kernel on it.
    #[allow(clippy::too_many_arguments)]
    fn transmit(
        &mut self,
        t: Instant,
        flow: u32,
        dir: Dir,
        seq: u64,
        payload: u32,
        ns: NsId,
        (src, dst, sport, dport): (Ipv4Addr, Ipv4Addr, u16, u16),
        opens: bool,
        connect_cost: Option<Duration>,
    ) -> Instant {
        let netns = &mut self.world.netns[ns];
        let ident = netns.next_ident;
        netns.next_ident = netns.next_ident.wrapping_add(1);
        let frame = udp_frame(src, dst, sport, dport, payload as usize, ident);
        let tag = DataTag { flow, dir, seq, sent_at: t, payload, opens };
        let traced = self.trace_first && seq == 0;
        let pmtudisc_do = self.world.cluster.workloads[self.flows[flow as usize].workload].dont_fragment;
        let meta =
            Meta { data: Some(tag), trace: traced.then(Default::default), pmtudisc_do, ..Default::default() };
        let mut pkt = Packet { frame, meta };
        self.obs.sent(&tag);
        let node = self.world.netns[ns].node;
        let hash = tuple_hash(src, dst, 17, (sport as u32) << 16 | dport as u32);
        if let (Some(cost), Some(tr)) = (connect_cost, pkt.meta.trace.as_mut()) {
            let vip = self.flows[flow as usize].dst;
            tr.push(Hop {
                time_ns: t.as_nanos(),
                place: self.world.place(ns),
                device: "socket".into(),
                action: "sock-lb".into(),
                why: format!(
                    "connect() to {}:{} translated to backend {dst}:{dport} by cgroup/connect4 ({cost})",
                    vip.0, vip.1
                ),
                size: pkt.frame.len(),
            });
        }
        // The skb's truesize is charged to the socket until its frame leaves the host.
        let charge = skb_truesize(pkt.frame.len() - crate::net::packet::ETH_HEADER + SEND_HEADROOM);
        let s = &mut self.flows[flow as usize].socks[sender(dir)];
        // Frees due by now first: a server's socket is never checked by a blocking send.
        s.reclaim(t);
        s.wmem += u64::from(charge);
        s.peak_wmem = s.peak_wmem.max(s.wmem);
        let mut cx = self.run_chain(node, t, hash, Work::Process, Some(flow), |w, cx| {
            if let Some(c) = connect_cost {
                cx.charge(Step::ServiceRules, c);
            }
            datapath::udp_send(w, cx, ns, pkt)
        });
        let done = cx.now();
        // The last frame of the send that goes on a cable gives the memory back when the NIC
        // has sent it; a datagram that stays in the host (delivered, dropped, handed to a
        // userspace process, queued for ARP) frees it when the kernel is done with it.
        let carrier = cx.actions.iter_mut().rev().find_map(|a| match a {
            Action::Transmit { pkt, .. } if pkt.meta.data == Some(tag) => Some(pkt),
            _ => None,
        });
        match carrier {
            Some(p) => p.meta.sk_wmem = charge,
            None => self.release(tag, done, charge),
        }
        self.apply(done, cx.actions);
        done
    }

    /// The application has read a datagram: it counts as delivered, and a server answers.
    pub(super) fn read(&mut self, t: Instant, ns: NsId, mut pkt: Packet) {
        let Some(tag) = pkt.meta.data else { return };
        let flow = tag.flow;
        let (from, to) = udp_ends(&pkt);
        let s = &mut self.flows[flow as usize].socks[1 - sender(tag.dir)];
        s.rmem -= u64::from(skb_truesize(pkt.frame.len() + NET_SKB_PAD));
        let first = self.obs.delivered(&tag, pkt.meta.flood, pkt.frame.len(), t);
        self.keep_trace(tag, &mut pkt.meta, true);
        if !first {
            return;
        }
        let to_service = matches!(
            self.flows[flow as usize].target,
            Target::Service { .. } | Target::NodePort { .. } | Target::AnyService { .. }
        );
        if tag.dir == Dir::Forward && to_service {
            self.obs.service_datagram(tag.opens, t - tag.sent_at);
        }
        let f = &mut self.flows[flow as usize];
        let WorkloadKind::UdpRr { response, .. } = f.kind else {
            return;
        };
        match tag.dir {
            Dir::Forward => {
                // The server answers at once from its socket, to whoever the datagram came from.
                let src = to.0;
                self.transmit(
                    t,
                    flow,
                    Dir::Reverse,
                    tag.seq,
                    response,
                    ns,
                    (src, from.0, to.1, from.1),
                    false,
                    None,
                );
            }
            Dir::Reverse => {
                if let Some((seq, sent)) = f.outstanding {
                    if seq == tag.seq {
                        f.outstanding = None;
                        self.obs.rtt(flow, t - sent);
                        self.schedule_next_request(t, flow);
                    }
                }
            }
        }
    }

    pub(super) fn schedule_next_request(&mut self, t: Instant, flow: u32) {
        let f = &self.flows[flow as usize];
        if let WorkloadKind::UdpRr { think, .. } = f.kind {
            let next = t + think;
            if next < f.end {
                self.queue.schedule(next, Event::Send { flow });
            }
        }
    }
}
