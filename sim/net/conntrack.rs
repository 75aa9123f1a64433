//! Connection tracking (`nf_conntrack`) for UDP and TCP, with the NAT bindings kube-proxy's
//! rules create.
//!
//! An entry holds the connection's original tuple (as the first packet looked) and its reply
//! tuple (as the answer will look after NAT: from the chosen endpoint, to the masquerade
//! address when SNATed). Both tuples index the entry, so a packet finds its connection in
//! either direction with one hash lookup. NAT decisions are made once, for the first packet
//! (`nf_nat_inet_fn` only consults the nat table while the entry is NEW); every later packet is
//! rewritten from the entry.
//!
//! Timeouts follow `nf_conntrack_proto_udp.c`: 30 s while unreplied, refreshed on each packet;
//! once a reply has been seen *and* the flow is still active 2 s after creation, 120 s and
//! ASSURED. A full table (`nf_conntrack_max`) first reaps expired entries, then evicts one
//! unassured entry (`early_drop`); if there is none, the new connection's packet is dropped
//! ("nf_conntrack: table full, dropping packet").
//!
//! TCP entries follow `net/netfilter/nf_conntrack_proto_tcp.c` ([`Conntrack::track_tcp`]):
//! the `tcp_conntracks` state table on the SYN / SYN-ACK / FIN / ACK / RST of each packet in
//! each direction, the `nf_conntrack_tcp_timeout_*` defaults, ASSURED on the first ACK that
//! keeps an answered connection ESTABLISHED, `tcp_new`'s rule for what may open an entry (a
//! SYN, or with `nf_conntrack_tcp_loose = 1` a mid-stream ACK), and a SYN for a closed
//! connection (TIME_WAIT, CLOSE) destroying the old entry so the SYN is tracked as new.
//! Sequence and window checks (`tcp_in_window`) are not modelled: every segment counts as in
//! window; so is the unacknowledged-data timeout (300 s) and the max-retrans one.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::Ipv4Addr;

use crate::time::{Duration, Instant};

/// The transport protocol of a tuple (the IP protocol numbers conntrack tracks by port).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum L4 {
    Udp,
    Tcp,
}

impl L4 {
    /// The IP protocol number (`conntrack -L`'s second column).
    pub fn number(self) -> u8 {
        match self {
            L4::Udp => 17,
            L4::Tcp => 6,
        }
    }

    /// The lowercase name `conntrack -L` prints first.
    pub fn name(self) -> &'static str {
        match self {
            L4::Udp => "udp",
            L4::Tcp => "tcp",
        }
    }
}

/// A packet's 5-tuple as conntrack and the rules see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tuple {
    pub src: Ipv4Addr,
    pub sport: u16,
    pub dst: Ipv4Addr,
    pub dport: u16,
    pub proto: L4,
}

impl Tuple {
    /// The tuple of a packet going the other way (`nf_ct_invert_tuple`).
    pub fn inverse(&self) -> Tuple {
        Tuple { src: self.dst, sport: self.dport, dst: self.src, dport: self.sport, proto: self.proto }
    }
}

/// The TCP flags conntrack reads from a segment (`get_conntrack_index`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpFlags {
    pub syn: bool,
    pub ack: bool,
    pub fin: bool,
    pub rst: bool,
}

impl TcpFlags {
    pub const SYN: TcpFlags = TcpFlags { syn: true, ack: false, fin: false, rst: false };
    pub const SYN_ACK: TcpFlags = TcpFlags { syn: true, ack: true, fin: false, rst: false };
    pub const ACK: TcpFlags = TcpFlags { syn: false, ack: true, fin: false, rst: false };
    pub const FIN_ACK: TcpFlags = TcpFlags { syn: false, ack: true, fin: true, rst: false };
    pub const RST: TcpFlags = TcpFlags { syn: false, ack: false, fin: false, rst: true };

    /// `get_conntrack_index`: RST first, then SYN (with or without ACK), FIN, ACK.
    fn index(self) -> usize {
        if self.rst {
            RST_SET
        } else if self.syn {
            if self.ack {
                SYNACK_SET
            } else {
                SYN_SET
            }
        } else if self.fin {
            FIN_SET
        } else if self.ack {
            ACK_SET
        } else {
            NONE_SET
        }
    }
}

/// `enum tcp_bit_set`.
const SYN_SET: usize = 0;
const SYNACK_SET: usize = 1;
const FIN_SET: usize = 2;
const ACK_SET: usize = 3;
const RST_SET: usize = 4;
const NONE_SET: usize = 5;

/// `enum tcp_conntrack`, the states `conntrack -L` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TcpState {
    None,
    SynSent,
    SynRecv,
    Established,
    FinWait,
    CloseWait,
    LastAck,
    TimeWait,
    Close,
    /// A SYN seen in the reply direction while SYN_SENT (simultaneous open).
    SynSent2,
}

