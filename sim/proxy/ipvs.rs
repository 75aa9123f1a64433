//! kube-proxy's IPVS mode: virtual servers in the kernel's IPVS service table, ipsets, and the
//! few iptables rules kube-proxy still installs.
//!
//! What kube-proxy programs (`k8s/pkg/proxy/ipvs/proxier.go`, `syncProxyRules` and
//! `writeIptablesRules`): one UDP virtual server per Service port on its cluster IP (bound to the
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
//! The kernel side follows `net/netfilter/ipvs/`: `ip_vs_in` looks the packet up in the IPVS
//! connection table (`conn_in_get`), and on a miss `udp_conn_schedule` finds the virtual server
//! (`ip_vs_service_find`) and asks its scheduler for a real server. The schedulers are modelled
//! from `ip_vs_rr.c`, `ip_vs_lc.c`, `ip_vs_sed.c` and `ip_vs_sh.c` (see [`IpvsScheduler`]).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt::Write;
use std::net::Ipv4Addr;

use crate::addr::Ipv4Net;
use crate::cluster::NodeId;
use crate::proxy::{
    Hook, IpvsScheduler, Lookup, NodeView, ServiceKind, ServiceTable, TrafficPolicy, Tuple, Verdict,
};

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
#[derive(Clone, Debug)]
pub struct VirtualServer {
    pub addr: Ipv4Addr,
    pub port: u16,
    pub service: usize,
    pub port_index: usize,
    /// `svc->destinations` in list order. `__ip_vs_update_dest` adds with `list_add_rcu`, at the
    /// head, so the list is the reverse of the order kube-proxy added them in.
    pub dests: Vec<RealServer>,
    /// rr's `svc->sched_data`: the destination picked last; `None` is the list head (initial).
    rr_last: Option<usize>,
    /// sh's 256 buckets, each an index into `dests` (`ip_vs_sh_reassign`).
    sh_buckets: Vec<usize>,
}

/// The IPVS state kube-proxy programs on one node.
#[derive(Clone, Debug)]
pub struct Ipvs {
    scheduler: IpvsScheduler,
    node: NodeId,
    cluster_cidr: Option<Ipv4Net>,
    servers: Vec<VirtualServer>,
    /// The IPVS service table: `ip_vs_svc_table`, hashed on protocol, address and port.
    index: HashMap<(Ipv4Addr, u16), usize>,
    /// KUBE-CLUSTER-IP (hash:ip,port): every cluster IP and port.
    cluster_ip_set: HashSet<(Ipv4Addr, u16)>,
    /// KUBE-LOOP-BACK (hash:ip,port,ip): local endpoint IP, port, and the same IP as source.
    loopback_set: HashSet<(Ipv4Addr, u16, Ipv4Addr)>,
    /// KUBE-NODE-PORT-UDP (bitmap:port).
    nodeport_udp: BTreeSet<u16>,
    /// KUBE-NODE-PORT-LOCAL-UDP (bitmap:port): NodePorts with externalTrafficPolicy Local.
    nodeport_local_udp: BTreeSet<u16>,
    /// KUBE-IPVS-IPS (hash:ip): the addresses bound to kube-ipvs0, which makes them LOCAL.
    bound: HashSet<Ipv4Addr>,
    /// Open connections per (service, port, endpoint): the virtual server each was scheduled on.
    open: HashMap<(usize, usize, usize), Vec<usize>>,
}

