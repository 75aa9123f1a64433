//! The cost profile: what each kernel operation costs a CPU core, in simulated time.
//!
//! Costs are data, not code. Every per-packet step of the data plane charges one of these
//! fields to the core its flow is pinned to (see `datapath::cpu`). The defaults describe one
//! modern x86 server core (3 GHz class); with TSO/GSO and GRO a super-packet pays the per-packet
//! entries once (`gso_segment`, `gro_receive` and `nic_rx` are per segment); each carries
//! its source or the reasoning behind it. A scenario overrides any subset with a `costs:`
//! section; fields it leaves out keep these defaults.

use serde::{Deserialize, Serialize};

use crate::time::Duration;

/// Per-operation CPU costs. See the module docs; every field is a cost on one core.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CostProfile {
    /// `sendmsg()` on a UDP socket: syscall entry/exit, socket lookup, UDP and IPv4 output up to
    /// the route lookup. ~1 us: a single core sends about 1 Mpps of small UDP datagrams through
    /// `sendmsg` (netperf/pktgen comparisons; Brouer, "Network stack challenges at increasing
    /// speeds", netdev 0.1, 2015).
    pub udp_send: Duration,
    /// UDP receive path in softirq from `ip_local_deliver` to the socket's queue: socket
    /// lookup, `__udp_enqueue_schedule_skb` (memory charge, queue) and the reader's wake-up.
    /// ~400 ns; with `udp_recvmsg` the whole receive side is ~1 us, symmetric with the send.
    pub udp_deliver: Duration,
    /// The application's `recvmsg()` on a UDP socket: syscall entry/exit, dequeue, skb free;
    /// the payload copy is `copy_per_kib`. ~600 ns (a syscall is ~500 ns, see `syscall`).
    pub udp_recvmsg: Duration,
    /// `sendmsg()`/`write()` on a TCP socket, per call: syscall entry and exit, `tcp_sendmsg_locked`
    /// (skb allocation into the write queue, `sk_stream_memory_free`), without the copy
    /// (`copy_per_kib`) and without the segments' transmission (`tcp_xmit`). ~1 us, like a
    /// UDP `sendmsg` (see `udp_send`).
    pub tcp_sendmsg: Duration,
    /// Transmitting one TCP segment (`tcp_write_xmit` -> `tcp_transmit_skb`: header and options
    /// build, checksum, `ip_queue_xmit` up to the route lookup), data or pure ACK. ~500 ns:
    /// with TSO and GSO off, the per-segment send path is the larger part of a bulk sender's
    /// CPU (Cai et al., "Understanding Host Network Stack Overheads", SIGCOMM 2021, sec. 3).
    pub tcp_xmit: Duration,
    /// Receiving one TCP segment in softirq (`tcp_v4_rcv`: socket lookup, `tcp_rcv_established`
    /// fast path, ACK processing, queueing to the receive queue and waking the reader). ~600 ns,
    /// a little more than UDP's delivery (`udp_deliver`) for the ACK and window bookkeeping.
    pub tcp_rcv: Duration,
    /// `recvmsg()`/`read()` on a TCP socket, per call: syscall entry and exit,
    /// `tcp_recvmsg_locked` walking the receive queue and freeing skbs, the window update
    /// check; the copy is `copy_per_kib`. ~600 ns, like `udp_recvmsg`.
    pub tcp_recvmsg: Duration,
    /// Copying payload between user and kernel space, per KiB (memcpy at ~10 GB/s: ~100 ns/KiB).
    pub copy_per_kib: Duration,
    /// `veth_xmit()` handing a frame to the peer and `netif_rx()` on the other side (one
    /// softirq enqueue and dequeue). ~300 ns: veth pairs forward roughly 3 Mpps per core
    /// without XDP (veth XDP patch series benchmarks, 2018).
    pub veth_xmit: Duration,
    /// Bridge input: `br_handle_frame`, FDB lookup (hash), MAC learning, forward or local
    /// delivery. ~150 ns (a hash lookup plus bookkeeping; bridge forwarding is ~2x cheaper than
    /// routing in kernel benchmarks).
    pub bridge_forward: Duration,
    /// IPv4 receive processing before routing (`ip_rcv`, header checks, empty netfilter hooks).
    /// ~200 ns.
    pub ip_rcv: Duration,
    /// One FIB lookup in the LC-trie (`fib_table_lookup`): ~50 ns for tables of this size
    /// (Alexander Duyck's 2015 FIB trie rework measured ~30-60 ns per lookup).
    pub fib_lookup: Duration,
    /// Forwarding a routed packet (`ip_forward`, TTL decrement, checksum update, `ip_output`).
    /// ~150 ns.
    pub ip_forward: Duration,
    /// Neighbour lookup and L2 header build (`neigh_output`, hh cache hit). ~50 ns.
    pub neigh_output: Duration,
    /// Processing one ARP packet (`arp_rcv`, `arp_process`, neighbour update, reply build).
    /// ~500 ns.
    pub arp_process: Duration,
    /// NIC driver transmit (`ndo_start_xmit`, descriptor write, doorbell amortised). ~250 ns.
    pub nic_xmit: Duration,
    /// NIC receive (NAPI poll, skb allocation, `netif_receive_skb`), without GRO batching
    /// benefits. ~350 ns.
    pub nic_rx: Duration,
    /// IPIP encapsulation (`ipip_tunnel_xmit`: headroom, outer header build, tunnel route
    /// lookup). ~250 ns: a 20-byte header with no UDP layer, cheaper than VXLAN.
    pub ipip_encap: Duration,
    /// IPIP decapsulation (`ipip_rcv`: tunnel lookup, header pull, re-inject). ~200 ns.
    pub ipip_decap: Duration,
    /// VXLAN/Geneve encapsulation (`vxlan_xmit_one`: FDB lookup, route to the remote VTEP,
    /// outer Ethernet/IPv4/UDP/VXLAN build, source-port hash, UDP checksum). ~600 ns: the
    /// heaviest of the kernel encapsulations; overlay benchmarks put VXLAN's per-packet CPU
    /// cost at roughly 1.5-2x plain forwarding.
    pub vxlan_encap: Duration,
    /// VXLAN/Geneve decapsulation (UDP socket lookup, `vxlan_rcv`, header pull, GRO cells
    /// re-inject). ~450 ns.
    pub vxlan_decap: Duration,
    /// One run of a Cilium tc eBPF program with its map lookups (endpoint, ipcache, policy)
    /// and the redirect. ~150 ns: JIT-compiled programs doing a few hash lookups (Cilium
    /// performance docs report the BPF datapath below the cost of the iptables path it skips).
    pub ebpf_prog: Duration,
    /// One lookup in a Cilium endpoint's policy map (`cilium_policy_v2`, a
    /// `BPF_MAP_TYPE_LPM_TRIE`; bpf/lib/policy.h): a policy check is two (the identity's
    /// entry, then the wildcard identity's), or one when the first finds a deny, for every
    /// packet that is not a reply, whatever the number of policies. ~50 ns, as `hash_lookup`:
    /// a trie of tens of entries walked a few nodes deep; Cloudflare's measurements of the
    /// kernel's LPM trie (Fleming and Brouer, "A deep dive into BPF LPM trie performance and
    /// optimization", 2025) find lookups fast at such sizes and slow only at millions of
    /// entries. `ebpf_prog` covers the program's other lookups (endpoint, ipcache, CT).
    pub ebpf_policy_lookup: Duration,
    /// macvlan/ipvlan forwarding between a sub-interface and its lower device (a hash lookup
    /// of the destination MAC or IP; no bridge, no netfilter). ~150 ns.
    pub macvlan_forward: Duration,
    /// Waking a userspace process and switching to it (scheduler wake-up, context switch,
    /// cache and TLB effects): ~2 us (Li, Ding and Shen, "Quantifying the cost of context
    /// switch", ExpCS 2007: 1.2-3 us direct plus indirect cost).
    pub context_switch: Duration,
    /// One syscall moving a packet between kernel and a userspace process (`read`/`write` on a
    /// tun, `recvfrom`/`sendto`), entry and exit plus fd lookup, excluding the copy. ~500 ns.
    pub syscall: Duration,
    /// An Open vSwitch kernel datapath flow-table hit (megaflow cache lookup and actions).
    /// ~250 ns (OVS datapath papers: Pfaff et al., "The Design and Implementation of Open
    /// vSwitch", NSDI 2015, hundreds of ns per packet on a cache hit).
    pub ovs_flow: Duration,
    /// Software segmentation, per segment produced (`skb_gso_segment` -> `tcp_gso_segment`,
    /// `skb_udp_tunnel_segment`: an skb head allocated, the headers copied and fixed up, the
    /// payload shared as page fragments, checksums left to the NIC): what a device without the
    /// matching offload (`tx-udp_tnl-segmentation` for VXLAN, `tcp-segmentation-offload` on the
    /// NIC, a tun without `IFF_VNET_HDR`) costs a super-packet. ~200 ns, an estimate: the work
    /// of producing an IPv4 fragment (`ip_fragment`); no published per-segment figure was found
    /// (docs/research/offloads.md). The TCP stack, veth, bridge, netfilter and routing are
    /// charged once per super-packet, their per-packet entries above; the payload's per-byte
    /// cost is `copy_per_kib`, at the sender's `write()` and the receiver's `read()`.
    pub gso_segment: Duration,
    /// GRO, per segment merged into a held packet (`napi_gro_receive` -> `inet_gro_receive` ->
    /// `tcp_gro_receive`, and `udp_gro_receive`/`vxlan_gro_receive` under a tunnel: the flow
    /// lookup in `napi->gro_hash`, header compares, the payload appended as a page fragment),
    /// on top of the driver's `nic_rx` for the segment. ~100 ns, an estimate (no published
    /// figure found): a few cache-hot header compares; the stack above then runs once for
    /// the merged packet.
    pub gro_receive: Duration,
    /// Producing one IPv4 fragment (`ip_do_fragment`: header copy, checksum, skb split). ~200 ns.
    pub ip_fragment: Duration,
    /// Queueing one fragment for reassembly (`ip_defrag`: hash lookup, rbtree insert, the final
    /// coalesce amortised). ~300 ns.
    pub ip_reassemble: Duration,
    /// Conntrack lookup of a packet in a namespace with connection tracking
    /// (`nf_conntrack_in`: tuple hash, bucket walk, refresh). ~80 ns.
    pub conntrack_lookup: Duration,
    /// Creating a conntrack entry for a new connection (`nf_conntrack_alloc`, NAT binding,
    /// `__nf_conntrack_confirm` into both hash chains). ~500 ns: an allocation, two hash
    /// insertions and a spinlock.
    pub conntrack_new: Duration,
    /// Rewriting a packet's addresses and ports from its NAT binding (`nf_nat_packet`:
    /// manip plus incremental checksum update). ~60 ns.
    pub nat_rewrite: Duration,
    /// One iptables rule evaluated (`ipt_do_table`: `ip_packet_match` on the 5-tuple, then any
    /// match extensions such as `-m udp`, `-m comment`). ~25 ns: the rule walk is a linear
    /// scan of compact structs, so tens of ns per rule; this is what makes long KUBE-SERVICES
    /// chains costly.
    pub iptables_rule: Duration,
    /// One hash-table lookup on the packet path (ipset test, IPVS service or connection
    /// table, nftables set/map element, BPF hash map). ~50 ns.
    pub hash_lookup: Duration,
    /// Cilium's socket LB translating at connect()/sendmsg() (`cgroup/connect4`: service and
    /// backend map lookups, sockaddr rewrite). ~300 ns, once per connection.
    pub sock_lb: Duration,
    /// Fixed cost of one proxy sync (informer snapshot, change tracking, building the
    /// restore payload): ~2 ms for kube-proxy.
    pub proxy_sync_base: Duration,
    /// kube-proxy's per-sync work for every Service port, changed or not (Go map iteration,
    /// endpoint categorisation, the change check): ~1 us. Large clusters report iptables
    /// syncs approaching a second and more at tens of thousands of Services (KEP-3453), which
    /// this and the two iptables costs below reproduce in order of magnitude.
    pub proxy_sync_per_service: Duration,
    /// iptables-restore parsing and translating one line of input. ~2 us.
    pub iptables_restore_line: Duration,
    /// The kernel replacing the table, per rule in it (iptables-legacy `do_replace` copies and
    /// checks the whole table blob, `translate_table`). ~0.3 us.
    pub iptables_replace_rule: Duration,
    /// One netlink object added or removed (IPVS real server, ipset entry, nftables element,
    /// with the transaction commit amortised). ~10 us.
    pub netlink_object: Duration,
    /// One IPVS virtual server in the netlink dump the IPVS proxier reads every sync. ~1 us.
    pub netlink_dump_entry: Duration,
    /// One BPF map update from Cilium's agent (`bpf(BPF_MAP_UPDATE_ELEM)` syscall). ~2 us.
    pub bpf_map_update: Duration,
    /// Cilium's agent handling one Service or EndpointSlice change before its map updates:
    /// the watcher event decoded, the service manager's upsert, the datapath transaction.
    /// ~2 ms: what the agent's `service_implementation_delay` metric (Cilium metrics docs:
    /// "duration ... to propagate the data plane programming of a service ... excluding the
    /// event queue latency") reports in the milliseconds on healthy clusters.
    pub cilium_service_update: Duration,
    /// BIRD handling one BGP message, received or sent: the socket read or write, the header
    /// and attribute parsing or encoding (`bgp_rx_packet`, `bgp_create_update`), timers
    /// restarted. ~5 us, an estimate: a syscall (~0.5 us, see `syscall`) and a few thousand
    /// instructions of BIRD's packet code per message.
    pub bird_message: Duration,
    /// BIRD taking one route through a protocol: import filter, `rte_update` into the table,
    /// best-path selection, the export filters of the kernel protocol and of every peer it is
    /// sent to (`rt_notify`). ~10 us, an estimate: BIRD route servers are reported to load a
    /// full Internet table (~10^6 routes) from one peer in the order of ten seconds on one
    /// core. Installing the route into the kernel is `netlink_object` on top.
    pub bird_route: Duration,
    /// The API server's watch event reaching a node's policy agent after a NetworkPolicy is
    /// created or deleted: a delay, not CPU. ~10 ms, an estimate: Kubernetes has no watch
    /// latency SLO (sig-scalability `slos/watch_latency.md`: "we would like to provide some
    /// guarantees on watch latency ... we are not there yet"); on an unloaded API server the
    /// event is sent once etcd has stored the object.
    pub policy_watch_delay: Duration,
    /// Felix's dataplane `apply()` for a policy change, besides the lines it writes: the
    /// calculation graph's flush (`felix/calc/async_calc_graph.go`), rendering the changed
    /// chains, starting `iptables-restore --noflush` and `ipset restore`
    /// (`felix/iptables/table.go` `execIptablesRestore`, `felix/ipsets`). ~10 ms: Felix logs
    /// `msecToApply` of 12 to 73 ms for the filter table on busy nodes
    /// (projectcalico/calico#4254), which `iptables_restore_line` and `iptables_replace_rule`
    /// add to here. Felix admits a burst of 10 applies, then 10 per second
    /// (`int_dataplane.go`: `applyThrottle: throttle.New(10)`, refilled every 100 ms), which
    /// a few changes in a run never reach.
    pub felix_policy_apply: Duration,
    /// weave-npc running one `iptables` or `ipset` command (fork and exec of the binary, taking
    /// the xtables lock): it runs one per rule and per ipset entry it adds or removes, in the
    /// informer's handler (`npc/rule.go`, `net/ipset/ipset.go` `doExec`). ~2 ms, an estimate; an
    /// `iptables` command also copies the whole table out and back (`iptables_replace_rule`
    /// per rule), which is what makes a sequence of them O(n^2) (projectcalico/felix#227).
    pub weave_npc_command: Duration,
    /// cilium-agent regenerating one endpoint for a policy change: policy recomputed, its
    /// policy map synced (`bpf_map_update` per entry on top), no BPF recompile
    /// (`RegenerateWithoutDatapath`: `realizeBPFState` compiles only above that level). ~2 ms,
    /// an estimate consistent with `policy_implementation_delay`'s p50 of about 10 ms
    /// (cilium/cilium#47287) for a handful of endpoints.
    pub cilium_endpoint_regeneration: Duration,
}

