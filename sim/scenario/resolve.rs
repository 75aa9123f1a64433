//! Second step of loading: checks what a parsed [`Scenario`] means as a whole and turns it into
//! a [`Cluster`] (names, address plan, pod placement and IPAM, selectors into flows).
//!
//! Each check reports the first problem at the position of the value that causes it, found in
//! the text by `locate`. Nothing is clamped or corrected silently.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::Ipv4Addr;

use super::locate::{self, Seg};
use super::{Nodes, Overrides, Scenario, Selector};
use crate::addr::Ipv4Net;
use crate::cluster::KernelQueues;
use crate::cluster::{
    Change, Client, Cluster, Cni, CniOptions, ExternalHost, Fabric, Network, NodeId, NodeSpec, PodId,
    PodSpec, Rack, Target, Underlay, Workload, WorkloadKind,
};
use crate::cluster::{Endpoint, ProxyMode, Service, ServiceKind, ServicePort, ServiceTable, TrafficPolicy};
use crate::error::ScenarioError;
use crate::time::{Duration, Instant};
use crate::units::Bandwidth;

/// Longest run a scenario may ask for.
const MAX_DURATION: Duration = Duration::from_secs(3600);
/// Most flows all workloads together may define.
const MAX_FLOWS: u64 = 100_000;
/// Limits that keep a typo (`count: 4000000000`) from exhausting memory.
const MAX_NODES: u64 = 100_000;
const MAX_PODS: u64 = 2_000_000;
/// Fastest CBR rate accepted; anything above is surely a unit mistake.
const MAX_RATE: Bandwidth = Bandwidth(1_000_000_000_000);
/// IPv4 (20 B) + UDP (8 B) headers in front of a UDP payload.
const UDP_IP_HEADERS: u32 = 28;
const MAX_NAME_LEN: usize = 63;
/// Largest leaf-spine fabric accepted.
const MAX_RACKS: u32 = 1000;
const MAX_SPINES: u32 = 64;

/// Where errors point: the text being resolved and the name it is reported under.
pub(crate) struct Locator<'a> {
    pub text: &'a str,
    pub path: &'a str,
}

impl Locator<'_> {
    pub(super) fn err(&self, at: &[Seg], message: impl Into<String>) -> ScenarioError {
        let (line, col) = locate::find(self.text, at);
        ScenarioError { path: self.path.to_string(), line, col, message: message.into() }
    }
}

/// `at!["workloads", i, "to"]`: a key path for [`Locator::err`].
macro_rules! at {
    ($($seg:expr),* $(,)?) => { &[$(Seg::from($seg)),*] };
}

type Res<T> = Result<T, ScenarioError>;

/// The CNI a scenario runs with, and where it came from (for messages).
#[derive(Clone, Copy)]
struct ChosenCni {
    cni: Cni,
    /// Chosen with `--cni` rather than by the file's `cni` field.
    from_flag: bool,
}

impl ChosenCni {
    /// `flannel-vxlan`, or `flannel-vxlan (--cni flannel-vxlan)` when the flag chose it.
    fn describe(self) -> String {
        if self.from_flag {
            format!("{} (--cni {})", self.cni, self.cni)
        } else {
            self.cni.to_string()
        }
    }
}

pub(crate) fn resolve(s: Scenario, loc: &Locator, overrides: &Overrides) -> Res<Cluster> {
    check_name(loc, &s.name, "scenario name", at!["name"])?;
    if s.duration == Duration::ZERO {
        return Err(loc.err(at!["duration"], "duration is zero; give the simulated time to run, e.g. \"1s\""));
    }
    if s.duration > MAX_DURATION {
        return Err(loc.err(
            at!["duration"],
            format!("duration {} is longer than the limit of 1h; shorten it", s.duration),
        ));
    }
    let chosen = resolve_cni(loc, &s.cni, overrides)?;
    let cni_options = resolve_cni_options(loc, &s.cni_options, chosen)?;
    let network = resolve_network(loc, &s.network)?;
    let underlay = resolve_underlay(loc, &s.underlay, &network)?;
    let nodes = resolve_nodes(loc, &s.nodes, &network, &underlay.fabric, chosen, &cni_options)?;
    let pods = resolve_pods(loc, &s, &nodes, &network, chosen.cni, &cni_options)?;
    let proxy = resolve_proxy(loc, &s, overrides)?;
    let (services, generated) = resolve_services(loc, &s, &network, &pods, overrides)?;
    let externals = resolve_externals(loc, &s, &network, &nodes, &underlay.fabric)?;
    let workloads =
        resolve_workloads(loc, &s, &nodes, &pods, chosen, &cni_options, &services, generated, &externals)?;
    let changes = resolve_changes(loc, &s, &pods)?;
    let conntrack_max = match s.conntrack_max {
        Some(0) => {
            return Err(loc.err(
                at!["conntrack_max"],
                "conntrack_max 0 would refuse every connection; give at least 1 (or remove it for \
                 kube-proxy's default)",
            ))
        }
        Some(n) if n > 1 << 26 => {
            return Err(loc.err(
                at!["conntrack_max"],
                format!("conntrack_max {n} is over the limit of 67108864 entries; lower it"),
            ))
        }
        n => n.map(|n| n as usize),
    };
    let sweep = match &s.sweep {
        Some(sw) => Some(check_sweep(loc, sw, &s)?),
        None => None,
    };
    let compare = s.compare.as_ref().map(|c| super::compare::resolve(loc.text, loc.path, c)).transpose()?;
    Ok(Cluster {
        sweep,
        compare,
        externals,
        proxy,
        services,
        generated,
        changes,
        conntrack_max,
        cni: chosen.cni,
        cni_options,
        name: s.name,
        description: s.description,
        seed: s.seed,
        duration: s.duration,
        network,
        nodes,
        pods,
        underlay,
        workloads,
        costs: s.costs,
    })
}

/// Names become directory and file names: lowercase letters, digits, `-`, `_`.
fn check_name(loc: &Locator, name: &str, what: &str, at: &[Seg]) -> Res<()> {
    if name.is_empty() {
        return Err(loc.err(at, format!("{what} is empty; use lowercase letters, digits, '-' and '_'")));
    }
    if name.chars().count() > MAX_NAME_LEN {
        return Err(
            loc.err(at, format!("{what} '{name}' is longer than {MAX_NAME_LEN} characters; shorten it"))
        );
    }
    if let Some(bad) = name.chars().find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '-' | '_')) {
        return Err(loc.err(
            at,
            format!("{what} '{name}' contains '{bad}'; use only lowercase letters, digits, '-' and '_'"),
        ));
    }
    Ok(())
}

/// The file's `cni`, or the `--cni` override that replaces it (the file's value is then not
/// even parsed).
fn resolve_cni(loc: &Locator, id: &str, overrides: &Overrides) -> Res<ChosenCni> {
    let chosen = match overrides.cni {
        Some(cni) => ChosenCni { cni, from_flag: true },
        None => ChosenCni { cni: id.parse().map_err(|e: String| loc.err(at!["cni"], e))?, from_flag: false },
    };
    Ok(chosen)
}

fn resolve_cni_options(loc: &Locator, o: &super::CniOptions, chosen: ChosenCni) -> Res<CniOptions> {
    if let Some(mtu) = o.mtu {
        check_mtu(loc, mtu, "cni_options.mtu", at!["cni_options", "mtu"])?;
    }
    if o.direct_routing && chosen.cni != Cni::FlannelVxlan {
        return Err(loc.err(
            at!["cni_options", "direct_routing"],
            format!(
                "direct_routing is a flannel-vxlan option, but the CNI is {}; remove it or use \
                 flannel-vxlan",
                chosen.describe()
            ),
        ));
    }
    Ok(CniOptions { mtu: o.mtu, direct_routing: o.direct_routing })
}

