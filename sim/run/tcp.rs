//! TCP endpoints: smoltcp's TCP on the simulated clock, and the applications that use it
//! (iperf3's bulk writer and reader, netperf's TCP_RR and TCP_CRR).
//!
//! Every namespace at an end of a TCP workload (a client or server pod) gets one
//! [`TcpHost`]: a smoltcp `Interface` of medium IP (smoltcp builds the IPv4 packets and TCP
//! segments, bytes and checksums; cnisim's kernel routes them) and its `SocketSet`. A segment
//! smoltcp emits runs down the namespace's kernel (`datapath::tcp_output`: the TCP transmit
//! step, then the same `ip_output` a UDP datagram takes: netfilter, routing, veth, bridge,
//! tunnels, NIC, cables); a segment the kernel delivers (`Action::DeliverTcp`, after
//! `tcp_v4_rcv`'s cost) goes into the interface, which is polled at once. smoltcp's timers
//! (retransmission, delayed ACK, Nagle, TIME-WAIT) are an `Event::TcpPoll` at its `poll_at`.
//!
//! The applications make syscalls: a `write()` or `read()` is a chain of its own on the
//! connection's core (`tcp_sendmsg` or `tcp_recvmsg` plus the copy); its effect on the socket
//! (`send_slice`, `recv`) happens when that CPU time has been served (`Event::TcpApp`), so a
//! busy core slows the application and, through the windows, the connection.
//!
//! smoltcp is configured as close to Linux as it allows (ARCHITECTURE.md lists what differs):
//! CUBIC (`net.ipv4.tcp_congestion_control`'s default), Nagle on, delayed ACKs of up to 40 ms (`TCP_DELACK_MIN`,
//! include/net/tcp.h), MSS from the interface MTU (the pod's: MTU - 40), window scaling from
//! the buffer sizes, buffers of the autotuning maxima ([`TCP_RMEM_MAX`], [`TCP_WMEM_MAX`]).

use std::collections::VecDeque;
use std::net::Ipv4Addr;

use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{Device, DeviceCapabilities, Medium, RxToken, TxToken};
use smoltcp::socket::tcp;
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr, IpProtocol, Ipv4Packet, TcpPacket};

use super::{Event, Simulation, Work};
use crate::cluster::{Target, WorkloadKind, TCP_RMEM_MAX, TCP_WMEM_MAX};
use crate::cost::Step;
use crate::datapath;
use crate::net::gso::{Encap, Gso, Held, Written};
use crate::net::packet::{tuple_hash, Meta, Packet, TcpTag, ETH_HEADER};
use crate::net::NsId;
use crate::time::{Duration, Instant};

/// `net.ipv4.tcp_rmem`'s default, 128 KiB (ip-sysctl.rst).
const TCP_RMEM_DEFAULT: u32 = 128 * 1024;
/// Linux's delayed-ACK timer, `TCP_DELACK_MIN` = HZ/25 = 40 ms (include/net/tcp.h).
const DELACK: smoltcp::time::Duration = smoltcp::time::Duration::from_millis(40);
/// How long a closed connection's port stays reserved: `TCP_TIMEWAIT_LEN`, 60 s
/// (include/net/tcp.h). smoltcp's own TIME-WAIT is 10 s; the socket leaves smoltcp when it
/// enters TIME-WAIT and the port stays taken for Linux's time.
const TIMEWAIT_LEN: Duration = Duration::from_secs(60);
/// How many segments a receiver acknowledges at once at the start of a connection, and again
/// after an idle gap longer than the RTO: `TCP_MAX_QUICKACKS` (include/net/tcp.h), the bound
/// `tcp_incr_quickack` (net/ipv4/tcp_input.c) puts on `rcv_wnd / (2 * rcv_mss)`, which is
/// larger for every window here.
const MAX_QUICKACKS: u8 = 16;
/// `TCP_ATO_MIN`, 40 ms (include/net/tcp.h): a reply sent sooner than this after data arrived
/// puts the socket in pingpong (interactive) mode (`tcp_event_data_sent`, net/ipv4/tcp_output.c;
/// `net.ipv4.tcp_pingpong_thresh` = 1), where ACKs wait to ride on the reply.
const ATO_MIN: Duration = Duration::from_millis(40);
/// The idle gap after which a receiver goes back to quick ACKs (`tcp_event_data_recv`: a gap
/// longer than `icsk_rto`); `TCP_RTO_MIN`, 200 ms, the RTO of a connection whose RTT is far
/// below it, as every in-cluster one's is.
const RTO_MIN: Duration = Duration::from_millis(200);
/// netperf's and iperf3's server read size: the read asks for up to this much.
const READ_SIZE: usize = crate::cluster::IPERF3_TCP_WRITE as usize;
/// The largest TSO/GSO super-packet TCP builds, in bytes: `sk_gso_max_size` =
/// `GSO_LEGACY_MAX_SIZE` - (`MAX_TCP_HEADER` + 1) (`sk_setup_caps`, net/core/sock.c), with
/// `MAX_TCP_HEADER` = L1_CACHE_ALIGN(128 + `MAX_HEADER`) = 320 on x86-64 distribution kernels
/// (include/net/tcp.h; `MAX_HEADER` = `LL_MAX_HEADER` 128 + 48, include/linux/netdevice.h).
/// `tcp_tso_autosize` (net/ipv4/tcp_output.c) grants all of it whenever the minimum RTT is
/// below 512 us (`tcp_tso_rtt_log` = 9), as every in-cluster RTT is; the congestion and
/// receive windows bound it further, through what smoltcp may emit.
const TSO_MAX_BYTES: usize = crate::net::gso::GSO_MAX_SIZE - 321;

fn smol(t: Instant) -> smoltcp::time::Instant {
    smoltcp::time::Instant::from_micros((t.as_nanos() / 1_000) as i64)
}

/// The device between smoltcp and the simulated kernel: IPv4 packets in, frames out (with a
/// blank Ethernet header that `neigh_output` fills).
struct Wire {
    /// Frames for smoltcp, and where their IPv4 packet starts.
    rx: VecDeque<(Vec<u8>, usize)>,
    tx: Out,
    mtu: usize,
    /// Segments the socket being polled may still emit (0 while its previous one's chain is
    /// being served: smoltcp keeps the data and sends it at the next poll, as Linux's
    /// `tcp_write_xmit` sends the next segment once the previous one went down the stack).
    budget: usize,
}

struct Rx((Vec<u8>, usize));
struct Tx<'a>(&'a mut Out);

/// What smoltcp has sent in a poll: `tcp_write_xmit` with GSO. The segments it emits, each of
/// one MSS but the last, consecutive, go down as one super-packet: a segment that continues
/// the open one is written behind its payload (`Held::merge_written`: no copy), and
/// `tcp_gso_segment` cuts it back into exactly those bytes, but for the IPv4 IDs.
#[derive(Default)]
struct Out {
    /// Packets complete: the frame, its GSO state, how many segments it carries.
    done: Vec<(Vec<u8>, Option<Gso>, u16)>,
    /// The super-packet being built.
    open: Option<Held>,
}

impl Out {
    /// Completes the open super-packet, if any.
    fn close(&mut self) {
        if let Some(held) = self.open.take() {
            let segs = held.segments();
            let (mut frame, gso) = held.finish();
            if gso.is_none() {
                // One segment: its checksum is the kernel's to write.
                crate::net::gso::fill_checksums(&mut frame, Encap::Plain);
            }
            self.done.push((frame, gso, segs));
        }
    }

    /// A segment `frame` smoltcp wrote on its own: it opens a super-packet, or goes alone.
    fn start(&mut self, frame: Vec<u8>) {
        match Held::start(frame, Encap::Plain) {
            Ok(held) => self.open = Some(held),
            Err(mut frame) => {
                crate::net::gso::fill_checksums(&mut frame, Encap::Plain);
                self.done.push((frame, None, 1));
            }
        }
    }
}

