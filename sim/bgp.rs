//! A BGP speaker as BIRD 1.6 runs it for Calico, without I/O: inputs in (the TCP connection
//! came up or went down, a message arrived, a timer fired), outputs out (connect, send a
//! message, close, arm a timer, a route for the kernel changed). `run/bgp.rs` carries the
//! messages over the simulated TCP, serves the speaker's CPU on its node and installs the
//! routes; nothing here knows about events, sockets or devices, so every transition is
//! testable on its own.
//!
//! What it follows, with the sources in `docs/research/bird-facts.md`:
//! - the session FSM of BIRD's `proto/bgp/bgp.c` (`bgp_start_neighbor`, `bgp_connect`,
//!   `bgp_incoming_connection`, `bgp_hold_timeout`, `bgp_keepalive_timeout`, error wait):
//!   Idle, Connect, Active, OpenSent, OpenConfirm, Established, with Calico's
//!   `bgp_template` timers (connect delay 2 s, connect retry 5 s, error wait 5..30 s) and
//!   BIRD's defaults (hold 240 s, keepalive a third of the negotiated hold);
//! - the messages of RFC 4271 with the OPEN BIRD sends for that template
//!   ([`Open::bird_calico`]): multiprotocol IPv4 unicast, route refresh, graceful restart,
//!   4-octet AS and ADD-PATH (`add paths on`: both directions);
//! - route selection as `bgp_rte_better` (proto/bgp/attrs.c) orders it, iBGP's rule that a
//!   route learned from an internal peer is not sent to another, and route reflection (RFC
//!   4456: a reflector sends its clients' routes to everyone and everyone's to its clients,
//!   adding ORIGINATOR_ID and its cluster ID to CLUSTER_LIST, and drops a route that carries
//!   its own router ID as originator or its cluster ID in the list);
//! - graceful restart (RFC 4724): a peer whose TCP connection fails without a NOTIFICATION
//!   keeps its routes as stale for the restart time it advertised; they are replaced when it
//!   comes back and flushed at its End-of-RIB, or when the restart timer fires.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::Arc;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::addr::Ipv4Net;
use crate::time::{Duration, Instant};
use crate::wire::bgp::{
    error, write_updates, write_withdrawals, AsSegment, Capability, Kind, Message, Notification, Open,
    Origin, PathAttrs, Prefix, Session, Update,
};

/// Index of a peer in [`Speaker::peers`].
pub type PeerId = usize;

/// The LOCAL_PREF Calico's export filter gives a node's own routes: `bgp_local_pref =
/// 2147483647 - krt_metric` with `krt_metric` left at 1024 (confd bird.cfg template, the
/// `export filter` of every BGP protocol).
pub const CALICO_LOCAL_PREF: u32 = 2_147_483_647 - 1024;

/// The speaker's timers; defaults as Calico configures BIRD (see [`Timers::default`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Timers {
    /// Hold time proposed in OPEN (BIRD `hold time`, default 240 s).
    pub hold: Duration,
    /// Hold time before the OPEN exchange completes (BIRD `startup hold time`, default 240 s).
    pub startup_hold: Duration,
    /// KEEPALIVE interval; `None`: a third of the negotiated hold time (BIRD
    /// `keepalive time`, default hold / 3).
    pub keepalive: Option<Duration>,
    /// Delay from the protocol's start to its first connection attempt (Calico: 2 s).
    pub connect_delay: Duration,
    /// How long a connection attempt may take before it is given up and retried (Calico: 5 s).
    pub connect_retry: Duration,
    /// Wait after an error before the session restarts: the first error waits `.0`, each
    /// further one doubles it up to `.1` (Calico: 5 s, 30 s).
    pub error_wait: (Duration, Duration),
    /// Restart time advertised in the graceful restart capability (BIRD default 120 s).
    pub graceful_restart: Duration,
    /// How long a restarted BIRD defers its exports and kernel sync for its peers'
    /// End-of-RIB at most (BIRD `graceful restart wait`, default 240 s:
    /// `DEFAULT_GR_WAIT` in `nest/protocol.h`, `proto.c:graceful_restart_init`).
    pub graceful_restart_wait: Duration,
}

impl Default for Timers {
    fn default() -> Timers {
        Timers {
            hold: Duration::from_secs(240),
            startup_hold: Duration::from_secs(240),
            keepalive: None,
            connect_delay: Duration::from_secs(2),
            connect_retry: Duration::from_secs(5),
            error_wait: (Duration::from_secs(5), Duration::from_secs(30)),
            graceful_restart: Duration::from_secs(120),
            graceful_restart_wait: Duration::from_secs(240),
        }
    }
}

/// One configured neighbour (a `protocol bgp` block of bird.cfg).
#[derive(Clone, Debug)]
pub struct PeerConfig {
    /// BIRD's protocol name: `Mesh_10_0_0_3`, `Node_10_0_0_3` (confd: mesh and node-specific
    /// peers, dots become underscores).
    pub name: String,
    pub addr: Ipv4Addr,
    pub peer_as: u32,
    /// `passive on`: never connects, only accepts (Calico sets it when the peer's address is
    /// the lexically greater one, confd `bgp_processor.go`).
    pub passive: bool,
    /// `rr client`: this speaker reflects routes to and from the peer.
    pub rr_client: bool,
    /// The neighbour is in bird.cfg. `false`: its node joins the cluster later; confd adds the
    /// protocol when the node's resource appears in the datastore ([`Input::Configure`]).
    /// Until then the speaker neither connects to it nor accepts it, nor waits for it.
    pub configured: bool,
}

/// What the speaker is configured with.
#[derive(Clone, Debug)]
pub struct Config {
    pub router_id: Ipv4Addr,
    pub local_as: u32,
    /// The source address of its sessions and the NEXT_HOP of its own routes.
    pub source: Ipv4Addr,
    /// `Some`: this speaker is a route reflector with this cluster ID.
    pub cluster_id: Option<Ipv4Addr>,
    pub timers: Timers,
    pub peers: Vec<PeerConfig>,
    /// The prefixes it originates (the node's IPAM blocks).
    pub own: Vec<Ipv4Net>,
}

/// BIRD forgets its errors this long after the last one (`error forget time`, 300 s by
/// default, proto/bgp/config.Y): the next error waits the minimum again.
const ERROR_FORGET: Duration = Duration::from_secs(300);

