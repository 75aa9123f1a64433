//! The NetworkPolicy part of summary.json: what enforces the policies, what the policy engine
//! installed on each node and what its walks cost, and every connection of the workloads with
//! the NetworkPolicy verdict (from the policies alone) next to what the plugin did with it.

use serde::{Deserialize, Serialize};

use crate::run::Simulation;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct PolicySummary {
    /// What enforces NetworkPolicy: "calico-felix-iptables", "weave-npc-iptables",
    /// "cilium-bpf-policymap", or "none" (flannel, macvlan, ipvlan: policies are accepted by
    /// the API and enforced by nothing).
    pub engine: String,
    pub policies: usize,
    pub namespaces: usize,
    pub nodes: Vec<PolicyNode>,
    /// Every distinct connection (source, destination, protocol, port) the workloads open, as
    /// the destination sees it (after Service DNAT).
    pub connections: Vec<PolicyConnection>,
    /// Connections the policies deny that the plugin does not enforce: they go through.
    pub denied_but_not_enforced: usize,
    /// Every `apply_policy` and `delete_policy` change and how long each node took to enforce
    /// it; empty without such changes.
    pub changes: Vec<PolicyChange>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct PolicyChange {
    /// `apply_policy prod/db-from-web` or `delete_policy ...`.
    pub change: String,
    pub at_ns: u64,
    /// From the change until the last node enforced it; `None` if some node had not by the
    /// end of the run (or the plugin has no engine).
    pub enforced_everywhere_ns: Option<u64>,
    pub nodes: Vec<PolicyChangeNode>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct PolicyChangeNode {
    pub node: String,
    /// From the change until the node's agent had written it (watch delay, queueing behind
    /// earlier work, the work itself); `None`: not by the end of the run.
    pub enforced_after_ns: Option<u64>,
    /// The agent's CPU for it.
    pub cpu_ns: u64,
    /// Filter rules (or Cilium policy-map entries) added plus removed, and ipset entries.
    pub rules_changed: usize,
    pub set_entries_changed: usize,
    /// Processes run: iptables-restore/ipset restore (Felix), one per rule or entry (weave-npc).
    pub commands: usize,
    /// Endpoints regenerated (Cilium).
    pub endpoints: usize,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct PolicyNode {
    pub node: String,
    /// Rules in the node's filter table (every chain), and its ipsets and their members.
    pub filter_rules: usize,
    pub ipsets: usize,
    pub ipset_members: usize,
    /// Filter walks of packets from or to a pod with conntrack state NEW (a connection's first
    /// packets; a UDP flow nobody answers stays NEW), the rules and ipset lookups they evaluated on average,
    /// and their CPU per 1,000 walks.
    pub new_walks: u64,
    pub rules_per_new_walk: f64,
    pub ipset_lookups_per_new_walk: f64,
    pub cpu_ns_per_1000_new_walks: u64,
    /// Walks of every other packet (ESTABLISHED, RELATED ...) and their rules on average.
    pub other_walks: u64,
    pub rules_per_other_walk: f64,
    /// Packets the node's policy engine dropped (`policy_denied`), the rules plus ipset (or
    /// map) lookups evaluated before each DROP on average, and their CPU per 1,000 drops.
    pub denied_packets: u64,
    pub evaluations_per_denied_packet: f64,
    pub cpu_ns_per_1000_denied_packets: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct PolicyConnection {
    pub workload: String,
    pub src: String,
    pub dst: String,
    pub protocol: String,
    pub port: u16,
    /// The NetworkPolicy verdict.
    pub allowed: bool,
    /// Which policy and rule allowed it, or which policies isolate it.
    pub why: String,
}

fn per(n: u64, d: u64) -> f64 {
    if d == 0 {
        0.0
    } else {
        n as f64 / d as f64
    }
}

/// `None` when the cluster has no policies and no policy engine programmed anything.
pub(super) fn policy_summary(sim: &Simulation) -> Option<PolicySummary> {
    let w = &sim.world;
    let c = &w.cluster;
    let engine = c.cni.policy_engine();
    if c.policy_catalog.is_empty() && engine.is_none() {
        return None;
    }
    let nodes = (0..c.nodes.len())
        .map(|n| {
            let s = &w.policy_stats[n];
            let table = w.netns[w.nodes[n].ns].filter.as_deref();
            // Cilium: the entries of the policy maps of the node's endpoints.
            let map_entries = w.netns[w.nodes[n].ns].cilium.as_deref().map_or(0, |m| {
                let mut local: Vec<u32> = m.endpoints.values().map(|&(_, id)| id).collect();
                local.sort_unstable();
                local.iter().map(|id| m.policy.policies.get(id).unwrap_or(&m.policy.unrestricted).len()).sum()
            });
            PolicyNode {
                node: c.nodes[n].name.clone(),
                filter_rules: table.map_or(map_entries, |t| t.rule_count()),
                ipsets: table.map_or(0, |t| t.sets.len()),
                ipset_members: table.map_or(0, |t| t.sets.iter().map(|s| s.members().len()).sum()),
                new_walks: s.new_walks,
                rules_per_new_walk: per(s.new_rules, s.new_walks),
                ipset_lookups_per_new_walk: per(s.new_set_lookups, s.new_walks),
                cpu_ns_per_1000_new_walks: (s.new_cpu.as_nanos() * 1000)
                    .checked_div(s.new_walks)
                    .unwrap_or(0),
                other_walks: s.other_walks,
                rules_per_other_walk: per(s.other_rules, s.other_walks),
                denied_packets: s.denied,
                evaluations_per_denied_packet: per(s.denied_evaluations, s.denied),
                cpu_ns_per_1000_denied_packets: (s.denied_cpu.as_nanos() * 1000)
                    .checked_div(s.denied)
                    .unwrap_or(0),
            }
        })
        .collect();
    let flows = if c.policy.policies.is_empty() { Vec::new() } else { c.policy_flows() };
    let connections: Vec<PolicyConnection> = flows
        .iter()
        .map(|f| PolicyConnection {
            workload: c.workloads.get(f.workload).map_or_else(String::new, |w| w.name.clone()),
            src: c.policy_endpoint(f.src).to_string(),
            dst: c.policy_endpoint(f.dst).to_string(),
            protocol: f.protocol.id().to_string(),
            port: f.port,
            allowed: f.verdict.is_allowed(),
            why: f.verdict.explain(&c.policy),
        })
        .collect();
    let denied_but_not_enforced =
        if engine.is_none() { connections.iter().filter(|c| !c.allowed).count() } else { 0 };
    let changes = c
        .changes
        .iter()
        .enumerate()
        .filter(|(_, ch)| {
            use crate::cluster::ChangeKind::{ApplyPolicy, DeletePolicy, LabelPod};
            matches!(ch.what, ApplyPolicy(_) | DeletePolicy(_) | LabelPod(_))
        })
        .map(|(i, ch)| {
            let nodes: Vec<PolicyChangeNode> = w
                .policy_syncs
                .iter()
                .filter(|s| s.change == i)
                .map(|s| PolicyChangeNode {
                    node: c.nodes[s.node].name.clone(),
                    enforced_after_ns: (s.done <= sim.end).then(|| s.done.saturating_since(ch.at).as_nanos()),
                    cpu_ns: s.cpu.as_nanos(),
                    rules_changed: s.rules_changed,
                    set_entries_changed: s.set_entries_changed,
                    commands: s.commands,
                    endpoints: s.endpoints,
                })
                .collect();
            let everywhere = if nodes.is_empty() {
                None
            } else {
                nodes
                    .iter()
                    .map(|n| n.enforced_after_ns)
                    .collect::<Option<Vec<u64>>>()
                    .and_then(|v| v.into_iter().max())
            };
            PolicyChange {
                change: super::bgp::describe_change(sim, i),
                at_ns: ch.at.as_nanos(),
                enforced_everywhere_ns: everywhere,
                nodes,
            }
        })
        .collect();
    Some(PolicySummary {
        changes,
        engine: engine.unwrap_or("none").to_string(),
        policies: c.policy.policies.len(),
        namespaces: c.policy.namespaces.len(),
        nodes,
        connections,
        denied_but_not_enforced,
    })
}
