//! The Linux bridge's forwarding database (FDB): MAC learning with ageing.
//!
//! Learned entries expire `BR_DEFAULT_AGEING_TIME` (300 s) after the last frame seen from that
//! MAC (net/bridge/br_private.h). Entries for the bridge's own ports are permanent
//! (`bridge fdb` shows them as `permanent`).

use rustc_hash::FxHashMap;

use crate::addr::Mac;
use crate::net::route::DevId;
use crate::time::{Duration, Instant};

/// `BR_DEFAULT_AGEING_TIME` in net/bridge/br_private.h: 300 * HZ.
pub const DEFAULT_AGEING: Duration = Duration::from_secs(300);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FdbEntry {
    pub port: DevId,
    pub updated: Instant,
    /// Permanent entry for one of the bridge's own addresses.
    pub permanent: bool,
}

#[derive(Clone, Debug)]
pub struct Fdb {
    entries: FxHashMap<Mac, FdbEntry>,
    ageing: Duration,
}

impl Default for Fdb {
    fn default() -> Self {
        Fdb { entries: FxHashMap::default(), ageing: DEFAULT_AGEING }
    }
}

impl Fdb {
    /// Records that `mac` was seen as a source on `port` at `now`.
    pub fn learn(&mut self, mac: Mac, port: DevId, now: Instant) {
        if mac.is_multicast() {
            return;
        }
        let e = self.entries.entry(mac).or_insert(FdbEntry { port, updated: now, permanent: false });
        if !e.permanent {
            e.port = port;
            e.updated = now;
        }
    }

    pub fn add_permanent(&mut self, mac: Mac, port: DevId) {
        self.entries.insert(mac, FdbEntry { port, updated: Instant::ZERO, permanent: true });
    }

    /// The port for `mac`, if known and not aged out at `now`.
    pub fn lookup(&self, mac: Mac, now: Instant) -> Option<FdbEntry> {
        let e = *self.entries.get(&mac)?;
        (e.permanent || now.saturating_since(e.updated) < self.ageing).then_some(e)
    }

    /// Live entries sorted by MAC (for `bridge fdb`).
    pub fn entries(&self, now: Instant) -> Vec<(Mac, FdbEntry)> {
        let mut v: Vec<_> = self
            .entries
            .iter()
            .filter(|(_, e)| e.permanent || now.saturating_since(e.updated) < self.ageing)
            .map(|(m, e)| (*m, *e))
            .collect();
        v.sort_by_key(|(m, _)| *m);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learns_moves_and_ages_out() {
        let mut f = Fdb::default();
        let m = Mac([2, 0, 0, 0, 0, 1]);
        f.learn(m, 3, Instant::ZERO);
        assert_eq!(f.lookup(m, Instant::ZERO).unwrap().port, 3);
        f.learn(m, 4, Instant::from_nanos(10));
        assert_eq!(f.lookup(m, Instant::from_nanos(10)).unwrap().port, 4);
        let later = Instant::from_nanos(10) + DEFAULT_AGEING;
        assert!(f.lookup(m, later).is_none(), "aged out after 300 s");
        f.learn(Mac::BROADCAST, 1, Instant::ZERO);
        assert!(f.lookup(Mac::BROADCAST, Instant::ZERO).is_none(), "never learns group addresses");
        f.add_permanent(Mac([2, 0, 0, 0, 0, 9]), 7);
        assert!(f.lookup(Mac([2, 0, 0, 0, 0, 9]), later + DEFAULT_AGEING).is_some());
    }
}