impl RxToken for Rx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        let (frame, at) = &self.0;
        f(&frame[*at..])
    }
}

impl TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let out = self.0;
        let Some(held) = out.open.as_mut() else {
            let mut frame = vec![0u8; ETH_HEADER + len];
            let r = f(&mut frame[ETH_HEADER..]);
            out.start(frame);
            return r;
        };
        let (r, written) = held.merge_written(len, f);
        match written {
            Written::Merged { flush: false } => {}
            Written::Merged { flush: true } => out.close(),
            Written::Apart(frame) => {
                out.close();
                out.start(frame);
            }
        }
        r
    }
}

impl Device for Wire {
    type RxToken<'a> = Rx;
    type TxToken<'a> = Tx<'a>;
    fn receive(&mut self, _: smoltcp::time::Instant) -> Option<(Rx, Tx<'_>)> {
        let p = self.rx.pop_front()?;
        Some((Rx(p), Tx(&mut self.tx)))
    }
    fn transmit(&mut self, _: smoltcp::time::Instant) -> Option<Tx<'_>> {
        self.budget = self.budget.checked_sub(1)?;
        Some(Tx(&mut self.tx))
    }
    fn capabilities(&self) -> DeviceCapabilities {
        let mut c = DeviceCapabilities::default();
        c.medium = Medium::Ip;
        c.max_transmission_unit = self.mtu;
        // The TCP checksum is the kernel's: written when a segment or super-packet goes down
        // (`Out`; CHECKSUM_PARTIAL, completed by the NIC or GSO), verified by `tcp_v4_rcv`
        // or by GRO before merging (CHECKSUM_UNNECESSARY above it).
        c.checksum.tcp = smoltcp::phy::Checksum::None;
        c
    }
}

/// One socket in a `SocketSet` of its own, so that it is polled on its own: what it sends goes
/// down the kernel one segment at a time, each when the previous one's chain has been served
/// (connections send independently, each from its own context), and a segment it has not sent
/// is not in flight for its congestion control. Slot 0 of a host holds no socket: a segment
/// no socket takes goes there, and smoltcp answers it with a RST (`tcp_v4_send_reset`).
struct Sock {
    set: SocketSet<'static>,
    handle: Option<SocketHandle>,
    /// When the poll for its next smoltcp timer is scheduled.
    timer: Option<Instant>,
    /// Segments emitted while the previous one's chain is served (a reply smoltcp makes while
    /// it processes an arriving segment).
    frames: VecDeque<(Vec<u8>, Option<Gso>, u16)>,
    /// A segment's chain is being served.
    busy: bool,
    /// Bytes of this socket's skbs waiting in a NIC's qdisc or being sent, for TCP small
    /// queues: over `tcp_limit_output_bytes` the socket sends nothing until the NIC has sent
    /// some (`tcp_small_queue_check`, net/ipv4/tcp_output.c; the TSQ handler resumes it on TX
    /// completion).
    tsq_queued: u64,
    /// The window scale the peer announced in its SYN (`None` before it, or without one).
    peer_shift: Option<u8>,
}

impl Sock {
    fn new(socket: Option<tcp::Socket<'static>>) -> Sock {
        let mut set = SocketSet::new(Vec::new());
        let handle = socket.map(|s| set.add(s));
        Sock {
            set,
            handle,
            timer: None,
            frames: VecDeque::new(),
            busy: false,
            tsq_queued: 0,
            peer_shift: None,
        }
    }
}

/// Which end of a connection a socket is. A connection kube-proxy's userspace mode relays is
/// two TCP connections (`run/relay.rs`): the client's to the proxy (`ProxyFront` is the
/// proxy's end) and the proxy's to the server (`ProxyBack`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Client = 0,
    Server = 1,
    ProxyFront = 2,
    ProxyBack = 3,
}

impl Side {
    /// The direction the side sends in: 0 towards the server (the client's requests), 1
    /// towards the client.
    fn dir(self) -> usize {
        match self {
            Side::Client | Side::ProxyBack => 0,
            Side::Server | Side::ProxyFront => 1,
        }
    }
}

/// A socket of a host and the connection it serves.
#[derive(Clone, Copy, Debug)]
pub(super) struct Owner {
    /// Its slot in the host's sockets.
    pub(super) sock: u32,
    pub(super) flow: u32,
    pub(super) conn: u32,
    pub(super) side: Side,
    /// (local port, remote address, remote port) once known, to attribute emitted segments.
    pub(super) tuple: Option<(u16, Ipv4Addr, u16)>,
}

/// The TCP stack of one namespace.
pub struct TcpHost {
    pub ns: NsId,
    pub(super) iface: Interface,
    wire: Wire,
    /// Sockets by slot; a slot is not reused (`None` once its socket has gone), so an event
    /// for a socket that has gone finds nothing.
    socks: Vec<Option<Sock>>,
    pub(super) owners: Vec<Owner>,
    /// Listening sockets waiting for a SYN: (port, slot).
    pub(super) listening: Vec<(u16, u32)>,
    /// Local ports in use or in TIME-WAIT, until when.
    pub(super) ports: Vec<(u16, Instant)>,
    /// Sockets of BGP sessions (`run/bgp.rs`) by (local port, remote address, remote port).
    pub(super) bgp_socks: rustc_hash::FxHashMap<(u16, Ipv4Addr, u16), u32>,
    /// Segments a socket may emit into one super-packet: a TSO/GSO skb's worth of MSS-sized
    /// segments, or 1 with GSO and TSO off.
    tso_segs: usize,
    /// `net.ipv4.tcp_limit_output_bytes` of its machine.
    tsq_limit: u64,
    /// kube-proxy's userspace portals on this node's stack, by proxy port (`run/relay.rs`).
    pub(super) relays: rustc_hash::FxHashMap<u16, super::relay::Portal>,
}

impl TcpHost {
    fn new(
        ns: NsId,
        ip: Ipv4Addr,
        prefix: u8,
        mtu: u32,
        seed: u64,
        (gso, tsq_limit): (bool, u64),
    ) -> TcpHost {
        let mtu = mtu as usize;
        // smoltcp's MSS: the MTU less the IPv4 and TCP headers.
        let tso_segs = if gso { (TSO_MAX_BYTES / mtu.saturating_sub(40).max(1)).max(1) } else { 1 };
        let mut wire = Wire { rx: VecDeque::new(), tx: Out::default(), mtu, budget: 0 };
        let mut config = Config::new(HardwareAddress::Ip);
        config.random_seed = seed;
        let mut iface = Interface::new(config, &mut wire, smoltcp::time::Instant::ZERO);
        iface.update_ip_addrs(|a| {
            a.push(IpCidr::new(IpAddress::Ipv4(ip), prefix)).expect("one address");
        });
        // smoltcp needs a route for off-link peers; the kernel below does the real routing.
        iface.routes_mut().add_default_ipv4_route(ip).expect("one route");
        TcpHost {
            ns,
            iface,
            wire,
            socks: vec![Some(Sock::new(None))],
            owners: Vec::new(),
            listening: Vec::new(),
            ports: Vec::new(),
            bgp_socks: rustc_hash::FxHashMap::default(),
            tso_segs,
            tsq_limit,
            relays: rustc_hash::FxHashMap::default(),
        }
    }