impl TcpState {
    /// `tcp_conntrack_names`.
    pub fn name(self) -> &'static str {
        match self {
            TcpState::None => "NONE",
            TcpState::SynSent => "SYN_SENT",
            TcpState::SynRecv => "SYN_RECV",
            TcpState::Established => "ESTABLISHED",
            TcpState::FinWait => "FIN_WAIT",
            TcpState::CloseWait => "CLOSE_WAIT",
            TcpState::LastAck => "LAST_ACK",
            TcpState::TimeWait => "TIME_WAIT",
            TcpState::Close => "CLOSE",
            TcpState::SynSent2 => "SYN_SENT2",
        }
    }

    /// `tcp_timeouts[]`, the `nf_conntrack_tcp_timeout_*` sysctl defaults.
    pub fn timeout(self) -> Duration {
        Duration::from_secs(match self {
            TcpState::None => 0,
            TcpState::SynSent | TcpState::SynSent2 => 120,
            TcpState::SynRecv => 60,
            TcpState::Established => 432_000,
            TcpState::FinWait => 120,
            TcpState::CloseWait => 60,
            TcpState::LastAck => 30,
            TcpState::TimeWait => 120,
            TcpState::Close => 10,
        })
    }

    /// The state `tcp_new` gives a connection whose first segment has `flags`: SYN_SENT for a
    /// SYN, ESTABLISHED for an ACK picked up mid-stream (`nf_conntrack_tcp_loose`, default 1);
    /// `None` when the segment cannot open one (SYN-ACK, FIN, RST, no flag): conntrack marks it
    /// INVALID and creates nothing.
    pub fn opening(flags: TcpFlags) -> Option<TcpState> {
        match next(Direction::Original, flags.index(), TcpState::None) {
            Next::To(s) => Some(s),
            Next::Ignore | Next::Invalid => None,
        }
    }
}

/// A cell of `tcp_conntracks`: a state, `sIG` (ignore: accepted, nothing changes) or `sIV`
/// (invalid).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Next {
    To(TcpState),
    Ignore,
    Invalid,
}

/// `tcp_conntracks[dir][index][old]` of nf_conntrack_proto_tcp.c (Linux 6.x).
fn next(dir: Direction, index: usize, old: TcpState) -> Next {
    use Next::{Ignore as IG, Invalid as IV};
    use TcpState::*;
    let (ss, sr, es, fw, cw, la, tw, cl, s2) = (
        Next::To(SynSent),
        Next::To(SynRecv),
        Next::To(Established),
        Next::To(FinWait),
        Next::To(CloseWait),
        Next::To(LastAck),
        Next::To(TimeWait),
        Next::To(Close),
        Next::To(SynSent2),
    );
    //        sNO, sSS, sSR, sES, sFW, sCW, sLA, sTW, sCL, sS2
    const N: usize = 10;
    let original: [[Next; N]; 6] = [
        /* syn    */ [ss, ss, IG, IG, IG, IG, IG, ss, ss, s2],
        /* synack */ [IV, IV, sr, IV, IV, IV, IV, IV, IV, sr],
        /* fin    */ [IV, IV, fw, fw, la, la, la, tw, cl, IV],
        /* ack    */ [es, IV, es, es, cw, cw, tw, tw, cl, IV],
        /* rst    */ [IV, cl, cl, cl, cl, cl, cl, cl, cl, cl],
        /* none   */ [IV; N],
    ];
    let reply: [[Next; N]; 6] = [
        /* syn    */ [IV, s2, IV, IV, IV, IV, IV, ss, IV, s2],
        /* synack */ [IV, sr, IG, IG, IG, IG, IG, IG, IG, sr],
        /* fin    */ [IV, IV, fw, fw, la, la, la, tw, cl, IV],
        /* ack    */ [IV, IG, sr, es, cw, cw, tw, tw, cl, IG],
        /* rst    */ [IV, cl, cl, cl, cl, cl, cl, cl, cl, cl],
        /* none   */ [IV; N],
    ];
    let table = if dir == Direction::Original { &original } else { &reply };
    table[index][old as usize]
}

/// The TCP part of an entry (`struct ip_ct_tcp`, without the window tracking).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpCt {
    pub state: TcpState,
    /// The last in-window segment's direction and flag index (`last_dir`, `last_index`).
    last: Option<(Direction, usize)>,
    /// A FIN started the close (`IP_CT_TCP_FLAG_CLOSE_INIT`, in either direction).
    close_init: bool,
}

/// What [`Conntrack::track_tcp`] made of a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpVerdict {
    /// Tracked (state and timeout updated, or an ignored segment): NAT it from the entry.
    Accept,
    /// The entry was deleted after this segment (a RST as the only answer): NAT it from the
    /// entry as it was.
    Killed,
    /// `sIV`: conntrack marks the segment INVALID (`-NF_ACCEPT`): no state change, no NAT.
    Invalid,
    /// A SYN reopening a closed or aborted connection: the entry was deleted
    /// (`nf_ct_kill` + `-NF_REPEAT`); look the SYN up again as a new connection.
    Reopen,
}

