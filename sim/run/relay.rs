//! kube-proxy's userspace mode for TCP: the proxy process accepts the client's connection on a
//! portal's proxy port and relays it over a connection of its own to a backend.
//!
//! As pkg/proxy/userspace/proxysocket.go (v1.25) does it: `tcpProxySocket.ProxyLoop` accepts a
//! connection, then `TryConnectEndpoints` dials the next endpoint round robin
//! (`LoadBalancerRR.NextEndpoint`) with the timeouts of [`ENDPOINT_DIAL_TIMEOUTS`] (a refused or
//! timed-out dial tries the next endpoint; after the last the client's connection is closed),
//! and only then does the loop accept the next connection: it is one goroutine per Service
//! port, so the connections to one Service port wait for each other's dial. `ProxyTCP` then
//! copies both ways (`copyBytes`: `io.Copy`, then `Close` on both connections once one
//! direction has reached EOF). Go's `io.Copy` from one `*net.TCPConn` to another is `splice(2)`
//! through a pipe (net/splice_linux.go, internal/poll/splice_linux.go: socket to pipe, then pipe
//! to socket until the pipe is empty), so the bytes never pass through userspace; a pipe holds
//! [`PIPE_BYTES`] per round.
//!
//! The proxy's sockets are on the node's stack (kube-proxy runs in the host network): the
//! client's SYN reaches them REDIRECTed by the portal rule (`proxy/userspace.rs`), and the
//! backend sees a connection from the node. Go sets `TCP_NODELAY` on every connection
//! (net/tcpsock.go, `newTCPConn`), so they run without Nagle. What the process does (accept and
//! connect, each splice round, each wake-up) is CPU of the kube-proxy process, the FIFO server
//! of its own that `userspace.rs` describes; the segments are the kernel's, on the cores, as
//! for every socket.

use std::collections::VecDeque;

use smoltcp::socket::tcp;
use smoltcp::wire::IpAddress;

use super::tcp::{AppOp, Owner, Side, TcpHost};
use super::{Event, Simulation};
use crate::cluster::{Protocol, ProxyMode, Target, WorkloadKind};
use crate::time::{Duration, Instant};

/// `EndpointDialTimeouts` (pkg/proxy/userspace/proxysocket.go): one dial per entry, each with
/// its timeout.
const ENDPOINT_DIAL_TIMEOUTS: [Duration; 4] =
    [Duration::from_millis(250), Duration::from_millis(500), Duration::from_secs(1), Duration::from_secs(2)];

/// What one splice round moves at most: a pipe's default capacity, `PIPE_DEF_BUFFERS` (16)
/// pages (include/linux/pipe_fs_i.h); Go asks for up to 4 MiB (`maxSpliceSize`) and gets what
/// the pipe takes.
const PIPE_BYTES: usize = 16 * 4096;

/// A portal's listening socket in the proxy and its accept loop.
#[derive(Clone, Debug)]
pub struct Portal {
    /// The kube-proxy process (in `World::procs`).
    pub proc: usize,
    pub service: usize,
    pub port: usize,
    /// The loop is dialing for the connection it accepted last.
    dialing: bool,
    /// Connections established and not yet accepted (the listener's accept queue): (flow, conn).
    backlog: VecDeque<(u32, u32)>,
}

/// A connection the proxy relays, kept in its `Conn`.
#[derive(Clone, Debug, Default)]
pub struct Relay {
    /// The proxy port the client connected to (the portal's).
    portal: u16,
    /// The client's connection has reached the accept queue.
    queued: bool,
    /// Dials made so far.
    attempts: u8,
    /// The connection to the backend has been established.
    back_open: bool,
    /// The dialing goroutine has returned with it: the copying runs.
    dialed: bool,
    /// The proxy has closed both connections.
    closed: bool,
    /// Each direction's goroutine (from the front, from the back) found its socket empty and
    /// waits in the poller: its next round starts with a wake-up.
    parked: [bool; 2],
}

