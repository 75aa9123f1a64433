//! `cnisim sweep`: run one scenario at every value of a parameter, under every CNI and proxy
//! mode listed, and collect how the Service path and the data path scale.
//!
//! Each point is a full simulation of the scenario with the parameter's field
//! (`generated_services.count` or `.endpoints`, every workload's payload, the node count,
//! `pods_per_node`) set to the value and the CNI and proxy mode replaced: rules are built and
//! walked as in any run. Points run in parallel on a rayon pool; results are put back in point
//! order, so the output does not depend on scheduling. Only [`SweepResult::run`] holds
//! wall-clock values.
//!
//! A point the loader refuses (a payload above one CNI's pod MTU) stays in the sweep as
//! "cannot be set up" with the loader's message, as `compare` keeps its impossible
//! combinations; a value that no listed CNI and proxy can be set up with stops the sweep
//! before anything runs.

use std::collections::BTreeMap;
use std::path::Path;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::cluster::{BgpTopology, Cluster, Cni, Parameter, ProxyMode};
use crate::error::Error;
use crate::run::Simulation;
use crate::scenario::{self, Overrides};
use crate::summary::{RunInfo, Summary};

/// Which part of a sweep a run did: points whose index (in value-major order) is
/// `index - 1` modulo `count`.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Shard {
    /// 1-based.
    pub index: usize,
    pub count: usize,
}

impl std::str::FromStr for Shard {
    type Err = String;
    /// `"2/4"`.
    fn from_str(s: &str) -> Result<Shard, String> {
        let bad = || format!("--shard '{s}' is not I/N with 1 <= I <= N, e.g. 2/4");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count) = (i.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
        if index == 0 || index > count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

/// One simulated point: a CNI and a proxy mode at one parameter value. The Service figures
/// are 0 when the run has no Services, and every figure is 0 when the point cannot be set up
/// (`invalid`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SweepPoint {
    /// Position in the whole sweep (value-major, then CNI, then proxy order).
    pub index: usize,
    pub proxy: String,
    /// The parameter's value at this point.
    pub value: u32,
    /// Services in the cluster (generated ones and the scenario's own).
    pub services: usize,
    pub endpoints: usize,
    /// Rules (or map entries) installed on the node with the most.
    pub rules_installed: usize,
    /// Kernel memory of those rules, bytes.
    pub rules_memory_bytes: usize,
    /// Rules evaluated per new connection to a Service: mean and worst.
    pub rules_evaluated_mean: f64,
    pub rules_evaluated_worst: u32,
    /// Rules evaluated per new connection of any kind (pod-to-pod ones too), mean.
    pub rules_evaluated_all_mean: f64,
    /// Hash lookups per new connection to a Service, mean.
    pub lookups_mean: f64,
    /// One-way latency of a connection's first datagram to a Service, and of later ones, ns.
    pub first_packet_p50_ns: u64,
    pub first_packet_mean_ns: u64,
    pub established_p50_ns: u64,
    pub established_mean_ns: u64,
    /// Kernel CPU per 1,000 new connections to Services (rules, lookups, conntrack, NAT), ns.
    pub cpu_ns_per_1000_new_connections: f64,
    /// Userspace proxy CPU per 1,000 datagrams delivered (userspace mode; 0 otherwise), ns.
    pub userspace_cpu_ns_per_1000_datagrams: f64,
    /// Longest time from the scenario's change to rules in place on a node, ns.
    pub sync_ns_max: Option<u64>,
    pub new_connections: u64,
    pub translated: u64,
    pub sent: u64,
    pub delivered: u64,
    /// What could not be set up in this point's run (as the report's warnings).
    pub warnings: Vec<String>,
    pub cni: String,
    /// Set when the scenario does not resolve at this point: the loader's message.
    pub invalid: Option<String>,
    /// The data path's figures; `None` exactly when `invalid` is set.
    pub data_plane: Option<DataPlane>,
    /// The NetworkPolicy engine's figures; `None` when the run had no policy engine.
    #[serde(default)]
    pub policy: Option<PolicyPoint>,
    /// The BGP topology this point ran (`sweep.bgp`); `None` when the sweep does not vary it.
    #[serde(default)]
    pub topology: Option<String>,
    /// The BGP control plane's figures; `None` when the run simulated no BGP.
    #[serde(default)]
    pub bgp: Option<BgpPoint>,
}

/// A point's BGP figures (summary.json's `bgp`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct BgpPoint {
    pub topology: String,
    pub sessions: usize,
    pub sessions_established: usize,
    /// Messages every speaker sent, all types, and their bytes; UPDATEs among them.
    pub messages: u64,
    pub message_bytes: u64,
    pub updates: u64,
    /// From BIRD's start to every live node's kernel routes complete, ns; `None`: not by the end.
    pub convergence_ns: Option<u64>,
    /// After the scenario's first change that takes a node's routes away (a power-off, BIRD
    /// stopped), until no live node routes through it, ns, and the workload datagrams to that
    /// node lost meanwhile; `None` without such a change or when it did not converge.
    pub reconvergence_ns: Option<u64>,
    pub reconvergence_drops: u64,
    /// BIRD's CPU and estimated memory on the node where they are largest, and CPU over
    /// every node, ns and bytes.
    pub cpu_ns_max: u64,
    pub cpu_ns: u64,
    pub memory_bytes_max: u64,
    /// Routes in the largest BIRD table (RIB) and kernel (FIB).
    pub rib_routes_max: usize,
    pub fib_routes_max: usize,
}