/// BIRD's BGP session states (`BS_*`, proto/bgp/bgp.h) as `birdc show protocols` names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub enum State {
    Idle,
    Connect,
    Active,
    OpenSent,
    OpenConfirm,
    Established,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Idle => "Idle",
            State::Connect => "Connect",
            State::Active => "Active",
            State::OpenSent => "OpenSent",
            State::OpenConfirm => "OpenConfirm",
            State::Established => "Established",
        }
    }
}

/// The speaker's timers, one of each per peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimerKind {
    /// Connect delay, then connect retry: (re)try the TCP connection.
    Connect,
    Hold,
    Keepalive,
    /// Error wait over: the session may start again.
    ErrorWait,
    /// A restarting peer's restart time is over: its stale routes go.
    Restart,
    /// The restarted speaker's `graceful restart wait` is over (armed on peer 0): its
    /// recovery ends whether or not every End-of-RIB has come.
    RecoveryWait,
}

/// How many kinds of [`TimerKind`] there are.
pub const TIMER_KINDS: usize = 6;

/// What happens to the speaker.
#[derive(Clone, Debug)]
pub enum Input {
    /// The TCP connection to the peer is established (one the speaker opened or accepted).
    TcpUp(PeerId),
    /// The TCP connection to the peer failed or was closed by the other end.
    TcpDown(PeerId),
    /// A whole message arrived.
    Message(PeerId, Message),
    /// A message could not be parsed: the speaker sends this NOTIFICATION and closes.
    Malformed(PeerId, Notification),
    Timer(PeerId, TimerKind, u32),
    /// confd has added the peer to bird.cfg and reconfigured BIRD (`birdcl configure`): the
    /// new protocol starts as any does at BIRD's start (`protos_commit` starts a protocol
    /// new in the configuration). The caller marks the peer configured at once
    /// ([`Speaker::configure`]), so a BIRD restarted meanwhile starts it too.
    Configure(PeerId),
}

/// What the speaker asks of its surroundings.
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    /// Open a TCP connection to the peer's port 179.
    Connect(PeerId),
    /// Write these bytes on the peer's connection: `messages` messages, encoded with the
    /// session's parameters, announcing or withdrawing `routes` routes in all. Messages to one
    /// peer that follow each other in the outputs are written as one `Send`.
    Send { peer: PeerId, bytes: Vec<u8>, messages: u32, routes: u32 },
    /// Close the peer's connection once what was written has gone.
    Close(PeerId),
    /// Arm timer `kind` of the peer to fire after `after`, with generation `gen` (a timer
    /// input of another generation is stale and ignored).
    Timer { peer: PeerId, kind: TimerKind, after: Duration, gen: u32 },
}

/// A path's attributes as the speaker compares and re-advertises them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Path {
    pub next_hop: Ipv4Addr,
    pub local_pref: u32,
    pub as_path_len: usize,
    pub origin: Origin,
    pub med: u32,
    pub originator_id: Option<Ipv4Addr>,
    /// Shared by the copies of a path (an Adj-RIB-Out entry, an export), so copying one does
    /// not allocate.
    pub cluster_list: Arc<[Ipv4Addr]>,
    /// Kept after its peer's connection failed, until it comes back or its restart time ends.
    pub stale: bool,
}

/// Counters of one peer.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct PeerStats {
    /// Messages and bytes sent and received, by kind ([`KINDS`]).
    pub sent: [u64; 5],
    pub received: [u64; 5],
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// Routes announced and withdrawn to the peer, and received from it.
    pub routes_sent: u64,
    pub withdrawals_sent: u64,
    pub routes_received: u64,
    pub withdrawals_received: u64,
    /// Times the session left Established.
    pub flaps: u64,
}

/// The message kinds in the order of [`PeerStats::sent`].
pub const KINDS: [Kind; 5] =
    [Kind::Open, Kind::Update, Kind::Notification, Kind::Keepalive, Kind::RouteRefresh];

/// Index of a message kind in [`PeerStats::sent`].
pub fn kind_index(k: Kind) -> usize {
    match k {
        Kind::Open => 0,
        Kind::Update => 1,
        Kind::Notification => 2,
        Kind::Keepalive => 3,
        Kind::RouteRefresh => 4,
    }
}

/// A neighbour and its session.
#[derive(Clone, Debug)]
pub struct Peer {
    pub config: PeerConfig,
    pub state: State,
    /// When it last changed state (`birdc show protocols`' "since").
    pub since: Instant,
    /// Why the session last went down (`birdc show protocols`' info column).
    pub last_error: Option<String>,
    /// The OPEN sent on the current connection, and the peer's once received.
    pub local: Option<Open>,
    pub remote: Option<Open>,
    /// How messages to the peer are encoded and its messages parsed (4-octet AS, ADD-PATH),
    /// from the two OPENs ([`Session::sending`], [`Session::receiving`]).
    pub session: Session,
    pub session_rx: Session,
    pub hold: Duration,
    pub keepalive: Duration,
    /// The peer may restart gracefully (it advertised the capability).
    pub gr_capable: bool,
    /// Routes received, by (prefix, path ID).
    pub adj_in: BTreeMap<(Ipv4Net, u32), Path>,
    /// Routes sent, by (prefix, path ID).
    pub adj_out: BTreeMap<(Ipv4Net, u32), Path>,
    /// The peer has sent its End-of-RIB since the session came up.
    pub eor_received: bool,
    pub stats: PeerStats,
    gens: [u32; TIMER_KINDS],
    /// The error wait the next error gets, and when the last error was (BIRD
    /// `bgp_update_startup_delay`).
    error_wait: Duration,
    last_error_at: Option<Instant>,
    /// BIRD is recovering from its start with `-R` for this session (`gr_recovery`): its
    /// OPENs carry the restart (R) and forwarding (F) bits. Cleared when the session goes
    /// down or every peer has sent its End-of-RIB (`graceful_restart_done`).
    recovering: bool,
}

/// A path as a speaker exports it, with the attributes it is written with.
#[derive(Debug)]
struct Export {
    path: Path,
    attrs: PathAttrs,
}

/// A learned path a reflector can send, with what decides which peers get it.
#[derive(Debug)]
struct Candidate {
    from: PeerId,
    from_client: bool,
    /// The best path of its prefix.
    best: bool,
    /// The path has been through this reflector's cluster (its CLUSTER_LIST holds it).
    looped: bool,
    export: Export,
}

