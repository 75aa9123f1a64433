//! Calico's BGP control plane in the run: a BIRD process on every node of a BGP mode, its
//! speaker (`crate::bgp`) fed by TCP connections to port 179 of the other nodes, carried by
//! the node's smoltcp stack (`run/tcp.rs`) through the same kernel pipeline as any segment.
//!
//! BIRD is single-threaded: one batch of work at a time, on one core of its node. A batch
//! reads what its sockets hold (every whole message), is served on the core
//! (`bird_message` per message, `bird_route` per route in it), and only then does the
//! speaker act on it; what it decides (messages to send, routes for the kernel, timers) is
//! served in turn (`bird_message` per message sent, `bird_route` per route sent,
//! `bird_route` plus `netlink_object` per kernel route) and takes effect when that is done.
//! While a batch is served, arriving bytes wait in the socket, as they wait for BIRD's event
//! loop. The kernel routes are exactly the speaker's: before a block's route arrives, and
//! after it is withdrawn, the node has no route to it.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::Ipv4Addr;

use smoltcp::socket::tcp;
use smoltcp::wire::IpAddress;

use super::tcp::TcpHost;
use super::{Event, Simulation, Work};
use crate::addr::Ipv4Net;
use crate::bgp::{Config, Input, Output, PeerConfig, PeerId, Speaker, TimerKind};
use crate::cluster::Bgp;
use crate::cost::Step;
use crate::engine::{Component, RngFactory};
use crate::observe::DropReason;
use crate::time::{Duration, Instant};
use crate::wire::bgp::{Message, PORT};

/// Which core of its node BIRD runs on: the core this hash selects (BIRD is one thread).
const BIRD_HASH: u32 = 179;

/// A session's TCP connection.
#[derive(Debug)]
struct Conn {
    slot: u32,
    /// Bytes read and not yet a whole message.
    rx: Vec<u8>,
    /// Bytes written by BIRD that the socket had no room for yet.
    tx: VecDeque<u8>,
    /// The connection has been reported established to the speaker.
    up: bool,
}

/// One node's BIRD. Invariant: `ControlPlane::birds[n]` is node `n`'s.
pub struct Bird {
    pub node: usize,
    pub speaker: Speaker,
    host: usize,
    conns: Vec<Option<Conn>>,
    /// Session of each connection's socket slot.
    peer_of_slot: BTreeMap<u32, PeerId>,
    /// Sessions whose socket may hold bytes BIRD has not read (it was busy), or whose
    /// written bytes did not all fit the socket.
    unread: BTreeSet<PeerId>,
    unsent: BTreeSet<PeerId>,
    /// Kernel routes BIRD installed: prefix -> the node whose address is the next hop.
    installed: BTreeMap<Ipv4Net, usize>,
    /// Inputs waiting for the process.
    pending: Vec<Input>,
    busy: bool,
    /// CPU time BIRD has used (served within the run).
    pub cpu: Duration,
    /// The node was powered off.
    pub dead: bool,
    /// Kernel routes BIRD added and removed.
    pub routes_added: u64,
    pub routes_removed: u64,
    /// Where BIRD's kernel protocol is with the kernel's routes.
    kernel: KernelSync,
    /// Batches of a process that died while they were served: dropped when they are done.
    stale_work: u32,
    /// Each peer's timers, by [`TimerKind`].
    timers: Vec<[TimerSlot; crate::bgp::TIMER_KINDS]>,
}

/// One of a speaker's timers as BIRD keeps it: `tm_start` on a running timer moves it
/// (`lib/timer.c`), it does not add another. The speaker restarts its hold timer on every
/// message received and its keepalive timer on every message sent; an event per restart
/// would leave millions of dead events in the queue (and charge BIRD for handling each) where
/// BIRD has one timer. So one event per timer is queued at a time, at `queued`: when it comes
/// and the timer has been moved later, it is queued again for `due`; a timer moved earlier
/// queues a new event, and the later one is ignored when it comes.
#[derive(Clone, Copy, Debug, Default)]
struct TimerSlot {
    /// When the timer fires, and the speaker's generation of it then (`None`: fired).
    due: Option<(Instant, u32)>,
    /// When the one event that counts for this timer is due.
    queued: Option<Instant>,
}

/// BIRD's kernel protocol after a restart: with `graceful restart` it leaves the kernel's
/// routes alone until the recovery ends (`gr_wait`, `krt.c`), then syncs them with its table
/// once (bird-facts.md §2.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KernelSync {
    /// Every change of the table goes to the kernel as it happens.
    Live,
    /// A restarted BIRD is recovering: nothing goes to the kernel.
    Deferred,
    /// The recovery is over and the sync is being served.
    Syncing,
}

/// Work of a BIRD process, when it has been served.
#[derive(Debug)]
pub enum BirdWork {
    /// calico-node starts BIRD.
    Start,
    /// A timer of the speaker may be due (see [`TimerSlot`]).
    Timer { peer: PeerId, kind: TimerKind },
    /// A batch of inputs has been read and parsed: the speaker acts on it.
    Inputs(Vec<Input>),
    /// What the speaker decided has been served: it takes effect.
    Apply { outputs: Vec<Output>, fib: Vec<(Ipv4Net, Option<Ipv4Addr>)> },
    /// A graceful shutdown.
    Stop,
}