/// A point's NetworkPolicy figures (summary.json's `policy`, over all nodes).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct PolicyPoint {
    pub engine: String,
    pub policies: usize,
    /// Filter rules (or policy-map entries) on the node that has the most.
    pub installed_max: usize,
    /// Rules evaluated plus ipset or map lookups, per walk of a packet in conntrack state NEW.
    pub evaluations_per_new_walk: f64,
    /// CPU of those walks, per 1,000.
    pub cpu_ns_per_1000_new_walks: u64,
    pub new_walks: u64,
    pub denied_packets: u64,
    /// Rules plus lookups evaluated before a DROP, on average, and their CPU per 1,000 drops.
    pub evaluations_per_denied_packet: f64,
    pub cpu_ns_per_1000_denied_packets: u64,
    /// The first policy change's time to enforcement on every node, ns; `None` without a
    /// policy change (or not enforced everywhere by the end of the run).
    pub update_ns: Option<u64>,
}

/// What a point's run says about the data path, from its summary.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct DataPlane {
    /// The smallest MTU of any pod's `eth0`.
    pub pod_mtu: u32,
    /// Payload delivered per second, every flow together, bit/s.
    pub throughput_bps: f64,
    /// delivered / sent * 100, all flows; `None` when nothing was sent.
    pub delivered_pct: Option<f64>,
    /// CPU served on every node (kernel and userspace), ns.
    pub cpu_ns: u64,
    /// The summary's `totals.cpu_ns_per_datagram`: the CPU of the chains that carried the
    /// workloads' datagrams per datagram delivered; `None` when nothing was delivered.
    pub cpu_ns_per_datagram: Option<f64>,
    /// `totals.cpu_by_step` / delivered, ns: adds up to `cpu_ns` / delivered (all of the nodes'
    /// CPU, ARP and other work outside the flows' chains too, so a little more than
    /// `cpu_ns_per_datagram`).
    pub cpu_ns_per_datagram_by_step: BTreeMap<String, f64>,
    /// Flows between pods on two nodes.
    pub cross_node_flows: usize,
    /// The first cross-node flow's first datagram: its frame on the client pod's `eth0`, and
    /// what the CNI adds to it on the node's NIC (bytes, and % of the pod frame). `None`
    /// without a cross-node flow whose first datagram was traced (the trace is on for every
    /// sweep but a services/endpoints one on the scenario's own CNI).
    pub pod_frame_bytes: Option<u64>,
    pub encap_overhead_bytes: Option<i64>,
    pub encap_overhead_pct: Option<f64>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SweepResult {
    pub scenario: String,
    pub description: String,
    pub cni: String,
    pub parameter: Parameter,
    pub values: Vec<u32>,
    pub proxies: Vec<String>,
    /// The CNIs every value ran under (the scenario's `cni` alone unless `sweep.cnis` lists
    /// others).
    pub cnis: Vec<String>,
    /// The BGP topologies every value ran under (`sweep.bgp`; empty: the file's own).
    #[serde(default)]
    pub bgp_topologies: Vec<String>,
    /// In (value, CNI, proxy, topology) order.
    pub points: Vec<SweepPoint>,
    /// Set when this is one shard of the sweep (`--shard`); `cnisim merge` joins them.
    pub shard: Option<Shard>,
    /// Points in the whole sweep.
    pub total_points: usize,
    /// Wall-clock facts (the only non-deterministic part).
    pub run: SweepRun,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SweepRun {
    pub cnisim_version: String,
    pub wall_seconds: f64,
    pub threads: usize,
}

impl SweepResult {
    /// `sweep.json` text.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a SweepResult always serialises") + "\n"
    }
}

