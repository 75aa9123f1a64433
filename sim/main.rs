//! The `cnisim` command line. Thin: parse arguments, call `cnisim::app`, print, map errors to
//! exit codes (2: bad input, 1: failed run or I/O).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use cnisim::app;
use cnisim::cluster::Cni;
use cnisim::cluster::ProxyMode;
use cnisim::error::Error;
use cnisim::time::Duration;

#[derive(Parser)]
#[command(
    name = "cnisim",
    version,
    about = "Packet-level simulator of Kubernetes cluster networks: compare CNI plugins on your cluster shape",
    after_help = "Examples:\n  cnisim run scenarios/quickstart.ron\n  cnisim run scenarios/quickstart.ron --pcap 'node-1/*' --out /tmp/qs\n  cnisim run scenarios/quickstart.ron --cni calico-ipip\n  cnisim validate scenarios/quickstart.ron\n  cnisim describe scenarios/quickstart.ron --node node-1\n  cnisim trace scenarios/quickstart.ron --from node-1-pod-1 --to node-2-pod-1\n  cnisim run scenarios/services.ron --proxy ipvs\n  cnisim trace scenarios/services.ron --from client-1 --to web\n  cnisim sweep scenarios/rule-scaling.ron\n  cnisim compare scenarios/quickstart.ron --cni all"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Most memory the simulator may use, e.g. 4GiB [default: 80% of the memory this machine
    /// has available, or of a lower cgroup or ulimit limit]. A scenario estimated to need more is refused before it is built (exit
    /// 2); a run that outgrows it is stopped (exit 1). Nothing is written either way.
    #[arg(long, global = true, value_name = "SIZE", value_parser = parse_memory)]
    max_memory: Option<u64>,
}