fn resolve_network(loc: &Locator, n: &super::Network) -> Res<Network> {
    let ranges = [("node_cidr", n.node_cidr), ("pod_cidr", n.pod_cidr), ("service_cidr", n.service_cidr)];
    for (i, (a_name, a)) in ranges.iter().enumerate() {
        for (b_name, b) in &ranges[i + 1..] {
            if a.overlaps(b) {
                return Err(loc.err(
                    at!["network", *b_name],
                    format!("{b_name} {b} overlaps {a_name} {a}; pick disjoint ranges"),
                ));
            }
        }
    }
    let p = n.node_subnet_prefix;
    if p <= n.pod_cidr.prefix() {
        return Err(loc.err(
            at!["network", "node_subnet_prefix"],
            format!(
                "node_subnet_prefix {p} must be longer than pod_cidr's /{} so each node gets a part of \
                 pod_cidr {}; use e.g. {}",
                n.pod_cidr.prefix(),
                n.pod_cidr,
                (n.pod_cidr.prefix() + 8).min(30)
            ),
        ));
    }
    if p > 30 {
        return Err(loc.err(
            at!["network", "node_subnet_prefix"],
            format!(
                "node_subnet_prefix {p} leaves no room for a gateway and a pod; use at most 30 (e.g. 24)"
            ),
        ));
    }
    Ok(Network {
        node_cidr: n.node_cidr,
        pod_cidr: n.pod_cidr,
        service_cidr: n.service_cidr,
        node_subnet_prefix: p,
    })
}

fn check_mtu(loc: &Locator, mtu: u32, what: &str, at: &[Seg]) -> Res<()> {
    if !(68..=65535).contains(&mtu) {
        return Err(loc.err(
            at,
            format!("{what} {mtu} is outside 68..=65535 (68 is the IPv4 minimum, RFC 791); use e.g. 1500"),
        ));
    }
    Ok(())
}

fn check_bandwidth(loc: &Locator, b: Bandwidth, what: &str, at: &[Seg]) -> Res<()> {
    if b.0 == 0 {
        return Err(loc.err(at, format!("{what} is zero; give a rate such as \"10Gbit\"")));
    }
    Ok(())
}

fn resolve_underlay(loc: &Locator, u: &super::Underlay, net: &Network) -> Res<Underlay> {
    check_bandwidth(loc, u.bandwidth, "underlay bandwidth", at!["underlay", "bandwidth"])?;
    check_mtu(loc, u.mtu, "underlay mtu", at!["underlay", "mtu"])?;
    if u.queue.0 == 0 {
        return Err(loc.err(
            at!["underlay", "queue"],
            "underlay queue is zero, so every frame would be dropped; give a size such as \"512KiB\"",
        ));
    }
    if !(0.0..1.0).contains(&u.loss) {
        return Err(loc.err(
            at!["underlay", "loss"],
            format!("underlay loss {} is not in the range [0, 1); use e.g. 0.001 for 0.1% loss", u.loss),
        ));
    }
    let fabric = match u.fabric {
        super::Fabric::L2Switch => Fabric::L2Switch,
        super::Fabric::LeafSpine { racks, spines, uplink, rack_prefix, fabric_cidr } => {
            resolve_leaf_spine(loc, net, racks, spines, uplink, rack_prefix, fabric_cidr)?
        }
    };
    Ok(Underlay {
        fabric,
        bandwidth: u.bandwidth,
        propagation: u.propagation,
        mtu: u.mtu,
        queue: u.queue,
        loss: u.loss,
    })
}

/// Checks a leaf-spine fabric against the address plan and carves the rack subnets.
fn resolve_leaf_spine(
    loc: &Locator,
    net: &Network,
    racks: u32,
    spines: u32,
    uplink: Bandwidth,
    rack_prefix: u8,
    fabric_cidr: Ipv4Net,
) -> Res<Fabric> {
    let field = |f: &'static str| [Seg::Key("underlay"), Seg::Key("fabric"), Seg::Key(f)];
    if !(1..=MAX_RACKS).contains(&racks) {
        return Err(loc.err(
            &field("racks"),
            format!("racks {racks} is outside 1..={MAX_RACKS}; a leaf-spine fabric needs at least one rack"),
        ));
    }
    if !(1..=MAX_SPINES).contains(&spines) {
        return Err(loc.err(
            &field("spines"),
            format!("spines {spines} is outside 1..={MAX_SPINES}; racks reach each other through the spines, use e.g. 2"),
        ));
    }
    check_bandwidth(loc, uplink, "uplink bandwidth", &field("uplink"))?;
    let node_prefix = net.node_cidr.prefix();
    if rack_prefix <= node_prefix {
        return Err(loc.err(
            &field("rack_prefix"),
            format!(
                "rack_prefix {rack_prefix} must be longer than node_cidr's /{node_prefix} so each rack gets a \
                 part of node_cidr {}; use e.g. {}, or widen node_cidr (e.g. \"{}/16\")",
                net.node_cidr,
                (node_prefix + 2).min(30),
                net.node_cidr.network()
            ),
        ));
    }
    if rack_prefix > 30 {
        return Err(loc.err(
            &field("rack_prefix"),
            format!(
                "rack_prefix {rack_prefix} leaves no room for a gateway and a node; use at most 30 (e.g. 24)"
            ),
        ));
    }
    let subnets = 1u64 << (rack_prefix - node_prefix);
    if u64::from(racks) > subnets {
        return Err(loc.err(
            &field("racks"),
            format!(
                "{racks} racks need {racks} subnets of /{rack_prefix} but node_cidr {} holds only {subnets}; \
                 widen node_cidr, lengthen rack_prefix or use fewer racks",
                net.node_cidr
            ),
        ));
    }
    // One /31 per ToR-spine cable.
    let needed = 2 * u64::from(racks) * u64::from(spines);
    if fabric_cidr.size() < needed {
        let fits = (0..=31u8).rev().find(|p| 1u64 << (32 - p) >= needed).unwrap_or(0);
        return Err(loc.err(
            &field("fabric_cidr"),
            format!(
                "fabric_cidr {fabric_cidr} holds {} addresses but {racks} racks x {spines} spines need {needed} \
                 (one /31 per ToR-spine cable); use a /{fits} or larger",
                fabric_cidr.size()
            ),
        ));
    }
    let ranges =
        [("node_cidr", net.node_cidr), ("pod_cidr", net.pod_cidr), ("service_cidr", net.service_cidr)];
    if let Some((name, range)) = ranges.iter().find(|(_, r)| r.overlaps(&fabric_cidr)) {
        return Err(loc.err(
            &field("fabric_cidr"),
            format!(
                "fabric_cidr {fabric_cidr} overlaps {name} {range}; pick a range disjoint from the network's"
            ),
        ));
    }
    let mut out = Vec::with_capacity(racks as usize);
    for i in 0..racks {
        let subnet = net.node_cidr.subnet(rack_prefix, u64::from(i));
        let Some((subnet, gateway)) = subnet.and_then(|s| Some((s, s.nth(1)?))) else {
            return Err(loc.err(&field("racks"), "too many racks for node_cidr"));
        };
        out.push(Rack { name: format!("rack-{}", i + 1), subnet, gateway });
    }
    Ok(Fabric::LeafSpine { racks: out, spines, uplink, fabric_cidr })
}

