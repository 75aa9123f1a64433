//! The resolved cluster: what a scenario means once every name, unit and address is checked.
//!
//! `scenario` parses a file into a serde mirror of its text; `scenario::resolve` turns that
//! into a [`Cluster`], the only input the builder (`world`) accepts. Every invariant listed on
//! these types holds by construction: later stages never re-validate and never fail on input.

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::addr::Ipv4Net;
use crate::cost::CostProfile;
use crate::time::{Duration, Instant};
use crate::units::{Bandwidth, ByteSize};

mod policy;
mod service;

pub use policy::{PolicyFlow, PolicyPeer};
pub use service::{
    Endpoint, IpvsScheduler, Protocol, ProxyMode, Service, ServiceKind, ServicePort, ServiceTable,
    TrafficPolicy,
};

/// Index of a node in [`Cluster::nodes`].
pub type NodeId = usize;
/// Index of a pod in [`Cluster::pods`].
pub type PodId = usize;

/// A validated cluster, ready to build.
#[derive(Clone, Debug)]
pub struct Cluster {
    /// Scenario name; names the default output directory.
    pub name: String,
    /// A one-paragraph description shown at the top of the report (may be empty).
    pub description: String,
    pub seed: u64,
    /// Simulated time to run; events after it are not processed.
    pub duration: Duration,
    pub cni: Cni,
    /// Plugin options; the resulting pod MTU is already in each [`PodSpec::mtu`].
    pub cni_options: CniOptions,
    pub network: Network,
    /// Invariant: non-empty, names unique, IPs unique inside `network.node_cidr`.
    pub nodes: Vec<NodeSpec>,
    /// Invariant: names unique, each IP inside its node's pod subnet, none equal to the gateway.
    pub pods: Vec<PodSpec>,
    pub underlay: Underlay,
    /// Invariant: every flow's endpoints are distinct pods.
    pub workloads: Vec<Workload>,
    pub costs: CostProfile,
    /// How every node implements Services.
    pub proxy: ProxyMode,
    /// Services with their endpoints resolved from selectors (ready pods only), the scenario's
    /// own first, then the generated ones (`generated_services`).
    pub services: ServiceTable,
    /// Index of the first generated Service in `services.services` and how many there are.
    pub generated: (usize, usize),
    /// Changes during the run (pods deleted, nodes powered off, BIRD stopped), by time.
    pub changes: Vec<Change>,
    /// Calico's BGP speakers, when the scenario simulates them; `None`: the routes they
    /// would install are there from the start.
    pub bgp: Option<Bgp>,
    /// `nf_conntrack_max` per node; `None`: kube-proxy's max(32768 * cores, 131072).
    pub conntrack_max: Option<usize>,
    /// `masquerade_random_fully` of the scenario: `None` keeps each component's own choice.
    pub masquerade_random_fully: Option<bool>,
    /// The kernels' NAT port search is the one with rovers (before February 2022).
    pub nat_port_rovers: bool,
    /// The sweep `cnisim sweep` runs over this scenario.
    pub sweep: Option<SweepSpec>,
    /// The CNIs and proxy modes `cnisim compare` runs this scenario under.
    pub compare: Option<CompareSpec>,
    /// Hosts outside the cluster on the underlay (NodePort clients).
    pub externals: Vec<ExternalHost>,
    /// Namespaces (`default` always among them) and NetworkPolicy objects. Invariant: every
    /// pod's namespace is listed. The policies in force at the start: those of
    /// `policy_catalog` no `apply_policy` change creates later, in catalog order.
    pub policy: crate::policy::PolicyWorld,
    /// Every policy the scenario names (listed, then generated), whether in force at the start
    /// or created by a change.
    pub policy_catalog: Vec<crate::policy::NetworkPolicy>,
    /// The pod and its new labels of each `label_pod` change.
    pub label_changes: Vec<(PodId, BTreeMap<String, String>)>,
}

/// A machine on the node network that is not part of the cluster: no CNI, no proxy, outside
/// the cluster CIDR (so NodePort traffic from it is masqueraded under the Cluster policy).
#[derive(Clone, Debug, Serialize)]
pub struct ExternalHost {
    pub name: String,
    /// Invariant: on the node network (the first rack's subnet in a leaf-spine fabric), no
    /// node's address.
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub rack: usize,
    pub gateway: Option<Ipv4Addr>,
}

/// Who sends a flow's requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Client {
    Pod(PodId),
    /// An index into `Cluster::externals`.
    External(usize),
}

