//! Connection tracking (`nf_conntrack`) for UDP, with the NAT bindings kube-proxy's rules create.
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

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::Ipv4Addr;

use crate::time::{Duration, Instant};

/// A connection's first packet as the rules see it (UDP).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tuple {
    pub src: Ipv4Addr,
    pub sport: u16,
    pub dst: Ipv4Addr,
    pub dport: u16,
}

/// `nf_conntrack_udp_timeout`.
pub const UDP_TIMEOUT: Duration = Duration::from_secs(30);
/// `nf_conntrack_udp_timeout_stream`.
pub const UDP_TIMEOUT_STREAM: Duration = Duration::from_secs(120);
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
    pub expires: Instant,
    pub seen_reply: bool,
    pub assured: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub struct TableFull;

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
            expires: now + UDP_TIMEOUT,
            seen_reply: false,
            assured: false,
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

    /// POSTROUTING masqueraded the connection: its replies now come back to `to`.
    pub fn set_snat(&mut self, id: EntryId, to: (Ipv4Addr, u16)) {
        let e = self.slab[id as usize].as_mut().expect("live entry");
        let old = e.reply;
        e.reply.dst = to.0;
        e.reply.dport = to.1;
        e.snat = true;
        e.masq_pending = false;
        let new = e.reply;
        self.index.remove(&old);
        self.index.insert(new, (id, Direction::Reply));
    }

    /// Whether a tuple is already some connection's reply tuple (a masquerade port clash).
    pub fn reply_taken(&self, t: &Tuple) -> bool {
        self.index.contains_key(t)
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
                format!("udp      17 {left} {}{unreplied} {}{assured}", t(&e.original), t(&e.reply))
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
        let o = Tuple { src: ip("10.244.0.2"), sport, dst: ip("10.96.0.10"), dport: 53 };
        let r = Tuple { src: ip("10.244.1.5"), sport: 53, dst: ip("10.244.0.2"), dport: sport };
        (o, r)
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
        ct.set_snat(id, (ip("192.168.0.1"), 61000));
        assert!(ct.lookup(&r, at(0)).is_none());
        let masq = Tuple { dst: ip("192.168.0.1"), dport: 61000, ..r };
        assert_eq!(ct.lookup(&masq, at(0)), Some((id, Direction::Reply)));
        assert!(ct.get(id).snat && !ct.get(id).masq_pending);
    }
}