    /// A BGP session's socket: Linux's defaults as [`TcpHost::socket`] sets them, with
    /// buffers of `size` bytes (`run/bgp.rs` says why), and ACKs sent at once: Linux is in
    /// quickack mode for a connection's first segments and again after every idle gap longer
    /// than the RTO (`tcp_event_data_recv`), which is every gap between a session's bursts
    /// (KEEPALIVEs are a minute apart).
    pub(super) fn bgp_socket(size: usize) -> tcp::Socket<'static> {
        Self::linux_socket(size, size, None)
    }

    /// A socket with CUBIC and Nagle on, buffers of `rx` and `tx` bytes and this ACK delay.
    fn linux_socket(
        rx: usize,
        tx: usize,
        ack_delay: Option<smoltcp::time::Duration>,
    ) -> tcp::Socket<'static> {
        let mut s =
            tcp::Socket::new(tcp::SocketBuffer::new(vec![0u8; rx]), tcp::SocketBuffer::new(vec![0u8; tx]));
        s.set_congestion_control(tcp::CongestionControl::Cubic);
        s.set_nagle_enabled(true);
        s.set_ack_delay(ack_delay);
        s
    }

    /// A socket with Linux's defaults; `bulk`: buffers of the autotuning maxima (a stream's),
    /// else of `tcp_rmem`'s default for both (a request/response connection, whose messages
    /// autotuning would not grow them for).
    pub(super) fn socket(bulk: bool) -> tcp::Socket<'static> {
        let (r, w) = if bulk { (TCP_RMEM_MAX, TCP_WMEM_MAX) } else { (TCP_RMEM_DEFAULT, TCP_RMEM_DEFAULT) };
        let s = Self::linux_socket(r as usize, w as usize, Some(DELACK));
        // No timestamps: smoltcp sizes a segment by the MSS without its options (Linux's
        // `tcp_current_mss` subtracts them), so with the 12 B timestamp option a full segment
        // would not fit the MTU. Linux's default is `net.ipv4.tcp_timestamps` = 1 (1,448 B per
        // segment at MTU 1500); here segments carry 1,460 B, as with timestamps off.
        s
    }

    pub(super) fn listen(&mut self, port: u16, bulk: bool) {
        let mut s = Self::socket(bulk);
        s.listen(port).expect("a fresh socket listens on a non-zero port");
        let slot = self.add(s);
        self.listening.push((port, slot));
    }

    /// Puts a socket in a slot of its own.
    pub(super) fn add(&mut self, s: tcp::Socket<'static>) -> u32 {
        self.socks.push(Some(Sock::new(Some(s))));
        (self.socks.len() - 1) as u32
    }

    /// The socket in `slot`; the slot holds one (owners and listeners hold live slots).
    pub(super) fn sock(&mut self, slot: u32) -> &mut tcp::Socket<'static> {
        let sk = self.socks[slot as usize].as_mut().expect("a live slot");
        sk.set.get_mut::<tcp::Socket>(sk.handle.expect("a slot with a socket"))
    }
}

/// What a TCP flow's applications are doing.
#[derive(Clone, Debug, Default)]
pub struct TcpFlow {
    pub client_host: usize,
    /// The streams (TcpStream), or the current connection (TcpRr, TcpCrr: the last one).
    pub conns: Vec<Conn>,
}

/// One connection of a flow.
#[derive(Clone, Debug, Default)]
pub struct Conn {
    /// The side's thread is in a syscall (indexed by [`Side`]).
    pub(super) busy: [bool; 4],
    /// Request/response: bytes of the current message each side has read so far.
    got: [u32; 4],
    /// Request/response: when the current transaction started.
    started: Instant,
    /// The client has closed its socket.
    closed: bool,
    /// Request/response: the client has written a request and waits for its response.
    in_tx: bool,
    /// The client's socket has been seen established.
    opened: bool,
    /// Segments each side sent: the highest sequence number sent, the data segments not yet
    /// acknowledged (end sequence, when sent, retransmitted).
    hi: [Option<u32>; 4],
    unacked: [VecDeque<(u32, Instant, bool)>; 4],
    /// Each side's receiver ACK policy, as Linux's `icsk_ack`.
    ack: [AckMode; 4],
    /// kube-proxy's userspace mode relays the connection (`run/relay.rs`).
    pub(super) relay: Option<Box<super::relay::Relay>>,
}

/// When a receiver acknowledges at once and when it delays, as Linux decides it
/// (net/ipv4/tcp_input.c, `__tcp_ack_snd_check`): smoltcp delays every ACK up to its ack delay
/// (but sends one for every second full segment), Linux acknowledges the first
/// [`MAX_QUICKACKS`] segments of a connection at once (quickack mode), and delays in
/// interactive (pingpong) mode. Without it a connection's first segment would wait 40 ms for
/// its ACK, with smoltcp's initial window of two 1,024 B segments.
#[derive(Clone, Copy, Debug, Default)]
struct AckMode {
    /// Quick ACKs left (`icsk_ack.quick`).
    quick: u8,
    /// When data last arrived (`icsk_ack.lrcvtime`); `None` before the first.
    last_rx: Option<Instant>,
    /// Interactive: replies follow data within [`ATO_MIN`] (`icsk_ack.pingpong`).
    pingpong: bool,
}

impl AckMode {
    /// A data segment arrives at `t`: whether it is acknowledged at once.
    fn on_data(&mut self, t: Instant) -> bool {
        match self.last_rx {
            // The first data of the connection: `tcp_incr_quickack(sk, TCP_MAX_QUICKACKS)`.
            None => self.quick = MAX_QUICKACKS,
            // "Too long gap. Apparently sender failed to restart window, so that we send
            // ACKs quickly."
            Some(last) if t - last > RTO_MIN => self.quick = self.quick.max(MAX_QUICKACKS),
            Some(_) => {}
        }
        self.last_rx = Some(t);
        let quick = self.quick > 0 && !self.pingpong;
        if quick {
            // `tcp_dec_quickack_mode`: one quick ACK spent per segment acknowledged.
            self.quick -= 1;
        }
        quick
    }

    /// The side sends data at `t`: a reply within `ATO_MIN` of the last data received makes the
    /// connection interactive.
    fn on_send(&mut self, t: Instant) {
        if self.last_rx.is_some_and(|r| t - r < ATO_MIN) {
            self.pingpong = true;
        }
    }
}

/// An application's syscall, done when its CPU time has been served.
#[derive(Clone, Copy, Debug)]
pub enum AppOp {
    /// `write()` of this many bytes.
    Write(u32),
    /// `read()` of this many bytes.
    Read(u32),
    /// kube-proxy's userspace mode (`run/relay.rs`): `accept()` and the `connect()` to a backend.
    Accept,
    /// The connection to the backend is up: the dialing goroutine wakes.
    Dialed,
    /// The dial timeout of this attempt expires.
    DialTimeout(u8),
    /// A `splice()` round from this side's socket into the other proxy socket.
    Splice,
}

/// A sender's guard against smoltcp's receiver shrinking its window. smoltcp advertises its
/// free space rounded down to its window scale (`scaled_window`) and, since smoltcp PR #1079,
/// trims what arrives beyond the edge it advertised last, so the right edge can move back by
/// up to one scale unit: a sender that filled the window it was offered before loses the tail
/// of a segment and, its later ACKs all carrying new windows (no duplicate ACKs), waits for the
/// RTO (1 s in smoltcp). Linux never shrinks the window (`tcp_select_window` rounds up to the
/// scale instead, net/ipv4/tcp_output.c). Each edge smoltcp advertises is less than one unit
/// behind every earlier one (the free space's edge only moves forward), so a sender that stays
/// one unit short of the edge it was offered never meets a shrink: the window of every segment
/// after the handshake reaches smoltcp one unit smaller (its bytes on every capture are the
/// sender's own). `ip` is the IPv4 packet; `shift` the peer's scale, learnt from its SYN.
fn keep_off_the_edge(ip: &mut [u8], shift: &mut Option<u8>) {
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let Some(seg) = ip.get_mut(ihl..) else { return };
    let Ok(read) = TcpPacket::new_checked(&*seg) else { return };
    if read.syn() {
        *shift = window_scale(read.options());
        return;
    }
    let mut tcp = TcpPacket::new_unchecked(seg);
    if shift.is_some_and(|s| s > 0) && tcp.window_len() > 0 {
        let w = tcp.window_len();
        tcp.set_window_len(w - 1);
    }
}

