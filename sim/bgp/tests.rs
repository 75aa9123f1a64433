//! The speaker on its own: speakers joined by perfect in-memory connections (every message
//! through its bytes: encoded, then parsed, as the run does), timers on a small clock.

use std::collections::BTreeMap;

use super::*;

/// Speakers, their connections and their timers, with a message delay of 1 ms.
struct Net {
    speakers: Vec<Speaker>,
    /// Pending deliveries and timers: (time, seq) -> what.
    events: BTreeMap<(u64, u64), Ev>,
    seq: u64,
    now: Instant,
    /// Connections up: (speaker, peer) pairs.
    up: Vec<(usize, PeerId)>,
    /// Speakers whose connections lose everything (powered off).
    dead: Vec<bool>,
}

enum Ev {
    In(usize, Input),
    /// The other end closed: speaker `.0`'s connection for peer `.1` goes down, if it is
    /// still up by then (not already closed by this end).
    Down(usize, PeerId),
}

const DELAY: Duration = Duration::from_millis(1);

fn addr(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, 2 + i as u8)
}

fn block(i: usize) -> Ipv4Net {
    Ipv4Net::new(Ipv4Addr::new(10, 244, i as u8, 0), 26).unwrap()
}

/// A mesh of `n` speakers, or reflectors `rr` (the others their clients).
fn net(n: usize, rr: &[usize], timers: Timers) -> Net {
    net_joining(n, rr, timers, &[])
}

/// [`net`] where the speakers `joining` are not started, nor in the others' configuration,
/// until [`join`].
fn net_joining(n: usize, rr: &[usize], timers: Timers, joining: &[usize]) -> Net {
    let speakers = (0..n)
        .map(|i| {
            let is_rr = rr.contains(&i);
            let peers = (0..n)
                .filter(|&m| m != i && (rr.is_empty() || is_rr || rr.contains(&m)))
                .map(|m| PeerConfig {
                    name: format!("Mesh_{m}"),
                    addr: addr(m),
                    peer_as: 64512,
                    passive: addr(m).to_string() > addr(i).to_string(),
                    rr_client: is_rr && !rr.contains(&m),
                    configured: !joining.contains(&m),
                })
                .collect();
            let config = Config {
                router_id: addr(i),
                local_as: 64512,
                source: addr(i),
                cluster_id: is_rr.then_some(Ipv4Addr::new(244, 0, 0, 1)),
                timers,
                peers,
                own: vec![block(i)],
            };
            Speaker::new(config, Instant::ZERO, <ChaCha8Rng as rand::SeedableRng>::seed_from_u64(i as u64))
        })
        .collect();
    let mut net = Net {
        speakers,
        events: BTreeMap::new(),
        seq: 0,
        now: Instant::ZERO,
        up: Vec::new(),
        dead: (0..n).map(|i| joining.contains(&i)).collect(),
    };
    for i in (0..n).filter(|i| !joining.contains(i)) {
        let mut out = Vec::new();
        net.speakers[i].start(Instant::ZERO, &mut out);
        net.apply(i, out);
    }
    net
}

impl Net {
    fn at(&mut self, t: Instant, ev: Ev) {
        self.seq += 1;
        self.events.insert((t.as_nanos(), self.seq), ev);
    }

    /// The peer index speaker `to` has for speaker `from`.
    fn peer_of(&self, to: usize, from: usize) -> Option<PeerId> {
        self.speakers[to].peers.iter().position(|p| p.config.addr == addr(from))
    }

    fn index_of(&self, a: Ipv4Addr) -> usize {
        (0..self.speakers.len()).find(|&i| addr(i) == a).unwrap()
    }

