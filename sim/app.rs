//! The commands behind the CLI, as library functions: `main` parses arguments and prints;
//! integration tests call these directly. This is the only module besides `scenario` and
//! `output` that touches files.

use std::path::{Path, PathBuf};
use std::time::Instant as WallClock;

use crate::cluster::ProxyMode;
use crate::cluster::{Cluster, Cni};
use crate::error::Error;
use crate::output::{check_target, write_dir_atomically, Named, OutputFile};
use crate::run::Simulation;
use crate::summary::{RunInfo, Summary};
use crate::time::{Duration, Instant};
use crate::{describe, estimate, report, scenario, trace};

mod compare;
pub use compare::{compare, is_compare_dir, merge_compare};

#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Output directory; default `reports/<scenario name>` (`--<cni>--<proxy>` appended when
    /// `cni` or `proxy` is set).
    pub out: Option<PathBuf>,
    /// Capture globs over `<namespace>/<device>`.
    pub pcap: Vec<String>,
    /// Overrides the scenario's seed.
    pub seed: Option<u64>,
    /// Overrides the scenario's CNI (before resolution: MTU defaults follow it).
    pub cni: Option<Cni>,
    /// Overrides the scenario's proxy mode.
    pub proxy: Option<ProxyMode>,
}

/// The command-line choices `validate`, `describe` and `trace` take.
#[derive(Clone, Copy, Debug, Default)]
pub struct Choice {
    pub cni: Option<Cni>,
    pub proxy: Option<ProxyMode>,
}

pub struct RunOutcome {
    pub out_dir: PathBuf,
    pub summary: Summary,
    pub files: Vec<String>,
}

/// Loads and resolves a scenario, applying command-line overrides.
pub fn load(path: &Path, seed: Option<u64>, choice: Choice) -> Result<Cluster, Error> {
    let overrides = scenario::Overrides { cni: choice.cni, proxy: choice.proxy, ..Default::default() };
    let mut c = scenario::load_with(path, &overrides)?;
    if let Some(s) = seed {
        c.seed = s;
    }
    Ok(c)
}

/// `cnisim run`: simulate, summarise, render, write the output directory atomically.
pub fn run(path: &Path, opts: &RunOptions) -> Result<RunOutcome, Error> {
    let cluster = load(path, opts.seed, Choice { cni: opts.cni, proxy: opts.proxy })?;
    // `reports/<scenario>` as written; `reports/<scenario>--<cni>--<proxy>` when a flag overrides
    // the file, so such runs never overwrite each other.
    let name = match (opts.cni, opts.proxy) {
        (None, None) => cluster.name.clone(),
        _ => format!("{}--{}--{}", cluster.name, cluster.cni, cluster.proxy),
    };
    let (out_dir, named) = out_path(opts.out.clone(), &name);
    // Refuse a path cnisim may not replace before spending the run on it.
    check_target(&out_dir, named)?;
    let e = estimate::estimate(&cluster, !opts.pcap.is_empty());
    estimate::check_run(&path.display().to_string(), &e)?;
    // Probe first: its world is dropped before the main run builds its own.
    crate::progress::stage("measuring the encapsulation overhead", 0);
    let overhead = trace::overhead_probe(&cluster)?;
    let mut sim = Simulation::new(&cluster);
    for glob in &opts.pcap {
        if sim.world.enable_capture(glob) == 0 {
            return Err(Error::Usage(format!(
                "--pcap '{glob}' matches no interface; interfaces are named <node or pod>/<device>, e.g. 'node-1/eth0', 'node-1/*' or '*'"
            )));
        }
    }
    let wall = WallClock::now();
    sim.run()?;
    let secs = wall.elapsed().as_secs_f64();
    let run = RunInfo {
        cnisim_version: env!("CARGO_PKG_VERSION").into(),
        wall_seconds: secs,
        events_per_second: if secs > 0.0 { sim.queue.processed() as f64 / secs } else { 0.0 },
    };
    let summary = Summary::from_run(&sim, overhead, run);
    let mut pcaps = Vec::new();
    for (d, p) in sim.world.pcaps.iter().enumerate() {
        if let Some(p) = p {
            let dev = &sim.world.devices[d];
            let ns = &sim.world.netns[dev.ns].name;
            pcaps.push(OutputFile::new(format!("pcap/{ns}-{}.pcap", dev.name), p.bytes().to_vec()));
        }
    }
    // A large run's world takes seconds to free (a 1,000-node BGP cluster's tables: 7% of its
    // run); free it on another core while the report is rendered.
    let freeing = std::thread::spawn(move || drop(sim));
    crate::progress::stage("rendering the report", 0);
    let rendered =
        report::render(&summary).map_err(|e| Error::Invariant(format!("rendering the report: {e}")));
    freeing.join().map_err(|_| Error::Invariant("freeing the simulation panicked".into()))?;
    let mut files = rendered?;
    files.push(OutputFile::new("summary.json", summary.to_json()));
    files.extend(pcaps);
    write_dir_atomically(&out_dir, named, &files)?;
    Ok(RunOutcome { out_dir, summary, files: files.into_iter().map(|f| f.name).collect() })
}