fn resolve_nodes(
    loc: &Locator,
    nodes: &Nodes,
    net: &Network,
    fabric: &Fabric,
    chosen: ChosenCni,
    options: &CniOptions,
) -> Res<Vec<NodeSpec>> {
    // (name, cores, nic, mtu, rack from 1, key path of the entry); a Count entry's fields sit
    // under `nodes`.
    type Entry = (String, u32, Bandwidth, u32, Option<u32>, Option<usize>);
    // The kernel queue settings of each entry (one for a Count).
    let kernels: Vec<KernelQueues> = match nodes {
        Nodes::Count { sysctls, txqueuelen, rx_ring, .. } => {
            vec![super::kernel::resolve(loc, sysctls, *txqueuelen, *rx_ring, None)?]
        }
        Nodes::List(list) => list
            .iter()
            .enumerate()
            .map(|(i, n)| super::kernel::resolve(loc, &n.sysctls, n.txqueuelen, n.rx_ring, Some(i)))
            .collect::<Res<_>>()?,
    };
    let entries: Vec<Entry> = match nodes {
        Nodes::Count { count, name_prefix, cores, nic, mtu, .. } => {
            if *count == 0 {
                return Err(loc.err(
                    at!["nodes", "count"],
                    "count is 0: a cluster needs at least one node; set count to 1 or more",
                ));
            }
            if u64::from(*count) > MAX_NODES {
                return Err(loc.err(
                    at!["nodes", "count"],
                    format!("count {count} is more than the {MAX_NODES} nodes cnisim supports"),
                ));
            }
            // The longest generated name stands for all of them.
            check_name(loc, &format!("{name_prefix}{count}"), "node name", at!["nodes", "name_prefix"])?;
            (1..=*count).map(|i| (format!("{name_prefix}{i}"), *cores, *nic, *mtu, None, None)).collect()
        }
        Nodes::List(list) => {
            if list.is_empty() {
                return Err(
                    loc.err(at!["nodes"], "the node list is empty: a cluster needs at least one node")
                );
            }
            if list.len() as u64 > MAX_NODES {
                return Err(loc.err(
                    at!["nodes"],
                    format!("{} nodes are more than the {MAX_NODES} cnisim supports", list.len()),
                ));
            }
            list.iter()
                .enumerate()
                .map(|(i, n)| (n.name.clone(), n.cores, n.nic, n.mtu, n.rack, Some(i)))
                .collect()
        }
    };
    // Key path of a node's field: `nodes.<i>.<field>` for a list, `nodes.<field>` for a count.
    let field_at = |i: Option<usize>, field: &'static str| -> Vec<Seg<'static>> {
        match i {
            Some(i) => vec![Seg::Key("nodes"), Seg::Idx(i), Seg::Key(field)],
            None => vec![Seg::Key("nodes"), Seg::Key(field)],
        }
    };
    let count_at: &[Seg] = match nodes {
        Nodes::Count { .. } => at!["nodes", "count"],
        Nodes::List(_) => at!["nodes"],
    };
    let n = entries.len() as u64;
    let node_capacity = net.node_cidr.size().saturating_sub(2);
    if matches!(fabric, Fabric::L2Switch) && n > node_capacity {
        return Err(loc.err(
            count_at,
            format!(
                "{n} nodes do not fit node_cidr {}, which holds {node_capacity} node addresses; use a larger \
                 node_cidr",
                net.node_cidr
            ),
        ));
    }
    let subnets = 1u64 << (net.node_subnet_prefix - net.pod_cidr.prefix());
    if n > subnets {
        return Err(loc.err(
            count_at,
            format!(
                "{n} nodes need {n} pod subnets of /{} but pod_cidr {} holds only {subnets}; \
                 shorten pod_cidr's prefix or lengthen node_subnet_prefix",
                net.node_subnet_prefix, net.pod_cidr
            ),
        ));
    }
    let racks = assign_racks(loc, &entries.iter().map(|e| (e.4, e.5)).collect::<Vec<_>>(), fabric, count_at)?;
    let mut seen: HashSet<&str> = HashSet::new();
    let mut in_rack = vec![0u64; racks.len().max(1)];
    let mut out = Vec::with_capacity(entries.len());
    for (idx, (name, cores, nic, mtu, _, i)) in entries.iter().enumerate() {
        if i.is_some() {
            check_name(loc, name, "node name", &field_at(*i, "name"))?;
            if !seen.insert(name) {
                return Err(loc.err(
                    &field_at(*i, "name"),
                    format!("node name '{name}' is used twice; node names must be unique"),
                ));
            }
        }
        if !(1..=1024).contains(cores) {
            return Err(
                loc.err(&field_at(*i, "cores"), format!("cores {cores} is outside 1..=1024; use e.g. 4"))
            );
        }
        check_bandwidth(loc, *nic, "nic bandwidth", &field_at(*i, "nic"))?;
        check_mtu(loc, *mtu, "node mtu", &field_at(*i, "mtu"))?;
        let pod_mtu = super::pod_mtu(chosen.cni, options, *mtu);
        if pod_mtu < 68 {
            return Err(loc.err(
                &field_at(*i, "mtu"),
                format!(
                    "node mtu {mtu} leaves {} pods an MTU of {pod_mtu}, below the IPv4 minimum of 68; raise \
                     the node mtu to at least {} or set cni_options.mtu",
                    chosen.describe(),
                    mtu + (68 - pod_mtu)
                ),
            ));
        }
        let Some(pod_subnet) = net.pod_cidr.subnet(net.node_subnet_prefix, idx as u64) else {
            return Err(loc.err(count_at, "too many nodes for the address plan"));
        };
        let (ip, prefix, rack, gateway) = match fabric {
            Fabric::L2Switch => (net.node_cidr.nth(idx as u64 + 1), net.node_cidr.prefix(), 0, None),
            Fabric::LeafSpine { racks: specs, .. } => {
                let r = racks.get(idx).copied().unwrap_or(0);
                let (Some(spec), Some(k)) = (specs.get(r), in_rack.get_mut(r)) else {
                    return Err(loc.err(count_at, "node assigned to a rack that does not exist"));
                };
                *k += 1;
                // .1 is the ToR; nodes take .2, .3, ... (fits: checked by `assign_racks`).
                (spec.subnet.nth(*k + 1), spec.subnet.prefix(), r, Some(spec.gateway))
            }
        };
        let Some(ip) = ip else {
            return Err(loc.err(count_at, "too many nodes for the address plan"));
        };
        out.push(NodeSpec {
            name: name.clone(),
            ip,
            cores: *cores,
            nic_bandwidth: *nic,
            mtu: *mtu,
            pod_subnet,
            prefix,
            rack,
            gateway,
            kernel: kernels[if kernels.len() == 1 { 0 } else { idx }],
        });
    }
    Ok(out)
}

/// The rack (from 0) of each node, given as (`rack:` from 1 if written, index in a `List`):
/// the written rack, else the node's contiguous block by position (`i * racks / nodes`).
/// Checks that every rack holds its nodes. Empty for one L2 switch.
fn assign_racks(
    loc: &Locator,
    nodes: &[(Option<u32>, Option<usize>)],
    fabric: &Fabric,
    count_at: &[Seg],
) -> Res<Vec<usize>> {
    let rack_at = |i: usize| [Seg::Key("nodes"), Seg::Idx(i), Seg::Key("rack")];
    let Fabric::LeafSpine { racks, .. } = fabric else {
        if let Some((_, Some(i))) = nodes.iter().find(|(r, _)| r.is_some()) {
            return Err(loc.err(
                &rack_at(*i),
                "rack is only meaningful in a leaf-spine fabric (underlay: (fabric: LeafSpine(...))); \
                 remove it",
            ));
        }
        return Ok(Vec::new());
    };
    let n = nodes.len() as u64;
    let mut out = Vec::with_capacity(nodes.len());
    for (pos, (rack, i)) in nodes.iter().enumerate() {
        let r = match (rack, i) {
            (Some(r), Some(i)) => {
                if *r == 0 || *r as usize > racks.len() {
                    return Err(loc.err(
                        &rack_at(*i),
                        format!(
                            "rack {r} does not exist: racks are numbered 1 to {}; use one of those or add racks",
                            racks.len()
                        ),
                    ));
                }
                *r as usize - 1
            }
            _ => (pos as u64 * racks.len() as u64 / n.max(1)) as usize,
        };
        out.push(r);
    }
    let mut counts = vec![0u64; racks.len()];
    for (pos, &r) in out.iter().enumerate() {
        let (Some(count), Some(spec)) = (counts.get_mut(r), racks.get(r)) else {
            return Err(loc.err(count_at, "node assigned to a rack that does not exist"));
        };
        *count += 1;
        // Host addresses of the rack subnet, minus the ToR gateway.
        let capacity = spec.subnet.hosts().saturating_sub(1);
        if *count > capacity {
            let total = out.iter().filter(|&&x| x == r).count();
            let at: Vec<Seg> = match nodes.get(pos) {
                Some((Some(_), Some(i))) => rack_at(*i).to_vec(),
                Some((None, Some(i))) => vec![Seg::Key("nodes"), Seg::Idx(*i)],
                _ => count_at.to_vec(),
            };
            return Err(loc.err(
                &at,
                format!(
                    "{total} nodes are in {} but its subnet {} holds {capacity} (its hosts minus the ToR \
                     gateway); shorten rack_prefix, add racks, or move nodes with `rack:`",
                    spec.name, spec.subnet
                ),
            ));
        }
    }
    Ok(out)
}