impl Ipvs {
    /// Virtual servers for every ClusterIP service port (on the cluster IP) and, for NodePort
    /// services, on the node's IP at the node port, as `syncProxyRules` creates them. Only ready
    /// endpoints become real servers. With externalTrafficPolicy Local the NodePort virtual
    /// server gets only this node's endpoints, or all of them when the node has none
    /// (`syncEndpoint`: "Allow access from local PODs even if no local endpoints exist",
    /// kubernetes PR #97081). kube-proxy also puts NodePort virtual servers on every other local
    /// address (`GetAllLocalAddressesExcept("kube-ipvs0")`); cnisim's node has one.
    pub fn build(table: &ServiceTable, node: &NodeView, scheduler: IpvsScheduler) -> Ipvs {
        let mut ipvs = Ipvs {
            scheduler,
            node: node.id,
            cluster_cidr: table.cluster_cidr,
            servers: Vec::new(),
            index: HashMap::new(),
            cluster_ip_set: HashSet::new(),
            loopback_set: HashSet::new(),
            nodeport_udp: BTreeSet::new(),
            nodeport_local_udp: BTreeSet::new(),
            bound: HashSet::new(),
            open: HashMap::new(),
        };
        for (s, svc) in table.services.iter().enumerate() {
            let Some(cip) = svc.cluster_ip else { continue };
            if svc.kind == ServiceKind::Headless {
                continue;
            }
            for (p, sp) in svc.ports.iter().enumerate() {
                let all: Vec<(usize, Ipv4Addr)> = svc.ready().map(|(i, e)| (i, e.ip)).collect();
                for (_, e) in svc.ready().filter(|(_, e)| e.node == node.id) {
                    ipvs.loopback_set.insert((e.ip, sp.target_port, e.ip));
                }
                ipvs.cluster_ip_set.insert((cip, sp.port));
                ipvs.bound.insert(cip);
                ipvs.add_server(cip, sp.port, s, p, &all, sp.target_port);
                let Some(np) = sp.node_port.filter(|_| svc.kind == ServiceKind::NodePort) else { continue };
                ipvs.nodeport_udp.insert(np);
                let mut dests = all.clone();
                if svc.external_traffic_policy == TrafficPolicy::Local {
                    ipvs.nodeport_local_udp.insert(np);
                    let local: Vec<_> =
                        svc.ready().filter(|(_, e)| e.node == node.id).map(|(i, e)| (i, e.ip)).collect();
                    if !local.is_empty() {
                        dests = local;
                    }
                }
                ipvs.add_server(node.ip, np, s, p, &dests, sp.target_port);
            }
        }
        ipvs
    }

    /// Adds a virtual server and its real servers (kube-proxy adds them in Go set order, which is
    /// random; cnisim adds them in EndpointSlice order, each at the list head).
    fn add_server(
        &mut self,
        addr: Ipv4Addr,
        port: u16,
        s: usize,
        p: usize,
        eps: &[(usize, Ipv4Addr)],
        tp: u16,
    ) {
        let mut dests: Vec<RealServer> = eps
            .iter()
            .map(|&(endpoint, ip)| RealServer {
                addr: ip,
                port: tp,
                weight: 1,
                active: 0,
                inactive: 0,
                endpoint,
            })
            .collect();
        dests.reverse();
        let sh_buckets = sh_reassign(&dests);
        let vs = VirtualServer { addr, port, service: s, port_index: p, dests, rr_last: None, sh_buckets };
        self.index.insert((addr, port), self.servers.len());
        self.servers.push(vs);
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
        w.rule(&format!("nat {chain}: -j KUBE-SERVICES"));
        w.rule("KUBE-SERVICES: -s 127.0.0.0/8 -j RETURN");
        if t.src.octets()[0] == 127 {
            return w.done(Verdict::NoService);
        }
        let mut masq = self.cluster_ip_rule(&mut w, t);
        let local = dst_is_local || self.bound.contains(&t.dst);
        w.rule("KUBE-SERVICES: -m addrtype --dst-type LOCAL -j KUBE-NODE-PORT");
        if local {
            masq |= self.nodeport_chain(&mut w, t.dport);
        }
        if !self.cluster_ip_set.is_empty() {
            w.rule("KUBE-SERVICES: -m set --match-set KUBE-CLUSTER-IP dst,dst -j ACCEPT");
            w.lookup(self.cluster_ip_set.contains(&(t.dst, t.dport)), "KUBE-CLUSTER-IP");
        }
        if hook == Hook::Prerouting && !local {
            return w.done(Verdict::NoService);
        }
        w.lookup(false, "IPVS connection table (ip_vs_conn_in_get)");
        let found = self.index.get(&(t.dst, t.dport)).copied();
        w.lookup(found.is_some(), "IPVS service table (ip_vs_service_find)");
        let Some(v) = found else { return w.done(Verdict::NoService) };
        let (service, port) = (self.servers[v].service, self.servers[v].port_index);
        let Some(d) = self.schedule(v, t.src) else {
            w.note("scheduler: no destination available -> ip_vs_leave: ICMP port unreachable");
            return w.done(Verdict::Reject { service, port });
        };
        let dest = &mut self.servers[v].dests[d];
        dest.active += 1;
        let (endpoint, ep_ip, ep_port) = (dest.endpoint, dest.addr, dest.port);
        w.note(&format!("{} scheduler -> {ep_ip}:{ep_port}", self.scheduler.id()));
        self.open.entry((service, port, endpoint)).or_default().push(v);
        if !self.loopback_set.is_empty() {
            w.rule("KUBE-POSTROUTING: -m set --match-set KUBE-LOOP-BACK dst,dst,src -j MASQUERADE");
            masq |= w.lookup(self.loopback_set.contains(&(ep_ip, ep_port, t.src)), "KUBE-LOOP-BACK");
        }
        w.done(Verdict::Dnat { service, port, endpoint, masq })
    }

