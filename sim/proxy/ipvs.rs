//! kube-proxy's IPVS mode: virtual servers in the kernel's IPVS service table, ipsets, and the
//! few iptables rules kube-proxy still installs.
//!
//! What kube-proxy programs (`k8s/pkg/proxy/ipvs/proxier.go`, `syncProxyRules` and
//! `writeIptablesRules`): one virtual server per Service port (of the port's protocol) on its cluster IP (bound to the
//! dummy device `kube-ipvs0`), one per NodePort on each node address, each endpoint a real server
//! with forwarding method Masq and weight 1 (`syncEndpoint`). Masquerade decisions stay in
//! iptables, driven by ipsets so that the rule count does not grow with the number of Services:
//!
//! ```text
//! -A KUBE-SERVICES -s 127.0.0.0/8 -j RETURN
//! -A KUBE-SERVICES -m set --match-set KUBE-CLUSTER-IP dst,dst ! -s <cluster-cidr> -j KUBE-MARK-MASQ
//! -A KUBE-SERVICES -m addrtype --dst-type LOCAL -j KUBE-NODE-PORT
//! -A KUBE-SERVICES -m set --match-set KUBE-CLUSTER-IP dst,dst -j ACCEPT
//! -A KUBE-NODE-PORT -p udp -m set --match-set KUBE-NODE-PORT-LOCAL-UDP dst -j RETURN
//! -A KUBE-NODE-PORT -p udp -m set --match-set KUBE-NODE-PORT-UDP dst -j KUBE-MARK-MASQ
//! -A KUBE-POSTROUTING -m set --match-set KUBE-LOOP-BACK dst,dst,src -j MASQUERADE
//! ```
//!
//! TCP ports get their own KUBE-NODE-PORT-LOCAL-TCP / KUBE-NODE-PORT-TCP sets and `-p tcp`
//! rules, written before the UDP ones (`ipsetWithIptablesChain`); the virtual servers, the
//! KUBE-CLUSTER-IP and KUBE-LOOP-BACK members (`ip,tcp:port`) carry the protocol.
//!
//! The kernel side follows `net/netfilter/ipvs/`: `ip_vs_in` looks the packet up in the IPVS
//! connection table (`conn_in_get`), and on a miss `udp_conn_schedule` finds the virtual server
//! (`ip_vs_service_find`) and asks its scheduler for a real server. The schedulers are modelled
//! from `ip_vs_rr.c`, `ip_vs_lc.c`, `ip_vs_sed.c` and `ip_vs_sh.c` (see [`IpvsScheduler`]).

use std::collections::BTreeSet;

use rustc_hash::{FxHashMap, FxHashSet};
use std::fmt::{Display, Write};
use std::net::Ipv4Addr;
use std::sync::Arc;

use crate::addr::Ipv4Net;
use crate::cluster::NodeId;
use crate::cluster::{IpvsScheduler, Protocol, ServiceKind, ServiceTable, TrafficPolicy};
use crate::net::conntrack::{Tuple, L4};
use crate::proxy::{Hook, Lookup, NodeView, Verdict};

/// `ip_vs_conn_tab_size` as the kernel reports it in ipvsadm's header (`CONFIG_IP_VS_TAB_BITS`
/// 12, the value every published `ipvsadm -Ln` shows; kube-proxy's ipvs README).
const CONN_TAB_SIZE: u32 = 4096;
/// Buckets of the sh scheduler's table (`CONFIG_IP_VS_SH_TAB_BITS` default 8, `ip_vs_sh.c`).
const SH_TAB_BITS: u32 = 8;
/// `GOLDEN_RATIO_32` of `include/linux/hash.h`, the multiplier of `hash_32`.
const GOLDEN_RATIO_32: u32 = 0x61C8_8647;
/// Estimated slab size of one `struct ip_vs_service` (kzalloc'ed in `ip_vs_add_service`): about
/// 130 bytes of fields plus an embedded `struct ip_vs_stats` (two `ip_vs_kstats` of ten u64s and
/// an estimator), rounded to the kmalloc-512 class. An estimate from the field list of
/// `include/net/ip_vs.h` on 64-bit, not a pahole measurement.
const SERVICE_BYTES: usize = 512;
/// Estimated slab size of one `struct ip_vs_dest` (`ip_vs_new_dest`), same method: kmalloc-512.
const DEST_BYTES: usize = 512;
/// The sh scheduler's per-service table: 256 `struct ip_vs_sh_bucket` of one pointer
/// (`ip_vs_sh_init_svc` logs `sizeof(struct ip_vs_sh_bucket)*IP_VS_SH_TAB_SIZE`).
const SH_TABLE_BYTES: usize = 256 * 8;
/// `struct hash_ipport4_elem { __be32 ip; __be16 port; u8 proto; u8 padding; }`
/// (`net/netfilter/ipset/ip_set_hash_ipport.c`): KUBE-CLUSTER-IP entries.
const IPPORT_ELEM_BYTES: usize = 8;
/// `struct hash_ipportip4_elem { __be32 ip; __be32 ip2; __be16 port; u8 proto; u8 padding; }`
/// (`ip_set_hash_ipportip.c`): KUBE-LOOP-BACK entries.
const IPPORTIP_ELEM_BYTES: usize = 12;
/// A `bitmap:port` set covers ports 0-65535 with one bit each, whatever it holds.
const BITMAP_PORT_BYTES: usize = 65536 / 8;

