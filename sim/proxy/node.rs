//! One node's proxy at run time: the rules it has programmed, its conntrack table, its sync
//! state and what it counted.
//!
//! The rules are built from one version of the cluster's [`ServiceTable`]; after a change the
//! proxy keeps answering from the old rules until its sync finishes (the window in which new
//! connections can still go to a deleted endpoint).

use rustc_hash::FxHashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use rand::{Rng, RngCore};
use rand_chacha::ChaCha8Rng;

use super::iptables::NatTable;
use super::ipvs::Ipvs;
use super::nftables::NftTable;
use super::userspace::Portals;
use super::{Hook, Lookup, NodeView, Verdict};
use crate::cluster::{ProxyMode, ServiceTable};
use crate::cost::CostProfile;
use crate::net::conntrack::{Conntrack, EntryId, Taken};
use crate::net::conntrack::{Tuple, L4};
use crate::time::{Duration, Instant};

/// Cilium's `bpf-ct-global-any-max` default: entries of the non-TCP connection-tracking map.
pub const BPF_CT_MAX: usize = 262_144;

/// kube-proxy's `minSyncPeriod` default (pkg/proxy/apis/config/v1alpha1/defaults.go), with
/// the BoundedFrequencyRunner's burst of 2 syncs.
pub const MIN_SYNC_PERIOD: Duration = Duration::from_secs(1);
pub const SYNC_BURST: u32 = 2;

impl std::fmt::Debug for Rules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Rules({} installed)", self.installed())
    }
}

/// The programmed rules, in the mode's own structure.
///
/// Rule sets that do not depend on the node are built once and shared between nodes (see
/// [`Rules::shared_by_nodes`]); IPVS keeps per-node scheduler state and the userspace portals
/// name per-node ports, so those are always the node's own.
pub enum Rules {
    Userspace(Portals),
    Iptables(Arc<NatTable>),
    Ipvs(Box<Ipvs>),
    Nftables(Arc<NftTable>),
    Ebpf(Arc<BpfLb>),
}

/// Cilium's service maps (`cilium_lb4_services_v2`, `cilium_lb4_backends`): one hash lookup
/// finds the frontend, a random slot picks the backend (`lb4_select_backend_id_random`:
/// `get_prandom_u32() % count`), a second lookup reads the backend.
pub struct BpfLb {
    /// (frontend address, port, protocol) -> (service, port index), as `struct lb4_key` holds
    /// address, dport and proto. NodePorts are keyed on the node IP.
    frontends: FxHashMap<(Ipv4Addr, u16, L4), (usize, usize)>,
    /// Ready backends per service, as endpoint indices.
    backends: Vec<Vec<usize>>,
    /// Map entries (frontends + backend slots), for "rules installed".
    entries: usize,
}

impl BpfLb {
    pub fn build(table: &ServiceTable, node: &NodeView) -> BpfLb {
        let mut frontends = FxHashMap::default();
        let mut backends = Vec::with_capacity(table.services.len());
        let mut entries = 0;
        for (si, s) in table.services.iter().enumerate() {
            let ready: Vec<usize> = s.ready().map(|(i, _)| i).collect();
            let local: Vec<usize> = s.ready().filter(|(_, e)| e.node == node.id).map(|(i, _)| i).collect();
            if let Some(vip) = s.cluster_ip {
                for (pi, p) in s.ports.iter().enumerate() {
                    let proto = p.protocol.l4();
                    frontends.insert((vip, p.port, proto), (si, pi));
                    entries += 1 + ready.len();
                    if let Some(np) = p.node_port {
                        frontends.insert((node.ip, np, proto), (si, pi));
                        let n = match s.external_traffic_policy {
                            crate::cluster::TrafficPolicy::Cluster => ready.len(),
                            crate::cluster::TrafficPolicy::Local => local.len(),
                        };
                        entries += 1 + n;
                    }
                }
            }
            backends.push(ready);
        }
        BpfLb { frontends, backends, entries }
    }