/// What a speaker can send of one prefix ([`Speaker::exportables`]).
#[derive(Debug)]
enum Exportable {
    Own(Export),
    Learned(Vec<Candidate>),
}

/// One BGP speaker (one BIRD process).
#[derive(Clone, Debug)]
pub struct Speaker {
    pub config: Config,
    pub peers: Vec<Peer>,
    /// The speaker is running (not stopped by a graceful shutdown).
    pub running: bool,
    /// Prefixes whose candidates changed since the last export.
    dirty: BTreeSet<Ipv4Net>,
    /// Which peers hold a path for each prefix: an index over the peers' `adj_in`, so that
    /// choosing a prefix's best path looks at its candidates only, not at every peer.
    holders: BTreeSet<(Ipv4Net, PeerId)>,
    /// The route the kernel has for each prefix learned from a peer: its next hop.
    pub fib: BTreeMap<Ipv4Net, Ipv4Addr>,
    /// Prefixes whose kernel route changed since [`Speaker::take_fib_changes`].
    fib_changed: BTreeSet<Ipv4Net>,
    /// Timer jitter (BIRD `bgp_start_timer`).
    rng: ChaCha8Rng,
    /// The process was restarted ([`Speaker::restart`]) and is recovering: exports wait for
    /// every peer's End-of-RIB or the end of `graceful restart wait` (bird-facts.md §2.4).
    restarted: bool,
}

/// The best of two candidate paths as `bgp_rte_better` (proto/bgp/attrs.c, BIRD 1.6) orders
/// them: higher LOCAL_PREF, shorter AS_PATH, lower ORIGIN, lower MED, lower router ID (the
/// ORIGINATOR_ID of a reflected route), shorter CLUSTER_LIST, lower neighbour address.
/// `a` and `b` are (path, router ID of the peer it came from, peer address).
fn better(a: (&Path, Ipv4Addr, Ipv4Addr), b: (&Path, Ipv4Addr, Ipv4Addr)) -> bool {
    let key = |(p, rid, addr): (&Path, Ipv4Addr, Ipv4Addr)| {
        (
            std::cmp::Reverse(p.local_pref),
            p.as_path_len,
            p.origin as u8,
            p.med,
            p.originator_id.unwrap_or(rid),
            p.cluster_list.len(),
            addr,
        )
    };
    key(a) < key(b)
}

impl Speaker {
    /// A speaker whose timers are jittered from `rng`.
    pub fn new(config: Config, now: Instant, rng: ChaCha8Rng) -> Speaker {
        let peers = config
            .peers
            .iter()
            .map(|c| Peer {
                config: c.clone(),
                state: State::Idle,
                since: now,
                last_error: None,
                local: None,
                remote: None,
                session: Session::default(),
                session_rx: Session::default(),
                hold: config.timers.startup_hold,
                keepalive: Duration::ZERO,
                gr_capable: false,
                adj_in: BTreeMap::new(),
                adj_out: BTreeMap::new(),
                eor_received: false,
                stats: PeerStats::default(),
                gens: [0; TIMER_KINDS],
                error_wait: config.timers.error_wait.0,
                last_error_at: None,
                recovering: true,
            })
            .collect();
        Speaker {
            config,
            peers,
            running: false,
            dirty: BTreeSet::new(),
            holders: BTreeSet::new(),
            fib: BTreeMap::new(),
            fib_changed: BTreeSet::new(),
            rng,
            restarted: false,
        }
    }

    /// BIRD's process dies and is started again with `-R` (calico-node's runit restarting
    /// it): everything it knew is gone but its counters; the kernel keeps its routes
    /// (`persist`), its TCP connections are closed by the kernel. [`Speaker::start`] then
    /// starts it in graceful-restart recovery: every OPEN carries the Restart State and
    /// Forwarding State bits, and exports (to peers, and the kernel sync the caller does when
    /// [`Speaker::recovering`] ends) wait until every peer has sent its End-of-RIB or
    /// `graceful restart wait` is over (`graceful_restart_init`, `proto.c`; bird-facts.md
    /// §2.4).
    pub fn restart(&mut self, now: Instant) {
        for p in 0..self.peers.len() {
            self.set_state(p, State::Idle, now);
            let min = self.config.timers.error_wait.0;
            let hold = self.config.timers.startup_hold;
            let peer = &mut self.peers[p];
            for g in &mut peer.gens {
                *g = g.wrapping_add(1);
            }
            peer.last_error = None;
            peer.local = None;
            peer.remote = None;
            peer.session = Session::default();
            peer.session_rx = Session::default();
            peer.hold = hold;
            peer.keepalive = Duration::ZERO;
            peer.gr_capable = false;
            peer.adj_in.clear();
            peer.adj_out.clear();
            peer.eor_received = false;
            peer.error_wait = min;
            peer.last_error_at = None;
            peer.recovering = true;
        }
        self.running = false;
        self.dirty.clear();
        self.holders.clear();
        self.fib.clear();
        self.fib_changed.clear();
        self.restarted = true;
    }

    /// The restarted speaker has not yet ended its graceful-restart recovery: its kernel
    /// routes are not to be synced with [`Speaker::fib`] yet.
    pub fn recovering(&self) -> bool {
        self.restarted
    }

    /// Ends a restarted speaker's recovery once every peer has sent its End-of-RIB (a peer
    /// that cannot restart gracefully releases its lock at Established, `bgp.c:389-395`) or
    /// `force`d by `graceful restart wait`: the whole table to every established peer, then
    /// End-of-RIB (the deferred initial feeds, `proto.c:738-765`).
    fn end_recovery(&mut self, force: bool, out: &mut Vec<Output>) {
        if !self.restarted {
            return;
        }
        let released = |q: &Peer| {
            !q.config.configured || q.eor_received || (q.state == State::Established && !q.gr_capable)
        };
        if !force && !self.peers.iter().all(released) {
            return;
        }
        self.restarted = false;
        self.cancel(0, TimerKind::RecoveryWait);
        for q in &mut self.peers {
            q.recovering = false;
        }
        let all = self.exportables(&self.candidates());
        for p in 0..self.peers.len() {
            if self.peers[p].state == State::Established {
                self.export_to(p, &all, out);
                self.send(p, Message::Update(Update::end_of_rib()), out);
            }
        }
    }