/// The shift of a window scale option (RFC 7323: kind 3, length 3) in TCP `options`.
fn window_scale(mut options: &[u8]) -> Option<u8> {
    while let [kind, rest @ ..] = options {
        match *kind {
            0 => return None,
            1 => options = rest,
            _ => {
                let len = usize::from(*rest.first()?);
                if len < 2 || len > options.len() {
                    return None;
                }
                if *kind == 3 && len == 3 {
                    return Some(options[2]);
                }
                options = &options[len..];
            }
        }
    }
    None
}

fn seq_le(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) <= 0
}

impl Simulation {
    /// Sets up the TCP hosts and listening sockets of every TCP flow (called once the flows
    /// exist): a host in each client and server namespace, a listener on the server's port.
    pub(super) fn tcp_setup(&mut self) {
        self.tcp_host_of = vec![None; self.world.netns.len()];
        for fi in 0..self.flows.len() {
            if !self.flows[fi].kind.is_tcp() {
                continue;
            }
            let f = &self.flows[fi];
            let port = self.world.cluster.workloads[f.workload].port;
            // Who serves: the pod, or every endpoint of the Service(s), on the target port.
            let servers: Vec<(NsId, u16)> = match f.target {
                Target::Pod(p) => vec![(self.world.pod_ns[p], port)],
                Target::External(e) => vec![(self.world.external_ns[e], port)],
                Target::Service { service, port } | Target::NodePort { service, port, .. } => {
                    let s = &self.world.cluster.services.services[service];
                    s.endpoints
                        .iter()
                        .map(|e| (self.world.pod_ns[e.pod], s.ports[port].target_port))
                        .collect()
                }
                Target::AnyService { first, count } => (first..first + count)
                    .flat_map(|si| {
                        let s = &self.world.cluster.services.services[si];
                        s.endpoints
                            .iter()
                            .map(|e| (self.world.pod_ns[e.pod], s.ports[0].target_port))
                            .collect::<Vec<_>>()
                    })
                    .collect(),
            };
            let client_ns = f.client_ns;
            let ch = self.tcp_host(client_ns);
            let bulk = matches!(self.flows[fi].kind, WorkloadKind::TcpStream { .. });
            for (ns, port) in servers {
                let sh = self.tcp_host(ns);
                if !self.tcp[sh].listening.iter().any(|&(p, _)| p == port) {
                    self.tcp[sh].listen(port, bulk);
                }
            }
            let streams = match self.flows[fi].kind {
                WorkloadKind::TcpStream { streams, .. } => streams as usize,
                _ => 1,
            };
            self.flows[fi].tcp = Some(Box::new(TcpFlow { client_host: ch, conns: Vec::new() }));
            self.obs.flows[fi].tcp =
                Some(crate::observe::TcpObs::new(streams, self.flows[fi].start, self.flows[fi].end));
        }
        self.relay_setup();
    }

    /// The TCP stack of namespace `ns`, made on first use: smoltcp on the address of its
    /// first device after `lo` (a pod's `eth0`, a node's `eth0`).
    pub(super) fn tcp_host(&mut self, ns: NsId) -> usize {
        if let Some(h) = self.tcp_host_of[ns] {
            return h;
        }
        let dev = self.world.netns[ns].devices.get(1).copied().unwrap_or(0);
        let (ip, prefix) = self.world.devices[dev].addrs.first().copied().unwrap_or((Ipv4Addr::LOCALHOST, 8));
        // The MSS follows the route's MTU where it has one (`tcp_sync_mss(sk, dst_mtu(dst))`,
        // `ipv4_default_advmss`: route MTU - 40), as Cilium's tunnel modes set on the pods'
        // default route; smoltcp has one MSS for every peer, so the default route's.
        let route_mtu = self.world.netns[ns].main.lookup(Ipv4Addr::UNSPECIFIED).and_then(|r| r.mtu);
        let mtu = self.world.devices[dev].mtu.min(route_mtu.unwrap_or(u32::MAX));
        let seed = self.world.cluster.seed ^ ((ns as u64) << 20) ^ 0x7463_7000;
        let o = self.world.offloads(ns);
        let tsq = self
            .world
            .nodes
            .get(self.world.netns[ns].node)
            .map_or(crate::cluster::KernelQueues::default().tcp_limit_output_bytes, |n| {
                n.kernel.tcp_limit_output_bytes
            });
        self.tcp.push(TcpHost::new(ns, ip, prefix, mtu, seed, (o.gso || o.tso, u64::from(tsq))));
        self.world.netns[ns].tcp_stack = true;
        self.tcp_host_of[ns] = Some(self.tcp.len() - 1);
        self.tcp.len() - 1
    }

    /// A TCP flow starts: its client connects (every stream at once for a bulk transfer).
    pub(super) fn tcp_start(&mut self, t: Instant, flow: u32) {
        let n = match self.flows[flow as usize].kind {
            WorkloadKind::TcpStream { streams, .. } => streams,
            _ => 1,
        };
        for _ in 0..n {
            self.tcp_connect(t, flow);
        }
    }

    /// Opens a new connection of `flow`: a socket on a fresh ephemeral port connects to the
    /// server (smoltcp sends the SYN at the poll).
    fn tcp_connect(&mut self, t: Instant, flow: u32) {
        let ch = self.flows[flow as usize].tcp.as_ref().expect("a TCP flow").client_host;
        // The destination as a UDP connection's would be chosen: the pod, the Service's
        // address or a headless pick, Cilium's socket LB at connect(); a fresh ephemeral port.
        if self.open_connection(flow).is_err() {
            return self.tcp_retry(t, flow);
        }
        let f = &self.flows[flow as usize];
        let (dst, dport, picked) = (f.peer.0, f.peer.1, f.sport);
        self.world.netns[f.client_ns].udp_ports.remove(&picked);
        self.flows[flow as usize].connections -= 1;
        let host = &mut self.tcp[ch];
        host.ports.retain(|&(_, until)| until > t);
        // Linux's ip_local_port_range, 32768-60999, avoiding ports in use or in TIME-WAIT.
        let mut sport = picked;
        while host.ports.iter().any(|&(q, _)| q == sport) {
            sport = rand::Rng::random_range(&mut self.rng, 32768..=60999u16);
        }
        self.flows[flow as usize].sport = sport;
        host.ports.push((sport, Instant::from_nanos(u64::MAX)));
        let bulk = matches!(self.flows[flow as usize].kind, WorkloadKind::TcpStream { .. });
        let mut s = TcpHost::socket(bulk);
        let remote = (IpAddress::Ipv4(dst), dport);
        let cx = host.iface.context();
        if s.connect(cx, remote, sport).is_err() {
            return self.tcp_retry(t, flow);
        }
        let slot = host.add(s);
        let tf = self.flows[flow as usize].tcp.as_mut().expect("a TCP flow");
        let conn = tf.conns.len() as u32;
        tf.conns.push(Conn { started: t, ..Default::default() });
        self.flows[flow as usize].connections += 1;
        if let Some(o) = self.obs.flows[flow as usize].tcp.as_mut() {
            o.connections += 1;
        }
        self.tcp[ch].owners.push(Owner {
            sock: slot,
            flow,
            conn,
            side: Side::Client,
            tuple: Some((sport, dst, dport)),
        });
        self.tcp_poll(t, ch, slot);
    }