/// One real server (`ipvsadm -a ... -m -w 1`) of a virtual server.
#[derive(Clone, Debug)]
pub struct RealServer {
    pub addr: Ipv4Addr,
    pub port: u16,
    /// Always 1: kube-proxy's `syncEndpoint` creates every real server with `Weight: 1`.
    pub weight: u32,
    /// `dest->activeconns`.
    pub active: u32,
    /// `dest->inactconns` (stays 0 for UDP, see [`Ipvs::connection_closed`]).
    pub inactive: u32,
    /// Index of the endpoint in its Service.
    pub endpoint: usize,
}

/// One IPVS service (`struct ip_vs_service`) with its destinations in the kernel's list order.
/// In [`IpvsShared`] the counters of `dests` stay 0; [`Ipvs::virtual_server`] returns a copy
/// with the node's counters.
#[derive(Clone, Debug)]
pub struct VirtualServer {
    pub protocol: Protocol,
    pub addr: Ipv4Addr,
    pub port: u16,
    pub service: usize,
    pub port_index: usize,
    /// `svc->destinations` in list order. `__ip_vs_update_dest` adds with `list_add_rcu`, at the
    /// head, so the list is the reverse of the order kube-proxy added them in.
    pub dests: Vec<RealServer>,
}

/// A NodePort virtual server, on every node's own address: the same on every node except for
/// that address and, with externalTrafficPolicy Local, its destinations.
#[derive(Clone, Debug)]
struct NodePort {
    port: u16,
    /// The ClusterIP virtual server of the same Service port, created just before it; its
    /// destinations are this one's unless the policy is Local and the node has local endpoints.
    base: usize,
}

/// The part of the IPVS state that is the same on every node, built once per Service table and
/// shared by all nodes' [`Ipvs`]: the ClusterIP virtual servers, the service table, the
/// node-independent ipsets, and what each node needs to derive its own NodePort servers and
/// KUBE-LOOP-BACK entries.
#[derive(Debug)]
pub struct IpvsShared {
    /// Services in the table it was built from (a check that nodes pass the same table).
    services: usize,
    cluster_cidr: Option<Ipv4Net>,
    /// ClusterIP virtual servers in kube-proxy's creation order.
    servers: Vec<VirtualServer>,
    /// The IPVS service table for the ClusterIP servers: `ip_vs_svc_table`, hashed on protocol,
    /// address and port.
    index: FxHashMap<(Ipv4Addr, u16, L4), usize>,
    /// NodePort virtual servers in creation order (so in increasing `base`).
    nodeports: Vec<NodePort>,
    /// The service table for NodePort servers, on the node's address: (port, protocol) ->
    /// `nodeports` index.
    nodeport_index: FxHashMap<(u16, L4), usize>,
    /// Local-policy NodePorts' destinations on each node with local endpoints: node ->
    /// `nodeports` index -> positions in the base server's `dests`.
    local_dests: FxHashMap<NodeId, FxHashMap<usize, Vec<usize>>>,
    /// KUBE-CLUSTER-IP (hash:ip,port): every cluster IP, port and protocol.
    cluster_ip_set: FxHashSet<(Ipv4Addr, u16, L4)>,
    /// KUBE-LOOP-BACK (hash:ip,port,ip) of each node: local endpoint IP, port, protocol, and
    /// the same IP as source.
    loopback: FxHashMap<NodeId, FxHashSet<(Ipv4Addr, u16, L4, Ipv4Addr)>>,
    /// KUBE-NODE-PORT-TCP and KUBE-NODE-PORT-UDP (bitmap:port), indexed by [`proto_index`].
    nodeport_set: [BTreeSet<u16>; 2],
    /// KUBE-NODE-PORT-LOCAL-TCP / -UDP (bitmap:port): NodePorts with externalTrafficPolicy
    /// Local.
    nodeport_local_set: [BTreeSet<u16>; 2],
    /// KUBE-IPVS-IPS (hash:ip): the addresses bound to kube-ipvs0, which makes them LOCAL.
    bound: FxHashSet<Ipv4Addr>,
    /// Real servers of the ClusterIP servers, and of the NodePort servers with all of their
    /// base server's destinations.
    cluster_real_servers: usize,
    nodeport_real_servers: usize,
}

/// A virtual server's scheduler state and destination counters on one node, kept only once the
/// node has scheduled on it (before that: rr at the list head, all counters 0).
#[derive(Clone, Debug)]
struct VsState {
    /// rr's `svc->sched_data`: the destination picked last; `None` is the list head (initial).
    rr_last: Option<usize>,
    /// `activeconns` and `inactconns` per destination, in list order.
    active: Vec<u32>,
    inactive: Vec<u32>,
}

impl VsState {
    fn new(n: usize) -> VsState {
        VsState { rr_last: None, active: vec![0; n], inactive: vec![0; n] }
    }
}

/// The destinations of one virtual server on a node: a base server's list, or (Local NodePort
/// with local endpoints) some positions of it.
#[derive(Clone, Copy)]
struct Dests<'a> {
    all: &'a [RealServer],
    pick: Option<&'a [usize]>,
}

impl<'a> Dests<'a> {
    fn len(&self) -> usize {
        self.pick.map_or(self.all.len(), <[usize]>::len)
    }
    fn get(&self, i: usize) -> &'a RealServer {
        &self.all[self.pick.map_or(i, |p| p[i])]
    }
}

