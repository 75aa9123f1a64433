//! NetworkPolicy changes during a run (`apply_policy`, `delete_policy`, `label_pod`): each node's policy
//! agent (Felix, weave-npc, cilium-agent) gets the API server's watch event, works out what
//! to change, and writes it into the kernel; until it has, the node enforces the old
//! policies. Connections already established stay as they were (every engine accepts
//! established traffic before any policy rule, and Cilium's policy conntrack keeps them).
//!
//! The work is what the change takes on that node, measured against what the node has:
//! - Felix: one apply (`felix_policy_apply`), the iptables-restore lines of the rules that
//!   change (`iptables_restore_line`), the kernel replacing the table (`iptables_replace_rule`
//!   per rule in it, iptables-legacy) and one netlink object per ipset entry that changes
//!   (Felix writes only the chains and sets that differ, `felix/iptables/table.go`,
//!   `felix/ipsets`).
//! - weave-npc: one `iptables` or `ipset` command per rule, set and entry that changes, run in
//!   the informer's handler (`npc/rule.go`, `npc/selector.go`: `ipt.Append`, `ips.AddEntry`);
//!   each `iptables` command reads and replaces the whole table (iptables-legacy).
//! - cilium-agent: the policy importer's batch (the next 10 ms tick), then one endpoint
//!   regeneration per local endpoint whose policy map changes (`cilium_endpoint_regeneration`),
//!   one `bpf_map_update` per entry added or removed.
//!
//! The agent's work waits behind its previous work, and is charged to the agent, not to the
//! data plane's cores (the agents are processes of their own).

use super::{Event, Simulation};
use crate::cluster::{ChangeKind, Cluster};
use crate::cni::NodePolicy;
use crate::policy::PolicyWorld;
use crate::time::{Duration, Instant};
use crate::world::{PolicySync, World};

/// cilium-agent's policy importer batch interval.
const CILIUM_POLICY_BATCH: Duration = Duration::from_millis(10);

/// The cluster as the policy agents see it after the changes up to and including `upto`
/// (indices into `Cluster::changes`, in order): the policies in force, the pods' labels.
pub fn cluster_after(c: &Cluster, upto: usize) -> Cluster {
    let mut active: Vec<bool> = (0..c.policy_catalog.len())
        .map(|i| !c.changes.iter().any(|ch| ch.what == ChangeKind::ApplyPolicy(i)))
        .collect();
    let mut after = c.clone();
    for ch in &c.changes[..=upto] {
        match ch.what {
            ChangeKind::ApplyPolicy(i) => active[i] = true,
            ChangeKind::DeletePolicy(i) => active[i] = false,
            ChangeKind::LabelPod(i) => {
                let (pod, labels) = &c.label_changes[i];
                after.pods[*pod].labels = labels.clone();
            }
            _ => {}
        }
    }
    after.policy = PolicyWorld {
        namespaces: c.policy.namespaces.clone(),
        policies: c.policy_catalog.iter().zip(&active).filter(|(_, &a)| a).map(|(p, _)| p.clone()).collect(),
    };
    after
}