    fn apply(&mut self, i: usize, out: Vec<Output>) {
        if self.dead[i] {
            return;
        }
        let now = self.now;
        for o in out {
            match o {
                Output::Connect(p) => {
                    let j = self.index_of(self.speakers[i].peers[p].config.addr);
                    if self.dead[j] {
                        continue;
                    }
                    if let Some(q) = self.speakers[j].accepts(addr(i)) {
                        self.up.push((i, p));
                        self.up.push((j, q));
                        self.at(now + DELAY, Ev::In(i, Input::TcpUp(p)));
                        self.at(now + DELAY, Ev::In(j, Input::TcpUp(q)));
                    }
                }
                Output::Send { peer: p, bytes, messages, .. } => {
                    let j = self.index_of(self.speakers[i].peers[p].config.addr);
                    if !self.up.contains(&(i, p)) || self.dead[j] {
                        continue;
                    }
                    let q = self.peer_of(j, i).unwrap();
                    // Through the bytes, parsed with the receiver's view of the session.
                    let rs = self.speakers[j].peers[q].session_rx;
                    let mut at = 0;
                    let mut n = 0;
                    while at < bytes.len() {
                        // The OPEN decides the session; the receiver parses later ones with it.
                        let open = bytes.get(at + 18) == Some(&Kind::Open.code());
                        let parsed = Message::parse(&bytes[at..], if open { Session::default() } else { rs });
                        let (got, used) = parsed.expect("well-formed").expect("whole");
                        at += used;
                        n += 1;
                        self.at(now + DELAY, Ev::In(j, Input::Message(q, got)));
                    }
                    assert_eq!(n, messages);
                }
                Output::Close(p) => {
                    let j = self.index_of(self.speakers[i].peers[p].config.addr);
                    self.up.retain(|&x| x != (i, p));
                    if let Some(q) = self.peer_of(j, i) {
                        if self.up.contains(&(j, q)) {
                            self.at(now + DELAY + DELAY, Ev::Down(j, q));
                        }
                    }
                }
                Output::Timer { peer, kind, after, gen } => {
                    self.at(now + after, Ev::In(i, Input::Timer(peer, kind, gen)))
                }
            }
        }
    }

    fn run_until(&mut self, t: Instant) {
        while let Some((&(at, seq), _)) = self.events.iter().next() {
            if at > t.as_nanos() {
                break;
            }
            let (i, input) = match self.events.remove(&(at, seq)).unwrap() {
                Ev::In(i, input) => (i, input),
                Ev::Down(i, p) => {
                    if !self.up.contains(&(i, p)) {
                        continue;
                    }
                    self.up.retain(|&x| x != (i, p));
                    (i, Input::TcpDown(p))
                }
            };
            self.now = Instant::from_nanos(at);
            if self.dead[i] {
                continue;
            }
            let mut out = Vec::new();
            self.speakers[i].handle(self.now, input, &mut out);
            self.apply(i, out);
        }
        self.now = t;
    }

    /// Each live speaker's kernel routes: prefix -> next hop.
    fn fibs(&self) -> Vec<Vec<(Ipv4Net, Ipv4Addr)>> {
        self.speakers.iter().map(|s| s.fib.iter().map(|(k, v)| (*k, *v)).collect()).collect()
    }
}

/// Speaker `j` joins now: it starts, and every other speaker has it configured and starts
/// the protocol.
fn join(n: &mut Net, j: usize) {
    n.dead[j] = false;
    let mut out = Vec::new();
    n.speakers[j].start(n.now, &mut out);
    n.apply(j, out);
    for i in (0..n.speakers.len()).filter(|&i| i != j) {
        let Some(p) = n.peer_of(i, j) else { continue };
        n.speakers[i].configure(p);
        let mut out = Vec::new();
        n.speakers[i].handle(n.now, Input::Configure(p), &mut out);
        n.apply(i, out);
    }
}