/// The control plane's whole state: every BIRD, and where the cluster is in converging.
#[derive(Default)]
pub struct ControlPlane {
    pub birds: Vec<Bird>,
    /// `birds` index of each TCP host that runs a BIRD.
    bird_of_host: Vec<Option<usize>>,
    /// Next hop address -> the node whose blocks it announces.
    node_of_ip: BTreeMap<Ipv4Addr, usize>,
    /// The IPAM blocks each node originates.
    pub blocks: Vec<Vec<Ipv4Net>>,
    /// The initial convergence (every live node with a route to every block of every other
    /// live node), then, per change that takes a node's routes away, the time until no live
    /// node has a route through it.
    pub convergences: Vec<Convergence>,
    /// Since when the routes have been incomplete at the start, with the drop counts then.
    incomplete_since: Option<(Instant, BTreeMap<DropReason, u64>)>,
    /// After the start: since when some live node has lacked a route to a block of another
    /// live node (every reflector gone, routes withdrawn by a restart without graceful
    /// restart), with the drop counts then.
    lost_since: Option<(Instant, BTreeMap<DropReason, u64>)>,
    /// Changes not yet converged: (change, node, since, drops then, restart). A change that
    /// takes a node away waits until no live node routes through the node; a BIRD restart
    /// until the restarted BIRD's recovery has ended and its kernel routes are synced.
    pending: Vec<Pending>,
    /// The convergence tally, kept as routes come and go so that checking is O(1): a node is
    /// live while its BIRD runs; `via[m]`: kernel routes of live nodes whose next hop is
    /// node `m`; `valid`: those whose next hop is live; `want`: the routes the live nodes
    /// need (every block of every other live node).
    live: Vec<bool>,
    via: Vec<u64>,
    valid: u64,
    want: u64,
}

/// A change whose convergence is waited for.
struct Pending {
    change: usize,
    node: usize,
    since: Instant,
    /// Datagrams to the node's pods dropped by then, by reason.
    drops: BTreeMap<DropReason, u64>,
    kind: PendingKind,
}

/// What a change waits for.
enum PendingKind {
    /// A node taken away: no live node routes through it.
    Away,
    /// A BIRD restart: its recovery has ended and its kernel routes are synced.
    Restart,
    /// A node joined: every live node routes to each of its blocks through it, and it routes
    /// to every block of every live node. `reached[m]`: when live node `m` first had a route
    /// to each of the new node's blocks (its pods became reachable from `m`).
    Join { reached: Vec<Option<Instant>> },
}

/// One period from a cause (the start, a change) to every live node's routes being complete.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Convergence {
    /// Index into the scenario's changes; `None`: the cluster's start, or routes lost.
    pub change: Option<usize>,
    /// Routes between live nodes were lost after the start, and this is how long until they
    /// were all back (not a change's own convergence).
    pub lost: bool,
    pub from: Instant,
    pub to: Instant,
    /// Datagrams dropped meanwhile, by reason.
    pub drops: BTreeMap<String, u64>,
    /// A node joined: for each other live node, in node order, how long after the join it had
    /// a route to each of the new node's blocks (the new node's pods unreachable from it).
    pub reached: Vec<Duration>,
}

impl ControlPlane {
    /// Node `n`'s BIRD stops being live (powered off, stopped): its routes no longer count,
    /// nor do routes through it, nor its blocks among those wanted.
    fn set_down(&mut self, n: usize) {
        if !std::mem::replace(&mut self.live[n], false) {
            return;
        }
        for &m in self.birds[n].installed.values() {
            self.via[m] -= 1;
            if self.live[m] {
                self.valid -= 1;
            }
        }
        self.valid -= self.via[n];
        self.count_wanted();
    }

    /// Node `n` joined: its BIRD's routes count, routes through it are valid, its blocks are
    /// wanted by every other live node.
    fn set_up(&mut self, n: usize) {
        if std::mem::replace(&mut self.live[n], true) {
            return;
        }
        for &m in self.birds[n].installed.values() {
            self.via[m] += 1;
            if self.live[m] {
                self.valid += 1;
            }
        }
        self.valid += self.via[n];
        self.count_wanted();
    }

    /// The routes the live nodes need: every block of every other live node.
    fn count_wanted(&mut self) {
        let blocks: u64 =
            (0..self.birds.len()).filter(|&m| self.live[m]).map(|m| self.blocks[m].len() as u64).sum();
        let live = self.live.iter().filter(|&&l| l).count() as u64;
        self.want = blocks * live.saturating_sub(1);
    }

    /// A joined node `n`'s routes are complete both ways: every other live node routes to its
    /// blocks through it, and it routes to every block of theirs.
    fn joined(&self, n: usize) -> bool {
        let others = self.live.iter().enumerate().filter(|&(m, &l)| l && m != n).count() as u64;
        if self.via[n] != self.blocks[n].len() as u64 * others {
            return false;
        }
        let theirs: u64 = (0..self.birds.len())
            .filter(|&m| m != n && self.live[m])
            .map(|m| self.blocks[m].len() as u64)
            .sum();
        self.birds[n].installed.values().filter(|&&m| self.live[m]).count() as u64 == theirs
    }

    /// Node `n` routes to every block of node `x` through `x`.
    fn routes_to(&self, n: usize, x: usize) -> bool {
        self.blocks[x].iter().all(|net| self.birds[n].installed.get(net) == Some(&x))
    }

