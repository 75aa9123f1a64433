//! The BGP part of summary.json: Calico's BIRD speakers as the run left them (sessions,
//! messages, tables, CPU), and each period the cluster's routes took to become complete (at the
//! start, after each change), with the datagrams lost meanwhile.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::bgp::State;
use crate::cluster::ChangeKind;
use crate::run::Simulation;

/// BIRD's memory per route it holds, bytes: a `net` (the prefix's table node), an `rte` and a
/// share of its `rta` attribute block (nest/route.h), about 200 B on 64-bit builds; an
/// estimate, as BIRD reports its own use with `show memory`.
const BIRD_BYTES_PER_ROUTE: u64 = 200;
/// BIRD's memory per BGP session: the connection's receive and transmit buffers
/// (`BGP_RX_BUFFER_SIZE`, `BGP_TX_BUFFER_SIZE`, 4 KiB each in BIRD 1.6's proto/bgp/bgp.h) and
/// the protocol and its timers, about 12 KiB; an estimate.
const BIRD_BYTES_PER_SESSION: u64 = 12 * 1024;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct BgpSummary {
    /// "node-to-node mesh" or "route reflectors".
    pub topology: String,
    pub as_number: u32,
    pub reflectors: Vec<String>,
    /// Sessions configured (one per pair of peers) and Established at the end (both ends).
    pub sessions: usize,
    pub sessions_established: usize,
    /// Messages sent by every speaker, by type (OPEN, UPDATE, NOTIFICATION, KEEPALIVE,
    /// ROUTE-REFRESH; a type never sent is left out), and their bytes.
    pub messages: BTreeMap<String, u64>,
    pub message_bytes: u64,
    /// Routes announced and withdrawn in those UPDATEs.
    pub routes_announced: u64,
    pub routes_withdrawn: u64,
    /// CPU time of every BIRD, and of the busiest, ns.
    pub cpu_ns: u64,
    pub max_node_cpu_ns: u64,
    /// The initial convergence ("start": from BIRD's start to every live node with a route to
    /// every block of every other live node), then per change that takes a node's routes away
    /// (power_off, stop_bird) the time until no live node routes through that node any more,
    /// per restart_bird the time until the new BIRD's recovery has ended and its kernel
    /// routes are synced, and per join_node the time until the routes to and from the new
    /// node are complete.
    pub convergence: Vec<ConvergencePeriod>,
    /// What had not converged by the end: "start" or the change, with since when, ns.
    pub unconverged: Vec<(String, u64)>,
    pub nodes: Vec<BgpNode>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ConvergencePeriod {
    /// "start", the change: "power_off node-3", or "routes lost after power_off node-2" (live
    /// nodes lost routes to one another after the start, until they were all back).
    pub cause: String,
    pub from_ns: u64,
    pub to_ns: u64,
    pub duration_ns: u64,
    /// Workload datagrams dropped meanwhile, by reason: of every flow for the start, of the
    /// flows to the node's pods for a change.
    pub drops: BTreeMap<String, u64>,
    /// A join_node: from each other live node, when the new node's pods became reachable
    /// (it had a route to each of the node's blocks), after the join.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reached: Option<Reached>,
}

/// How long after a node joined its pods became reachable from the other live nodes.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Reached {
    /// Live nodes with a route to each of the new node's blocks by the period's end.
    pub peers: usize,
    pub first_ns: u64,
    /// The lower median.
    pub median_ns: u64,
    pub last_ns: u64,
}