fn resolve_pods(
    loc: &Locator,
    s: &Scenario,
    nodes: &[NodeSpec],
    net: &Network,
    cni: Cni,
    options: &CniOptions,
) -> Res<Vec<PodSpec>> {
    // Host addresses of a pod subnet, minus the gateway (cni0).
    let per_node = (1u64 << (32 - net.node_subnet_prefix)) - 3;
    let ppn = u64::from(s.pods_per_node);
    if ppn > per_node {
        return Err(loc.err(
            at!["pods_per_node"],
            format!(
                "pods_per_node {ppn} does not fit a /{} pod subnet, which holds {per_node} pods \
                 (its hosts minus the gateway); lower pods_per_node or lower node_subnet_prefix",
                net.node_subnet_prefix
            ),
        ));
    }
    let total = ppn * nodes.len() as u64 + s.pods.len() as u64;
    if total > MAX_PODS {
        return Err(loc.err(
            at!["pods_per_node"],
            format!("{total} pods are more than the {MAX_PODS} cnisim supports; lower pods_per_node"),
        ));
    }
    let node_ids: HashMap<&str, NodeId> =
        nodes.iter().enumerate().map(|(i, n)| (n.name.as_str(), i)).collect();
    let mut used = vec![0u64; nodes.len()];
    let mut names: HashSet<String> = HashSet::new();
    let mut pods = Vec::with_capacity(total as usize);
    let mut place = |node: NodeId, name: String, labels: BTreeMap<String, String>, used: &mut [u64]| {
        used[node] += 1;
        // .1 is the gateway; pods take .2, .3, ... (fits: checked against `per_node`).
        let ip = nodes[node].pod_subnet.nth(used[node] + 1);
        let mtu = super::pod_mtu(cni, options, nodes[node].mtu);
        ip.map(|ip| pods.push(PodSpec { name, node, ip, mtu, labels }))
    };
    for (ni, node) in nodes.iter().enumerate() {
        for k in 1..=s.pods_per_node {
            let name = format!("{}-pod-{k}", node.name);
            names.insert(name.clone());
            let labels = BTreeMap::from([("node".to_string(), node.name.clone())]);
            if place(ni, name, labels, &mut used).is_none() {
                return Err(loc.err(at!["pods_per_node"], "pods_per_node does not fit the pod subnet"));
            }
        }
    }
    for (i, p) in s.pods.iter().enumerate() {
        check_name(loc, &p.name, "pod name", at!["pods", i, "name"])?;
        if !names.insert(p.name.clone()) {
            return Err(loc.err(
                at!["pods", i, "name"],
                format!(
                    "pod name '{}' is used twice (generated pods are named <node>-pod-<i>); pod \
                     names must be unique",
                    p.name
                ),
            ));
        }
        let Some(&node) = node_ids.get(p.node.as_str()) else {
            return Err(loc.err(
                at!["pods", i, "node"],
                format!("pod '{}' is on unknown node '{}'; nodes are: {}", p.name, p.node, list_names(nodes)),
            ));
        };
        if used[node] >= per_node {
            return Err(loc.err(
                at!["pods", i],
                format!(
                    "pod '{}' does not fit node '{}': its pod subnet {} already holds {per_node} \
                     pods; place it on another node or lower node_subnet_prefix",
                    p.name, p.node, nodes[node].pod_subnet
                ),
            ));
        }
        if place(node, p.name.clone(), p.labels.clone(), &mut used).is_none() {
            return Err(loc.err(at!["pods", i], "pod does not fit its node's pod subnet"));
        }
    }
    Ok(pods)
}

fn list_names(nodes: &[NodeSpec]) -> String {
    let mut s = nodes.iter().take(10).map(|n| n.name.as_str()).collect::<Vec<_>>().join(", ");
    if nodes.len() > 10 {
        s.push_str(&format!(", ... ({} in all)", nodes.len()));
    }
    s
}

/// The pods a selector matches, in pod order; an error if none.
fn select(
    loc: &Locator,
    sel: &Selector,
    at: &[Seg],
    nodes: &[NodeSpec],
    pods: &[PodSpec],
) -> Res<Vec<PodId>> {
    let found: Vec<PodId> = match sel {
        Selector::Pod(name) => pods.iter().position(|p| &p.name == name).into_iter().collect(),
        Selector::Node(name) => {
            let Some(node) = nodes.iter().position(|n| &n.name == name) else {
                return Err(loc.err(
                    at,
                    format!("selector Node(\"{name}\") names no node; nodes are: {}", list_names(nodes)),
                ));
            };
            pods.iter().enumerate().filter(|(_, p)| p.node == node).map(|(i, _)| i).collect()
        }
        Selector::Labels(want) => pods
            .iter()
            .enumerate()
            .filter(|(_, p)| want.iter().all(|(k, v)| p.labels.get(k) == Some(v)))
            .map(|(i, _)| i)
            .collect(),
        Selector::Service(_)
        | Selector::NodePort { .. }
        | Selector::AnyGeneratedService
        | Selector::External(_) => {
            unreachable!("Service targets and external clients are resolved before")
        }
    };
    if found.is_empty() {
        let what = match sel {
            Selector::Pod(name) => format!("Pod(\"{name}\") matches no pod; check the name against `pods:`"),
            Selector::Node(name) => {
                format!("Node(\"{name}\") matches no pod: the node has none; raise pods_per_node or add pods")
            }
            Selector::Labels(l) => {
                format!("Labels({l:?}) matches no pod; no pod has all of these labels")
            }
            Selector::Service(_)
            | Selector::NodePort { .. }
            | Selector::AnyGeneratedService
            | Selector::External(_) => {
                unreachable!("handled above")
            }
        };
        return Err(loc.err(at, format!("dangling selector: {what}")));
    }
    Ok(found)
}

fn resolve_proxy(loc: &Locator, s: &Scenario, overrides: &Overrides) -> Res<ProxyMode> {
    if let Some(p) = overrides.proxy {
        return Ok(p);
    }
    match &s.proxy {
        None => Ok(ProxyMode::Iptables),
        Some(id) => id.parse().map_err(|e: String| loc.err(at!["proxy"], e)),
    }
}

/// Most Services a scenario may define (with the generated ones).
const MAX_SERVICES: usize = 200_000;
/// kube-apiserver's default `--service-node-port-range`.
const NODE_PORTS: std::ops::RangeInclusive<u16> = 30000..=32767;