impl Default for CostProfile {
    fn default() -> Self {
        CostProfile {
            udp_send: Duration::from_nanos(1_000),
            udp_deliver: Duration::from_nanos(400),
            udp_recvmsg: Duration::from_nanos(600),
            tcp_sendmsg: Duration::from_nanos(1_000),
            tcp_xmit: Duration::from_nanos(500),
            tcp_rcv: Duration::from_nanos(600),
            tcp_recvmsg: Duration::from_nanos(600),
            copy_per_kib: Duration::from_nanos(100),
            veth_xmit: Duration::from_nanos(300),
            bridge_forward: Duration::from_nanos(150),
            ip_rcv: Duration::from_nanos(200),
            fib_lookup: Duration::from_nanos(50),
            ip_forward: Duration::from_nanos(150),
            neigh_output: Duration::from_nanos(50),
            arp_process: Duration::from_nanos(500),
            nic_xmit: Duration::from_nanos(250),
            nic_rx: Duration::from_nanos(350),
            ipip_encap: Duration::from_nanos(250),
            ipip_decap: Duration::from_nanos(200),
            vxlan_encap: Duration::from_nanos(600),
            vxlan_decap: Duration::from_nanos(450),
            ebpf_prog: Duration::from_nanos(150),
            ebpf_policy_lookup: Duration::from_nanos(50),
            macvlan_forward: Duration::from_nanos(150),
            context_switch: Duration::from_nanos(2_000),
            syscall: Duration::from_nanos(500),
            ovs_flow: Duration::from_nanos(250),
            gso_segment: Duration::from_nanos(200),
            gro_receive: Duration::from_nanos(100),
            ip_fragment: Duration::from_nanos(200),
            ip_reassemble: Duration::from_nanos(300),
            conntrack_lookup: Duration::from_nanos(80),
            conntrack_new: Duration::from_nanos(500),
            nat_rewrite: Duration::from_nanos(60),
            iptables_rule: Duration::from_nanos(25),
            hash_lookup: Duration::from_nanos(50),
            sock_lb: Duration::from_nanos(300),
            proxy_sync_base: Duration::from_millis(2),
            proxy_sync_per_service: Duration::from_micros(1),
            iptables_restore_line: Duration::from_micros(2),
            iptables_replace_rule: Duration::from_nanos(300),
            netlink_object: Duration::from_micros(10),
            netlink_dump_entry: Duration::from_micros(1),
            bpf_map_update: Duration::from_micros(2),
            cilium_service_update: Duration::from_millis(2),
            bird_message: Duration::from_micros(5),
            bird_route: Duration::from_micros(10),
            policy_watch_delay: Duration::from_millis(10),
            felix_policy_apply: Duration::from_millis(10),
            weave_npc_command: Duration::from_millis(2),
            cilium_endpoint_regeneration: Duration::from_millis(2),
        }
    }
}

