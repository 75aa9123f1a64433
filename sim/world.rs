//! The built world: every namespace, device, table and cable of the simulated cluster.
//!
//! `build::build` (in `sim/build.rs`) turns a resolved [`Cluster`] into a [`World`]: the underlay (one L2 switch,
//! one cable each way per node) and, through `cni`, what the CNI plugin creates on each node.
//! Construction helpers here do what the kernel does as a side effect (adding an address adds
//! its LOCAL, broadcast and subnet routes), so CNI builders read like the plugin's netlink
//! calls. The world holds state only; `datapath` moves packets through it.

use std::collections::VecDeque;

pub mod cilium_policy;

use rustc_hash::{FxHashMap, FxHashSet};
use std::net::Ipv4Addr;

use crate::addr::{Ipv4Net, Mac};
use crate::cluster::{Cluster, NodeId, PodId};
use crate::cost::{CostProfile, StepTimes};
use crate::engine::{Component, RngFactory};
use crate::net::bridge::Fdb;
use crate::net::link::Link;
use crate::net::neigh::NeighTable;
use crate::net::pcap::PcapWriter;
use crate::net::route::{DevId, Proto, Route, RouteKind, RouteTable, Scope};
use crate::net::{LinkId, NsId};
use crate::time::{Duration, Instant};

/// Build problems kept word for word; later ones are only counted.
pub const MAX_WARNINGS: usize = 20;

pub struct World {
    pub cluster: Cluster,
    pub costs: CostProfile,
    pub nodes: Vec<Node>,
    pub netns: Vec<Netns>,
    pub devices: Vec<Device>,
    pub links: Vec<Link>,
    /// Where each link delivers.
    pub link_ends: Vec<LinkEnd>,
    /// L2 segments of the underlay: one switch, or one per rack.
    pub switches: Vec<Switch>,
    /// Router namespaces of the fabric (ToRs, spines), by [`NsKind::Router`] index.
    pub routers: Vec<NsId>,
    /// Capture buffer per device, where capture is on.
    pub pcaps: Vec<Option<PcapWriter>>,
    /// Namespace of each pod, by `PodId`.
    pub pod_ns: Vec<NsId>,
    /// Namespace of each external host (`Cluster::externals`).
    pub external_ns: Vec<NsId>,
    /// Last flood group id handed out (see `datapath::Action::Flood`).
    pub next_flood: u64,
    /// Trace control frames (ARP) too, collecting their hops in `control_hops`.
    pub trace_control: bool,
    pub control_hops: Vec<crate::net::packet::Hop>,
    /// ARP frames the kernels created.
    pub arp_frames: u64,
    /// ICMP errors the kernels sent (fragmentation needed).
    pub icmp_sent: u64,
    /// ICMP port unreachable messages sent (REJECT, Cilium's no-backend response).
    pub icmp_port_unreachable: u64,
    /// "Fragmentation needed" errors the fabric's routers did not send (`filter_icmp`).
    pub icmp_filtered: u64,
    /// What failed while building, as the agent or tool would log it (a route the kernel
    /// refused ...), the first [`MAX_WARNINGS`] of them; `warnings_more` counts the rest.
    pub warnings: Vec<String>,
    pub warnings_more: u64,
    /// Userspace data-plane processes (flanneld udp, weave sleeve).
    pub procs: Vec<crate::userspace::UserProc>,
    /// Each node's Service proxy, by `NodeId`.
    pub proxies: Vec<crate::proxy::node::NodeProxy>,
    /// Per node: what the policy engine's filter walks cost.
    pub policy_stats: Vec<PolicyStats>,
    /// Each node's NetworkPolicy agent (policy changes during the run).
    pub policy_agents: Vec<PolicyAgent>,
    /// Every node's enforcement of every policy change, in the order the changes came.
    pub policy_syncs: Vec<PolicySync>,
    /// Cilium: the identities allocated so far (the latest compiled maps), cluster-wide.
    pub cilium_allocated: Option<std::sync::Arc<cilium_policy::PolicyMaps>>,
    /// Every version of the Service table: the scenario's, then one per change.
    pub service_tables: Vec<std::sync::Arc<crate::cluster::ServiceTable>>,
    /// Every node's address.
    pub node_ips: FxHashSet<Ipv4Addr>,
    /// eBPF service programs sit on the host side of pod veths (Cilium's kube-proxy
    /// replacement, and Cilium's bpf_lxc, which load-balances ClusterIP traffic in any mode).
    pub service_bpf: bool,
    pub(crate) rngs: RngFactory,
}