/// Services with endpoints from their selectors, cluster IPs and node ports allocated; then the
/// generated ones. Returns the table and (first generated index, count).
fn resolve_services(
    loc: &Locator,
    s: &Scenario,
    network: &Network,
    pods: &[PodSpec],
    overrides: &Overrides,
) -> Res<(ServiceTable, (usize, usize))> {
    let cidr = network.service_cidr;
    let mut taken_ips: HashSet<Ipv4Addr> = HashSet::new();
    let mut taken_node_ports: HashSet<u16> = HashSet::new();
    // Explicit addresses and node ports first, so allocation never takes them.
    for (i, svc) in s.services.iter().enumerate() {
        if let Some(ip) = svc.cluster_ip {
            if !matches!(svc.kind, super::ServiceKind::Headless) {
                let usable = cidr.contains(ip)
                    && ip != cidr.network()
                    && Some(ip) != cidr.nth(cidr.size() - 1)
                    && Some(ip) != cidr.nth(1);
                if !usable {
                    return Err(loc.err(
                        at!["services", i, "cluster_ip"],
                        format!(
                            "cluster_ip {ip} is not a usable address of service_cidr {cidr} (not its network or \
                             broadcast address, nor {}, the `kubernetes` Service's); pick another inside it",
                            cidr.nth(1).map_or(String::new(), |a| a.to_string())
                        ),
                    ));
                }
                if !taken_ips.insert(ip) {
                    return Err(loc.err(
                        at!["services", i, "cluster_ip"],
                        format!("cluster_ip {ip} is used twice; each Service needs its own"),
                    ));
                }
            }
        }
        for (j, p) in svc.ports.iter().enumerate() {
            if let Some(np) = p.node_port {
                if !matches!(svc.kind, super::ServiceKind::NodePort) {
                    return Err(loc.err(
                        at!["services", i, "ports", j, "node_port"],
                        format!("node_port is only for NodePort Services; '{}' is not one: remove it or set kind: NodePort", svc.name),
                    ));
                }
                if !NODE_PORTS.contains(&np) {
                    return Err(loc.err(
                        at!["services", i, "ports", j, "node_port"],
                        format!(
                            "node_port {np} is outside the NodePort range 30000-32767; pick one inside it"
                        ),
                    ));
                }
                if !taken_node_ports.insert(np) {
                    return Err(loc.err(
                        at!["services", i, "ports", j, "node_port"],
                        format!("node_port {np} is used twice; each needs its own"),
                    ));
                }
            }
        }
    }
    // The first address is the `kubernetes` Service's (the API server), allocated before
    // any other; cnisim does not model it but leaves it taken.
    let mut next_ip = 2u64;
    let mut alloc_ip = |at: &[Seg]| -> Res<Ipv4Addr> {
        loop {
            let Some(ip) = cidr.nth(next_ip).filter(|_| next_ip + 1 < cidr.size()) else {
                return Err(loc.err(
                    at,
                    format!("service_cidr {cidr} has no free address left for this Service; widen it"),
                ));
            };
            next_ip += 1;
            if taken_ips.insert(ip) {
                return Ok(ip);
            }
        }
    };
    let mut next_np = *NODE_PORTS.start();
    let endpoints_of = |selector: &BTreeMap<String, String>| -> Vec<Endpoint> {
        let mut e: Vec<Endpoint> = pods
            .iter()
            .enumerate()
            .filter(|(_, p)| selector.iter().all(|(k, v)| p.labels.get(k) == Some(v)))
            .map(|(i, p)| Endpoint { pod: i, ip: p.ip, node: p.node, ready: true })
            .collect();
        e.sort_by_key(|e| e.ip);
        e
    };
    let mut services = Vec::new();
    for (i, svc) in s.services.iter().enumerate() {
        check_name(loc, &svc.name, "service name", at!["services", i, "name"])?;
        check_name(loc, &svc.namespace, "service namespace", at!["services", i, "namespace"])?;
        // Workloads name Services without a namespace, so names are unique across namespaces.
        if services.iter().any(|o: &Service| o.name == svc.name) {
            return Err(loc.err(
                at!["services", i, "name"],
                format!(
                    "service name '{}' is used twice; names must be unique (workloads name them)",
                    svc.name
                ),
            ));
        }
        let generated_name =
            svc.name.strip_prefix("svc-").and_then(|k| k.parse::<u64>().ok()).is_some_and(|k| {
                s.generated_services.as_ref().is_some_and(|g| k >= 1 && k <= g.count as u64)
            });
        if generated_name {
            return Err(loc.err(
                at!["services", i, "name"],
                format!(
                    "service name '{}' is taken by generated_services (svc-1, svc-2, ...); rename it",
                    svc.name
                ),
            ));
        }
        if svc.selector.is_empty() {
            return Err(loc.err(
                at!["services", i, "selector"],
                "selector is empty; give the labels of the endpoint pods, e.g. {\"app\": \"web\"}",
            ));
        }
        if svc.ports.is_empty() {
            return Err(loc.err(
                at!["services", i, "ports"],
                "ports is empty; give at least one, e.g. [(port: 80, target_port: 5201)]",
            ));
        }
        let kind = match svc.kind {
            super::ServiceKind::ClusterIP => ServiceKind::ClusterIp,
            super::ServiceKind::NodePort => ServiceKind::NodePort,
            super::ServiceKind::Headless => ServiceKind::Headless,
        };
        if kind == ServiceKind::Headless && svc.cluster_ip.is_some() {
            return Err(loc.err(
                at!["services", i, "cluster_ip"],
                "a Headless Service has no cluster IP (clusterIP: None); remove cluster_ip",
            ));
        }
        let mut ports: Vec<ServicePort> = Vec::new();
        for (j, p) in svc.ports.iter().enumerate() {
            if p.port == 0 || p.target_port == Some(0) {
                return Err(
                    loc.err(at!["services", i, "ports", j], "port 0 is not a valid UDP port; use 1..=65535")
                );
            }
            if svc.ports.len() > 1 && p.name.is_empty() {
                return Err(loc.err(
                    at!["services", i, "ports", j],
                    format!(
                        "service '{}' has {} ports, so each needs a name; add name: \"...\"",
                        svc.name,
                        svc.ports.len()
                    ),
                ));
            }
            if ports.iter().any(|o| o.port == p.port || (!p.name.is_empty() && o.name == p.name)) {
                return Err(loc.err(
                    at!["services", i, "ports", j],
                    format!("port {} or name '{}' is used twice in service '{}'", p.port, p.name, svc.name),
                ));
            }
            let node_port = match (kind, p.node_port) {
                (ServiceKind::NodePort, Some(np)) => Some(np),
                (ServiceKind::NodePort, None) => {
                    while taken_node_ports.contains(&next_np) {
                        next_np += 1;
                    }
                    if !NODE_PORTS.contains(&next_np) {
                        return Err(loc.err(
                            at!["services", i, "ports", j],
                            "no free node port left in 30000-32767; use fewer NodePort Services",
                        ));
                    }
                    taken_node_ports.insert(next_np);
                    Some(next_np)
                }
                _ => None,
            };
            ports.push(ServicePort {
                name: p.name.clone(),
                port: p.port,
                target_port: p.target_port.unwrap_or(p.port),
                node_port,
            });
        }
        let cluster_ip = match kind {
            ServiceKind::Headless => None,
            _ => Some(match svc.cluster_ip {
                Some(ip) => ip,
                None => alloc_ip(at!["services", i, "name"])?,
            }),
        };
        let external_traffic_policy = match svc.external_traffic_policy {
            super::TrafficPolicy::Cluster => TrafficPolicy::Cluster,
            super::TrafficPolicy::Local => TrafficPolicy::Local,
        };
        services.push(Service {
            namespace: svc.namespace.clone(),
            name: svc.name.clone(),
            kind,
            cluster_ip,
            ports,
            endpoints: endpoints_of(&svc.selector),
            external_traffic_policy,
        });
    }
    let first = services.len();
    let mut count = 0;
    if let Some(g) = &s.generated_services {
        count = overrides.generated_count.unwrap_or(g.count) as usize;
        let per = overrides.generated_endpoints.unwrap_or(g.endpoints) as usize;
        if count == 0 || first + count > MAX_SERVICES {
            return Err(loc.err(
                at!["generated_services", "count"],
                format!(
                    "generated_services.count {count} is outside 1..={}; change it",
                    MAX_SERVICES - first
                ),
            ));
        }
        let pool: Vec<PodId> = pods
            .iter()
            .enumerate()
            .filter(|(_, p)| g.selector.iter().all(|(k, v)| p.labels.get(k) == Some(v)))
            .map(|(i, _)| i)
            .collect();
        if per == 0 || per > pool.len() {
            return Err(loc.err(
                at!["generated_services", "endpoints"],
                format!(
                    "generated_services.endpoints {per} is outside 1..={}, the pods its selector matches; \
                     change it or add pods",
                    pool.len()
                ),
            ));
        }
        if g.port == 0 || g.target_port == 0 {
            return Err(loc.err(at!["generated_services"], "port 0 is not a valid UDP port; use 1..=65535"));
        }
        for k in 0..count {
            let mut endpoints: Vec<Endpoint> = (0..per)
                .map(|e| {
                    let pod = pool[(k * per + e) % pool.len()];
                    Endpoint { pod, ip: pods[pod].ip, node: pods[pod].node, ready: true }
                })
                .collect();
            endpoints.sort_by_key(|e| e.ip);
            endpoints.dedup_by_key(|e| e.ip);
            services.push(Service {
                namespace: "default".into(),
                name: format!("svc-{}", k + 1),
                kind: ServiceKind::ClusterIp,
                cluster_ip: Some(alloc_ip(at!["generated_services", "count"])?),
                ports: vec![ServicePort {
                    name: String::new(),
                    port: g.port,
                    target_port: g.target_port,
                    node_port: None,
                }],
                endpoints,
                external_traffic_policy: TrafficPolicy::Cluster,
            });
        }
    }
    Ok((ServiceTable { services, cluster_cidr: Some(network.pod_cidr) }, (first, count)))
}