/// A change to the cluster during the run.
#[derive(Clone, Debug, Serialize)]
pub struct Change {
    pub at: Instant,
    pub what: ChangeKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// The pod's process exits; the endpoint controller removes it from every Service at
    /// once, and each node's proxy then syncs.
    DeletePod(PodId),
    /// The node loses power: nothing on it runs any more, frames reaching it are lost, its
    /// BGP peers notice only when their hold timers expire.
    PowerOff(NodeId),
    /// BIRD on the node shuts down gracefully: Cease NOTIFICATIONs, routes withdrawn at once.
    StopBird(NodeId),
    /// BIRD's process on the node dies and starts again in graceful-restart recovery.
    RestartBird(NodeId),
    /// The node joins the cluster: off until then (its pods unreachable, nothing on it
    /// running), it powers on with calico-node starting BIRD, and every peer's confd adds it
    /// to bird.cfg and reconfigures BIRD.
    JoinNode(NodeId),
    /// NetworkPolicy `Cluster::policy_catalog[i]` is created; each node's policy agent programs
    /// it when its watch event arrives and its previous work is done.
    ApplyPolicy(usize),
    /// NetworkPolicy `Cluster::policy_catalog[i]` is deleted.
    DeletePolicy(usize),
    /// `Cluster::label_changes[i]`: a pod's labels are replaced; the policy agents reprogram
    /// what selects it (Service endpoints stay as they were).
    LabelPod(usize),
}

/// Calico's BGP control plane, simulated (`bgp:` in the scenario). Invariant: only with a
/// CNI that runs BIRD ([`Cni::runs_bird`]) and not on a leaf-spine fabric with
/// `calico-bgp` (ToR peering is not modelled).
#[derive(Clone, Debug, Serialize)]
pub struct Bgp {
    pub as_number: u32,
    /// Nodes that are route reflectors; empty: the node-to-node mesh.
    pub reflectors: Vec<NodeId>,
    pub cluster_id: Ipv4Addr,
    pub timers: crate::bgp::Timers,
    /// Each BIRD starts at a uniform random time in `0..=start_spread`.
    pub start_spread: crate::time::Duration,
}

impl Bgp {
    /// The receive and transmit buffer of each BGP socket, bytes each. Linux's `tcp_rmem`
    /// default (128 KiB) is taken only as data waits; smoltcp allocates its buffers whole, so
    /// they are sized to what a session carries. In the mesh a peer sends its own blocks only,
    /// a few UPDATEs: 4 KiB, what BIRD 1.6 itself buffers per connection
    /// (`BGP_TX_BUFFER_SIZE`, `BGP_RX_BUFFER_SIZE`, proto/bgp/bgp.h), and a mesh of N nodes
    /// has N(N-1) sockets. A reflector sends every other node's routes to each client, and a
    /// client's BIRD reads a batch per wakeup: 16 KiB keeps the next batch waiting in the
    /// socket, as Linux's larger buffer does, for the k(N-1) sessions there are.
    pub fn socket_buffer(&self) -> usize {
        if self.reflectors.is_empty() {
            4 * 1024
        } else {
            16 * 1024
        }
    }

    /// Sessions in a cluster of `nodes`: one per pair in the mesh; with k reflectors, one per
    /// pair of reflectors and one per client per reflector.
    pub fn sessions(&self, nodes: usize) -> usize {
        let k = self.reflectors.len();
        if k == 0 {
            nodes * nodes.saturating_sub(1) / 2
        } else {
            k * (k - 1) / 2 + k * nodes.saturating_sub(k)
        }
    }

    /// Routes the speakers send one another to converge when every node originates `blocks`
    /// prefixes: in the mesh, every node's to every other node; with k reflectors, each
    /// client's to every reflector, and from every reflector every other node's routes to
    /// every peer but the route's source (with ADD-PATH, as Calico configures BIRD). Each is
    /// an Adj-RIB-Out entry at its sender and an Adj-RIB-In entry at its receiver: what grows
    /// with nodes x nodes. A 1,000-node cluster with 2 reflectors sends 1,997,998.
    pub fn routes_sent(&self, nodes: usize, blocks: u64) -> u64 {
        let (n, k) = (nodes as u64, self.reflectors.len() as u64);
        let per_block = if k == 0 {
            n.saturating_mul(n.saturating_sub(1))
        } else {
            let clients = n.saturating_sub(k).saturating_mul(k);
            let reflected = k.saturating_mul(n.saturating_sub(1)).saturating_mul(n.saturating_sub(1));
            clients.saturating_add(reflected)
        };
        per_block.saturating_mul(blocks)
    }
}