/// The agent's work to go from what node `n` has to `new`, and its CPU.
fn work(w: &World, n: usize, new: &NodePolicy) -> (Duration, PolicySync) {
    let costs = &w.costs;
    let ns = w.nodes[n].ns;
    let mut s = PolicySync {
        change: 0,
        node: n,
        start: Instant::ZERO,
        done: Instant::ZERO,
        cpu: Duration::ZERO,
        rules_changed: 0,
        set_entries_changed: 0,
        commands: 0,
        endpoints: 0,
    };
    let cpu = match new {
        NodePolicy::Filter(table) => {
            let old = w.netns[ns].filter.as_deref().cloned().unwrap_or_default();
            let d = old.diff(table);
            s.rules_changed = d.rules_added + d.rules_removed;
            s.set_entries_changed = d.set_entries_changed;
            let rules = table.rule_count() as u64;
            if matches!(w.cluster.cni, crate::cluster::Cni::WeaveSleeve | crate::cluster::Cni::WeaveFastdp) {
                // One command per rule added or removed, per set created or destroyed, per entry.
                let iptables = (d.rules_added + d.rules_removed) as u64;
                let ipset = (d.sets_created + d.sets_deleted + d.set_entries_changed) as u64;
                s.commands = (iptables + ipset) as usize;
                costs.weave_npc_command * (iptables + ipset)
                    + costs.iptables_replace_rule * (rules * iptables)
            } else if d.is_empty() {
                Duration::ZERO
            } else {
                let lines = (d.rules_added + d.rules_removed + d.chains_touched + d.chains_created) as u64;
                s.commands = 1 + usize::from(d.set_entries_changed + d.sets_created + d.sets_deleted > 0);
                costs.felix_policy_apply
                    + costs.iptables_restore_line * lines
                    + costs.iptables_replace_rule * rules
                    + costs.netlink_object * (d.set_entries_changed + d.sets_created + d.sets_deleted) as u64
            }
        }
        NodePolicy::Cilium { maps, pod_identity } => {
            let Some(local) = w.netns[ns].cilium.as_deref() else { return (Duration::ZERO, s) };
            // Each local endpoint: its map entries before (under its identity then) and after
            // (under its identity now); an endpoint whose identity moved is regenerated too.
            let mut entries = 0;
            let key = |m: &crate::world::cilium_policy::PolicyMaps, id| -> std::collections::BTreeSet<_> {
                m.policy(id).sorted().into_iter().map(|(k, e)| (k, e.deny)).collect()
            };
            for (p, pod) in w.cluster.pods.iter().enumerate().filter(|(_, p)| p.node == n) {
                let Some(&(_, old_id)) = local.endpoints.get(&pod.ip) else { continue };
                let new_id = pod_identity[p];
                let changed = key(&local.policy, old_id).symmetric_difference(&key(maps, new_id)).count();
                if changed > 0 || old_id != new_id {
                    s.endpoints += 1;
                    entries += changed;
                }
            }
            // A label change moves an identity in every node's ipcache.
            let moved = w.cluster.pods.iter().enumerate().filter(|(p, q)| {
                local.policy.ipcache.identity(n, q.ip) != maps.ipcache.identity(n, w.cluster.pods[*p].ip)
            });
            entries += moved.count();
            s.rules_changed = entries;
            costs.cilium_endpoint_regeneration * s.endpoints as u64 + costs.bpf_map_update * entries as u64
        }
    };
    s.cpu = cpu;
    (cpu, s)
}

impl Simulation {
    /// A policy is created or deleted at `t`: every node's agent works out and writes the
    /// change once the watch event has reached it and its earlier work is done.
    pub(super) fn policy_change(&mut self, t: Instant, index: usize) {
        let after = cluster_after(&self.world.cluster, index);
        // Cilium's identities are cluster-wide: the ones allocated so far keep their numbers.
        let allocated = self.world.cilium_allocated.clone();
        let Some(states) = crate::cni::policy_states(&after, &after.policy, allocated.as_deref()) else {
            return;
        };
        if let Some(NodePolicy::Cilium { maps, .. }) = states.first() {
            self.world.cilium_allocated = Some(maps.clone());
        }
        let version = index + 1;
        for (n, state) in states.into_iter().enumerate() {
            if self.world.nodes[n].down {
                continue;
            }
            let (cpu, mut sync) = work(&self.world, n, &state);
            let arrived = t + self.world.costs.policy_watch_delay;
            let arrived = match state {
                // The policy importer buffers updates and emits them on a free-running 10 ms
                // ticker (pkg/policy/cell/policy_importer.go, `stream.Buffer(..., 10ms, ...)`):
                // the next tick of one started with the agent, at 0.
                NodePolicy::Cilium { .. } => {
                    let tick = CILIUM_POLICY_BATCH.as_nanos();
                    Instant::from_nanos(arrived.as_nanos().div_ceil(tick) * tick)
                }
                NodePolicy::Filter(_) => arrived,
            };
            let agent = &mut self.world.policy_agents[n];
            let start = agent.busy_until.max(arrived);
            let done = start + cpu;
            agent.busy_until = done;
            agent.cpu += cpu;
            (sync.change, sync.start, sync.done) = (index, start, done);
            self.world.policy_syncs.push(sync);
            self.queue.schedule(done, Event::PolicySync { node: n, version, state: Box::new(state) });
        }
    }

    /// Node `node`'s agent has written policy version `version`: it is enforced from now.
    pub(super) fn policy_sync_done(&mut self, node: usize, version: usize, state: NodePolicy) {
        let agent = &mut self.world.policy_agents[node];
        if version <= agent.installed {
            return;
        }
        agent.installed = version;
        let ns = self.world.nodes[node].ns;
        match state {
            NodePolicy::Filter(table) => self.world.netns[ns].filter = Some(table),
            NodePolicy::Cilium { maps, pod_identity } => {
                if let Some(local) = self.world.netns[ns].cilium.as_deref_mut() {
                    local.policy = maps;
                    for (p, pod) in self.world.cluster.pods.iter().enumerate() {
                        if let Some(ep) = local.endpoints.get_mut(&pod.ip) {
                            ep.1 = pod_identity[p];
                        }
                    }
                }
            }
        }
    }
}
