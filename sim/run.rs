//! Running a world: the event loop, the workloads that drive it (`workload`: the clients' and
//! servers' sends, connections and reads; `socket`: their sockets' buffers), and the end-of-run
//! checks.
//!
//! [`Simulation`] owns the [`World`], the event queue and the [`Observations`]. Kernel work is
//! executed as a chain of `datapath` steps on one core of one node; the chain's [`Action`]s
//! take effect when the core has served its CPU time (a core is a FIFO server). Frames cross
//! cables as `Enqueue` (offered to the transmitter) and `Arrive` (last bit at the far end)
//! events.

pub mod bgp;
mod gro;
mod policy;
mod relay;
mod socket;
mod tcp;
mod workload;

use std::net::Ipv4Addr;

use crate::build;
use crate::cluster::{ChangeKind, Client, Cluster, Target, WorkloadKind};
use crate::datapath::{self, Action, Ctx};
use crate::engine::{Component, EventQueue, RngFactory};
use crate::error::Error;
use crate::net::link::LinkDrop;
use crate::net::packet::Hop;
use crate::net::packet::{flow_hash, skb_truesize, DataTag, Dir, Meta, Packet, NET_SKB_PAD};
use crate::net::{LinkId, NsId};
use crate::observe::{DropReason, Observations};
use crate::time::Instant;
use crate::userspace::{Input, Output};
use crate::world::{Core, LinkEnd, NsKind, World};
pub use socket::Sock;
pub use tcp::{Conn, TcpFlow, TcpHost};

/// Every kind of event. Order of variants does not matter: ties break by insertion order.
#[derive(Debug)]
pub enum Event {
    /// A workload's client sends its next datagram (CBR tick or new request).
    Send { flow: u32 },
    /// A request/response client gives up on request `seq`.
    Timeout { flow: u32, seq: u64 },
    /// A frame is offered to a cable's transmitter.
    Enqueue { link: LinkId, pkt: Packet },
    /// A frame's last bit reaches the far end of a cable.
    Arrive { link: LinkId, pkt: Packet },
    /// A switch flood's copies reach the far ends of `links` at the same instant: one
    /// `Arrive` per link, in order, the last with `pkt` and the others with its flood copy
    /// (made now, not when the switch flooded: see `Simulation::flood`).
    ArriveFlood { links: Vec<LinkId>, pkt: Packet },
    /// The kernel queues a datagram on the application's socket.
    Deliver { ns: NsId, pkt: Packet },
    /// The application has read a datagram (`recvmsg` returned).
    Read { ns: NsId, pkt: Packet },
    /// The kernel hands a TCP segment to the namespace's TCP stack (`tcp_v4_rcv` done).
    DeliverTcp { ns: NsId, pkt: Packet },
    /// ARP retransmit timer.
    ArpTimer { ns: NsId, ip: Ipv4Addr },
    /// A userspace process reads a packet (it queues behind the process's earlier work).
    User { proc: usize, input: Input, pkt: Packet },
    /// A userspace process has finished with a packet: the kernel takes its writes.
    UserDone { proc: usize, outputs: Vec<Output> },
    /// Change `index` of the scenario happens (a pod is deleted).
    Change { index: usize },
    /// smoltcp's next timer of socket `sock` of TCP host `host` (`Simulation::tcp`) is due.
    TcpPoll { host: u32, sock: u32 },
    /// Socket `sock` of TCP host `host`: its last segment has been through its chain, the
    /// next one goes.
    TcpXmit { host: u32, sock: u32 },
    /// A TCP application's `write()` or `read()` has been served: the socket sees it.
    TcpApp { host: u32, flow: u32, conn: u32, side: tcp::Side, op: tcp::AppOp },
    /// A node's proxy finished syncing to Service table `version` for a change made at
    /// `changed_at`: the new rules take effect.
    SyncDone { node: usize, version: usize, changed_at: Instant, rules: Box<crate::proxy::node::Rules> },
    /// Work of the BIRD process `bird` (`Simulation::bgp`) is due.
    Bird { bird: u32, work: bgp::BirdWork },
    /// A node's NetworkPolicy agent has written policy version `version` (after change
    /// `version - 1`): the new state is enforced from now.
    PolicySync { node: usize, version: usize, state: Box<crate::cni::NodePolicy> },
    /// The NAPI poll of core `core` of `node` reaches the packets GRO holds for it: they go up
    /// the stack.
    GroFlush { node: usize, core: usize },
    /// A NIC has sent `bytes` of TCP socket `sock` of host `host` (TX completion): its TCP
    /// small queues budget gets them back.
    TsqFree { host: u32, sock: u32, bytes: u64 },
}

/// Where a chain of kernel work comes from, which decides the queue it waits in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Work {
    /// A frame from the NIC: it waits in the receive ring of the core RSS picked.
    Rx,
    /// A process's syscall (a workload's `sendmsg`/`recvmsg`, a userspace data plane's writes):
    /// what it hands to a veth waits in the core's input backlog.
    Process,
    /// A timer (ARP retransmit).
    Timer,
    /// The application's `recvmsg`: no frame is processed, so it is not counted as one.
    Read,
    /// A packet GRO held or merged in the receive ring: its descriptors were counted when its
    /// segments arrived.
    Gro,
}

/// Per-flow runtime state.
#[derive(Clone, Debug)]
pub struct Flow {
    pub workload: usize,
    pub client: Client,
    pub target: Target,
    pub client_ns: NsId,
    pub client_ip: Ipv4Addr,
    /// The current connection's source port (a new one per connection).
    pub sport: u16,
    /// Where the current connection sends: pod, Service VIP or node address, and port.
    pub dst: (Ipv4Addr, u16),
    /// The address the client's socket is connected to (replies must come from it): `dst`,
    /// or with socket LB the backend it was translated to.
    pub peer: (Ipv4Addr, u16),
    pub kind: WorkloadKind,
    pub start: Instant,
    pub end: Instant,
    /// Open a new connection for every request.
    pub per_request: bool,
    /// Connections opened so far.
    pub connections: u64,
    next_seq: u64,
    /// Request in flight: (seq, sent at).
    outstanding: Option<(u64, Instant)>,
    /// The client's socket (`[0]`: sends requests, reads answers) and the server's (`[1]`).
    pub socks: [Sock; 2],
    /// A TCP workload's connections and applications.
    pub tcp: Option<Box<TcpFlow>>,
}