/// Address plan of the cluster. Invariant: the three ranges do not overlap.
#[derive(Clone, Debug, Serialize)]
pub struct Network {
    pub node_cidr: Ipv4Net,
    pub pod_cidr: Ipv4Net,
    pub service_cidr: Ipv4Net,
    /// Prefix length of each node's pod subnet (flannel's `SubnetLen`, default 24).
    pub node_subnet_prefix: u8,
}

#[derive(Clone, Debug, Serialize)]
pub struct NodeSpec {
    pub name: String,
    /// The node's address on the underlay (its `eth0`).
    pub ip: Ipv4Addr,
    /// Invariant: 1..=1024.
    pub cores: u32,
    pub nic_bandwidth: Bandwidth,
    /// MTU of the node's `eth0`. Invariant: at least 68 (RFC 791 minimum) and <= underlay MTU
    /// is *not* required: a mismatch is a real misconfiguration the simulation shows.
    pub mtu: u32,
    /// This node's pod subnet (one per node, in order, from `network.pod_cidr`).
    pub pod_subnet: Ipv4Net,
    /// Prefix length of the subnet `ip` is on (node_cidr's for one L2 switch, the rack's
    /// subnet in a leaf-spine fabric).
    pub prefix: u8,
    /// Index of the node's rack in [`Fabric::LeafSpine`] (0 with one L2 switch).
    pub rack: usize,
    /// Default gateway (the rack's ToR) in a leaf-spine fabric; none on one L2 switch.
    pub gateway: Option<Ipv4Addr>,
    /// The bounds of the node's kernel queues (sysctls and device queue lengths).
    pub kernel: KernelQueues,
}

/// The bounded queues of a node's kernel and its devices' offloads, each with Linux's default.
/// A scenario sets them per node (`sysctls: {"net.core.rmem_default": 425984}`, `txqueuelen:`,
/// `rx_ring:`, `offloads:`); `describe` prints them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelQueues {
    /// `net.core.rmem_default`: a socket's receive buffer in bytes, charged per skb truesize
    /// (212,992 by default: `SK_RMEM_MAX`, include/net/sock.h, set in `sock_init_data`).
    pub rmem_default: u32,
    /// `net.core.wmem_default`: a socket's send buffer in bytes, charged per skb truesize
    /// until the frame leaves the host (212,992: `SK_WMEM_MAX`).
    pub wmem_default: u32,
    /// `net.core.netdev_max_backlog`: packets the per-CPU input backlog holds (1,000,
    /// net/core/dev.c; drops counted in `/proc/net/softnet_stat`'s second column).
    pub netdev_max_backlog: u32,
    /// `txqueuelen` of the node's NIC: packets its qdisc holds (1,000, `DEFAULT_TX_QUEUE_LEN`
    /// in include/uapi/linux/if_ether.h, set by `ether_setup`).
    pub txqueuelen: u32,
    /// `txqueuelen` of tun devices (`flannel0`): 500 (`TUN_READQ_SIZE`, drivers/net/tun.c).
    pub tun_txqueuelen: u32,
    /// NIC receive ring, descriptors per queue (`ethtool -g`): 1,024, the default of mlx5
    /// (`MLX5E_PARAMS_DEFAULT_LOG_RQ_SIZE` = 10) and of ena; ixgbe and i40e ship 512.
    pub rx_ring: u32,
    /// The offloads of the node's devices (`ethtool -k`).
    pub offloads: Offloads,
    /// `net.ipv4.tcp_limit_output_bytes`: bytes of one TCP socket's skbs the qdisc and NIC may
    /// hold (TCP small queues): 4 MiB (`tcp_sk_init`, net/ipv4/tcp_ipv4.c, "Default TSQ limit
    /// of 4 MB"; 1 MiB before 2025).
    pub tcp_limit_output_bytes: u32,
}