    fn lookup(&self, table: &ServiceTable, node: &NodeView, t: &Tuple, random: u32, trace: bool) -> Lookup {
        let mut walk = Vec::new();
        let Some(&(si, pi)) = self.frontends.get(&(t.dst, t.dport, t.proto)) else {
            if trace {
                walk.push(format!("lb4_lookup_service {}:{}: miss, not a service", t.dst, t.dport));
            }
            return Lookup { verdict: Verdict::NoService, rules: 0, lookups: 1, walk };
        };
        let s = &table.services[si];
        let nodeport = Some(t.dst) != s.cluster_ip;
        let candidates: Vec<usize> =
            if nodeport && s.external_traffic_policy == crate::cluster::TrafficPolicy::Local {
                self.backends[si].iter().copied().filter(|&e| s.endpoints[e].node == node.id).collect()
            } else {
                self.backends[si].clone()
            };
        if trace {
            walk.push(format!(
                "lb4_lookup_service {}:{}: {}/{} with {} backends",
                t.dst,
                t.dport,
                s.namespace,
                s.name,
                candidates.len()
            ));
        }
        if candidates.is_empty() {
            if trace {
                walk.push("no backend: ICMP port unreachable (service-no-backend-response: reject)".into());
            }
            return Lookup { verdict: Verdict::Reject { service: si, port: pi }, rules: 0, lookups: 1, walk };
        }
        let slot = (random as usize) % candidates.len();
        let endpoint = candidates[slot];
        if trace {
            let e = &s.endpoints[endpoint];
            walk.push(format!(
                "backend slot {} of {}: {}:{}",
                slot + 1,
                candidates.len(),
                e.ip,
                s.ports[pi].target_port
            ));
        }
        // NodePort traffic to a remote backend is SNATed to the node (Cilium's default SNAT
        // mode); ClusterIP traffic keeps the pod's address.
        let masq = nodeport
            && s.external_traffic_policy == crate::cluster::TrafficPolicy::Cluster
            && s.endpoints[endpoint].node != node.id;
        Lookup {
            verdict: Verdict::Dnat { service: si, port: pi, endpoint, masq },
            rules: 0,
            lookups: 2,
            walk,
        }
    }
}

impl Rules {
    /// Builds the mode's rules for `node` from `table`. `order` is the seeded permutation of
    /// Services kube-proxy's Go map iteration would write them in.
    pub fn build(
        mode: ProxyMode,
        table: &ServiceTable,
        node: &NodeView,
        order: &[usize],
        proxy_ports: &[u16],
    ) -> Rules {
        match mode {
            ProxyMode::Userspace => Rules::Userspace(Portals::build(table, node, proxy_ports)),
            ProxyMode::Iptables => {
                Rules::Iptables(Arc::new(NatTable::build(table, node, order, node.random_fully)))
            }
            ProxyMode::Ipvs(s) => Rules::Ipvs(Box::new(Ipvs::build(table, node, s))),
            ProxyMode::Nftables => Rules::Nftables(Arc::new(NftTable::build(table, node))),
            ProxyMode::Ebpf { .. } => Rules::Ebpf(Arc::new(BpfLb::build(table, node))),
        }
    }

    /// Whether every node would build exactly the same rules from `table` in `mode`, so one
    /// copy can serve them all: iptables and nftables unless a NodePort Service has the Local
    /// policy (its chains list the node's own endpoints); Cilium's maps unless there is a
    /// NodePort (keyed on the node's address). Shared iptables rules have one KUBE-SERVICES
    /// order on every node (each real kube-proxy has its own).
    pub fn shared_by_nodes(mode: ProxyMode, table: &ServiceTable) -> bool {
        let nodeports = || table.services.iter().filter(|s| s.ports.iter().any(|p| p.node_port.is_some()));
        match mode {
            ProxyMode::Iptables | ProxyMode::Nftables => {
                nodeports().all(|s| s.external_traffic_policy == crate::cluster::TrafficPolicy::Cluster)
            }
            ProxyMode::Ebpf { .. } => nodeports().next().is_none(),
            ProxyMode::Userspace | ProxyMode::Ipvs(_) => false,
        }
    }

    /// Another handle on shared rules (`None` for rules a node must own).
    fn share(&self) -> Option<Rules> {
        match self {
            Rules::Iptables(t) => Some(Rules::Iptables(t.clone())),
            Rules::Nftables(t) => Some(Rules::Nftables(t.clone())),
            Rules::Ebpf(t) => Some(Rules::Ebpf(t.clone())),
            Rules::Userspace(_) | Rules::Ipvs(_) => None,
        }
    }

    /// Rules (or map entries) installed.
    pub fn installed(&self) -> usize {
        match self {
            Rules::Userspace(t) => t.rule_count(),
            Rules::Iptables(t) => t.rule_count(),
            Rules::Ipvs(t) => t.rule_count(),
            Rules::Nftables(t) => t.rule_count(),
            Rules::Ebpf(t) => t.entries,
        }
    }

    /// Kernel memory the rules take, in bytes.
    pub fn memory_bytes(&self) -> usize {
        match self {
            Rules::Userspace(t) => t.memory_bytes(),
            Rules::Iptables(t) => t.memory_bytes(),
            Rules::Ipvs(t) => t.memory_bytes(),
            Rules::Nftables(t) => t.memory_bytes(),
            // struct lb4_key (8 B) + lb4_service (12 B) per entry plus the hash map's per-element
            // overhead (htab_elem: ~48 B), from cilium bpf/lib/lb.h and kernel/bpf/hashtab.c.
            Rules::Ebpf(t) => t.entries * (8 + 12 + 48),
        }
    }
}