/// Runs every point of the sweep `path` declares. `threads`: rayon workers (default: all
/// cores). `progress`: show a progress bar on stderr.
pub fn run(
    path: &Path,
    threads: Option<usize>,
    progress: bool,
    shard: Option<Shard>,
) -> Result<SweepResult, Error> {
    let text = scenario::read_text(path)?;
    let shown = path.display().to_string();
    let base = scenario::load_str_with(&text, &shown, &Overrides::default())?;
    let Some(spec) = base.sweep.clone() else {
        return Err(Error::Usage(format!(
            "{shown} has no sweep section; add e.g. sweep: (parameter: \"services\", values: [10, 100, 1000])"
        )));
    };
    let cnis: Vec<Cni> = if spec.cnis.is_empty() { vec![base.cni] } else { spec.cnis.clone() };
    let topologies: Vec<Option<BgpTopology>> =
        if spec.bgp.is_empty() { vec![None] } else { spec.bgp.iter().copied().map(Some).collect() };
    let mut all: Vec<Point> = Vec::new();
    for &v in &spec.values {
        for &c in &cnis {
            for &m in &spec.proxies {
                all.extend(topologies.iter().map(|&t| (v, c, m, t)));
            }
        }
    }
    let total_points = all.len();
    let (indices, points): (Vec<usize>, Vec<Point>) = all
        .iter()
        .copied()
        .enumerate()
        .filter(|(i, _)| shard.is_none_or(|s| i % s.count == s.index - 1))
        .unzip();
    let load = |&(v, cni, mode, bgp): &Point| {
        let mut o = Overrides { proxy: Some(mode), cni: Some(cni), bgp, ..Default::default() };
        match spec.parameter {
            Parameter::Services => o.generated_count = Some(v),
            Parameter::Endpoints => o.generated_endpoints = Some(v),
            Parameter::Payload => o.payload = Some(v),
            Parameter::Nodes => o.node_count = Some(v),
            Parameter::PodsPerNode => o.pods_per_node = Some(v),
            Parameter::Policies => o.generated_policies = Some(v),
        }
        scenario::load_str_with(&text, &shown, &o)
    };
    // Every point resolves (or is recorded as impossible here) before any runs. A value that
    // no point of the whole sweep can be set up with is an error in the file: it fails fast,
    // with its position.
    let mut loaded: Vec<Result<Cluster, String>> = Vec::with_capacity(points.len());
    let mut value_works: BTreeMap<u32, bool> = BTreeMap::new();
    for p in &points {
        match load(p) {
            Ok(c) => {
                value_works.insert(p.0, true);
                loaded.push(Ok(c));
            }
            Err(e) => {
                let works = *value_works
                    .entry(p.0)
                    .or_insert_with(|| all.iter().filter(|q| q.0 == p.0 && q != &p).any(|q| load(q).is_ok()));
                if !works {
                    return Err(e.into());
                }
                loaded.push(Err(e.to_string()));
            }
        }
    }
    let clusters: Vec<&Cluster> = loaded.iter().filter_map(|c| c.as_ref().ok()).collect();
    // The first datagram's trace gives the encapsulation overhead; a Service sweep on the
    // scenario's own CNI does not need it.
    let trace_first = !spec.parameter.is_service() || !spec.cnis.is_empty();
    // The points running at once share the memory: the largest ones, one per thread.
    let workers = threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let mut sizes: Vec<crate::estimate::Estimate> =
        clusters.iter().map(|&c| crate::estimate::estimate(c, false)).collect();
    sizes.sort_by_key(|e| std::cmp::Reverse(e.total));
    if let Some(largest) = sizes.first() {
        let at_once = sizes.iter().take(workers).fold(0u64, |t, e| t.saturating_add(e.total));
        let needs = format!(
            "about {} at once: its {} largest points run together on {workers} threads, the largest {} \
             (--jobs 1 runs one point at a time)",
            crate::memory::fmt_bytes(at_once),
            workers.min(sizes.len()),
            largest.describe()
        );
        crate::estimate::check(&format!("the sweep of {shown}"), at_once, &needs)?;
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.unwrap_or(0))
        .build()
        .map_err(|e| Error::Usage(format!("cannot start {threads:?} worker threads: {e}")))?;
    let bar = if progress {
        let b = indicatif::ProgressBar::new(points.len() as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} points {msg}")
                .expect("static template")
                .progress_chars("=> "),
        );
        b
    } else {
        indicatif::ProgressBar::hidden()
    };
    let wall = std::time::Instant::now();
    // Largest points first: the slowest runs start early and the pool stays busy.
    let mut order: Vec<usize> = (0..points.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(points[i].0));
    let mut results: Vec<(usize, Result<SweepPoint, Error>)> = pool.install(|| {
        order
            .par_iter()
            .map(|&i| {
                let (value, cni, proxy, topology) = points[i];
                let r = match &loaded[i] {
                    Err(message) => Ok(unset(indices[i], points[i], message.clone())),
                    Ok(c) => {
                        let mut sim = Simulation::new(c);
                        sim.trace_first = trace_first;
                        sim.run().map(|()| {
                            let s = Summary::from_run(&sim, Vec::new(), RunInfo::default());
                            point(&s, c, indices[i], points[i])
                        })
                    }
                };
                bar.inc(1);
                let t = topology.map_or(String::new(), |t| format!(" / {}", t.id()));
                bar.set_message(format!("{cni} / {proxy}{t} at {value}"));
                (i, r)
            })
            .collect()
    });
    bar.finish_and_clear();
    results.sort_by_key(|(i, _)| *i);
    let points = results.into_iter().map(|(_, r)| r).collect::<Result<Vec<_>, Error>>()?;
    Ok(SweepResult {
        scenario: base.name.clone(),
        description: base.description.clone(),
        cni: base.cni.id().into(),
        parameter: spec.parameter,
        values: spec.values.clone(),
        proxies: spec.proxies.iter().map(|m| m.id().to_string()).collect(),
        cnis: cnis.iter().map(|c| c.id().to_string()).collect(),
        bgp_topologies: spec.bgp.iter().map(|t| t.id()).collect(),
        points,
        shard,
        total_points,
        run: SweepRun {
            cnisim_version: env!("CARGO_PKG_VERSION").into(),
            wall_seconds: wall.elapsed().as_secs_f64(),
            threads: pool.current_num_threads(),
        },
    })
}