/// The IPVS state kube-proxy programs on one node: the [`IpvsShared`] part plus this node's
/// address (its NodePort servers), its id (its KUBE-LOOP-BACK entries and Local NodePort
/// destinations) and the scheduler state of the servers it has used.
///
/// Virtual servers are numbered `0..C` for the shared ClusterIP servers and `C + j` for NodePort
/// `j` on this node.
#[derive(Clone, Debug)]
pub struct Ipvs {
    scheduler: IpvsScheduler,
    node: NodeId,
    node_ip: Ipv4Addr,
    shared: Arc<IpvsShared>,
    /// Scheduler state of the virtual servers this node has scheduled on, created on first use.
    state: FxHashMap<usize, VsState>,
    /// Open connections per (service, port, endpoint): the virtual server each was scheduled on.
    open: FxHashMap<(usize, usize, usize), Vec<usize>>,
}

/// The destinations of virtual server `v` on node `node`.
fn dests_of(shared: &IpvsShared, node: NodeId, v: usize) -> Dests<'_> {
    let c = shared.servers.len();
    if v < c {
        return Dests { all: &shared.servers[v].dests, pick: None };
    }
    let j = v - c;
    let all = &shared.servers[shared.nodeports[j].base].dests;
    let pick = shared.local_dests.get(&node).and_then(|m| m.get(&j)).map(Vec::as_slice);
    Dests { all, pick }
}

impl Ipvs {
    /// Virtual servers for every ClusterIP service port (on the cluster IP) and, for NodePort
    /// services, on the node's IP at the node port, as `syncProxyRules` creates them. Only ready
    /// endpoints become real servers. With externalTrafficPolicy Local the NodePort virtual
    /// server gets only this node's endpoints, or all of them when the node has none
    /// (`syncEndpoint`: "Allow access from local PODs even if no local endpoints exist",
    /// kubernetes PR #97081). kube-proxy also puts NodePort virtual servers on every other local
    /// address (`GetAllLocalAddressesExcept("kube-ipvs0")`); cnisim's node has one.
    ///
    /// The same as [`Ipvs::for_node`] on a fresh [`Ipvs::shared`]; nodes of one cluster should
    /// share one.
    pub fn build(table: &ServiceTable, node: &NodeView, scheduler: IpvsScheduler) -> Ipvs {
        Ipvs::for_node(Ipvs::shared(table), table, node, scheduler)
    }

    /// The node-independent part of [`Ipvs::build`] for `table`.
    pub fn shared(table: &ServiceTable) -> Arc<IpvsShared> {
        let mut sh = IpvsShared {
            services: table.services.len(),
            cluster_cidr: table.cluster_cidr,
            servers: Vec::new(),
            index: FxHashMap::default(),
            nodeports: Vec::new(),
            nodeport_index: FxHashMap::default(),
            local_dests: FxHashMap::default(),
            cluster_ip_set: FxHashSet::default(),
            loopback: FxHashMap::default(),
            nodeport_set: [BTreeSet::new(), BTreeSet::new()],
            nodeport_local_set: [BTreeSet::new(), BTreeSet::new()],
            bound: FxHashSet::default(),
            cluster_real_servers: 0,
            nodeport_real_servers: 0,
        };
        for (s, svc) in table.services.iter().enumerate() {
            let Some(cip) = svc.cluster_ip else { continue };
            if svc.kind == ServiceKind::Headless {
                continue;
            }
            for (p, sp) in svc.ports.iter().enumerate() {
                let tp = sp.target_port;
                let l4 = sp.protocol.l4();
                let all: Vec<(usize, Ipv4Addr, NodeId)> =
                    svc.ready().map(|(i, e)| (i, e.ip, e.node)).collect();
                for &(_, ip, node) in &all {
                    sh.loopback.entry(node).or_default().insert((ip, tp, l4, ip));
                }
                sh.cluster_ip_set.insert((cip, sp.port, l4));
                sh.bound.insert(cip);
                // kube-proxy adds real servers in Go set order, which is random; cnisim adds them
                // in EndpointSlice order, each at the list head.
                let dests: Vec<RealServer> = all
                    .iter()
                    .rev()
                    .map(|&(endpoint, ip, _)| RealServer {
                        addr: ip,
                        port: tp,
                        weight: 1,
                        active: 0,
                        inactive: 0,
                        endpoint,
                    })
                    .collect();
                let base = sh.servers.len();
                sh.index.insert((cip, sp.port, l4), base);
                sh.cluster_real_servers += dests.len();
                sh.servers.push(VirtualServer {
                    protocol: sp.protocol,
                    addr: cip,
                    port: sp.port,
                    service: s,
                    port_index: p,
                    dests,
                });
                let Some(np) = sp.node_port.filter(|_| svc.kind == ServiceKind::NodePort) else { continue };
                sh.nodeport_set[proto_index(sp.protocol)].insert(np);
                let j = sh.nodeports.len();
                if svc.external_traffic_policy == TrafficPolicy::Local {
                    sh.nodeport_local_set[proto_index(sp.protocol)].insert(np);
                    // The base list is `all` reversed: the positions of each node's endpoints in
                    // it are that node's endpoints in the same list order.
                    for (pos, &(_, _, node)) in all.iter().rev().enumerate() {
                        sh.local_dests.entry(node).or_default().entry(j).or_default().push(pos);
                    }
                }
                sh.nodeport_real_servers += all.len();
                sh.nodeport_index.insert((np, l4), j);
                sh.nodeports.push(NodePort { port: np, base });
            }
        }
        Arc::new(sh)
    }

