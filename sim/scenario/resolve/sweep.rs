//! The sweep a scenario declares (`sweep:`): its parameter, values, proxy modes and CNIs, and
//! [`apply_overrides`], which puts one point's value in place of the field it varies.

use super::nodes::{MAX_NODES, MAX_PODS};
use super::services::MAX_SERVICES;
use super::{Locator, Res};
use crate::cluster::{Cni, Parameter, ProxyMode, MAX_UDP_PAYLOAD};
use crate::scenario::locate::Seg;
use crate::scenario::{self, Overrides, Scenario};

pub(super) fn check_sweep(
    loc: &Locator,
    sw: &scenario::SweepSpec,
    s: &Scenario,
) -> Res<crate::cluster::SweepSpec> {
    let Some(parameter) = Parameter::ALL.into_iter().find(|p| p.id() == sw.parameter) else {
        let known = Parameter::ALL.map(Parameter::id).join(", ");
        return Err(loc.err(
            at!["sweep", "parameter"],
            format!("unknown sweep parameter '{}', expected one of: {known}", sw.parameter),
        ));
    };
    if parameter.is_service() && s.generated_services.is_none() {
        return Err(loc.err(
            at!["sweep", "parameter"],
            format!("sweeping '{}' needs a generated_services section to vary; add one", sw.parameter),
        ));
    }
    if parameter == Parameter::Policies && s.generated_policies.is_none() {
        return Err(loc.err(
            at!["sweep", "parameter"],
            "sweeping 'policies' needs a generated_policies section to vary; add one, e.g. \
             generated_policies: (count: 10)",
        ));
    }
    if parameter == Parameter::Payload && s.workloads.is_empty() {
        return Err(loc.err(
            at!["sweep", "parameter"],
            "sweeping 'payload' needs a workload whose payload it sets; add one",
        ));
    }
    if parameter == Parameter::Nodes && matches!(s.nodes, scenario::Nodes::List(_)) {
        return Err(loc.err(
            at!["sweep", "parameter"],
            "sweeping 'nodes' needs nodes: Count(count: N, ...) to vary; this scenario lists its nodes by \
             name, so there is no count to change",
        ));
    }
    if sw.values.is_empty() {
        return Err(
            loc.err(at!["sweep", "values"], "values is empty; give at least one, e.g. [10, 100, 1000]")
        );
    }
    let (max, what) = match parameter {
        Parameter::Services | Parameter::Endpoints => (MAX_SERVICES as u64, ""),
        Parameter::Payload => (u64::from(MAX_UDP_PAYLOAD), " (the most one UDP datagram holds over IPv4)"),
        Parameter::Nodes => (MAX_NODES, " (the nodes cnisim supports)"),
        Parameter::PodsPerNode => (MAX_PODS, " (the pods cnisim supports)"),
        Parameter::Policies => (super::policy::MAX_GENERATED_POLICIES, ""),
    };
    for (i, &v) in sw.values.iter().enumerate() {
        if v == 0 || u64::from(v) > max {
            return Err(loc.err(
                at!["sweep", "values", i],
                format!("value {v} is outside 1..={}{what}; change it", crate::fmt::count(max)),
            ));
        }
        if sw.values[..i].contains(&v) {
            return Err(loc.err(at!["sweep", "values", i], format!("value {v} is listed twice; keep one")));
        }
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
    let cnis = if sw.cnis.is_empty() {
        Vec::new()
    } else {
        scenario::pick(&scenario::compare::items(&sw.cnis), &Cni::ALL, Cni::id, "CNI")
            .map_err(|(i, m)| loc.err(at!["sweep", "cnis", i], m))?
    };
    let mut bgp = Vec::new();
    for (i, t) in sw.bgp.iter().enumerate() {
        if s.bgp.is_none() {
            return Err(loc.err(
                at!["sweep", "bgp"],
                "sweeping BGP topologies needs the BGP control plane simulated: add a `bgp: ()` section",
            ));
        }
        let topology =
            t.parse::<crate::cluster::BgpTopology>().map_err(|e| loc.err(at!["sweep", "bgp", i], e))?;
        if bgp.contains(&topology) {
            return Err(loc.err(at!["sweep", "bgp", i], format!("topology '{t}' is listed twice; keep one")));
        }
        bgp.push(topology);
    }
    let mut values = sw.values.clone();
    values.sort_unstable();
    Ok(crate::cluster::SweepSpec { parameter, values, proxies, cnis, bgp })
}

/// Puts a sweep point's value in place of the field it varies, before anything is resolved
/// (so every check sees it, located at the field it replaces).
pub(super) fn apply_overrides(s: &mut Scenario, o: &Overrides) {
    if let Some(p) = o.payload {
        for w in &mut s.workloads {
            match &mut w.kind {
                scenario::WorkloadKind::UdpCbr { payload, .. }
                | scenario::WorkloadKind::UdpStream { payload } => *payload = p,
                scenario::WorkloadKind::UdpRr { request, .. }
                | scenario::WorkloadKind::TcpRr { request, .. }
                | scenario::WorkloadKind::TcpCrr { request, .. } => *request = p,
                scenario::WorkloadKind::TcpStream { write, .. } => *write = p,
            }
        }
    }
    if let (Some(n), scenario::Nodes::Count { count, .. }) = (o.node_count, &mut s.nodes) {
        *count = n;
    }
    if let Some(n) = o.pods_per_node {
        s.pods_per_node = n;
    }
    if let (Some(t), Some(b)) = (o.bgp, s.bgp.as_mut()) {
        // The first N nodes in the file's order; the mesh has no cluster ID to set.
        let names: Vec<String> = match &s.nodes {
            scenario::Nodes::Count { count, name_prefix, .. } => {
                (1..=*count).map(|i| format!("{name_prefix}{i}")).collect()
            }
            scenario::Nodes::List(list) => list.iter().map(|n| n.name.clone()).collect(),
        };
        match t {
            crate::cluster::BgpTopology::Mesh => {
                b.route_reflectors.clear();
                b.cluster_id = None;
            }
            crate::cluster::BgpTopology::Reflectors(n) => {
                b.route_reflectors = names.into_iter().take(n as usize).collect();
            }
        }
    }
    if let (Some(n), Some(g)) = (o.generated_policies, s.generated_policies.as_mut()) {
        g.count = n;
    }
}