    /// KUBE-SERVICES' KUBE-CLUSTER-IP mark rule; true when it marks the packet.
    fn cluster_ip_rule(&self, w: &mut Walk, t: &Tuple) -> bool {
        if self.cluster_ip_set.is_empty() {
            return false;
        }
        let hit = match self.cluster_cidr {
            Some(cidr) => {
                w.rule(&format!(
                    "KUBE-SERVICES: -m set --match-set KUBE-CLUSTER-IP dst,dst ! -s {cidr} -j KUBE-MARK-MASQ"
                ));
                !cidr.contains(t.src)
                    && w.lookup(self.cluster_ip_set.contains(&(t.dst, t.dport)), "KUBE-CLUSTER-IP")
            }
            None => {
                w.rule("KUBE-SERVICES: -m set --match-set KUBE-CLUSTER-IP src,dst -j KUBE-MARK-MASQ");
                w.lookup(self.cluster_ip_set.contains(&(t.src, t.dport)), "KUBE-CLUSTER-IP")
            }
        };
        if hit {
            w.rule("KUBE-MARK-MASQ: -j MARK --or-mark 0x4000");
        }
        hit
    }

    /// KUBE-NODE-PORT (nat); true when it marks the packet.
    fn nodeport_chain(&self, w: &mut Walk, dport: u16) -> bool {
        if !self.nodeport_local_udp.is_empty() {
            w.rule("KUBE-NODE-PORT: -p udp -m set --match-set KUBE-NODE-PORT-LOCAL-UDP dst -j RETURN");
            if w.lookup(self.nodeport_local_udp.contains(&dport), "KUBE-NODE-PORT-LOCAL-UDP") {
                return false;
            }
        }
        if !self.nodeport_udp.is_empty() {
            w.rule("KUBE-NODE-PORT: -p udp -m set --match-set KUBE-NODE-PORT-UDP dst -j KUBE-MARK-MASQ");
            if w.lookup(self.nodeport_udp.contains(&dport), "KUBE-NODE-PORT-UDP") {
                w.rule("KUBE-MARK-MASQ: -j MARK --or-mark 0x4000");
                return true;
            }
        }
        false
    }

    /// The scheduler's pick: an index into `dests`, or None with no usable destination.
    fn schedule(&mut self, v: usize, src: Ipv4Addr) -> Option<usize> {
        let vs = &mut self.servers[v];
        if vs.dests.is_empty() {
            return None;
        }
        let pick = match self.scheduler {
            IpvsScheduler::Rr => vs.rr_last.map_or(0, |l| (l + 1) % vs.dests.len()),
            IpvsScheduler::Lc => least(&vs.dests, |d| (d.active << 8) + d.inactive),
            IpvsScheduler::Sed => sed(&vs.dests),
            IpvsScheduler::Sh => vs.sh_buckets[sh_bucket(src)],
        };
        vs.rr_last = Some(pick);
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
        if let Some(d) = self.servers[v].dests.iter_mut().find(|d| d.endpoint == endpoint) {
            d.active = d.active.saturating_sub(1);
        }
    }