/// Segmentation and receive offloads of a node's devices, as `ethtool -K` sets them. The pods'
/// veths and the node's bridge and tunnel devices pass GSO super-packets whole (veth, bridge,
/// vxlan and ipip all carry `NETIF_F_GSO_SOFTWARE`: drivers/net/veth.c `VETH_FEATURES`,
/// net/bridge/br_device.c `COMMON_FEATURES`, drivers/net/vxlan/vxlan_core.c `vxlan_setup`,
/// net/ipv4/ipip.c `IPIP_FEATURES`); the NIC segments them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offloads {
    /// `generic-segmentation-offload` (`tx-generic-segmentation`): TCP builds super-packets of
    /// up to 64 KB (on by default: every device gets `NETIF_F_GSO` in `register_netdevice`).
    /// Off, it sends one segment at a time.
    pub gso: bool,
    /// `tcp-segmentation-offload` (`tx-tcp-segmentation`) on the NIC: the NIC cuts a plain TCP
    /// super-packet in hardware; off, the kernel does in software (`validate_xmit_skb` ->
    /// `skb_gso_segment`). On by default: every common server and cloud NIC (mlx5, ixgbe,
    /// i40e, ena, virtio_net) offers it.
    pub tso: bool,
    /// `generic-receive-offload` (`rx-gro`) on the NIC: NAPI merges a flow's consecutive
    /// segments (`napi_gro_receive`). On by default (`NETIF_F_SOFT_FEATURES`).
    pub gro: bool,
    /// `tx-udp_tnl-segmentation`: the NIC segments VXLAN/Geneve super-packets. Off by default:
    /// Amazon's ena has no such feature (ena_netdev.c `ena_set_dev_offloads`) and virtio_net
    /// had none before `VIRTIO_NET_F_HOST_UDP_TUNNEL_GSO` (2025); mlx5 and ixgbe have it.
    pub tx_udp_tnl_segmentation: bool,
    /// `tx-ipxip4-segmentation`: the NIC segments IPIP super-packets. Off by default, as above
    /// (ena has none; ixgbe has it through `NETIF_F_GSO_PARTIAL`).
    pub tx_ipxip4_segmentation: bool,
}

impl Default for Offloads {
    fn default() -> Self {
        Offloads {
            gso: true,
            tso: true,
            gro: true,
            tx_udp_tnl_segmentation: false,
            tx_ipxip4_segmentation: false,
        }
    }
}