/// External hosts take the next free addresses of the node network (the first rack's subnet
/// in a leaf-spine fabric), after the nodes'.
fn resolve_externals(
    loc: &Locator,
    s: &Scenario,
    network: &Network,
    nodes: &[NodeSpec],
    fabric: &Fabric,
) -> Res<Vec<ExternalHost>> {
    let (subnet, gateway) = match fabric {
        Fabric::L2Switch => (network.node_cidr, None),
        Fabric::LeafSpine { racks, .. } => (racks[0].subnet, Some(racks[0].gateway)),
    };
    let taken: HashSet<Ipv4Addr> = nodes.iter().map(|n| n.ip).chain(gateway).collect();
    let mut next = 1u64;
    let mut out: Vec<ExternalHost> = Vec::new();
    for (i, name) in s.external_hosts.iter().enumerate() {
        check_name(loc, name, "external host name", at!["external_hosts", i])?;
        if out.iter().any(|e| &e.name == name) || nodes.iter().any(|n| &n.name == name) {
            return Err(loc.err(
                at!["external_hosts", i],
                format!("external host name '{name}' is used twice (or by a node); pick another"),
            ));
        }
        let ip = loop {
            // The last usable address is the upstream gateway on one switch: never use it.
            let Some(ip) = subnet.nth(next).filter(|_| next + 2 < subnet.size()) else {
                return Err(loc.err(
                    at!["external_hosts", i],
                    format!("no free address left in {subnet} for external host '{name}'; widen node_cidr"),
                ));
            };
            next += 1;
            if !taken.contains(&ip) {
                break ip;
            }
        };
        out.push(ExternalHost { name: name.clone(), ip, prefix: subnet.prefix(), rack: 0, gateway });
    }
    Ok(out)
}

fn resolve_changes(loc: &Locator, s: &Scenario, pods: &[PodSpec]) -> Res<Vec<Change>> {
    let mut out: Vec<Change> = Vec::new();
    for (i, c) in s.changes.iter().enumerate() {
        let Some(pod) = pods.iter().position(|p| p.name == c.delete_pod) else {
            return Err(loc.err(
                at!["changes", i, "delete_pod"],
                format!("delete_pod '{}' names no pod; check the name against `pods:`", c.delete_pod),
            ));
        };
        if c.at >= s.duration {
            return Err(loc.err(
                at!["changes", i, "at"],
                format!(
                    "change at {} is not before the end of the scenario at {}; make it earlier",
                    c.at, s.duration
                ),
            ));
        }
        if out.iter().any(|o| o.pod == pod) {
            return Err(loc.err(
                at!["changes", i, "delete_pod"],
                format!("pod '{}' is deleted twice; delete it once", c.delete_pod),
            ));
        }
        out.push(Change { at: Instant::from_nanos(c.at.as_nanos()), pod });
    }
    out.sort_by_key(|c| c.at);
    Ok(out)
}

fn check_sweep(loc: &Locator, sw: &super::SweepSpec, s: &Scenario) -> Res<crate::cluster::SweepSpec> {
    let parameter = match sw.parameter.as_str() {
        "services" => crate::cluster::Parameter::Services,
        "endpoints" => crate::cluster::Parameter::Endpoints,
        other => {
            return Err(loc.err(
                at!["sweep", "parameter"],
                format!("unknown sweep parameter '{other}', expected one of: services, endpoints"),
            ))
        }
    };
    if s.generated_services.is_none() {
        return Err(loc.err(
            at!["sweep", "parameter"],
            format!("sweeping '{}' needs a generated_services section to vary; add one", sw.parameter),
        ));
    }
    if sw.values.is_empty() {
        return Err(
            loc.err(at!["sweep", "values"], "values is empty; give at least one, e.g. [10, 100, 1000]")
        );
    }
    if let Some(v) = sw.values.iter().find(|&&v| v == 0 || v as usize > MAX_SERVICES) {
        return Err(
            loc.err(at!["sweep", "values"], format!("value {v} is outside 1..={MAX_SERVICES}; change it"))
        );
    }
    let mut proxies = Vec::new();
    for (i, p) in sw.proxies.iter().enumerate() {
        let m = p.parse::<ProxyMode>().map_err(|e| loc.err(at!["sweep", "proxies", i], e))?;
        if proxies.contains(&m) {
            return Err(loc.err(at!["sweep", "proxies", i], format!("proxy '{p}' is listed twice; keep one")));
        }
        proxies.push(m);
    }
    if proxies.is_empty() {
        proxies = ProxyMode::ALL.to_vec();
    }
    let mut values = sw.values.clone();
    values.sort_unstable();
    if let Some(w) = values.windows(2).find(|w| w[0] == w[1]) {
        return Err(loc.err(at!["sweep", "values"], format!("value {} is listed twice; keep one", w[0])));
    }
    Ok(crate::cluster::SweepSpec { parameter, values, proxies })
}