/// A point in the whole sweep: (value, CNI, proxy mode, BGP topology).
type Point = (u32, Cni, ProxyMode, Option<BgpTopology>);

/// A point the scenario cannot be set up at: the loader's message, every figure 0.
fn unset(index: usize, (value, cni, proxy, topology): Point, message: String) -> SweepPoint {
    SweepPoint {
        index,
        proxy: proxy.id().into(),
        value,
        services: 0,
        endpoints: 0,
        rules_installed: 0,
        rules_memory_bytes: 0,
        rules_evaluated_mean: 0.0,
        rules_evaluated_worst: 0,
        rules_evaluated_all_mean: 0.0,
        lookups_mean: 0.0,
        first_packet_p50_ns: 0,
        first_packet_mean_ns: 0,
        established_p50_ns: 0,
        established_mean_ns: 0,
        cpu_ns_per_1000_new_connections: 0.0,
        userspace_cpu_ns_per_1000_datagrams: 0.0,
        sync_ns_max: None,
        new_connections: 0,
        translated: 0,
        sent: 0,
        delivered: 0,
        warnings: Vec::new(),
        cni: cni.id().into(),
        invalid: Some(message),
        data_plane: None,
        policy: None,
        topology: topology.map(BgpTopology::id),
        bgp: None,
    }
}