    /// The protocol starts (BIRD starts, `bgp_start`): an active peer connects after the
    /// connect delay, a passive one waits in Active for the other side.
    pub fn start(&mut self, now: Instant, out: &mut Vec<Output>) {
        self.running = true;
        if self.restarted && !self.peers.is_empty() {
            let wait = self.config.timers.graceful_restart_wait;
            self.arm(0, TimerKind::RecoveryWait, wait, out);
        }
        for p in 0..self.peers.len() {
            if self.peers[p].config.configured {
                self.start_peer(p, now, self.config.timers.connect_delay, out);
            }
        }
    }

    /// Peer `p` is now in the configuration (its node joined); [`Input::Configure`] starts
    /// it in a running speaker.
    pub fn configure(&mut self, p: PeerId) {
        self.peers[p].config.configured = true;
    }

    fn start_peer(&mut self, p: PeerId, now: Instant, delay: Duration, out: &mut Vec<Output>) {
        self.set_state(p, State::Active, now);
        if !self.peers[p].config.passive {
            self.arm_connect_delay(p, delay, out);
        }
    }

    /// A graceful shutdown (`birdc down`, or calico-node stopping BIRD): every session is
    /// closed with a Cease / administrative shutdown NOTIFICATION (RFC 4486 subcode 2).
    pub fn stop(&mut self, now: Instant, out: &mut Vec<Output>) {
        // The kernel keeps BIRD's routes (`persist` in Calico's kernel protocol template).
        let kernel = self.fib.clone();
        for p in 0..self.peers.len() {
            if self.peers[p].state >= State::OpenSent {
                let n = Notification::cease(error::cease::ADMINISTRATIVE_SHUTDOWN);
                self.send(p, Message::Notification(n), out);
            }
            if self.peers[p].state >= State::Connect {
                out.push(Output::Close(p));
            }
            self.cancel_all(p);
            self.drop_routes(p, false);
            self.set_state(p, State::Idle, now);
            self.peers[p].last_error = Some("Administrative shutdown".into());
        }
        self.export(now, out);
        self.running = false;
        self.fib = kernel;
        self.fib_changed.clear();
    }

    fn set_state(&mut self, p: PeerId, s: State, now: Instant) {
        let peer = &mut self.peers[p];
        if peer.state != s {
            if peer.state == State::Established {
                peer.stats.flaps += 1;
            }
            peer.state = s;
            peer.since = now;
        }
    }

    /// Arms a timer as BIRD's `bgp_start_timer` does: a value of `v` whole seconds fires after
    /// `v - random() % (v / 4 + 1)` seconds, uniform in [v - v/4, v] (the graceful-restart
    /// timer and the connect delay are not jittered).
    fn arm(&mut self, p: PeerId, kind: TimerKind, after: Duration, out: &mut Vec<Output>) {
        // The restart timer and `graceful restart wait` are plain timers (`tm_start` in
        // `bgp.c` and `proto.c`), not `bgp_start_timer`'s jittered ones.
        let after = match kind {
            TimerKind::Restart | TimerKind::RecoveryWait => after,
            _ => {
                let v = after.as_nanos() / 1_000_000_000;
                let jitter = self.rng.random_range(0..=v / 4);
                Duration::from_secs(v - jitter) + Duration::from_nanos(after.as_nanos() % 1_000_000_000)
            }
        };
        let g = &mut self.peers[p].gens[kind as usize];
        *g = g.wrapping_add(1);
        out.push(Output::Timer { peer: p, kind, after, gen: *g });
    }

    /// The connect delay before a connection attempt: not jittered (BIRD starts it with
    /// `bgp_start_timer` too, but at whole seconds of 2 the jitter range is 0..=0).
    fn arm_connect_delay(&mut self, p: PeerId, after: Duration, out: &mut Vec<Output>) {
        let g = &mut self.peers[p].gens[TimerKind::Connect as usize];
        *g = g.wrapping_add(1);
        out.push(Output::Timer { peer: p, kind: TimerKind::Connect, after, gen: *g });
    }

    fn cancel(&mut self, p: PeerId, kind: TimerKind) {
        let g = &mut self.peers[p].gens[kind as usize];
        *g = g.wrapping_add(1);
    }

    fn cancel_all(&mut self, p: PeerId) {
        for k in [TimerKind::Connect, TimerKind::Hold, TimerKind::Keepalive, TimerKind::ErrorWait] {
            self.cancel(p, k);
        }
    }

    fn send(&mut self, p: PeerId, m: Message, out: &mut Vec<Output>) {
        let s = self.peers[p].session;
        let routes = match &m {
            Message::Update(u) => (u.nlri.len() + u.withdrawn.len()) as u32,
            _ => 0,
        };
        self.write(p, m.kind(), routes, out, |buf| {
            m.write_to(s, buf);
            1
        });
    }

    /// Appends what `write` writes (and says is that many messages of kind `kind`) to the
    /// bytes for peer `p`: the last output if it is a [`Output::Send`] to `p`, else a new one.
    fn write(
        &mut self,
        p: PeerId,
        kind: Kind,
        routes: u32,
        out: &mut Vec<Output>,
        write: impl FnOnce(&mut Vec<u8>) -> usize,
    ) {
        if !matches!(out.last(), Some(Output::Send { peer, .. }) if *peer == p) {
            out.push(Output::Send { peer: p, bytes: Vec::new(), messages: 0, routes: 0 });
        }
        let Some(Output::Send { bytes, messages, routes: r, .. }) = out.last_mut() else { unreachable!() };
        let before = bytes.len();
        let n = write(bytes);
        *messages += n as u32;
        if n > 0 {
            *r += routes;
        }
        let st = &mut self.peers[p].stats;
        st.sent[kind_index(kind)] += n as u64;
        st.bytes_sent += (bytes.len() - before) as u64;
    }

    /// The peer a TCP connection from `addr` belongs to, if the speaker accepts it now: a
    /// configured neighbour whose session is not already past OpenSent (BIRD's
    /// `bgp_incoming_connection` refuses a connection for a neighbour it is not expecting).
    pub fn accepts(&self, addr: Ipv4Addr) -> Option<PeerId> {
        if !self.running {
            return None;
        }
        self.peers
            .iter()
            .position(|p| p.config.addr == addr && matches!(p.state, State::Connect | State::Active))
    }