#[test]
fn a_peer_not_yet_configured_is_neither_connected_nor_accepted_until_it_joins() {
    let mut n = net_joining(4, &[], Timers::default(), &[3]);
    n.run_until(secs(9));
    for i in 0..3 {
        assert_eq!(n.fibs()[i], complete(4, i, &[3]), "speaker {i}");
        let p = n.peer_of(i, 3).unwrap();
        assert_eq!(n.speakers[i].peers[p].state, State::Idle);
        assert_eq!(n.speakers[i].accepts(addr(3)), None, "not in bird.cfg");
    }
    n.now = secs(10);
    join(&mut n, 3);
    n.run_until(Instant::from_nanos(11_900_000_000));
    assert!(n.fibs()[..3].iter().all(|f| !f.iter().any(|r| r.0 == block(3))), "within the connect delay");
    n.run_until(secs(13));
    for i in 0..4 {
        assert_eq!(n.fibs()[i], complete(4, i, &[]), "speaker {i}");
    }
}

fn secs(s: u64) -> Instant {
    Instant::ZERO + Duration::from_secs(s)
}

/// Every other live speaker's block, via its own address.
fn complete(n: usize, i: usize, dead: &[usize]) -> Vec<(Ipv4Net, Ipv4Addr)> {
    (0..n).filter(|&m| m != i && !dead.contains(&m)).map(|m| (block(m), addr(m))).collect()
}

#[test]
fn a_mesh_converges_after_the_connect_delay_and_each_pair_has_one_session() {
    let mut n = net(5, &[], Timers::default());
    n.run_until(secs(1));
    assert!(n.fibs().iter().all(|f| f.is_empty()), "nothing before the 2 s connect delay");
    n.run_until(secs(3));
    for i in 0..5 {
        assert_eq!(n.fibs()[i], complete(5, i, &[]), "speaker {i}");
        assert!(n.speakers[i].peers.iter().all(|p| p.state == State::Established));
        // One OPEN per session each way: the passive end never connected.
        let opens: u64 = n.speakers[i].peers.iter().map(|p| p.stats.sent[0]).sum();
        assert_eq!(opens, 4);
    }
    // Exactly one TCP connection per pair: 5 * 4 connection ends.
    assert_eq!(n.up.len(), 20);
}

#[test]
fn keepalives_hold_a_quiet_session_up() {
    let mut n = net(2, &[], Timers::default());
    n.run_until(secs(1000));
    let p = &n.speakers[0].peers[0];
    assert_eq!(p.state, State::Established);
    assert_eq!(p.keepalive, Duration::from_secs(80));
    assert_eq!(p.stats.flaps, 0);
    // One after OPEN, then one every 60 to 80 s (80 s jittered by up to a quarter) after the
    // session came up at ~2 s.
    let sent = p.stats.sent[3];
    assert!((1 + 12..=1 + 16).contains(&sent), "KEEPALIVEs sent in 1000 s: {sent}");
}

#[test]
fn a_powered_off_peer_is_withdrawn_when_the_hold_timer_expires() {
    let mut n = net(3, &[], Timers::default());
    n.run_until(secs(10));
    n.dead[2] = true;
    n.run_until(secs(10 + 150));
    // The last message from it came with the initial table at about 2 s: its peers' hold
    // timers run out 240 s after that.
    assert!(n.fibs()[0].contains(&(block(2), addr(2))), "the stale route is still there");
    n.run_until(secs(10 + 241));
    assert_eq!(n.fibs()[0], complete(3, 0, &[2]));
    assert_eq!(n.fibs()[1], complete(3, 1, &[2]));
    let p = &n.speakers[0].peers[n.peer_of(0, 2).unwrap()];
    assert_eq!(p.last_error.as_deref(), Some("Error: Hold timer expired"));
    assert_ne!(p.state, State::Established);
}

#[test]
fn a_graceful_shutdown_is_withdrawn_within_one_message_delay() {
    let mut n = net(3, &[], Timers::default());
    n.run_until(secs(10));
    let mut out = Vec::new();
    n.speakers[2].stop(n.now, &mut out);
    n.apply(2, out);
    n.run_until(secs(10) + DELAY + DELAY);
    assert_eq!(n.fibs()[0], complete(3, 0, &[2]));
    let p = &n.speakers[1].peers[n.peer_of(1, 2).unwrap()];
    assert!(p.last_error.as_deref().unwrap().starts_with("Received: "), "{:?}", p.last_error);
}