/// The figures of one point, from its run's summary.
fn point(s: &Summary, c: &Cluster, index: usize, at: Point) -> SweepPoint {
    let mut p = unset(index, at, String::new());
    p.invalid = None;
    p.bgp = s.bgp.as_ref().map(|b| {
        let again = b.convergence.iter().find(|x| x.cause != "start" && !x.cause.starts_with("routes lost"));
        BgpPoint {
            topology: b.topology.clone(),
            sessions: b.sessions,
            sessions_established: b.sessions_established,
            messages: b.messages.values().sum(),
            message_bytes: b.message_bytes,
            updates: b.messages.get("UPDATE").copied().unwrap_or(0),
            convergence_ns: b.convergence.iter().find(|x| x.cause == "start").map(|x| x.duration_ns),
            reconvergence_ns: again.map(|x| x.duration_ns),
            reconvergence_drops: again.map_or(0, |x| x.drops.values().sum()),
            cpu_ns_max: b.max_node_cpu_ns,
            cpu_ns: b.cpu_ns,
            memory_bytes_max: b.nodes.iter().map(|n| n.memory_bytes).max().unwrap_or(0),
            rib_routes_max: b.nodes.iter().map(|n| n.rib_routes).max().unwrap_or(0),
            fib_routes_max: b.nodes.iter().map(|n| n.fib_routes).max().unwrap_or(0),
        }
    });
    p.sent = s.totals.sent;
    p.delivered = s.totals.delivered;
    p.warnings = s.scenario.warnings.clone();
    p.data_plane = Some(data_plane(s, c));
    p.policy = s.policy.as_ref().filter(|x| x.engine != "none").map(|x| {
        let walks: u64 = x.nodes.iter().map(|n| n.new_walks).sum();
        let evals: f64 = x
            .nodes
            .iter()
            .map(|n| (n.rules_per_new_walk + n.ipset_lookups_per_new_walk) * n.new_walks as f64)
            .sum();
        let cpu: u64 = x.nodes.iter().map(|n| n.cpu_ns_per_1000_new_walks * n.new_walks).sum();
        let denied: u64 = x.nodes.iter().map(|n| n.denied_packets).sum();
        PolicyPoint {
            update_ns: x.changes.first().and_then(|ch| ch.enforced_everywhere_ns),
            engine: x.engine.clone(),
            policies: x.policies,
            installed_max: x.nodes.iter().map(|n| n.filter_rules).max().unwrap_or(0),
            evaluations_per_new_walk: if walks == 0 { 0.0 } else { evals / walks as f64 },
            cpu_ns_per_1000_new_walks: cpu.checked_div(walks).unwrap_or(0),
            new_walks: walks,
            denied_packets: denied,
            evaluations_per_denied_packet: if denied == 0 {
                0.0
            } else {
                x.nodes.iter().map(|n| n.evaluations_per_denied_packet * n.denied_packets as f64).sum::<f64>()
                    / denied as f64
            },
            cpu_ns_per_1000_denied_packets: x
                .nodes
                .iter()
                .map(|n| n.cpu_ns_per_1000_denied_packets * n.denied_packets)
                .sum::<u64>()
                .checked_div(denied)
                .unwrap_or(0),
        }
    });
    let Some(v) = s.services.as_ref() else { return p };
    SweepPoint {
        proxy: v.proxy.clone(),
        services: v.services,
        endpoints: v.endpoints,
        rules_installed: v.rules_installed,
        rules_memory_bytes: v.rules_memory_bytes,
        rules_evaluated_mean: v.service_rules_evaluated_mean,
        rules_evaluated_worst: v.service_rules_evaluated_worst,
        rules_evaluated_all_mean: v.rules_evaluated_mean,
        lookups_mean: v.service_lookups_mean,
        first_packet_p50_ns: v.first_packet_latency.p50_ns,
        first_packet_mean_ns: v.first_packet_latency.mean_ns,
        established_p50_ns: v.established_latency.p50_ns,
        established_mean_ns: v.established_latency.mean_ns,
        cpu_ns_per_1000_new_connections: v.cpu_ns_per_service_connection * 1000.0,
        userspace_cpu_ns_per_1000_datagrams: if s.totals.delivered > 0 {
            v.userspace_proxy_cpu_ns as f64 * 1000.0 / s.totals.delivered as f64
        } else {
            0.0
        },
        sync_ns_max: v.sync_ns_max,
        new_connections: v.new_connections,
        translated: v.translated,
        ..p
    }
}