/// Builds every node's rules for one version of the Service table, sharing what the nodes can
/// share: the whole rule set when [`Rules::shared_by_nodes`], IPVS's node-independent part
/// always.
pub struct NodeRules<'a> {
    mode: ProxyMode,
    table: &'a ServiceTable,
    share: bool,
    shared: Option<Rules>,
    ipvs: Option<Arc<super::ipvs::IpvsShared>>,
}

impl<'a> NodeRules<'a> {
    pub fn new(mode: ProxyMode, table: &'a ServiceTable) -> NodeRules<'a> {
        let ipvs = matches!(mode, ProxyMode::Ipvs(_)).then(|| Ipvs::shared(table));
        NodeRules { mode, table, share: Rules::shared_by_nodes(mode, table), shared: None, ipvs }
    }

    /// `node`'s rules; `order` (KUBE-SERVICES) and `proxy_ports` (userspace) are the node's own.
    pub fn for_node(&mut self, node: &NodeView, order: &[usize], proxy_ports: &[u16]) -> Rules {
        if let Some(r) = self.shared.as_ref().and_then(Rules::share) {
            return r;
        }
        let rules = match (self.mode, &self.ipvs) {
            (ProxyMode::Ipvs(s), Some(sh)) => {
                Rules::Ipvs(Box::new(Ipvs::for_node(sh.clone(), self.table, node, s)))
            }
            _ => Rules::build(self.mode, self.table, node, order, proxy_ports),
        };
        if self.share {
            self.shared = rules.share();
        }
        rules
    }
}

/// What [`NodeProxy::nat_source_port`] chose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortChoice {
    pub port: u16,
    /// The connection's own source port was free.
    pub kept: bool,
    /// Whether another entry holds the chosen tuple: [`Taken::Free`] unless every port tried
    /// was in use ([`Taken::Confirmed`]) or one was picked that a connection not yet
    /// confirmed holds ([`Taken::Unconfirmed`]); either way its confirmation fails.
    pub taken: Taken,
    /// Tuples looked up in the table.
    pub tried: u32,
}

/// `NF_NAT_MAX_ATTEMPTS` (include/net/netfilter/nf_nat.h): tuples tried in a first round.
pub const NF_NAT_MAX_ATTEMPTS: u32 = 128;

/// Connections POSTROUTING's MASQUERADE set up on a node.
#[derive(Clone, Copy, Debug, Default)]
pub struct MasqStats {
    pub connections: u64,
    /// Of them, kept their own source port (MASQUERADE without `--random-fully`).
    pub source_port_kept: u64,
    /// Tuples looked up choosing ports.
    pub tuples_tried: u64,
    /// Dropped at confirmation (counted in the table's `insert_failed`): the tuple was taken
    /// by a connection not yet confirmed when the port was chosen (a race between cores), or
    /// every port tried was in use.
    pub insert_failed_race: u64,
    pub insert_failed_no_port: u64,
}

/// Counters of one node's proxy.
#[derive(Clone, Debug, Default)]
pub struct ProxyStats {
    /// New connections that reached the rules (conntrack misses).
    pub new_connections: u64,
    /// Established connections whose backend had gone and that Cilium's `lb4_local` sent to
    /// a new one.
    pub reselected: u64,
    /// Rules evaluated over all new connections, and the most for one.
    pub rules_evaluated: u64,
    pub rules_worst: u32,
    /// Hash lookups over all new connections.
    pub lookups: u64,
    /// New connections translated to a Service endpoint, and the rules they evaluated.
    pub translated: u64,
    pub translated_rules: u64,
    pub translated_rules_worst: u32,
    pub translated_lookups: u64,
    /// CPU spent on the translated ones.
    pub translated_cpu: Duration,
    pub rejected: u64,
    pub conntrack_full: u64,
    pub masquerade: MasqStats,
    /// CPU spent on new connections (rules, lookups, conntrack creation, NAT set-up).
    pub new_connection_cpu: Duration,
    /// Packets that hit an existing conntrack entry, and the CPU spent on them.
    pub established_packets: u64,
    pub established_cpu: Duration,
    /// New connections translated to each (service, endpoint pod).
    pub per_endpoint: std::collections::BTreeMap<(usize, crate::cluster::PodId), u64>,
    /// Completed syncs: (change time, rules in place at).
    pub syncs: Vec<(Instant, Instant)>,
    /// CPU time of those syncs.
    pub sync_cpu: Duration,
}