    /// Feeds one input; what the speaker wants done is appended to `out`.
    pub fn handle(&mut self, now: Instant, input: Input, out: &mut Vec<Output>) {
        if !self.running {
            return;
        }
        match input {
            Input::TcpUp(p) => self.tcp_up(p, now, out),
            Input::TcpDown(p) => {
                // A connection that fails without a NOTIFICATION: graceful restart keeps the
                // routes of a capable peer (RFC 4724 §4.2); a refused connect tries again after
                // the connect delay.
                let why = match self.peers[p].state {
                    State::Connect => "Socket: Connection refused",
                    _ => "Socket: Connection closed",
                };
                if self.peers[p].state >= State::Connect {
                    let gr = self.peers[p].state == State::Established && self.peers[p].gr_capable;
                    self.session_down(p, now, why.into(), gr, false, out);
                }
            }
            Input::Message(p, m) => self.message(p, m, now, out),
            Input::Malformed(p, n) => {
                let why = format!("Error: {}", n.description());
                self.send(p, Message::Notification(n), out);
                out.push(Output::Close(p));
                self.session_down(p, now, why, false, true, out);
            }
            Input::Timer(p, kind, gen) => {
                if self.peers[p].gens[kind as usize] == gen {
                    self.timer(p, kind, now, out);
                }
            }
            Input::Configure(p) => {
                if self.peers[p].config.configured && self.peers[p].state == State::Idle {
                    self.start_peer(p, now, self.config.timers.connect_delay, out);
                }
            }
        }
        self.export(now, out);
    }

    fn tcp_up(&mut self, p: PeerId, now: Instant, out: &mut Vec<Output>) {
        if !matches!(self.peers[p].state, State::Connect | State::Active) {
            return;
        }
        self.cancel(p, TimerKind::Connect);
        let t = self.config.timers;
        let secs = |d: Duration| (d.as_nanos() / 1_000_000_000).min(u64::from(u16::MAX)) as u16;
        let open = Open::bird_calico(
            self.config.local_as,
            secs(t.hold),
            self.config.router_id,
            secs(t.graceful_restart),
            self.peers[p].recovering,
        );
        self.peers[p].session = Session::default();
        self.peers[p].session_rx = Session::default();
        self.peers[p].local = Some(open.clone());
        self.send(p, Message::Open(open), out);
        self.set_state(p, State::OpenSent, now);
        self.arm(p, TimerKind::Hold, t.startup_hold, out);
    }

    fn timer(&mut self, p: PeerId, kind: TimerKind, now: Instant, out: &mut Vec<Output>) {
        match kind {
            TimerKind::Connect => match self.peers[p].state {
                State::Active | State::Connect if !self.peers[p].config.passive => {
                    if self.peers[p].state == State::Connect {
                        // The attempt took longer than connect retry: give it up, try again.
                        out.push(Output::Close(p));
                    }
                    self.set_state(p, State::Connect, now);
                    out.push(Output::Connect(p));
                    self.arm(p, TimerKind::Connect, self.config.timers.connect_retry, out);
                }
                _ => {}
            },
            TimerKind::Hold => {
                if self.peers[p].state >= State::OpenSent {
                    // BIRD 1.6 flushes the routes: graceful restart on hold timer expiry is only
                    // for long-lived-GR peers, and no Calico peer is one (bird-facts.md §2).
                    self.send(p, Message::Notification(Notification::hold_timer_expired()), out);
                    out.push(Output::Close(p));
                    self.session_down(p, now, "Error: Hold timer expired".into(), false, true, out);
                }
            }
            TimerKind::Keepalive => {
                if self.peers[p].state >= State::OpenConfirm {
                    self.send(p, Message::Keepalive, out);
                    let k = self.peers[p].keepalive;
                    self.arm(p, TimerKind::Keepalive, k, out);
                }
            }
            TimerKind::ErrorWait => {
                if self.peers[p].state == State::Idle {
                    let delay = self.config.timers.connect_delay;
                    self.start_peer(p, now, delay, out);
                }
            }
            TimerKind::Restart => {
                // The restarting peer did not come back in time: its stale routes go.
                self.rib_remove_stale(p);
            }
            TimerKind::RecoveryWait => self.end_recovery(true, out),
        }
    }

    /// The session goes down: its routes are withdrawn, or kept as stale when the peer may
    /// restart gracefully (`gr`). It starts again after the connect delay; after an error
    /// (`error`: a NOTIFICATION other than Cease sent or received, the hold timer) it waits
    /// the error wait first, 5, 10, 20, 30, 30 ... s with Calico's settings, back to 5 once
    /// 300 s have passed since the previous error (`bgp_update_startup_delay`).
    fn session_down(
        &mut self,
        p: PeerId,
        now: Instant,
        why: String,
        gr: bool,
        error: bool,
        out: &mut Vec<Output>,
    ) {
        self.cancel_all(p);
        self.drop_routes(p, gr);
        if gr {
            let restart = self.peers[p]
                .remote
                .as_ref()
                .and_then(|o| {
                    o.capabilities.iter().find_map(|c| match c {
                        Capability::GracefulRestart { restart_time, .. } => Some(*restart_time),
                        _ => None,
                    })
                })
                .unwrap_or(0);
            self.arm(p, TimerKind::Restart, Duration::from_secs(u64::from(restart)), out);
        }
        let (min, max) = self.config.timers.error_wait;
        let peer = &mut self.peers[p];
        peer.last_error = Some(why);
        peer.remote = None;
        peer.eor_received = false;
        peer.adj_out.clear();
        peer.recovering = false;
        if error {
            if peer.last_error_at.is_some_and(|at| now - at >= ERROR_FORGET) {
                peer.error_wait = min;
            }
            let wait = peer.error_wait;
            peer.error_wait = Duration::from_nanos(wait.as_nanos().saturating_mul(2)).min(max);
            peer.last_error_at = Some(now);
            self.set_state(p, State::Idle, now);
            self.arm(p, TimerKind::ErrorWait, wait, out);
        } else {
            let delay = self.config.timers.connect_delay;
            self.start_peer(p, now, delay, out);
        }
    }

