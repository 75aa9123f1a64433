//! Workloads into flows: `from` and `to` selectors into pods, Services, NodePorts or external
//! hosts, one flow per (client, target) pair, each datagram checked against the pods' MTUs.

use super::nodes::list_names;
use super::{check_name, ChosenCni, Locator, Res};
use crate::cluster::{
    Client, CniOptions, ExternalHost, NodeSpec, PodId, PodSpec, ServiceKind, ServiceTable, Target, Workload,
    WorkloadKind,
};
use crate::scenario::locate::Seg;
use crate::scenario::{self, Scenario, Selector};
use crate::time::{Duration, Instant};
use crate::units::Bandwidth;

/// Most flows all workloads together may define.
const MAX_FLOWS: u64 = 100_000;
/// Fastest CBR rate accepted; anything above is surely a unit mistake.
const MAX_RATE: Bandwidth = Bandwidth(1_000_000_000_000);
/// IPv4 (20 B) + UDP (8 B) headers in front of a UDP payload.
const UDP_IP_HEADERS: u32 = 28;

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
pub(super) fn resolve_workloads(
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
            check_protocol(loc, i, &kind, services, target)?;
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

fn resolve_kind(loc: &Locator, i: usize, kind: &scenario::WorkloadKind) -> Res<WorkloadKind> {
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
        scenario::WorkloadKind::UdpCbr { rate, payload } => {
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
        scenario::WorkloadKind::UdpStream { payload } => {
            if payload == 0 {
                return Err(loc.err(&field("payload"), "payload is 0 bytes; send at least 1 byte"));
            }
            Ok(WorkloadKind::UdpStream { payload })
        }
        scenario::WorkloadKind::UdpRr { request, response, think, timeout } => {
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
        scenario::WorkloadKind::TcpStream { streams, write } => {
            if !(1..=MAX_STREAMS).contains(&streams) {
                return Err(loc.err(
                    &field("streams"),
                    format!("streams {streams} is outside 1..={MAX_STREAMS} (iperf3's -P limit)"),
                ));
            }
            if !(1..=MAX_TCP_WRITE).contains(&write) {
                return Err(loc.err(
                    &field("write"),
                    format!(
                        "write {write} B is outside 1..={MAX_TCP_WRITE} (iperf3's largest -l, 1 MiB); iperf3 \
                         writes 128 KiB by default"
                    ),
                ));
            }
            Ok(WorkloadKind::TcpStream { streams, write })
        }
        scenario::WorkloadKind::TcpRr { request, response }
        | scenario::WorkloadKind::TcpCrr { request, response } => {
            for (name, v) in [("request", request), ("response", response)] {
                if !(1..=MAX_TCP_MESSAGE).contains(&v) {
                    return Err(loc.err(
                        &field(name),
                        format!("{name} {v} B is outside 1..={MAX_TCP_MESSAGE} (one socket buffer); send at least 1 byte"),
                    ));
                }
            }
            Ok(match kind {
                scenario::WorkloadKind::TcpRr { .. } => WorkloadKind::TcpRr { request, response },
                _ => WorkloadKind::TcpCrr { request, response },
            })
        }
    }
}

/// iperf3's `-P` limit (`MAX_STREAMS`, src/iperf.h).
const MAX_STREAMS: u32 = 128;
/// iperf3's largest `-l` for TCP (`MAX_BLOCKSIZE`, 1 MiB, src/iperf.h).
const MAX_TCP_WRITE: u32 = 1024 * 1024;
/// A TCP_RR message fits a request/response socket's buffers (`tcp_rmem`'s default, 128 KiB):
/// one write, one read.
const MAX_TCP_MESSAGE: u32 = 128 * 1024;

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
            // TCP segments to the route's MSS: any message size fits.
            WorkloadKind::TcpStream { .. } | WorkloadKind::TcpRr { .. } | WorkloadKind::TcpCrr { .. } => {}
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
fn workload_duration(loc: &Locator, i: usize, w: &scenario::Workload, s: &Scenario) -> Res<Duration> {
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

/// A workload reaches only a Service port of its own protocol (kube-proxy programs each port for
/// its protocol alone).
fn check_protocol(
    loc: &Locator,
    i: usize,
    kind: &WorkloadKind,
    services: &ServiceTable,
    target: Target,
) -> Res<()> {
    let want = if kind.is_tcp() { crate::cluster::Protocol::Tcp } else { crate::cluster::Protocol::Udp };
    let ports: Vec<(usize, usize)> = match target {
        Target::Service { service, port } | Target::NodePort { service, port, .. } => vec![(service, port)],
        Target::AnyService { first, count } => (first..first + count).map(|s| (s, 0)).collect(),
        Target::Pod(_) | Target::External(_) => vec![],
    };
    for (s, p) in ports {
        let svc = &services.services[s];
        let got = svc.ports[p].protocol;
        if got != want {
            return Err(loc.err(
                at!["workloads", i, "to"],
                format!(
                    "Service '{}' port {} is {}, and this workload sends {}; give the port protocol: \"{}\" \
                     (a Service port carries one protocol; Kubernetes allows the same port twice, once per \
                     protocol)",
                    svc.name,
                    svc.ports[p].port,
                    got.id(),
                    want.id(),
                    want.id()
                ),
            ));
        }
    }
    Ok(())
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
        WorkloadKind::TcpStream { .. } | WorkloadKind::TcpRr { .. } | WorkloadKind::TcpCrr { .. } => {
            return Ok(())
        }
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