impl Default for KernelQueues {
    fn default() -> Self {
        KernelQueues {
            rmem_default: 212_992,
            wmem_default: 212_992,
            netdev_max_backlog: 1_000,
            txqueuelen: 1_000,
            tun_txqueuelen: 500,
            rx_ring: 1_024,
            offloads: Offloads::default(),
            tcp_limit_output_bytes: 4 << 20,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct PodSpec {
    pub name: String,
    pub node: NodeId,
    pub ip: Ipv4Addr,
    /// MTU of the pod's `eth0` (for flannel-host-gw the node MTU, as the bridge plugin sets it).
    pub mtu: u32,
    pub labels: BTreeMap<String, String>,
    /// The pod's namespace (`"default"` unless the scenario says otherwise); NetworkPolicy
    /// selects pods within it. Services still select pods of every namespace, as before
    /// namespaces existed.
    pub namespace: String,
}

/// Options of the CNI plugin.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CniOptions {
    /// Pod MTU asked for in the scenario; `None` means the backend's default
    /// ([`Cni::default_pod_mtu`]).
    pub mtu: Option<u32>,
    /// flannel-vxlan `DirectRouting`: skip encapsulation towards nodes on the same subnet.
    pub direct_routing: bool,
}

/// The physical network between nodes: its shape ([`Fabric`]) and the properties every cable
/// shares.
#[derive(Clone, Debug, Serialize)]
pub struct Underlay {
    pub fabric: Fabric,
    /// Rate of each switch port (the switch-to-node direction).
    pub bandwidth: Bandwidth,
    /// Propagation delay of each cable (node to switch, switch to node).
    pub propagation: Duration,
    /// Largest frame payload (L3 MTU) the switch forwards; larger frames are dropped.
    pub mtu: u32,
    /// Drop-tail queue per switch egress port (ToR and spine ports too), in bytes. A host
    /// NIC's transmit queue is its qdisc's `txqueuelen` packets instead.
    pub queue: ByteSize,
    /// Independent loss probability per frame per cable, in [0, 1).
    pub loss: f64,
    /// The fabric's routers filter ICMP: a packet too big for a ToR-spine link is dropped
    /// without the "fragmentation needed" that path MTU discovery needs (the black hole of
    /// RFC 2923 sec. 2.1).
    pub filter_icmp: bool,
}

/// The shape of the underlay.
#[derive(Clone, Debug, Serialize)]
pub enum Fabric {
    /// One learning L2 switch; every node's `eth0` on `network.node_cidr`, one cable each.
    L2Switch,
    /// A routed leaf-spine fabric: each rack is an L2 segment (a switch) whose ToR router is
    /// the nodes' gateway; every ToR has one cable to every spine; ToRs reach other racks
    /// through the spines with ECMP by flow hash.
    LeafSpine {
        /// Invariant: non-empty; nodes refer to racks by index.
        racks: Vec<Rack>,
        /// Invariant: >= 1.
        spines: u32,
        /// Rate of each ToR-spine cable.
        uplink: Bandwidth,
        /// Addresses for the ToR-spine point-to-point /31s. Invariant: holds 2 * racks *
        /// spines addresses and overlaps no other range of the cluster.
        fabric_cidr: Ipv4Net,
        /// MTU of the ToR-spine links. Invariant: 68..=65535.
        uplink_mtu: u32,
    },
}

#[derive(Clone, Debug, Serialize)]
pub struct Rack {
    /// "rack-1", "rack-2", ...
    pub name: String,
    /// The rack's node subnet, carved from `network.node_cidr`.
    pub subnet: Ipv4Net,
    /// The ToR's address on the rack subnet (its first host address); nodes route via it.
    pub gateway: Ipv4Addr,
}

/// Where a flow's datagrams go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// A pod's own address.
    Pod(PodId),
    /// A Service's cluster IP and port (indices into `Cluster::services`).
    Service { service: usize, port: usize },
    /// A node's address at a NodePort Service's node port.
    NodePort { service: usize, port: usize, node: NodeId },
    /// Every new connection picks one of `count` Services from `first`, uniformly (the
    /// generated Services of a rule-scaling scenario).
    AnyService { first: usize, count: usize },
    /// A host outside the cluster (`Cluster::externals`), at the workload's port.
    External(usize),
}

/// One traffic generator and the flows it drives.
#[derive(Clone, Debug, Serialize)]
pub struct Workload {
    pub name: String,
    pub kind: WorkloadKind,
    /// (client, target) pairs; one flow each. Invariant: non-empty, a pod never targets
    /// itself.
    pub flows: Vec<(Client, Target)>,
    /// Destination UDP port on a server pod (pod targets; Services use their own ports).
    pub port: u16,
    /// Request/response: each request opens a new connection (a new socket and source port,
    /// so conntrack sees a new 5-tuple and the proxy's first-packet path runs every time);
    /// otherwise one connected socket is reused for the whole run.
    pub new_connection_per_request: bool,
    pub start: Instant,
    /// How long the generator runs from `start`.
    pub duration: Duration,
    /// Sockets use IP_PMTUDISC_DO (EMSGSIZE above the path MTU) instead of the default
    /// IP_PMTUDISC_WANT (fragment locally).
    pub dont_fragment: bool,
}

/// The largest UDP payload an IPv4 datagram holds: 65,535 minus 20 B of IPv4 and 8 B of UDP
/// header.
pub const MAX_UDP_PAYLOAD: u32 = 65_507;

/// IPv4 and UDP headers: a datagram of `payload` bytes needs an MTU of `payload + 28`.
pub const UDP_IP_HEADERS: u32 = 28;

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkloadKind {
    /// Constant bit rate UDP, one datagram of `payload` bytes every `payload * 8 / rate`.
    /// Invariant: rate > 0, payload fits the client pod's MTU minus 28 B of IPv4+UDP unless
    /// the scenario wants fragmentation (not modelled yet: resolve rejects it).
    UdpCbr { rate: Bandwidth, payload: u32 },
    /// Closed-loop UDP request/response: send `request` bytes, wait for `response` bytes back
    /// (or `timeout`), wait `think`, repeat.
    UdpRr { request: u32, response: u32, think: Duration, timeout: Duration },
    /// UDP as fast as the socket allows (iperf3 `-u -b 0`): the next datagram as soon as
    /// `sendmsg` returns and the send buffer has room.
    UdpStream { payload: u32 },
    /// TCP bulk transfer as iperf3 does it: `streams` parallel connections per (client,
    /// server) pair, each writing `write` bytes per `send()` (iperf3's `-l`, 128 KiB by
    /// default) as fast as the socket takes them, for the workload's duration.
    TcpStream { streams: u32, write: u32 },
    /// netperf TCP_RR: one connection; `request` bytes, then `response` bytes back, repeated
    /// at once.
    TcpRr { request: u32, response: u32 },
    /// netperf TCP_CRR: connect, `request` bytes, `response` bytes back, close, repeated: every
    /// transaction is a new connection (a new SYN through the proxy's first-packet path).
    TcpCrr { request: u32, response: u32 },
}

/// `net.ipv4.tcp_rmem`'s maximum, 6 MiB (`tcp_init` sets it to 6 MiB when memory allows,
/// net/ipv4/tcp.c; Documentation/networking/ip-sysctl.rst): where receive autotuning ends.
/// smoltcp's buffers do not grow, so every TCP socket's receive buffer is this from the start.
pub const TCP_RMEM_MAX: u32 = 6 * 1024 * 1024;
/// `net.ipv4.tcp_wmem`'s maximum, 4 MiB (ip-sysctl.rst): where send autotuning ends; every
/// TCP socket's send buffer.
pub const TCP_WMEM_MAX: u32 = 4 * 1024 * 1024;
/// iperf3's default write size for TCP (`-l`), 128 KiB (`DEFAULT_TCP_BLKSIZE`, src/iperf.h).
pub const IPERF3_TCP_WRITE: u32 = 128 * 1024;

impl WorkloadKind {
    /// Whether the workload runs over TCP (smoltcp sockets) rather than UDP datagrams.
    pub fn is_tcp(&self) -> bool {
        matches!(
            self,
            WorkloadKind::TcpStream { .. } | WorkloadKind::TcpRr { .. } | WorkloadKind::TcpCrr { .. }
        )
    }
}

/// The CNI identifiers of DESIGN.md; `cni::build` builds each of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Cni {
    FlannelUdp,
    FlannelVxlan,
    FlannelHostGw,
    CalicoBgp,
    CalicoIpip,
    CalicoIpipCrossSubnet,
    CalicoVxlan,
    CalicoVxlanCrossSubnet,
    CiliumVxlan,
    CiliumGeneve,
    CiliumNative,
    WeaveSleeve,
    WeaveFastdp,
    Macvlan,
    IpvlanL3,
}