#[test]
fn route_reflectors_give_clients_every_block_through_two_sessions_each() {
    let mut n = net(6, &[0, 1], Timers::default());
    n.run_until(secs(5));
    for i in 0..6 {
        assert_eq!(n.fibs()[i], complete(6, i, &[]), "speaker {i}");
    }
    // A client has one session per reflector; a reflector one per other node.
    assert_eq!(n.speakers[3].peers.len(), 2);
    assert_eq!(n.speakers[0].peers.len(), 5);
    // A client hears each block twice (once per reflector), with ORIGINATOR_ID and
    // CLUSTER_LIST, and keeps the next hop of the originator.
    let c = &n.speakers[3];
    let paths: Vec<&Path> = c
        .peers
        .iter()
        .flat_map(|p| p.adj_in.iter().filter(|(k, _)| k.0 == block(5)).map(|(_, v)| v))
        .collect();
    assert_eq!(paths.len(), 2);
    for p in paths {
        assert_eq!(p.originator_id, Some(addr(5)));
        assert_eq!(*p.cluster_list, [Ipv4Addr::new(244, 0, 0, 1)]);
        assert_eq!(p.next_hop, addr(5));
    }
    // A reflector takes what the other reflector reflects to it (the cluster-list check is on
    // client sessions only) but prefers its client's own path and never reflects the copy to
    // a client (its cluster ID is in the list).
    let r = &n.speakers[0];
    let rr1 = r.peers.iter().position(|p| p.config.addr == addr(1)).unwrap();
    let copy = r.peers[rr1].adj_in.iter().find(|(k, _)| k.0 == block(5)).map(|(_, v)| v).unwrap();
    assert_eq!(*copy.cluster_list, [Ipv4Addr::new(244, 0, 0, 1)]);
    let (best_peer, _, _) = r.best(block(5)).unwrap();
    assert_eq!(r.peers[best_peer].config.addr, addr(5));
    assert!(c.peers.iter().all(|p| p.adj_in.keys().filter(|k| k.0 == block(5)).count() == 1));
}

#[test]
fn losing_one_reflector_keeps_every_route_and_losing_both_loses_them() {
    let mut n = net(5, &[0, 1], Timers::default());
    n.run_until(secs(5));
    n.dead[0] = true;
    n.run_until(secs(5 + 250));
    for i in 1..5 {
        assert_eq!(n.fibs()[i], complete(5, i, &[0]), "speaker {i} after reflector 0 died");
    }
    n.dead[1] = true;
    n.run_until(secs(5 + 500));
    for i in 2..5 {
        assert!(n.fibs()[i].is_empty(), "speaker {i} has no reflector left: {:?}", n.fibs()[i]);
    }
}

#[test]
fn a_reset_connection_keeps_the_routes_stale_until_the_peer_is_back() {
    let t = Timers { graceful_restart: Duration::from_secs(120), ..Timers::default() };
    let mut n = net(2, &[], t);
    n.run_until(secs(10));
    // The TCP connection fails under both (no NOTIFICATION): graceful restart keeps routes.
    n.up.clear();
    for (i, p) in [(0, 0), (1, 0)] {
        let mut out = Vec::new();
        n.speakers[i].handle(n.now, Input::TcpDown(p), &mut out);
        n.apply(i, out);
    }
    assert_eq!(n.fibs()[0], complete(2, 0, &[]), "kept while the peer restarts");
    assert!(n.speakers[0].peers[0].adj_in.values().all(|p| p.stale));
    // Error wait (5 s), connect: the session comes back and End-of-RIB refreshes the route.
    n.run_until(secs(30));
    assert_eq!(n.speakers[0].peers[0].state, State::Established);
    assert!(n.speakers[0].peers[0].adj_in.values().all(|p| !p.stale));
    assert_eq!(n.fibs()[0], complete(2, 0, &[]));
}