    /// One node's IPVS state on `shared`, which must have been built from `table`.
    pub fn for_node(
        shared: Arc<IpvsShared>,
        table: &ServiceTable,
        node: &NodeView,
        scheduler: IpvsScheduler,
    ) -> Ipvs {
        debug_assert_eq!(shared.services, table.services.len(), "IpvsShared built from another table");
        Ipvs {
            scheduler,
            node: node.id,
            node_ip: node.ip,
            shared,
            state: FxHashMap::default(),
            open: FxHashMap::default(),
        }
    }

    /// Virtual server `v`'s address, port, service, port index and protocol.
    fn key(&self, v: usize) -> (Ipv4Addr, u16, usize, usize, Protocol) {
        let sh = &*self.shared;
        let c = sh.servers.len();
        if v < c {
            let vs = &sh.servers[v];
            (vs.addr, vs.port, vs.service, vs.port_index, vs.protocol)
        } else {
            let np = &sh.nodeports[v - c];
            let base = &sh.servers[np.base];
            (self.node_ip, np.port, base.service, base.port_index, base.protocol)
        }
    }

    fn dests(&self, v: usize) -> Dests<'_> {
        dests_of(&self.shared, self.node, v)
    }

    /// `ip_vs_service_find`: the virtual server at (protocol, addr, port). When a ClusterIP and
    /// a NodePort server share the key, the one added last wins, as in one hash map filled in
    /// creation order.
    fn find(&self, proto: L4, addr: Ipv4Addr, port: u16) -> Option<usize> {
        let sh = &*self.shared;
        let cluster = sh.index.get(&(addr, port, proto)).copied();
        let nodeport =
            if addr == self.node_ip { sh.nodeport_index.get(&(port, proto)).copied() } else { None };
        match (cluster, nodeport) {
            (Some(k), Some(j)) => Some(if sh.nodeports[j].base >= k { sh.servers.len() + j } else { k }),
            (k, j) => k.or(j.map(|j| sh.servers.len() + j)),
        }
    }

    /// This node's KUBE-LOOP-BACK entries.
    fn loopback_set(&self) -> Option<&FxHashSet<(Ipv4Addr, u16, L4, Ipv4Addr)>> {
        self.shared.loopback.get(&self.node).filter(|s| !s.is_empty())
    }

    /// A new connection's first packet. The walk, counted as it happens:
    ///
    /// 1. nat PREROUTING/OUTPUT `-j KUBE-SERVICES`, then KUBE-SERVICES rule by rule (above). An
    ///    iptables rule checks its `-s`/`-d` header match before any `-m` match (`ip_packet_match`
    ///    in `ipt_do_table`), so `! -s <cidr>` from inside the cluster costs the rule but no ipset
    ///    test. Each ipset test is a lookup. Cluster IPs are LOCAL (bound to kube-ipvs0), so
    ///    every Service packet also walks KUBE-NODE-PORT before the final ACCEPT.
    /// 2. IPVS at LOCAL_IN (or LOCAL_OUT for OUTPUT): a connection-table lookup that misses for
    ///    a new connection, then `ip_vs_service_find`: two lookups. A packet routed elsewhere
    ///    (PREROUTING, destination not local) never reaches IPVS.
    /// 3. The scheduler picks a real server; its `activeconns` goes up (`ip_vs_bind_dest`).
    /// 4. KUBE-POSTROUTING's KUBE-LOOP-BACK rule (one rule, one ipset test) masquerades hairpin
    ///    traffic (a local pod reaching itself), as kube-proxy does in IPVS mode.
    ///
    /// A virtual server with no real servers: the scheduler returns NULL ("no destination
    /// available"), `udp_conn_schedule` calls `ip_vs_leave`, which sends ICMP port unreachable
    /// and drops (`ip_vs_core.c`: "ICMP_PORT_UNREACH is sent here no matter it is TCP/UDP"):
    /// [`Verdict::Reject`]. `masq` is set by KUBE-CLUSTER-IP for sources outside the cluster CIDR
    /// (or, without a CIDR, for sources that are themselves a Service VIP, the `src,dst` rule),
    /// by KUBE-NODE-PORT-UDP unless the port is in KUBE-NODE-PORT-LOCAL-UDP, and by hairpin.
    pub fn lookup(&mut self, hook: Hook, t: &Tuple, dst_is_local: bool, trace: bool) -> Lookup {
        let mut w = Walk { rules: 0, lookups: 0, walk: Vec::new(), trace };
        let chain = if hook == Hook::Prerouting { "PREROUTING" } else { "OUTPUT" };
        w.rule(format_args!("nat {chain}: -j KUBE-SERVICES"));
        w.rule("KUBE-SERVICES: -s 127.0.0.0/8 -j RETURN");
        if t.src.octets()[0] == 127 {
            return w.done(Verdict::NoService);
        }
        let mut masq = self.cluster_ip_rule(&mut w, t);
        let local = dst_is_local || self.shared.bound.contains(&t.dst);
        w.rule("KUBE-SERVICES: -m addrtype --dst-type LOCAL -j KUBE-NODE-PORT");
        if local {
            masq |= self.nodeport_chain(&mut w, t);
        }
        if !self.shared.cluster_ip_set.is_empty() {
            w.rule("KUBE-SERVICES: -m set --match-set KUBE-CLUSTER-IP dst,dst -j ACCEPT");
            w.lookup(self.shared.cluster_ip_set.contains(&(t.dst, t.dport, t.proto)), "KUBE-CLUSTER-IP");
        }
        if hook == Hook::Prerouting && !local {
            return w.done(Verdict::NoService);
        }
        w.lookup(false, "IPVS connection table (ip_vs_conn_in_get)");
        let found = self.find(t.proto, t.dst, t.dport);
        w.lookup(found.is_some(), "IPVS service table (ip_vs_service_find)");
        let Some(v) = found else { return w.done(Verdict::NoService) };
        let (_, _, service, port, _) = self.key(v);
        let Some(d) = self.schedule(v, t.src) else {
            w.note("scheduler: no destination available -> ip_vs_leave: ICMP port unreachable");
            return w.done(Verdict::Reject { service, port });
        };
        let dest = dests_of(&self.shared, self.node, v).get(d);
        let (endpoint, ep_ip, ep_port) = (dest.endpoint, dest.addr, dest.port);
        w.note(format_args!("{} scheduler -> {ep_ip}:{ep_port}", self.scheduler.id()));
        self.open.entry((service, port, endpoint)).or_default().push(v);
        if let Some(lb) = self.loopback_set() {
            w.rule("KUBE-POSTROUTING: -m set --match-set KUBE-LOOP-BACK dst,dst,src -j MASQUERADE");
            masq |= w.lookup(lb.contains(&(ep_ip, ep_port, t.proto, t.src)), "KUBE-LOOP-BACK");
        }
        w.done(Verdict::Dnat { service, port, endpoint, masq })
    }

    /// KUBE-SERVICES' KUBE-CLUSTER-IP mark rule; true when it marks the packet.
    fn cluster_ip_rule(&self, w: &mut Walk, t: &Tuple) -> bool {
        let set = &self.shared.cluster_ip_set;
        if set.is_empty() {
            return false;
        }
        let hit = match self.shared.cluster_cidr {
            Some(cidr) => {
                w.rule(format_args!(
                    "KUBE-SERVICES: -m set --match-set KUBE-CLUSTER-IP dst,dst ! -s {cidr} -j KUBE-MARK-MASQ"
                ));
                !cidr.contains(t.src) && w.lookup(set.contains(&(t.dst, t.dport, t.proto)), "KUBE-CLUSTER-IP")
            }
            None => {
                w.rule("KUBE-SERVICES: -m set --match-set KUBE-CLUSTER-IP src,dst -j KUBE-MARK-MASQ");
                w.lookup(set.contains(&(t.src, t.dport, t.proto)), "KUBE-CLUSTER-IP")
            }
        };
        if hit {
            w.rule("KUBE-MARK-MASQ: -j MARK --or-mark 0x4000");
        }
        hit
    }

    /// KUBE-NODE-PORT (nat), TCP rules first as `ipsetWithIptablesChain` orders them; true
    /// when it marks the packet. A rule of the other protocol fails its `-p` match before any
    /// ipset test.
    fn nodeport_chain(&self, w: &mut Walk, t: &Tuple) -> bool {
        let sh = &*self.shared;
        for proto in [Protocol::Tcp, Protocol::Udp] {
            let (i, p, same) = (proto_index(proto), proto.lower(), proto.l4() == t.proto);
            let local = &sh.nodeport_local_set[i];
            if !local.is_empty() {
                w.rule(format_args!(
                    "KUBE-NODE-PORT: -p {p} -m set --match-set KUBE-NODE-PORT-LOCAL-{proto} dst -j RETURN"
                ));
                if same && w.lookup(local.contains(&t.dport), format_args!("KUBE-NODE-PORT-LOCAL-{proto}")) {
                    return false;
                }
            }
            let set = &sh.nodeport_set[i];
            if !set.is_empty() {
                w.rule(format_args!(
                    "KUBE-NODE-PORT: -p {p} -m set --match-set KUBE-NODE-PORT-{proto} dst -j KUBE-MARK-MASQ"
                ));
                if same && w.lookup(set.contains(&t.dport), format_args!("KUBE-NODE-PORT-{proto}")) {
                    w.rule("KUBE-MARK-MASQ: -j MARK --or-mark 0x4000");
                    return true;
                }
            }
        }
        false
    }

    /// The scheduler's pick: an index into the destination list, or None with no usable
    /// destination. Creates the server's state on this node on its first pick (all counters 0,
    /// rr at the list head) and binds the new connection to the pick: its `activeconns` goes up
    /// (`ip_vs_bind_dest`).
    fn schedule(&mut self, v: usize, src: Ipv4Addr) -> Option<usize> {
        let dests = dests_of(&self.shared, self.node, v);
        let n = dests.len();
        if n == 0 {
            return None;
        }
        let st = self.state.entry(v).or_insert_with(|| VsState::new(n));
        let weight = |i: usize| dests.get(i).weight;
        let pick = match self.scheduler {
            IpvsScheduler::Rr => st.rr_last.map_or(0, |l| (l + 1) % n),
            IpvsScheduler::Lc => least(n, |i| (st.active[i] << 8) + st.inactive[i]),
            IpvsScheduler::Sed => sed(n, |i| st.active[i], weight),
            IpvsScheduler::Sh => sh_pick(n, weight, sh_bucket(src)),
        };
        st.rr_last = Some(pick);
        st.active[pick] += 1;
        Some(pick)
    }

    /// The connection to (service, port, endpoint) ended. For UDP an IPVS connection is created
    /// active (`ip_vs_schedule` passes no `IP_VS_CONN_F_INACTIVE`, so `ip_vs_bind_dest` bumps
    /// `activeconns`) and stays active until it expires: only TCP and SCTP move connections
    /// between active and inactive (`set_state`; `udp_state_transition` only refreshes the
    /// timeout). `ip_vs_unbind_dest` then decrements `activeconns`. So for UDP, lc sees
    /// `active * 256` and sed `active + 1`, with `inactive` always 0. IPVS expires UDP
    /// connections on its own timer (300 s by default, `--ipvs-udp-timeout`); cnisim ends them
    /// with the conntrack entry.
    pub fn connection_closed(&mut self, service: usize, port: usize, endpoint: usize) {
        let Some(v) = self.open.get_mut(&(service, port, endpoint)).and_then(|l| l.pop()) else { return };
        let dests = dests_of(&self.shared, self.node, v);
        let Some(i) = (0..dests.len()).find(|&i| dests.get(i).endpoint == endpoint) else { return };
        if let Some(st) = self.state.get_mut(&v) {
            st.active[i] = st.active[i].saturating_sub(1);
        }
    }

    /// Virtual servers in the order they were created (each NodePort right after the ClusterIP
    /// server of the same Service port).
    fn creation_order(&self) -> Vec<usize> {
        let sh = &*self.shared;
        let c = sh.servers.len();
        let mut order = Vec::with_capacity(self.virtual_servers());
        let mut nodeports = sh.nodeports.iter().enumerate().peekable();
        for k in 0..c {
            order.push(k);
            while let Some((j, _)) = nodeports.next_if(|(_, np)| np.base == k) {
                order.push(c + j);
            }
        }
        order
    }

    /// `ipvsadm -Ln` output byte for byte (ipvsadm.c `list_all`, `print_title`,
    /// `print_service_entry`): services and destinations sorted with libipvs's
    /// `ipvs_cmp_services` / `ipvs_cmp_dests` through glibc's merge sort, the service name
    /// truncated at 33 characters and the destination at 28, and the destination line printed
    /// with `"  -> %-28s %-7s %-6d %-10u %-10u\n"` (so it ends in padding spaces).
    pub fn ipvsadm_ln(&self) -> String {
        let mut out = format!("IP Virtual Server version 1.2.1 (size={CONN_TAB_SIZE})\n");
        let mut order: Vec<(Ipv4Addr, u16, usize, Protocol)> = self
            .creation_order()
            .into_iter()
            .map(|v| {
                let (addr, port, _, _, proto) = self.key(v);
                (addr, port, v, proto)
            })
            .collect();
        // ipvs_cmp_services: the protocol number first (TCP 6 before UDP 17), then address, port.
        let number = |p: Protocol| i32::from(p.l4().number());
        glibc_msort(&mut order, &|a, b| match number(a.3) - number(b.3) {
            0 => cmp_addr_port(a.0, a.1, b.0, b.1),
            r => r,
        });
        if !order.is_empty() {
            out.push_str("Prot LocalAddress:Port Scheduler Flags\n");
            out.push_str("  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n");
        }
        for (addr, port, v, proto) in order {
            let name = truncate(&format!("{proto}  {addr}:{port}"), 33);
            let _ = writeln!(out, "{name} {}", self.scheduler.id());
            let mut dests = self.merged_dests(v);
            glibc_msort(&mut dests, &|a, b| cmp_addr_port(a.0, a.1, b.0, b.1));
            for (daddr, dport, weight, active, inactive) in dests {
                let dname = truncate(&format!("{daddr}:{dport}"), 28);
                let _ = writeln!(
                    out,
                    "  -> {dname:<28} {:<7} {:<6} {:<10} {:<10}",
                    "Masq", weight, active, inactive
                );
            }
        }
        out
    }

    /// Virtual server `v`'s destinations with this node's counters: (addr, port, weight,
    /// active, inactive) in list order.
    fn merged_dests(&self, v: usize) -> Vec<(Ipv4Addr, u16, u32, u32, u32)> {
        let dests = self.dests(v);
        let st = self.state.get(&v);
        (0..dests.len())
            .map(|i| {
                let d = dests.get(i);
                (d.addr, d.port, d.weight, st.map_or(0, |s| s.active[i]), st.map_or(0, |s| s.inactive[i]))
            })
            .collect()
    }

    /// An abridged `ipset list` of the non-empty sets that decide Service traffic (Name,
    /// Type, Number of entries, Members; the real command adds Revision, Header, Size in memory
    /// and References). Members are sorted; the kernel lists them in hash order.
    pub fn ipset_list(&self) -> String {
        let sh = &*self.shared;
        let mut out = String::new();
        let mut cluster: Vec<_> = sh.cluster_ip_set.iter().collect();
        cluster.sort();
        let members = cluster.iter().map(|(ip, port, l4)| format!("{ip},{}:{port}", l4.name())).collect();
        set_block(&mut out, "KUBE-CLUSTER-IP", "hash:ip,port", members);
        let mut lb: Vec<_> = self.loopback_set().into_iter().flatten().collect();
        lb.sort();
        let members =
            lb.iter().map(|(ip, port, l4, src)| format!("{ip},{}:{port},{src}", l4.name())).collect();
        set_block(&mut out, "KUBE-LOOP-BACK", "hash:ip,port,ip", members);
        for proto in [Protocol::Tcp, Protocol::Udp] {
            let i = proto_index(proto);
            let all = sh.nodeport_set[i].iter().map(u16::to_string).collect();
            set_block(&mut out, &format!("KUBE-NODE-PORT-{proto}"), "bitmap:port", all);
            let local = sh.nodeport_local_set[i].iter().map(u16::to_string).collect();
            set_block(&mut out, &format!("KUBE-NODE-PORT-LOCAL-{proto}"), "bitmap:port", local);
        }
        out
    }

    pub fn virtual_servers(&self) -> usize {
        self.shared.servers.len() + self.shared.nodeports.len()
    }

    pub fn real_servers(&self) -> usize {
        let sh = &*self.shared;
        let mut n = sh.cluster_real_servers + sh.nodeport_real_servers;
        for (&j, local) in sh.local_dests.get(&self.node).into_iter().flatten() {
            n = n - sh.servers[sh.nodeports[j].base].dests.len() + local.len();
        }
        n
    }

    /// The ipset entries kube-proxy maintains for this table.
    pub fn ipset_entries(&self) -> usize {
        let sh = &*self.shared;
        sh.cluster_ip_set.len()
            + self.loopback_set().map_or(0, FxHashSet::len)
            + sh.nodeport_set.iter().map(BTreeSet::len).sum::<usize>()
            + sh.nodeport_local_set.iter().map(BTreeSet::len).sum::<usize>()
            + sh.bound.len()
    }

    /// The iptables rules kube-proxy writes in IPVS mode for this table: the nine jump rules of
    /// `iptablesJumpChain`, then `writeIptablesRules`: in nat KUBE-SERVICES (RETURN for
    /// loopback, the KUBE-CLUSTER-IP mark and ACCEPT rules when that set is non-empty, the
    /// addrtype jump), KUBE-NODE-PORT's rule per non-empty NodePort set (TCP, UDP, local or not),
    /// KUBE-LOAD-BALANCER's mark, KUBE-POSTROUTING (loop-back MASQUERADE when non-empty, RETURN,
    /// xor-mark, MASQUERADE) and KUBE-MARK-MASQ; in filter KUBE-SOURCE-RANGES-FIREWALL's DROP,
    /// two KUBE-FORWARD rules, the health-check ACCEPT and six KUBE-IPVS-FILTER rules.
    pub fn iptables_rules(&self) -> usize {
        let sh = &*self.shared;
        let nonempty = |b: bool| usize::from(b);
        let cluster = 2 * nonempty(!sh.cluster_ip_set.is_empty());
        let sets = sh.nodeport_set.iter().chain(&sh.nodeport_local_set);
        let nodeport: usize = sets.map(|s| nonempty(!s.is_empty())).sum();
        let nat = 2 + cluster + nodeport + 1 + nonempty(self.loopback_set().is_some()) + 3 + 1;
        let filter = 1 + 2 + 1 + 6;
        9 + nat + filter
    }

    /// iptables rules + ipset entries + virtual servers + real servers ("rules installed").
    pub fn rule_count(&self) -> usize {
        self.iptables_rules() + self.ipset_entries() + self.virtual_servers() + self.real_servers()
    }

    /// Kernel memory estimate: service and destination structs (slab estimates, see the
    /// constants), sh tables, ipset elements at their struct sizes and the two bitmap:port sets.
    /// This is the kernel's copy on one node: the whole table, however much of it the
    /// simulator shares between nodes.
    pub fn memory_bytes(&self) -> usize {
        let sh = if self.scheduler == IpvsScheduler::Sh { SH_TABLE_BYTES } else { 0 };
        self.virtual_servers() * (SERVICE_BYTES + sh)
            + self.real_servers() * DEST_BYTES
            + self.shared.cluster_ip_set.len() * IPPORT_ELEM_BYTES
            + self.loopback_set().map_or(0, FxHashSet::len) * IPPORTIP_ELEM_BYTES
            + self.shared.bound.len() * 4
            + 2 * BITMAP_PORT_BYTES
    }

    /// The virtual server at (protocol, addr, port) with this node's counters, for inspection.
    pub fn virtual_server(&self, protocol: Protocol, addr: Ipv4Addr, port: u16) -> Option<VirtualServer> {
        let v = self.find(protocol.l4(), addr, port)?;
        let (addr, port, service, port_index, protocol) = self.key(v);
        let dests = self.dests(v);
        let st = self.state.get(&v);
        let dests = (0..dests.len())
            .map(|i| RealServer {
                active: st.map_or(0, |s| s.active[i]),
                inactive: st.map_or(0, |s| s.inactive[i]),
                ..dests.get(i).clone()
            })
            .collect();
        Some(VirtualServer { protocol, addr, port, service, port_index, dests })
    }

    /// The node this state was built for.
    pub fn node(&self) -> NodeId {
        self.node
    }

    /// Virtual server `v`'s state on this node, created as at build time if it has none.
    #[cfg(test)]
    fn state_mut(&mut self, v: usize) -> &mut VsState {
        let n = self.dests(v).len();
        self.state.entry(v).or_insert_with(|| VsState::new(n))
    }
}