impl Cni {
    /// Whether the plugin runs BIRD, Calico's BGP speaker: its BGP modes (calico-node's
    /// `CALICO_NETWORKING_BACKEND=bird`); the VXLAN modes program routes from Felix and run
    /// without it (Calico docs, "Configure BGP peering": VXLAN "does not use BGP").
    pub fn runs_bird(self) -> bool {
        matches!(self, Cni::CalicoBgp | Cni::CalicoIpip | Cni::CalicoIpipCrossSubnet)
    }

    /// Whether the plugin enforces NetworkPolicy on a real cluster: Calico (Felix), Cilium
    /// and Weave (weave-npc) do; flannel, macvlan and ipvlan have no policy engine, so the API
    /// accepts policies that nothing enforces.
    pub fn enforces_network_policy(self) -> bool {
        matches!(
            self,
            Cni::CalicoBgp
                | Cni::CalicoIpip
                | Cni::CalicoIpipCrossSubnet
                | Cni::CalicoVxlan
                | Cni::CalicoVxlanCrossSubnet
                | Cni::CiliumVxlan
                | Cni::CiliumGeneve
                | Cni::CiliumNative
                | Cni::WeaveSleeve
                | Cni::WeaveFastdp
        )
    }

    /// The policy engine cnisim runs for this plugin, as summary.json names it; `None`: the
    /// plugin has none.
    pub fn policy_engine(self) -> Option<&'static str> {
        if !self.enforces_network_policy() {
            return None;
        }
        Some(match self {
            Cni::CiliumVxlan | Cni::CiliumGeneve | Cni::CiliumNative => "cilium-bpf-policymap",
            Cni::WeaveSleeve | Cni::WeaveFastdp => "weave-npc-iptables",
            _ => "calico-felix-iptables",
        })
    }

    /// How the plugin reads NetworkPolicy where the API leaves a choice or the plugin departs
    /// from it (the oracle's [`crate::policy::Semantics`]).
    pub fn policy_semantics(self) -> crate::policy::Semantics {
        match self {
            Cni::CiliumVxlan | Cni::CiliumGeneve | Cni::CiliumNative => crate::policy::Semantics::CILIUM,
            Cni::WeaveSleeve | Cni::WeaveFastdp => crate::policy::Semantics::WEAVE_NPC,
            _ => crate::policy::Semantics::API,
        }
    }

    pub const ALL: [Cni; 15] = [
        Cni::FlannelUdp,
        Cni::FlannelVxlan,
        Cni::FlannelHostGw,
        Cni::CalicoBgp,
        Cni::CalicoIpip,
        Cni::CalicoIpipCrossSubnet,
        Cni::CalicoVxlan,
        Cni::CalicoVxlanCrossSubnet,
        Cni::CiliumVxlan,
        Cni::CiliumGeneve,
        Cni::CiliumNative,
        Cni::WeaveSleeve,
        Cni::WeaveFastdp,
        Cni::Macvlan,
        Cni::IpvlanL3,
    ];

    pub fn id(self) -> &'static str {
        match self {
            Cni::FlannelUdp => "flannel-udp",
            Cni::FlannelVxlan => "flannel-vxlan",
            Cni::FlannelHostGw => "flannel-host-gw",
            Cni::CalicoBgp => "calico-bgp",
            Cni::CalicoIpip => "calico-ipip",
            Cni::CalicoIpipCrossSubnet => "calico-ipip-crosssubnet",
            Cni::CalicoVxlan => "calico-vxlan",
            Cni::CalicoVxlanCrossSubnet => "calico-vxlan-crosssubnet",
            Cni::CiliumVxlan => "cilium-vxlan",
            Cni::CiliumGeneve => "cilium-geneve",
            Cni::CiliumNative => "cilium-native",
            Cni::WeaveSleeve => "weave-sleeve",
            Cni::WeaveFastdp => "weave-fastdp",
            Cni::Macvlan => "macvlan",
            Cni::IpvlanL3 => "ipvlan-l3",
        }
    }

    /// Whether the plugin masquerades pod traffic leaving the cluster network to the node's
    /// address: flannel's `--ip-masq` (kube-flannel.yml sets it), Calico's IP pool
    /// `natOutgoing` (true for the default pool), Cilium's `enable-ipv4-masquerade` (default
    /// true), Weave's NAT of traffic leaving the weave network. macvlan and ipvlan pods leave
    /// through their own interface, unmasqueraded.
    pub fn masquerades_outgoing(self) -> bool {
        !matches!(self, Cni::Macvlan | Cni::IpvlanL3)
    }

    /// Whether that MASQUERADE rule has `--random-fully`, as the plugin writes it on a node
    /// whose iptables has it (1.6.2 and later): flannel since v0.11.0 (`masqRules`,
    /// pkg/trafficmngr/iptables/iptables.go: `ipt.HasRandomFully()`); Calico's Felix when
    /// `MASQFullyRandom` is detected (iptables >= 1.6.2, kernel >= 3.14:
    /// felix/environment/feature_detect_linux.go); not Weave (plain `-j MASQUERADE` in the
    /// WEAVE chain, net/expose.go) nor Cilium's iptables masquerading
    /// (`--iptables-random-fully` defaults to false, pkg/datapath/iptables).
    pub fn masquerade_random_fully(self) -> bool {
        match self {
            Cni::FlannelUdp | Cni::FlannelVxlan | Cni::FlannelHostGw => true,
            Cni::CalicoBgp
            | Cni::CalicoIpip
            | Cni::CalicoIpipCrossSubnet
            | Cni::CalicoVxlan
            | Cni::CalicoVxlanCrossSubnet => true,
            Cni::WeaveSleeve | Cni::WeaveFastdp => false,
            Cni::CiliumVxlan | Cni::CiliumGeneve | Cni::CiliumNative => false,
            Cni::Macvlan | Cni::IpvlanL3 => false,
        }
    }

    /// The pod MTU the plugin configures by default on a node whose `eth0` has `node_mtu`.
    /// Overlays subtract their per-packet overhead (flannel Documentation/backends.md, Calico
    /// docs "Configure MTU"); Cilium keeps the link MTU on the pod device and lowers the route
    /// MTU instead (cilium pkg/mtu); Weave uses a fixed 1376 (weave docs, fastdp.md).
    pub fn default_pod_mtu(self, node_mtu: u32) -> u32 {
        match self {
            Cni::FlannelUdp => node_mtu.saturating_sub(28),
            Cni::FlannelVxlan | Cni::CalicoVxlan | Cni::CalicoVxlanCrossSubnet => node_mtu.saturating_sub(50),
            Cni::CalicoIpip | Cni::CalicoIpipCrossSubnet => node_mtu.saturating_sub(20),
            Cni::WeaveSleeve | Cni::WeaveFastdp => 1376,
            Cni::FlannelHostGw
            | Cni::CalicoBgp
            | Cni::CiliumVxlan
            | Cni::CiliumGeneve
            | Cni::CiliumNative
            | Cni::Macvlan
            | Cni::IpvlanL3 => node_mtu,
        }
    }
}

