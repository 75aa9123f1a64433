//! `cnisim sweep`: run one scenario at every value of a parameter, under every proxy mode, and
//! collect how the Service path scales.
//!
//! Each point is a full simulation of the scenario with `generated_services.count` (or
//! `.endpoints`) set to the value and the proxy mode replaced: rules are built and walked as in
//! any run. Points run in parallel on a rayon pool; results are put back in point order, so the
//! output does not depend on scheduling. Only [`SweepResult::run`] holds wall-clock values.

use std::path::Path;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::cluster::{Parameter, ProxyMode};
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

/// One simulated point: a proxy mode at one parameter value.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SweepPoint {
    /// Position in the whole sweep (value-major, then proxy order).
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
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SweepResult {
    pub scenario: String,
    pub description: String,
    pub cni: String,
    pub parameter: Parameter,
    pub values: Vec<u32>,
    pub proxies: Vec<String>,
    /// In (value, proxy) order.
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
    let all: Vec<(u32, ProxyMode)> =
        spec.values.iter().flat_map(|&v| spec.proxies.iter().map(move |&m| (v, m))).collect();
    let total_points = all.len();
    let (indices, points): (Vec<usize>, Vec<(u32, ProxyMode)>) =
        all.into_iter().enumerate().filter(|(i, _)| shard.is_none_or(|s| i % s.count == s.index - 1)).unzip();
    // Every point must resolve before any runs: a bad value fails fast, with its position.
    let clusters = points
        .iter()
        .map(|&(v, mode)| {
            let mut o = Overrides { proxy: Some(mode), ..Default::default() };
            match spec.parameter {
                Parameter::Services => o.generated_count = Some(v),
                Parameter::Endpoints => o.generated_endpoints = Some(v),
            }
            scenario::load_str_with(&text, &shown, &o).map_err(Error::from)
        })
        .collect::<Result<Vec<_>, Error>>()?;
    // The points running at once share the memory: the largest ones, one per thread.
    let workers = threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let mut sizes: Vec<crate::estimate::Estimate> =
        clusters.iter().map(|c| crate::estimate::estimate(c, false)).collect();
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
    let mut order: Vec<usize> = (0..clusters.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(points[i].0));
    let mut results: Vec<(usize, Result<SweepPoint, Error>)> = pool.install(|| {
        order
            .par_iter()
            .map(|&i| {
                let c = &clusters[i];
                let mut sim = Simulation::new(c);
                sim.trace_first = false;
                let r = sim.run().map(|()| {
                    let s = Summary::from_run(&sim, Vec::new(), RunInfo::default());
                    point(&s, indices[i], points[i].0)
                });
                bar.inc(1);
                bar.set_message(format!("{} at {}", points[i].1, points[i].0));
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

/// The figures of one point, from its run's summary.
fn point(s: &Summary, index: usize, value: u32) -> SweepPoint {
    let v = s.services.as_ref().expect("a sweep scenario has generated Services");
    SweepPoint {
        index,
        proxy: v.proxy.clone(),
        value,
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
        sent: s.totals.sent,
        delivered: s.totals.delivered,
        warnings: s.scenario.warnings.clone(),
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
            && r.run.cnisim_version == first.run.cnisim_version;
        if !same {
            return Err(Error::Usage(format!(
                "{} is from another sweep than {} (scenario, CNI, values, proxies or cnisim version differ)",
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