pub struct NodeProxy {
    pub mode: ProxyMode,
    pub node: NodeView,
    /// The Service table the rules were built from (endpoint indices refer to it).
    pub table: Arc<ServiceTable>,
    pub version: usize,
    pub rules: Rules,
    /// netfilter's connection table (kube-proxy's NAT, the CNI's masquerade, every tracked flow).
    pub conntrack: Conntrack,
    /// Cilium's own connection-tracking map for the service translation its programs do on
    /// pod veths (`cilium_ct4_global`), separate from netfilter's.
    pub bpf_ct: Conntrack,
    pub stats: ProxyStats,
    /// The sync runner: tokens left, when the last one was taken, when the proxy is free.
    tokens: f64,
    last_token: Instant,
    pub busy_until: Instant,
    /// Userspace mode: the proxy's listening port per (service, port) with a cluster IP, in
    /// table order, and the process (`World::procs`) that owns them.
    pub proxy_ports: Vec<u16>,
    pub proc: Option<usize>,
    /// Cilium's service maps when a kube-proxy mode programs the node but a Cilium CNI's
    /// bpf_lxc translates pod traffic itself (built on first use, rebuilt after each sync).
    pod_lb: Option<Arc<BpfLb>>,
    rng: ChaCha8Rng,
    /// The NAT port rovers of kernels before the February 2022 fix, TCP's and UDP's (one
    /// `static u16` per protocol in nf_nat_proto_tcp.c / _udp.c, shared by every core).
    rovers: [u16; 2],
}

/// What a new connection's lookup produced, with its CPU cost.
pub struct NewConnection {
    pub lookup: Lookup,
    pub cost: Duration,
}

impl NodeProxy {
    /// A node's proxy with its rules as of start-up, from `rules` (built for `table`).
    pub fn new(
        node: NodeView,
        table: Arc<ServiceTable>,
        rules: &mut NodeRules,
        conntrack_max: usize,
        mut rng: ChaCha8Rng,
    ) -> NodeProxy {
        let mode = rules.mode;
        let order = go_map_order(table.services.len(), &mut rng);
        // The kernel's ephemeral ports for the userspace proxy's listening sockets (bound to
        // port 0): a random order of ip_local_port_range, 32768-60999. Past 28,232 Service
        // ports the range is exhausted and the remaining Services get no proxy at all.
        let mut proxy_ports = Vec::new();
        if mode == ProxyMode::Userspace {
            let mut range: Vec<u16> = (32768..=60999).collect();
            let n = Portals::ports_needed(&table).min(range.len());
            for i in 0..n {
                let j = rng.random_range(i..range.len());
                range.swap(i, j);
            }
            proxy_ports = range[..n].to_vec();
        }
        let rules = rules.for_node(&node, &order, &proxy_ports);
        NodeProxy {
            mode,
            node,
            table,
            version: 0,
            rules,
            conntrack: Conntrack::new(conntrack_max),
            bpf_ct: Conntrack::new(BPF_CT_MAX),
            stats: ProxyStats::default(),
            // The initial sync at start-up took one token.
            tokens: (SYNC_BURST - 1) as f64,
            last_token: Instant::ZERO,
            busy_until: Instant::ZERO,
            proxy_ports,
            proc: None,
            pod_lb: None,
            rng,
            rovers: [0; 2],
        }
    }

    /// Looks up a new connection's first packet and counts it.
    /// `from_pod_veth`: the lookup is the eBPF program on a pod's veth (Cilium's bpf_lxc), which
    /// reads Cilium's own service maps even when kube-proxy programs the node.
    #[allow(clippy::too_many_arguments)]
    pub fn new_connection(
        &mut self,
        costs: &CostProfile,
        hook: Hook,
        t: &Tuple,
        dst_is_local: bool,
        src_is_local: bool,
        from_pod_veth: bool,
        trace: bool,
    ) -> NewConnection {
        let rng = &mut self.rng;
        let mut random = || rng.next_u32();
        if !from_pod_veth && !dst_is_local && matches!(self.rules, Rules::Ebpf(_)) {
            // Cilium's host programs only serve NodePorts; netfilter just tracks the flow.
            let lookup = Lookup { verdict: Verdict::NoService, rules: 0, lookups: 0, walk: Vec::new() };
            return self.count(costs, lookup);
        }
        if from_pod_veth && !matches!(self.rules, Rules::Ebpf(_)) {
            let maps = self.pod_lb.get_or_insert_with(|| Arc::new(BpfLb::build(&self.table, &self.node)));
            let x = random();
            let lookup = maps.lookup(&self.table, &self.node, t, x, trace);
            return self.count(costs, lookup);
        }
        let mut lookup = match &mut self.rules {
            Rules::Userspace(r) => r.walk(hook, t, dst_is_local, trace),
            Rules::Iptables(r) => r.walk(hook, t, dst_is_local, src_is_local, &mut random, trace),
            Rules::Ipvs(r) => r.lookup(hook, t, dst_is_local, trace),
            Rules::Nftables(r) => r.lookup(hook, t, dst_is_local, &mut random, trace),
            Rules::Ebpf(r) => {
                let x = random();
                r.lookup(&self.table, &self.node, t, x, trace)
            }
        };
        // POSTROUTING: KUBE-POSTROUTING (or its equivalent) runs for every new connection.
        let masq = matches!(lookup.verdict, Verdict::Dnat { masq: true, .. });
        let post = match &self.rules {
            Rules::Iptables(r) => r.postrouting(masq).0,
            Rules::Userspace(_) => 0,
            Rules::Ipvs(_) | Rules::Nftables(_) => 1 + masq as u32,
            Rules::Ebpf(_) => 0,
        };
        lookup.rules += post;
        if trace && post > 0 {
            let what = if masq { "marked 0x4000: MASQUERADE" } else { "not marked: RETURN" };
            lookup.walk.push(format!("POSTROUTING -> KUBE-POSTROUTING: {post} rules, {what}"));
        }
        self.count(costs, lookup)
    }