impl Simulation {
    /// With kube-proxy in userspace mode and a TCP workload to a Service, every node's stack
    /// takes the portals' TCP proxy ports (their listeners are made at the first SYN).
    pub(super) fn relay_setup(&mut self) {
        if self.world.cluster.proxy != ProxyMode::Userspace {
            return;
        }
        let to_service = self.flows.iter().any(|f| {
            f.kind.is_tcp()
                && matches!(
                    f.target,
                    Target::Service { .. } | Target::NodePort { .. } | Target::AnyService { .. }
                )
        });
        if !to_service {
            return;
        }
        for proc in 0..self.world.procs.len() {
            let crate::userspace::ProcKind::KubeProxy(k) = &self.world.procs[proc].kind else { continue };
            let mut portals: Vec<(u16, usize, usize)> = k
                .portals
                .iter()
                .filter(|(_, &(si, pi))| k.table.services[si].ports[pi].protocol == Protocol::Tcp)
                .map(|(&port, &(si, pi))| (port, si, pi))
                .collect();
            portals.sort_unstable();
            let ns = self.world.procs[proc].ns;
            let h = self.tcp_host(ns);
            // The kernel delivers what is for any of the node's addresses (a REDIRECT goes to
            // the incoming device's): smoltcp takes every destination it is handed.
            self.tcp[h].iface.set_any_ip(true);
            for (port, service, p) in portals {
                let portal = Portal { proc, service, port: p, dialing: false, backlog: VecDeque::new() };
                self.tcp[h].relays.insert(port, portal);
            }
        }
    }

    /// The proxy's listener on a portal took connection `o` (its SYN): it is accepted once
    /// established.
    pub(super) fn relay_accepted(&mut self, h: usize, o: Owner) {
        let portal = o.tuple.map_or(0, |k| k.0);
        self.conn_mut(o).relay = Some(Box::new(Relay { portal, parked: [true; 2], ..Default::default() }));
        debug_assert!(self.tcp[h].relays.contains_key(&portal));
    }

    /// The accept loop of the portal on `port` of host `h` takes the next connection, if it is
    /// not dialing for one.
    fn relay_accept_next(&mut self, t: Instant, h: usize, port: u16) {
        if self.tcp[h].relays.get(&port).is_none_or(|p| p.dialing) {
            return;
        }
        while let Some((flow, conn)) = self.tcp[h].relays.get_mut(&port).and_then(|p| p.backlog.pop_front()) {
            // A connection that has gone meanwhile (reset by its client) is not accepted.
            if self.tcp_owner_of(h, flow, conn, Side::ProxyFront).is_none() {
                continue;
            }
            let proc = self.tcp[h].relays[&port].proc;
            self.tcp[h].relays.get_mut(&port).expect("present").dialing = true;
            // The goroutine wakes, accept() returns, connect() starts the dial.
            let costs = &self.world.costs;
            let cost = costs.context_switch + costs.syscall + costs.syscall;
            let done = self.relay_connection_work(t, proc, cost, flow);
            let side = Side::ProxyFront;
            self.queue.schedule(done, Event::TcpApp { host: h as u32, flow, conn, side, op: AppOp::Accept });
            return;
        }
    }

    /// `cost` of the kube-proxy process `proc` from `t` on, for `flow`: when it is done.
    fn relay_work(&mut self, t: Instant, proc: usize, cost: Duration, flow: u32) -> Instant {
        let p = &mut self.world.procs[proc];
        let start = p.busy_until.max(t);
        p.busy_until = start + cost;
        if start + cost <= self.end {
            p.busy += cost;
            self.obs.flow_user_cpu(flow, proc, cost);
        }
        start + cost
    }

    /// [`Self::relay_work`] that opens a connection (accept, dial): the cost of a new
    /// connection to a Service in this mode, with the portal rules' walk.
    fn relay_connection_work(&mut self, t: Instant, proc: usize, cost: Duration, flow: u32) -> Instant {
        let stats = &mut self.world.proxies[self.world.procs[proc].node].stats;
        stats.translated_cpu += cost;
        stats.new_connection_cpu += cost;
        self.relay_work(t, proc, cost, flow)
    }

    /// The portal (its process and Service port) of relayed connection `o` on host `h`.
    /// Returns its proxy port, the process, and the Service and port index it serves.
    fn relay_portal(&self, h: usize, o: Owner) -> Option<(u16, usize, usize, usize)> {
        let port = self.conn(o).relay.as_ref()?.portal;
        let p = self.tcp[h].relays.get(&port)?;
        Some((port, p.proc, p.service, p.port))
    }