#[test]
fn a_wrong_peer_as_is_refused_with_a_notification() {
    let mut n = net(2, &[], Timers::default());
    n.speakers[1].config.local_as = 65001;
    n.run_until(secs(3));
    let p = &n.speakers[0].peers[0];
    assert_eq!(p.last_error.as_deref(), Some("Error: Bad peer AS: 65001"));
    assert!(n.fibs().iter().all(|f| f.is_empty()));
}

/// Speaker `i`'s process dies and starts again at once: the kernel closes its connections
/// (its peers see them go down, no NOTIFICATION), then it starts in recovery.
fn restart(n: &mut Net, i: usize) {
    let ups: Vec<PeerId> = n.up.iter().filter(|x| x.0 == i).map(|x| x.1).collect();
    n.up.retain(|x| x.0 != i);
    for p in ups {
        let j = n.index_of(n.speakers[i].peers[p].config.addr);
        let q = n.peer_of(j, i).unwrap();
        n.at(n.now + DELAY, Ev::Down(j, q));
    }
    n.speakers[i].restart(n.now);
    let mut out = Vec::new();
    n.speakers[i].start(n.now, &mut out);
    n.apply(i, out);
}

#[test]
fn a_restarted_reflector_keeps_every_route_through_its_recovery() {
    let mut n = net(5, &[0], Timers::default());
    n.run_until(secs(5));
    let before = n.fibs();
    for (i, fib) in before.iter().enumerate().skip(1) {
        assert_eq!(*fib, complete(5, i, &[]));
    }
    restart(&mut n, 0);
    assert!(n.speakers[0].recovering());
    assert!(n.speakers[0].fib.is_empty(), "the new process knows nothing");
    // Clients keep the reflector's routes as stale until its End-of-RIB: if it sent its
    // End-of-RIB after a partial feed, a client would drop the routes not yet re-learned.
    let mut t = secs(5);
    while t < secs(20) {
        t += Duration::from_millis(1);
        n.run_until(t);
        assert_eq!(n.fibs()[1..], before[1..], "clients at {t:?}");
    }
    assert!(!n.speakers[0].recovering(), "every client sent its End-of-RIB");
    assert_eq!(n.fibs()[0], complete(5, 0, &[]));
    for i in 1..5 {
        let p = &n.speakers[i].peers[0];
        assert_eq!(p.state, State::Established);
        assert!(p.adj_in.values().all(|r| !r.stale), "client {i}: stale routes left");
        assert_eq!(p.stats.flaps, 1);
    }
    // The reflector's OPENs after the restart said it is restarting (R) with its forwarding
    // state kept (F).
    let open = n.speakers[0].peers[0].local.clone().unwrap();
    assert!(open.capabilities.iter().any(|c| matches!(c,
        Capability::GracefulRestart { restarting: true, families, .. } if families.iter().all(|f| f.2))));
}

#[test]
fn a_restarted_speaker_waiting_for_a_dead_peer_ends_its_recovery_after_the_wait() {
    let t = Timers { graceful_restart_wait: Duration::from_secs(60), ..Timers::default() };
    let mut n = net(3, &[], t);
    n.run_until(secs(5));
    n.dead[2] = true;
    restart(&mut n, 0);
    n.run_until(secs(5 + 59));
    assert!(n.speakers[0].recovering(), "still waiting for speaker 2's End-of-RIB");
    let p1 = n.peer_of(1, 0).unwrap();
    assert!(n.speakers[1].peers[p1].adj_in.values().all(|r| r.stale), "nothing re-sent to 1 yet");
    n.run_until(secs(5 + 61));
    assert!(!n.speakers[0].recovering());
    assert!(n.speakers[1].peers[p1].adj_in.values().all(|r| !r.stale), "the deferred feed came");
    assert!(n.fibs()[0].contains(&(block(1), addr(1))));
}