    /// Node `n`'s kernel route to `net` now goes through node `via` (`None`: it went).
    fn set_route(&mut self, n: usize, net: Ipv4Net, via: Option<usize>) {
        let old = match via {
            Some(m) => self.birds[n].installed.insert(net, m),
            None => self.birds[n].installed.remove(&net),
        };
        if !self.live[n] {
            return;
        }
        if let Some(m) = old {
            self.via[m] -= 1;
            if self.live[m] {
                self.valid -= 1;
            }
        }
        if let Some(m) = via {
            self.via[m] += 1;
            if self.live[m] {
                self.valid += 1;
            }
        }
    }

    /// Since when the initial convergence has been waited for, if it has not happened.
    pub fn incomplete_since(&self) -> Option<Instant> {
        self.incomplete_since.as_ref().map(|x| x.0)
    }

    /// Since when routes between live nodes have been missing after the start, if they have
    /// not come back by the end.
    pub fn lost_since(&self) -> Option<Instant> {
        self.lost_since.as_ref().map(|x| x.0)
    }

    /// Changes not converged by the end: (change, since).
    pub fn unconverged(&self) -> Vec<(usize, Instant)> {
        self.pending.iter().map(|p| (p.change, p.since)).collect()
    }
}

impl Simulation {
    /// Sets up a BIRD on every node when the scenario simulates BGP: its speaker with the
    /// peers confd would configure, a TCP stack on the node's address listening on port 179.
    pub(super) fn bgp_setup(&mut self) {
        let Some(cfg) = self.world.cluster.bgp.clone() else { return };
        if !self.world.cluster.cni.runs_bird() {
            return;
        }
        let c = self.world.cluster.clone();
        let blocks = crate::cni::calico::blocks(&self.world);
        let mut cp = ControlPlane { blocks, ..Default::default() };
        let rngs = RngFactory::new(c.seed);
        for (n, node) in c.nodes.iter().enumerate() {
            cp.node_of_ip.insert(node.ip, n);
        }
        let mut start_rng = rngs.stream(Component::BgpStart, 0);
        let mut starts = Vec::with_capacity(c.nodes.len());
        let joining = c.joining();
        for n in 0..c.nodes.len() {
            let ns = self.world.nodes[n].ns;
            let h = self.tcp_host(ns);
            let config = speaker_config(&cfg, &c, n, cp.blocks[n].clone(), &joining);
            let conns = (0..config.peers.len()).map(|_| None).collect();
            let cfg_peers = config.peers.len();
            if cp.bird_of_host.len() <= h {
                cp.bird_of_host.resize(h + 1, None);
            }
            cp.bird_of_host[h] = Some(cp.birds.len());
            cp.birds.push(Bird {
                node: n,
                speaker: Speaker::new(config, Instant::ZERO, rngs.stream(Component::Bgp, n as u64)),
                host: h,
                conns,
                peer_of_slot: BTreeMap::new(),
                unread: BTreeSet::new(),
                unsent: BTreeSet::new(),
                installed: BTreeMap::new(),
                pending: Vec::new(),
                busy: false,
                cpu: Duration::ZERO,
                // A node that joins later is off until it does (`bgp_join`).
                dead: joining[n],
                routes_added: 0,
                routes_removed: 0,
                kernel: KernelSync::Live,
                stale_work: 0,
                timers: vec![[TimerSlot::default(); crate::bgp::TIMER_KINDS]; cfg_peers],
            });
            starts.push(if cfg.start_spread == Duration::ZERO {
                Instant::ZERO
            } else {
                let ns = rand::Rng::random_range(&mut start_rng, 0..=cfg.start_spread.as_nanos());
                Instant::from_nanos(ns)
            });
            if !joining[n] {
                self.queue.schedule(starts[n], Event::Bird { bird: n as u32, work: BirdWork::Start });
            }
        }
        let n = c.nodes.len();
        cp.live = joining.iter().map(|&j| !j).collect();
        cp.via = vec![0; n];
        cp.count_wanted();
        // The initial convergence runs from the first BIRD's start.
        let first = (0..n).filter(|&m| !joining[m]).map(|m| starts[m]).min().unwrap_or(Instant::ZERO);
        cp.incomplete_since = Some((first, BTreeMap::new()));
        self.bgp = Some(Box::new(cp));
    }