/// `nf_conntrack_udp_timeout`.
pub const UDP_TIMEOUT: Duration = Duration::from_secs(30);
/// `nf_conntrack_udp_timeout_stream`.
pub const UDP_TIMEOUT_STREAM: Duration = Duration::from_secs(120);
/// `nf_conntrack_tcp_timeout_unacknowledged`: here only the cap on an ESTABLISHED entry that
/// has seen no reply (a connection picked up mid-stream).
pub const TCP_TIMEOUT_UNACK: Duration = Duration::from_secs(300);
/// A replied flow still active this long after creation gets the stream timeout.
pub const STREAM_AFTER: Duration = Duration::from_secs(2);
/// kube-proxy's `conntrack.min` (131072) and `maxPerCore` (32768): it sets
/// `nf_conntrack_max = max(32768 * cores, 131072)` (cmd/kube-proxy/app/server_linux.go).
pub fn kube_proxy_max(cores: u32) -> usize {
    (32768 * cores as usize).max(131072)
}

/// Index of an entry in the table's slab.
pub type EntryId = u32;

/// Which way a packet travels relative to its connection's first packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Original,
    Reply,
}

/// A destination NAT binding: which Service endpoint the connection was sent to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dnat {
    pub service: usize,
    pub port: usize,
    pub endpoint: usize,
    /// The address and port the packet was sent to before translation (the VIP).
    pub from: (Ipv4Addr, u16),
    pub to: (Ipv4Addr, u16),
}

#[derive(Clone, Debug)]
pub struct Entry {
    pub original: Tuple,
    pub reply: Tuple,
    pub dnat: Option<Dnat>,
    /// The source was masqueraded to `reply.dst:reply.dport`.
    pub snat: bool,
    /// The rules marked the connection for masquerade (0x4000); POSTROUTING has not run yet.
    pub masq_pending: bool,
    pub created: Instant,
    /// When the entry went into the hash table (`__nf_conntrack_confirm`, at the end of
    /// POSTROUTING or INPUT for the packet that created it): before then no other packet sees
    /// it, and NAT on another core can pick its reply tuple ([`Conntrack::tuple_taken`]).
    /// `None`: never confirmed (its packet left the namespace some other way); it counts as
    /// confirmed at `created`.
    pub confirmed: Option<Instant>,
    /// When the reply tuple took its last value: `created`, or when MASQUERADE chose the
    /// port ([`Conntrack::set_snat`]).
    pub reply_since: Instant,
    pub expires: Instant,
    pub seen_reply: bool,
    pub assured: bool,
    /// TCP entries: the connection's state (`None` for UDP).
    pub tcp: Option<TcpCt>,
}

#[derive(Debug, PartialEq, Eq)]
pub struct TableFull;

/// What [`Conntrack::tuple_taken`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Taken {
    Free,
    /// Held by an entry in the hash table.
    Confirmed,
    /// Held by an entry whose packet is still on its way to confirmation on another core:
    /// not seen, so picked, and the later confirmation fails.
    Unconfirmed,
}

/// One network namespace's conntrack table.
#[derive(Clone, Debug)]
pub struct Conntrack {
    slab: Vec<Option<Entry>>,
    free: Vec<EntryId>,
    index: HashMap<Tuple, (EntryId, Direction), BuildHasherDefault<TupleHasher>>,
    /// Live entries (expired ones included until reaped, as in the kernel until GC runs).
    live: usize,
    /// `nf_conntrack_max`.
    pub max: usize,
    /// Entries created, evicted early and refused since the start.
    pub created: u64,
    pub early_dropped: u64,
    pub refused: u64,
    /// `conntrack -S`'s `insert`: entries confirmed (a bridged connection's, never
    /// confirmed, is not counted).
    pub inserted: u64,
    /// `conntrack -S`'s `insert_failed`: new connections dropped at confirmation because
    /// another entry already held their reply tuple.
    pub insert_failed: u64,
    /// Largest number of live entries seen.
    pub peak: usize,
}

impl Conntrack {
    pub fn new(max: usize) -> Conntrack {
        Conntrack {
            slab: Vec::new(),
            free: Vec::new(),
            index: HashMap::default(),
            live: 0,
            max,
            created: 0,
            early_dropped: 0,
            refused: 0,
            inserted: 0,
            insert_failed: 0,
            peak: 0,
        }
    }