    /// A relay's step is done: `op` of `side` of connection `conn` of `flow` on host `h`.
    pub(super) fn relay_done(
        &mut self,
        t: Instant,
        h: usize,
        (flow, conn, side): (u32, u32, Side),
        op: AppOp,
    ) {
        let Some(o) = self.tcp_owner_of(h, flow, conn, Side::ProxyFront) else {
            // The client's connection has gone: a dial for it still frees the accept loop.
            if let Some(port) = self.flows[flow as usize]
                .tcp
                .as_ref()
                .and_then(|f| f.conns.get(conn as usize).and_then(|c| c.relay.as_ref()).map(|r| r.portal))
            {
                if matches!(op, AppOp::Accept | AppOp::Dialed) {
                    self.relay_free_loop(t, h, port);
                }
            }
            return;
        };
        match op {
            AppOp::Accept => self.relay_dial(t, h, o),
            AppOp::Dialed => {
                let Some(r) = self.conn_mut(o).relay.as_mut() else { return };
                r.dialed = true;
                let port = r.portal;
                self.relay_free_loop(t, h, port);
                self.tcp_apps(t, h);
            }
            AppOp::DialTimeout(attempt) => {
                let Some(r) = self.conn(o).relay.as_ref() else { return };
                if r.attempts != attempt || r.back_open || r.closed {
                    return;
                }
                // `net.DialTimeout` gives up: the socket in SYN-SENT is closed, which sends
                // nothing (`tcp_close` from SYN_SENT).
                if let Some(back) = self.tcp_owner_of(h, flow, conn, Side::ProxyBack) {
                    self.tcp_drop_socket(t, h, back);
                }
                self.relay_redial(t, h, o);
            }
            AppOp::Splice => self.relay_splice_done(t, h, o, side),
            AppOp::Write(_) | AppOp::Read(_) => unreachable!("an application's call"),
        }
    }

    /// The accept loop of `port` is free again: it accepts the next connection.
    fn relay_free_loop(&mut self, t: Instant, h: usize, port: u16) {
        if let Some(p) = self.tcp[h].relays.get_mut(&port) {
            p.dialing = false;
        }
        self.relay_accept_next(t, h, port);
    }

    /// Dials the next endpoint for relayed connection `o` (its ProxyFront socket): a socket
    /// of the node connects to it from an ephemeral port, with this attempt's timeout.
    fn relay_dial(&mut self, t: Instant, h: usize, o: Owner) {
        let Some((port, proc, service, service_port)) = self.relay_portal(h, o) else { return };
        let attempt = {
            let r = self.conn_mut(o).relay.as_mut().expect("a relay");
            r.attempts += 1;
            r.attempts
        };
        let crate::userspace::ProcKind::KubeProxy(k) = &mut self.world.procs[proc].kind else {
            unreachable!("a portal's process is kube-proxy")
        };
        let Some((ip, dport)) = k.next_endpoint(service, service_port) else {
            // "Couldn't find an endpoint for service": the client's connection is closed.
            self.relay_close(t, h, o);
            return self.relay_free_loop(t, h, port);
        };
        let ns = self.tcp[h].ns;
        let src = crate::datapath::source_for(&self.world, ns, ip).unwrap_or(std::net::Ipv4Addr::UNSPECIFIED);
        let host = &mut self.tcp[h];
        host.ports.retain(|&(_, until)| until > t);
        // Linux's ip_local_port_range, 32768-60999, avoiding ports in use or in TIME-WAIT.
        let mut sport = rand::Rng::random_range(&mut self.rng, 32768..=60999u16);
        while host.ports.iter().any(|&(q, _)| q == sport) || host.relays.contains_key(&sport) {
            sport = rand::Rng::random_range(&mut self.rng, 32768..=60999u16);
        }
        host.ports.push((sport, Instant::from_nanos(u64::MAX)));
        let bulk = matches!(self.flows[o.flow as usize].kind, WorkloadKind::TcpStream { .. });
        let mut s = TcpHost::socket(bulk);
        s.set_nagle_enabled(false);
        let cx = host.iface.context();
        let local = smoltcp::wire::IpEndpoint::new(IpAddress::Ipv4(src), sport);
        if s.connect(cx, (IpAddress::Ipv4(ip), dport), local).is_err() {
            return self.relay_redial(t, h, o);
        }
        let slot = host.add(s);
        let back = Owner {
            sock: slot,
            flow: o.flow,
            conn: o.conn,
            side: Side::ProxyBack,
            tuple: Some((sport, ip, dport)),
        };
        host.owners.push(back);
        self.tcp_poll(t, h, slot);
        let timeout = ENDPOINT_DIAL_TIMEOUTS[usize::from(attempt) - 1];
        self.queue.schedule(
            t + timeout,
            Event::TcpApp {
                host: h as u32,
                flow: o.flow,
                conn: o.conn,
                side: Side::ProxyBack,
                op: AppOp::DialTimeout(attempt),
            },
        );
    }