/// A workload's `to` when it names a Service.
fn resolve_target(
    loc: &Locator,
    sel: &Selector,
    at: &[Seg],
    nodes: &[NodeSpec],
    services: &ServiceTable,
    generated: (usize, usize),
    externals: &[ExternalHost],
) -> Res<Option<Target>> {
    let find = |name: &str| -> Res<(usize, usize)> {
        let (svc, port) = match name.split_once(':') {
            Some((s, p)) => (s, Some(p)),
            None => (name, None),
        };
        let Some(si) = services.services.iter().position(|s| s.name == svc) else {
            let names: Vec<&str> = services.services.iter().map(|s| s.name.as_str()).take(10).collect();
            let known = if names.is_empty() {
                "this scenario has no services; declare it under `services:` (see docs/scenario.md)"
                    .to_string()
            } else {
                format!("services are: {}", names.join(", "))
            };
            return Err(loc.err(at, format!("Service(\"{name}\") names no service; {known}")));
        };
        let ports = &services.services[si].ports;
        let pi = match port {
            None => 0,
            Some(p) => ports.iter().position(|x| x.name == p).ok_or_else(|| {
                loc.err(
                    at,
                    format!(
                        "service '{svc}' has no port named '{p}'; its ports are: {}",
                        ports.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(", ")
                    ),
                )
            })?,
        };
        Ok((si, pi))
    };
    match sel {
        Selector::Service(name) => {
            let (service, port) = find(name)?;
            Ok(Some(Target::Service { service, port }))
        }
        Selector::NodePort { service, node } => {
            let (si, port) = find(service)?;
            if services.services[si].kind != ServiceKind::NodePort {
                return Err(
                    loc.err(at, format!("service '{service}' is not a NodePort Service; set kind: NodePort"))
                );
            }
            let Some(node) = nodes.iter().position(|n| &n.name == node) else {
                return Err(loc.err(
                    at,
                    format!("NodePort node '{node}' names no node; nodes are: {}", list_names(nodes)),
                ));
            };
            Ok(Some(Target::NodePort { service: si, port, node }))
        }
        Selector::External(name) => match externals.iter().position(|e| &e.name == name) {
            Some(e) => Ok(Some(Target::External(e))),
            None => Err(
                loc.err(at, format!("External(\"{name}\") names no external host; add it to external_hosts"))
            ),
        },
        Selector::AnyGeneratedService => {
            if generated.1 == 0 {
                return Err(loc.err(at, "AnyGeneratedService needs a generated_services section; add one"));
            }
            Ok(Some(Target::AnyService { first: generated.0, count: generated.1 }))
        }
        _ => Ok(None),
    }
}

#[allow(clippy::too_many_arguments)]
fn resolve_workloads(
    loc: &Locator,
    s: &Scenario,
    nodes: &[NodeSpec],
    pods: &[PodSpec],
    chosen: ChosenCni,
    options: &CniOptions,
    services: &ServiceTable,
    generated: (usize, usize),
    externals: &[ExternalHost],
) -> Res<Vec<Workload>> {
    let mut out: Vec<Workload> = Vec::with_capacity(s.workloads.len());
    let mut total_flows = 0u64;
    for (i, w) in s.workloads.iter().enumerate() {
        check_name(loc, &w.name, "workload name", at!["workloads", i, "name"])?;
        if out.iter().any(|o| o.name == w.name) {
            return Err(loc.err(
                at!["workloads", i, "name"],
                format!("workload name '{}' is used twice; workload names must be unique", w.name),
            ));
        }
        let kind = resolve_kind(loc, i, &w.kind)?;
        if w.port == 0 {
            return Err(loc.err(at!["workloads", i, "port"], "port 0 is not a valid UDP port; use 1..=65535"));
        }
        if w.start >= s.duration {
            return Err(loc.err(
                at!["workloads", i, "start"],
                format!(
                    "workload '{}' starts at {}, not before the end of the scenario at {}; start it earlier",
                    w.name, w.start, s.duration
                ),
            ));
        }
        if matches!(w.from, Selector::External(_)) && !matches!(w.to, Selector::NodePort { .. }) {
            return Err(loc.err(
                at!["workloads", i, "to"],
                "a host outside the cluster reaches it through a NodePort (pod and cluster IPs are not routed \
                 to it); use to: NodePort(service: \"...\", node: \"...\")",
            ));
        }
        if matches!(w.from, Selector::Service(_) | Selector::NodePort { .. } | Selector::AnyGeneratedService)
        {
            return Err(loc.err(
                at!["workloads", i, "from"],
                "a Service cannot send: `from` selects pods (Pod, Node or Labels); put the Service in `to`",
            ));
        }
        if let (Selector::External(_), Selector::External(_)) = (&w.from, &w.to) {
            return Err(loc.err(
                at!["workloads", i, "to"],
                "an external host sends to the cluster (a NodePort); pods send to external hosts",
            ));
        }
        let from: Vec<Client> = match &w.from {
            Selector::External(name) => match externals.iter().position(|e| &e.name == name) {
                Some(e) => vec![Client::External(e)],
                None => {
                    let names: Vec<&str> = externals.iter().map(|e| e.name.as_str()).collect();
                    return Err(loc.err(
                        at!["workloads", i, "from"],
                        format!(
                            "External(\"{name}\") names no external host; add it to external_hosts (they are: {})",
                            if names.is_empty() { "none".to_string() } else { names.join(", ") }
                        ),
                    ));
                }
            },
            sel => select(loc, sel, at!["workloads", i, "from"], nodes, pods)?
                .into_iter()
                .map(Client::Pod)
                .collect(),
        };
        if w.new_connection_per_request && !matches!(kind, WorkloadKind::UdpRr { .. }) {
            return Err(loc.err(
                at!["workloads", i, "new_connection_per_request"],
                "new_connection_per_request is for request/response (UdpRr) workloads; remove it",
            ));
        }
        if let Some(target) =
            resolve_target(loc, &w.to, at!["workloads", i, "to"], nodes, services, generated, externals)?
        {
            total_flows += from.len() as u64;
            if total_flows > MAX_FLOWS {
                return Err(loc.err(
                    at!["workloads", i],
                    format!("workload '{}' brings the number of flows to {total_flows}, over the limit of {MAX_FLOWS}; narrow `from`", w.name),
                ));
            }
            let from_pods: Vec<PodId> =
                from.iter().filter_map(|c| if let Client::Pod(p) = c { Some(*p) } else { None }).collect();
            check_service_sizes(loc, i, &kind, &from_pods, pods, services, target)?;
            let duration = workload_duration(loc, i, w, s)?;
            out.push(Workload {
                name: w.name.clone(),
                kind,
                flows: from.iter().map(|&c| (c, target)).collect(),
                port: w.port,
                new_connection_per_request: w.new_connection_per_request,
                start: Instant::from_nanos(w.start.as_nanos()),
                duration,
                dont_fragment: w.dont_fragment,
            });
            continue;
        }
        let to = select(loc, &w.to, at!["workloads", i, "to"], nodes, pods)?;
        // External hosts only send to NodePorts (checked above): only pods are left.
        let from: Vec<PodId> =
            from.iter().filter_map(|c| if let Client::Pod(p) = c { Some(*p) } else { None }).collect();
        let both = from.iter().filter(|p| to.binary_search(p).is_ok()).count() as u64;
        let n = from.len() as u64 * to.len() as u64 - both;
        if n == 0 {
            return Err(loc.err(
                at!["workloads", i, "to"],
                format!(
                    "workload '{}' has no flow: `from` and `to` select only the same pod '{}', and \
                     a pod does not send to itself; select another pod",
                    w.name, pods[from[0]].name
                ),
            ));
        }
        total_flows += n;
        if total_flows > MAX_FLOWS {
            return Err(loc.err(
                at!["workloads", i],
                format!(
                    "workload '{}' brings the number of flows to {total_flows}, over the limit of \
                     {MAX_FLOWS} (each (client, server) pair is one flow); narrow its `from`/`to` selectors",
                    w.name
                ),
            ));
        }
        let pairs: Vec<(PodId, PodId)> =
            from.iter().flat_map(|&c| to.iter().filter(move |&&s| s != c).map(move |&s| (c, s))).collect();
        check_sizes(loc, i, &kind, &pairs, nodes, pods, chosen, options)?;
        let flows = pairs.into_iter().map(|(c, s)| (Client::Pod(c), Target::Pod(s))).collect();
        let duration = workload_duration(loc, i, w, s)?;
        out.push(Workload {
            name: w.name.clone(),
            kind,
            flows,
            port: w.port,
            new_connection_per_request: w.new_connection_per_request,
            start: Instant::from_nanos(w.start.as_nanos()),
            duration,
            dont_fragment: w.dont_fragment,
        });
    }
    Ok(out)
}