    /// Charges and counts a new connection's lookup.
    fn count(&mut self, costs: &CostProfile, lookup: Lookup) -> NewConnection {
        let cost = costs.iptables_rule * lookup.rules as u64
            + costs.hash_lookup * lookup.lookups as u64
            + costs.conntrack_new
            + if matches!(lookup.verdict, Verdict::Dnat { .. }) { costs.nat_rewrite } else { Duration::ZERO };
        let s = &mut self.stats;
        s.new_connections += 1;
        s.rules_evaluated += lookup.rules as u64;
        s.rules_worst = s.rules_worst.max(lookup.rules);
        s.lookups += lookup.lookups as u64;
        s.new_connection_cpu += cost;
        match lookup.verdict {
            // A userspace redirect is the translation too (the process picks the backend).
            Verdict::Dnat { .. } | Verdict::Redirect { .. } => {
                s.translated += 1;
                s.translated_rules += lookup.rules as u64;
                s.translated_rules_worst = s.translated_rules_worst.max(lookup.rules);
                s.translated_lookups += lookup.lookups as u64;
                s.translated_cpu += cost;
            }
            Verdict::Reject { .. } | Verdict::Drop { .. } => s.rejected += 1,
            Verdict::NoService => {}
        }
        NewConnection { lookup, cost }
    }

    /// MASQUERADE's source port for connection `own`, chosen at `at`: `reply_base` is its
    /// reply tuple with the new source address as destination, `sport` its source port.
    /// As `get_unique_tuple` and `nf_nat_l4proto_unique_tuple` (net/netfilter/nf_nat_core.c,
    /// Linux 6.x) do it for a MASQUERADE range of one address and no ports: without
    /// `--random-fully` the source port is kept if no connection in the hash table holds the
    /// tuple; else (and always with it) a random offset (`get_random_u16`) into the port's
    /// class (1-511, 600-1023 or 1024-65535) and the next ports, at most 128
    /// (`NF_NAT_MAX_ATTEMPTS`); failing that, rounds from new random offsets, each half as long,
    /// down to 8 (128 + 64 + 32 + 16 + 8 = 248 tuples in all). When every one tried is taken
    /// the last stays, and the confirmation fails. Entries not yet confirmed are not seen
    /// ([`Conntrack::tuple_taken`]). Not modelled: `find_appropriate_src` (reusing the
    /// mapping of another connection from the same source address and port) and
    /// `nf_nat_used_tuple_harder`'s eviction of closing TCP entries in the last attempts.
    ///
    /// With `rovers`, as kernels before the February 2022 fix ("netfilter: nat: remove l4
    /// protocol port rovers", 6ed5943f8735, and "limit port clash resolution attempts", both
    /// backported to every stable series): without `--random-fully` the search starts at the
    /// protocol's rover, the offset the last search ended on, and the rover is left on the port
    /// chosen; with it at `prandom_u32()`; either way it goes on through the whole range. Two
    /// searches close together start from the same rover and, the first not yet confirmed,
    /// end on the same port ("inherently racy and cause packet drops/delays", the fix's cover
    /// letter).
    pub fn nat_source_port(
        &mut self,
        own: EntryId,
        reply_base: Tuple,
        sport: u16,
        random_fully: bool,
        rovers: bool,
        at: Instant,
    ) -> PortChoice {
        let mut tried = 0u32;
        let mut taken = |ct: &mut Conntrack, port: u16| {
            tried += 1;
            ct.tuple_taken(&Tuple { dport: port, ..reply_base }, at, own)
        };
        if !random_fully {
            let t = taken(&mut self.conntrack, sport);
            if t != Taken::Confirmed {
                return PortChoice { port: sport, kept: true, taken: t, tried };
            }
        }
        let (min, size): (u32, u32) = match sport {
            0..=511 => (1, 511),
            512..=1023 => (600, 424),
            _ => (1024, 64512),
        };
        if rovers {
            let rover = usize::from(reply_base.proto == L4::Udp);
            let mut off: u16 =
                if random_fully { self.rng.random::<u32>() as u16 } else { self.rovers[rover] };
            for i in 1..=size {
                let port = (min + u32::from(off) % size) as u16;
                let t = taken(&mut self.conntrack, port);
                if i != size && t == Taken::Confirmed {
                    off = off.wrapping_add(1);
                    continue;
                }
                if !random_fully {
                    self.rovers[rover] = off;
                }
                return PortChoice { port, kept: false, taken: t, tried };
            }
        }
        let mut off: u16 = self.rng.random();
        let mut attempts = size.min(NF_NAT_MAX_ATTEMPTS);
        let mut last = (0, Taken::Free);
        loop {
            for _ in 0..attempts {
                let port = (min + u32::from(off) % size) as u16;
                off = off.wrapping_add(1);
                last = (port, taken(&mut self.conntrack, port));
                if last.1 != Taken::Confirmed {
                    return PortChoice { port, kept: false, taken: last.1, tried };
                }
            }
            if attempts >= size || attempts < 16 {
                return PortChoice { port: last.0, kept: false, taken: last.1, tried };
            }
            attempts /= 2;
            off = self.rng.random();
        }
    }