/// The output directory: `--out`, else `reports/<default_name>`.
pub(crate) fn out_path(out: Option<PathBuf>, default_name: &str) -> (PathBuf, Named) {
    match out {
        Some(p) => (p, Named::ByFlag),
        None => (Path::new("reports").join(default_name), Named::ByDefault),
    }
}

/// `cnisim validate`: a one-line description of a valid scenario.
pub fn validate(path: &Path, choice: Choice) -> Result<String, Error> {
    let c = load(path, None, choice)?;
    let flows: usize = c.workloads.iter().map(|w| w.flows.len()).sum();
    Ok(format!(
        "{}: ok: {} nodes, {} pods, {} services, {} workloads ({flows} flows), CNI {}, proxy {}, {} simulated, \
         memory: {}",
        path.display(),
        c.nodes.len(),
        c.pods.len(),
        c.services.services.len(),
        c.workloads.len(),
        c.cni,
        c.proxy,
        c.duration,
        estimate::estimate(&c, false).describe()
    ))
}

/// `cnisim describe`: run the scenario up to `at` (default: its end) and print a node's state.
pub fn describe(path: &Path, node: &str, at: Option<Duration>, choice: Choice) -> Result<String, Error> {
    let c = load(path, None, choice)?;
    let n = c.node_by_name(node).ok_or_else(|| {
        let names: Vec<&str> = c.nodes.iter().map(|n| n.name.as_str()).collect();
        Error::Usage(format!("no node '{node}' in {}; nodes: {}", path.display(), names.join(", ")))
    })?;
    check_at(path, &c, at)?;
    estimate::check_run(&path.display().to_string(), &estimate::estimate(&c, false))?;
    let until = Instant::ZERO + at.unwrap_or(c.duration);
    let mut sim = Simulation::new(&c);
    sim.run_until(until)?;
    Ok(describe::describe_sim(&sim, n, until))
}

/// Refuses an `--at` past the end of the scenario.
fn check_at(path: &Path, c: &Cluster, at: Option<Duration>) -> Result<(), Error> {
    match at.filter(|&at| at > c.duration) {
        Some(at) => Err(Error::Usage(format!(
            "--at {at} is past the end of {} at {}; give a time from 0s to {}",
            path.display(),
            c.duration,
            c.duration
        ))),
        None => Ok(()),
    }
}

/// `cnisim trace`: one datagram from pod to pod, hop by hop.
pub fn trace(path: &Path, from: &str, to: &str, payload: u32, choice: Choice) -> Result<trace::Trace, Error> {
    trace_at(path, from, to, payload, None, None, choice)
}