    /// Live entries (expired ones not yet reaped included, as in the kernel until GC runs).
    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Ids of the live entries, in slab order.
    fn ids(&self) -> impl Iterator<Item = EntryId> + '_ {
        self.slab.iter().enumerate().filter(|(_, e)| e.is_some()).map(|(i, _)| i as EntryId)
    }

    pub fn get(&self, id: EntryId) -> &Entry {
        self.slab[id as usize].as_ref().expect("live entry")
    }

    /// The entry `id`, if it is still live (a flood copy may carry the id of an entry another
    /// copy's DROP destroyed).
    pub fn try_get(&self, id: EntryId) -> Option<&Entry> {
        self.slab.get(id as usize).and_then(Option::as_ref)
    }

    /// The connection `t` belongs to, and in which direction. An expired entry is removed
    /// and not returned (the kernel treats the packet as NEW).
    pub fn lookup(&mut self, t: &Tuple, now: Instant) -> Option<(EntryId, Direction)> {
        let &(id, dir) = self.index.get(t)?;
        if self.get(id).expires <= now {
            self.remove(id);
            return None;
        }
        Some((id, dir))
    }

    /// Refreshes the entry's timeout for a packet seen in `dir` at `now`.
    pub fn refresh(&mut self, id: EntryId, dir: Direction, now: Instant) {
        let e = self.slab[id as usize].as_mut().expect("live entry");
        if dir == Direction::Reply {
            e.seen_reply = true;
        }
        let timeout = if e.seen_reply {
            if now > e.created + STREAM_AFTER {
                e.assured = true;
                UDP_TIMEOUT_STREAM
            } else {
                UDP_TIMEOUT
            }
        } else {
            UDP_TIMEOUT
        };
        e.expires = now + timeout;
    }

    /// A TCP segment with `flags` seen in `dir` at `now` on entry `id`, as `tcp_packet` handles
    /// it after the lookup (call it on a new entry right after [`Conntrack::insert`], with the
    /// first segment's flags, as `tcp_new` + `tcp_packet` do). Updates the state, the timeout
    /// (`tcp_timeouts[new state]`), ASSURED and SEEN_REPLY; see [`TcpVerdict`] for what the
    /// caller does with the segment.
    ///
    /// From nf_conntrack_proto_tcp.c: a new state SYN_SENT from TIME_WAIT or CLOSE, once a FIN
    /// started the close or the last segment this way was a RST, deletes the entry
    /// ([`TcpVerdict::Reopen`]); `sIG` keeps the state and the timeout; a SYN retransmitted in
    /// SYN_SENT before any answer does not renew the timeout ("do not renew entry stuck in tcp
    /// SYN_SENT state"); with no reply seen yet a RST deletes the entry; ASSURED is set when a
    /// replied connection goes from SYN_RECV or ESTABLISHED to ESTABLISHED. IPS_SEEN_REPLY is
    /// set after the state machine ran (`nf_conntrack_in`), not for an invalid segment.
    pub fn track_tcp(&mut self, id: EntryId, dir: Direction, flags: TcpFlags, now: Instant) -> TcpVerdict {
        let e = self.slab[id as usize].as_mut().expect("live entry");
        let Some(tcp) = e.tcp.as_mut() else { panic!("track_tcp on a UDP entry") };
        let index = flags.index();
        let old = tcp.state;
        let mut next = next(dir, index, old);
        if next == Next::To(TcpState::SynSent) && old >= TcpState::TimeWait {
            if tcp.close_init || tcp.last == Some((dir, RST_SET)) {
                // "Attempt to reopen a closed/aborted connection. Delete this connection and
                // look up again."
                self.remove(id);
                return TcpVerdict::Reopen;
            }
            next = Next::Ignore;
        }
        let new = match next {
            Next::Invalid => return TcpVerdict::Invalid,
            Next::Ignore => {
                tcp.last = Some((dir, index));
                if dir == Direction::Reply {
                    e.seen_reply = true;
                }
                return TcpVerdict::Accept;
            }
            Next::To(s) => s,
        };
        tcp.last = Some((dir, index));
        tcp.state = new;
        if old != new && new == TcpState::FinWait {
            tcp.close_init = true;
        }
        if !e.seen_reply {
            if flags.rst {
                self.remove(id);
                return TcpVerdict::Killed;
            }
            if !(index == SYN_SET && old == TcpState::SynSent) {
                // "ESTABLISHED without SEEN_REPLY, i.e. mid-connection pickup with loose=1.
                // Avoid large ESTABLISHED timeout": capped at the unacknowledged timeout.
                e.expires = now + new.timeout().min(TCP_TIMEOUT_UNACK);
            }
        } else {
            if !e.assured
                && matches!(old, TcpState::SynRecv | TcpState::Established)
                && new == TcpState::Established
            {
                e.assured = true;
            }
            e.expires = now + new.timeout();
        }
        if dir == Direction::Reply {
            e.seen_reply = true;
        }
        TcpVerdict::Accept
    }

    /// Creates the entry for a new connection. When the table is full, expired entries are
    /// reaped and then one unassured entry is evicted; failing both, the insert is refused.
    pub fn insert(
        &mut self,
        original: Tuple,
        reply: Tuple,
        dnat: Option<Dnat>,
        masq_pending: bool,
        now: Instant,
    ) -> Result<EntryId, TableFull> {
        if self.len() >= self.max {
            self.reap(now);
        }
        if self.len() >= self.max && !self.early_drop() {
            self.refused += 1;
            return Err(TableFull);
        }
        let entry = Entry {
            original,
            reply,
            dnat,
            snat: false,
            masq_pending,
            created: now,
            confirmed: None,
            reply_since: now,
            expires: now + UDP_TIMEOUT,
            seen_reply: false,
            assured: false,
            tcp: (original.proto == L4::Tcp).then_some(TcpCt {
                state: TcpState::None,
                last: None,
                close_init: false,
            }),
        };
        let id = match self.free.pop() {
            Some(id) => {
                self.slab[id as usize] = Some(entry);
                id
            }
            None => {
                self.slab.push(Some(entry));
                (self.slab.len() - 1) as EntryId
            }
        };
        self.index.insert(original, (id, Direction::Original));
        self.index.insert(reply, (id, Direction::Reply));
        self.live += 1;
        self.created += 1;
        self.peak = self.peak.max(self.len());
        Ok(id)
    }

    /// POSTROUTING masqueraded the connection at `at`: its replies now come back to `to`.
    pub fn set_snat(&mut self, id: EntryId, to: (Ipv4Addr, u16), at: Instant) {
        let e = self.slab[id as usize].as_mut().expect("live entry");
        let old = e.reply;
        e.reply.dst = to.0;
        e.reply.dport = to.1;
        e.reply_since = at;
        e.snat = true;
        e.masq_pending = false;
        let new = e.reply;
        self.index.remove(&old);
        self.index.insert(new, (id, Direction::Reply));
    }

    /// Whether a tuple is already some connection's reply tuple (a masquerade port clash),
    /// confirmed or not.
    pub fn reply_taken(&self, t: &Tuple) -> bool {
        self.index.contains_key(t)
    }

    /// `nf_conntrack_tuple_taken` at `at` for connection `own`: whether another entry holds
    /// `t` in the hash table. An expired one is collected and does not count
    /// (`nf_ct_gc_expired`); one that had its tuple but was not yet confirmed at `at` is
    /// invisible ([`Taken::Unconfirmed`]): the table only holds confirmed entries. One that
    /// took the tuple after `at` (a longer chain, started earlier, processed first) counts as
    /// taken: in Linux it would have seen this connection's and taken another.
    pub fn tuple_taken(&mut self, t: &Tuple, at: Instant, own: EntryId) -> Taken {
        let Some(&(id, _)) = self.index.get(t) else { return Taken::Free };
        if id == own {
            return Taken::Free;
        }
        let e = self.get(id);
        if e.expires <= at {
            self.remove(id);
            return Taken::Free;
        }
        match e.confirmed {
            Some(c) if c > at && e.reply_since <= at => Taken::Unconfirmed,
            _ => Taken::Confirmed,
        }
    }

    /// `__nf_conntrack_confirm` at `at`: the entry goes into the hash table.
    pub fn confirm(&mut self, id: EntryId, at: Instant) {
        if let Some(e) = self.slab[id as usize].as_mut().filter(|e| e.confirmed.is_none()) {
            e.confirmed = Some(at);
            self.inserted += 1;
        }
    }

    /// Removes every entry expired at `now` (the kernel's GC pass; run only when the table is
    /// full, so a full scan is rare).
    fn reap(&mut self, now: Instant) {
        let expired: Vec<EntryId> = self.ids().filter(|&id| self.get(id).expires <= now).collect();
        for id in expired {
            self.remove(id);
        }
    }

    /// Deletes every entry `stale` selects (`conntrack -D` by kube-proxy).
    pub fn remove_where(&mut self, stale: impl Fn(&Entry) -> bool) -> usize {
        let ids: Vec<EntryId> = self.ids().filter(|&id| stale(self.get(id))).collect();
        ids.iter().for_each(|&id| {
            self.remove(id);
        });
        ids.len()
    }

    /// Evicts the unassured entry closest to expiry, if any.
    fn early_drop(&mut self) -> bool {
        let victim =
            self.ids().filter(|&id| !self.get(id).assured).min_by_key(|&id| (self.get(id).expires, id));
        match victim {
            Some(id) => {
                self.remove(id);
                self.early_dropped += 1;
                true
            }
            None => false,
        }
    }

    pub fn remove(&mut self, id: EntryId) -> Option<Entry> {
        let e = self.slab[id as usize].take()?;
        self.index.remove(&e.original);
        self.index.remove(&e.reply);
        self.live -= 1;
        self.free.push(id);
        Some(e)
    }

    /// `conntrack -L` lines for the entries live at `now`, oldest first, each with its seconds
    /// left before it expires (the third column, as `ctnetlink_dump_timeout` prints it).
    pub fn list(&self, now: Instant) -> Vec<String> {
        let mut ids: Vec<EntryId> = self.ids().filter(|&id| self.get(id).expires > now).collect();
        ids.sort_by_key(|&id| (self.get(id).created, id));
        ids.into_iter()
            .map(|id| {
                let e = self.get(id);
                let t =
                    |t: &Tuple| format!("src={} dst={} sport={} dport={}", t.src, t.dst, t.sport, t.dport);
                let unreplied = if e.seen_reply { "" } else { " [UNREPLIED]" };
                let assured = if e.assured { " [ASSURED]" } else { "" };
                let left = (e.expires - now).as_nanos() / 1_000_000_000;
                // conntrack-tools' "%-8s %u " for the protocol, then the timeout, then for TCP
                // the state (`ctnetlink_dump_protoinfo`).
                let proto = e.original.proto;
                let state = e.tcp.map_or(String::new(), |c| format!("{} ", c.state.name()));
                format!(
                    "{:<8} {} {left} {state}{}{unreplied} {}{assured}",
                    proto.name(),
                    proto.number(),
                    t(&e.original),
                    t(&e.reply)
                )
            })
            .collect()
    }
}

