//! The neighbour (ARP) table of one network namespace, with the queue of packets waiting for
//! resolution.
//!
//! Modelled after Linux's `neigh_resolve_output`: a packet to an unresolved next hop creates
//! an INCOMPLETE entry, is queued (at most `unres_qlen` = 101 packets per neighbour, the
//! oldest dropped first), and an ARP request goes out; requests are retried every
//! `retrans_time` (1 s) up to `mcast_solicit` (3) times, after which the queue is dropped
//! ("unresolved neighbour"). Resolved entries stay REACHABLE for the run: the
//! REACHABLE -> STALE -> DELAY -> PROBE cycle (base_reachable_time 30 s) only re-confirms an
//! address that does not change here, so it is not modelled.

use std::collections::VecDeque;

use rustc_hash::FxHashMap;
use std::net::Ipv4Addr;

use crate::addr::Mac;
use crate::net::packet::Packet;
use crate::net::route::DevId;
use crate::time::Duration;

/// `net.ipv4.neigh.default.unres_qlen` (101 packets).
pub const UNRES_QLEN: usize = 101;
/// `net.ipv4.neigh.default.retrans_time_ms` (1000 ms).
pub const RETRANS_TIME: Duration = Duration::from_secs(1);
/// `net.ipv4.neigh.default.mcast_solicit` (3 probes).
pub const MCAST_SOLICIT: u32 = 3;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NeighState {
    Reachable,
    /// Set by a CNI agent (`ip neigh replace ... nud permanent`).
    Permanent,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Neighbour {
    pub mac: Mac,
    pub dev: DevId,
    pub state: NeighState,
}

/// A next hop being resolved: packets waiting, probes sent so far.
#[derive(Debug)]
pub struct Incomplete {
    pub dev: DevId,
    pub queue: VecDeque<Packet>,
    pub probes: u32,
}

#[derive(Debug, Default)]
pub struct NeighTable {
    entries: FxHashMap<Ipv4Addr, Neighbour>,
    incomplete: FxHashMap<Ipv4Addr, Incomplete>,
}

impl NeighTable {
    pub fn lookup(&self, ip: Ipv4Addr) -> Option<Neighbour> {
        self.entries.get(&ip).copied()
    }

    /// Records `ip` at `mac` on `dev` (from an ARP packet or an agent). A permanent entry is
    /// not overwritten by learning. Returns the packets that were waiting for it.
    pub fn update(&mut self, ip: Ipv4Addr, mac: Mac, dev: DevId, state: NeighState) -> VecDeque<Packet> {
        match self.entries.get_mut(&ip) {
            Some(e) if e.state == NeighState::Permanent && state != NeighState::Permanent => {}
            Some(e) => *e = Neighbour { mac, dev, state },
            None => {
                self.entries.insert(ip, Neighbour { mac, dev, state });
            }
        }
        self.incomplete.remove(&ip).map(|i| i.queue).unwrap_or_default()
    }

    /// Queues `pkt` for `ip`. Returns (whether a resolution must be started, a packet pushed
    /// out of a full queue).
    pub fn enqueue(&mut self, ip: Ipv4Addr, dev: DevId, pkt: Packet) -> (bool, Option<Packet>) {
        let mut fresh = false;
        let inc = self.incomplete.entry(ip).or_insert_with(|| {
            fresh = true;
            Incomplete { dev, queue: VecDeque::new(), probes: 0 }
        });
        inc.queue.push_back(pkt);
        let evicted = (inc.queue.len() > UNRES_QLEN).then(|| inc.queue.pop_front()).flatten();
        (fresh, evicted)
    }

    pub fn incomplete_mut(&mut self, ip: Ipv4Addr) -> Option<&mut Incomplete> {
        self.incomplete.get_mut(&ip)
    }

    /// Gives up on `ip`: returns its queued packets.
    pub fn fail(&mut self, ip: Ipv4Addr) -> VecDeque<Packet> {
        self.incomplete.remove(&ip).map(|i| i.queue).unwrap_or_default()
    }

    /// Entries sorted by address (for `ip neigh`).
    pub fn entries(&self) -> Vec<(Ipv4Addr, Neighbour)> {
        let mut v: Vec<_> = self.entries.iter().map(|(a, n)| (*a, *n)).collect();
        v.sort_by_key(|(a, _)| *a);
        v
    }

    /// Addresses being resolved, sorted, with their queues.
    pub fn incomplete(&self) -> Vec<(Ipv4Addr, &Incomplete)> {
        let mut v: Vec<_> = self.incomplete.iter().map(|(a, i)| (*a, i)).collect();
        v.sort_by_key(|(a, _)| *a);
        v
    }
}