    /// Drops (or marks stale) the routes received from `p`.
    fn drop_routes(&mut self, p: PeerId, keep_stale: bool) {
        let peer = &mut self.peers[p];
        if keep_stale {
            for r in peer.adj_in.values_mut() {
                r.stale = true;
            }
        } else {
            for (k, _) in std::mem::take(&mut peer.adj_in) {
                self.holders.remove(&(k.0, p));
                self.dirty.insert(k.0);
            }
        }
    }

    fn message(&mut self, p: PeerId, m: Message, now: Instant, out: &mut Vec<Output>) {
        // What was in flight when the session went down belongs to a connection that is gone.
        if self.peers[p].state < State::OpenSent {
            return;
        }
        let len = m.buffer_len(self.peers[p].session) as u64;
        let peer = &mut self.peers[p];
        peer.stats.received[kind_index(m.kind())] += 1;
        peer.stats.bytes_received += len;
        let state = peer.state;
        match (state, m) {
            (State::OpenSent, Message::Open(open)) => self.open(p, open, now, out),
            (State::OpenConfirm, Message::Keepalive | Message::Update(_)) => {
                self.set_state(p, State::Established, now);
                self.peers[p].last_error = None;
                self.restart_hold(p, out);
                // Stale routes of a restarting peer stay only if it kept its forwarding state
                // (F bit); otherwise they go now (BIRD `bgp_conn_enter_established_state`).
                let keeps = self.peers[p].remote.as_ref().is_some_and(|o| {
                    o.capabilities.iter().any(|c| {
                        matches!(c, Capability::GracefulRestart { families, .. }
                            if families.iter().any(|f| f.0 == 1 && f.1 == 1 && f.2))
                    })
                });
                if !keeps {
                    self.rib_remove_stale(p);
                }
                // What changed for everyone, then the whole table to the new peer (BIRD's
                // feed, `bgp_feed_begin`) and End-of-RIB (RFC 4724 §2: sent after the
                // initial update even without a restart).
                self.export(now, out);
                if self.restarted {
                    // The feed waits for the recovery's end (`gr_wait`), unless this peer was
                    // the last lock.
                    self.end_recovery(false, out);
                } else {
                    let all = self.exportables(&self.candidates());
                    self.export_to(p, &all, out);
                    self.send(p, Message::Update(Update::end_of_rib()), out);
                }
            }
            (State::Established, Message::Keepalive) => self.restart_hold(p, out),
            (State::Established, Message::Update(u)) => {
                self.restart_hold(p, out);
                self.update(p, u);
                self.end_recovery(false, out);
            }
            (State::Established, Message::RouteRefresh(_)) => {
                // RFC 2918 §4: the Adj-RIB-Out is sent again.
                self.restart_hold(p, out);
                self.peers[p].adj_out.clear();
                let all = self.exportables(&self.candidates());
                self.export_to(p, &all, out);
            }
            (_, Message::Notification(n)) => {
                out.push(Output::Close(p));
                let why = format!("Received: {}", n.description());
                let error = n.code != error::CEASE;
                self.session_down(p, now, why, false, error, out);
            }
            (state, _) => {
                // Anything else in this state is an FSM error (RFC 4271 §6.6), with the
                // subcode of the state (RFC 6608 §3, BIRD `fsm_err_subcode`).
                let sub = match state {
                    State::OpenSent => error::fsm::UNEXPECTED_IN_OPENSENT,
                    State::OpenConfirm => error::fsm::UNEXPECTED_IN_OPENCONFIRM,
                    State::Established => error::fsm::UNEXPECTED_IN_ESTABLISHED,
                    _ => error::fsm::UNSPECIFIED,
                };
                let n = Notification::fsm_error(sub);
                let why = format!("Error: {}", n.description());
                self.send(p, Message::Notification(n), out);
                out.push(Output::Close(p));
                self.session_down(p, now, why, false, true, out);
            }
        }
    }

    fn open(&mut self, p: PeerId, open: Open, now: Instant, out: &mut Vec<Output>) {
        let expect = self.peers[p].config.peer_as;
        if open.my_as != expect {
            let n = Notification::open_error(error::open::BAD_PEER_AS, &[]);
            self.send(p, Message::Notification(n), out);
            out.push(Output::Close(p));
            let why = format!("Error: Bad peer AS: {}", open.my_as);
            return self.session_down(p, now, why, false, true, out);
        }
        let ours = self.config.timers.hold;
        let theirs = Duration::from_secs(u64::from(open.hold_time));
        let hold = ours.min(theirs);
        let keepalive = self.config.timers.keepalive.unwrap_or(Duration::from_nanos(hold.as_nanos() / 3));
        let gr = open.capabilities.iter().any(|c| matches!(c, Capability::GracefulRestart { .. }));
        let peer = &mut self.peers[p];
        peer.hold = hold;
        peer.keepalive = keepalive;
        if let Some(local) = &peer.local {
            peer.session = Session::sending(local, &open);
            peer.session_rx = Session::receiving(local, &open);
        }
        peer.gr_capable = gr;
        peer.remote = Some(open);
        peer.eor_received = false;
        self.send(p, Message::Keepalive, out);
        self.set_state(p, State::OpenConfirm, now);
        self.restart_hold(p, out);
        if keepalive > Duration::ZERO {
            self.arm(p, TimerKind::Keepalive, keepalive, out);
        }
    }

    fn restart_hold(&mut self, p: PeerId, out: &mut Vec<Output>) {
        let hold = self.peers[p].hold;
        if hold > Duration::ZERO {
            self.arm(p, TimerKind::Hold, hold, out);
        }
    }

