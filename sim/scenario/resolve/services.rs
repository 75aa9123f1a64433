//! Services and the proxy mode: explicit cluster IPs and node ports checked first, the others
//! allocated around them, endpoints from label selectors, then the generated Services.

use std::collections::{BTreeMap, HashSet};
use std::net::Ipv4Addr;

use super::{check_name, Locator, Res};
use crate::cluster::{
    Endpoint, Network, PodId, PodSpec, Protocol, ProxyMode, Service, ServiceKind, ServicePort, ServiceTable,
    TrafficPolicy,
};
use crate::scenario::locate::Seg;
use crate::scenario::{self, Overrides, Scenario};

pub(super) fn resolve_proxy(loc: &Locator, s: &Scenario, overrides: &Overrides) -> Res<ProxyMode> {
    if let Some(p) = overrides.proxy {
        return Ok(p);
    }
    match &s.proxy {
        None => Ok(ProxyMode::Iptables),
        Some(id) => id.parse().map_err(|e: String| loc.err(at!["proxy"], e)),
    }
}

/// A port's `protocol`: UDP when absent (Kubernetes' default is TCP; cnisim's stays UDP, the
/// transport every earlier scenario meant).
fn resolve_protocol(loc: &Locator, protocol: &Option<String>, at: &[Seg]) -> Res<Protocol> {
    match protocol {
        None => Ok(Protocol::Udp),
        Some(p) => p.parse().map_err(|e: String| loc.err(at, e)),
    }
}

/// Most Services a scenario may define (with the generated ones).
pub(super) const MAX_SERVICES: usize = 200_000;
/// kube-apiserver's default `--service-node-port-range`.
const NODE_PORTS: std::ops::RangeInclusive<u16> = 30000..=32767;

/// Services with endpoints from their selectors, cluster IPs and node ports allocated; then the
/// generated ones. Returns the table and (first generated index, count).
pub(super) fn resolve_services(
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
            if !matches!(svc.kind, scenario::ServiceKind::Headless) {
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
                if !matches!(svc.kind, scenario::ServiceKind::NodePort) {
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
            scenario::ServiceKind::ClusterIP => ServiceKind::ClusterIp,
            scenario::ServiceKind::NodePort => ServiceKind::NodePort,
            scenario::ServiceKind::Headless => ServiceKind::Headless,
        };
        if kind == ServiceKind::Headless && svc.cluster_ip.is_some() {
            return Err(loc.err(
                at!["services", i, "cluster_ip"],
                "a Headless Service has no cluster IP (clusterIP: None); remove cluster_ip",
            ));
        }
        let mut ports: Vec<ServicePort> = Vec::new();
        for (j, p) in svc.ports.iter().enumerate() {
            let protocol = resolve_protocol(loc, &p.protocol, at!["services", i, "ports", j, "protocol"])?;
            if p.port == 0 || p.target_port == Some(0) {
                return Err(loc.err(
                    at!["services", i, "ports", j],
                    format!("port 0 is not a valid {protocol} port; use 1..=65535"),
                ));
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
            if !p.name.is_empty() && ports.iter().any(|o| o.name == p.name) {
                return Err(loc.err(
                    at!["services", i, "ports", j],
                    format!("port name '{}' is used twice in service '{}'", p.name, svc.name),
                ));
            }
            // Kubernetes refuses a repeated (port, protocol); 53/UDP beside 53/TCP is fine.
            if ports.iter().any(|o| o.port == p.port && o.protocol == protocol) {
                return Err(loc.err(
                    at!["services", i, "ports", j],
                    format!(
                        "port {}/{protocol} is used twice in service '{}'; the same number is allowed only \
                         with another protocol",
                        p.port, svc.name
                    ),
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
                protocol,
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
            scenario::TrafficPolicy::Cluster => TrafficPolicy::Cluster,
            scenario::TrafficPolicy::Local => TrafficPolicy::Local,
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
        let protocol = resolve_protocol(loc, &g.protocol, at!["generated_services", "protocol"])?;
        if g.port == 0 || g.target_port == 0 {
            return Err(loc.err(
                at!["generated_services"],
                format!("port 0 is not a valid {protocol} port; use 1..=65535"),
            ));
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
                    protocol,
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