    /// `ipvsadm -Ln` output byte for byte (ipvsadm.c `list_all`, `print_title`,
    /// `print_service_entry`): services and destinations sorted with libipvs's
    /// `ipvs_cmp_services` / `ipvs_cmp_dests` through glibc's merge sort, the service name
    /// truncated at 33 characters and the destination at 28, and the destination line printed
    /// with `"  -> %-28s %-7s %-6d %-10u %-10u\n"` (so it ends in padding spaces).
    pub fn ipvsadm_ln(&self) -> String {
        let mut out = format!("IP Virtual Server version 1.2.1 (size={CONN_TAB_SIZE})\n");
        let mut order: Vec<&VirtualServer> = self.servers.iter().collect();
        glibc_msort(&mut order, &|a, b| cmp_addr_port(a.addr, a.port, b.addr, b.port));
        if !order.is_empty() {
            out.push_str("Prot LocalAddress:Port Scheduler Flags\n");
            out.push_str("  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n");
        }
        for vs in order {
            let name = truncate(&format!("UDP  {}:{}", vs.addr, vs.port), 33);
            let _ = writeln!(out, "{name} {}", self.scheduler.id());
            let mut dests: Vec<&RealServer> = vs.dests.iter().collect();
            glibc_msort(&mut dests, &|a, b| cmp_addr_port(a.addr, a.port, b.addr, b.port));
            for d in dests {
                let dname = truncate(&format!("{}:{}", d.addr, d.port), 28);
                let _ = writeln!(
                    out,
                    "  -> {dname:<28} {:<7} {:<6} {:<10} {:<10}",
                    "Masq", d.weight, d.active, d.inactive
                );
            }
        }
        out
    }

    /// An abridged `ipset list` of the non-empty sets that decide UDP Service traffic (Name,
    /// Type, Number of entries, Members; the real command adds Revision, Header, Size in memory
    /// and References). Members are sorted; the kernel lists them in hash order.
    pub fn ipset_list(&self) -> String {
        let mut out = String::new();
        let mut cluster: Vec<_> = self.cluster_ip_set.iter().collect();
        cluster.sort();
        let members = cluster.iter().map(|(ip, port)| format!("{ip},udp:{port}")).collect();
        set_block(&mut out, "KUBE-CLUSTER-IP", "hash:ip,port", members);
        let mut lb: Vec<_> = self.loopback_set.iter().collect();
        lb.sort();
        let members = lb.iter().map(|(ip, port, src)| format!("{ip},udp:{port},{src}")).collect();
        set_block(&mut out, "KUBE-LOOP-BACK", "hash:ip,port,ip", members);
        set_block(
            &mut out,
            "KUBE-NODE-PORT-UDP",
            "bitmap:port",
            self.nodeport_udp.iter().map(u16::to_string).collect(),
        );
        let local = self.nodeport_local_udp.iter().map(u16::to_string).collect();
        set_block(&mut out, "KUBE-NODE-PORT-LOCAL-UDP", "bitmap:port", local);
        out
    }

    pub fn virtual_servers(&self) -> usize {
        self.servers.len()
    }

    pub fn real_servers(&self) -> usize {
        self.servers.iter().map(|v| v.dests.len()).sum()
    }

    /// The ipset entries kube-proxy maintains for this table.
    pub fn ipset_entries(&self) -> usize {
        self.cluster_ip_set.len()
            + self.loopback_set.len()
            + self.nodeport_udp.len()
            + self.nodeport_local_udp.len()
            + self.bound.len()
    }

    /// The iptables rules kube-proxy writes in IPVS mode for this table: the nine jump rules of
    /// `iptablesJumpChain`, then `writeIptablesRules`: in nat KUBE-SERVICES (RETURN for
    /// loopback, the KUBE-CLUSTER-IP mark and ACCEPT rules when that set is non-empty, the
    /// addrtype jump), KUBE-NODE-PORT's two UDP rules when their sets are non-empty,
    /// KUBE-LOAD-BALANCER's mark, KUBE-POSTROUTING (loop-back MASQUERADE when non-empty, RETURN,
    /// xor-mark, MASQUERADE) and KUBE-MARK-MASQ; in filter KUBE-SOURCE-RANGES-FIREWALL's DROP,
    /// two KUBE-FORWARD rules, the health-check ACCEPT and six KUBE-IPVS-FILTER rules.
    pub fn iptables_rules(&self) -> usize {
        let nonempty = |b: bool| usize::from(b);
        let cluster = 2 * nonempty(!self.cluster_ip_set.is_empty());
        let nodeport =
            nonempty(!self.nodeport_udp.is_empty()) + nonempty(!self.nodeport_local_udp.is_empty());
        let nat = 2 + cluster + nodeport + 1 + nonempty(!self.loopback_set.is_empty()) + 3 + 1;
        let filter = 1 + 2 + 1 + 6;
        9 + nat + filter
    }

    /// iptables rules + ipset entries + virtual servers + real servers ("rules installed").
    pub fn rule_count(&self) -> usize {
        self.iptables_rules() + self.ipset_entries() + self.virtual_servers() + self.real_servers()
    }