#[derive(Subcommand)]
enum Command {
    /// Simulate a scenario and write report.html, PNG charts, CSVs and summary.json.
    #[command(
        after_help = "Examples:\n  cnisim run scenarios/quickstart.ron\n  cnisim run scenarios/quickstart.ron --seed 7 --pcap '*' --out /tmp/qs"
    )]
    Run {
        /// Scenario file (RON).
        scenario: PathBuf,
        /// Output directory [default: reports/<scenario name>, or
        /// reports/<scenario name>--<cni>--<proxy> with --cni or --proxy]; replaced atomically.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Capture on interfaces matching GLOB over <node or pod>/<device> (e.g. 'node-1/*',
        /// '*/eth0', '*'); writes pcap/<node>-<interface>.pcap. Repeatable.
        #[arg(long, value_name = "GLOB")]
        pcap: Vec<String>,
        /// Override the scenario's random seed.
        #[arg(long)]
        seed: Option<u64>,
        /// Simulate under another CNI than the scenario's (e.g. calico-ipip).
        #[arg(long, value_parser = parse_cni)]
        cni: Option<Cni>,
        /// Implement Services with another proxy mode than the scenario's: userspace,
        /// iptables, ipvs, ipvs-lc, ipvs-sh, ipvs-sed, nftables, ebpf (socket LB on),
        /// ebpf-no-socket-lb.
        #[arg(long, value_parser = parse_proxy)]
        proxy: Option<ProxyMode>,
    },
    /// Run the sweep a scenario declares (`sweep:`): every value x every proxy mode, each a full
    /// simulation, in parallel; writes rule_scaling.csv, sweep.json, charts and report.html.
    #[command(after_help = "Example:\n  cnisim sweep scenarios/rule-scaling.ron --out /tmp/sweep")]
    Sweep {
        scenario: PathBuf,
        /// Output directory [default: reports/<scenario name>-sweep]; replaced atomically.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Worker threads [default: one per core].
        #[arg(long)]
        jobs: Option<usize>,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
        /// Run only shard I of N (points I, I+N, I+2N ...), e.g. 2/4, on one machine of a batch;
        /// join the shards' directories with `cnisim merge`.
        #[arg(long, value_name = "I/N")]
        shard: Option<cnisim::sweep::Shard>,
    },
    /// Run the scenario under several CNIs (and proxy modes), each a full simulation with the
    /// same seed; writes one side-by-side report.html, compare.json, charts and CSVs.
    #[command(
        after_help = "Examples:\n  cnisim compare scenarios/quickstart.ron --cni all\n  cnisim compare scenarios/services.ron --cni flannel-vxlan,cilium-native --proxy iptables,ebpf\n  cnisim compare scenarios/compare-cnis.ron --shard 1/3 --out /tmp/c1"
    )]
    Compare {
        scenario: PathBuf,
        /// CNIs to compare: a,b,c or all [default: the scenario's compare: section].
        #[arg(long, value_parser = parse_cni_list)]
        cni: Option<CniList>,
        /// Proxy modes to compare: p,q or all [default: the compare: section's, else the
        /// scenario's proxy].
        #[arg(long, value_parser = parse_proxy_list)]
        proxy: Option<ProxyList>,
        /// Output directory [default: reports/<scenario name>-compare]; replaced atomically.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Worker threads [default: one per core].
        #[arg(long)]
        jobs: Option<usize>,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
        /// Run only shard I of N (combinations I, I+N, ...); join the shards with `cnisim merge`.
        #[arg(long, value_name = "I/N")]
        shard: Option<cnisim::sweep::Shard>,
    },
    /// Join the output directories of every shard of a sweep (or of a comparison) into the
    /// whole sweep's (or comparison's) outputs.
    #[command(after_help = "Example:\n  cnisim merge --out reports/rs reports/rs-1 reports/rs-2")]
    Merge {
        /// The shards' output directories (each holds sweep.json, or compare.json).
        #[arg(required = true)]
        shards: Vec<PathBuf>,
        /// Output directory [default: reports/<scenario name>-sweep, or -compare]; replaced
        /// atomically.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Check scenario files and report the first problem in each as file:line:col.
    #[command(after_help = "Example:\n  cnisim validate scenarios/*.ron")]
    Validate {
        #[arg(required = true)]
        scenarios: Vec<PathBuf>,
        /// Validate as if the scenario used this CNI.
        #[arg(long, value_parser = parse_cni)]
        cni: Option<Cni>,
        /// Validate as if the scenario used this proxy mode.
        #[arg(long, value_parser = parse_proxy)]
        proxy: Option<ProxyMode>,
    },
    /// Print a node's devices, addresses, routes, bridge FDB and neighbours like ip/bridge do.
    #[command(after_help = "Example:\n  cnisim describe scenarios/quickstart.ron --node node-1 --at 10ms")]
    Describe {
        scenario: PathBuf,
        /// Node name.
        #[arg(long)]
        node: String,
        /// Simulated time at which to show the state (learned FDB and ARP entries) [default:
        /// the end of the scenario]; "0s" shows the state as built.
        #[arg(long, value_parser = parse_duration)]
        at: Option<Duration>,
        /// Describe the node under another CNI than the scenario's.
        #[arg(long, value_parser = parse_cni)]
        cni: Option<Cni>,
        /// Describe the node under another proxy mode than the scenario's.
        #[arg(long, value_parser = parse_proxy)]
        proxy: Option<ProxyMode>,
    },
    /// Send one UDP datagram between two pods and print every hop it takes and why.
    #[command(
        after_help = "Example:\n  cnisim trace scenarios/quickstart.ron --from node-1-pod-1 --to node-2-pod-1"
    )]
    Trace {
        scenario: PathBuf,
        /// Source pod name.
        #[arg(long)]
        from: String,
        /// Destination pod name.
        #[arg(long)]
        to: String,
        /// UDP payload size in bytes.
        #[arg(long, default_value_t = 64)]
        size: u32,
        /// Simulated time at which to send the datagram [default: 0s]; the scenario runs until
        /// then (its changes, its BGP speakers), e.g. "15s" during a node's black hole.
        #[arg(long, value_parser = parse_duration)]
        at: Option<Duration>,
        /// Destination UDP port of a datagram to a pod or an external host [default: 5201], e.g.
        /// the port a NetworkPolicy names.
        #[arg(long)]
        port: Option<u16>,
        /// Trace under another CNI than the scenario's.
        #[arg(long, value_parser = parse_cni)]
        cni: Option<Cni>,
        /// Trace under another proxy mode than the scenario's.
        #[arg(long, value_parser = parse_proxy)]
        proxy: Option<ProxyMode>,
    },
}

fn parse_cni(s: &str) -> Result<Cni, String> {
    s.parse()
}

fn parse_proxy(s: &str) -> Result<ProxyMode, String> {
    s.parse()
}

/// `--cni a,b,c|all` of `compare` (a newtype: clap would read a `Vec` as repeated flags).
#[derive(Clone)]
struct CniList(Vec<Cni>);
#[derive(Clone)]
struct ProxyList(Vec<ProxyMode>);

fn parse_cni_list(s: &str) -> Result<CniList, String> {
    cnisim::compare::parse_cnis(s).map(CniList)
}

fn parse_proxy_list(s: &str) -> Result<ProxyList, String> {
    cnisim::compare::parse_proxies(s).map(ProxyList)
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    cnisim::units::parse_duration(s)
}