impl FromStr for Cni {
    type Err = String;
    fn from_str(s: &str) -> Result<Cni, String> {
        Cni::ALL.into_iter().find(|c| c.id() == s).ok_or_else(|| {
            let all = Cni::ALL.iter().map(|c| c.id()).collect::<Vec<_>>().join(", ");
            format!("unknown CNI '{s}', expected one of: {all}")
        })
    }
}

impl fmt::Display for Cni {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

impl Serialize for Cni {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.id())
    }
}

impl Cluster {
    /// Whether each node joins later (`join_node`) rather than being there from the start.
    pub fn joining(&self) -> Vec<bool> {
        let mut j = vec![false; self.nodes.len()];
        for c in &self.changes {
            if let ChangeKind::JoinNode(n) = c.what {
                j[n] = true;
            }
        }
        j
    }

    pub fn node_by_name(&self, name: &str) -> Option<NodeId> {
        self.nodes.iter().position(|n| n.name == name)
    }
    pub fn pod_by_name(&self, name: &str) -> Option<PodId> {
        self.pods.iter().position(|p| p.name == name)
    }
    /// The gateway address of a node's pod subnet (the first host address, held by `cni0`).
    pub fn pod_gateway(&self, node: NodeId) -> Ipv4Addr {
        self.nodes[node].pod_subnet.nth(1).expect("pod subnets hold at least 2 addresses")
    }
}