    /// Kernel memory estimate: service and destination structs (slab estimates, see the
    /// constants), sh tables, ipset elements at their struct sizes and the two bitmap:port sets.
    pub fn memory_bytes(&self) -> usize {
        let sh = if self.scheduler == IpvsScheduler::Sh { SH_TABLE_BYTES } else { 0 };
        self.servers.len() * (SERVICE_BYTES + sh)
            + self.real_servers() * DEST_BYTES
            + self.cluster_ip_set.len() * IPPORT_ELEM_BYTES
            + self.loopback_set.len() * IPPORTIP_ELEM_BYTES
            + self.bound.len() * 4
            + 2 * BITMAP_PORT_BYTES
    }

    /// The virtual server at (addr, port), for inspection.
    pub fn virtual_server(&self, addr: Ipv4Addr, port: u16) -> Option<&VirtualServer> {
        self.index.get(&(addr, port)).map(|&v| &self.servers[v])
    }

    /// The node this state was built for.
    pub fn node(&self) -> NodeId {
        self.node
    }
}

/// Rules and lookups counted along a walk.
struct Walk {
    rules: u32,
    lookups: u32,
    walk: Vec<String>,
    trace: bool,
}

impl Walk {
    fn rule(&mut self, text: &str) {
        self.rules += 1;
        self.note(text);
    }
    fn lookup(&mut self, hit: bool, what: &str) -> bool {
        self.lookups += 1;
        self.note(&format!("  lookup {what}: {}", if hit { "hit" } else { "miss" }));
        hit
    }
    fn note(&mut self, text: &str) {
        if self.trace {
            self.walk.push(text.to_string());
        }
    }
    fn done(self, verdict: Verdict) -> Lookup {
        Lookup { verdict, rules: self.rules, lookups: self.lookups, walk: self.walk }
    }
}

/// lc: the first destination with the least overhead (strict `<`, `ip_vs_lc_schedule`).
fn least(dests: &[RealServer], overhead: impl Fn(&RealServer) -> u32) -> usize {
    let mut best = 0;
    for (i, d) in dests.iter().enumerate().skip(1) {
        if overhead(d) < overhead(&dests[best]) {
            best = i;
        }
    }
    best
}

