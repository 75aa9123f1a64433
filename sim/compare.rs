//! `cnisim compare`: one scenario under several CNIs (and proxy modes), each combination a full
//! simulation with the same seed, and what their results say side by side.
//!
//! Runs as `sweep` does: every combination is resolved first, the runs go to a rayon pool with
//! an indicatif bar, and the results are put back in combination order, so the output does not
//! depend on the thread count. `--shard I/N` runs the combinations whose index is I-1 modulo N;
//! [`merge`] joins the shards' `compare.json` into the whole comparison, byte-identical to one
//! run in one piece (apart from [`CompareResult::run`], the only wall-clock values).
//!
//! Each combination keeps the [`Figures`] of its own run (taken from its [`Summary`], with a
//! workload's latency over all of its flows' datagrams). What depends on several combinations
//! (whether one works here, compared with the others; the headline table with the best of each
//! column; the verdicts) is derived from those figures by `judge`, after the runs and again
//! after a merge, so a shard's figures are never judged against the wrong company.
//!
//! **Architecture Invariant:** every number a verdict states is a [`Figure`] that points into
//! `compare.json` (an RFC 6901 pointer); nothing in a verdict is typed in.

mod figures;
mod judge;

use std::collections::BTreeMap;
use std::path::Path;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::cluster::{Cluster, Cni, ProxyMode};
use crate::error::Error;
use crate::net::packet::Hop;
use crate::run::Simulation;
use crate::scenario::{self, Overrides};
use crate::summary::{LatencyStats, OverheadPoint, RunInfo, Summary};
use crate::sweep::Shard;

pub use judge::mechanism;

/// Version of the compare.json schema (`docs/compare-schema.md`).
pub const SCHEMA_VERSION: u32 = 2;

/// Measures the overhead per payload size of a cluster (`trace::overhead_probe`, passed down
/// by the caller: `compare` sits below the tools layer).
pub type Probe = fn(&Cluster) -> Result<Vec<OverheadPoint>, Error>;

/// What to compare, as the command line gives it; `None` takes the scenario's `compare:`
/// section (and for proxies then the scenario's own `proxy`).
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub cnis: Option<Vec<Cni>>,
    pub proxies: Option<Vec<ProxyMode>>,
    /// Rayon workers (default: one per core).
    pub threads: Option<usize>,
    pub progress: bool,
    pub shard: Option<Shard>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CompareResult {
    pub schema_version: u32,
    pub scenario: ScenarioFacts,
    /// CNIs and proxy modes compared, in order; combinations are CNI-major.
    pub cnis: Vec<String>,
    pub proxies: Vec<String>,
    /// In combination order (for a shard: its own combinations only).
    pub combinations: Vec<Combination>,
    /// The headline table: one row per combination, one column per measure the scenario
    /// exercises.
    pub table: Table,
    /// Plain-words answers, each with the figures it quotes.
    pub verdicts: Vec<Verdict>,
    /// Set when this is one shard of the comparison; `cnisim merge` joins them.
    pub shard: Option<Shard>,
    /// Combinations in the whole comparison.
    pub total_combinations: usize,
    /// Wall-clock facts (the only non-deterministic part).
    pub run: CompareRun,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CompareRun {
    pub cnisim_version: String,
    pub wall_seconds: f64,
    pub threads: usize,
}

/// What every combination shares: the scenario as written.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ScenarioFacts {
    pub name: String,
    pub description: String,
    pub seed: u64,
    pub duration_ns: u64,
    pub nodes: usize,
    pub pods: usize,
    pub services: usize,
    pub underlay: String,
    pub workloads: Vec<WorkloadFacts>,
    /// The nodes whose CPU the table shows: the client's and the server's node of the first
    /// flow between pods on two nodes (`receiver` is `None` when no flow leaves its node).
    pub sender_node: Option<String>,
    pub receiver_node: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct WorkloadFacts {
    pub name: String,
    /// The workload kind's key (`summary::kind_name`): "udp_cbr", "udp_rr", "tcp_crr" ...
    pub kind: String,
    pub params: String,
    pub flows: usize,
}

impl WorkloadFacts {
    /// A request/response workload (UDP or TCP): its figures are round trips (`rtt`) and
    /// transactions per second, not one-way latencies.
    pub fn is_request_response(&self) -> bool {
        matches!(self.kind.as_str(), "udp_rr" | "tcp_rr" | "tcp_crr")
    }

    /// A TCP stream: no datagrams, so no one-way latency; its figure is its goodput.
    pub fn is_stream(&self) -> bool {
        self.kind == "tcp_stream"
    }
}

/// One (CNI, proxy mode) of the comparison.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Combination {
    /// Position in the whole comparison (CNI-major, then proxy order).
    pub index: usize,
    pub cni: String,
    pub proxy: String,
    /// How tables and charts name it: the CNI, or "CNI / proxy" when proxies are compared.
    pub label: String,
    /// Judged against the other combinations (see [`Status`]).
    pub status: Status,
    /// Why, in words with the run's figures; empty when it works.
    pub status_reason: String,
    /// Set when the scenario cannot be resolved under this choice: the loader's message.
    pub invalid: Option<String>,
    /// The run's figures; `None` exactly when `invalid` is set.
    pub figures: Option<Figures>,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Every workload delivered at least 99 % of the share the best combination delivered.
    Works,
    /// A workload delivered less than 99 % of the best share, but at least half of it.
    LosesPackets,
    /// A workload delivered less than half the best share (or nothing).
    DoesNotWork,
    /// The scenario does not resolve under this choice (e.g. a payload larger than the CNI's
    /// pod MTU allows).
    CannotBeSetUp,
}

