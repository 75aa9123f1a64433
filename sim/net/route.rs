//! Routing tables: Linux's LOCAL and MAIN tables with longest-prefix match.
//!
//! Lookup keeps one hash map per prefix length, longest first, so it costs one hash probe per
//! distinct prefix length in the table, not one comparison per route (host-gw on 5,000 nodes
//! has 4,999 routes of one length). Iteration order for printing is insertion order.

use rustc_hash::FxHashMap;
use std::fmt;
use std::net::Ipv4Addr;

use crate::addr::Ipv4Net;

/// Index of a device in `World::devices`.
pub type DevId = usize;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteKind {
    Unicast,
    /// An address of this host (LOCAL table): deliver locally.
    Local,
    /// A subnet broadcast address (LOCAL table).
    Broadcast,
}

/// `proto` as `ip route` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    /// Installed by the kernel when an address is added.
    Kernel,
    /// Installed at boot or by a CNI plugin binary (the CNI bridge plugin's default route).
    Boot,
    /// Installed by an agent that names no protocol number of its own.
    Static,
    /// Installed by the BIRD routing daemon (Calico), `proto bird` (RTPROT_BIRD = 12).
    Bird,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    Host,
    Link,
    Global,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub kind: RouteKind,
    pub dst: Ipv4Net,
    pub gateway: Option<Ipv4Addr>,
    pub dev: DevId,
    pub proto: Proto,
    pub scope: Scope,
    pub src: Option<Ipv4Addr>,
    /// `onlink`: the gateway is reachable on `dev` without a connected route to it.
    pub onlink: bool,
    /// Route MTU (`ip route ... mtu N`); the device MTU applies when absent.
    pub mtu: Option<u32>,
    /// Equal-cost next hops (`nexthop via A dev X nexthop via B dev Y`); when non-empty,
    /// `gateway`/`dev` are the first one and a flow hash picks among them.
    pub ecmp: Box<[(Ipv4Addr, DevId)]>,
}

impl Route {
    /// A unicast MAIN-table route `dst [via gateway] dev dev`, scope chosen as `ip route` does.
    pub fn new(dst: Ipv4Net, gateway: Option<Ipv4Addr>, dev: DevId, proto: Proto) -> Route {
        let scope = if gateway.is_some() { Scope::Global } else { Scope::Link };
        Route {
            kind: RouteKind::Unicast,
            dst,
            gateway,
            dev,
            proto,
            scope,
            src: None,
            onlink: false,
            mtu: None,
            ecmp: Box::default(),
        }
    }
    pub fn onlink(mut self) -> Route {
        self.onlink = true;
        self
    }
    pub fn with_mtu(mut self, mtu: u32) -> Route {
        self.mtu = Some(mtu);
        self
    }
    pub fn with_src(mut self, src: Ipv4Addr) -> Route {
        self.src = Some(src);
        self
    }
    /// The next hop for a flow with hash `hash`: (device, gateway).
    pub fn nexthop(&self, hash: u32) -> (DevId, Option<Ipv4Addr>) {
        if self.ecmp.is_empty() {
            (self.dev, self.gateway)
        } else {
            let (gw, dev) = self.ecmp[hash as usize % self.ecmp.len()];
            (dev, Some(gw))
        }
    }
}

/// One routing table.
#[derive(Clone, Debug, Default)]
pub struct RouteTable {
    routes: Vec<Route>,
    /// (prefix length, network -> index into `routes`), longest prefix first.
    by_len: Vec<(u8, FxHashMap<u32, u32>)>,
}

impl RouteTable {
    /// Adds a route; a route to the same destination replaces the old one (`ip route replace`).
    pub fn insert(&mut self, route: Route) {
        let len = route.dst.prefix();
        let key = u32::from(route.dst.network());
        let pos = match self.by_len.binary_search_by(|(l, _)| len.cmp(l)) {
            Ok(p) => p,
            Err(p) => {
                self.by_len.insert(p, (len, FxHashMap::default()));
                p
            }
        };
        match self.by_len[pos].1.get(&key) {
            Some(&i) => self.routes[i as usize] = route,
            None => {
                let i = u32::try_from(self.routes.len()).expect("fewer than 2^32 routes in a table");
                self.by_len[pos].1.insert(key, i);
                self.routes.push(route);
            }
        }
    }

