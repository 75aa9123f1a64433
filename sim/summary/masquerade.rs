//! The `masquerade` section of summary.json: source NAT at POSTROUTING and the connections
//! it lost at confirmation (`insert_failed`).

use serde::{Deserialize, Serialize};

use crate::run::Simulation;

/// MASQUERADE over the run, summed over nodes, and per node where it ran.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct MasqueradeSummary {
    /// New connections MASQUERADE took (kube-proxy's KUBE-POSTROUTING, the CNI's rule for
    /// traffic leaving the cluster), Cilium's BPF SNAT left out.
    pub connections: u64,
    /// Of them, kept their own source port (a rule without `--random-fully`, the port free).
    pub source_port_kept: u64,
    /// Tuples looked up in the conntrack table per connection, mean.
    pub tuples_tried_mean: f64,
    /// `conntrack -S` `insert_failed`: connections dropped at confirmation, another one
    /// holding their reply tuple; split by why.
    pub insert_failed: u64,
    /// The port was chosen while the connection holding it, on another core, was not yet
    /// confirmed.
    pub insert_failed_race: u64,
    /// Every port tried was in use (the kernel tries at most 248, from random offsets).
    pub insert_failed_no_port: u64,
    pub nodes: Vec<MasqueradeNode>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct MasqueradeNode {
    pub node: String,
    pub connections: u64,
    pub insert_failed: u64,
    /// Most conntrack entries the node held at once.
    pub conntrack_peak_entries: usize,
}

/// `None` when no node masqueraded a connection.
pub fn masquerade_summary(sim: &Simulation) -> Option<MasqueradeSummary> {
    let ps = &sim.world.proxies;
    let m =
        |f: &dyn Fn(&crate::proxy::node::MasqStats) -> u64| ps.iter().map(|p| f(&p.stats.masquerade)).sum();
    let connections = m(&|s| s.connections);
    if connections == 0 {
        return None;
    }
    let nodes = ps
        .iter()
        .enumerate()
        .filter(|(_, p)| p.stats.masquerade.connections > 0)
        .map(|(i, p)| MasqueradeNode {
            node: sim.world.cluster.nodes[i].name.clone(),
            connections: p.stats.masquerade.connections,
            insert_failed: p.conntrack.insert_failed,
            conntrack_peak_entries: p.conntrack.peak,
        })
        .collect();
    Some(MasqueradeSummary {
        connections,
        source_port_kept: m(&|s| s.source_port_kept),
        tuples_tried_mean: m(&|s| s.tuples_tried) as f64 / connections as f64,
        insert_failed: ps.iter().map(|p| p.conntrack.insert_failed).sum(),
        insert_failed_race: m(&|s| s.insert_failed_race),
        insert_failed_no_port: m(&|s| s.insert_failed_no_port),
        nodes,
    })
}