fn parse_memory(s: &str) -> Result<u64, String> {
    match if s == "0" { 0 } else { cnisim::units::parse_size(s)?.0 } {
        0 => Err("--max-memory 0 leaves no memory to simulate in; give e.g. 4GiB".into()),
        b => Ok(b),
    }
}

/// The process's resident set in bytes (Linux), for `cnisim::memory`.
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    kib_field(&status, "VmRSS:").map(|k| k * 1024)
}

/// The default memory limit: 80% of what the process may have, leaving room for the page
/// cache and other processes: the machine's available memory (`MemAvailable`, else
/// `MemTotal`), or less if a cgroup (`memory.max`, a container's limit) or `ulimit -v` says so
/// (of an address-space limit, three quarters: mappings run ahead of the memory in use).
fn default_memory_limit() -> Option<u64> {
    let read = |p: &str| std::fs::read_to_string(p).ok();
    let machine = read("/proc/meminfo").and_then(|info| {
        kib_field(&info, "MemAvailable:").or_else(|| kib_field(&info, "MemTotal:")).map(|k| k * 1024)
    });
    let cgroup = read("/sys/fs/cgroup/memory.max").and_then(|t| t.trim().parse::<u64>().ok());
    // "Max address space  <soft> <hard> bytes"
    let rlimit = read("/proc/self/limits").and_then(|t| {
        t.lines()
            .find_map(|l| l.strip_prefix("Max address space"))
            .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
            .map(|bytes| bytes / 4 * 3)
    });
    let least = [machine, cgroup, rlimit].into_iter().flatten().min()?;
    Some(least / 5 * 4)
}

/// `Name:   12345 kB` in a /proc file.
fn kib_field(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|l| l.strip_prefix(name)?.trim().strip_suffix("kB")?.trim().parse().ok())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cnisim::memory::set_probe(resident_bytes);
    cnisim::memory::set_cap(cli.max_memory.or_else(default_memory_limit));
    // Build stages on a terminal only; sweeps have their own bar.
    if std::io::IsTerminal::is_terminal(&std::io::stderr())
        && matches!(cli.command, Command::Run { .. } | Command::Describe { .. } | Command::Trace { .. })
    {
        cnisim::progress::enable();
    }
    let result = execute(cli.command);
    cnisim::progress::done();
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