/// The data path's figures of a run.
fn data_plane(s: &Summary, c: &Cluster) -> DataPlane {
    let t = &s.totals;
    // The first cross-node flow with a traced first datagram, and that datagram's frame on the
    // client pod's eth0.
    let traced = s.flows.iter().enumerate().find_map(|(i, f)| {
        let encap = f.encap_overhead_bytes?;
        let hops = &s.paths.iter().find(|p| p.flow == i)?.hops;
        let place = format!("pod/{}", f.src_pod);
        let pod = hops.iter().find(|h| h.place == place && h.action == "sendmsg")?.size as u64;
        Some((pod, encap))
    });
    DataPlane {
        pod_mtu: c.pods.iter().map(|p| p.mtu).min().unwrap_or(0),
        throughput_bps: s.flows.iter().map(|f| f.throughput_bps).sum(),
        delivered_pct: (t.sent > 0).then(|| t.delivered as f64 * 100.0 / t.sent as f64),
        cpu_ns: t.cpu_ns,
        cpu_ns_per_datagram: (t.delivered > 0).then_some(t.cpu_ns_per_datagram),
        cpu_ns_per_datagram_by_step: match t.delivered {
            0 => BTreeMap::new(),
            d => t.cpu_by_step.iter().map(|(k, &ns)| (k.clone(), ns as f64 / d as f64)).collect(),
        },
        cross_node_flows: s.flows.iter().filter(|f| !f.same_node).count(),
        pod_frame_bytes: traced.map(|(pod, _)| pod),
        encap_overhead_bytes: traced.map(|(_, e)| e),
        encap_overhead_pct: traced.filter(|&(pod, _)| pod > 0).map(|(pod, e)| e as f64 * 100.0 / pod as f64),
    }
}

/// Joins the `sweep.json` of every shard of one sweep into the whole sweep: the same scenario,
/// parameter, values and proxies, each shard index from 1 to N exactly once.
pub fn merge(shards: &[std::path::PathBuf]) -> Result<SweepResult, Error> {
    let mut parts = Vec::new();
    for dir in shards {
        let file = dir.join("sweep.json");
        let text = std::fs::read_to_string(&file).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound if !dir.is_dir() => Error::Usage(format!(
                "{}: no such directory; give the output directories of `cnisim sweep --shard I/N` (each holds sweep.json)",
                dir.display()
            )),
            std::io::ErrorKind::NotFound => Error::Usage(format!(
                "{} holds no sweep.json: it is not the output directory of `cnisim sweep --shard I/N`",
                dir.display()
            )),
            _ => Error::io(&file, e),
        })?;
        let r: SweepResult = serde_json::from_str(&text)
            .map_err(|e| Error::Usage(format!("{}: not a cnisim sweep.json ({e})", file.display())))?;
        parts.push((file, r));
    }
    let Some((first_file, first)) = parts.first() else {
        return Err(Error::Usage("merge needs the output directories of the shards".into()));
    };
    let Some(Shard { count, .. }) = first.shard else {
        return Err(Error::Usage(format!("{} is a whole sweep, not a shard", first_file.display())));
    };
    let mut seen = vec![false; count];
    for (file, r) in &parts {
        let same = r.scenario == first.scenario
            && r.cni == first.cni
            && r.parameter == first.parameter
            && r.values == first.values
            && r.proxies == first.proxies
            && r.cnis == first.cnis
            && r.bgp_topologies == first.bgp_topologies
            && r.total_points == first.total_points
            && r.run.cnisim_version == first.run.cnisim_version;
        if !same {
            return Err(Error::Usage(format!(
                "{} is from another sweep than {} (scenario, CNIs, values, proxies or cnisim version differ)",
                file.display(),
                first_file.display()
            )));
        }
        let Some(s) = r.shard.filter(|s| s.count == count) else {
            return Err(Error::Usage(format!("{} is not one of {count} shards", file.display())));
        };
        if std::mem::replace(&mut seen[s.index - 1], true) {
            return Err(Error::Usage(format!(
                "shard {}/{count} is given twice ({})",
                s.index,
                file.display()
            )));
        }
    }
    if let Some(missing) = seen.iter().position(|s| !s) {
        return Err(Error::Usage(format!(
            "shard {}/{count} is missing; give every shard's directory",
            missing + 1
        )));
    }
    let mut points: Vec<SweepPoint> = parts.iter().flat_map(|(_, r)| r.points.iter().cloned()).collect();
    points.sort_by_key(|p| p.index);
    if points.len() != first.total_points || points.iter().enumerate().any(|(i, p)| p.index != i) {
        return Err(Error::Usage(format!(
            "the shards hold {} points, not the sweep's {} exactly once",
            points.len(),
            first.total_points
        )));
    }
    Ok(SweepResult {
        points,
        shard: None,
        run: SweepRun {
            cnisim_version: first.run.cnisim_version.clone(),
            wall_seconds: parts.iter().map(|(_, r)| r.run.wall_seconds).sum(),
            threads: parts.iter().map(|(_, r)| r.run.threads).max().unwrap_or(0),
        },
        ..first.clone()
    })
}