impl Status {
    pub fn words(self) -> &'static str {
        match self {
            Status::Works => "works",
            Status::LosesPackets => "loses packets here",
            Status::DoesNotWork => "does not work here",
            Status::CannotBeSetUp => "cannot be set up here",
        }
    }
}

/// One run's results, from its [`Summary`].
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Figures {
    /// The smallest MTU of any pod's `eth0`.
    pub pod_mtu: u32,
    /// Workload datagrams, all flows.
    pub sent: u64,
    pub delivered: u64,
    pub dropped: u64,
    pub in_flight: u64,
    pub drops_by_reason: BTreeMap<String, u64>,
    pub arp_drops_by_reason: BTreeMap<String, u64>,
    /// What the CNI could not set up, as its agent would log it.
    pub warnings: Vec<String>,
    /// CPU time served within the run on every node, kernel cores and userspace data-plane
    /// processes, ns (the summary's `totals.cpu_ns`).
    pub cpu_ns: u64,
    /// `cpu_ns` by kernel step (the summary's `totals.cpu_by_step`): adds up to `cpu_ns`.
    pub cpu_by_step: BTreeMap<String, u64>,
    /// `cpu_by_step` / delivered: where the CPU of one delivered datagram goes, ns (empty when
    /// nothing was delivered); adds up to `cpu_ns` / delivered.
    pub cpu_ns_per_datagram_by_step: BTreeMap<String, f64>,
    pub userspace_cpu_ns: u64,
    /// `totals.cpu_ns_per_datagram` of the summary; `None` when nothing was delivered.
    pub cpu_ns_per_datagram: Option<f64>,
    /// UDP payload delivered by every flow, bits.
    pub payload_bits: u64,
    /// payload_bits / cpu_ns: Gbit/s of payload per core kept busy, all nodes.
    pub gbps_per_core: Option<f64>,
    /// In the scenario's workload order.
    pub workloads: Vec<WorkloadFigures>,
    pub sender: Option<NodeFigures>,
    pub receiver: Option<NodeFigures>,
    /// sender + receiver `cores_per_gbps` (the sender's alone without a receiver node).
    pub ends_cores_per_gbps: Option<f64>,
    /// Bytes the CNI adds per packet on the underlay (the probe's largest payload that reached
    /// the NIC).
    pub encap_overhead_bytes: Option<i64>,
    pub overhead: Vec<OverheadFigure>,
    pub services: Option<ServiceFigures>,
    /// MASQUERADE at POSTROUTING (summary.json's `masquerade`); `None` when nothing was
    /// masqueraded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub masquerade: Option<MasqueradeFigures>,
    /// The first traced datagram of each workload.
    pub paths: Vec<PathFigure>,
    pub events: u64,
    pub packet_hops: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct MasqueradeFigures {
    pub connections: u64,
    /// Connections dropped at confirmation (`conntrack -S` insert_failed).
    pub insert_failed: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct WorkloadFigures {
    pub name: String,
    pub kind: String,
    pub sent: u64,
    pub delivered: u64,
    pub dropped: u64,
    /// Sent but neither delivered nor dropped by the end (in a queue, awaiting ARP, on a cable).
    pub in_flight: u64,
    pub drops_by_reason: BTreeMap<String, u64>,
    /// delivered / sent * 100; `None` when nothing was sent.
    pub delivered_pct: Option<f64>,
    /// Sum of the flows' payload throughput, bit/s.
    pub throughput_bps: f64,
    /// One-way latency over every flow's delivered datagrams.
    pub latency: LatencyStats,
    /// Round-trip time over every flow's exchanges (request/response only).
    pub rtt: Option<LatencyStats>,
    pub transactions: u64,
    pub timeouts: u64,
    /// Exchanges completed per second of the workload's duration (request/response only).
    pub transactions_per_s: Option<f64>,
    /// CPU served on the chains and processes that carried the workload's datagrams, ns, and
    /// by kernel step (sums of its flows' `cpu_ns` and `cpu_by_step`).
    pub cpu_ns: u64,
    pub cpu_by_step: BTreeMap<String, u64>,
    /// cpu_ns / delivered; `None` when nothing was delivered.
    pub cpu_ns_per_datagram: Option<f64>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct NodeFigures {
    pub name: String,
    /// Kernel and userspace CPU time of the node, ns.
    pub cpu_ns: u64,
    pub packets: u64,
    /// The summary's `cpu_ns_per_packet` of the node.
    pub cpu_ns_per_packet: f64,
    /// Payload delivered by the flows whose client or server is on the node, bits.
    pub payload_bits: u64,
    /// cpu_ns / payload_bits: cores kept busy per Gbit/s of that payload.
    pub cores_per_gbps: Option<f64>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct OverheadFigure {
    pub payload: u32,
    pub pod_frame: usize,
    /// 0: the probe datagram never reached the node NIC.
    pub underlay_frame: usize,
    /// underlay_frame - pod_frame.
    pub encap_bytes: i64,
    /// encap_bytes / pod_frame * 100: how many more bytes the underlay carries.
    pub encap_pct: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ServiceFigures {
    pub proxy: String,
    pub rules_installed: usize,
    pub rules_memory_bytes: usize,
    pub new_connections: u64,
    pub translated: u64,
    /// Rules evaluated per new connection to a Service, mean.
    pub rules_evaluated_mean: f64,
    /// CPU of a translated new connection, ns (`None` without one).
    pub cpu_ns_per_service_connection: Option<f64>,
    /// One-way latency of a connection's first datagram to a Service, and of later ones (p50,
    /// `None` without samples).
    pub first_packet_p50_ns: Option<u64>,
    pub established_p50_ns: Option<u64>,
    /// The longest time from a change to rules in place on a node (`None` without changes).
    pub sync_ns_max: Option<u64>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct PathFigure {
    pub workload: String,
    pub flow: usize,
    pub description: String,
    pub hops: Vec<Hop>,
}

/// The headline table.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Table {
    pub columns: Vec<Column>,
    /// One per combination, in combination order.
    pub rows: Vec<Row>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Column {
    pub key: String,
    pub title: String,
    /// "ns", "bit/s", "1/s", "cores/(Gbit/s)", "(Gbit/s)/core", "B", "%", "count".
    pub unit: String,
    pub better: Better,
    /// The workload the column measures, if any.
    pub workload: Option<String>,
    /// Where each row's value comes from, relative to `/combinations/<i>/figures`.
    pub source: String,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Better {
    Lower,
    Higher,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Row {
    pub index: usize,
    pub label: String,
    pub status: Status,
    /// Per column; `None` where the run has no value (nothing delivered, not measured).
    pub values: Vec<Option<f64>>,
    /// Per column: the best value among the combinations that compete (see `docs`).
    pub best: Vec<bool>,
    /// Per column: value / best (`None` without a value, or when the best is 0).
    pub ratio: Vec<Option<f64>>,
}

/// An answer to one question, in plain words.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Verdict {
    /// "works", "latency:<workload>", "throughput_per_core", "cpu_per_gbps", "overhead",
    /// "service_connection".
    pub key: String,
    pub question: String,
    /// Labels of the combinations that answer it (several on a tie; empty when none can).
    pub answer: Vec<String>,
    pub text: String,
    /// Every number the text states.
    pub figures: Vec<Figure>,
}

/// A number a verdict states, and where it comes from.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Figure {
    /// RFC 6901 pointer into compare.json to the value.
    pub at: String,
    /// For a ratio: the pointer of the denominator (`value` = at / over).
    pub over: Option<String>,
    pub value: f64,
    /// The text the verdict shows for it.
    pub shown: String,
}

impl CompareResult {
    /// `compare.json` text.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a CompareResult always serialises") + "\n"
    }
}

/// Runs every combination of the comparison `path` and `opts` ask for (or one shard of it).
pub fn run(path: &Path, opts: &Options, probe: Probe) -> Result<CompareResult, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let shown = path.display().to_string();
    let base = scenario::load_str_with(&text, &shown, &Overrides::default())?;
    let cnis = match (&opts.cnis, &base.compare) {
        (Some(c), _) => c.clone(),
        (None, Some(spec)) => spec.cnis.clone(),
        (None, None) => {
            return Err(Error::Usage(format!(
                "{shown} has no compare section; give --cni a,b,c (or --cni all), or add \
                 compare: (cnis: [\"flannel-vxlan\", \"calico-bgp\"]) to the scenario"
            )))
        }
    };
    let proxies = match (&opts.proxies, &base.compare) {
        (Some(p), _) => p.clone(),
        (None, Some(spec)) if !spec.proxies.is_empty() => spec.proxies.clone(),
        _ => vec![base.proxy],
    };
    if cnis.is_empty() || proxies.is_empty() {
        return Err(Error::Usage("nothing to compare: give at least one CNI and one proxy mode".into()));
    }
    let all: Vec<(Cni, ProxyMode)> =
        cnis.iter().flat_map(|&c| proxies.iter().map(move |&p| (c, p))).collect();
    let total = all.len();
    let chosen: Vec<(usize, (Cni, ProxyMode))> = all
        .into_iter()
        .enumerate()
        .filter(|(i, _)| opts.shard.is_none_or(|s| i % s.count == s.index - 1))
        .collect();
    let facts = figures::facts(&base);
    let label = |c: Cni, p: ProxyMode| {
        if proxies.len() > 1 {
            format!("{c} / {p}")
        } else {
            c.to_string()
        }
    };
    // Every combination resolves (or is recorded as impossible here) before any runs.
    let loaded: Vec<Result<Cluster, String>> = chosen
        .iter()
        .map(|&(_, (cni, proxy))| {
            let o = Overrides { cni: Some(cni), proxy: Some(proxy), ..Default::default() };
            scenario::load_str_with(&text, &shown, &o).map_err(|e| e.to_string())
        })
        .collect();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.threads.unwrap_or(0))
        .build()
        .map_err(|e| Error::Usage(format!("cannot start {:?} worker threads: {e}", opts.threads)))?;
    let bar = if opts.progress {
        let b = indicatif::ProgressBar::new(chosen.len() as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{elapsed_precise} [{bar:40}] {pos}/{len} combinations {msg}",
            )
            .expect("static template")
            .progress_chars("=> "),
        );
        b
    } else {
        indicatif::ProgressBar::hidden()
    };
    let wall = std::time::Instant::now();
    let mut results: Vec<(usize, Result<Combination, Error>)> = pool.install(|| {
        (0..chosen.len())
            .into_par_iter()
            .map(|k| {
                let (index, (cni, proxy)) = chosen[k];
                let mut c = Combination {
                    index,
                    cni: cni.to_string(),
                    proxy: proxy.to_string(),
                    label: label(cni, proxy),
                    status: Status::CannotBeSetUp,
                    status_reason: String::new(),
                    invalid: None,
                    figures: None,
                };
                let r = match &loaded[k] {
                    Err(message) => {
                        c.invalid = Some(message.clone());
                        Ok(c)
                    }
                    Ok(cluster) => simulate(cluster, &facts, probe).map(|f| {
                        c.figures = Some(f);
                        c
                    }),
                };
                bar.inc(1);
                bar.set_message(label(cni, proxy));
                (k, r)
            })
            .collect()
    });
    bar.finish_and_clear();
    results.sort_by_key(|(k, _)| *k);
    let combinations = results.into_iter().map(|(_, r)| r).collect::<Result<Vec<_>, Error>>()?;
    let run = CompareRun {
        cnisim_version: env!("CARGO_PKG_VERSION").into(),
        wall_seconds: wall.elapsed().as_secs_f64(),
        threads: pool.current_num_threads(),
    };
    Ok(judge::assemble(Whole {
        scenario: facts,
        cnis: cnis.iter().map(|c| c.to_string()).collect(),
        proxies: proxies.iter().map(|p| p.to_string()).collect(),
        combinations,
        shard: opts.shard,
        total_combinations: total,
        run,
    }))
}

/// Everything of a [`CompareResult`] that is not derived from the figures.
struct Whole {
    scenario: ScenarioFacts,
    cnis: Vec<String>,
    proxies: Vec<String>,
    combinations: Vec<Combination>,
    shard: Option<Shard>,
    total_combinations: usize,
    run: CompareRun,
}

/// One combination's run: the overhead probe, then the scenario, then its figures.
fn simulate(cluster: &Cluster, facts: &ScenarioFacts, probe: Probe) -> Result<Figures, Error> {
    let overhead = probe(cluster)?;
    let mut sim = Simulation::new(cluster);
    sim.run()?;
    let summary = Summary::from_run(&sim, overhead, RunInfo::default());
    Ok(figures::figures(&sim, &summary, facts))
}

/// Joins the `compare.json` of every shard of one comparison: the same scenario, CNIs, proxy
/// modes and cnisim version, each shard index from 1 to N exactly once.
pub fn merge(shards: &[std::path::PathBuf]) -> Result<CompareResult, Error> {
    let mut parts = Vec::new();
    for dir in shards {
        let file = dir.join("compare.json");
        let text = std::fs::read_to_string(&file).map_err(|e| Error::io(&file, e))?;
        let r: CompareResult = serde_json::from_str(&text)
            .map_err(|e| Error::Usage(format!("{}: not a cnisim compare.json ({e})", file.display())))?;
        if r.schema_version != SCHEMA_VERSION {
            return Err(Error::Usage(format!(
                "{}: compare.json schema version {}, this cnisim reads {SCHEMA_VERSION}",
                file.display(),
                r.schema_version
            )));
        }
        parts.push((file, r));
    }
    let Some((first_file, first)) = parts.first() else {
        return Err(Error::Usage("merge needs the output directories of the shards".into()));
    };
    let Some(Shard { count, .. }) = first.shard else {
        return Err(Error::Usage(format!("{} is a whole comparison, not a shard", first_file.display())));
    };
    let mut seen = vec![false; count];
    for (file, r) in &parts {
        let same = r.scenario == first.scenario
            && r.cnis == first.cnis
            && r.proxies == first.proxies
            && r.total_combinations == first.total_combinations
            && r.run.cnisim_version == first.run.cnisim_version;
        if !same {
            return Err(Error::Usage(format!(
                "{} is from another comparison than {} (scenario, CNIs, proxies or cnisim version differ)",
                file.display(),
                first_file.display()
            )));
        }
        let Some(s) = r.shard.filter(|s| s.count == count && (1..=count).contains(&s.index)) else {
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
    let mut combinations: Vec<Combination> =
        parts.iter().flat_map(|(_, r)| r.combinations.iter().cloned()).collect();
    combinations.sort_by_key(|c| c.index);
    if combinations.len() != first.total_combinations
        || combinations.iter().enumerate().any(|(i, c)| c.index != i)
    {
        return Err(Error::Usage(format!(
            "the shards hold {} combinations, not the comparison's {} exactly once",
            combinations.len(),
            first.total_combinations
        )));
    }
    Ok(judge::assemble(Whole {
        scenario: first.scenario.clone(),
        cnis: first.cnis.clone(),
        proxies: first.proxies.clone(),
        combinations,
        shard: None,
        total_combinations: first.total_combinations,
        run: CompareRun {
            cnisim_version: first.run.cnisim_version.clone(),
            wall_seconds: parts.iter().map(|(_, r)| r.run.wall_seconds).sum(),
            threads: parts.iter().map(|(_, r)| r.run.threads).max().unwrap_or(0),
        },
    }))
}

/// Parses `--cni a,b,c` or `--cni all`.
pub fn parse_cnis(s: &str) -> Result<Vec<Cni>, String> {
    parse_list(s, &Cni::ALL, Cni::id, "CNI", "--cni")
}

/// Parses `--proxy p,q` or `--proxy all`.
pub fn parse_proxies(s: &str) -> Result<Vec<ProxyMode>, String> {
    parse_list(s, &ProxyMode::ALL, ProxyMode::id, "proxy mode", "--proxy")
}

fn parse_list<T: Copy + PartialEq>(
    s: &str,
    all: &[T],
    id: fn(T) -> &'static str,
    what: &str,
    flag: &str,
) -> Result<Vec<T>, String> {
    let items: Vec<&str> = s.split(',').map(str::trim).collect();
    if items.iter().any(|i| i.is_empty()) {
        return Err(format!("{flag} '{s}' has an empty item; give a,b,c or all"));
    }
    scenario::pick(&items, all, id, what).map_err(|(_, m)| m)
}