    /// BIRD's work `work` is due.
    pub(super) fn bird(&mut self, t: Instant, b: usize, work: BirdWork) {
        let Some(cp) = self.bgp.as_mut() else { return };
        if cp.birds[b].dead {
            return;
        }
        if matches!(work, BirdWork::Inputs(_) | BirdWork::Apply { .. }) && cp.birds[b].stale_work > 0 {
            // The process that took this work on has died.
            cp.birds[b].stale_work -= 1;
            return;
        }
        match work {
            BirdWork::Start => {
                // BIRD listens on port 179 from its start; before it, a SYN is answered with
                // a RST and the peer tries again after its connect retry time.
                let h = cp.birds[b].host;
                let mut s = TcpHost::bgp_socket(self.bgp_buffer());
                s.listen(PORT).expect("port 179 is free until BIRD starts");
                let slot = self.tcp[h].add(s);
                self.tcp[h].listening.push((PORT, slot));
                let cp = self.bgp.as_mut().expect("control plane");
                let mut out = Vec::new();
                cp.birds[b].speaker.start(t, &mut out);
                self.bird_decided(t, b, out);
            }
            BirdWork::Stop => {
                let mut out = Vec::new();
                cp.birds[b].speaker.stop(t, &mut out);
                let n = cp.birds[b].node;
                cp.set_down(n);
                self.bird_decided(t, b, out);
            }
            BirdWork::Timer { peer, kind } => {
                let slot = &mut cp.birds[b].timers[peer][kind as usize];
                if slot.queued != Some(t) {
                    // An event for a time the timer was moved away from.
                    return;
                }
                slot.queued = None;
                match slot.due {
                    Some((due, _)) if due > t => {
                        slot.queued = Some(due);
                        let work = BirdWork::Timer { peer, kind };
                        self.queue.schedule(due, Event::Bird { bird: b as u32, work });
                    }
                    Some((_, gen)) => {
                        slot.due = None;
                        cp.birds[b].pending.push(Input::Timer(peer, kind, gen));
                        self.bird_kick(t, b);
                    }
                    None => {}
                }
            }
            BirdWork::Inputs(inputs) => {
                let mut out = Vec::new();
                for i in inputs {
                    cp.birds[b].speaker.handle(t, i, &mut out);
                }
                self.bird_decided(t, b, out);
            }
            BirdWork::Apply { outputs, fib } => {
                if cp.birds[b].kernel == KernelSync::Syncing {
                    cp.birds[b].kernel = KernelSync::Live;
                }
                self.bird_apply(t, b, outputs, fib);
                self.bgp.as_mut().expect("control plane").birds[b].busy = false;
                let h = self.bgp.as_ref().expect("control plane").birds[b].host;
                self.bgp_io(t, h, None);
            }
        }
    }

    /// The speaker decided `out`: its cost is served on BIRD's core, then it takes effect.
    fn bird_decided(&mut self, t: Instant, b: usize, out: Vec<Output>) {
        let costs = self.world.costs.clone();
        let cp = self.bgp.as_mut().expect("control plane");
        let bird = &mut cp.birds[b];
        bird.busy = true;
        let fib = match bird.kernel {
            KernelSync::Live | KernelSync::Syncing => bird.speaker.take_fib_changes(),
            KernelSync::Deferred if bird.speaker.recovering() => Vec::new(),
            KernelSync::Deferred => {
                bird.kernel = KernelSync::Syncing;
                kernel_sync(bird, &cp.node_of_ip)
            }
        };
        let mut cost = Duration::ZERO;
        for o in &out {
            if let Output::Send { messages, routes, .. } = o {
                cost += message_cost(&costs, *messages, *routes);
            }
        }
        cost += (costs.bird_route + costs.netlink_object).saturating_mul(fib.len() as u64);
        let done = self.bird_serve(t, b, cost);
        self.queue
            .schedule(done, Event::Bird { bird: b as u32, work: BirdWork::Apply { outputs: out, fib } });
    }

    /// Serves `cost` of BIRD's CPU on its node's core from `t`; returns when it is done.
    fn bird_serve(&mut self, t: Instant, b: usize, cost: Duration) -> Instant {
        let node = self.bgp.as_ref().expect("control plane").birds[b].node;
        let cx =
            self.run_chain(node, t, BIRD_HASH, Work::Read, None, |_, cx| cx.add(Step::ControlPlane, cost));
        let done = cx.now();
        if done <= self.end {
            self.bgp.as_mut().expect("control plane").birds[b].cpu += cost;
        }
        done
    }

    /// BIRD takes the inputs waiting for it, if it is idle: their cost is served, then the
    /// speaker acts on them (`BirdWork::Inputs`).
    fn bird_kick(&mut self, t: Instant, b: usize) {
        let costs = self.world.costs.clone();
        let bird = &mut self.bgp.as_mut().expect("control plane").birds[b];
        if bird.busy || bird.pending.is_empty() {
            return;
        }
        let inputs = std::mem::take(&mut bird.pending);
        let mut cost = Duration::ZERO;
        for i in &inputs {
            cost += match i {
                Input::Message(_, Message::Update(u)) => {
                    message_cost(&costs, 1, (u.nlri.len() + u.withdrawn.len()) as u32)
                }
                _ => costs.bird_message,
            };
        }
        bird.busy = true;
        let done = self.bird_serve(t, b, cost);
        self.queue.schedule(done, Event::Bird { bird: b as u32, work: BirdWork::Inputs(inputs) });
    }