impl CostProfile {
    /// The cost of copying `bytes` between user and kernel space.
    pub fn copy(&self, bytes: usize) -> Duration {
        Duration::from_nanos((self.copy_per_kib.as_nanos() * bytes as u64).div_ceil(1024))
    }
}

/// What a core's time goes to: the kernel steps of the CPU breakdown ("where the CPU goes").
/// Every charge of a cost names one (`datapath::Ctx::charge`); the report adds them up per node, per core and per flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Step {
    /// The socket layer: `sendmsg`/`recvmsg` syscalls, `udp_sendmsg`, UDP delivery to a socket.
    Socket,
    /// Payload copies between user and kernel space.
    Copy,
    /// The TCP stack: segments built and sent (`tcp_write_xmit`), received and acknowledged
    /// (`tcp_v4_rcv`).
    Tcp,
    /// veth transmit and the peer's `netif_rx`.
    Veth,
    /// Linux bridge input, FDB lookup and learning.
    Bridge,
    /// IPv4 input, forwarding and neighbour output (`ip_rcv`, `ip_forward`, `neigh_output`).
    Ip,
    /// FIB lookups.
    Routing,
    /// NIC driver transmit and NAPI receive.
    Nic,
    /// ARP processing.
    Arp,
    /// netfilter: conntrack lookups, NAT rewrites, the CNI's masquerade rule.
    Netfilter,
    /// The Service proxy's new-connection path: rule walks, map lookups, the conntrack entry
    /// and NAT set-up it creates, Cilium's socket LB and reverse-NAT lookups.
    ServiceRules,
    /// NetworkPolicy enforcement: the policy engine's filter-table walks (Calico's Felix
    /// chains, weave-npc) and Cilium's policy-map lookups.
    Policy,
    /// Tunnel encapsulation (VXLAN, Geneve, IPIP, Weave fastdp).
    Encap,
    /// Tunnel decapsulation.
    Decap,
    /// Cilium's tc eBPF programs.
    Ebpf,
    /// The Open vSwitch kernel datapath (Weave fastdp).
    Ovs,
    /// macvlan / ipvlan forwarding.
    Macvlan,
    /// IPv4 fragmentation and reassembly.
    Fragment,
    /// Segmentation in software (GSO) and receive merging (GRO).
    Offload,
    /// Userspace data planes (flanneld, Weave's router, kube-proxy's userspace mode): context
    /// switches, their syscalls and copies.
    Userspace,
    /// Routing daemons (BIRD): BGP messages, routes through the table, kernel route updates.
    ControlPlane,
}