/// A node's policy-enforcement counters: filter walks on a connection's first packets (ctstate
/// NEW) and on the rest, rules evaluated, ipset lookups, the CPU they cost, packets denied.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicyStats {
    pub new_walks: u64,
    pub new_rules: u64,
    pub new_set_lookups: u64,
    pub new_cpu: crate::time::Duration,
    pub other_walks: u64,
    pub other_rules: u64,
    /// Walks that ended in DROP, and their rules, ipset lookups and CPU (counted in the
    /// `new_` figures too when the packet was NEW).
    pub denied: u64,
    pub denied_evaluations: u64,
    pub denied_cpu: crate::time::Duration,
}

/// One node's NetworkPolicy agent (Felix, weave-npc, cilium-agent), for policy changes.
#[derive(Clone, Debug, Default)]
pub struct PolicyAgent {
    /// When its previous work is done.
    pub busy_until: Instant,
    /// The newest policy version it has installed (0: the scenario's start).
    pub installed: usize,
    pub cpu: crate::time::Duration,
}

/// When a change was enforced on one node.
#[derive(Clone, Debug)]
pub struct PolicySync {
    /// Index into `Cluster::changes`.
    pub change: usize,
    pub node: usize,
    /// When the agent started and finished the work (the new state in force from `done`).
    pub start: Instant,
    pub done: Instant,
    pub cpu: crate::time::Duration,
    /// What it wrote: rules (or policy-map entries) added and removed, ipset entries changed,
    /// commands run (weave-npc), endpoints regenerated (Cilium).
    pub rules_changed: usize,
    pub set_entries_changed: usize,
    pub commands: usize,
    pub endpoints: usize,
}

/// One simulated machine: its host namespace and CPU cores.
pub struct Node {
    pub ns: NsId,
    pub cores: Vec<Core>,
    /// The bounds of the node's kernel queues (Linux's defaults on external hosts).
    pub kernel: crate::cluster::KernelQueues,
    /// Frames whose processing this node's kernel started.
    pub packets: u64,
    /// Powered off (a `power_off` change, or not yet joined): nothing on it runs.
    pub down: bool,
}

/// A CPU core as a FIFO server with the kernel's bounded queues in front of it.
///
/// Work is served in arrival order; the queues only bound how much may wait. A chain's CPU
/// time counts in `busy` (and `steps`) when its service ends within the run: a core is never
/// busier than the time that passed.
#[derive(Clone, Debug, Default)]
pub struct Core {
    pub busy_until: Instant,
    /// CPU time served within the run.
    pub busy: Duration,
    /// `busy` split by kernel step.
    pub steps: StepTimes,
    /// Start times of the chains from this core's NIC receive queue not yet started: the
    /// descriptors in use in the RX ring (oldest first).
    pub rx_waiting: VecDeque<Instant>,
    /// Start times of process-context chains that queued a frame to this core's input
    /// backlog (veth) and have not started yet.
    pub backlog_waiting: VecDeque<Instant>,
    /// The packets GRO holds for this core's NAPI poll (`napi->gro_hash`, at most
    /// `MAX_GRO_SKBS`), oldest first, and when the poll reaches them.
    pub gro: Vec<GroHeld>,
    pub gro_flush_at: Option<Instant>,
}

/// A packet GRO holds: the NIC it came in on, its RSS hash, its merged bytes so far and the
/// metadata of its first segment.
#[derive(Clone, Debug)]
pub struct GroHeld {
    pub nic: DevId,
    pub hash: u32,
    pub held: crate::net::gso::Held,
    pub meta: crate::net::packet::Meta,
}