    /// What the speaker decided takes effect: connections opened, messages written, sockets
    /// closed, timers armed, kernel routes replaced or deleted.
    fn bird_apply(
        &mut self,
        t: Instant,
        b: usize,
        outputs: Vec<Output>,
        fib: Vec<(Ipv4Net, Option<Ipv4Addr>)>,
    ) {
        let h = self.bgp.as_ref().expect("control plane").birds[b].host;
        for o in outputs {
            match o {
                Output::Connect(p) => self.bgp_connect(t, b, p),
                Output::Send { peer: p, bytes, .. } => {
                    let bird = &mut self.bgp.as_mut().expect("control plane").birds[b];
                    if let Some(c) = bird.conns[p].as_mut() {
                        c.tx.extend(bytes);
                        bird.unsent.insert(p);
                    }
                }
                Output::Close(p) => {
                    self.bgp_flush(t, b, p);
                    let bird = &mut self.bgp.as_mut().expect("control plane").birds[b];
                    if let Some(c) = bird.conns[p].take() {
                        bird.peer_of_slot.remove(&c.slot);
                        self.tcp[h].sock(c.slot).close();
                        self.tcp_poll(t, h, c.slot);
                    }
                }
                Output::Timer { peer, kind, after, gen } => {
                    let due = t + after;
                    let slot =
                        &mut self.bgp.as_mut().expect("control plane").birds[b].timers[peer][kind as usize];
                    slot.due = Some((due, gen));
                    // The event already queued comes first and queues the timer again.
                    if slot.queued.is_none_or(|q| q > due) {
                        slot.queued = Some(due);
                        self.queue.schedule(
                            due,
                            Event::Bird { bird: b as u32, work: BirdWork::Timer { peer, kind } },
                        );
                    }
                }
            }
        }
        let n = self.bgp.as_ref().expect("control plane").birds[b].node;
        for (net, nh) in fib {
            let cp = self.bgp.as_mut().expect("control plane");
            let ns = self.world.nodes[n].ns;
            match nh.and_then(|ip| cp.node_of_ip.get(&ip).copied()) {
                Some(m) => {
                    let route = crate::cni::calico::block_route(&self.world, n, m, net);
                    if let Err(e) = self.world.add_route(route) {
                        self.world.warn(format!("BIRD on {}: {e}", self.world.cluster.nodes[n].name));
                    } else {
                        cp.birds[b].routes_added += 1;
                        cp.set_route(n, net, Some(m));
                    }
                }
                None => {
                    if self.world.netns[ns].main.remove(net).is_some() {
                        cp.birds[b].routes_removed += 1;
                        cp.set_route(n, net, None);
                    }
                }
            }
        }
        // A joined node's pods are reachable from this node once it routes to all its blocks.
        let cp = self.bgp.as_mut().expect("control plane");
        for i in 0..cp.pending.len() {
            let x = cp.pending[i].node;
            let waiting =
                matches!(&cp.pending[i].kind, PendingKind::Join { reached } if reached[n].is_none());
            if waiting && x != n && cp.live[n] && cp.routes_to(n, x) {
                if let PendingKind::Join { reached } = &mut cp.pending[i].kind {
                    reached[n] = Some(t);
                }
            }
        }
        let unsent = std::mem::take(&mut self.bgp.as_mut().expect("control plane").birds[b].unsent);
        for p in unsent {
            self.bgp_flush(t, b, p);
        }
        self.bgp_check_convergence(t);
    }

    /// Each BGP socket's buffers ([`Bgp::socket_buffer`]; ARCHITECTURE.md lists the departure
    /// from Linux's).
    fn bgp_buffer(&self) -> usize {
        self.world.cluster.bgp.as_ref().map_or(16 * 1024, Bgp::socket_buffer)
    }

    /// Opens the TCP connection of session `p`: from the node's address and an ephemeral
    /// port to the peer's port 179.
    fn bgp_connect(&mut self, t: Instant, b: usize, p: PeerId) {
        let buffer = self.bgp_buffer();
        let cp = self.bgp.as_mut().expect("control plane");
        let bird = &mut cp.birds[b];
        let h = bird.host;
        let addr = bird.speaker.peers[p].config.addr;
        if let Some(old) = bird.conns[p].take() {
            bird.peer_of_slot.remove(&old.slot);
            self.tcp[h].sock(old.slot).abort();
        }
        let host = &mut self.tcp[h];
        host.ports.retain(|&(_, until)| until > t);
        let mut sport = 32768 + (rand::Rng::random_range(&mut self.rng, 0..28232u32) as u16);
        while host.ports.iter().any(|&(q, _)| q == sport) {
            sport = rand::Rng::random_range(&mut self.rng, 32768..=60999u16);
        }
        host.ports.push((sport, t + Duration::from_secs(60)));
        let mut s = TcpHost::bgp_socket(buffer);
        let cx = host.iface.context();
        if s.connect(cx, (IpAddress::Ipv4(addr), PORT), sport).is_err() {
            return;
        }
        let slot = host.add(s);
        host.bgp_socks.insert((sport, addr, PORT), slot);
        bird.peer_of_slot.insert(slot, p);
        bird.conns[p] = Some(Conn { slot, rx: Vec::new(), tx: VecDeque::new(), up: false });
        self.tcp_poll(t, h, slot);
    }

    /// A listener on port 179 of host `h` took a connection from `remote`: it is a session's
    /// if the speaker expects that peer, else BIRD closes it. A new listener takes its place.
    pub(super) fn bgp_accepted(&mut self, t: Instant, h: usize, slot: u32, key: (u16, Ipv4Addr, u16)) {
        let mut s = TcpHost::bgp_socket(self.bgp_buffer());
        s.listen(PORT).expect("a fresh socket listens on a non-zero port");
        let listener = self.tcp[h].add(s);
        self.tcp[h].listening.push((PORT, listener));
        let Some(cp) = self.bgp.as_mut() else { return };
        let Some(b) = cp.bird_of_host.get(h).copied().flatten() else { return };
        let bird = &mut cp.birds[b];
        self.tcp[h].bgp_socks.insert(key, slot);
        match bird.speaker.accepts(key.1).filter(|_| !bird.dead) {
            Some(p) if bird.conns[p].is_none() => {
                bird.peer_of_slot.insert(slot, p);
                bird.conns[p] = Some(Conn { slot, rx: Vec::new(), tx: VecDeque::new(), up: false });
            }
            _ => {
                self.tcp[h].sock(slot).close();
                self.tcp_poll(t, h, slot);
            }
        }
    }