impl Step {
    pub const COUNT: usize = 21;
    pub const ALL: [Step; Step::COUNT] = [
        Step::Socket,
        Step::Copy,
        Step::Tcp,
        Step::Veth,
        Step::Bridge,
        Step::Ip,
        Step::Routing,
        Step::Nic,
        Step::Arp,
        Step::Netfilter,
        Step::ServiceRules,
        Step::Policy,
        Step::Encap,
        Step::Decap,
        Step::Ebpf,
        Step::Ovs,
        Step::Macvlan,
        Step::Fragment,
        Step::Offload,
        Step::Userspace,
        Step::ControlPlane,
    ];

    /// Stable key used in summary.json and CSVs.
    pub fn name(self) -> &'static str {
        match self {
            Step::Socket => "socket",
            Step::Copy => "copy",
            Step::Tcp => "tcp",
            Step::Veth => "veth",
            Step::Bridge => "bridge",
            Step::Ip => "ip",
            Step::Routing => "routing",
            Step::Nic => "nic",
            Step::Arp => "arp",
            Step::Netfilter => "netfilter",
            Step::ServiceRules => "service_rules",
            Step::Policy => "policy",
            Step::Encap => "encap",
            Step::Decap => "decap",
            Step::Ebpf => "ebpf",
            Step::Ovs => "ovs",
            Step::Macvlan => "macvlan",
            Step::Fragment => "fragment",
            Step::Offload => "offload",
            Step::Userspace => "userspace",
            Step::ControlPlane => "control_plane",
        }
    }
}

/// CPU time per [`Step`].
pub type StepTimes = [Duration; Step::COUNT];
