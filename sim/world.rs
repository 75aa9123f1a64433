//! The built world: every namespace, device, table and cable of the simulated cluster.
//!
//! `world::build` turns a resolved [`Cluster`] into a [`World`]: the underlay (one L2 switch,
//! one cable each way per node) and, through `cni`, what the CNI plugin creates on each node.
//! Construction helpers here do what the kernel does as a side effect (adding an address adds
//! its LOCAL, broadcast and subnet routes), so CNI builders read like the plugin's netlink
//! calls. The world holds state only; `datapath` moves packets through it.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;

use crate::addr::{Ipv4Net, Mac};
use crate::cluster::{Cluster, NodeId, PodId};
use crate::cni;
use crate::cost::CostProfile;
use crate::engine::{Component, RngFactory};
use crate::net::bridge::Fdb;
use crate::net::link::Link;
use crate::net::neigh::NeighTable;
use crate::net::pcap::PcapWriter;
use crate::net::route::{DevId, Proto, Route, RouteKind, RouteTable, Scope};
use crate::time::{Duration, Instant};

/// Index of a network namespace in [`World::netns`].
pub type NsId = usize;
/// Index of a directed cable in [`World::links`].
pub type LinkId = usize;

pub struct World {
    pub cluster: Cluster,
    pub costs: CostProfile,
    pub nodes: Vec<Node>,
    pub netns: Vec<Netns>,
    pub devices: Vec<Device>,
    pub links: Vec<Link>,
    /// Where each link delivers.
    pub link_ends: Vec<LinkEnd>,
    pub switch: Switch,
    /// Capture buffer per device, where capture is on.
    pub pcaps: Vec<Option<PcapWriter>>,
    /// Namespace of each pod, by `PodId`.
    pub pod_ns: Vec<NsId>,
    /// Last flood group id handed out (see `datapath::Action::Flood`).
    pub next_flood: u64,
    /// Trace control frames (ARP) too, collecting their hops in `control_hops`.
    pub trace_control: bool,
    pub control_hops: Vec<crate::summary::Hop>,
    /// ARP frames the kernels created.
    pub arp_frames: u64,
}

/// One simulated machine: its host namespace and CPU cores.
pub struct Node {
    pub ns: NsId,
    pub cores: Vec<Core>,
    /// Frames whose processing this node's kernel started.
    pub packets: u64,
}