/// [`trace`] with the datagram sent at `at` (`cnisim trace --at`): the scenario runs until
/// then, its changes and control plane included; to destination `port` (`--port`, a pod or
/// outside host target only).
#[allow(clippy::too_many_arguments)]
pub fn trace_at(
    path: &Path,
    from: &str,
    to: &str,
    payload: u32,
    at: Option<Duration>,
    port: Option<u16>,
    choice: Choice,
) -> Result<trace::Trace, Error> {
    use crate::cluster::{Client, Target};
    let c = load(path, None, choice)?;
    check_at(path, &c, at)?;
    let usage = |what: String| Error::Usage(format!("{what} in {}", path.display()));
    // `--from`: a pod, or an external host.
    let client = match (c.pod_by_name(from), c.externals.iter().position(|e| e.name == from)) {
        (Some(p), _) => Client::Pod(p),
        (None, Some(e)) => Client::External(e),
        (None, None) => {
            let names: Vec<&str> = c.pods.iter().map(|p| p.name.as_str()).take(20).collect();
            return Err(usage(format!(
                "--from '{from}' names no pod or external host; pods include: {}",
                names.join(", ")
            )));
        }
    };
    // `--to`: a pod; a Service "web" or "web:port-name"; a NodePort "web@node-2"; an external
    // host.
    let (svc_part, node_part) = to.split_once('@').map_or((to, None), |(s, n)| (s, Some(n)));
    let target = match c.pod_by_name(to) {
        Some(b) if client == Client::Pod(b) => {
            return Err(Error::Usage("--from and --to name the same pod; pick two different pods".into()))
        }
        Some(b) => Target::Pod(b),
        None if c.externals.iter().any(|e| e.name == to) => {
            if matches!(client, Client::External(_)) {
                return Err(usage("--from and --to are both external hosts; one must be a pod".into()));
            }
            Target::External(c.externals.iter().position(|e| e.name == to).expect("checked"))
        }
        None => {
            let (name, port) = svc_part.split_once(':').map_or((svc_part, None), |(s, p)| (s, Some(p)));
            let svc = c.services.services.iter().position(|s| s.name == name);
            let port = svc.and_then(|si| match port {
                None => Some(0),
                Some(p) => c.services.services[si].ports.iter().position(|x| x.name == p),
            });
            let (Some(service), Some(port)) = (svc, port) else {
                let svcs: Vec<&str> = c.services.services.iter().map(|s| s.name.as_str()).take(20).collect();
                return Err(usage(format!(
                    "--to '{to}' names no pod and no service; services include: {}",
                    if svcs.is_empty() { "(none)".to_string() } else { svcs.join(", ") }
                )));
            };
            match node_part {
                None => Target::Service { service, port },
                Some(n) => {
                    let node =
                        c.node_by_name(n).ok_or_else(|| usage(format!("--to '{to}': no node '{n}'")))?;
                    if c.services.services[service].ports[port].node_port.is_none() {
                        return Err(usage(format!(
                            "--to '{to}': service '{name}' is not a NodePort Service"
                        )));
                    }
                    Target::NodePort { service, port, node }
                }
            }
        }
    };
    check_trace(&c, client, target, payload)?;
    if port.is_some() && !matches!(target, Target::Pod(_) | Target::External(_)) {
        return Err(usage(format!(
            "--port is for a pod or an external host; '{to}' is a Service, whose port is its own \
             (name one as --to service:port-name)"
        )));
    }
    if port == Some(0) {
        return Err(Error::Usage("--port 0 is not a port; give 1 to 65535".into()));
    }
    // The world as built; trace replaces the workloads with its one datagram.
    let world = Cluster { workloads: Vec::new(), ..c.clone() };
    estimate::check_run(&path.display().to_string(), &estimate::estimate(&world, false))?;
    trace::trace_at(
        &c,
        client,
        target,
        payload,
        at.unwrap_or(Duration::ZERO),
        port.unwrap_or(trace::TRACE_PORT),
    )
}