impl Core {
    /// Forgets the waiting entries whose service has started by `now`; returns how many wait.
    pub fn waiting(queue: &mut VecDeque<Instant>, now: Instant) -> usize {
        while queue.front().is_some_and(|&s| s <= now) {
            queue.pop_front();
        }
        queue.len()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NsKind {
    Host(NodeId),
    Pod(PodId),
    /// A fabric router (ToR or spine): forwards in hardware, no CPU cost.
    Router(usize),
    /// A host outside the cluster (`Cluster::externals`); its CPU is `World::nodes` entry
    /// `cluster.nodes.len() + index`.
    External(usize),
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
    pub udp_ports: FxHashSet<u16>,
    /// UDP ports bound by tunnel devices, and the device that decapsulates them.
    pub tunnel_ports: FxHashMap<u16, DevId>,
    /// Path MTU exceptions learned from ICMP "fragmentation needed" (destination -> MTU).
    pub pmtu: FxHashMap<Ipv4Addr, u32>,
    /// IPv4 reassembly queue, and the metadata of each datagram's first fragment waiting in it
    /// (with its arrival time, for the 30 s `ipfrag_time`).
    pub reasm: crate::wire::ipv4frag::Reassembler,
    pub frag_meta: FxHashMap<crate::wire::ipv4frag::FragKey, (crate::net::packet::Meta, Instant)>,
    /// UDP ports whose socket belongs to a userspace process (`World::procs`).
    pub user_ports: FxHashMap<u16, usize>,
    /// Cilium's BPF maps (host namespaces of Cilium nodes only).
    pub cilium: Option<Box<CiliumMaps>>,
    /// Next IPv4 identification value for locally generated packets.
    pub next_ident: u16,
    /// A TCP stack (smoltcp, in `run`) serves this namespace's TCP segments.
    pub tcp_stack: bool,
    /// The filter table a policy engine programs in a node's namespace (Calico's Felix,
    /// weave-npc), walked on the FORWARD and INPUT hooks; `None`: no filter rules (every
    /// packet accepted).
    pub filter: Option<Box<crate::net::filter::FilterTable>>,
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
    /// `net.ipv4.conf.<dev>.proxy_arp`: answer ARP for addresses routed out of another device.
    pub proxy_arp: bool,
    /// eBPF program on the device's tc ingress hook (Cilium).
    pub ebpf: Option<EbpfHook>,
    /// macvlan/ipvlan devices stacked on this one.
    pub uppers: Vec<DevId>,
    pub kind: DeviceKind,
}

impl Device {
    /// An L3 device: no Ethernet header, no neighbours (IP tunnels, tun).
    pub fn is_l3(&self) -> bool {
        matches!(self.kind, DeviceKind::Ipip | DeviceKind::IpvlanL3 { .. } | DeviceKind::Tun { .. })
    }

    pub fn tunnel(&self) -> Option<&UdpTunnel> {
        match &self.kind {
            DeviceKind::UdpTunnel(t) => Some(t),
            _ => None,
        }
    }

    pub fn tunnel_mut(&mut self) -> Option<&mut UdpTunnel> {
        match &mut self.kind {
            DeviceKind::UdpTunnel(t) => Some(t),
            _ => None,
        }
    }
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
    /// An IPv4-in-IPv4 tunnel with `remote any` (the `tunl0` fallback device): the outer
    /// destination is the route's next hop; TTL and DF are inherited from the inner packet.
    Ipip,
    /// A MAC-in-UDP tunnel endpoint (VXLAN or Geneve device).
    UdpTunnel(Box<UdpTunnel>),
    /// A macvlan sub-interface of `lower` in bridge mode: its own MAC on the lower device's
    /// wire; siblings reach each other inside the lower device; the lower device's own stack is
    /// unreachable from it.
    Macvlan {
        lower: DevId,
    },
    /// An Open vSwitch kernel datapath (Weave fastdp): a learning switch between its local
    /// port and its VXLAN vport.
    Ovs(Box<OvsDatapath>),
    /// A tun device (L3) whose other end is userspace process `proc` (`World::procs`).
    Tun {
        proc: usize,
    },
    /// A bridge port whose frames a userspace process captures and injects (Weave's pcap port).
    UserPort {
        proc: usize,
    },
    /// An ipvlan L3-mode slave of `lower`: shares its MAC, no ARP; egress is routed in the
    /// lower device's namespace, ingress is demultiplexed by destination IP.
    IpvlanL3 {
        lower: DevId,
    },
}

/// Weave fastdp's OVS datapath, as the weave router programs its flows (router/fastdp.go):
/// frames for a MAC behind a peer go out of the VXLAN vport with tunnel id
/// `src short ID | dst short ID << 12`; broadcasts and unknown MACs go to every peer.
pub struct OvsDatapath {
    /// The vport towards the `weave` bridge (`vethwe-datapath`).
    pub local_port: DevId,
    /// The VXLAN vport (`vxlan-6784`), collect_md.
    pub tunnel: DevId,
    pub short_id: u32,
    /// Every other peer: (node IP, short ID).
    pub peers: Vec<(Ipv4Addr, u32)>,
    /// Learned MACs: `None` behind the local port, else the peer.
    pub macs: FxHashMap<Mac, Option<(Ipv4Addr, u32)>>,
}

/// Cilium's programs on tc ingress (pkg/datapath/loader: `cil_from_container` on `lxc*`,
/// `cil_from_overlay` on the tunnel device, `cil_from_netdev` on the native device).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EbpfHook {
    FromContainer,
    FromOverlay,
    FromNetdev,
    /// `cil_from_host` on the `cilium_host`/`cilium_net` pair: packets the host stack routes
    /// to pods (NodePort DNAT, host processes).
    FromHost,
}

/// Cilium's per-node BPF maps, in the host namespace.
#[derive(Default)]
pub struct CiliumMaps {
    /// Local endpoints: pod IP -> (host-side `lxc` device, security identity).
    pub endpoints: FxHashMap<Ipv4Addr, (DevId, u32)>,
    /// ipcache: remote pod CIDRs -> tunnel endpoint (as routes: `dst via <node IP>`).
    pub ipcache: RouteTable,
    /// The tunnel device in tunnel mode; native routing otherwise.
    pub tunnel: Option<DevId>,
    /// The node's router address (on `cilium_host`), the pods' gateway.
    pub router_ip: Option<Ipv4Addr>,
    /// Identities, ipcache and policy maps: the same on every node, one shared copy.
    pub policy: std::sync::Arc<cilium_policy::PolicyMaps>,
    /// This node's connection tracking of policy verdicts.
    pub policy_ct: cilium_policy::PolicyCt,
}

impl UdpTunnel {
    /// A VXLAN device as a CNI agent creates it through netlink without tuning flags
    /// (`ip link add ... type vxlan id VNI dstport PORT local IP dev DEV nolearning`): the
    /// kernel's defaults, so outer UDP checksum on, DF unset (research: cni-facts.md §1).
    pub fn vxlan(vni: u32, port: u16, local: Ipv4Addr, underlay: DevId) -> UdpTunnel {
        UdpTunnel {
            proto: TunnelProto::Vxlan,
            vni,
            port,
            local,
            fdb: FxHashMap::default(),
            learning: false,
            udp_csum: true,
            df: false,
            metadata: false,
            underlay: Some(underlay),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TunnelProto {
    Vxlan,
    Geneve,
}

/// A VXLAN (RFC 7348) or Geneve (RFC 8926) device over IPv4, as `ip link add ... type vxlan`
/// or `type geneve` creates it.
pub struct UdpTunnel {
    pub proto: TunnelProto,
    pub vni: u32,
    /// Destination UDP port (8472, 4789, 6081 ...). Receiving binds the same port.
    pub port: u16,
    /// Outer source address.
    pub local: Ipv4Addr,
    /// Remote VTEP per inner destination MAC (`bridge fdb ... dst IP self permanent`).
    pub fdb: FxHashMap<Mac, Ipv4Addr>,
    /// Learn remote VTEPs from received packets (`learning`); CNIs turn it off.
    pub learning: bool,
    /// Compute the outer UDP checksum (`udpcsum`); zero otherwise.
    pub udp_csum: bool,
    /// Set DF on the outer header.
    pub df: bool,
    /// `external`/`collect_md` mode (Cilium): the remote and VNI come with each packet from
    /// the eBPF program instead of the FDB, and any VNI is accepted.
    pub metadata: bool,
    /// Underlay device of the tunnel (`dev eth0`), for `ip -d link`.
    pub underlay: Option<DevId>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkEnd {
    Switch { switch: usize, port: usize },
    Device(DevId),
}

/// An L2 segment of the underlay: a learning switch, store-and-forward with no processing
/// delay (its cost is the serialisation on each egress port).
pub struct Switch {
    /// "switch", or "rack-1-switch" in a leaf-spine fabric.
    pub name: String,
    /// Egress cable of each port.
    pub ports: Vec<LinkId>,
    pub mac_table: FxHashMap<Mac, usize>,
    /// Largest IP packet (L3 MTU) it forwards.
    pub mtu: u32,
}

impl World {
    /// The offloads of the machine namespace `ns` is on (Linux's defaults off the nodes).
    pub fn offloads(&self, ns: NsId) -> crate::cluster::Offloads {
        match self.netns[ns].kind {
            NsKind::Router(_) => Default::default(),
            _ => self.nodes.get(self.netns[ns].node).map(|n| n.kernel.offloads).unwrap_or_default(),
        }
    }

    /// Whether netfilter's conntrack and nat hooks run in namespace `ns` (node host
    /// namespaces, where kube-proxy programs them).
    pub fn has_netfilter(&self, ns: NsId) -> bool {
        matches!(self.netns[ns].kind, NsKind::Host(_)) && !self.proxies.is_empty()
    }

    /// Whether `dev` is a bridge with a pod's veth among its ports (flannel's `cni0`, Weave's
    /// `weave`): a routed packet in or out of it is a pod's.
    pub fn is_pod_bridge(&self, dev: DevId) -> bool {
        match &self.devices[dev].kind {
            DeviceKind::Bridge { ports, .. } => ports.iter().any(|&p| self.is_pod_facing(p)),
            _ => false,
        }
    }

    /// Whether `dev` is the host-side end of a pod's veth.
    pub fn is_pod_facing(&self, dev: DevId) -> bool {
        match self.devices[dev].kind {
            DeviceKind::Veth { peer } => {
                matches!(self.netns[self.devices[peer].ns].kind, NsKind::Pod(_))
                    && matches!(self.netns[self.devices[dev].ns].kind, NsKind::Host(_))
            }
            _ => false,
        }
    }

    /// The "place" shown in traces: `node-1` or `pod/web-0`.
    pub fn place(&self, ns: NsId) -> String {
        match self.netns[ns].kind {
            NsKind::Host(_) | NsKind::Router(_) => self.netns[ns].name.clone(),
            NsKind::External(_) => format!("ext/{}", self.netns[ns].name),
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
                let raw = self.devices[d].is_l3();
                self.pcaps[d]
                    .get_or_insert_with(|| if raw { PcapWriter::new_raw() } else { PcapWriter::new() });
                n += 1;
            }
        }
        n
    }

    // ---- construction, used by `build` and the CNI builders ----

    /// Records a build problem (kept in full for the first [`MAX_WARNINGS`], counted after:
    /// a 5,000-node host-gw cluster across racks would otherwise log millions).
    pub fn warn(&mut self, message: String) {
        if self.warnings.len() < MAX_WARNINGS {
            self.warnings.push(message);
        } else {
            self.warnings_more += 1;
        }
    }

    /// A directed cable into `to`, with its own loss stream.
    fn link(&mut self, rate: u64, propagation: Duration, to: LinkEnd) -> LinkId {
        let u = &self.cluster.underlay;
        let id = self.links.len();
        let rng = self.rngs.stream(Component::Link, id as u64);
        self.links.push(Link::new(rate, propagation, u.queue.0, u.loss, rng));
        self.link_ends.push(to);
        id
    }

    /// Cables NIC `nic` to a new port of switch `sw`: `up` is the NIC's rate, `down` the
    /// switch port's.
    pub(crate) fn attach_to_switch(
        &mut self,
        sw: usize,
        nic: DevId,
        up: u64,
        down: u64,
        propagation: Duration,
    ) {
        let port = self.switches[sw].ports.len();
        let tx = self.link(up, propagation, LinkEnd::Switch { switch: sw, port });
        self.devices[nic].kind = DeviceKind::Nic { tx };
        let rx = self.link(down, propagation, LinkEnd::Device(nic));
        self.switches[sw].ports.push(rx);
    }

    /// A point-to-point cable between two NICs.
    pub(crate) fn cable(&mut self, a: DevId, b: DevId, rate: u64, propagation: Duration) {
        let ab = self.link(rate, propagation, LinkEnd::Device(b));
        let ba = self.link(rate, propagation, LinkEnd::Device(a));
        self.devices[a].kind = DeviceKind::Nic { tx: ab };
        self.devices[b].kind = DeviceKind::Nic { tx: ba };
    }

    /// Creates a macvlan (bridge mode) or ipvlan (L3 mode) device on `lower` in namespace `ns`.
    pub fn add_upper(
        &mut self,
        lower: DevId,
        ns: NsId,
        name: String,
        mac: Mac,
        mtu: u32,
        kind: DeviceKind,
    ) -> DevId {
        let d = self.add_device(ns, name, mac, mtu, kind);
        self.devices[lower].uppers.push(d);
        d
    }

    /// Creates a VXLAN/Geneve device and binds its UDP port in the namespace.
    pub fn add_udp_tunnel(&mut self, ns: NsId, name: String, mac: Mac, mtu: u32, t: UdpTunnel) -> DevId {
        let port = t.port;
        let dev = self.add_device(ns, name, mac, mtu, DeviceKind::UdpTunnel(Box::new(t)));
        self.netns[ns].tunnel_ports.insert(port, dev);
        dev
    }

    pub(crate) fn add_router(&mut self, name: String) -> NsId {
        let idx = self.routers.len();
        let ns = self.add_netns(name, usize::MAX, NsKind::Router(idx), true);
        self.routers.push(ns);
        ns
    }

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
            udp_ports: FxHashSet::default(),
            tunnel_ports: FxHashMap::default(),
            user_ports: FxHashMap::default(),
            pmtu: FxHashMap::default(),
            reasm: crate::wire::ipv4frag::Reassembler::new(crate::wire::ipv4frag::LINUX_HIGH_THRESH),
            frag_meta: FxHashMap::default(),
            cilium: None,
            next_ident: 1,
            tcp_stack: false,
            filter: None,
        });
        let lo = self.add_device(id, "lo".into(), Mac([0; 6]), 65536, DeviceKind::Loopback);
        self.add_addr(lo, Ipv4Addr::LOCALHOST, 8);
        id
    }