    /// The TCP stack of host `h` has processed a segment or timer of socket `slot` (`None`:
    /// BIRD has become idle): the connection, or each that holds bytes BIRD has not read, is
    /// reported if it came up or went down, what it holds is read (when BIRD is idle), what
    /// BIRD wrote goes out.
    pub(super) fn bgp_io(&mut self, t: Instant, h: usize, slot: Option<u32>) {
        let Some(cp) = self.bgp.as_mut() else { return };
        let Some(b) = cp.bird_of_host.get(h).copied().flatten() else { return };
        if cp.birds[b].dead || !cp.birds[b].speaker.running {
            return;
        }
        let bird = &mut cp.birds[b];
        let peers: Vec<PeerId> = match slot {
            Some(slot) => bird.peer_of_slot.get(&slot).copied().into_iter().collect(),
            None => std::mem::take(&mut bird.unread).into_iter().collect(),
        };
        for p in peers {
            self.bgp_flush(t, b, p);
            let cp = self.bgp.as_mut().expect("control plane");
            let bird = &mut cp.birds[b];
            let busy = bird.busy;
            let Some(c) = bird.conns[p].as_mut() else { continue };
            let s = self.tcp[h].sock(c.slot);
            let state = s.state();
            if !c.up && state == tcp::State::Established {
                c.up = true;
                bird.pending.push(Input::TcpUp(p));
            }
            if busy {
                bird.unread.insert(p);
            } else {
                while s.can_recv() {
                    match s.recv(|buf| {
                        c.rx.extend_from_slice(buf);
                        (buf.len(), buf.len())
                    }) {
                        Ok(n) if n > 0 => {}
                        _ => break,
                    }
                }
                let mut at = 0;
                loop {
                    let sess = bird.speaker.peers[p].session_rx;
                    match Message::parse(&c.rx[at..], sess) {
                        Ok(Some((m, used))) => {
                            at += used;
                            let open = matches!(m, Message::Open(_));
                            bird.pending.push(Input::Message(p, m));
                            // The session's parameters follow from the OPEN: what comes after
                            // it is parsed once the speaker has seen it.
                            if open {
                                break;
                            }
                        }
                        Ok(None) => break,
                        Err(n) => {
                            bird.pending.push(Input::Malformed(p, n));
                            c.rx.clear();
                            at = 0;
                            break;
                        }
                    }
                }
                c.rx.drain(..at);
            }
            let gone = matches!(
                state,
                tcp::State::Closed
                    | tcp::State::CloseWait
                    | tcp::State::TimeWait
                    | tcp::State::Closing
                    | tcp::State::LastAck
            );
            if gone && !s.can_recv() {
                if state == tcp::State::CloseWait {
                    s.close();
                }
                let slot = c.slot;
                bird.conns[p] = None;
                bird.peer_of_slot.remove(&slot);
                bird.pending.push(Input::TcpDown(p));
                self.tcp_poll(t, h, slot);
            }
        }
        self.bird_kick(t, b);
    }

    /// Drops so far of the workload datagrams sent to pods on `node`, by reason.
    fn drops_to_node(&self, node: usize) -> BTreeMap<DropReason, u64> {
        let mut by = BTreeMap::new();
        for (f, o) in self.flows.iter().zip(&self.obs.flows) {
            let on = match f.target {
                crate::cluster::Target::Pod(p) => self.world.cluster.pods[p].node == node,
                _ => false,
            };
            if on {
                for (r, n) in &o.drops {
                    *by.entry(*r).or_default() += n;
                }
            }
        }
        by
    }

    /// Writes what session `p` has waiting into its socket, as far as the socket has room.
    fn bgp_flush(&mut self, t: Instant, b: usize, p: PeerId) {
        let cp = self.bgp.as_mut().expect("control plane");
        let bird = &mut cp.birds[b];
        let h = bird.host;
        let Some(c) = bird.conns[p].as_mut() else { return };
        if c.tx.is_empty() {
            return;
        }
        let s = self.tcp[h].sock(c.slot);
        if !s.may_send() {
            bird.unsent.insert(p);
            return;
        }
        let (a, bb) = c.tx.as_slices();
        let mut n = s.send_slice(a).unwrap_or(0);
        if n == a.len() {
            n += s.send_slice(bb).unwrap_or(0);
        }
        c.tx.drain(..n);
        if !c.tx.is_empty() {
            bird.unsent.insert(p);
        }
        let slot = c.slot;
        if n > 0 {
            self.tcp_poll(t, h, slot);
        }
    }