/// What `run` would refuse in a workload from `client` to `target` of `payload` bytes (the
/// scenario checks of `scenario::resolve`), said in terms of `trace`'s options.
fn check_trace(
    c: &Cluster,
    client: crate::cluster::Client,
    target: crate::cluster::Target,
    payload: u32,
) -> Result<(), Error> {
    use crate::cluster::{Client, Target, MAX_UDP_PAYLOAD, UDP_IP_HEADERS};
    let usage = |m: String| Err(Error::Usage(m));
    if matches!(client, Client::External(_)) && !matches!(target, Target::NodePort { .. }) {
        return usage(
            "a host outside the cluster reaches it through a NodePort (pod and cluster IPs are not routed to it); \
             trace a NodePort with --to SERVICE@NODE"
                .into(),
        );
    }
    if payload == 0 {
        return usage("--size 0: a datagram carries at least 1 byte; give --size 1 or more".into());
    }
    if payload > MAX_UDP_PAYLOAD {
        return usage(format!(
            "--size {payload} is more than one UDP datagram holds over IPv4 (65,507 B); give at most --size 65507"
        ));
    }
    let fits = |pod: usize, side: &str| {
        let p = &c.pods[pod];
        if payload + UDP_IP_HEADERS > p.mtu {
            return usage(format!(
                "--size {payload} B + 28 B of IPv4/UDP headers exceeds the MTU {} of {side} pod '{}'; a pod sends \
                 datagrams of at most its MTU; give at most --size {}",
                p.mtu,
                p.name,
                p.mtu.saturating_sub(UDP_IP_HEADERS)
            ));
        }
        Ok(())
    };
    if let Client::Pod(p) = client {
        fits(p, "client")?;
    }
    // A Service answers with a datagram of the same size, from each endpoint.
    if let Target::Service { service, .. } | Target::NodePort { service, .. } = target {
        for e in &c.services.services[service].endpoints {
            fits(e.pod, "endpoint")?;
        }
    }
    Ok(())
}

/// `cnisim sweep`: run the scenario's sweep (or one shard of it), render and write the output
/// directory atomically.
pub fn sweep(
    path: &Path,
    out: Option<PathBuf>,
    threads: Option<usize>,
    progress: bool,
    shard: Option<crate::sweep::Shard>,
) -> Result<(PathBuf, crate::sweep::SweepResult), Error> {
    // The scenario's name gives the default directory, checked before the sweep runs.
    let scenario_name = load(path, None, Choice::default())?.name;
    let name = match shard {
        None => format!("{scenario_name}-sweep"),
        Some(s) => format!("{scenario_name}-sweep-shard-{}-of-{}", s.index, s.count),
    };
    let (out_dir, named) = out_path(out, &name);
    check_target(&out_dir, named)?;
    let result = crate::sweep::run(path, threads, progress, shard)?;
    write_sweep(&out_dir, named, &result)?;
    Ok((out_dir, result))
}

/// `cnisim merge`: join the shards of a sweep and write the whole sweep's outputs.
pub fn merge(
    out: Option<PathBuf>,
    shards: &[PathBuf],
) -> Result<(PathBuf, crate::sweep::SweepResult), Error> {
    let result = crate::sweep::merge(shards)?;
    let (out_dir, named) = out_path(out, &format!("{}-sweep", result.scenario));
    write_sweep(&out_dir, named, &result)?;
    Ok((out_dir, result))
}

fn write_sweep(out_dir: &Path, named: Named, result: &crate::sweep::SweepResult) -> Result<(), Error> {
    let mut files = report::render_sweep(result)
        .map_err(|e| Error::Invariant(format!("rendering the sweep report: {e}")))?;
    files.push(OutputFile::new("sweep.json", result.to_json()));
    write_dir_atomically(out_dir, named, &files)
}