    /// Whether the relay of backend socket `o` has had its connection established.
    pub(super) fn relay_dialed(&self, o: Owner) -> bool {
        self.conn(o).relay.as_ref().is_some_and(|r| r.back_open)
    }

    /// The backend refused the dial of `o` (a RST or an ICMP unreachable in SYN-SENT): its
    /// socket goes and the loop dials the next endpoint.
    pub(super) fn relay_dial_failed(&mut self, t: Instant, h: usize, o: Owner) {
        self.tcp_drop_socket(t, h, o);
        if let Some(front) = self.tcp_owner_of(h, o.flow, o.conn, Side::ProxyFront) {
            self.relay_redial(t, h, front);
        }
    }

    /// "Dial failed": the goroutine wakes with the error and dials the next endpoint, or,
    /// after the last timeout, closes the client's connection and accepts the next.
    fn relay_redial(&mut self, t: Instant, h: usize, o: Owner) {
        let Some((port, proc, ..)) = self.relay_portal(h, o) else { return };
        let Some(r) = self.conn(o).relay.as_ref() else { return };
        if r.closed {
            return;
        }
        let attempts = r.attempts;
        if usize::from(attempts) >= ENDPOINT_DIAL_TIMEOUTS.len() {
            self.relay_close(t, h, o);
            return self.relay_free_loop(t, h, port);
        }
        let costs = &self.world.costs;
        let cost = costs.context_switch + costs.syscall;
        let done = self.relay_connection_work(t, proc, cost, o.flow);
        let (host, flow, conn, side) = (h as u32, o.flow, o.conn, Side::ProxyFront);
        self.queue.schedule(done, Event::TcpApp { host, flow, conn, side, op: AppOp::Accept });
    }

    /// The proxy closes both connections of the relay of `o` (`copyBytes`: `dest.Close()`,
    /// `src.Close()`).
    fn relay_close(&mut self, t: Instant, h: usize, o: Owner) {
        let Some(r) = self.conn_mut(o).relay.as_mut() else { return };
        if r.closed {
            return;
        }
        r.closed = true;
        for side in [Side::ProxyFront, Side::ProxyBack] {
            if let Some(s) = self.tcp_owner_of(h, o.flow, o.conn, side) {
                self.tcp[h].sock(s.sock).close();
                self.tcp_poll(t, h, s.sock);
            }
        }
    }