/// Rules and lookups counted along a walk. The words are built only for a trace: `rule` and
/// `note` take `format_args!` (or a literal) and render it in `note` when `trace` is set, so a
/// lookup without a trace formats nothing.
struct Walk {
    rules: u32,
    lookups: u32,
    walk: Vec<String>,
    trace: bool,
}

impl Walk {
    fn rule(&mut self, text: impl Display) {
        self.rules += 1;
        self.note(text);
    }
    fn lookup(&mut self, hit: bool, what: impl Display) -> bool {
        self.lookups += 1;
        self.note(format_args!("  lookup {what}: {}", if hit { "hit" } else { "miss" }));
        hit
    }
    fn note(&mut self, text: impl Display) {
        if self.trace {
            self.walk.push(text.to_string());
        }
    }
    fn done(self, verdict: Verdict) -> Lookup {
        Lookup { verdict, rules: self.rules, lookups: self.lookups, walk: self.walk }
    }
}

/// lc: the first destination with the least overhead (strict `<`, `ip_vs_lc_schedule`), among
/// `n` in list order.
fn least(n: usize, overhead: impl Fn(usize) -> u32) -> usize {
    let mut best = 0;
    for i in 1..n {
        if overhead(i) < overhead(best) {
            best = i;
        }
    }
    best
}