    /// A connection could not be opened (no backend at connect(), or smoltcp refused the
    /// address): a request/response client tries again 1 ms later, as netperf's loop would
    /// after a failed connect; a stream gives up.
    fn tcp_retry(&mut self, t: Instant, flow: u32) {
        let f = &self.flows[flow as usize];
        let next = t + Duration::from_millis(1);
        if !matches!(f.kind, WorkloadKind::TcpStream { .. }) && next < f.end {
            self.queue.schedule(next, Event::Send { flow });
        }
    }

    /// The kernel delivered a TCP segment to namespace `ns`: the socket of its connection
    /// takes it, else a listener on its port, else none (smoltcp answers with a RST).
    pub(super) fn tcp_input(&mut self, t: Instant, ns: NsId, pkt: Packet) {
        let Some(h) = self.tcp_host_of.get(ns).copied().flatten() else { return };
        if Ipv4Packet::new_unchecked(&pkt.frame[ETH_HEADER..]).next_header() == IpProtocol::Icmp {
            return self.tcp_unreachable(t, h, &pkt.frame[ETH_HEADER..]);
        }
        let tag = pkt.meta.tcp;
        let merged = pkt.meta.gso.map(|g| g.size);
        let (key, owner) = self.tcp_received(t, h, &pkt.frame[ETH_HEADER..], merged);
        let dport = key.0;
        let host = &mut self.tcp[h];
        let bgp = host.bgp_socks.get(&key).copied();
        if owner.is_none() && bgp.is_none() && host.relays.contains_key(&dport) {
            // kube-proxy's listening socket on a portal's proxy port: made when its first
            // SYN comes (it exists from the sync on; made earlier it would only cost memory).
            if !host.listening.iter().any(|l| l.0 == dport) {
                let bulk = tag.is_some_and(|g| {
                    matches!(self.flows[g.flow as usize].kind, WorkloadKind::TcpStream { .. })
                });
                host.listen(dport, bulk);
            }
        }
        let listener = host.listening.iter().position(|l| l.0 == dport);
        let slot = match (owner, bgp) {
            (Some(o), _) => o.sock,
            (None, Some(slot)) => slot,
            (None, None) => listener.map_or(0, |i| host.listening[i].1),
        };
        let mut frame = pkt.frame;
        if let Some(sk) = host.socks[slot as usize].as_mut() {
            keep_off_the_edge(&mut frame[ETH_HEADER..], &mut sk.peer_shift);
        }
        // A packet GRO merged goes in whole, one segment for smoltcp as for `tcp_v4_rcv`.
        host.wire.rx.push_back((frame, ETH_HEADER));
        self.tcp_poll(t, h, slot);
        // A listener that took a connection serves it now; a new one listens in its place.
        if let Some(i) = listener.filter(|&i| self.tcp[h].listening[i].1 == slot) {
            if self.tcp[h].sock(slot).state() != tcp::State::Listen {
                self.tcp[h].listening.swap_remove(i);
                let bulk = tag.is_some_and(|g| {
                    matches!(self.flows[g.flow as usize].kind, WorkloadKind::TcpStream { .. })
                });
                if tag.is_some() || dport != crate::wire::bgp::PORT {
                    self.tcp[h].listen(dport, bulk);
                }
                let relayed = self.tcp[h].relays.contains_key(&dport);
                if let Some(tag) = tag {
                    let side = if relayed { Side::ProxyFront } else { Side::Server };
                    let o = Owner { sock: slot, flow: tag.flow, conn: tag.conn, side, tuple: Some(key) };
                    self.tcp[h].owners.push(o);
                    if relayed {
                        self.relay_accepted(h, o);
                    }
                } else if dport == crate::wire::bgp::PORT {
                    self.bgp_accepted(t, h, slot, key);
                }
            }
        }
        self.tcp_apps(t, h);
        self.bgp_io(t, h, Some(slot));
    }

    /// An ICMP port unreachable about a segment host `h` sent (`ip` is the IPv4 packet):
    /// `tcp_v4_err` aborts a connection in SYN-SENT with `ECONNREFUSED` (a hard error,
    /// `icmp_err_convert`, net/ipv4/icmp.c), sending nothing (`tcp_done`); a connection past
    /// the handshake ignores it (a soft error). smoltcp does not read ICMP for TCP, so the
    /// socket is taken out here.
    fn tcp_unreachable(&mut self, t: Instant, h: usize, ip: &[u8]) {
        let ip = Ipv4Packet::new_unchecked(ip);
        let Some(q) = crate::wire::icmp_frag::parse_port_unreachable(ip.payload()) else { return };
        let ihl = usize::from(q[0] & 0x0f) * 4;
        if q.len() < ihl + 4 || ihl < 20 {
            return;
        }
        let dst = Ipv4Addr::new(q[16], q[17], q[18], q[19]);
        let (sport, dport) =
            (u16::from_be_bytes([q[ihl], q[ihl + 1]]), u16::from_be_bytes([q[ihl + 2], q[ihl + 3]]));
        let Some(o) = self.tcp_owner(h, (sport, dst, dport)) else { return };
        if self.tcp[h].sock(o.sock).state() != tcp::State::SynSent {
            return;
        }
        match o.side {
            Side::Client => self.tcp_refused(t, h, o),
            Side::ProxyBack => self.relay_dial_failed(t, h, o),
            Side::Server | Side::ProxyFront => {}
        }
    }

    /// The client connection `o` of host `h` was refused before it was established: its
    /// socket goes (its port is free at once: no TIME-WAIT), and the application sees
    /// `ECONNREFUSED` (a request/response client connects again, [`Self::tcp_retry`]).
    fn tcp_refused(&mut self, t: Instant, h: usize, o: Owner) {
        self.tcp_drop_socket(t, h, o);
        self.conn_mut(o).closed = true;
        if let Some(obs) = self.obs.flows[o.flow as usize].tcp.as_mut() {
            obs.refused += 1;
        }
        self.tcp_retry(t, o.flow);
    }

    /// Socket `o` of host `h` goes without a word (from SYN-SENT: no TIME-WAIT, its port free
    /// at once).
    pub(super) fn tcp_drop_socket(&mut self, t: Instant, h: usize, o: Owner) {
        let host = &mut self.tcp[h];
        host.socks[o.sock as usize] = None;
        host.owners.retain(|x| x.sock != o.sock);
        if let Some(p) = host.ports.iter_mut().find(|p| p.0 == o.tuple.map_or(0, |k| k.0)) {
            p.1 = t;
        }
    }

    /// A smoltcp timer of socket `sock` of host `host` is due.
    pub(super) fn tcp_timer(&mut self, t: Instant, host: u32, sock: u32) {
        let h = host as usize;
        let Some(sk) = self.tcp[h].socks[sock as usize].as_mut() else { return };
        if sk.timer != Some(t) {
            return;
        }
        sk.timer = None;
        self.tcp_poll(t, h, sock);
        self.tcp_apps(t, h);
        self.bgp_io(t, h, Some(sock));
    }