pub struct Simulation {
    pub world: World,
    pub queue: EventQueue<Event>,
    pub obs: Observations,
    pub flows: Vec<Flow>,
    /// Trace the first datagram of each flow.
    pub trace_first: bool,
    pub end: Instant,
    /// Ephemeral ports, headless and generated-Service picks, socket-LB backend choices.
    rng: rand_chacha::ChaCha8Rng,
    /// The TCP stacks of the namespaces at the ends of TCP workloads.
    pub tcp: Vec<TcpHost>,
    /// `tcp` index of each namespace's stack, by namespace.
    tcp_host_of: Vec<Option<usize>>,
    /// Calico's BGP control plane, when the scenario simulates it.
    pub bgp: Option<Box<bgp::ControlPlane>>,
    /// Some node has been powered off: events are checked for it.
    any_down: bool,
}

impl Simulation {
    /// Builds the world and schedules every workload.
    pub fn new(cluster: &Cluster) -> Simulation {
        let world = build::build(cluster);
        let rngs = RngFactory::new(cluster.seed);
        let mut flows = Vec::new();
        let mut world = world;
        for (wi, wl) in cluster.workloads.iter().enumerate() {
            for &(c, target) in &wl.flows {
                let (cns, client_ip) = match c {
                    Client::Pod(p) => (world.pod_ns[p], cluster.pods[p].ip),
                    Client::External(e) => (world.external_ns[e], cluster.externals[e].ip),
                };
                // The server socket's buffers follow its node's sysctls; a Service's backends
                // are pods, whose nodes share the scenario's defaults unless set per node.
                let server_node = match target {
                    Target::Pod(p) => world.netns[world.pod_ns[p]].node,
                    Target::External(e) => world.netns[world.external_ns[e]].node,
                    _ => world.netns[cns].node,
                };
                let (ck, sk) = (world.nodes[world.netns[cns].node].kernel, world.nodes[server_node].kernel);
                match target {
                    Target::Pod(server) => {
                        world.netns[world.pod_ns[server]].udp_ports.insert(wl.port);
                    }
                    Target::External(e) => {
                        world.netns[world.external_ns[e]].udp_ports.insert(wl.port);
                    }
                    _ => {}
                }
                flows.push(Flow {
                    workload: wi,
                    client: c,
                    target,
                    client_ns: cns,
                    client_ip,
                    sport: 0,
                    dst: (Ipv4Addr::UNSPECIFIED, 0),
                    peer: (Ipv4Addr::UNSPECIFIED, 0),
                    kind: wl.kind.clone(),
                    start: wl.start,
                    end: wl.start + wl.duration,
                    per_request: wl.new_connection_per_request,
                    connections: 0,
                    next_seq: 0,
                    outstanding: None,
                    socks: [
                        Sock::new(ck.wmem_default, ck.rmem_default),
                        Sock::new(sk.wmem_default, sk.rmem_default),
                    ],
                    tcp: None,
                });
            }
        }
        let mut queue = EventQueue::new();
        for (i, f) in flows.iter().enumerate() {
            queue.schedule(f.start, Event::Send { flow: i as u32 });
        }
        for (index, c) in cluster.changes.iter().enumerate() {
            queue.schedule(c.at, Event::Change { index });
        }
        let obs = Observations::new(flows.len());
        let flow_rng = rngs.stream(Component::Workload, u64::MAX >> 16);
        let mut sim = Simulation {
            world,
            queue,
            obs,
            flows,
            trace_first: true,
            end: Instant::ZERO + cluster.duration,
            rng: flow_rng,
            tcp: Vec::new(),
            tcp_host_of: Vec::new(),
            bgp: None,
            any_down: false,
        };
        sim.tcp_setup();
        // A node that joins later is off until it does.
        for (n, joins) in sim.world.cluster.joining().into_iter().enumerate() {
            if joins {
                sim.world.nodes[n].down = true;
                sim.any_down = true;
            }
        }
        sim.bgp_setup();
        sim
    }

    /// Runs to the end of the scenario and checks packet conservation.
    pub fn run(&mut self) -> Result<(), Error> {
        let end = self.end;
        self.run_until(end)?;
        self.check_conservation()
    }

    /// Runs the events up to `limit`; fails if the simulator outgrows its memory cap
    /// (`memory::check`, every 65,536 events). Reports its progress (`progress`).
    pub fn run_until(&mut self, limit: Instant) -> Result<(), Error> {
        crate::progress::stage("simulating (ms of simulated time)", limit.as_nanos() / 1_000_000);
        let mut next_check = (self.queue.processed() / 65_536 + 1) * 65_536;
        while let Some((t, ev)) = self.queue.pop_until(limit) {
            self.handle(t, ev);
            // An event may count for several (a flood's copies): check on crossing a multiple.
            if self.queue.processed() >= next_check {
                next_check = (self.queue.processed() / 65_536 + 1) * 65_536;
                crate::memory::check(|| self.memory_growth(t))?;
                crate::progress::set(t.as_nanos() / 1_000_000);
            }
        }
        Ok(())
    }

    /// What holds the memory when the cap is hit, for the message.
    fn memory_growth(&self, t: Instant) -> String {
        let sent: u64 = self.obs.flows.iter().map(|f| f.sent).sum();
        let delivered: u64 = self.obs.flows.iter().map(|f| f.delivered).sum();
        let waiting = sent.saturating_sub(delivered + self.obs.dropped_total());
        format!(
            "at simulated t = {} with {} events pending and {waiting} of {sent} datagrams sent still in flight: \
             they wait in queues as deep as the scenario sets them (socket buffers, backlogs, txqueuelen, the \
             underlay's port queues); make those shallower, lower the workload's rate, shorten the scenario, \
             or raise --max-memory",
            t - Instant::ZERO,
            self.queue.len()
        )
    }