    /// An UPDATE: withdrawals and announcements into the peer's Adj-RIB-In, each route that a
    /// reflector must not take (its own router ID as originator, its cluster ID in the list)
    /// left out.
    fn update(&mut self, p: PeerId, u: Update) {
        let rid = self.config.router_id;
        let cluster = self.config.cluster_id;
        let peer = &mut self.peers[p];
        if u.is_end_of_rib() {
            peer.eor_received = true;
            // Every peer has sent its End-of-RIB: the restart recovery is over
            // (`graceful_restart_done`).
            if self.peers.iter().all(|q| q.eor_received || !q.config.configured) {
                for q in &mut self.peers {
                    q.recovering = false;
                }
            }
            // RFC 4724 §4.2: stale routes not refreshed before End-of-RIB go.
            self.rib_remove_stale(p);
            let g = &mut self.peers[p].gens[TimerKind::Restart as usize];
            *g = g.wrapping_add(1);
            return;
        }
        peer.stats.withdrawals_received += u.withdrawn.len() as u64;
        for w in &u.withdrawn {
            self.rib_remove(p, (w.net, w.path_id.unwrap_or(0)));
        }
        let peer = &mut self.peers[p];
        let a = &u.attrs;
        // Loop checks (RFC 4456 §8, BIRD `bgp_rte_update`): our router ID as originator; our
        // cluster ID in the list, checked on client sessions only.
        let looped = a.originator_id == Some(rid)
            || (peer.config.rr_client && cluster.is_some_and(|c| a.cluster_list.contains(&c)));
        peer.stats.routes_received += u.nlri.len() as u64;
        let path = Path {
            next_hop: a.next_hop.unwrap_or(peer.config.addr),
            local_pref: a.local_pref.unwrap_or(100),
            // "AS_SET counts as 1, no matter how many ASes are in the set" (RFC 4271
            // §9.1.2.2 a).
            as_path_len: a
                .as_path
                .iter()
                .map(|s| match s {
                    AsSegment::Set(_) => 1,
                    AsSegment::Sequence(v) => v.len(),
                })
                .sum(),
            origin: a.origin.unwrap_or(Origin::Incomplete),
            med: a.med.unwrap_or(0),
            originator_id: a.originator_id,
            cluster_list: a.cluster_list.as_slice().into(),
            stale: false,
        };
        for n in &u.nlri {
            let key = (n.net, n.path_id.unwrap_or(0));
            if looped {
                self.rib_remove(p, key);
            } else {
                self.peers[p].adj_in.insert(key, path.clone());
                self.holders.insert((n.net, p));
                self.dirty.insert(n.net);
            }
        }
    }

    /// Removes the path `key` received from `p`, if there is one.
    fn rib_remove(&mut self, p: PeerId, key: (Ipv4Net, u32)) {
        let peer = &mut self.peers[p];
        if peer.adj_in.remove(&key).is_none() {
            return;
        }
        if peer.adj_in.range((key.0, 0)..=(key.0, u32::MAX)).next().is_none() {
            self.holders.remove(&(key.0, p));
        }
        self.dirty.insert(key.0);
    }

    /// Removes the stale paths received from `p`.
    fn rib_remove_stale(&mut self, p: PeerId) {
        let stale: Vec<(Ipv4Net, u32)> =
            self.peers[p].adj_in.iter().filter(|(_, r)| r.stale).map(|(k, _)| *k).collect();
        for k in stale {
            self.rib_remove(p, k);
        }
    }

    /// Every prefix the speaker has a candidate for.
    fn candidates(&self) -> BTreeSet<Ipv4Net> {
        let mut s: BTreeSet<Ipv4Net> = self.config.own.iter().copied().collect();
        s.extend(self.holders.iter().map(|h| h.0));
        s
    }

    /// The own route of a prefix as it is exported: Calico's export filter sets LOCAL_PREF;
    /// ORIGIN IGP (BIRD's `bgp_create_attrs` for a route of another protocol); the next hop
    /// is the source address.
    fn own_path(&self) -> Path {
        Path {
            next_hop: self.config.source,
            local_pref: CALICO_LOCAL_PREF,
            as_path_len: 0,
            origin: Origin::Igp,
            med: 0,
            originator_id: None,
            cluster_list: Arc::new([]),
            stale: false,
        }
    }

    /// The best path learned from peers for `net`: (peer, path ID, path).
    pub fn best(&self, net: Ipv4Net) -> Option<(PeerId, u32, &Path)> {
        let mut best: Option<(PeerId, u32, &Path)> = None;
        for &(_, i) in self.holders.range((net, 0)..=(net, PeerId::MAX)) {
            let p = &self.peers[i];
            let rid = p.remote.as_ref().map_or(p.config.addr, |o| o.bgp_id);
            for ((n, id), path) in p.adj_in.range((net, 0)..=(net, u32::MAX)) {
                debug_assert_eq!(*n, net);
                let cand = (path, rid, p.config.addr);
                let wins = match best {
                    None => true,
                    Some((bi, _, bp)) => {
                        let b = &self.peers[bi];
                        let brid = b.remote.as_ref().map_or(b.config.addr, |o| o.bgp_id);
                        better(cand, (bp, brid, b.config.addr))
                    }
                };
                if wins {
                    best = Some((i, *id, path));
                }
            }
        }
        best
    }

    /// What this speaker can send of each of `nets`, before the receiving peer's filter
    /// ([`Speaker::export_to`]): its own route; the routes it learned, in the form it reflects
    /// them (ORIGINATOR_ID and its cluster ID added), when it is a reflector. Built once per
    /// export and shared by every peer, so the reflected copies and their attributes are made
    /// once per prefix, not once per peer.
    fn exportables(&self, nets: &BTreeSet<Ipv4Net>) -> Vec<(Ipv4Net, Exportable)> {
        nets.iter().map(|&net| (net, self.exportable(net))).collect()
    }

    fn exportable(&self, net: Ipv4Net) -> Exportable {
        let export = |path: Path| Export { attrs: self.attrs(&path), path };
        if self.config.own.contains(&net) {
            return Exportable::Own(export(self.own_path()));
        }
        let Some(cluster) = self.config.cluster_id else { return Exportable::Learned(Vec::new()) };
        let best = self.best(net).map(|(i, id, _)| (i, id));
        let mut learned = Vec::new();
        for &(_, i) in self.holders.range((net, 0)..=(net, PeerId::MAX)) {
            let f = &self.peers[i];
            for (&(_, id), path) in f.adj_in.range((net, 0)..=(net, u32::MAX)) {
                let mut p = path.clone();
                p.stale = false;
                p.originator_id =
                    Some(p.originator_id.unwrap_or(f.remote.as_ref().map_or(f.config.addr, |o| o.bgp_id)));
                p.cluster_list = std::iter::once(cluster).chain(p.cluster_list.iter().copied()).collect();
                learned.push(Candidate {
                    from: i,
                    from_client: f.config.rr_client,
                    best: best == Some((i, id)),
                    // Never to a client whose cluster (ours) the route has been through.
                    looped: path.cluster_list.contains(&cluster),
                    export: export(p),
                });
            }
        }
        Exportable::Learned(learned)
    }