/// sed: least `(active + 1) / weight`, compared as `loh * w(d) > doh * w(least)` in 64 bits,
/// the first minimum winning (`ip_vs_sed_schedule`; active connections only).
fn sed(n: usize, active: impl Fn(usize) -> u32, weight: impl Fn(usize) -> u32) -> usize {
    let mut best = 0;
    for i in 1..n {
        let (loh, doh) = (u64::from(active(best)) + 1, u64::from(active(i)) + 1);
        if loh * u64::from(weight(i)) > doh * u64::from(weight(best)) {
            best = i;
        }
    }
    best
}

/// The sh bucket of a source address: `hash_32(ntohs(port) + ntohl(addr), 8)` with port 0
/// (kube-proxy sets no sh-port flag), `hash_32(v, b) = (v * GOLDEN_RATIO_32) >> (32 - b)`
/// (`ip_vs_sh_hashkey`, Linux since 3.18; older kernels used
/// `(ntohl(addr) * 2654435761) & 255`).
pub fn sh_bucket(src: Ipv4Addr) -> usize {
    (u32::from(src).wrapping_mul(GOLDEN_RATIO_32) >> (32 - SH_TAB_BITS)) as usize
}

/// The destination in sh's `bucket` among `n` (at least one): `ip_vs_sh_reassign` deals the
/// buckets to destinations in list order, `weight` consecutive buckets each, cycling until all
/// 256 are filled. Computed for the one bucket instead of kept as a 256-entry table.
fn sh_pick(n: usize, weight: impl Fn(usize) -> u32, bucket: usize) -> usize {
    let (mut d, mut count) = (0, 0);
    for _ in 0..bucket {
        count += 1;
        if count >= weight(d) {
            d = (d + 1) % n;
            count = 0;
        }
    }
    d
}