    /// Records the end of the initial convergence (every live node's kernel with a route to
    /// every block of every other live node whose BIRD runs) and of each change's (no live
    /// node with a route through the node the change took away).
    fn bgp_check_convergence(&mut self, t: Instant) {
        let cp = self.bgp.as_ref().expect("control plane");
        let start_done = cp.incomplete_since.is_some() && cp.valid == cp.want;
        // After the start, live nodes that lose routes to one another start a period of
        // their own, which ends when the routes are all back.
        // A node joining is not a loss: its routes are its change's own period.
        let joining = cp.pending.iter().any(|p| matches!(p.kind, PendingKind::Join { .. }));
        let started = (cp.incomplete_since.is_none() || start_done) && !joining;
        let (lose, regain) =
            (cp.lost_since.is_none() && cp.valid < cp.want, cp.lost_since.is_some() && cp.valid == cp.want);
        if started && (lose || regain) {
            let all_now = self.obs.drops_by_reason();
            let cp = self.bgp.as_mut().expect("control plane");
            if lose {
                cp.lost_since = Some((t, all_now));
            } else {
                let (from, before) = cp.lost_since.take().expect("routes were lost");
                let drops = all_now
                    .iter()
                    .filter_map(|(r, n)| {
                        let d = n - before.get(r).copied().unwrap_or(0);
                        (d > 0).then(|| (r.name().to_string(), d))
                    })
                    .collect();
                cp.convergences.push(Convergence {
                    change: None,
                    lost: true,
                    from,
                    to: t,
                    drops,
                    reached: Vec::new(),
                });
            }
        }
        let cp = self.bgp.as_ref().expect("control plane");
        let done: Vec<usize> = (0..cp.pending.len())
            .filter(|&i| {
                let p = &cp.pending[i];
                match p.kind {
                    PendingKind::Away => cp.via[p.node] == 0,
                    PendingKind::Restart => cp.birds[p.node].kernel == KernelSync::Live,
                    PendingKind::Join { .. } => cp.joined(p.node),
                }
            })
            .collect();
        if !start_done && done.is_empty() {
            return;
        }
        let since =
            |now: &BTreeMap<DropReason, u64>, before: &BTreeMap<DropReason, u64>| -> BTreeMap<String, u64> {
                now.iter()
                    .filter_map(|(r, n)| {
                        let d = n - before.get(r).copied().unwrap_or(0);
                        (d > 0).then(|| (r.name().to_string(), d))
                    })
                    .collect()
            };
        if start_done {
            let all_now = self.obs.drops_by_reason();
            let cp = self.bgp.as_mut().expect("control plane");
            let (from, before) = cp.incomplete_since.take().expect("waiting for the start");
            let drops = since(&all_now, &before);
            cp.convergences.push(Convergence {
                change: None,
                lost: false,
                from,
                to: t,
                drops,
                reached: Vec::new(),
            });
        }
        let now: Vec<BTreeMap<DropReason, u64>> = {
            let cp = self.bgp.as_ref().expect("control plane");
            done.iter().map(|&i| self.drops_to_node(cp.pending[i].node)).collect()
        };
        let cp = self.bgp.as_mut().expect("control plane");
        for (&i, now) in done.iter().zip(&now) {
            let p = &cp.pending[i];
            let drops = since(now, &p.drops);
            let reached = match &p.kind {
                PendingKind::Join { reached } => reached
                    .iter()
                    .enumerate()
                    .filter_map(|(m, r)| r.filter(|_| cp.live[m] && m != p.node).map(|r| r - p.since))
                    .collect(),
                _ => Vec::new(),
            };
            cp.convergences.push(Convergence {
                change: Some(p.change),
                lost: false,
                from: p.since,
                to: t,
                drops,
                reached,
            });
        }
        for &i in done.iter().rev() {
            cp.pending.remove(i);
        }
    }

    /// A change that breaks the routes (a node off, BIRD stopped) starts a period that ends
    /// when every live node's routes are complete again.
    pub(super) fn bgp_change(&mut self, t: Instant, index: usize, node: usize, power_off: bool) {
        let drops_now = self.drops_to_node(node);
        let Some(cp) = self.bgp.as_mut() else { return };
        if let Some(b) = cp.birds.iter().position(|b| b.node == node) {
            if power_off {
                cp.birds[b].dead = true;
                cp.set_down(node);
            } else {
                self.queue.schedule(t, Event::Bird { bird: b as u32, work: BirdWork::Stop });
            }
        }
        let cp = self.bgp.as_mut().expect("control plane");
        if let Some(b) = cp.birds.iter().position(|b| b.node == node) {
            cp.pending.push(Pending {
                change: index,
                node: b,
                since: t,
                drops: drops_now,
                kind: PendingKind::Away,
            });
        }
    }
}

impl Simulation {
    /// BIRD's process on `node` dies and is started again at once (`restart_bird`): the
    /// kernel closes its sockets (a FIN each, or a RST where data was left unread:
    /// `tcp_close`), so its peers keep its routes as stale for its restart time; port 179 is
    /// closed until the new process listens; the kernel keeps the routes (`persist`). The
    /// change has converged when the new BIRD's recovery has ended and its kernel routes are
    /// synced.
    pub(super) fn bgp_restart(&mut self, t: Instant, index: usize, node: usize) {
        let drops_now = self.drops_to_node(node);
        let Some(cp) = self.bgp.as_mut() else { return };
        let Some(b) = cp.birds.iter().position(|b| b.node == node) else { return };
        let bird = &mut cp.birds[b];
        if bird.dead {
            return;
        }
        let h = bird.host;
        let conns: Vec<Conn> = bird.conns.iter_mut().filter_map(Option::take).collect();
        bird.peer_of_slot.clear();
        bird.unread.clear();
        bird.unsent.clear();
        bird.pending.clear();
        if std::mem::replace(&mut bird.busy, false) {
            bird.stale_work += 1;
        }
        bird.speaker.restart(t);
        bird.kernel = KernelSync::Deferred;
        cp.pending.push(Pending {
            change: index,
            node: b,
            since: t,
            drops: drops_now,
            kind: PendingKind::Restart,
        });
        for c in conns {
            let s = self.tcp[h].sock(c.slot);
            if s.recv_queue() > 0 {
                s.abort();
            } else {
                s.close();
            }
            self.tcp_poll(t, h, c.slot);
        }
        let host = &mut self.tcp[h];
        let listeners: Vec<u32> = host.listening.iter().filter(|l| l.0 == PORT).map(|l| l.1).collect();
        host.listening.retain(|l| l.0 != PORT);
        for l in listeners {
            host.sock(l).abort();
        }
        self.queue.schedule(t, Event::Bird { bird: b as u32, work: BirdWork::Start });
    }
}