    /// For every changed prefix: the kernel route and what each established peer is sent.
    fn export(&mut self, _now: Instant, out: &mut Vec<Output>) {
        if self.dirty.is_empty() {
            return;
        }
        let mut dirty = std::mem::take(&mut self.dirty);
        for &net in &dirty {
            let nh = if self.config.own.contains(&net) { None } else { self.best(net).map(|b| b.2.next_hop) };
            let had = self.fib.get(&net).copied();
            if had != nh {
                match nh {
                    Some(h) => self.fib.insert(net, h),
                    None => self.fib.remove(&net),
                };
                self.fib_changed.insert(net);
            }
        }
        // A speaker that reflects nothing exports its own prefixes only: a change to a learned
        // prefix concerns its kernel alone (and it never sent that prefix, so has nothing to
        // withdraw).
        if self.config.cluster_id.is_none() {
            dirty.retain(|n| self.config.own.contains(n));
        }
        // A restarted speaker sends nothing before its recovery ends: the deferred feed then
        // holds everything.
        if dirty.is_empty() || self.restarted {
            return;
        }
        let exportables = self.exportables(&dirty);
        for to in 0..self.peers.len() {
            if self.peers[to].state == State::Established {
                self.export_to(to, &exportables, out);
            }
        }
    }

    /// Brings what peer `to` has been sent of `exportables` up to date: announcements grouped
    /// by attributes, then withdrawals, as few UPDATEs as fit. What a peer is sent: the own
    /// route; a learned route only when this speaker reflects it (RFC 4456 §6: a client's
    /// route to every peer, a non-client's to clients only, never back to the peer it came
    /// from); every such path with ADD-PATH (path IDs as BIRD gives them: one per route
    /// source, the peer), the best one without.
    fn export_to(&mut self, to: PeerId, exportables: &[(Ipv4Net, Exportable)], out: &mut Vec<Output>) {
        let s = self.peers[to].session;
        let to_client = self.peers[to].config.rr_client;
        let mut announce: Vec<(&PathAttrs, Prefix)> = Vec::new();
        let mut withdraw: Vec<Prefix> = Vec::new();
        let mut want: Vec<(u32, &Export)> = Vec::new();
        let mut had: Vec<u32> = Vec::new();
        for (net, e) in exportables {
            let net = *net;
            want.clear();
            match e {
                Exportable::Own(x) => want.push((0, x)),
                Exportable::Learned(learned) => {
                    let sent = |c: &&Candidate| {
                        c.from != to && (c.from_client || to_client) && !(to_client && c.looped)
                    };
                    if s.add_path {
                        want.extend(learned.iter().filter(sent).map(|c| (c.from as u32 + 1, &c.export)));
                    } else {
                        want.extend(learned.iter().filter(|c| c.best).filter(sent).map(|c| (0, &c.export)));
                    }
                }
            }
            let peer = &mut self.peers[to];
            // Without ADD-PATH every path a peer is sent has ID 0: one lookup, not a range.
            had.clear();
            if s.add_path {
                had.extend(peer.adj_out.range((net, 0)..=(net, u32::MAX)).map(|(k, _)| k.1));
            } else if peer.adj_out.contains_key(&(net, 0)) {
                had.push(0);
            }
            for &id in &had {
                if !want.iter().any(|w| w.0 == id) {
                    peer.adj_out.remove(&(net, id));
                    withdraw.push(Prefix { path_id: s.add_path.then_some(id), net });
                }
            }
            for &(id, x) in &want {
                if peer.adj_out.get(&(net, id)) != Some(&x.path) {
                    announce.push((&x.attrs, Prefix { path_id: s.add_path.then_some(id), net }));
                    peer.adj_out.insert((net, id), x.path.clone());
                }
            }
        }
        // One UPDATE (or more, if they do not fit) per set of attributes, as BIRD's buckets,
        // in the order the buckets were first filled.
        let mut buckets: Vec<(&PathAttrs, Vec<Prefix>)> = Vec::new();
        let mut bucket_of: rustc_hash::FxHashMap<&PathAttrs, usize> = rustc_hash::FxHashMap::default();
        for (attrs, prefix) in announce {
            match bucket_of.get(attrs) {
                Some(&b) => buckets[b].1.push(prefix),
                None => {
                    bucket_of.insert(attrs, buckets.len());
                    buckets.push((attrs, vec![prefix]));
                }
            }
        }
        let n_withdraw = withdraw.len() as u64;
        if !withdraw.is_empty() {
            self.write(to, Kind::Update, withdraw.len() as u32, out, |buf| {
                write_withdrawals(&withdraw, s, buf)
            });
        }
        let mut n_announce = 0;
        for (attrs, prefixes) in buckets {
            n_announce += prefixes.len() as u64;
            self.write(to, Kind::Update, prefixes.len() as u32, out, |buf| {
                write_updates(attrs, &prefixes, s, buf)
            });
        }
        let st = &mut self.peers[to].stats;
        st.routes_sent += n_announce;
        st.withdrawals_sent += n_withdraw;
    }

    /// The attributes of a path sent to an internal peer: ORIGIN, an empty AS_PATH, NEXT_HOP,
    /// LOCAL_PREF (and MED when set), ORIGINATOR_ID and CLUSTER_LIST when reflected.
    fn attrs(&self, p: &Path) -> PathAttrs {
        PathAttrs {
            origin: Some(p.origin),
            as_path: Vec::new(),
            next_hop: Some(p.next_hop),
            med: (p.med != 0).then_some(p.med),
            local_pref: Some(p.local_pref),
            originator_id: p.originator_id,
            cluster_list: p.cluster_list.to_vec(),
        }
    }

    /// The prefixes whose kernel route changed since the last call, with the next hop now
    /// (`None`: the route goes).
    pub fn take_fib_changes(&mut self) -> Vec<(Ipv4Net, Option<Ipv4Addr>)> {
        std::mem::take(&mut self.fib_changed).into_iter().map(|n| (n, self.fib.get(&n).copied())).collect()
    }

    /// Routes in the speaker's table: its own and every path received.
    pub fn rib_len(&self) -> usize {
        self.config.own.len() + self.peers.iter().map(|p| p.adj_in.len()).sum::<usize>()
    }
}

#[cfg(test)]
mod tests;