/// The connection table's hash: tuples are four small integers, and the table is only ever
/// looked up (never iterated for output), so a fast multiplicative hash (FxHash's) serves.
#[derive(Default)]
pub struct TupleHasher(u64);

impl Hasher for TupleHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(b as u64);
        }
    }
    fn write_u8(&mut self, n: u8) {
        self.write_u64(n as u64);
    }
    fn write_u16(&mut self, n: u16) {
        self.write_u64(n as u64);
    }
    fn write_u32(&mut self, n: u32) {
        self.write_u64(n as u64);
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn conn(sport: u16) -> (Tuple, Tuple) {
        let o = Tuple { src: ip("10.244.0.2"), sport, dst: ip("10.96.0.10"), dport: 53, proto: L4::Udp };
        let r =
            Tuple { src: ip("10.244.1.5"), sport: 53, dst: ip("10.244.0.2"), dport: sport, proto: L4::Udp };
        (o, r)
    }

    fn tcp_conn(sport: u16) -> (Tuple, Tuple) {
        let (o, r) = conn(sport);
        (Tuple { proto: L4::Tcp, dport: 80, ..o }, Tuple { proto: L4::Tcp, sport: 8080, ..r })
    }

    fn ms(n: u64) -> Instant {
        Instant::ZERO + Duration::from_millis(n)
    }

    /// Runs `steps` (direction, flags, expected state) on entry `id`, one millisecond apart
    /// from `from` ms, checking each verdict is Accept and each state and timeout.
    fn run(ct: &mut Conntrack, id: EntryId, from: u64, steps: &[(Direction, TcpFlags, TcpState)]) {
        for (i, &(dir, flags, state)) in steps.iter().enumerate() {
            let now = ms(from + i as u64);
            assert_eq!(ct.track_tcp(id, dir, flags, now), TcpVerdict::Accept, "step {i}: {dir:?} {flags:?}");
            let e = ct.get(id);
            assert_eq!(e.tcp.unwrap().state, state, "step {i}: {dir:?} {flags:?}");
        }
    }

    use Direction::{Original as O, Reply as R};

    #[test]
    fn tcp_handshake_data_and_fin_close() {
        let mut ct = Conntrack::new(10);
        let (o, r) = tcp_conn(40000);
        assert_eq!(TcpState::opening(TcpFlags::SYN), Some(TcpState::SynSent));
        let id = ct.insert(o, r, None, false, ms(0)).unwrap();
        run(&mut ct, id, 0, &[(O, TcpFlags::SYN, TcpState::SynSent)]);
        assert_eq!(ct.get(id).expires, ms(0) + Duration::from_secs(120), "syn_sent 120 s");
        assert_eq!(
            ct.list(ms(0)),
            vec![
                "tcp      6 120 SYN_SENT src=10.244.0.2 dst=10.96.0.10 sport=40000 dport=80 [UNREPLIED] \
                 src=10.244.1.5 dst=10.244.0.2 sport=8080 dport=40000"
            ]
        );
        run(&mut ct, id, 1, &[(R, TcpFlags::SYN_ACK, TcpState::SynRecv)]);
        assert_eq!(ct.get(id).expires, ms(1) + Duration::from_secs(60), "syn_recv 60 s");
        assert!(!ct.get(id).assured && ct.get(id).seen_reply);
        run(&mut ct, id, 2, &[(O, TcpFlags::ACK, TcpState::Established)]);
        assert!(ct.get(id).assured, "the handshake's last ACK assures the connection");
        assert_eq!(ct.get(id).expires, ms(2) + Duration::from_secs(432_000), "established 5 days");
        assert_eq!(
            ct.list(ms(2) + Duration::from_secs(1)),
            vec![
                "tcp      6 431999 ESTABLISHED src=10.244.0.2 dst=10.96.0.10 sport=40000 dport=80 \
                 src=10.244.1.5 dst=10.244.0.2 sport=8080 dport=40000 [ASSURED]"
            ]
        );
        // Data both ways, then the client closes first.
        run(
            &mut ct,
            id,
            3,
            &[
                (O, TcpFlags::ACK, TcpState::Established),
                (R, TcpFlags::ACK, TcpState::Established),
                (O, TcpFlags::FIN_ACK, TcpState::FinWait),
                (R, TcpFlags::ACK, TcpState::CloseWait),
                (R, TcpFlags::FIN_ACK, TcpState::LastAck),
            ],
        );
        assert_eq!(ct.get(id).expires, ms(7) + Duration::from_secs(30), "last_ack 30 s");
        run(&mut ct, id, 8, &[(O, TcpFlags::ACK, TcpState::TimeWait)]);
        assert_eq!(ct.get(id).expires, ms(8) + Duration::from_secs(120), "time_wait 120 s");
        assert!(ct.lookup(&o, ms(8) + Duration::from_secs(119)).is_some());
        assert!(ct.lookup(&o, ms(8) + Duration::from_secs(120)).is_none(), "gone after TIME_WAIT");
    }

    #[test]
    fn tcp_rst_closes_and_a_lone_rst_answer_kills() {
        let mut ct = Conntrack::new(10);
        let (o, r) = tcp_conn(40000);
        let id = ct.insert(o, r, None, false, ms(0)).unwrap();
        run(
            &mut ct,
            id,
            0,
            &[
                (O, TcpFlags::SYN, TcpState::SynSent),
                (R, TcpFlags::SYN_ACK, TcpState::SynRecv),
                (O, TcpFlags::ACK, TcpState::Established),
                (R, TcpFlags::RST, TcpState::Close),
            ],
        );
        assert_eq!(ct.get(id).expires, ms(3) + Duration::from_secs(10), "close 10 s");
        // A SYN answered only by a RST (port closed): the entry goes at once.
        let (o2, r2) = tcp_conn(40001);
        let id2 = ct.insert(o2, r2, None, false, ms(10)).unwrap();
        run(&mut ct, id2, 10, &[(O, TcpFlags::SYN, TcpState::SynSent)]);
        assert_eq!(ct.track_tcp(id2, R, TcpFlags::RST, ms(11)), TcpVerdict::Killed);
        assert!(ct.lookup(&o2, ms(11)).is_none());
    }

    #[test]
    fn tcp_syn_retransmission_does_not_renew_and_stray_segments_are_invalid() {
        let mut ct = Conntrack::new(10);
        let (o, r) = tcp_conn(40000);
        let id = ct.insert(o, r, None, false, ms(0)).unwrap();
        run(&mut ct, id, 0, &[(O, TcpFlags::SYN, TcpState::SynSent)]);
        run(&mut ct, id, 3000, &[(O, TcpFlags::SYN, TcpState::SynSent)]);
        assert_eq!(ct.get(id).expires, ms(0) + Duration::from_secs(120), "retransmitted SYN: not renewed");
        // An ACK before any SYN-ACK is invalid (sSS -> sIV): nothing changes.
        assert_eq!(ct.track_tcp(id, O, TcpFlags::ACK, ms(3001)), TcpVerdict::Invalid);
        assert_eq!(ct.get(id).tcp.unwrap().state, TcpState::SynSent);
        // What may open an entry (tcp_new): a SYN, or an ACK picked up mid-stream.
        assert_eq!(TcpState::opening(TcpFlags::ACK), Some(TcpState::Established));
        for f in [TcpFlags::SYN_ACK, TcpFlags::FIN_ACK, TcpFlags::RST, TcpFlags::default()] {
            assert_eq!(TcpState::opening(f), None, "{f:?}");
        }
    }

    #[test]
    fn tcp_loose_pickup_is_assured_by_its_first_answer() {
        let mut ct = Conntrack::new(10);
        let (o, r) = tcp_conn(40000);
        let id = ct.insert(o, r, None, false, ms(0)).unwrap();
        run(&mut ct, id, 0, &[(O, TcpFlags::ACK, TcpState::Established)]);
        assert_eq!(ct.get(id).expires, ms(0) + TCP_TIMEOUT_UNACK, "unanswered pickup: 300 s, not 5 days");
        assert!(!ct.get(id).assured);
        run(&mut ct, id, 1, &[(R, TcpFlags::ACK, TcpState::Established)]);
        assert!(!ct.get(id).assured, "SEEN_REPLY is set after the state machine ran");
        run(&mut ct, id, 2, &[(O, TcpFlags::ACK, TcpState::Established)]);
        assert!(ct.get(id).assured);
        assert_eq!(ct.get(id).expires, ms(2) + Duration::from_secs(432_000));
    }

    #[test]
    fn tcp_syn_in_time_wait_reopens() {
        let mut ct = Conntrack::new(10);
        let (o, r) = tcp_conn(40000);
        let id = ct.insert(o, r, None, false, ms(0)).unwrap();
        run(
            &mut ct,
            id,
            0,
            &[
                (O, TcpFlags::SYN, TcpState::SynSent),
                (R, TcpFlags::SYN_ACK, TcpState::SynRecv),
                (O, TcpFlags::ACK, TcpState::Established),
                (R, TcpFlags::FIN_ACK, TcpState::FinWait),
                (O, TcpFlags::FIN_ACK, TcpState::LastAck),
                (R, TcpFlags::ACK, TcpState::TimeWait),
            ],
        );
        // The client reuses its port for a new connection while the entry is in TIME_WAIT.
        assert_eq!(ct.track_tcp(id, O, TcpFlags::SYN, ms(10)), TcpVerdict::Reopen);
        assert!(ct.lookup(&o, ms(10)).is_none(), "the old entry is destroyed");
        let id2 = ct.insert(o, r, None, false, ms(10)).unwrap();
        run(&mut ct, id2, 10, &[(O, TcpFlags::SYN, TcpState::SynSent)]);
        assert!(!ct.get(id2).assured && !ct.get(id2).seen_reply, "tracked as new");
        // A SYN for a connection reset from the other side is only ignored (no reopen).
        let (o3, r3) = tcp_conn(40003);
        let id3 = ct.insert(o3, r3, None, false, ms(20)).unwrap();
        run(
            &mut ct,
            id3,
            20,
            &[
                (O, TcpFlags::SYN, TcpState::SynSent),
                (R, TcpFlags::SYN_ACK, TcpState::SynRecv),
                (O, TcpFlags::ACK, TcpState::Established),
                (R, TcpFlags::RST, TcpState::Close),
                (O, TcpFlags::SYN, TcpState::Close),
            ],
        );
        // ... but one after its own RST reopens.
        run(&mut ct, id3, 30, &[(O, TcpFlags::RST, TcpState::Close)]);
        assert_eq!(ct.track_tcp(id3, O, TcpFlags::SYN, ms(31)), TcpVerdict::Reopen);
    }

    fn at(s: u64) -> Instant {
        Instant::ZERO + Duration::from_secs(s)
    }

    #[test]
    fn both_directions_find_the_entry() {
        let mut ct = Conntrack::new(10);
        let (o, r) = conn(40000);
        let id = ct.insert(o, r, None, false, at(0)).unwrap();
        assert_eq!(ct.lookup(&o, at(1)), Some((id, Direction::Original)));
        assert_eq!(ct.lookup(&r, at(1)), Some((id, Direction::Reply)));
        assert_eq!(
            ct.list(at(1)),
            vec![
                "udp      17 29 src=10.244.0.2 dst=10.96.0.10 sport=40000 dport=53 [UNREPLIED] src=10.244.1.5 \
             dst=10.244.0.2 sport=53 dport=40000"
            ]
        );
    }

    #[test]
    fn unreplied_expires_after_30s_replied_stream_after_120s() {
        let mut ct = Conntrack::new(10);
        let (o, r) = conn(40000);
        let id = ct.insert(o, r, None, false, at(0)).unwrap();
        assert!(ct.lookup(&o, at(29)).is_some());
        assert!(ct.lookup(&o, at(30)).is_none(), "30 s unreplied timeout");
        let id2 = ct.insert(o, r, None, false, at(40)).unwrap();
        assert_eq!(id, id2, "slot reused");
        ct.refresh(id2, Direction::Reply, at(41));
        assert!(!ct.get(id2).assured, "a reply within 2 s keeps the 30 s timeout");
        assert!(ct.lookup(&o, at(71)).is_none());
        let id3 = ct.insert(o, r, None, false, at(100)).unwrap();
        ct.refresh(id3, Direction::Reply, at(101));
        ct.refresh(id3, Direction::Original, at(103));
        assert!(ct.get(id3).assured);
        assert!(ct.lookup(&o, at(222)).is_some());
        assert!(ct.lookup(&o, at(223)).is_none());
    }

    #[test]
    fn full_table_evicts_unassured_then_refuses() {
        let mut ct = Conntrack::new(2);
        let (a, ar) = conn(1);
        let (b, br) = conn(2);
        let (c, cr) = conn(3);
        let ia = ct.insert(a, ar, None, false, at(0)).unwrap();
        let ib = ct.insert(b, br, None, false, at(0)).unwrap();
        for id in [ia, ib] {
            ct.refresh(id, Direction::Reply, at(1));
            ct.refresh(id, Direction::Original, at(3));
        }
        assert_eq!(ct.insert(c, cr, None, false, at(4)), Err(TableFull));
        assert_eq!(ct.refused, 1);
        // Once one is unassured again (a fresh entry), it is evicted for the newcomer.
        let mut ct = Conntrack::new(2);
        ct.insert(a, ar, None, false, at(0)).unwrap();
        ct.insert(b, br, None, false, at(1)).unwrap();
        ct.insert(c, cr, None, false, at(2)).unwrap();
        assert_eq!(ct.early_dropped, 1);
        assert!(ct.lookup(&a, at(2)).is_none(), "the entry closest to expiry went");
        assert!(ct.lookup(&b, at(2)).is_some());
        // Expired entries are reaped before anything is evicted.
        let mut ct = Conntrack::new(1);
        ct.insert(a, ar, None, false, at(0)).unwrap();
        ct.insert(b, br, None, false, at(31)).unwrap();
        assert_eq!(ct.early_dropped, 0);
    }

    #[test]
    fn snat_moves_the_reply_tuple() {
        let mut ct = Conntrack::new(10);
        let (o, r) = conn(40000);
        let id = ct.insert(o, r, None, true, at(0)).unwrap();
        ct.set_snat(id, (ip("192.168.0.1"), 61000), at(0));
        assert!(ct.lookup(&r, at(0)).is_none());
        let masq = Tuple { dst: ip("192.168.0.1"), dport: 61000, ..r };
        assert_eq!(ct.lookup(&masq, at(0)), Some((id, Direction::Reply)));
        assert!(ct.get(id).snat && !ct.get(id).masq_pending);
    }
}