impl Simulation {
    /// Node `node` joins (`join_node`): it powers on and calico-node starts BIRD on it; the
    /// node's resource is in the datastore, so every other node's confd adds it to bird.cfg
    /// and reconfigures its BIRD, which starts the new protocol (a running BIRD does so as
    /// work of its process; a stopped or not yet started one when it starts). The change has
    /// converged when the routes are complete both ways; each live node's first instant with
    /// a route to all the new node's blocks is when its pods became reachable from there.
    /// The datastore's watch latency and confd's render are not modelled: every peer learns
    /// of the node at the join (ARCHITECTURE.md).
    pub(super) fn bgp_join(&mut self, t: Instant, index: usize, node: usize) {
        self.world.nodes[node].down = false;
        let drops_now = self.drops_to_node(node);
        let Some(cp) = self.bgp.as_mut() else { return };
        let ip = self.world.cluster.nodes[node].ip;
        let mut kick = Vec::new();
        for (m, bird) in cp.birds.iter_mut().enumerate() {
            let Some(p) = bird.speaker.peers.iter().position(|q| q.config.addr == ip) else { continue };
            bird.speaker.configure(p);
            if !bird.dead && bird.speaker.running {
                bird.pending.push(Input::Configure(p));
                kick.push(m);
            }
        }
        cp.birds[node].dead = false;
        cp.set_up(node);
        let n = cp.birds.len();
        cp.pending.push(Pending {
            change: index,
            node,
            since: t,
            drops: drops_now,
            kind: PendingKind::Join { reached: vec![None; n] },
        });
        self.queue.schedule(t, Event::Bird { bird: node as u32, work: BirdWork::Start });
        for m in kick {
            self.bird_kick(t, m);
        }
    }
}

/// The kernel sync at the end of a restarted BIRD's recovery: each route of its table the
/// kernel does not have as it is, and a removal for each route BIRD installed before that is
/// no longer in its table.
fn kernel_sync(bird: &mut Bird, node_of_ip: &BTreeMap<Ipv4Addr, usize>) -> Vec<(Ipv4Net, Option<Ipv4Addr>)> {
    bird.speaker.take_fib_changes();
    let fib = &bird.speaker.fib;
    let mut out: Vec<(Ipv4Net, Option<Ipv4Addr>)> = fib
        .iter()
        .filter(|(net, nh)| bird.installed.get(net).copied() != node_of_ip.get(nh).copied())
        .map(|(&net, &nh)| (net, Some(nh)))
        .collect();
    out.extend(bird.installed.keys().filter(|net| !fib.contains_key(net)).map(|&net| (net, None)));
    out.sort_by_key(|x| x.0);
    out
}

/// BIRD's CPU for one message it reads or writes: `bird_message`, plus `bird_route` per route
/// an UPDATE announces or withdraws.
fn message_cost(costs: &crate::cost::CostProfile, messages: u32, routes: u32) -> Duration {
    costs.bird_message.saturating_mul(u64::from(messages))
        + costs.bird_route.saturating_mul(u64::from(routes))
}

/// The speaker confd would configure on node `n`: the mesh (every other node, `Mesh_<ip>`),
/// or with route reflectors: a reflector peers with every other node (`Node_<ip>`), a client
/// with every reflector; a reflector's clients are the nodes that are not reflectors (a peer
/// with the same cluster ID is not a client, confd `bgp_processor.go`). The peer whose
/// address is the lexically greater string is the passive end.
///
/// A peer whose node joins later (`joining[m]`) is not in the configuration until it does.
fn speaker_config(
    b: &Bgp,
    c: &crate::cluster::Cluster,
    n: usize,
    own: Vec<Ipv4Net>,
    joining: &[bool],
) -> Config {
    let me = &c.nodes[n];
    let is_rr = b.reflectors.contains(&n);
    let peers = c
        .nodes
        .iter()
        .enumerate()
        .filter(|(m, _)| *m != n && (b.reflectors.is_empty() || is_rr || b.reflectors.contains(m)))
        .map(|(m, o)| PeerConfig {
            name: format!(
                "{}_{}",
                if b.reflectors.is_empty() { "Mesh" } else { "Node" },
                o.ip.to_string().replace('.', "_")
            ),
            addr: o.ip,
            peer_as: b.as_number,
            passive: o.ip.to_string() > me.ip.to_string(),
            rr_client: is_rr && !b.reflectors.contains(&m),
            configured: !joining[m],
        })
        .collect();
    Config {
        router_id: me.ip,
        local_as: b.as_number,
        source: me.ip,
        cluster_id: is_rr.then_some(b.cluster_id),
        timers: b.timers,
        peers,
        own,
    }
}