    /// Polls socket `slot` of host `h`: smoltcp processes what arrived and, unless a segment
    /// of this socket is still going down the kernel, sends one segment if it has one; its
    /// next timer is scheduled.
    pub(super) fn tcp_poll(&mut self, t: Instant, h: usize, slot: u32) {
        let host = &mut self.tcp[h];
        let Some(sk) = host.socks[slot as usize].as_mut() else { return };
        let throttled = sk.tsq_queued > host.tsq_limit;
        host.wire.budget = if !sk.busy && !throttled && sk.frames.is_empty() { host.tso_segs } else { 0 };
        host.iface.poll(smol(t), &mut host.wire, &mut sk.set);
        host.wire.tx.close();
        sk.frames.extend(host.wire.tx.done.drain(..));
        let at = host
            .iface
            .poll_at(smol(t), &sk.set)
            .map(|at| Instant::from_nanos((at.total_micros().max(0) as u64).saturating_mul(1_000)));
        let send = !sk.busy && !throttled && !sk.frames.is_empty();
        // While a segment is being served, its completion polls again: a timer due before
        // then is that poll's.
        if let Some(at) = at.filter(|&at| !(sk.busy || send) || at > t) {
            let at = at.max(t + Duration::from_micros(1));
            if sk.timer.is_none_or(|x| at < x) {
                sk.timer = Some(at);
                self.queue.schedule(at, Event::TcpPoll { host: h as u32, sock: slot });
            }
        }
        if send {
            self.tcp_xmit_next(t, h, slot);
        }
    }

    /// Sends the next segment socket `slot` of host `h` has emitted: one chain; when its time
    /// has been served (`Event::TcpXmit`) the socket is polled for the next.
    fn tcp_xmit_next(&mut self, t: Instant, h: usize, slot: u32) {
        let Some(sk) = self.tcp[h].socks[slot as usize].as_mut() else { return };
        let Some((frame, gso, segs)) = sk.frames.pop_front() else { return };
        sk.busy = true;
        let done = self.tcp_transmit(t, h, slot, frame, (gso, segs));
        self.queue.schedule(done, Event::TcpXmit { host: h as u32, sock: slot });
    }

    /// `bytes` of socket `slot` of host `h` were queued in a NIC (`queued`) or have left it:
    /// TCP small queues' accounting; a socket the queue held back sends again.
    pub(super) fn tcp_tsq(&mut self, t: Instant, h: usize, slot: u32, bytes: u64, queued: bool) {
        let limit = self.tcp[h].tsq_limit;
        let Some(sk) = self.tcp[h].socks[slot as usize].as_mut() else { return };
        let was = sk.tsq_queued > limit;
        if queued {
            sk.tsq_queued += bytes;
        } else {
            sk.tsq_queued = sk.tsq_queued.saturating_sub(bytes);
            if was && sk.tsq_queued <= limit && !sk.busy {
                self.tcp_xmit_done(t, h, slot);
            }
        }
    }

    /// A segment of socket `slot` has gone down the kernel: the next one goes.
    pub(super) fn tcp_xmit_done(&mut self, t: Instant, h: usize, slot: u32) {
        let limit = self.tcp[h].tsq_limit;
        let Some(sk) = self.tcp[h].socks[slot as usize].as_mut() else { return };
        sk.busy = false;
        if sk.tsq_queued > limit {
            // Held back by TCP small queues: the NIC's TX completion resumes it.
        } else if sk.frames.is_empty() {
            self.tcp_poll(t, h, slot);
        } else {
            self.tcp_xmit_next(t, h, slot);
        }
        // A socket that is done leaves once it has nothing left to send.
        let done = self.tcp[h].socks[slot as usize].as_ref().is_some_and(|sk| {
            !sk.busy
                && sk.handle.is_some_and(|hd| {
                    matches!(sk.set.get::<tcp::Socket>(hd).state(), tcp::State::Closed | tcp::State::TimeWait)
                })
        });
        if done {
            self.tcp_reap(t, h);
        }
    }

    /// The socket of host `h` that serves `side` of connection `conn` of `flow`.
    pub(super) fn tcp_owner_of(&self, h: usize, flow: u32, conn: u32, side: Side) -> Option<Owner> {
        self.tcp[h].owners.iter().find(|o| o.flow == flow && o.conn == conn && o.side == side).copied()
    }

    /// Which flow, connection and side sent a segment of host `h` from `(sport, dst, dport)`.
    fn tcp_owner(&self, h: usize, key: (u16, Ipv4Addr, u16)) -> Option<Owner> {
        self.tcp[h].owners.iter().rev().find(|o| o.tuple == Some(key)).copied()
    }

    /// A segment smoltcp built in host `h`, or `segs` of them as one super-packet, goes down
    /// the kernel.
    fn tcp_transmit(
        &mut self,
        t: Instant,
        h: usize,
        slot: u32,
        frame: Vec<u8>,
        (gso, segs): (Option<Gso>, u16),
    ) -> Instant {
        let ns = self.tcp[h].ns;
        let (src, dst, sport, dport, seq, payload, len) = {
            let ip = Ipv4Packet::new_unchecked(&frame[ETH_HEADER..]);
            let tcp = TcpPacket::new_unchecked(ip.payload());
            let payload = tcp.payload().len() as u32;
            // SYN and FIN occupy sequence space too.
            let len = payload + u32::from(tcp.syn()) + u32::from(tcp.fin());
            (
                ip.src_addr(),
                ip.dst_addr(),
                tcp.src_port(),
                tcp.dst_port(),
                tcp.seq_number().0 as u32,
                payload,
                len,
            )
        };
        let owner = self.tcp_owner(h, (sport, dst, dport));
        let mut meta = Meta::default();
        if let Some(o) = owner {
            meta.tcp = Some(TcpTag { flow: o.flow, conn: o.conn });
            let side = o.side as usize;
            let stream = self.stream_index(o.flow, o.conn);
            let c = &mut self.flows[o.flow as usize].tcp.as_mut().expect("TCP flow").conns[o.conn as usize];
            let mut retransmit = false;
            if payload > 0 {
                c.ack[side].on_send(t);
            }
            if len > 0 {
                let end = seq.wrapping_add(len);
                match c.hi[side] {
                    Some(hi) if seq_le(end, hi) => {
                        retransmit = true;
                        for e in c.unacked[side].iter_mut().filter(|e| seq_le(e.0, end)) {
                            e.2 = true;
                        }
                    }
                    _ => {
                        c.hi[side] = Some(end);
                        c.unacked[side].push_back((end, t, false));
                    }
                }
            }
            if let Some(o2) = self.obs.flows[o.flow as usize].tcp.as_mut() {
                let s = &mut o2.streams[stream];
                let dir = o.side.dir();
                s.segments[dir] += u64::from(segs);
                if payload > 0 {
                    s.data_segments[dir] += u64::from(segs);
                }
                if retransmit {
                    s.retransmits[dir] += 1;
                    s.retransmitted_bytes += u64::from(payload);
                }
            }
        }
        meta.gso = gso;
        meta.tsq = Some((h as u32, slot));
        let pkt = Packet { frame, meta };
        let node = self.world.netns[ns].node;
        let hash = tuple_hash(src, dst, 6, (sport as u32) << 16 | dport as u32);
        let flow = owner.map(|o| o.flow);
        self.chain(node, t, hash, Work::Process, flow, |w, cx| datapath::tcp_output(w, cx, ns, pkt))
    }