fn execute(cmd: Command) -> Result<ExitCode, Error> {
    match cmd {
        Command::Run { scenario, out, pcap, seed, cni, proxy } => {
            let o = app::run(&scenario, &app::RunOptions { out, pcap, seed, cni, proxy })?;
            cnisim::progress::done();
            let s = &o.summary;
            println!(
                "simulated {} ({}, {} nodes, {} pods) for {}: {} events, {} packet hops in {:.2}s",
                s.scenario.name,
                s.scenario.cni,
                s.scenario.nodes,
                s.scenario.pods,
                Duration::from_nanos(s.scenario.duration_ns),
                s.totals.events,
                s.totals.packet_hops,
                s.run.wall_seconds
            );
            for f in &s.flows {
                let what = match (&f.tcp, &f.rtt) {
                    // A request/response flow: its transactions and their times.
                    (Some(tcp), Some(rtt)) => format!(
                        "{} transactions  p50 {}  p99 {}{}",
                        f.transactions,
                        Duration::from_nanos(rtt.p50_ns),
                        Duration::from_nanos(rtt.p99_ns),
                        match tcp.refused {
                            0 => String::new(),
                            n => format!("  {n} connections refused"),
                        }
                    ),
                    (Some(tcp), None) => {
                        let goodput: f64 = tcp.streams.iter().map(|s| s.goodput_bps).sum();
                        let retx: u64 = tcp.streams.iter().map(|s| s.retransmits[0]).sum();
                        let n = tcp.streams.len();
                        format!(
                            "{n} stream{}  goodput {}  {retx} retransmissions",
                            if n == 1 { "" } else { "s" },
                            cnisim::fmt::bps(goodput)
                        )
                    }
                    (None, _) => format!(
                        "delivered {}/{}  p50 {}  p99 {}",
                        f.delivered,
                        f.sent,
                        Duration::from_nanos(f.latency.p50_ns),
                        Duration::from_nanos(f.latency.p99_ns)
                    ),
                };
                println!("  flow {:>3} {:<14} {:<40} {what}", f.id, f.workload, f.describe());
            }
            if let Some(b) = &s.bgp {
                println!(
                    "  bgp {} ({} of {} sessions up): {} messages, {} routes",
                    b.topology,
                    b.sessions_established,
                    b.sessions,
                    b.messages.values().sum::<u64>(),
                    b.routes_announced
                );
                for c in &b.convergence {
                    let lost: u64 = c.drops.values().sum();
                    println!(
                        "    {:<24} converged after {}  {lost} datagrams lost",
                        c.cause,
                        Duration::from_nanos(c.duration_ns)
                    );
                    if let Some(r) = &c.reached {
                        println!(
                            "    {:<24} its pods reachable from {} nodes after {} (first), {} (median), {} (last)",
                            "",
                            r.peers,
                            Duration::from_nanos(r.first_ns),
                            Duration::from_nanos(r.median_ns),
                            Duration::from_nanos(r.last_ns)
                        );
                    }
                }
                for (cause, since) in &b.unconverged {
                    println!(
                        "    {cause:<24} not converged by the end (since {})",
                        Duration::from_nanos(*since)
                    );
                }
            }
            // What the scenario asks for that the cluster cannot do (a CNI and proxy that do not
            // fit, ports that ran out): the report says so too, but a flow with nothing
            // delivered needs its reason where the figure is read.
            for w in &s.scenario.warnings {
                eprintln!("warning: {w}");
            }
            println!("report: {}", o.out_dir.join("report.html").display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Merge { shards, out } if shards.first().is_some_and(|d| app::is_compare_dir(d)) => {
            let (dir, r) = app::merge_compare(out, &shards)?;
            println!(
                "merged {} shards of {}: {} combinations",
                shards.len(),
                r.scenario.name,
                r.combinations.len()
            );
            println!("report: {}", dir.join("report.html").display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Compare { scenario, cni, proxy, out, jobs, quiet, shard } => {
            if jobs == Some(0) {
                return Err(Error::Usage("--jobs 0 runs nothing; give at least 1".into()));
            }
            let opts = cnisim::compare::Options {
                cnis: cni.map(|c| c.0),
                proxies: proxy.map(|p| p.0),
                threads: jobs,
                progress: !quiet,
                shard,
            };
            let (dir, r) = app::compare(&scenario, out, &opts)?;
            let works = r.combinations.iter().filter(|c| c.status == cnisim::compare::Status::Works).count();
            println!(
                "compared {} under {} combinations ({works} work here) in {:.1}s on {} threads",
                r.scenario.name,
                r.combinations.len(),
                r.run.wall_seconds,
                r.run.threads
            );
            for v in &r.verdicts {
                println!(
                    "  {}: {}",
                    v.question,
                    if v.answer.is_empty() { "none".into() } else { v.answer.join(", ") }
                );
            }
            println!("report: {}", dir.join("report.html").display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Merge { shards, out } => {
            let (dir, r) = app::merge(out, &shards)?;
            println!("merged {} shards of {}: {} points", shards.len(), r.scenario, r.points.len());
            println!("report: {}", dir.join("report.html").display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Sweep { scenario, out, jobs, quiet, shard } => {
            if jobs == Some(0) {
                return Err(Error::Usage("--jobs 0 runs nothing; give at least 1".into()));
            }
            let (dir, r) = app::sweep(&scenario, out, jobs, !quiet, shard)?;
            if let (Some(s), true) = (r.shard, r.points.is_empty()) {
                eprintln!(
                    "note: shard {}/{} ran no point: the sweep has {} points, fewer than {} shards; its directory \
                     is written anyway so that `cnisim merge` finds every shard",
                    s.index, s.count, r.total_points, s.count
                );
            }
            println!(
                "swept {} over {} values x {} proxy modes: {} simulations in {:.1}s on {} threads",
                r.scenario,
                r.values.len(),
                r.proxies.len(),
                r.points.len(),
                r.run.wall_seconds,
                r.run.threads
            );
            println!("report: {}", dir.join("report.html").display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Validate { scenarios, cni, proxy } => {
            // Every file is checked and every problem printed; the exit code is the first's.
            let mut code = None;
            for p in &scenarios {
                match app::validate(p, app::Choice { cni, proxy }) {
                    Ok(line) => println!("{line}"),
                    Err(e) => {
                        eprintln!("error: {e}");
                        code.get_or_insert(ExitCode::from(e.exit_code() as u8));
                    }
                }
            }
            Ok(code.unwrap_or(ExitCode::SUCCESS))
        }
        Command::Describe { scenario, node, at, cni, proxy } => {
            let text = app::describe(&scenario, &node, at, app::Choice { cni, proxy })?;
            cnisim::progress::done();
            print!("{text}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Trace { scenario, from, to, size, at, port, cni, proxy } => {
            let t = app::trace_at(&scenario, &from, &to, size, at, port, app::Choice { cni, proxy })?;
            cnisim::progress::done();
            print!("{}", t.render());
            Ok(ExitCode::SUCCESS)
        }
    }
}
