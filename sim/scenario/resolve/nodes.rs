//! Nodes, pods and hosts outside the cluster: node names, addresses and pod subnets (by rack in
//! a leaf-spine fabric), pods placed on their nodes with addresses from the node's subnet,
//! external hosts on the next free node-network addresses, and the pod deletions of `changes:`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::Ipv4Addr;

use super::{check_bandwidth, check_mtu, check_name, ChosenCni, Locator, Res};
use crate::cluster::{
    Change, ChangeKind, Cni, CniOptions, ExternalHost, Fabric, KernelQueues, Network, NodeId, NodeSpec,
    PodSpec,
};
use crate::scenario::locate::Seg;
use crate::scenario::{self, Nodes, Scenario};
use crate::time::Instant;
use crate::units::Bandwidth;

/// Limits that keep a typo (`count: 4000000000`) from exhausting memory.
pub(super) const MAX_NODES: u64 = 100_000;
pub(super) const MAX_PODS: u64 = 2_000_000;

pub(super) fn resolve_nodes(
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
        Nodes::Count { sysctls, txqueuelen, rx_ring, offloads, .. } => {
            vec![scenario::kernel::resolve(loc, sysctls, (*txqueuelen, *rx_ring), offloads, None)?]
        }
        Nodes::List(list) => list
            .iter()
            .enumerate()
            .map(|(i, n)| {
                scenario::kernel::resolve(loc, &n.sysctls, (n.txqueuelen, n.rx_ring), &n.offloads, Some(i))
            })
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
        let pod_mtu = scenario::pod_mtu(chosen.cni, options, *mtu);
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

pub(super) fn resolve_pods(
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
    let mut place =
        |node: NodeId, name: String, labels: BTreeMap<String, String>, namespace: &str, used: &mut [u64]| {
            used[node] += 1;
            // .1 is the gateway; pods take .2, .3, ... (fits: checked against `per_node`).
            let ip = nodes[node].pod_subnet.nth(used[node] + 1);
            let mtu = scenario::pod_mtu(cni, options, nodes[node].mtu);
            ip.map(|ip| pods.push(PodSpec { name, node, ip, mtu, labels, namespace: namespace.to_string() }))
        };
    for (ni, node) in nodes.iter().enumerate() {
        for k in 1..=s.pods_per_node {
            let name = format!("{}-pod-{k}", node.name);
            names.insert(name.clone());
            let labels = BTreeMap::from([("node".to_string(), node.name.clone())]);
            if place(ni, name, labels, "default", &mut used).is_none() {
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
        if place(node, p.name.clone(), p.labels.clone(), &p.namespace, &mut used).is_none() {
            return Err(loc.err(at!["pods", i], "pod does not fit its node's pod subnet"));
        }
    }
    Ok(pods)
}

pub(super) fn list_names(nodes: &[NodeSpec]) -> String {
    let mut s = nodes.iter().take(10).map(|n| n.name.as_str()).collect::<Vec<_>>().join(", ");
    if nodes.len() > 10 {
        s.push_str(&format!(", ... ({} in all)", nodes.len()));
    }
    s
}

/// External hosts take the next free addresses of the node network (the first rack's subnet
/// in a leaf-spine fabric), after the nodes'.
pub(super) fn resolve_externals(
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

pub(super) fn resolve_changes(
    loc: &Locator,
    s: &Scenario,
    nodes: &[NodeSpec],
    pods: &[PodSpec],
    policies: &[crate::policy::NetworkPolicy],
    labels: &mut Vec<(usize, std::collections::BTreeMap<String, String>)>,
) -> Res<Vec<Change>> {
    let mut out: Vec<Change> = Vec::new();
    for (i, c) in s.changes.iter().enumerate() {
        let given: Vec<&str> = [
            c.delete_pod.as_ref().map(|_| "delete_pod"),
            c.power_off.as_ref().map(|_| "power_off"),
            c.stop_bird.as_ref().map(|_| "stop_bird"),
            c.restart_bird.as_ref().map(|_| "restart_bird"),
            c.join_node.as_ref().map(|_| "join_node"),
            c.apply_policy.as_ref().map(|_| "apply_policy"),
            c.delete_policy.as_ref().map(|_| "delete_policy"),
            c.label_pod.as_ref().map(|_| "label_pod"),
        ]
        .into_iter()
        .flatten()
        .collect();
        if given.len() != 1 {
            let what = if given.is_empty() { "none".to_string() } else { given.join(" and ") };
            return Err(loc.err(
                at!["changes", i],
                format!(
                    "a change does one thing: give exactly one of delete_pod, power_off, stop_bird, \
                     restart_bird, join_node, apply_policy, delete_policy and label_pod (this one has {what}); \
                     split it into several changes"
                ),
            ));
        }
        let node = |name: &str, key: &'static str| -> Res<usize> {
            nodes.iter().position(|n| n.name == name).ok_or_else(|| {
                loc.err(
                    at!["changes", i, key],
                    format!("{key} '{name}' names no node; check the name against the nodes"),
                )
            })
        };
        let what = if let Some(name) = &c.delete_pod {
            let Some(pod) = pods.iter().position(|p| &p.name == name) else {
                return Err(loc.err(
                    at!["changes", i, "delete_pod"],
                    format!("delete_pod '{name}' names no pod; check the name against `pods:`"),
                ));
            };
            if out.iter().any(|o| o.what == ChangeKind::DeletePod(pod)) {
                return Err(loc.err(
                    at!["changes", i, "delete_pod"],
                    format!("pod '{name}' is deleted twice; delete it once"),
                ));
            }
            ChangeKind::DeletePod(pod)
        } else if let Some(name) = &c.power_off {
            let n = node(name, "power_off")?;
            if out.iter().any(|o| o.what == ChangeKind::PowerOff(n)) {
                return Err(loc.err(
                    at!["changes", i, "power_off"],
                    format!("node '{name}' is powered off twice; power it off once"),
                ));
            }
            ChangeKind::PowerOff(n)
        } else if let Some(name) = &c.join_node {
            let n = node(name, "join_node")?;
            if s.bgp.is_none() {
                return Err(loc.err(
                    at!["changes", i, "join_node"],
                    "join_node needs the BGP control plane simulated (the joining node's routes come \
                     from BIRD): add a `bgp: ()` section (or remove this change)",
                ));
            }
            if out.iter().any(|o| o.what == ChangeKind::JoinNode(n)) {
                return Err(loc.err(
                    at!["changes", i, "join_node"],
                    format!("node '{name}' joins twice; let it join once"),
                ));
            }
            ChangeKind::JoinNode(n)
        } else if let Some(l) = &c.label_pod {
            let Some(pod) = pods.iter().position(|p| p.name == l.pod) else {
                return Err(loc.err(
                    at!["changes", i, "label_pod", "pod"],
                    format!("label_pod '{}' names no pod; check the name against `pods:`", l.pod),
                ));
            };
            labels.push((pod, l.labels.clone()));
            ChangeKind::LabelPod(labels.len() - 1)
        } else if let Some(name) = c.apply_policy.as_deref().or(c.delete_policy.as_deref()) {
            let apply = c.apply_policy.is_some();
            let key = if apply { "apply_policy" } else { "delete_policy" };
            let p = policy_named(loc, policies, name, at!["changes", i, key])?;
            let kind = if apply { ChangeKind::ApplyPolicy(p) } else { ChangeKind::DeletePolicy(p) };
            if out.iter().any(|o| o.what == kind) {
                let verb = if apply { "created" } else { "deleted" };
                return Err(loc.err(
                    at!["changes", i, key],
                    format!(
                        "policy '{name}' is {verb} twice; {} it once",
                        if apply { "create" } else { "delete" }
                    ),
                ));
            }
            // A policy created and deleted: created first.
            let at = Instant::from_nanos(c.at.as_nanos());
            let other = if apply { ChangeKind::DeletePolicy(p) } else { ChangeKind::ApplyPolicy(p) };
            let later = later_changes(s, i, policies, loc);
            let clash = out.iter().chain(later.iter()).find(|o| o.what == other).map(|o| o.at);
            if let Some(other_at) = clash {
                let (created, deleted) = if apply { (at, other_at) } else { (other_at, at) };
                if created >= deleted {
                    return Err(loc.err(
                        at!["changes", i, key],
                        format!(
                            "policy '{name}' is deleted no later than it is created; create it (apply_policy) \
                             before deleting it (delete_policy)"
                        ),
                    ));
                }
            }
            kind
        } else {
            let restart = c.restart_bird.is_some();
            let key = if restart { "restart_bird" } else { "stop_bird" };
            let name = c.restart_bird.as_deref().or(c.stop_bird.as_deref()).unwrap_or_default();
            let n = node(name, key)?;
            if s.bgp.is_none() {
                return Err(loc.err(
                    at!["changes", i, key],
                    format!(
                        "{key} needs the BGP control plane simulated: add a `bgp: ()` section (or remove \
                         this change)"
                    ),
                ));
            }
            if !restart && out.iter().any(|o| o.what == ChangeKind::StopBird(n)) {
                return Err(loc.err(
                    at!["changes", i, key],
                    format!("BIRD on node '{name}' is stopped twice; stop it once"),
                ));
            }
            if restart {
                ChangeKind::RestartBird(n)
            } else {
                ChangeKind::StopBird(n)
            }
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
        out.push(Change { at: Instant::from_nanos(c.at.as_nanos()), what });
    }
    // `out[i]` is `s.changes[i]` until sorted: a joining node has nothing done to it before.
    for (j, join) in out.iter().enumerate() {
        let ChangeKind::JoinNode(n) = join.what else { continue };
        // The node a change is done to, and the change's scenario key.
        let on_node = |k: &ChangeKind| match *k {
            ChangeKind::PowerOff(m) => Some((m, "power_off")),
            ChangeKind::StopBird(m) => Some((m, "stop_bird")),
            ChangeKind::RestartBird(m) => Some((m, "restart_bird")),
            ChangeKind::DeletePod(p) => Some((pods[p].node, "delete_pod")),
            _ => None,
        };
        if let Some(k) =
            out.iter().position(|o| o.at <= join.at && on_node(&o.what).is_some_and(|(m, _)| m == n))
        {
            let key = on_node(&out[k].what).expect("a change on the node").1;
            return Err(loc.err(
                at!["changes", k, key],
                format!(
                    "this change at {} is not after node '{}' joins at {}; make it later or the join \
                     earlier",
                    s.changes[k].at, nodes[n].name, s.changes[j].at
                ),
            ));
        }
    }
    out.sort_by_key(|c| c.at);
    Ok(out)
}

/// The policy a change names: `namespace/name`, or a name only one namespace has.
fn policy_named(
    loc: &Locator,
    policies: &[crate::policy::NetworkPolicy],
    name: &str,
    path: &[crate::scenario::locate::Seg<'static>],
) -> Res<usize> {
    let found: Vec<usize> = match name.split_once('/') {
        Some((ns, n)) => policies
            .iter()
            .enumerate()
            .filter(|(_, p)| p.namespace == ns && p.name == n)
            .map(|(i, _)| i)
            .collect(),
        None => policies.iter().enumerate().filter(|(_, p)| p.name == name).map(|(i, _)| i).collect(),
    };
    match found[..] {
        [one] => Ok(one),
        [] => Err(loc.err(
            path,
            format!(
                "'{name}' names no NetworkPolicy; check it against `network_policies` (\"namespace/name\")"
            ),
        )),
        _ => Err(loc.err(
            path,
            format!(
                "'{name}' names policies in {} namespaces; say which as \"namespace/{name}\"",
                found.len()
            ),
        )),
    }
}

/// The policy changes listed after change `i`, resolved enough to compare with it (their
/// errors are reported when their turn comes).
fn later_changes(
    s: &Scenario,
    i: usize,
    policies: &[crate::policy::NetworkPolicy],
    loc: &Locator,
) -> Vec<Change> {
    let mut out = Vec::new();
    for (j, c) in s.changes.iter().enumerate().skip(i + 1) {
        let (name, apply) = match (&c.apply_policy, &c.delete_policy) {
            (Some(n), None) => (n, true),
            (None, Some(n)) => (n, false),
            _ => continue,
        };
        let key = if apply { "apply_policy" } else { "delete_policy" };
        let Ok(p) = policy_named(loc, policies, name, at!["changes", j, key]) else { continue };
        let what = if apply { ChangeKind::ApplyPolicy(p) } else { ChangeKind::DeletePolicy(p) };
        out.push(Change { at: Instant::from_nanos(c.at.as_nanos()), what });
    }
    out
}