    /// A segment arrives at host `h`, before smoltcp sees it: its data sets how the socket
    /// acknowledges it ([`AckMode`]), its ACK acknowledges what this side sent: RTT samples
    /// (Karn's rule: none from retransmitted data) and bytes in flight.
    /// `merged`: the segment size of a packet GRO merged.
    /// Returns the segment's connection as this host sees it (local port, remote address,
    /// remote port) and the socket's owner, if a connection socket has it.
    fn tcp_received(
        &mut self,
        t: Instant,
        h: usize,
        ip: &[u8],
        merged: Option<u16>,
    ) -> ((u16, Ipv4Addr, u16), Option<Owner>) {
        let ip = Ipv4Packet::new_unchecked(ip);
        let tcp = TcpPacket::new_unchecked(ip.payload());
        let key = (tcp.dst_port(), ip.src_addr(), tcp.src_port());
        let owner = self.tcp_owner(h, key);
        let Some(o) = owner else { return (key, None) };
        let side = o.side as usize;
        let c = &mut self.flows[o.flow as usize].tcp.as_mut().expect("TCP flow").conns[o.conn as usize];
        if !tcp.payload().is_empty() {
            // More than one full segment unacknowledged is acknowledged at once
            // (`__tcp_ack_snd_check`); smoltcp does so when a second segment arrives while a
            // delayed ACK waits, and a merged packet is more than one segment on its own: a
            // zero delay sends the ACK now whether or not one was waiting.
            let several = merged.is_some_and(|size| tcp.payload().len() > usize::from(size));
            let delay = match c.ack[side].on_data(t) {
                true => None,
                false if several => Some(smoltcp::time::Duration::ZERO),
                false => Some(DELACK),
            };
            self.tcp[h].sock(o.sock).set_ack_delay(delay);
        }
        if !tcp.ack() {
            return (key, owner);
        }
        let ack = tcp.ack_number().0 as u32;
        let stream = self.stream_index(o.flow, o.conn);
        let c = &mut self.flows[o.flow as usize].tcp.as_mut().expect("TCP flow").conns[o.conn as usize];
        let mut sample = None;
        while c.unacked[side].front().is_some_and(|e| seq_le(e.0, ack)) {
            let (_, sent, retx) = c.unacked[side].pop_front().expect("checked");
            if !retx {
                sample = Some(t - sent);
            }
        }
        let in_flight = c.hi[side].map_or(0, |hi| hi.wrapping_sub(ack).min(u32::MAX / 2));
        if let Some(obs) = self.obs.flows[o.flow as usize].tcp.as_mut() {
            let s = &mut obs.streams[stream];
            // The application's ends only: a relayed connection's RTT is its client's.
            if let Some(rtt) = sample.filter(|_| side <= Side::Server as usize) {
                s.rtt.saturating_record(rtt.as_nanos().max(1));
            }
            if side == Side::Client as usize {
                obs.in_flight(stream, t, in_flight);
            }
        }
        (key, owner)
    }

    /// The stream a connection's figures go to: itself for a bulk transfer, the one stream of
    /// a request/response flow otherwise.
    pub(super) fn stream_index(&self, flow: u32, conn: u32) -> usize {
        match self.flows[flow as usize].kind {
            WorkloadKind::TcpStream { .. } => conn as usize,
            _ => 0,
        }
    }

    /// Runs the applications of every connection host `h` serves: each side that is not in a
    /// syscall decides its next one from its socket's state.
    pub(super) fn tcp_apps(&mut self, t: Instant, h: usize) {
        let owners: Vec<Owner> = self.tcp[h].owners.clone();
        for o in owners {
            self.tcp_app(t, h, o);
        }
        self.tcp_reap(t, h);
    }

    /// Sockets of host `h` that are done (closed, or in TIME-WAIT) and have sent everything
    /// leave smoltcp; a client's port stays reserved for TIME-WAIT. The last ACK goes at once
    /// (Linux acknowledges the FIN that ends FIN-WAIT-2 without delay, `tcp_fin`).
    fn tcp_reap(&mut self, t: Instant, h: usize) {
        let done = |host: &mut TcpHost, o: &Owner| {
            let s = host.sock(o.sock);
            matches!(s.state(), tcp::State::Closed | tcp::State::TimeWait)
        };
        let ending: Vec<Owner> = {
            let host = &mut self.tcp[h];
            let owners = host.owners.clone();
            owners.into_iter().filter(|o| done(host, o)).collect()
        };
        for o in ending {
            let sk = self.tcp[h].socks[o.sock as usize].as_ref().expect("a live slot");
            if sk.busy || !sk.frames.is_empty() {
                continue;
            }
            self.tcp[h].sock(o.sock).set_ack_delay(None);
            self.tcp_poll(t, h, o.sock);
            let host = &mut self.tcp[h];
            let sk = host.socks[o.sock as usize].as_ref().expect("a live slot");
            if sk.busy || !sk.frames.is_empty() {
                continue;
            }
            if o.side == Side::Client && !self.conn(o).opened {
                // Closed from SYN-SENT: a RST answered the SYN (no listener on the port).
                self.tcp_refused(t, h, o);
                continue;
            }
            if o.side == Side::ProxyBack && !self.relay_dialed(o) {
                self.relay_dial_failed(t, h, o);
                continue;
            }
            let host = &mut self.tcp[h];
            let timewait = host.sock(o.sock).state() == tcp::State::TimeWait;
            host.socks[o.sock as usize] = None;
            host.owners.retain(|x| x.sock != o.sock);
            if matches!(o.side, Side::Client | Side::ProxyBack) {
                let until = if timewait { t + TIMEWAIT_LEN } else { t };
                if let Some(p) = host.ports.iter_mut().find(|p| p.0 == o.tuple.map_or(0, |k| k.0)) {
                    p.1 = until;
                }
            }
        }
    }

    /// One side of one connection: start its next syscall if it has one to make.
    fn tcp_app(&mut self, t: Instant, h: usize, o: Owner) {
        if matches!(o.side, Side::ProxyFront | Side::ProxyBack) {
            return self.relay_app(t, h, o);
        }
        let fi = o.flow as usize;
        let side = o.side as usize;
        let kind = self.flows[fi].kind.clone();
        let end = self.flows[fi].end;
        let c = &self.flows[fi].tcp.as_ref().expect("TCP flow").conns[o.conn as usize];
        if c.busy[side] {
            return;
        }
        let got = c.got[side];
        let closed = c.closed;
        let s = self.tcp[h].sock(o.sock);
        let (state, can_send, queued, capacity, readable) =
            (s.state(), s.may_send(), s.send_queue(), s.send_capacity(), s.recv_queue());
        if state == tcp::State::Established {
            self.conn_mut(o).opened = true;
        }
        let op = match (kind, o.side) {
            (WorkloadKind::TcpStream { write, .. }, Side::Client) => {
                if t >= end {
                    if !closed && can_send {
                        self.tcp[h].sock(o.sock).close();
                        self.conn_mut(o).closed = true;
                        self.tcp_poll(t, h, o.sock);
                    }
                    return;
                }
                // sk_stream_memory_free / sk_stream_wspace: a writer waits until the free
                // space is at least half of what is queued (net/core/stream.c).
                let free = capacity - queued;
                if !can_send || free == 0 || free * 2 < queued {
                    return;
                }
                AppOp::Write((write as usize).min(free) as u32)
            }
            (WorkloadKind::TcpStream { .. }, Side::Server) => {
                if readable > 0 {
                    AppOp::Read(readable.min(READ_SIZE) as u32)
                } else {
                    if state == tcp::State::CloseWait {
                        self.tcp[h].sock(o.sock).close();
                        self.tcp_poll(t, h, o.sock);
                    }
                    return;
                }
            }
            (
                WorkloadKind::TcpRr { request, response } | WorkloadKind::TcpCrr { request, response },
                side,
            ) => {
                // The client writes a request when none is outstanding and reads the response;
                // the server reads the request and answers it whole (in `tcp_app_done`).
                let in_tx = self.conn(o).in_tx;
                let theirs = if side == Side::Client { response } else { request };
                if readable > 0 && (side == Side::Server || in_tx) && got < theirs {
                    AppOp::Read((readable as u32).min(theirs - got))
                } else if side == Side::Client && !in_tx && state == tcp::State::Established && t < end {
                    let c = self.conn_mut(o);
                    c.in_tx = true;
                    c.started = t;
                    AppOp::Write(request)
                } else {
                    if side == Side::Server && state == tcp::State::CloseWait {
                        self.tcp[h].sock(o.sock).close();
                        self.tcp_poll(t, h, o.sock);
                    }
                    return;
                }
            }
            _ => return,
        };
        self.tcp_syscall(t, h, o, op);
    }