    pub fn add_device(&mut self, ns: NsId, name: String, mac: Mac, mtu: u32, kind: DeviceKind) -> DevId {
        let id = self.devices.len();
        let ifindex = self.netns[ns].devices.len() as u32 + 1;
        self.devices.push(Device {
            name,
            ns,
            ifindex,
            mac,
            mtu,
            addrs: Vec::new(),
            master: None,
            proxy_arp: false,
            ebpf: None,
            uppers: Vec::new(),
            kind,
        });
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

    /// `ip addr add ADDR/PREFIX dev DEV`, with the routes the kernel adds for it
    /// (`fib_add_ifaddr`): `local` and (below /31) `broadcast` in LOCAL, and (below /32) the
    /// subnet route `proto kernel scope link` in MAIN.
    pub fn add_addr(&mut self, dev: DevId, addr: Ipv4Addr, prefix: u8) {
        self.devices[dev].addrs.push((addr, prefix));
        let ns = self.devices[dev].ns;
        let host = Ipv4Net::new(addr, 32).expect("a /32 is always valid");
        let net =
            Ipv4Net::new(Ipv4Addr::from(u32::from(addr) & prefix_mask(prefix)), prefix).expect("masked");
        let is_lo = matches!(self.devices[dev].kind, DeviceKind::Loopback);
        let local = |dst| Route {
            kind: RouteKind::Local,
            scope: Scope::Host,
            ..Route::new(dst, None, dev, Proto::Kernel).with_src(addr)
        };
        let t = &mut self.netns[ns];
        t.local.insert(local(host));
        if prefix < 31 && !is_lo {
            let bcast =
                Ipv4Net::new(Ipv4Addr::from(u32::from(addr) | !prefix_mask(prefix)), 32).expect("/32");
            t.local.insert(Route {
                kind: RouteKind::Broadcast,
                ..Route::new(bcast, None, dev, Proto::Kernel).with_src(addr)
            });
        }
        if is_lo {
            t.local.insert(local(net)); // the whole 127/8 is local
        } else if prefix < 32 {
            t.main.insert(Route::new(net, None, dev, Proto::Kernel).with_src(addr));
        }
    }

    /// `ip route replace ...` in MAIN. As the kernel does (`fib_check_nh`), a gateway must be
    /// reachable through a connected route on the same device unless the route is `onlink`;
    /// otherwise the route is refused with the kernel's message.
    pub fn add_route(&mut self, route: Route) -> Result<(), String> {
        let ns = self.devices[route.dev].ns;
        let hops: Vec<(Ipv4Addr, DevId)> = if route.ecmp.is_empty() {
            route.gateway.map(|g| (g, route.dev)).into_iter().collect()
        } else {
            route.ecmp.to_vec()
        };
        if !route.onlink {
            for (gw, dev) in hops {
                let connected = self.netns[ns]
                    .main
                    .lookup(gw)
                    .is_some_and(|r| r.gateway.is_none() && r.dev == dev && r.kind == RouteKind::Unicast);
                if !connected {
                    return Err(format!(
                        "ip route replace {} via {gw} dev {}: Error: Nexthop has invalid gateway.",
                        route.dst, self.devices[dev].name
                    ));
                }
            }
        }
        self.netns[ns].main.insert(route);
        Ok(())
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