    /// One proxy socket `o` of a relayed connection: the accept queue takes it once
    /// established, the dial returns once its backend socket is, and then each direction's
    /// goroutine splices what its socket has read into the other socket, or closes both at EOF.
    pub(super) fn relay_app(&mut self, t: Instant, h: usize, o: Owner) {
        let Some(r) = self.conn(o).relay.as_deref().cloned() else { return };
        if r.closed {
            return;
        }
        let state = self.tcp[h].sock(o.sock).state();
        let up = !matches!(state, tcp::State::Listen | tcp::State::SynSent | tcp::State::SynReceived);
        match o.side {
            Side::ProxyFront if !r.queued => {
                if up {
                    self.conn_mut(o).relay.as_mut().expect("a relay").queued = true;
                    let portal = self.tcp[h].relays.get_mut(&r.portal).expect("the relay's portal");
                    portal.backlog.push_back((o.flow, o.conn));
                    self.relay_accept_next(t, h, r.portal);
                }
                return;
            }
            Side::ProxyBack if !r.back_open => {
                if up {
                    self.conn_mut(o).relay.as_mut().expect("a relay").back_open = true;
                    // net.DialTimeout returns: the dialing goroutine wakes.
                    let proc = self.tcp[h].relays[&r.portal].proc;
                    let wake = self.world.costs.context_switch;
                    let done = self.relay_connection_work(t, proc, wake, o.flow);
                    let (host, flow, conn, side) = (h as u32, o.flow, o.conn, Side::ProxyBack);
                    self.queue.schedule(done, Event::TcpApp { host, flow, conn, side, op: AppOp::Dialed });
                }
                return;
            }
            _ => {}
        }
        if !r.dialed || self.conn(o).busy[o.side as usize] {
            return;
        }
        let other = if o.side == Side::ProxyFront { Side::ProxyBack } else { Side::ProxyFront };
        let Some(peer) = self.tcp_owner_of(h, o.flow, o.conn, other) else {
            return self.relay_close(t, h, o);
        };
        let s = self.tcp[h].sock(o.sock);
        let (readable, open) = (s.recv_queue(), s.may_recv());
        if readable > 0 {
            let p = self.tcp[h].sock(peer.sock);
            let free = p.send_capacity() - p.send_queue();
            if !p.may_send() || free == 0 {
                // splicePump waits for the socket to be writable.
                return;
            }
            self.conn_mut(o).busy[o.side as usize] = true;
            let dir = usize::from(o.side == Side::ProxyBack);
            let parked = std::mem::take(&mut self.conn_mut(o).relay.as_mut().expect("a relay").parked[dir]);
            let proc = self.tcp[h].relays[&r.portal].proc;
            let costs = &self.world.costs;
            // The goroutine wakes if it waited, splice() into the pipe (`tcp_splice_read`),
            // splice() out of it (`tcp_sendmsg_locked`, the pages moved).
            let wake = if parked { costs.context_switch } else { Duration::ZERO };
            let cost = wake + costs.tcp_recvmsg + costs.tcp_sendmsg;
            let done = self.relay_work(t, proc, cost, o.flow);
            let (host, flow, conn, side) = (h as u32, o.flow, o.conn, o.side);
            self.queue.schedule(done, Event::TcpApp { host, flow, conn, side, op: AppOp::Splice });
        } else if !open {
            // EOF (a FIN, or the connection reset): io.Copy returns and both are closed.
            self.relay_close(t, h, o);
        }
    }

    /// A splice round of `side` is done: what its socket holds then moves to the other one, up
    /// to a pipe's worth and the other's free space (which only grew since the round began).
    fn relay_splice_done(&mut self, t: Instant, h: usize, front: Owner, side: Side) {
        let other = if side == Side::ProxyFront { Side::ProxyBack } else { Side::ProxyFront };
        let (Some(o), Some(peer)) = (
            self.tcp_owner_of(h, front.flow, front.conn, side),
            self.tcp_owner_of(h, front.flow, front.conn, other),
        ) else {
            return;
        };
        self.conn_mut(o).busy[side as usize] = false;
        let p = self.tcp[h].sock(peer.sock);
        let free = p.send_capacity() - p.send_queue();
        let n = self.tcp[h].sock(o.sock).recv_queue().min(free).min(PIPE_BYTES);
        let mut buf = vec![0u8; n];
        let got = self.tcp[h].sock(o.sock).recv_slice(&mut buf).unwrap_or(0);
        let sent = self.tcp[h].sock(peer.sock).send_slice(&buf[..got]).unwrap_or(0);
        debug_assert_eq!(sent, got, "the round is sized to the free space");
        // An empty socket sends the goroutine back to the poller (`waitRead`).
        if self.tcp[h].sock(o.sock).recv_queue() == 0 {
            let dir = usize::from(side == Side::ProxyBack);
            if let Some(r) = self.conn_mut(o).relay.as_mut() {
                r.parked[dir] = true;
            }
        }
        self.tcp_poll(t, h, o.sock);
        self.tcp_poll(t, h, peer.sock);
        self.tcp_apps(t, h);
    }
}