    pub(super) fn conn(&self, o: Owner) -> &Conn {
        &self.flows[o.flow as usize].tcp.as_ref().expect("TCP flow").conns[o.conn as usize]
    }

    pub(super) fn conn_mut(&mut self, o: Owner) -> &mut Conn {
        &mut self.flows[o.flow as usize].tcp.as_mut().expect("TCP flow").conns[o.conn as usize]
    }

    /// Starts a `write()` or `read()` of one side: a chain on the connection's core; the socket
    /// sees it when the chain's time has been served.
    fn tcp_syscall(&mut self, t: Instant, h: usize, o: Owner, op: AppOp) {
        let ns = self.tcp[h].ns;
        let node = self.world.netns[ns].node;
        let hash = o.tuple.map_or(o.flow, |(lp, ra, rp)| {
            tuple_hash(Ipv4Addr::UNSPECIFIED, ra, 6, (lp as u32) << 16 | rp as u32)
        });
        self.conn_mut(o).busy[o.side as usize] = true;
        let costs = &self.world.costs;
        let (call, copy) = match op {
            AppOp::Write(n) => (costs.tcp_sendmsg, costs.copy(n as usize)),
            AppOp::Read(n) => (costs.tcp_recvmsg, costs.copy(n as usize)),
            _ => unreachable!("the relay's calls are its process's (run/relay.rs)"),
        };
        let cx = self.run_chain(node, t, hash, Work::Read, Some(o.flow), |_, cx| {
            cx.add(Step::Socket, call);
            cx.add(Step::Copy, copy);
        });
        let done = cx.now();
        self.queue
            .schedule(done, Event::TcpApp { host: h as u32, flow: o.flow, conn: o.conn, side: o.side, op });
    }

    /// A `write()` or `read()` returns: the socket takes or gives the bytes.
    pub(super) fn tcp_app_done(&mut self, t: Instant, h: usize, flow: u32, conn: u32, side: Side, op: AppOp) {
        if matches!(side, Side::ProxyFront | Side::ProxyBack) {
            return self.relay_done(t, h, (flow, conn, side), op);
        }
        let server = side == Side::Server;
        let Some(o) = self.tcp_owner_of(h, flow, conn, side) else { return };
        self.conn_mut(o).busy[side as usize] = false;
        let stream = self.stream_index(flow, conn);
        let kind = self.flows[flow as usize].kind.clone();
        match op {
            AppOp::Write(n) => {
                let s = self.tcp[h].sock(o.sock);
                let free = s.send_capacity() - s.send_queue();
                let n = (n as usize).min(free);
                // The application writes zeros (the bytes do not matter), and a workload
                // socket's buffer holds nothing but zeros from its allocation on: enqueueing
                // the bytes without copying them in leaves the same bytes there.
                let mut left = n;
                while left > 0 {
                    let w = s
                        .send(|buf| {
                            let k = buf.len().min(left);
                            (k, k)
                        })
                        .unwrap_or(0);
                    if w == 0 {
                        break;
                    }
                    left -= w;
                }
                if let Some(obs) = self.obs.flows[flow as usize].tcp.as_mut() {
                    obs.streams[stream].bytes_written += (n - left) as u64;
                }
            }
            AppOp::Accept | AppOp::Dialed | AppOp::DialTimeout(_) | AppOp::Splice => {
                unreachable!("a relay's op")
            }
            AppOp::Read(n) => {
                let s = self.tcp[h].sock(o.sock);
                let mut left = n as usize;
                while left > 0 {
                    let got = s.recv(|b| {
                        let k = b.len().min(left);
                        (k, k)
                    });
                    match got {
                        Ok(0) | Err(_) => break,
                        Ok(k) => left -= k,
                    }
                }
                let read = n as usize - left;
                if let Some(obs) = self.obs.flows[flow as usize].tcp.as_mut() {
                    obs.read(stream, t, read as u64);
                }
                self.obs.flows[flow as usize].payload_bytes += read as u64;
                if let WorkloadKind::TcpRr { request, response }
                | WorkloadKind::TcpCrr { request, response } = kind
                {
                    let want = if server { request } else { response };
                    let c = self.conn_mut(o);
                    c.got[side as usize] += read as u32;
                    if c.got[side as usize] >= want {
                        c.got[side as usize] = 0;
                        if server {
                            // The server answers the whole request.
                            self.tcp_syscall(t, h, o, AppOp::Write(response));
                        } else {
                            let started = c.started;
                            c.in_tx = false;
                            self.obs.rtt(flow, t - started);
                            if matches!(kind, WorkloadKind::TcpCrr { .. }) {
                                self.tcp[h].sock(o.sock).close();
                                self.conn_mut(o).closed = true;
                                self.tcp_poll(t, h, o.sock);
                                if t < self.flows[flow as usize].end {
                                    self.tcp_connect(t, flow);
                                }
                                return self.tcp_apps(t, h);
                            }
                        }
                    }
                }
            }
        }
        self.tcp_poll(t, h, o.sock);
        self.tcp_apps(t, h);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An IPv4 header (20 B, no options) and a TCP header with `flags`, window `window` and
    /// `options`.
    fn segment(flags: u8, window: u16, options: &[u8]) -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2];
        let doff = (20 + options.len()) / 4;
        p.extend_from_slice(&[0x9c, 0x40, 0x00, 0x50, 0, 0, 0, 1, 0, 0, 0, 1]);
        p.extend_from_slice(&[(doff as u8) << 4, flags]);
        p.extend_from_slice(&window.to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, 0]);
        p.extend_from_slice(options);
        let len = p.len() as u16;
        p[2..4].copy_from_slice(&len.to_be_bytes());
        p
    }

    #[test]
    fn window_scale_is_read_from_the_options() {
        // MSS 1460, NOP, window scale 7, SACK permitted, EOL: smoltcp's SYN options.
        let opts = [2, 4, 0x05, 0xb4, 1, 3, 3, 7, 4, 2, 0, 0];
        assert_eq!(window_scale(&opts), Some(7));
        assert_eq!(window_scale(&[2, 4, 0x05, 0xb4]), None);
        // A length running past the options, or below 2, ends the parse.
        assert_eq!(window_scale(&[2, 9, 0x05, 0xb4]), None);
        assert_eq!(window_scale(&[8, 0, 3, 3, 7]), None);
    }

    #[test]
    fn a_sender_stays_one_scale_unit_short_of_the_edge() {
        let mut shift = None;
        // The peer's SYN-ACK announces scale 7: its window field passes unchanged.
        let mut syn = segment(0x12, 65535, &[1, 3, 3, 7]);
        keep_off_the_edge(&mut syn, &mut shift);
        assert_eq!(shift, Some(7));
        assert_eq!(&syn[34..36], &[0xff, 0xff]);
        // After it, every window reaches smoltcp one unit (128 B) smaller; a zero window stays.
        let mut ack = segment(0x10, 57, &[]);
        keep_off_the_edge(&mut ack, &mut shift);
        assert_eq!(&ack[34..36], &[0, 56]);
        let mut zero = segment(0x10, 0, &[]);
        keep_off_the_edge(&mut zero, &mut shift);
        assert_eq!(&zero[34..36], &[0, 0]);
        // Without scaling (shift 0) nothing is rounded, so nothing changes.
        let mut plain = None;
        keep_off_the_edge(&mut segment(0x02, 4096, &[1, 3, 3, 0]), &mut plain);
        let mut ack = segment(0x10, 4096, &[]);
        keep_off_the_edge(&mut ack, &mut plain);
        assert_eq!(u16::from_be_bytes([ack[34], ack[35]]), 4096);
    }
}
