//! Second step of loading: checks what a parsed [`Scenario`] means as a whole and turns it into
//! a [`Cluster`], one step per part of the cluster, each in a file of its own: the address plan
//! (`network`), nodes, pods and hosts outside the cluster (`nodes`), Services and the proxy mode
//! (`services`), workloads into flows (`workloads`), the sweep (`sweep`), and namespaces and
//! NetworkPolicy objects (`policy`). This file runs the steps in order and holds the checks
//! they share (names, MTUs, rates).
//!
//! Each check reports the first problem at the position of the value that causes it, found in
//! the text by `locate`. Nothing is clamped or corrected silently.

use super::locate::{self, Seg};
use super::{Overrides, Scenario};
use crate::cluster::{Cluster, Cni, CniOptions};
use crate::error::ScenarioError;
use crate::time::Duration;
use crate::units::Bandwidth;

/// Longest run a scenario may ask for.
const MAX_DURATION: Duration = Duration::from_secs(3600);
const MAX_NAME_LEN: usize = 63;

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

// The steps, declared below `at!` so that they can use it (a macro is in scope only after its
// definition).
mod bgp;
mod network;
mod nodes;
mod policy;
mod services;
mod sweep;
mod workloads;

use bgp::resolve_bgp;
use network::{resolve_network, resolve_underlay};
use nodes::{resolve_changes, resolve_externals, resolve_nodes, resolve_pods};
use policy::{resolve_namespaces, resolve_policies};
use services::{resolve_proxy, resolve_services};
use sweep::check_sweep;
use workloads::resolve_workloads;

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

pub(crate) fn resolve(mut s: Scenario, loc: &Locator, overrides: &Overrides) -> Res<Cluster> {
    sweep::apply_overrides(&mut s, overrides);
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
    let namespaces = resolve_namespaces(loc, &s)?;
    let pods = resolve_pods(loc, &s, &nodes, &network, chosen.cni, &cni_options)?;
    let proxy = resolve_proxy(loc, &s, overrides)?;
    let (services, generated) = resolve_services(loc, &s, &network, &pods, overrides)?;
    let externals = resolve_externals(loc, &s, &network, &nodes, &underlay.fabric)?;
    let workloads =
        resolve_workloads(loc, &s, &nodes, &pods, chosen, &cni_options, &services, generated, &externals)?;
    let catalog = resolve_policies(loc, &s, &namespaces)?;
    let mut label_changes = Vec::new();
    let changes = resolve_changes(loc, &s, &nodes, &pods, &catalog, &mut label_changes)?;
    check_joining_clients(loc, &workloads, &changes, &nodes, &pods)?;
    let bgp = resolve_bgp(loc, &s, chosen, &nodes, &underlay.fabric)?;
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
    // In force at the start: every policy no change creates later.
    let policies: Vec<crate::policy::NetworkPolicy> = catalog
        .iter()
        .enumerate()
        .filter(|(i, _)| !changes.iter().any(|c| c.what == crate::cluster::ChangeKind::ApplyPolicy(*i)))
        .map(|(_, p)| p.clone())
        .collect();
    let compare = s.compare.as_ref().map(|c| super::compare::resolve(loc.text, loc.path, c)).transpose()?;
    Ok(Cluster {
        sweep,
        compare,
        externals,
        proxy,
        services,
        generated,
        changes,
        bgp,
        conntrack_max,
        masquerade_random_fully: s.masquerade_random_fully,
        nat_port_rovers: s.nat_port_rovers,
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
        policy: crate::policy::PolicyWorld { namespaces, policies },
        policy_catalog: catalog,
        label_changes,
    })
}

/// A node that joins later runs nothing before: a workload with clients on it starts after.
fn check_joining_clients(
    loc: &Locator,
    workloads: &[crate::cluster::Workload],
    changes: &[crate::cluster::Change],
    nodes: &[crate::cluster::NodeSpec],
    pods: &[crate::cluster::PodSpec],
) -> Res<()> {
    for c in changes {
        let crate::cluster::ChangeKind::JoinNode(n) = c.what else { continue };
        for (i, w) in workloads.iter().enumerate() {
            let on_node = w
                .flows
                .iter()
                .any(|(from, _)| matches!(from, crate::cluster::Client::Pod(p) if pods[*p].node == n));
            if on_node && w.start <= c.at {
                return Err(loc.err(
                    at!["workloads", i, "start"],
                    format!(
                        "workload '{}' has clients on node '{}', which joins at {}, but starts at {}; \
                         start it after the join (or pick clients on other nodes)",
                        w.name,
                        nodes[n].name,
                        c.at - crate::time::Instant::ZERO,
                        w.start - crate::time::Instant::ZERO
                    ),
                ));
            }
        }
    }
    Ok(())
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