    /// Cilium's BPF SNAT port for a NodePort connection (`snat_v4_new_mapping`): a random
    /// offset into 1024-65535, then the next free one. The map insert is atomic, so no
    /// confirmation race.
    pub fn masquerade_port(&mut self, reply_base: crate::net::conntrack::Tuple) -> Option<u16> {
        let start: u32 = self.rng.random_range(0..64512);
        (0..64512u32)
            .map(|i| 1024 + ((start + i) % 64512) as u16)
            .find(|&p| !self.conntrack.reply_taken(&crate::net::conntrack::Tuple { dport: p, ..reply_base }))
    }

    /// An endpoint change reached this proxy at `at`: when its sync will start. kube-proxy's
    /// BoundedFrequencyRunner allows a burst of 2 syncs and one more per `minSyncPeriod`;
    /// Cilium's agent updates its maps at once.
    pub fn sync_start(&mut self, at: Instant) -> Instant {
        let at = at.max(self.busy_until);
        if !self.mode.is_kube_proxy() {
            return at;
        }
        let refill = (at - self.last_token).as_nanos() as f64 / MIN_SYNC_PERIOD.as_nanos() as f64;
        self.tokens = (self.tokens + refill).min(SYNC_BURST as f64);
        self.last_token = at;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return at;
        }
        let wait = ((1.0 - self.tokens) * MIN_SYNC_PERIOD.as_nanos() as f64).ceil() as u64;
        self.tokens = 0.0;
        self.last_token = at + Duration::from_nanos(wait);
        at + Duration::from_nanos(wait)
    }

    /// The CPU time a sync from the current rules to `next` takes, the way each mode really
    /// writes its changes: iptables-restore of the whole table (the kernel replaces the whole
    /// table blob even when kube-proxy writes only the changed chains); IPVS, nftables and BPF
    /// maps one object per change. kube-proxy also walks every Service port each sync.
    pub fn sync_cost(&self, costs: &CostProfile, next: &Rules, changed_objects: usize) -> Duration {
        let ports: usize = self.table.services.iter().map(|s| s.ports.len()).sum();
        match (&self.rules, next) {
            // Endpoint changes only touch the proxy's in-memory balancer; portal rules change
            // with Services, not endpoints.
            (Rules::Userspace(_), Rules::Userspace(_)) => {
                costs.proxy_sync_base + costs.proxy_sync_per_service * ports as u64
            }
            (Rules::Iptables(_), Rules::Iptables(n)) => {
                costs.proxy_sync_base
                    + costs.proxy_sync_per_service * ports as u64
                    + costs.iptables_restore_line * n.restore_lines() as u64
                    + costs.iptables_replace_rule * n.rule_count() as u64
            }
            (Rules::Ipvs(_), Rules::Ipvs(n)) => {
                // The few iptables rules are restored too, and the virtual servers are dumped
                // over netlink to diff against (ipvs proxier: GetVirtualServers every sync).
                costs.proxy_sync_base
                    + costs.proxy_sync_per_service * ports as u64
                    + costs.netlink_object * (changed_objects as u64)
                    + costs.netlink_dump_entry * n.virtual_servers() as u64
            }
            (Rules::Nftables(_), Rules::Nftables(_)) => {
                costs.proxy_sync_base
                    + costs.proxy_sync_per_service * ports as u64
                    + costs.netlink_object * changed_objects as u64
            }
            _ => costs.cilium_service_update + costs.bpf_map_update * changed_objects.max(1) as u64,
        }
    }

    /// Whether the backend a connection was translated to is still in its Service's backend
    /// map. Only a sync removes backends, so before the first one every backend is live.
    pub fn backend_live(&self, d: &crate::net::conntrack::Dnat) -> bool {
        self.version == 0
            || self.table.services.get(d.service).is_some_and(|s| s.ready().any(|(_, e)| e.ip == d.to.0))
    }

    /// Installs the rules of a finished sync.
    pub fn install(&mut self, table: Arc<ServiceTable>, version: usize, rules: Rules) {
        self.table = table;
        self.version = version;
        self.rules = rules;
        self.pod_lb = None;
    }

    /// A seeded permutation for the next sync's KUBE-SERVICES order.
    pub fn next_order(&mut self) -> Vec<usize> {
        go_map_order(self.table.services.len(), &mut self.rng)
    }
}