    fn handle(&mut self, t: Instant, ev: Event) {
        if self.any_down && self.event_node(&ev).is_some_and(|n| self.world.nodes[n].down) {
            return self.lost_with_node(ev);
        }
        match ev {
            Event::Send { flow } => self.send(t, flow),
            Event::Timeout { flow, seq } => {
                let f = &mut self.flows[flow as usize];
                if f.outstanding.is_some_and(|(s, _)| s == seq) {
                    f.outstanding = None;
                    self.obs.timeout(flow);
                    self.schedule_next_request(t, flow);
                }
            }
            Event::Enqueue { link, pkt } => self.enqueue(t, link, pkt),
            Event::ArriveFlood { links, pkt } => {
                // Each copy is an event of its own, as far as anything counts.
                self.queue.count_processed(links.len() as u64 - 1);
                let mut pkt = Some(pkt);
                for (i, &link) in links.iter().enumerate() {
                    let pkt = if i + 1 == links.len() {
                        pkt.take().expect("the last copy is the packet")
                    } else {
                        pkt.as_ref().expect("the packet is kept until the last copy").flood_copy()
                    };
                    self.handle(t, Event::Arrive { link, pkt });
                }
            }
            Event::Arrive { link, pkt } => {
                self.obs.packet_hops += 1;
                match self.world.link_ends[link] {
                    LinkEnd::Switch { switch, port } => {
                        let mut out = Vec::new();
                        datapath::switch_input(&mut self.world, switch, port, pkt, t, &mut out);
                        self.apply(t, out);
                    }
                    LinkEnd::Device(nic) => {
                        let ns = &self.world.netns[self.world.devices[nic].ns];
                        if let NsKind::Router(_) = ns.kind {
                            // A fabric router forwards in hardware: no CPU queue, no cost.
                            let mut cx = Ctx::hardware(t);
                            datapath::nic_rx(&mut self.world, &mut cx, nic, pkt);
                            self.obs.packet_hops += cx.hops;
                            self.apply(t, cx.actions);
                        } else {
                            let node = ns.node;
                            let hash = flow_hash(&pkt.frame);
                            if self.rx_ring_full(node, t, hash) {
                                // No free descriptor: the NIC drops the frame before the kernel
                                // sees it (rx_missed_errors), at no CPU cost.
                                return self.drop(pkt, DropReason::RxRingFull);
                            }
                            let pkt = if self.gro_may_take(node, t, hash) {
                                match self.gro_receive(t, node, nic, hash, pkt) {
                                    Some(p) => p,
                                    None => return,
                                }
                            } else {
                                pkt
                            };
                            let flow = pkt.meta.flow();
                            self.chain(node, t, hash, Work::Rx, flow, |w, cx| {
                                datapath::nic_rx(w, cx, nic, pkt)
                            });
                        }
                    }
                }
            }
            Event::Deliver { ns, pkt } => self.deliver(t, ns, pkt),
            Event::Read { ns, pkt } => self.read(t, ns, pkt),
            Event::DeliverTcp { ns, pkt } => self.tcp_input(t, ns, pkt),
            Event::User { proc, input, pkt } => self.user(t, proc, input, pkt),
            Event::UserDone { proc, outputs } => self.user_done(t, proc, outputs),
            Event::Change { index } => self.change(t, index),
            Event::TcpPoll { host, sock } => self.tcp_timer(t, host, sock),
            Event::TcpXmit { host, sock } => self.tcp_xmit_done(t, host as usize, sock),
            Event::TcpApp { host, flow, conn, side, op } => {
                self.tcp_app_done(t, host as usize, flow, conn, side, op)
            }
            Event::SyncDone { node, version, changed_at, rules } => {
                self.sync_done(t, node, version, changed_at, *rules)
            }
            Event::Bird { bird, work } => self.bird(t, bird as usize, work),
            Event::PolicySync { node, version, state } => self.policy_sync_done(node, version, *state),
            Event::GroFlush { node, core } => self.gro_flush(t, node, core),
            Event::TsqFree { host, sock, bytes } => self.tcp_tsq(t, host as usize, sock, bytes, false),
            Event::ArpTimer { ns, ip } => {
                if let NsKind::Router(_) = self.world.netns[ns].kind {
                    let mut cx = Ctx::hardware(t);
                    datapath::arp_timer(&mut self.world, &mut cx, ns, ip);
                    self.apply(t, cx.actions);
                } else {
                    let node = self.world.netns[ns].node;
                    self.chain(node, t, u32::from(ip), Work::Timer, None, |w, cx| {
                        datapath::arp_timer(w, cx, ns, ip)
                    });
                }
            }
        }
    }

    /// Whether the receive ring of the core `hash` selects on `node` has no free descriptor:
    /// as many frames wait for that core as the ring holds.
    fn rx_ring_full(&mut self, node: usize, t: Instant, hash: u32) -> bool {
        let n = &mut self.world.nodes[node];
        let limit = n.kernel.rx_ring as usize;
        let core = hash as usize % n.cores.len();
        Core::waiting(&mut n.cores[core].rx_waiting, t) >= limit
    }

    /// Runs a chain of kernel steps on the core of `node` that `hash` selects, then applies its
    /// actions when the core is done; returns that time. The chain's CPU time counts (in the
    /// core's busy time, its step breakdown and `flow`'s) only if it is served within the run.
    fn chain(
        &mut self,
        node: usize,
        t: Instant,
        hash: u32,
        work: Work,
        flow: Option<u32>,
        steps: impl FnOnce(&mut World, &mut Ctx),
    ) -> Instant {
        let cx = self.run_chain(node, t, hash, work, flow, steps);
        let done = cx.now();
        self.apply(done, cx.actions);
        done
    }

    /// [`Self::chain`] without applying the actions: the caller does.
    fn run_chain(
        &mut self,
        node: usize,
        t: Instant,
        hash: u32,
        work: Work,
        flow: Option<u32>,
        steps: impl FnOnce(&mut World, &mut Ctx),
    ) -> Ctx {
        let n = &mut self.world.nodes[node];
        let ci = hash as usize % n.cores.len();
        let backlog_limit = n.kernel.netdev_max_backlog as usize;
        let core = &mut n.cores[ci];
        let start = core.busy_until.max(t);
        let mut cx = Ctx::new(start);
        if work == Work::Process {
            cx.backlog_full = Core::waiting(&mut core.backlog_waiting, t) >= backlog_limit;
        }
        steps(&mut self.world, &mut cx);
        let n = &mut self.world.nodes[node];
        let core = &mut n.cores[ci];
        let done = start + cx.cost;
        core.busy_until = done;
        if start > t {
            match work {
                Work::Rx => core.rx_waiting.push_back(start),
                Work::Process if cx.used_backlog => core.backlog_waiting.push_back(start),
                _ => {}
            }
        }
        if done <= self.end {
            core.busy += cx.cost;
            for (total, d) in core.steps.iter_mut().zip(cx.steps) {
                *total += d;
            }
            if let Some(f) = flow {
                self.obs.flow_cpu(f, node, ci, &cx.steps);
            }
        }
        if work != Work::Read {
            n.packets += 1;
        }
        self.obs.packet_hops += cx.hops;
        cx
    }