/// libipvs `ipvs_cmp_services` / `ipvs_cmp_dests` for IPv4 UDP entries: `ntohl(a) - ntohl(b)`
/// computed in unsigned arithmetic and returned as `int` (so addresses 2^31 or more apart
/// compare the "wrong" way, as in ipvsadm), then the port difference.
fn cmp_addr_port(a: Ipv4Addr, ap: u16, b: Ipv4Addr, bp: u16) -> i32 {
    let r = u32::from(a).wrapping_sub(u32::from(b)) as i32;
    if r != 0 {
        return r;
    }
    i32::from(ap) - i32::from(bp)
}

/// glibc's `qsort` (`msort_with_tmp`): top-down merge sort taking from the left run while
/// `cmp <= 0`. Used instead of `sort_by` because libipvs's comparator is not a total order.
fn glibc_msort<T: Copy>(v: &mut [T], cmp: &impl Fn(&T, &T) -> i32) {
    let n = v.len();
    if n <= 1 {
        return;
    }
    let n1 = n / 2;
    glibc_msort(&mut v[..n1], cmp);
    glibc_msort(&mut v[n1..], cmp);
    let (left, right) = (v[..n1].to_vec(), v[n1..].to_vec());
    let (mut i, mut j) = (0, 0);
    for slot in v.iter_mut() {
        let take_left = j == right.len() || (i < left.len() && cmp(&left[i], &right[j]) <= 0);
        *slot = if take_left { left[i] } else { right[j] };
        if take_left {
            i += 1;
        } else {
            j += 1;
        }
    }
}

/// The index of a protocol's NodePort sets: TCP first, as kube-proxy writes their rules.
fn proto_index(p: Protocol) -> usize {
    match p {
        Protocol::Tcp => 0,
        Protocol::Udp => 1,
    }
}

/// ipvsadm's `name[n] = '\0'` truncation.
fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// One set of [`Ipvs::ipset_list`], skipped when empty.
fn set_block(out: &mut String, name: &str, kind: &str, members: Vec<String>) {
    if members.is_empty() {
        return;
    }
    let _ = writeln!(out, "Name: {name}\nType: {kind}\nNumber of entries: {}\nMembers:", members.len());
    for m in members {
        let _ = writeln!(out, "{m}");
    }
}

#[cfg(test)]
mod tests;