/// kube-proxy writes KUBE-SERVICES by ranging over a Go map, whose order is random on every
/// sync: a seeded shuffle stands for it.
pub fn go_map_order(n: usize, rng: &mut ChaCha8Rng) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = rng.random_range(0..=i);
        order.swap(i, j);
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{Protocol, TrafficPolicy};
    use crate::proxy::fixtures::{ep, node, svc, t, table, tcp, with_protocol};

    #[test]
    fn cilium_frontends_are_keyed_by_protocol() {
        let dns = svc("dns", "10.96.0.10", 53, None, vec![ep(0, "10.244.0.5", 0)], TrafficPolicy::Cluster);
        let web = svc("web", "10.96.0.20", 80, None, vec![ep(1, "10.244.0.6", 0)], TrafficPolicy::Cluster);
        let tbl = table(vec![dns, with_protocol(web, Protocol::Tcp)]);
        let lb = BpfLb::build(&tbl, &node());
        let verdict = |tuple: &Tuple| lb.lookup(&tbl, &node(), tuple, 0, false).verdict;
        let dnat = |service| Verdict::Dnat { service, port: 0, endpoint: 0, masq: false };
        assert_eq!(verdict(&t("10.244.1.2", "10.96.0.10", 53)), dnat(0));
        assert_eq!(verdict(&tcp("10.244.1.2", "10.96.0.20", 80)), dnat(1));
        assert_eq!(verdict(&tcp("10.244.1.2", "10.96.0.10", 53)), Verdict::NoService);
        assert_eq!(verdict(&t("10.244.1.2", "10.96.0.20", 80)), Verdict::NoService);
    }

    use rand::SeedableRng;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    /// A node proxy without Services, and a connection from pod `src`:`sport` to
    /// 203.0.113.7:443 waiting for MASQUERADE to 192.168.0.1 (its entry id, the reply tuple
    /// with the node's address as destination).
    fn masquerading(p: &mut NodeProxy, src: &str, sport: u16, at: Instant) -> (EntryId, Tuple) {
        let o = Tuple { src: ip(src), sport, dst: ip("203.0.113.7"), dport: 443, proto: L4::Tcp };
        let id = p.conntrack.insert(o, o.inverse(), None, true, at).unwrap();
        (id, Tuple { dst: ip("192.168.0.1"), ..o.inverse() })
    }

    fn proxy() -> NodeProxy {
        let tbl = Arc::new(table(Vec::new()));
        let mut rules = NodeRules::new(ProxyMode::Iptables, &tbl);
        NodeProxy::new(node(), tbl.clone(), &mut rules, 1 << 20, ChaCha8Rng::seed_from_u64(7))
    }

    #[test]
    fn masquerade_keeps_a_free_source_port_without_random_fully() {
        let mut p = proxy();
        let t0 = Instant::ZERO;
        let (a, base) = masquerading(&mut p, "10.244.0.2", 40000, t0);
        let c = p.nat_source_port(a, base, 40000, false, false, t0);
        assert_eq!((c.port, c.kept, c.taken, c.tried), (40000, true, Taken::Free, 1));
        p.conntrack.set_snat(a, (ip("192.168.0.1"), 40000), t0);
        p.conntrack.confirm(a, t0);
        // Another pod with the same port, later: the tuple is taken, so a random one in
        // 1024-65535 is drawn (the first tried is free).
        let t1 = t0 + Duration::from_micros(10);
        let (b, base) = masquerading(&mut p, "10.244.0.3", 40000, t1);
        let c = p.nat_source_port(b, base, 40000, false, false, t1);
        assert!(!c.kept && c.port != 40000 && c.port >= 1024 && c.taken == Taken::Free, "{c:?}");
        assert_eq!(c.tried, 2);
        // With --random-fully the port is drawn even when its own is free; a port under 1024
        // stays in its class (600-1023).
        let (d, base) = masquerading(&mut p, "10.244.0.4", 700, t1);
        let c = p.nat_source_port(d, base, 700, true, false, t1);
        assert!(!c.kept && (600..=1023).contains(&c.port) && c.tried == 1, "{c:?}");
    }

    #[test]
    fn a_connection_not_yet_confirmed_is_not_seen() {
        let mut p = proxy();
        let t0 = Instant::ZERO;
        let (a, base) = masquerading(&mut p, "10.244.0.2", 40000, t0);
        let c = p.nat_source_port(a, base, 40000, false, false, t0);
        p.conntrack.set_snat(a, (ip("192.168.0.1"), c.port), t0);
        // Its chain confirms it 500 ns later; another core chooses 100 ns after it took the
        // port: the same port, and that confirmation fails.
        p.conntrack.confirm(a, t0 + Duration::from_nanos(500));
        let t1 = t0 + Duration::from_nanos(100);
        let (b, base) = masquerading(&mut p, "10.244.0.3", 40000, t1);
        let c = p.nat_source_port(b, base, 40000, false, false, t1);
        assert_eq!((c.port, c.kept, c.taken), (40000, true, Taken::Unconfirmed));
        // After the confirmation it is seen, and another port is chosen.
        let t2 = t0 + Duration::from_nanos(600);
        let c = p.nat_source_port(b, base, 40000, false, false, t2);
        assert!(!c.kept && c.taken == Taken::Free, "{c:?}");
        // An entry that took the tuple after the chooser's time counts as taken: in Linux it
        // would have seen the chooser's.
        let (e, base) = masquerading(&mut p, "10.244.0.5", 50000, t0);
        let (f, _) = masquerading(&mut p, "10.244.0.6", 50001, t0);
        p.conntrack.set_snat(f, (ip("192.168.0.1"), 50000), t2);
        p.conntrack.confirm(f, t2 + Duration::from_nanos(100));
        let c = p.nat_source_port(e, base, 50000, false, false, t1);
        assert!(!c.kept && c.taken == Taken::Free, "{c:?}");
    }

    #[test]
    fn searches_from_one_rover_pick_one_port() {
        // Two pods' connections from port 40000, the first's kept; a third pod's and a fourth's
        // also from 40000 search from the rover (0: port 1024) and, the third's not yet
        // confirmed, both end on 1024.
        let mut p = proxy();
        let t0 = Instant::ZERO;
        let (a, base) = masquerading(&mut p, "10.244.0.2", 40000, t0);
        assert!(p.nat_source_port(a, base, 40000, false, true, t0).kept);
        p.conntrack.set_snat(a, (ip("192.168.0.1"), 40000), t0);
        p.conntrack.confirm(a, t0);
        let t1 = t0 + Duration::from_micros(1);
        let (b, base) = masquerading(&mut p, "10.244.0.3", 40000, t1);
        let c = p.nat_source_port(b, base, 40000, false, true, t1);
        assert_eq!((c.port, c.taken, c.tried), (1024, Taken::Free, 2));
        p.conntrack.set_snat(b, (ip("192.168.0.1"), 1024), t1);
        p.conntrack.confirm(b, t1 + Duration::from_nanos(300));
        let t2 = t1 + Duration::from_nanos(100);
        let (d, base) = masquerading(&mut p, "10.244.0.4", 40000, t2);
        let c = p.nat_source_port(d, base, 40000, false, true, t2);
        assert_eq!((c.port, c.taken), (1024, Taken::Unconfirmed));
        // Once it is confirmed, the search goes on past it (the rover stays on it).
        let t3 = t1 + Duration::from_nanos(400);
        let c = p.nat_source_port(d, base, 40000, false, true, t3);
        assert_eq!((c.port, c.taken, c.tried), (1025, Taken::Free, 3));
    }

    #[test]
    fn masquerade_gives_up_after_248_tuples() {
        // Every port of 600-1023 in use: 128 + 64 + 32 + 16 + 8 tuples tried, the last kept, and
        // it is taken (the confirmation will fail).
        let mut p = proxy();
        let t0 = Instant::ZERO;
        for (i, port) in (600..=1023u16).enumerate() {
            let src = format!("10.244.{}.{}", 1 + i / 200, 2 + i % 200);
            let (id, _) = masquerading(&mut p, &src, port, t0);
            p.conntrack.set_snat(id, (ip("192.168.0.1"), port), t0);
            p.conntrack.confirm(id, t0);
        }
        let (id, base) = masquerading(&mut p, "10.244.9.9", 800, t0);
        let c = p.nat_source_port(id, base, 800, true, false, t0);
        assert_eq!((c.taken, c.tried), (Taken::Confirmed, 248));
        assert!((600..=1023).contains(&c.port));
        // Expired entries are collected on the way and free their tuple.
        let later = t0 + Duration::from_secs(200);
        let c = p.nat_source_port(id, base, 800, true, false, later);
        assert_eq!((c.taken, c.tried), (Taken::Free, 1));
    }
}