impl Reached {
    /// Empty `reached` (no join, or no other live node): `None`.
    fn of(reached: &[crate::time::Duration]) -> Option<Reached> {
        let mut d: Vec<u64> = reached.iter().map(|r| r.as_nanos()).collect();
        d.sort_unstable();
        Some(Reached {
            peers: d.len(),
            first_ns: *d.first()?,
            median_ns: d[(d.len() - 1) / 2],
            last_ns: *d.last()?,
        })
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct BgpNode {
    pub node: String,
    pub router_id: String,
    pub route_reflector: bool,
    /// BIRD runs (not stopped) on a node that is on.
    pub running: bool,
    pub sessions: usize,
    pub established: usize,
    /// Routes in BIRD's table (its own blocks and every path received) and routes it gave the
    /// kernel (`proto bird`).
    pub rib_routes: usize,
    pub fib_routes: usize,
    pub messages_sent: u64,
    pub messages_received: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub kernel_routes_added: u64,
    pub kernel_routes_removed: u64,
    pub cpu_ns: u64,
    /// BIRD's memory, estimated from the routes and sessions it holds.
    pub memory_bytes: u64,
}

pub(super) fn bgp_summary(sim: &Simulation) -> Option<BgpSummary> {
    let cp = sim.bgp.as_ref()?;
    let c = &sim.world.cluster;
    let cfg = c.bgp.as_ref()?;
    let mut messages: BTreeMap<String, u64> = BTreeMap::new();
    let (mut bytes, mut announced, mut withdrawn) = (0, 0, 0);
    let mut nodes = Vec::new();
    let mut half_sessions = 0;
    let mut established_pairs = 0;
    let by_id: BTreeMap<std::net::Ipv4Addr, usize> =
        cp.birds.iter().enumerate().map(|(i, b)| (b.speaker.config.router_id, i)).collect();
    for b in &cp.birds {
        let s = &b.speaker;
        let mut sent = 0;
        let mut received = 0;
        let (mut bs, mut br) = (0, 0);
        for p in &s.peers {
            for (k, kind) in crate::bgp::KINDS.iter().enumerate() {
                if p.stats.sent[k] > 0 {
                    *messages.entry(kind.name().to_string()).or_default() += p.stats.sent[k];
                }
            }
            sent += p.stats.sent.iter().sum::<u64>();
            received += p.stats.received.iter().sum::<u64>();
            bs += p.stats.bytes_sent;
            br += p.stats.bytes_received;
            announced += p.stats.routes_sent;
            withdrawn += p.stats.withdrawals_sent;
            half_sessions += 1;
            if p.state == State::Established {
                // Counted from the lower address's side, when the other end agrees.
                let other = by_id.get(&p.config.addr).map(|&i| &cp.birds[i]);
                let both = other.is_some_and(|o| {
                    o.speaker
                        .peers
                        .iter()
                        .any(|q| q.config.addr == s.config.router_id && q.state == State::Established)
                });
                if both && s.config.router_id < p.config.addr {
                    established_pairs += 1;
                }
            }
        }
        bytes += bs;
        let rib = s.rib_len();
        nodes.push(BgpNode {
            node: c.nodes[b.node].name.clone(),
            router_id: s.config.router_id.to_string(),
            route_reflector: s.config.cluster_id.is_some(),
            running: s.running && !b.dead,
            sessions: s.peers.len(),
            established: s.peers.iter().filter(|p| p.state == State::Established).count(),
            rib_routes: rib,
            fib_routes: s.fib.len(),
            messages_sent: sent,
            messages_received: received,
            bytes_sent: bs,
            bytes_received: br,
            kernel_routes_added: b.routes_added,
            kernel_routes_removed: b.routes_removed,
            cpu_ns: b.cpu.as_nanos(),
            memory_bytes: rib as u64 * BIRD_BYTES_PER_ROUTE + s.peers.len() as u64 * BIRD_BYTES_PER_SESSION,
        });
    }
    let convergence = cp
        .convergences
        .iter()
        .map(|v| ConvergencePeriod {
            cause: match (v.change, v.lost) {
                (_, true) => routes_lost(sim, v.from),
                (None, false) => "start".into(),
                (Some(i), false) => describe_change(sim, i),
            },
            from_ns: v.from.as_nanos(),
            to_ns: v.to.as_nanos(),
            duration_ns: (v.to - v.from).as_nanos(),
            drops: v.drops.clone(),
            reached: Reached::of(&v.reached),
        })
        .collect();
    Some(BgpSummary {
        topology: if cfg.reflectors.is_empty() { "node-to-node mesh" } else { "route reflectors" }.into(),
        as_number: cfg.as_number,
        reflectors: cfg.reflectors.iter().map(|&n| c.nodes[n].name.clone()).collect(),
        sessions: half_sessions / 2,
        sessions_established: established_pairs,
        messages,
        message_bytes: bytes,
        routes_announced: announced,
        routes_withdrawn: withdrawn,
        cpu_ns: nodes.iter().map(|n| n.cpu_ns).sum(),
        max_node_cpu_ns: nodes.iter().map(|n| n.cpu_ns).max().unwrap_or(0),
        convergence,
        unconverged: cp
            .incomplete_since()
            .map(|t| ("start".to_string(), t.as_nanos()))
            .into_iter()
            .chain(cp.lost_since().map(|t| (routes_lost(sim, t), t.as_nanos())))
            .chain(cp.unconverged().into_iter().map(|(i, t)| (describe_change(sim, i), t.as_nanos())))
            .collect(),
        nodes,
    })
}

/// "routes lost after power_off node-2": routes between live nodes lost at `at`, named after
/// the last change before (every reflector powered off, a BIRD restarted without graceful
/// restart).
fn routes_lost(sim: &Simulation, at: crate::time::Instant) -> String {
    let last = sim.world.cluster.changes.iter().rposition(|c| c.at <= at);
    match last {
        Some(i) => format!("routes lost after {}", describe_change(sim, i)),
        None => "routes lost".into(),
    }
}

/// "power_off node-3", "stop_bird node-2", "delete_pod web-1".
pub fn describe_change(sim: &Simulation, i: usize) -> String {
    let c = &sim.world.cluster;
    match c.changes[i].what {
        ChangeKind::DeletePod(p) => format!("delete_pod {}", c.pods[p].name),
        ChangeKind::PowerOff(n) => format!("power_off {}", c.nodes[n].name),
        ChangeKind::StopBird(n) => format!("stop_bird {}", c.nodes[n].name),
        ChangeKind::RestartBird(n) => format!("restart_bird {}", c.nodes[n].name),
        ChangeKind::JoinNode(n) => format!("join_node {}", c.nodes[n].name),
        ChangeKind::ApplyPolicy(p) => {
            format!("apply_policy {}/{}", c.policy_catalog[p].namespace, c.policy_catalog[p].name)
        }
        ChangeKind::DeletePolicy(p) => {
            format!("delete_policy {}/{}", c.policy_catalog[p].namespace, c.policy_catalog[p].name)
        }
        ChangeKind::LabelPod(i) => {
            let (pod, labels) = &c.label_changes[i];
            let text: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!("label_pod {} {}", c.pods[*pod].name, text.join(","))
        }
    }
}