fn resolve_kind(loc: &Locator, i: usize, kind: &super::WorkloadKind) -> Res<WorkloadKind> {
    let field = |f: &'static str| [Seg::Key("workloads"), Seg::Idx(i), Seg::Key("kind"), Seg::Key(f)];
    let too_big = |at: &[Seg], bytes: u32| -> Res<()> {
        if bytes > crate::cluster::MAX_UDP_PAYLOAD {
            let name = match at.last() {
                Some(Seg::Key(k)) => *k,
                _ => "payload",
            };
            return Err(loc.err(
                at,
                format!(
                    "{name} {bytes} B is more than one UDP datagram holds over IPv4 (65,507 B); lower it"
                ),
            ));
        }
        Ok(())
    };
    match *kind {
        super::WorkloadKind::UdpCbr { rate, payload } => {
            if rate.0 == 0 {
                return Err(loc.err(&field("rate"), "rate is zero; give a rate such as \"100Mbit\""));
            }
            if rate > MAX_RATE {
                return Err(loc.err(
                    &field("rate"),
                    format!("rate {rate} is absurd (more than 1Tbit); check the unit, e.g. \"100Mbit\""),
                ));
            }
            if payload == 0 {
                return Err(loc.err(&field("payload"), "payload is 0 bytes; send at least 1 byte"));
            }
            too_big(&field("payload"), payload)?;
            Ok(WorkloadKind::UdpCbr { rate, payload })
        }
        super::WorkloadKind::UdpStream { payload } => {
            if payload == 0 {
                return Err(loc.err(&field("payload"), "payload is 0 bytes; send at least 1 byte"));
            }
            Ok(WorkloadKind::UdpStream { payload })
        }
        super::WorkloadKind::UdpRr { request, response, think, timeout } => {
            if request == 0 {
                return Err(loc.err(&field("request"), "request is 0 bytes; send at least 1 byte"));
            }
            if response == 0 {
                return Err(loc.err(&field("response"), "response is 0 bytes; send at least 1 byte"));
            }
            too_big(&field("request"), request)?;
            too_big(&field("response"), response)?;
            if timeout == Duration::ZERO {
                return Err(loc.err(
                    &field("timeout"),
                    "timeout is zero, so every request would time out; give e.g. \"100ms\"",
                ));
            }
            Ok(WorkloadKind::UdpRr { request, response, think, timeout })
        }
    }
}

/// Datagrams must fit the pod MTU: fragmentation is not modelled.
#[allow(clippy::too_many_arguments)]
fn check_sizes(
    loc: &Locator,
    i: usize,
    kind: &WorkloadKind,
    flows: &[(PodId, PodId)],
    nodes: &[NodeSpec],
    pods: &[PodSpec],
    chosen: ChosenCni,
    options: &CniOptions,
) -> Res<()> {
    let check = |bytes: u32, pod: PodId, field: &'static str, side: &str| -> Res<()> {
        let mtu = pods[pod].mtu;
        if u64::from(bytes) + u64::from(UDP_IP_HEADERS) > u64::from(mtu) {
            // Where the MTU comes from, so the user knows what to change.
            let origin = match options.mtu {
                Some(_) => "set by cni_options.mtu".to_string(),
                None => format!(
                    "the default pod MTU of {} on a node with MTU {}; cni_options.mtu sets another",
                    chosen.describe(),
                    nodes.get(pods[pod].node).map_or(0, |n| n.mtu)
                ),
            };
            return Err(loc.err(
                &[Seg::Key("workloads"), Seg::Idx(i), Seg::Key("kind"), Seg::Key(field)],
                format!(
                    "{field} {bytes} B + 28 B of IPv4/UDP headers exceeds the MTU {mtu} of {side} pod '{}' \
                     ({origin}); a pod sends datagrams of at most its MTU; lower {field} to ≤ MTU-28 = {}",
                    pods[pod].name,
                    mtu.saturating_sub(UDP_IP_HEADERS)
                ),
            ));
        }
        Ok(())
    };
    for &(c, s) in flows {
        match *kind {
            WorkloadKind::UdpCbr { payload, .. } | WorkloadKind::UdpStream { payload } => {
                check(payload, c, "payload", "client")?
            }
            WorkloadKind::UdpRr { request, response, .. } => {
                check(request, c, "request", "client")?;
                check(response, s, "response", "server")?;
            }
        }
    }
    Ok(())
}

/// How long a workload runs: its `duration`, else to the end of the scenario.
fn workload_duration(loc: &Locator, i: usize, w: &super::Workload, s: &Scenario) -> Res<Duration> {
    let rest = Duration::from_nanos(s.duration.as_nanos() - w.start.as_nanos());
    match w.duration {
        None => Ok(rest),
        Some(d) if d == Duration::ZERO => Err(loc.err(
            at!["workloads", i, "duration"],
            format!("workload '{}' has duration zero; remove `duration` to run to the end", w.name),
        )),
        Some(d) if d > rest => Err(loc.err(
            at!["workloads", i, "duration"],
            format!(
                "workload '{}' runs from {} to {}, past the end of the scenario at {}; shorten its \
                 duration to at most {rest} or lengthen the scenario",
                w.name,
                w.start,
                w.start + d,
                s.duration
            ),
        )),
        Some(d) => Ok(d),
    }
}

/// Datagrams to a Service must fit the client's MTU and every endpoint's MTU (replies).
fn check_service_sizes(
    loc: &Locator,
    i: usize,
    kind: &WorkloadKind,
    clients: &[PodId],
    pods: &[PodSpec],
    services: &ServiceTable,
    target: Target,
) -> Res<()> {
    let (out, back) = match *kind {
        WorkloadKind::UdpCbr { payload, .. } | WorkloadKind::UdpStream { payload } => (payload, 0),
        WorkloadKind::UdpRr { request, response, .. } => (request, response),
    };
    let field = if matches!(kind, WorkloadKind::UdpCbr { .. } | WorkloadKind::UdpStream { .. }) {
        "payload"
    } else {
        "request"
    };
    for &c in clients {
        if out + UDP_IP_HEADERS > pods[c].mtu {
            return Err(loc.err(
                &[Seg::Key("workloads"), Seg::Idx(i), Seg::Key("kind"), Seg::Key(field)],
                format!(
                    "{field} {out} B + 28 B of IPv4/UDP headers exceeds the MTU {} of client pod '{}'; lower it to ≤ {}",
                    pods[c].mtu,
                    pods[c].name,
                    pods[c].mtu.saturating_sub(UDP_IP_HEADERS)
                ),
            ));
        }
    }
    let svcs: Vec<usize> = match target {
        Target::Service { service, .. } | Target::NodePort { service, .. } => vec![service],
        Target::AnyService { first, count } => (first..first + count).collect(),
        Target::Pod(_) | Target::External(_) => vec![],
    };
    for s in svcs {
        for e in &services.services[s].endpoints {
            if back > 0 && back + UDP_IP_HEADERS > pods[e.pod].mtu {
                return Err(loc.err(
                    &[Seg::Key("workloads"), Seg::Idx(i), Seg::Key("kind"), Seg::Key("response")],
                    format!(
                        "response {back} B + 28 B exceeds the MTU {} of endpoint pod '{}'; lower it to ≤ {}",
                        pods[e.pod].mtu,
                        pods[e.pod].name,
                        pods[e.pod].mtu.saturating_sub(UDP_IP_HEADERS)
                    ),
                ));
            }
        }
    }
    Ok(())
}