    fn apply(&mut self, at: Instant, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::Transmit { link, pkt } => {
                    if at == self.queue.now() {
                        self.enqueue(at, link, pkt);
                    } else {
                        self.queue.schedule(at, Event::Enqueue { link, pkt });
                    }
                }
                Action::TransmitFlood { links, pkt } => {
                    if at == self.queue.now() {
                        self.flood(at, links, pkt);
                    } else {
                        let mut pkt = Some(pkt);
                        for (i, &link) in links.iter().enumerate() {
                            let pkt = match i + 1 == links.len() {
                                true => pkt.take().expect("the last copy is the packet"),
                                false => pkt.as_ref().expect("kept until the last copy").flood_copy(),
                            };
                            self.queue.schedule(at, Event::Enqueue { link, pkt });
                        }
                    }
                }
                Action::Deliver { ns, pkt } => self.queue.schedule(at, Event::Deliver { ns, pkt }),
                Action::DeliverTcp { ns, pkt } => {
                    if at == self.queue.now() {
                        self.tcp_input(at, ns, pkt);
                    } else {
                        self.queue.schedule(at, Event::DeliverTcp { ns, pkt });
                    }
                }
                Action::Read { ns, pkt } => self.queue.schedule(at, Event::Read { ns, pkt }),
                Action::Drop { pkt, reason } => self.drop(pkt, reason),
                Action::ArpTimer { ns, ip, after } => {
                    self.queue.schedule(at + after, Event::ArpTimer { ns, ip })
                }
                Action::Flood { group, fresh, copies } => self.obs.flooded(group, fresh, copies),
                Action::ToUser { proc, input, pkt } => {
                    self.queue.schedule(at, Event::User { proc, input, pkt })
                }
            }
        }
    }

    /// A userspace process handles a packet: it is a FIFO server of its own.
    fn user(&mut self, t: Instant, proc: usize, input: Input, mut pkt: Packet) {
        let kernel = self.world.nodes[self.world.procs[proc].node].kernel;
        let truesize = skb_truesize(pkt.frame.len() + NET_SKB_PAD);
        let q = &mut self.world.procs[proc].queues;
        let full = match input {
            // tun_net_xmit: the tun's ring holds txqueuelen packets (drivers/net/tun.c); a
            // capture port's queue is bounded the same way.
            Input::Device => (Core::waiting(&mut q.device, t) >= kernel.tun_txqueuelen as usize)
                .then_some(DropReason::TunQueueFull),
            Input::Socket => {
                while q.socket.front().is_some_and(|&(s, _)| s <= t) {
                    let (_, b) = q.socket.pop_front().expect("checked");
                    q.socket_bytes -= u64::from(b);
                }
                // __udp_enqueue_schedule_skb drops once sk_rmem_alloc is over sk_rcvbuf.
                (q.socket_bytes > u64::from(kernel.rmem_default)).then_some(DropReason::RcvbufFull)
            }
        };
        if let Some(reason) = full {
            return self.drop(pkt, reason);
        }
        let data_flow = pkt.meta.flow();
        let costs = &self.world.costs;
        let p = &mut self.world.procs[proc];
        if let Some(tr) = pkt.meta.trace.as_mut() {
            let what = if input == Input::Device { "read from its device" } else { "recvfrom on its socket" };
            tr.push(Hop {
                time_ns: t.as_nanos(),
                place: self.world.netns[p.ns].name.clone(),
                device: p.name.clone(),
                action: "userspace".into(),
                why: format!("{} {what}", p.name),
                size: pkt.frame.len(),
            });
        }
        let (mut outputs, cost) = p.handle(costs, t, input, pkt);
        if let crate::userspace::ProcKind::KubeProxy(k) = &p.kind {
            if k.opened {
                // The proxy's handling of a datagram that opened a backend connection is part of
                // what a new connection to a Service costs in this mode.
                let stats = &mut self.world.proxies[p.node].stats;
                stats.translated_cpu += cost;
                stats.new_connection_cpu += cost;
            }
        }
        let p = &mut self.world.procs[proc];
        let start = p.busy_until.max(t);
        p.busy_until = start + cost;
        if start + cost <= self.end {
            p.busy += cost;
            if let Some(flow) = data_flow {
                self.obs.flow_user_cpu(flow, proc, cost);
            }
        }
        if start > t {
            match input {
                Input::Device => p.queues.device.push_back(start),
                Input::Socket => {
                    p.queues.socket.push_back((start, truesize));
                    p.queues.socket_bytes += u64::from(truesize);
                }
            }
        }
        // A data packet sent to several peers (broadcast, unknown MAC) is one flood group.
        let data_copies =
            outputs.iter().filter(|o| matches!(o, Output::Udp { pkt, .. } if pkt.is_data())).count();
        if data_copies > 1 {
            // Join the packet's flood group if it already is a flooded copy, else start one.
            let existing = outputs.iter().find_map(|o| match o {
                Output::Udp { pkt, .. } if pkt.meta.flood != 0 => Some(pkt.meta.flood),
                _ => None,
            });
            let group = existing.unwrap_or_else(|| {
                self.world.next_flood += 1;
                self.world.next_flood
            });
            for o in &mut outputs {
                if let Output::Udp { pkt, .. } = o {
                    pkt.meta.flood = group;
                }
            }
            self.obs.flooded(group, existing.is_none(), data_copies as u32);
        }
        self.queue.schedule(start + cost, Event::UserDone { proc, outputs });
    }

    fn user_done(&mut self, t: Instant, proc: usize, outputs: Vec<Output>) {
        let (node, ns) = (self.world.procs[proc].node, self.world.procs[proc].ns);
        for out in outputs {
            match out {
                Output::Udp { src, sport, dst, port, payload, df, pkt } => {
                    // The socket the process sends from receives too.
                    self.world.netns[ns].user_ports.entry(sport).or_insert(proc);
                    let hash = flow_hash(&pkt.frame);
                    let flow = pkt.meta.flow();
                    self.chain(node, t, hash, Work::Process, flow, |w, cx| {
                        datapath::user_send_udp(w, cx, ns, (src, sport), (dst, port), &payload, pkt, df)
                    });
                }
                Output::Tun { dev, pkt } => {
                    let hash = flow_hash(&pkt.frame);
                    let flow = pkt.meta.flow();
                    self.chain(node, t, hash, Work::Process, flow, |w, cx| {
                        datapath::tun_write(w, cx, dev, pkt)
                    });
                }
                Output::Inject { dev, pkt } => {
                    let hash = flow_hash(&pkt.frame);
                    let flow = pkt.meta.flow();
                    self.chain(node, t, hash, Work::Process, flow, |w, cx| {
                        datapath::user_inject(w, cx, dev, pkt)
                    });
                }
                Output::Drop { pkt, reason } => self.drop(pkt, reason),
            }
        }
    }

    /// A frame the transmitter at `link` takes (the NIC's TX ring, the cable). A TSO
    /// super-packet is cut here, by the NIC in hardware: its segments go on the wire back to
    /// back, and what a capture on the sending device showed was the super-packet.
    fn enqueue(&mut self, t: Instant, link: LinkId, mut pkt: Packet) {
        if let Some(g) = pkt.meta.gso.take() {
            if let Some(frames) = crate::net::gso::segment(&pkt.frame, g) {
                // One skb under TSO: its bytes count for TCP small queues until its last
                // segment has been sent (each of software GSO's segments counts for itself).
                let skb = if pkt.meta.gso_software { None } else { pkt.meta.tsq.take() };
                let bytes = pkt.frame.len() as u64;
                let mut refused = false;
                for (i, seg) in Packet::segments(pkt.meta, frames).enumerate() {
                    if refused {
                        // The qdisc refused the super-packet: every segment goes with it.
                        self.drop(seg, DropReason::QdiscFull);
                    } else {
                        refused = !self.offer_frame(t, link, seg, i == 0);
                    }
                }
                let l = &self.world.links[link];
                if let (Some((host, sock)), false, Some(_)) = (skb, refused, l.packet_limit) {
                    let left = l.busy_until();
                    self.tcp_tsq(t, host as usize, sock, bytes, true);
                    self.queue.schedule(left, Event::TsqFree { host, sock, bytes });
                }
                return;
            }
            pkt.meta.gso = Some(g);
        }
        self.offer_frame(t, link, pkt, true);
    }

    /// Offers one frame to the transmitter at `link`; `qdisc_slot`: it takes a slot of the
    /// qdisc (see `Link::offer_frame`). Returns false when the qdisc refused it.
    fn offer_frame(&mut self, t: Instant, link: LinkId, mut pkt: Packet, qdisc_slot: bool) -> bool {
        let charge = std::mem::take(&mut pkt.meta.sk_wmem);
        let offered = self.world.links[link].offer_frame(t, pkt.frame.len(), qdisc_slot);
        let accepted = !matches!(offered, Err(LinkDrop::QdiscFull));
        if let (Some((host, sock)), Ok(arrive), Some(_)) =
            (pkt.meta.tsq.take(), offered, self.world.links[link].packet_limit)
        {
            // A host NIC's queue: the bytes count for the sender's TCP small queues until sent.
            let left = Instant::from_nanos(arrive.as_nanos() - self.world.links[link].propagation.as_nanos());
            let bytes = pkt.frame.len() as u64;
            self.tcp_tsq(t, host as usize, sock, bytes, true);
            self.queue.schedule(left, Event::TsqFree { host, sock, bytes });
        }
        if charge > 0 {
            // The skb is freed when the NIC has sent it (TX completion), or at once if refused.
            let tag = pkt.meta.data.expect("only workload datagrams carry a socket charge");
            let prop = self.world.links[link].propagation;
            let left = offered.map_or(t, |arrive| Instant::from_nanos(arrive.as_nanos() - prop.as_nanos()));
            self.release(tag, left, charge);
        }
        match offered {
            Ok(arrive) => self.queue.schedule(arrive, Event::Arrive { link, pkt }),
            Err(e) => self.link_drop(t, link, pkt, e),
        }
        accepted
    }

    /// A switch's flood offered to its egress cables at `t` in port order, each as
    /// [`Self::offer_frame`] would take it. Consecutive copies that reach their far ends at
    /// the same instant travel as one [`Event::ArriveFlood`], which hands each its copy then,
    /// in the same order and at the same place among the other events as separate `Arrive`
    /// events would (nothing else is scheduled between them, and what they schedule at that
    /// instant runs after them all either way). The copies are made when they arrive, so a
    /// flood to 5,000 ports waits in the queue as one frame, not 5,000.
    fn flood(&mut self, t: Instant, links: Vec<LinkId>, pkt: Packet) {
        // A frame with a socket's charge, TCP small queues bytes or a super-packet's
        // segmentation to do takes the general path, copy by copy.
        if pkt.meta.sk_wmem != 0 || pkt.meta.tsq.is_some() || pkt.meta.gso.is_some() {
            let n = links.len();
            let mut pkt = Some(pkt);
            for (i, &link) in links.iter().enumerate() {
                let p = if i + 1 == n {
                    pkt.take().expect("last")
                } else {
                    pkt.as_ref().expect("kept").flood_copy()
                };
                self.enqueue(t, link, p);
            }
            return;
        }
        let len = pkt.frame.len();
        let n = links.len();
        let mut pkt = Some(pkt);
        let mut group: Vec<LinkId> = Vec::new();
        let mut at = t;
        for (i, &link) in links.iter().enumerate() {
            match self.world.links[link].offer_frame(t, len, true) {
                Ok(arrive) => {
                    if !group.is_empty() && arrive != at {
                        let copy = pkt.as_ref().expect("kept").flood_copy();
                        self.queue.schedule(
                            at,
                            Event::ArriveFlood { links: std::mem::take(&mut group), pkt: copy },
                        );
                    }
                    at = arrive;
                    group.push(link);
                }
                Err(e) => {
                    if !group.is_empty() {
                        let copy = pkt.as_ref().expect("kept").flood_copy();
                        self.queue.schedule(
                            at,
                            Event::ArriveFlood { links: std::mem::take(&mut group), pkt: copy },
                        );
                    }
                    let p = if i + 1 == n {
                        pkt.take().expect("last")
                    } else {
                        pkt.as_ref().expect("kept").flood_copy()
                    };
                    self.link_drop(t, link, p, e);
                }
            }
        }
        if let (false, Some(pkt)) = (group.is_empty(), pkt) {
            self.queue.schedule(at, Event::ArriveFlood { links: group, pkt });
        }
    }

    /// A frame the transmitter at `link` refused (`e`): dropped, with a hop when traced.
    fn link_drop(&mut self, t: Instant, link: LinkId, mut pkt: Packet, e: LinkDrop) {
        let reason = match e {
            LinkDrop::QueueFull => DropReason::QueueFull,
            LinkDrop::QdiscFull => DropReason::QdiscFull,
            LinkDrop::Loss => DropReason::LinkLoss,
        };
        if let Some(tr) = pkt.meta.trace.as_mut() {
            tr.push(Hop {
                time_ns: t.as_nanos(),
                place: "underlay".into(),
                device: format!("cable {link}"),
                action: "drop".into(),
                why: reason.name().into(),
                size: pkt.frame.len(),
            });
        }
        self.drop(pkt, reason)
    }

    fn drop(&mut self, mut pkt: Packet, reason: DropReason) {
        // A TCP segment's loss counts for its stream; a flooded copy that reached the wrong
        // host (or went back out of its port) is no loss.
        if let Some(tag) =
            pkt.meta.tcp.filter(|_| !matches!(reason, DropReason::NotForThisHost | DropReason::SamePort))
        {
            let stream = self.stream_index(tag.flow, tag.conn);
            let segments = pkt.meta.gso.map_or(1, |g| crate::net::gso::segment_count(&pkt.frame, g)) as u64;
            if let Some(o) = self.obs.flows[tag.flow as usize].tcp.as_mut() {
                *o.streams[stream].drops.entry(reason).or_default() += segments;
            }
            if let Some(t) = pkt.meta.trace.take() {
                self.world.control_hops.extend(*t);
            }
            return;
        }
        match pkt.meta.data {
            Some(tag) => {
                self.obs.dropped(Some(&tag), pkt.meta.flood, reason);
                self.keep_trace(tag, &mut pkt.meta, false);
            }
            None => {
                self.obs.dropped(None, 0, reason);
                if let Some(t) = pkt.meta.trace.take() {
                    self.world.control_hops.extend(*t);
                }
            }
        }
    }

    /// Keeps the first finished trace of a flow, preferring a delivered copy's path; the
    /// answer to the first request separately.
    fn keep_trace(&mut self, tag: DataTag, meta: &mut Meta, delivered: bool) {
        if let Some(t) = meta.trace.take() {
            let f = &mut self.obs.flows[tag.flow as usize];
            if tag.dir == Dir::Reverse {
                f.reply_trace.get_or_insert(*t);
                return;
            }
            if f.trace.is_none() || (delivered && !f.trace_delivered) {
                f.trace = Some(*t);
                f.trace_delivered = delivered;
            }
        }
    }

    /// A pod is deleted: its sockets close and its flows stop at once; every Service loses it
    /// as an endpoint, and each node's proxy syncs when its sync runner allows.
    fn change(&mut self, t: Instant, index: usize) {
        let pod = match self.world.cluster.changes[index].what {
            ChangeKind::DeletePod(pod) => pod,
            ChangeKind::PowerOff(node) => return self.power_off(t, index, node),
            ChangeKind::StopBird(node) => return self.bgp_change(t, index, node, false),
            ChangeKind::RestartBird(node) => return self.bgp_restart(t, index, node),
            ChangeKind::JoinNode(node) => return self.join(t, index, node),
            ChangeKind::ApplyPolicy(_) | ChangeKind::DeletePolicy(_) | ChangeKind::LabelPod(_) => {
                return self.policy_change(t, index)
            }
        };
        let ns = self.world.pod_ns[pod];
        self.world.netns[ns].udp_ports.clear();
        for f in self.flows.iter_mut().filter(|f| f.client == Client::Pod(pod)) {
            f.end = f.end.min(t);
        }
        let mut next = (**self.world.service_tables.last().expect("the scenario's table")).clone();
        let mut removed = 0;
        for s in &mut next.services {
            let before = s.endpoints.len();
            s.endpoints.retain(|e| e.pod != pod);
            removed += (before - s.endpoints.len()) * s.ports.len();
        }
        self.services_changed(t, next, removed);
    }

    /// Node `node` joins: the endpoint controller adds its pods to their Services (each in
    /// its place in IP order, as EndpointSlices list them) and every proxy syncs; then its
    /// BIRD starts and its peers add it (`bgp_join`).
    fn join(&mut self, t: Instant, index: usize, node: usize) {
        let full = &self.world.cluster.services.services;
        let mut next = (**self.world.service_tables.last().expect("the scenario's table")).clone();
        let mut added = 0;
        for (s, all) in next.services.iter_mut().zip(full) {
            for e in all.endpoints.iter().filter(|e| e.node == node) {
                if let Err(at) = s.endpoints.binary_search_by_key(&e.ip, |x| x.ip) {
                    s.endpoints.insert(at, *e);
                    added += s.ports.len();
                }
            }
        }
        if added > 0 {
            self.services_changed(t, next, added);
        }
        self.bgp_join(t, index, node);
    }

    /// The Services now have table `next` (`changed` endpoint ports added or removed): every
    /// node's proxy syncs to it when its sync runner allows.
    fn services_changed(&mut self, t: Instant, next: crate::cluster::ServiceTable, changed: usize) {
        let next = std::sync::Arc::new(next);
        self.world.service_tables.push(next.clone());
        let version = self.world.service_tables.len() - 1;
        let costs = self.world.costs.clone();
        let mut builder = crate::proxy::node::NodeRules::new(self.world.cluster.proxy, &next);
        for node in 0..self.world.proxies.len() {
            let p = &mut self.world.proxies[node];
            let start = p.sync_start(t);
            let order = p.next_order();
            let rules = builder.for_node(&p.node, &order, &p.proxy_ports);
            let cost = p.sync_cost(&costs, &rules, changed);
            p.busy_until = start + cost;
            p.stats.sync_cpu += cost;
            let rules = Box::new(rules);
            self.queue.schedule(start + cost, Event::SyncDone { node, version, changed_at: t, rules });
        }
    }

    /// Node `node` loses power: nothing on it runs any more (its workloads, kernel, proxy and
    /// BIRD stop without a word to anyone), and what reaches it or was in its queues is lost.
    fn power_off(&mut self, t: Instant, index: usize, node: usize) {
        self.world.nodes[node].down = true;
        self.any_down = true;
        for f in self.flows.iter_mut() {
            if self.world.netns[f.client_ns].node == node {
                f.end = f.end.min(t);
            }
        }
        self.bgp_change(t, index, node, true);
    }

    /// The node an event happens on, where a powered-off node would stop it (`None`: a fabric
    /// router, a switch, or no node).
    fn event_node(&self, ev: &Event) -> Option<usize> {
        let w = &self.world;
        let of_ns = |ns: NsId| match w.netns[ns].kind {
            NsKind::Router(_) => None,
            _ => Some(w.netns[ns].node),
        };
        match ev {
            Event::Arrive { link, .. } => match w.link_ends[*link] {
                LinkEnd::Device(nic) => of_ns(w.devices[nic].ns),
                LinkEnd::Switch { .. } => None,
            },
            Event::Deliver { ns, .. }
            | Event::Read { ns, .. }
            | Event::DeliverTcp { ns, .. }
            | Event::ArpTimer { ns, .. } => of_ns(*ns),
            Event::User { proc, .. } | Event::UserDone { proc, .. } => Some(w.procs[*proc].node),
            Event::Send { flow } => of_ns(self.flows[*flow as usize].client_ns),
            Event::TcpPoll { host, .. }
            | Event::TcpXmit { host, .. }
            | Event::TcpApp { host, .. }
            | Event::TsqFree { host, .. } => of_ns(self.tcp[*host as usize].ns),
            Event::SyncDone { node, .. } | Event::PolicySync { node, .. } | Event::GroFlush { node, .. } => {
                Some(*node)
            }
            Event::Bird { bird, .. } => self.bgp.as_ref().map(|cp| cp.birds[*bird as usize].node),
            // Each copy of a flood is checked when it arrives.
            Event::Enqueue { .. }
            | Event::ArriveFlood { .. }
            | Event::Timeout { .. }
            | Event::Change { .. } => None,
        }
    }

    /// An event of a powered-off node: the packets it carries are lost.
    fn lost_with_node(&mut self, ev: Event) {
        match ev {
            Event::Arrive { pkt, .. }
            | Event::Deliver { pkt, .. }
            | Event::Read { pkt, .. }
            | Event::DeliverTcp { pkt, .. }
            | Event::User { pkt, .. } => self.drop(pkt, DropReason::NodeDown),
            Event::UserDone { outputs, .. } => {
                for o in outputs {
                    match o {
                        Output::Udp { pkt, .. } | Output::Tun { pkt, .. } | Output::Inject { pkt, .. } => {
                            self.drop(pkt, DropReason::NodeDown)
                        }
                        Output::Drop { .. } => {}
                    }
                }
            }
            Event::GroFlush { node, core } => {
                let c = &mut self.world.nodes[node].cores[core];
                c.gro_flush_at = None;
                for g in std::mem::take(&mut c.gro) {
                    let (frame, gso) = g.held.finish();
                    self.drop(Packet { frame, meta: Meta { gso, ..g.meta } }, DropReason::NodeDown);
                }
            }
            _ => {}
        }
    }

    fn sync_done(
        &mut self,
        t: Instant,
        node: usize,
        version: usize,
        changed_at: Instant,
        rules: crate::proxy::node::Rules,
    ) {
        let table = self.world.service_tables[version].clone();
        let p = &mut self.world.proxies[node];
        if version < p.version {
            return;
        }
        // kube-proxy deletes the UDP conntrack entries of endpoints that went away (only UDP:
        // TCP connections end by themselves)
        // (conntrack.CleanStaleEntries at the end of the sync).
        let live: std::collections::HashSet<Ipv4Addr> =
            table.services.iter().flat_map(|s| s.endpoints.iter().map(|e| e.ip)).collect();
        p.conntrack.remove_where(|e| {
            e.original.proto == crate::net::conntrack::L4::Udp
                && e.dnat.is_some_and(|d| !live.contains(&d.to.0))
        });
        p.install(table.clone(), version, rules);
        p.stats.syncs.push((changed_at, t));
        if let Some(proc) = p.proc {
            if let crate::userspace::ProcKind::KubeProxy(k) = &mut self.world.procs[proc].kind {
                k.table = table;
            }
        }
    }
    /// Data packets still travelling: in events or waiting for ARP. A flood group counts once.
    pub fn in_flight(&self) -> u64 {
        let mut groups = std::collections::BTreeSet::new();
        let mut n = 0;
        let mut count_meta = |m: &Meta| {
            if m.data.is_none() {
                return;
            }
            if m.flood == 0 {
                n += 1;
            } else if self.obs.flood_in_flight(m.flood) {
                groups.insert(m.flood);
            }
        };
        // Datagrams whose first fragment waits for the rest in a reassembly queue.
        for ns in &self.world.netns {
            ns.frag_meta.values().for_each(|(m, _)| count_meta(m));
        }
        let mut count = |p: &Packet| count_meta(&p.meta);
        for ev in self.queue.pending() {
            match ev {
                Event::Enqueue { pkt, .. }
                | Event::Arrive { pkt, .. }
                | Event::ArriveFlood { pkt, .. }
                | Event::Deliver { pkt, .. }
                | Event::Read { pkt, .. }
                | Event::User { pkt, .. } => count(pkt),
                Event::UserDone { outputs, .. } => {
                    for o in outputs {
                        match o {
                            Output::Udp { pkt, .. }
                            | Output::Tun { pkt, .. }
                            | Output::Inject { pkt, .. } => count(pkt),
                            Output::Drop { .. } => {}
                        }
                    }
                }
                Event::Send { .. }
                | Event::Timeout { .. }
                | Event::ArpTimer { .. }
                | Event::Change { .. }
                | Event::SyncDone { .. }
                | Event::PolicySync { .. }
                | Event::DeliverTcp { .. }
                | Event::TcpPoll { .. }
                | Event::TcpXmit { .. }
                | Event::TcpApp { .. }
                | Event::GroFlush { .. }
                | Event::TsqFree { .. }
                | Event::Bird { .. } => {}
            }
        }
        for ns in &self.world.netns {
            for (_, inc) in ns.neigh.incomplete() {
                inc.queue.iter().for_each(&mut count);
            }
        }
        n + groups.len() as u64
    }

    /// sent = delivered + dropped + in flight, or the run fails.
    pub fn check_conservation(&self) -> Result<(), Error> {
        let sent: u64 = self.obs.flows.iter().map(|f| f.sent).sum();
        let delivered: u64 = self.obs.flows.iter().map(|f| f.delivered).sum();
        let dropped = self.obs.dropped_total();
        let in_flight = self.in_flight();
        if sent != delivered + dropped + in_flight {
            let per_flow: Vec<String> = self
                .obs
                .flows
                .iter()
                .enumerate()
                .map(|(i, f)| {
                    format!("flow {i}: sent {} delivered {} dropped {:?}", f.sent, f.delivered, f.drops)
                })
                .collect();
            return Err(Error::Invariant(format!(
                "packet conservation: sent {sent} != delivered {delivered} + dropped {dropped} + in flight {in_flight} ({})",
                per_flow.join("; ")
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::cluster;
    use crate::time::Duration;
    use crate::units::Bandwidth;

    fn cbr() -> WorkloadKind {
        WorkloadKind::UdpCbr { rate: Bandwidth(100_000_000), payload: 1000 }
    }

    #[test]
    fn cross_node_cbr_is_delivered_and_conserved() {
        let c = cluster(2, 1, cbr(), &[(0, 1)]);
        let mut sim = Simulation::new(&c);
        sim.run().unwrap();
        let f = &sim.obs.flows[0];
        // 100 Mbit/s of 1000 B datagrams for 5 ms = 62.5 -> 63 datagrams (k = 0..62).
        assert_eq!(f.sent, 63);
        assert_eq!(f.delivered, 63, "drops: {:?}", f.drops);
        let hops = f.trace.as_ref().unwrap();
        let path: Vec<String> =
            hops.iter().map(|h| format!("{} {} {}", h.place, h.device, h.action)).collect();
        assert!(
            path.iter().any(|p| p == "underlay switch port 0 forward" || p == "underlay switch port 0 flood"),
            "{path:#?}"
        );
        // The kernel queues it on the socket, then the application reads it.
        let last: Vec<&str> = hops.iter().rev().take(2).map(|h| h.action.as_str()).collect();
        assert_eq!(last, ["recvmsg", "deliver"]);
    }

    #[test]
    fn a_switch_flood_waits_as_one_event_per_instant_and_arrives_as_copies() {
        use crate::addr::Mac;
        use smoltcp::wire::ArpOperation;
        let c = cluster(4, 1, cbr(), &[]);
        let mut sim = Simulation::new(&c);
        let ports = sim.world.switches[0].ports.clone();
        // Port 3's cable is sending a 1500 B frame: its copy waits behind it.
        sim.world.links[ports[3]].offer_frame(Instant::ZERO, 1500, true).unwrap();
        let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        let frame = crate::net::packet::arp_frame(
            ArpOperation::Request,
            Mac([2, 0, 0, 0, 0, 9]),
            ip("192.168.0.200"),
            Mac::BROADCAST,
            ip("192.168.0.201"),
        );
        sim.flood(
            Instant::ZERO,
            vec![ports[1], ports[2], ports[3]],
            Packet { frame, meta: Default::default() },
        );
        let mut floods: Vec<Vec<LinkId>> = sim
            .queue
            .pending()
            .filter_map(|e| match e {
                Event::ArriveFlood { links, .. } => Some(links.clone()),
                _ => None,
            })
            .collect();
        floods.sort();
        assert_eq!(floods, [vec![ports[1], ports[2]], vec![ports[3]]]);
        assert_eq!(sim.queue.pending().count(), 2, "nothing but the two groups is queued");
        let before = sim.queue.processed();
        sim.run_until(Instant::from_nanos(1_000_000)).unwrap();
        // Nodes 2 to 4 each took the request up their stack (and ignored it: it asks for no
        // one's address), node 1 did not see it; the copies count as three events.
        let packets: Vec<u64> = sim.world.nodes.iter().map(|n| n.packets).collect();
        assert_eq!(packets, [0, 1, 1, 1]);
        assert!(sim.queue.processed() - before >= 3);
        for (p, frames) in [(1, 1), (2, 1), (3, 2)] {
            assert_eq!(sim.world.links[ports[p]].tx_frames, frames, "port {p}");
        }
    }

    #[test]
    fn same_node_is_faster_than_cross_node() {
        let c = cluster(2, 2, cbr(), &[(0, 1), (0, 2)]);
        let mut sim = Simulation::new(&c);
        sim.run().unwrap();
        let same = sim.obs.flows[0].latency.value_at_quantile(0.5);
        let cross = sim.obs.flows[1].latency.value_at_quantile(0.5);
        assert!(same < cross, "same {same} cross {cross}");
        // Cross-node must include 2 x 5 us propagation and 2 x serialisation of 1042 B at 10G.
        assert!(cross >= 2 * 5_000 + 2 * 834, "{cross}");
    }

    #[test]
    fn request_response_completes_transactions() {
        let kind = WorkloadKind::UdpRr {
            request: 64,
            response: 1024,
            think: Duration::from_micros(100),
            timeout: Duration::from_millis(1),
        };
        let c = cluster(2, 1, kind, &[(0, 1)]);
        let mut sim = Simulation::new(&c);
        sim.run().unwrap();
        let f = &sim.obs.flows[0];
        assert!(f.transactions > 20, "{}", f.transactions);
        assert_eq!(f.timeouts, 0);
        assert!(f.rtt.value_at_quantile(0.5) > f.latency.value_at_quantile(0.5));
    }
}