/// A CPU core as a FIFO server.
#[derive(Clone, Copy, Debug, Default)]
pub struct Core {
    pub busy_until: Instant,
    pub busy: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NsKind {
    Host(NodeId),
    Pod(PodId),
}

pub struct Netns {
    /// "node-1" for a host namespace, the pod's name for a pod namespace.
    pub name: String,
    pub node: NodeId,
    pub kind: NsKind,
    pub devices: Vec<DevId>,
    /// The LOCAL table (own and broadcast addresses) and the MAIN table.
    pub local: RouteTable,
    pub main: RouteTable,
    pub neigh: NeighTable,
    /// `net.ipv4.ip_forward`.
    pub ip_forward: bool,
    /// UDP ports with a bound socket.
    pub udp_ports: HashSet<u16>,
    /// Next IPv4 identification value for locally generated packets.
    pub next_ident: u16,
}

pub struct Device {
    pub name: String,
    pub ns: NsId,
    pub ifindex: u32,
    pub mac: Mac,
    pub mtu: u32,
    /// Addresses with their prefix length, in the order added.
    pub addrs: Vec<(Ipv4Addr, u8)>,
    /// The bridge this device is a port of.
    pub master: Option<DevId>,
    pub kind: DeviceKind,
}

pub enum DeviceKind {
    Loopback,
    /// One end of a veth pair.
    Veth {
        peer: DevId,
    },
    /// A Linux bridge and its ports.
    Bridge {
        fdb: Fdb,
        ports: Vec<DevId>,
    },
    /// A physical NIC with a cable to the underlay.
    Nic {
        tx: LinkId,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkEnd {
    Switch { port: usize },
    Device(DevId),
}

/// The underlay: one learning L2 switch. Store-and-forward with no processing delay: its cost
/// is the serialisation on each egress port.
pub struct Switch {
    /// Egress cable of each port.
    pub ports: Vec<LinkId>,
    pub mac_table: HashMap<Mac, usize>,
    /// Largest IP packet (L3 MTU) it forwards.
    pub mtu: u32,
}

impl World {
    pub fn ns_of_dev(&self, dev: DevId) -> &Netns {
        &self.netns[self.devices[dev].ns]
    }

    /// The "place" shown in traces: `node-1` or `pod/web-0`.
    pub fn place(&self, ns: NsId) -> String {
        match self.netns[ns].kind {
            NsKind::Host(_) => self.netns[ns].name.clone(),
            NsKind::Pod(_) => format!("pod/{}", self.netns[ns].name),
        }
    }

    /// Device named `name` in namespace `ns`.
    pub fn dev_by_name(&self, ns: NsId, name: &str) -> Option<DevId> {
        self.netns[ns].devices.iter().copied().find(|&d| self.devices[d].name == name)
    }

    /// Turns on capture for every device whose `<namespace>/<device>` matches `glob`
    /// (`*` matches any run of characters). Returns how many devices matched.
    pub fn enable_capture(&mut self, glob: &str) -> usize {
        let mut n = 0;
        for d in 0..self.devices.len() {
            let key = format!("{}/{}", self.netns[self.devices[d].ns].name, self.devices[d].name);
            if glob_match(glob, &key) {
                self.pcaps[d].get_or_insert_with(PcapWriter::new);
                n += 1;
            }
        }
        n
    }

    // ---- construction, used by `build` and the CNI builders ----

    pub fn add_netns(&mut self, name: String, node: NodeId, kind: NsKind, ip_forward: bool) -> NsId {
        let id = self.netns.len();
        self.netns.push(Netns {
            name,
            node,
            kind,
            devices: Vec::new(),
            local: RouteTable::default(),
            main: RouteTable::default(),
            neigh: NeighTable::default(),
            ip_forward,
            udp_ports: HashSet::new(),
            next_ident: 1,
        });
        let lo = self.add_device(id, "lo".into(), Mac([0; 6]), 65536, DeviceKind::Loopback);
        self.add_addr(lo, Ipv4Addr::LOCALHOST, 8);
        id
    }

    pub fn add_device(&mut self, ns: NsId, name: String, mac: Mac, mtu: u32, kind: DeviceKind) -> DevId {
        let id = self.devices.len();
        let ifindex = self.netns[ns].devices.len() as u32 + 1;
        self.devices.push(Device { name, ns, ifindex, mac, mtu, addrs: Vec::new(), master: None, kind });
        self.pcaps.push(None);
        self.netns[ns].devices.push(id);
        id
    }

    /// Creates a veth pair; returns (end in `ns_a`, end in `ns_b`).
    #[allow(clippy::too_many_arguments)]
    pub fn add_veth(
        &mut self,
        ns_a: NsId,
        name_a: String,
        mac_a: Mac,
        ns_b: NsId,
        name_b: String,
        mac_b: Mac,
        mtu: u32,
    ) -> (DevId, DevId) {
        let a = self.add_device(ns_a, name_a, mac_a, mtu, DeviceKind::Veth { peer: usize::MAX });
        let b = self.add_device(ns_b, name_b, mac_b, mtu, DeviceKind::Veth { peer: a });
        self.devices[a].kind = DeviceKind::Veth { peer: b };
        (a, b)
    }

    /// `ip link set PORT master BRIDGE`: adds the port and its permanent FDB entry.
    pub fn enslave(&mut self, bridge: DevId, port: DevId) {
        let mac = self.devices[port].mac;
        self.devices[port].master = Some(bridge);
        if let DeviceKind::Bridge { fdb, ports } = &mut self.devices[bridge].kind {
            ports.push(port);
            fdb.add_permanent(mac, port);
        }
    }

    /// `ip addr add ADDR/PREFIX dev DEV`, with the routes the kernel adds for it: `local` and
    /// `broadcast` in LOCAL, the subnet route (`proto kernel scope link`) in MAIN.
    pub fn add_addr(&mut self, dev: DevId, addr: Ipv4Addr, prefix: u8) {
        self.devices[dev].addrs.push((addr, prefix));
        let ns = self.devices[dev].ns;
        let host = Ipv4Net::new(addr, 32).expect("a /32 is always valid");
        let t = &mut self.netns[ns];
        t.local.insert(Route {
            kind: RouteKind::Local,
            dst: host,
            gateway: None,
            dev,
            proto: Proto::Kernel,
            scope: Scope::Host,
            src: Some(addr),
        });
        let net =
            Ipv4Net::new(Ipv4Addr::from(u32::from(addr) & prefix_mask(prefix)), prefix).expect("masked");
        if prefix < 31 {
            let bcast = Ipv4Addr::from(u32::from(addr) | !prefix_mask(prefix));
            t.local.insert(Route {
                kind: RouteKind::Broadcast,
                dst: Ipv4Net::new(bcast, 32).expect("a /32 is always valid"),
                gateway: None,
                dev,
                proto: Proto::Kernel,
                scope: Scope::Link,
                src: Some(addr),
            });
        }
        let is_lo = matches!(self.devices[dev].kind, DeviceKind::Loopback);
        let t = &mut self.netns[ns];
        if is_lo {
            // Loopback: the whole 127/8 is local.
            t.local.insert(Route {
                kind: RouteKind::Local,
                dst: net,
                gateway: None,
                dev,
                proto: Proto::Kernel,
                scope: Scope::Host,
                src: Some(addr),
            });
        } else {
            t.main.insert(Route {
                kind: RouteKind::Unicast,
                dst: net,
                gateway: None,
                dev,
                proto: Proto::Kernel,
                scope: Scope::Link,
                src: Some(addr),
            });
        }
    }

    /// `ip route replace DST [via GW] dev DEV` in MAIN.
    pub fn add_route(&mut self, dev: DevId, dst: Ipv4Net, gateway: Option<Ipv4Addr>, proto: Proto) {
        let ns = self.devices[dev].ns;
        let scope = if gateway.is_some() { Scope::Global } else { Scope::Link };
        self.netns[ns].main.insert(Route {
            kind: RouteKind::Unicast,
            dst,
            gateway,
            dev,
            proto,
            scope,
            src: None,
        });
    }
}

fn prefix_mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    }
}

/// Shell-style glob with `*` only.
pub fn glob_match(glob: &str, text: &str) -> bool {
    let parts: Vec<&str> = glob.split('*').collect();
    if parts.len() == 1 {
        return glob == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

/// Builds the world for `cluster`: nodes with their host namespaces and NICs, the underlay
/// switch and cables, then whatever the CNI plugin creates.
pub fn build(cluster: &Cluster) -> World {
    let rngs = RngFactory::new(cluster.seed);
    let mut w = World {
        cluster: cluster.clone(),
        costs: cluster.costs.clone(),
        nodes: Vec::with_capacity(cluster.nodes.len()),
        netns: Vec::new(),
        devices: Vec::new(),
        links: Vec::new(),
        link_ends: Vec::new(),
        switch: Switch { ports: Vec::new(), mac_table: HashMap::new(), mtu: cluster.underlay.mtu },
        pcaps: Vec::new(),
        pod_ns: vec![usize::MAX; cluster.pods.len()],
        next_flood: 0,
        trace_control: false,
        control_hops: Vec::new(),
        arp_frames: 0,
    };
    let u = &cluster.underlay;
    for (i, spec) in cluster.nodes.iter().enumerate() {
        let ns = w.add_netns(spec.name.clone(), i, NsKind::Host(i), true);
        // Node eth0 -> switch port i, and switch port i -> node eth0.
        let up = w.links.len();
        w.links.push(Link::new(
            spec.nic_bandwidth.0,
            u.propagation,
            u.queue.0,
            u.loss,
            rngs.stream(Component::Link, up as u64),
        ));
        w.link_ends.push(LinkEnd::Switch { port: i });
        let nic = w.add_device(
            ns,
            "eth0".into(),
            Mac::local(0x00, i as u32 + 1),
            spec.mtu,
            DeviceKind::Nic { tx: up },
        );
        w.add_addr(nic, spec.ip, cluster.network.node_cidr.prefix());
        let down = w.links.len();
        w.links.push(Link::new(
            u.bandwidth.0,
            u.propagation,
            u.queue.0,
            u.loss,
            rngs.stream(Component::Link, down as u64),
        ));
        w.link_ends.push(LinkEnd::Device(nic));
        w.switch.ports.push(down);
        let cores = vec![Core::default(); spec.cores as usize];
        w.nodes.push(Node { ns, cores, packets: 0 });
    }
    cni::build(&mut w);
    w
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn globs() {
        assert!(glob_match("*", "node-1/eth0"));
        assert!(glob_match("node-1/*", "node-1/eth0"));
        assert!(!glob_match("node-1/*", "node-10/eth0"));
        assert!(glob_match("*/eth0", "web-0/eth0"));
        assert!(glob_match("node-*/veth*", "node-2/veth1a2b"));
        assert!(!glob_match("node-1/eth0", "node-1/eth1"));
    }
}