/// sed: least `(active + 1) / weight`, compared as `loh * w(d) > doh * w(least)` in 64 bits,
/// the first minimum winning (`ip_vs_sed_schedule`; active connections only).
fn sed(dests: &[RealServer]) -> usize {
    let mut best = 0;
    for (i, d) in dests.iter().enumerate().skip(1) {
        let (loh, doh) = (u64::from(dests[best].active) + 1, u64::from(d.active) + 1);
        if loh * u64::from(d.weight) > doh * u64::from(dests[best].weight) {
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

/// `ip_vs_sh_reassign`: buckets are dealt to destinations in list order, `weight` consecutive
/// buckets each, cycling until all 256 are filled.
fn sh_reassign(dests: &[RealServer]) -> Vec<usize> {
    if dests.is_empty() {
        return Vec::new();
    }
    let (mut d, mut count) = (0, 0);
    (0..1usize << SH_TAB_BITS)
        .map(|_| {
            let this = d;
            count += 1;
            if count >= dests[d].weight {
                d = (d + 1) % dests.len();
                count = 0;
            }
            this
        })
        .collect()
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
mod tests {
    use super::*;
    use crate::proxy::{Endpoint, Service, ServicePort};

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn ep(pod: usize, addr: &str, node: usize) -> Endpoint {
        Endpoint { pod, ip: ip(addr), node, ready: true }
    }

    fn svc(
        name: &str,
        cip: &str,
        port: u16,
        np: Option<u16>,
        eps: Vec<Endpoint>,
        policy: TrafficPolicy,
    ) -> Service {
        Service {
            namespace: "default".into(),
            name: name.into(),
            kind: if np.is_some() { ServiceKind::NodePort } else { ServiceKind::ClusterIp },
            cluster_ip: Some(ip(cip)),
            ports: vec![ServicePort { name: String::new(), port, target_port: port, node_port: np }],
            endpoints: eps,
            external_traffic_policy: policy,
        }
    }

    fn node() -> NodeView {
        NodeView { id: 0, name: "node-0".into(), ip: ip("172.18.0.2") }
    }

    fn table(services: Vec<Service>) -> ServiceTable {
        ServiceTable { services, cluster_cidr: Some("10.244.0.0/16".parse().unwrap()) }
    }

    fn t(src: &str, dst: &str, dport: u16) -> Tuple {
        Tuple { src: ip(src), sport: 40000, dst: ip(dst), dport }
    }

    fn two_services() -> ServiceTable {
        let dns = svc(
            "kube-dns",
            "10.96.0.10",
            53,
            None,
            vec![ep(0, "10.244.0.5", 0), ep(1, "10.244.1.7", 1)],
            TrafficPolicy::Cluster,
        );
        let web = svc(
            "web",
            "10.96.0.100",
            8080,
            Some(30080),
            vec![ep(2, "10.244.1.9", 1)],
            TrafficPolicy::Cluster,
        );
        table(vec![dns, web])
    }

    fn picks(ipvs: &mut Ipvs, src: &str, n: usize) -> Vec<usize> {
        (0..n)
            .map(|_| match ipvs.lookup(Hook::Prerouting, &t(src, "10.96.0.10", 53), false, false).verdict {
                Verdict::Dnat { endpoint, .. } => endpoint,
                v => panic!("{v:?}"),
            })
            .collect()
    }

    #[test]
    fn ipvsadm_output_is_byte_exact() {
        let ipvs = Ipvs::build(&two_services(), &node(), IpvsScheduler::Rr);
        // 172.18.0.2 - 10.96.0.10 = 0xA1B1FFF8, negative as an int: libipvs lists the NodePort first.
        let expected = concat!(
            "IP Virtual Server version 1.2.1 (size=4096)\n",
            "Prot LocalAddress:Port Scheduler Flags\n",
            "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n",
            "UDP  172.18.0.2:30080 rr\n",
            "  -> 10.244.1.9:8080              Masq    1      0          0         \n",
            "UDP  10.96.0.10:53 rr\n",
            "  -> 10.244.0.5:53                Masq    1      0          0         \n",
            "  -> 10.244.1.7:53                Masq    1      0          0         \n",
            "UDP  10.96.0.100:8080 rr\n",
            "  -> 10.244.1.9:8080              Masq    1      0          0         \n",
        );
        assert_eq!(ipvs.ipvsadm_ln(), expected);
        assert_eq!((ipvs.virtual_servers(), ipvs.real_servers()), (3, 4));
    }

    #[test]
    fn ipvsadm_sort_wraps_like_libipvs() {
        // 10.96.0.10 - 192.168.0.1 wraps to a positive int: libipvs sorts the node address first.
        let mut s = svc("web", "10.96.0.100", 80, Some(30080), vec![], TrafficPolicy::Cluster);
        s.cluster_ip = Some(ip("10.96.0.100"));
        let n = NodeView { id: 0, name: "n".into(), ip: ip("192.168.0.1") };
        let out = Ipvs::build(&table(vec![s]), &n, IpvsScheduler::Rr).ipvsadm_ln();
        let services: Vec<&str> = out.lines().filter(|l| l.starts_with("UDP")).collect();
        assert_eq!(services, ["UDP  192.168.0.1:30080 rr", "UDP  10.96.0.100:80 rr"]);
    }

    fn three_eps() -> ServiceTable {
        let eps = vec![ep(0, "10.244.0.5", 0), ep(1, "10.244.1.7", 1), ep(2, "10.244.2.9", 2)];
        table(vec![svc("kube-dns", "10.96.0.10", 53, None, eps, TrafficPolicy::Cluster)])
    }

    #[test]
    fn rr_cycles_in_kernel_list_order() {
        // Added 0, 1, 2 at the list head: the list is 2, 1, 0 and rr starts at the head.
        let mut ipvs = Ipvs::build(&three_eps(), &node(), IpvsScheduler::Rr);
        assert_eq!(picks(&mut ipvs, "10.244.0.20", 6), [2, 1, 0, 2, 1, 0]);
    }

    #[test]
    fn rr_gives_exactly_one_nth() {
        let mut ipvs = Ipvs::build(&three_eps(), &node(), IpvsScheduler::Rr);
        let mut counts = [0; 3];
        for e in picks(&mut ipvs, "10.244.0.20", 3000) {
            counts[e] += 1;
        }
        assert_eq!(counts, [1000, 1000, 1000]);
    }

    #[test]
    fn lc_picks_least_active_times_256_plus_inactive() {
        let mut ipvs = Ipvs::build(&three_eps(), &node(), IpvsScheduler::Lc);
        // List order 2, 1, 0. All 0: first (endpoint 2); then 1 and 0 (0 < 256).
        assert_eq!(picks(&mut ipvs, "10.244.0.20", 3), [2, 1, 0]);
        let vs = &mut ipvs.servers[0];
        vs.dests[0].active = 1; // endpoint 2: 256
        vs.dests[1].active = 0;
        vs.dests[1].inactive = 300; // endpoint 1: 300
        vs.dests[2].active = 1;
        vs.dests[2].inactive = 1; // endpoint 0: 257
        assert_eq!(picks(&mut ipvs, "10.244.0.20", 1), [2]);
    }

    #[test]
    fn sed_uses_active_plus_one_only() {
        let mut ipvs = Ipvs::build(&three_eps(), &node(), IpvsScheduler::Sed);
        let vs = &mut ipvs.servers[0];
        vs.dests[0].active = 2; // endpoint 2: cost 3
        vs.dests[1].active = 1; // endpoint 1: cost 2
        vs.dests[1].inactive = 1000; // ignored by sed (lc would avoid it)
        vs.dests[2].active = 1; // endpoint 0: cost 2, later in the list
        assert_eq!(picks(&mut ipvs, "10.244.0.20", 1), [1]);
        let mut ipvs = Ipvs::build(&three_eps(), &node(), IpvsScheduler::Lc);
        ipvs.servers[0].dests = vs_copy(&[2, 1, 1], &[0, 1000, 0]);
        assert_eq!(picks(&mut ipvs, "10.244.0.20", 1), [0]);
    }

    fn vs_copy(active: &[u32], inactive: &[u32]) -> Vec<RealServer> {
        let eps = [2, 1, 0];
        (0..3)
            .map(|i| RealServer {
                addr: ip("10.0.0.1"),
                port: 53,
                weight: 1,
                active: active[i],
                inactive: inactive[i],
                endpoint: eps[i],
            })
            .collect()
    }

    #[test]
    fn sh_maps_source_to_hand_computed_bucket() {
        // 10.244.0.20 = 0x0AF40014; 0x0AF40014 * 0x61C88647 mod 2^32 = 0x65567D8C; >> 24 = 0x65 = 101.
        assert_eq!(sh_bucket(ip("10.244.0.20")), 101);
        // Bucket 101 of 3 weight-1 destinations is list entry 101 % 3 = 2, which is endpoint 0.
        let mut ipvs = Ipvs::build(&three_eps(), &node(), IpvsScheduler::Sh);
        assert_eq!(picks(&mut ipvs, "10.244.0.20", 4), [0, 0, 0, 0]);
    }

    #[test]
    fn udp_connections_stay_active_until_closed() {
        let mut ipvs = Ipvs::build(&three_eps(), &node(), IpvsScheduler::Lc);
        assert_eq!(picks(&mut ipvs, "10.244.0.20", 1), [2]);
        let d = |i: &Ipvs| i.servers[0].dests[0].clone();
        assert_eq!((d(&ipvs).active, d(&ipvs).inactive), (1, 0));
        ipvs.connection_closed(0, 0, 2);
        assert_eq!((d(&ipvs).active, d(&ipvs).inactive), (0, 0));
        ipvs.connection_closed(0, 0, 2);
        assert_eq!(d(&ipvs).active, 0);
    }

    #[test]
    fn cost_is_flat_in_the_number_of_services() {
        let cost = |n: usize| {
            let services = (0..n)
                .map(|i| {
                    let cip = Ipv4Addr::from(u32::from(ip("10.96.0.0")) + i as u32 + 1).to_string();
                    svc(
                        &format!("s{i}"),
                        &cip,
                        80,
                        None,
                        vec![ep(0, "10.244.1.7", 1)],
                        TrafficPolicy::Cluster,
                    )
                })
                .collect();
            let mut ipvs = Ipvs::build(&table(services), &node(), IpvsScheduler::Rr);
            let l = ipvs.lookup(Hook::Prerouting, &t("10.244.0.20", "10.96.0.1", 80), false, false);
            assert!(matches!(l.verdict, Verdict::Dnat { service: 0, masq: false, .. }));
            let miss = ipvs.lookup(Hook::Prerouting, &t("10.244.0.20", "8.8.8.8", 53), false, false);
            assert_eq!(miss.verdict, Verdict::NoService);
            (l.rules, l.lookups, miss.rules, miss.lookups)
        };
        // Hit: jump, RETURN, CLUSTER-IP mark (no ipset test from inside the CIDR), addrtype,
        // ACCEPT (one test); conn table + service table. Miss: the same rules, no IPVS.
        assert_eq!(cost(10), (5, 3, 5, 1));
        assert_eq!(cost(10), cost(10_000));
    }

    #[test]
    fn off_cluster_source_and_hairpin_are_masqueraded() {
        let eps = vec![ep(0, "10.244.0.5", 0)];
        let mut ipvs = Ipvs::build(
            &table(vec![svc("a", "10.96.0.10", 53, None, eps, TrafficPolicy::Cluster)]),
            &node(),
            IpvsScheduler::Rr,
        );
        let l = ipvs.lookup(Hook::Prerouting, &t("192.168.5.5", "10.96.0.10", 53), false, true);
        assert_eq!(l.verdict, Verdict::Dnat { service: 0, port: 0, endpoint: 0, masq: true });
        assert_eq!((l.rules, l.lookups), (7, 5));
        let l = ipvs.lookup(Hook::Prerouting, &t("10.244.0.5", "10.96.0.10", 53), false, false);
        assert_eq!(l.verdict, Verdict::Dnat { service: 0, port: 0, endpoint: 0, masq: true });
        let l = ipvs.lookup(Hook::Prerouting, &t("10.244.0.6", "10.96.0.10", 53), false, false);
        assert_eq!(l.verdict, Verdict::Dnat { service: 0, port: 0, endpoint: 0, masq: false });
    }

    #[test]
    fn no_endpoints_is_rejected() {
        let mut ipvs = Ipvs::build(
            &table(vec![svc("e", "10.96.0.50", 80, None, vec![], TrafficPolicy::Cluster)]),
            &node(),
            IpvsScheduler::Rr,
        );
        let l = ipvs.lookup(Hook::Output, &t("172.18.0.2", "10.96.0.50", 80), false, false);
        assert_eq!(l.verdict, Verdict::Reject { service: 0, port: 0 });
    }

    #[test]
    fn nodeport_local_lists_only_local_endpoints() {
        let eps = vec![ep(0, "10.244.0.5", 0), ep(1, "10.244.1.7", 1)];
        let s = svc("web", "10.96.0.100", 8080, Some(30080), eps, TrafficPolicy::Local);
        let mut ipvs = Ipvs::build(&table(vec![s]), &node(), IpvsScheduler::Rr);
        let vs = ipvs.virtual_server(ip("172.18.0.2"), 30080).unwrap();
        assert_eq!(vs.dests.iter().map(|d| d.endpoint).collect::<Vec<_>>(), [0]);
        assert_eq!(ipvs.virtual_server(ip("10.96.0.100"), 8080).unwrap().dests.len(), 2);
        let l = ipvs.lookup(Hook::Prerouting, &t("192.168.5.5", "172.18.0.2", 30080), true, false);
        assert_eq!(l.verdict, Verdict::Dnat { service: 0, port: 0, endpoint: 0, masq: false });
        let out = ipvs.ipset_list();
        assert!(out.contains(
            "Name: KUBE-NODE-PORT-LOCAL-UDP\nType: bitmap:port\nNumber of entries: 1\nMembers:\n30080\n"
        ));
    }

    #[test]
    fn nodeport_local_without_local_endpoints_falls_back_to_all() {
        let s =
            svc("web", "10.96.0.100", 8080, Some(30080), vec![ep(1, "10.244.1.7", 1)], TrafficPolicy::Local);
        let ipvs = Ipvs::build(&table(vec![s]), &node(), IpvsScheduler::Rr);
        assert_eq!(ipvs.virtual_server(ip("172.18.0.2"), 30080).unwrap().dests.len(), 1);
    }

    #[test]
    fn nodeport_cluster_policy_is_masqueraded() {
        let mut ipvs = Ipvs::build(&two_services(), &node(), IpvsScheduler::Rr);
        let l = ipvs.lookup(Hook::Prerouting, &t("192.168.5.5", "172.18.0.2", 30080), true, false);
        assert_eq!(l.verdict, Verdict::Dnat { service: 1, port: 0, endpoint: 0, masq: true });
        assert!(ipvs.rule_count() > ipvs.iptables_rules());
    }
}