    /// Removes the route to `dst` (`ip route del`); the others keep their order.
    pub fn remove(&mut self, dst: Ipv4Net) -> Option<Route> {
        let len = dst.prefix();
        let pos = self.by_len.binary_search_by(|(l, _)| len.cmp(l)).ok()?;
        let i = self.by_len[pos].1.remove(&u32::from(dst.network()))?;
        if self.by_len[pos].1.is_empty() {
            self.by_len.remove(pos);
        }
        let route = self.routes.remove(i as usize);
        for (_, map) in &mut self.by_len {
            for j in map.values_mut() {
                if *j > i {
                    *j -= 1;
                }
            }
        }
        Some(route)
    }

    /// Longest-prefix match.
    pub fn lookup(&self, addr: Ipv4Addr) -> Option<&Route> {
        let a = u32::from(addr);
        self.by_len.iter().find_map(|(len, map)| {
            let m = if *len == 0 { 0 } else { u32::MAX << (32 - len) };
            map.get(&(a & m)).map(|&i| &self.routes[i as usize])
        })
    }

    /// Gives back the spare capacity of the route list (a node's tables are built once and
    /// rarely change afterwards: at 5,000 host-gw nodes, 25 M routes).
    pub fn shrink_to_fit(&mut self) {
        self.routes.shrink_to_fit();
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    pub fn len(&self) -> usize {
        self.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Proto::Kernel => "kernel",
            Proto::Boot => "boot",
            Proto::Static => "static",
            Proto::Bird => "bird",
        })
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Scope::Host => "host",
            Scope::Link => "link",
            Scope::Global => "global",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(dst: &str, dev: DevId) -> Route {
        Route::new(dst.parse().unwrap(), None, dev, Proto::Static)
    }

    #[test]
    fn longest_prefix_wins_and_replace_works() {
        let mut t = RouteTable::default();
        t.insert(r("0.0.0.0/0", 1));
        t.insert(r("10.244.0.0/16", 2));
        t.insert(r("10.244.3.0/24", 3));
        let at = |s: &str| t.lookup(s.parse().unwrap()).map(|r| r.dev);
        assert_eq!(at("10.244.3.7"), Some(3));
        assert_eq!(at("10.244.4.7"), Some(2));
        assert_eq!(at("8.8.8.8"), Some(1));
        t.insert(r("10.244.3.0/24", 9));
        assert_eq!(t.lookup("10.244.3.7".parse().unwrap()).unwrap().dev, 9);
        assert_eq!(t.len(), 3);
        let empty = RouteTable::default();
        assert!(empty.lookup("1.2.3.4".parse().unwrap()).is_none());
    }

    #[test]
    fn remove_keeps_the_others_and_their_order() {
        let mut t = RouteTable::default();
        t.insert(r("10.244.1.0/26", 1));
        t.insert(r("10.244.2.0/26", 2));
        t.insert(r("10.244.0.0/16", 3));
        t.insert(r("10.244.3.0/26", 4));
        assert_eq!(t.remove("10.244.2.0/26".parse().unwrap()).map(|r| r.dev), Some(2));
        assert_eq!(t.remove("10.244.2.0/26".parse().unwrap()), None);
        let devs: Vec<DevId> = t.routes().iter().map(|r| r.dev).collect();
        assert_eq!(devs, [1, 3, 4]);
        let at = |t: &RouteTable, s: &str| t.lookup(s.parse().unwrap()).map(|r| r.dev);
        assert_eq!(at(&t, "10.244.2.9"), Some(3), "the /16 takes over");
        assert_eq!(at(&t, "10.244.3.9"), Some(4), "indices after the removed one still match");
        t.remove("10.244.0.0/16".parse().unwrap());
        assert_eq!(at(&t, "10.244.2.9"), None);
        assert_eq!(at(&t, "10.244.1.9"), Some(1));
    }
}