/// What a sweep varies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Parameter {
    /// `generated_services.count`.
    Services,
    /// `generated_services.endpoints`.
    Endpoints,
    /// Every workload's payload (`UdpCbr`/`UdpStream` `payload`, `UdpRr` `request`), bytes.
    Payload,
    /// `nodes: Count(count)`.
    Nodes,
    /// `pods_per_node`.
    PodsPerNode,
    /// `generated_policies.count`.
    Policies,
}

impl Parameter {
    pub const ALL: [Parameter; 6] = [
        Parameter::Services,
        Parameter::Endpoints,
        Parameter::Payload,
        Parameter::Nodes,
        Parameter::PodsPerNode,
        Parameter::Policies,
    ];

    /// The word the scenario file uses.
    pub fn id(self) -> &'static str {
        match self {
            Parameter::Services => "services",
            Parameter::Endpoints => "endpoints",
            Parameter::Payload => "payload",
            Parameter::Nodes => "nodes",
            Parameter::PodsPerNode => "pods_per_node",
            Parameter::Policies => "policies",
        }
    }

    /// Whether the parameter varies the Services (`generated_services`) rather than the data
    /// path (payload, nodes, pods).
    pub fn is_service(self) -> bool {
        matches!(self, Parameter::Services | Parameter::Endpoints)
    }
}

/// A resolved `sweep:` section.
#[derive(Clone, Debug)]
pub struct SweepSpec {
    pub parameter: Parameter,
    pub values: Vec<u32>,
    pub proxies: Vec<ProxyMode>,
    /// The CNIs to run every point under, in the file's order; empty: the scenario's own.
    pub cnis: Vec<Cni>,
    /// The BGP topologies to run every point under, in the file's order; empty: the file's.
    pub bgp: Vec<BgpTopology>,
}

/// How a sweep point's BIRD speakers peer (`sweep.bgp`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BgpTopology {
    /// The node-to-node mesh.
    Mesh,
    /// The first N nodes are route reflectors, every other node their client.
    Reflectors(u32),
}

impl BgpTopology {
    /// The word the scenario file uses: `"mesh"`, `"rr:2"`.
    pub fn id(self) -> String {
        match self {
            BgpTopology::Mesh => "mesh".into(),
            BgpTopology::Reflectors(n) => format!("rr:{n}"),
        }
    }
}

impl std::str::FromStr for BgpTopology {
    type Err = String;
    fn from_str(s: &str) -> Result<BgpTopology, String> {
        if s == "mesh" {
            return Ok(BgpTopology::Mesh);
        }
        match s.strip_prefix("rr:").map(str::parse::<u32>) {
            Some(Ok(n)) if n > 0 => Ok(BgpTopology::Reflectors(n)),
            _ => Err(format!(
                "unknown BGP topology '{s}': write \"mesh\" or \"rr:N\" with N >= 1 route reflectors, e.g. \"rr:2\""
            )),
        }
    }
}

/// A resolved `compare:` section: what `cnisim compare` runs the scenario under, in the order
/// the file lists them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompareSpec {
    /// Invariant: non-empty, no CNI twice.
    pub cnis: Vec<Cni>,
    /// No mode twice; empty: the scenario's own `proxy` only.
    pub proxies: Vec<ProxyMode>,
}
