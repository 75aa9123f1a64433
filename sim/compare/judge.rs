//! What the combinations' figures say together: whether each works here, the headline table
//! with the best of each column, and the verdicts.
//!
//! Pure functions of the combinations, run after the simulations and again after a merge.
//! A combination **works** when every workload delivered at least 99 % of the share the best
//! combination delivered for it; below that it **loses packets**, below half of it (or with
//! nothing delivered) it **does not work here**. Only the combinations with the best status
//! present compete for "best" (normally: those that work), so a CNI that drops a workload
//! cannot win on the latency of what it did deliver.
//!
//! The verdicts may name what each CNI does (the mechanism words below are descriptions, not
//! data); every number in them is a [`Figure`] read from the figures.

use serde_json::Value;

use super::{Better, Column, Combination, CompareResult, Figure, Row, Status, Table, Verdict, Whole};
use crate::fmt;

/// A share of the best below this loses packets; below [`FAILS`] does not work.
const LOSES: f64 = 0.99;
const FAILS: f64 = 0.5;

pub(super) fn assemble(w: Whole) -> CompareResult {
    let mut combinations = w.combinations;
    let mut works_figures = Vec::new();
    let judged: Vec<(Status, String, Vec<Figure>)> =
        (0..combinations.len()).map(|i| status(&combinations, i)).collect();
    for (c, (s, reason, figs)) in combinations.iter_mut().zip(judged) {
        c.status = s;
        c.status_reason = reason;
        works_figures.extend(figs);
    }
    let values: Vec<Option<Value>> =
        combinations.iter().map(|c| c.figures.as_ref().and_then(|f| serde_json::to_value(f).ok())).collect();
    let ctx = Ctx { combos: &combinations, values: &values, facts: &w.scenario };
    let table = table(&ctx);
    let verdicts = verdicts(&ctx, works_figures);
    CompareResult {
        schema_version: super::SCHEMA_VERSION,
        scenario: w.scenario,
        cnis: w.cnis,
        proxies: w.proxies,
        combinations,
        table,
        verdicts,
        shard: w.shard,
        total_combinations: w.total_combinations,
        run: w.run,
    }
}

struct Ctx<'a> {
    combos: &'a [Combination],
    /// Each combination's figures as JSON, for the pointers.
    values: &'a [Option<Value>],
    facts: &'a super::ScenarioFacts,
}

impl Ctx<'_> {
    /// The number at `source` (a pointer into combination `i`'s figures), if there is one.
    fn get(&self, i: usize, source: &str) -> Option<f64> {
        self.values[i].as_ref()?.pointer(source)?.as_f64()
    }

    /// A figure of combination `i`, shown as `shown(value)`.
    fn fig(&self, i: usize, source: &str, shown: impl Fn(f64) -> String) -> Option<Figure> {
        let value = self.get(i, source)?;
        Some(Figure { at: at(i, source), over: None, value, shown: shown(value) })
    }

    /// The ratio of `source` in combination `i` to the same in `j`.
    fn ratio(&self, i: usize, j: usize, source: &str) -> Option<Figure> {
        let (a, b) = (self.get(i, source)?, self.get(j, source)?);
        (b != 0.0).then(|| Figure {
            at: at(i, source),
            over: Some(at(j, source)),
            value: a / b,
            shown: fmt::ratio(a / b),
        })
    }

    /// The combinations that compete for "best": those with the best status any run reached.
    fn candidates(&self) -> (Option<Status>, Vec<usize>) {
        let best = self.combos.iter().filter(|c| c.figures.is_some()).map(|c| c.status).min();
        (best, (0..self.combos.len()).filter(|&i| Some(self.combos[i].status) == best).collect())
    }

    fn label(&self, i: usize) -> &str {
        &self.combos[i].label
    }
}

/// `/combinations/<i>/figures<source>`.
fn at(i: usize, source: &str) -> String {
    format!("/combinations/{i}/figures{source}")
}

/// Escapes a key for a JSON pointer (RFC 6901).
fn key(k: &str) -> String {
    k.replace('~', "~0").replace('/', "~1")
}

// ---- works here ----

/// Combination `i` against the others: its status, why, and the figures the reason states.
fn status(combos: &[Combination], i: usize) -> (Status, String, Vec<Figure>) {
    let c = &combos[i];
    let Some(f) = &c.figures else {
        let m = c.invalid.clone().unwrap_or_default();
        return (Status::CannotBeSetUp, format!("the scenario cannot be set up with it: {m}"), Vec::new());
    };
    let mut status = Status::Works;
    let mut parts = Vec::new();
    let mut figs = Vec::new();
    for (wi, w) in f.workloads.iter().enumerate() {
        let Some(share) = w.delivered_pct else { continue };
        let best = combos
            .iter()
            .filter_map(|o| o.figures.as_ref()?.workloads.get(wi)?.delivered_pct)
            .fold(0.0, f64::max);
        let this = if best <= 0.0 || share < best * FAILS {
            Status::DoesNotWork
        } else if share < best * LOSES {
            Status::LosesPackets
        } else {
            continue;
        };
        status = status.max(this);
        let src = |field: &str| format!("/workloads/{wi}/{field}");
        let delivered = Figure {
            at: at(i, &src("delivered")),
            over: None,
            value: w.delivered as f64,
            shown: fmt::count(w.delivered),
        };
        let sent =
            Figure { at: at(i, &src("sent")), over: None, value: w.sent as f64, shown: fmt::count(w.sent) };
        let mut part = format!("{}: {} of {} datagrams delivered", w.name, delivered.shown, sent.shown);
        figs.extend([delivered, sent]);
        let drops: Vec<String> = w
            .drops_by_reason
            .iter()
            .map(|(r, n)| {
                let fig = Figure {
                    at: at(i, &format!("/workloads/{wi}/drops_by_reason/{}", key(r))),
                    over: None,
                    value: *n as f64,
                    shown: fmt::count(*n),
                };
                let text = format!("{r} {}", fig.shown);
                figs.push(fig);
                text
            })
            .collect();
        if !drops.is_empty() {
            part.push_str(&format!(", dropped as {}", drops.join(", ")));
        }
        if w.in_flight > 0 {
            let fig = Figure {
                at: at(i, &src("in_flight")),
                over: None,
                value: w.in_flight as f64,
                shown: fmt::count(w.in_flight),
            };
            part.push_str(&format!(", {} still queued or in flight when the run ended", fig.shown));
            figs.push(fig);
        }
        parts.push(part);
    }
    if status == Status::Works {
        return (status, String::new(), Vec::new());
    }
    let mut reason = parts.join("; ");
    if let Some(first) = f.warnings.first() {
        let more = if f.warnings.len() > 1 { " (and more like it)" } else { "" };
        reason.push_str(&format!("; the CNI logged: {first}{more}"));
    }
    (status, reason, figs)
}

// ---- the headline table ----

/// A column as data: where its value sits in a combination's figures, and when it counts.
struct Measure {
    key: String,
    title: String,
    unit: &'static str,
    better: Better,
    workload: Option<String>,
    source: String,
    /// The value counts only when the number here is above zero (e.g. latency samples).
    when: Option<String>,
}

fn measures(ctx: &Ctx) -> Vec<Measure> {
    let mut out = Vec::new();
    let m = |key: String, title: String, unit, better, source: String, when: Option<String>| Measure {
        key,
        title,
        unit,
        better,
        workload: None,
        source,
        when,
    };
    for (wi, w) in ctx.facts.workloads.iter().enumerate() {
        let n = &w.name;
        let s = |f: &str| format!("/workloads/{wi}/{f}");
        let mut per = if w.is_request_response() {
            vec![
                m(
                    format!("{n}.rtt_p50"),
                    format!("{n}: RTT p50"),
                    "ns",
                    Better::Lower,
                    s("rtt/p50_ns"),
                    Some(s("rtt/count")),
                ),
                m(
                    format!("{n}.rtt_p99"),
                    format!("{n}: RTT p99"),
                    "ns",
                    Better::Lower,
                    s("rtt/p99_ns"),
                    Some(s("rtt/count")),
                ),
                m(
                    format!("{n}.tps"),
                    format!("{n}: transactions/s"),
                    "1/s",
                    Better::Higher,
                    s("transactions_per_s"),
                    None,
                ),
            ]
        } else {
            vec![
                m(
                    format!("{n}.throughput"),
                    format!("{n}: throughput"),
                    "bit/s",
                    Better::Higher,
                    s("throughput_bps"),
                    None,
                ),
                m(
                    format!("{n}.p50"),
                    format!("{n}: one-way p50"),
                    "ns",
                    Better::Lower,
                    s("latency/p50_ns"),
                    Some(s("latency/count")),
                ),
                m(
                    format!("{n}.p99"),
                    format!("{n}: one-way p99"),
                    "ns",
                    Better::Lower,
                    s("latency/p99_ns"),
                    Some(s("latency/count")),
                ),
            ]
        };
        for x in &mut per {
            x.workload = Some(n.clone());
        }
        out.extend(per);
    }
    let s = |x: &str| x.to_string();
    out.push(m(
        s("cpu_per_datagram"),
        s("CPU per datagram, all nodes"),
        "ns",
        Better::Lower,
        s("/cpu_ns_per_datagram"),
        None,
    ));
    out.push(m(
        s("gbps_per_core"),
        s("Throughput per busy core, all nodes"),
        "(Gbit/s)/core",
        Better::Higher,
        s("/gbps_per_core"),
        None,
    ));
    for (role, name) in [("sender", &ctx.facts.sender_node), ("receiver", &ctx.facts.receiver_node)] {
        let Some(name) = name else { continue };
        out.push(m(
            format!("{role}.cpu_per_packet"),
            format!("CPU per packet, {name} ({role})"),
            "ns",
            Better::Lower,
            format!("/{role}/cpu_ns_per_packet"),
            Some(format!("/{role}/packets")),
        ));
        out.push(m(
            format!("{role}.cores_per_gbps"),
            format!("CPU per Gbit/s, {name} ({role})"),
            "cores/(Gbit/s)",
            Better::Lower,
            format!("/{role}/cores_per_gbps"),
            None,
        ));
    }
    out.push(m(
        s("encap_bytes"),
        s("Encapsulation, B per packet"),
        "B",
        Better::Lower,
        s("/encap_overhead_bytes"),
        None,
    ));
    if let Some((k, payload)) = common_payload(ctx) {
        out.push(m(
            s("encap_pct"),
            format!("Encapsulation, % of a {} B payload's frame", fmt::count(u64::from(payload))),
            "%",
            Better::Lower,
            format!("/overhead/{k}/encap_pct"),
            None,
        ));
    }
    out.push(m(s("pod_mtu"), s("Pod MTU"), "B", Better::Higher, s("/pod_mtu"), None));
    out.push(m(s("dropped"), s("Datagrams dropped"), "count", Better::Lower, s("/dropped"), None));
    if ctx.combos.iter().any(|c| c.figures.as_ref().is_some_and(|f| f.masquerade.is_some())) {
        out.push(m(
            s("insert_failed"),
            s("Connections lost to a masquerade clash (insert_failed)"),
            "count",
            Better::Lower,
            s("/masquerade/insert_failed"),
            None,
        ));
    }
    if ctx.facts.services > 0 {
        out.push(m(
            s("rules"),
            s("Service rules on a node"),
            "count",
            Better::Lower,
            s("/services/rules_installed"),
            None,
        ));
        out.push(m(
            s("service_connection_cpu"),
            s("CPU per new connection to a Service"),
            "ns",
            Better::Lower,
            s("/services/cpu_ns_per_service_connection"),
            None,
        ));
        out.push(m(
            s("service_first_p50"),
            s("First datagram to a Service, p50"),
            "ns",
            Better::Lower,
            s("/services/first_packet_p50_ns"),
            None,
        ));
        out.push(m(
            s("sync"),
            s("Rules in place after a change, slowest node"),
            "ns",
            Better::Lower,
            s("/services/sync_ns_max"),
            None,
        ));
    }
    out
}

/// The largest probe payload that reached the NIC in every run, and its index (the probe's
/// sizes are a prefix of one list, so the index is the same in every run).
fn common_payload(ctx: &Ctx) -> Option<(usize, u32)> {
    let runs: Vec<&super::Figures> = ctx.combos.iter().filter_map(|c| c.figures.as_ref()).collect();
    let first = runs.first()?;
    (0..first.overhead.len()).rev().find_map(|k| {
        let p = first.overhead[k].payload;
        runs.iter()
            .all(|f| f.overhead.get(k).is_some_and(|o| o.payload == p && o.underlay_frame > 0))
            .then_some((k, p))
    })
}

/// The value of measure `m` in combination `i`.
fn value(ctx: &Ctx, i: usize, m: &Measure) -> Option<f64> {
    if let Some(w) = &m.when {
        if ctx.get(i, w).is_none_or(|n| n <= 0.0) {
            return None;
        }
    }
    ctx.get(i, &m.source)
}

/// The best of `values` among `candidates`.
fn best_of(values: &[Option<f64>], candidates: &[usize], better: Better) -> Option<f64> {
    let vals = candidates.iter().filter_map(|&i| values[i]);
    match better {
        Better::Lower => vals.reduce(f64::min),
        Better::Higher => vals.reduce(f64::max),
    }
}

fn table(ctx: &Ctx) -> Table {
    let (_, candidates) = ctx.candidates();
    let ms: Vec<Measure> = measures(ctx)
        .into_iter()
        .filter(|m| (0..ctx.combos.len()).any(|i| value(ctx, i, m).is_some()))
        .collect();
    let cols: Vec<Vec<Option<f64>>> =
        ms.iter().map(|m| (0..ctx.combos.len()).map(|i| value(ctx, i, m)).collect()).collect();
    // A column where every candidate has the same value has no best to mark.
    let bests: Vec<Option<f64>> = ms
        .iter()
        .zip(&cols)
        .map(|(m, vals)| {
            let best = best_of(vals, &candidates, m.better)?;
            let all_tie = candidates.iter().all(|&i| vals[i].is_none_or(|v| v == best));
            (!all_tie || candidates.len() == 1).then_some(best)
        })
        .collect();
    let rows = (0..ctx.combos.len())
        .map(|i| Row {
            index: ctx.combos[i].index,
            label: ctx.combos[i].label.clone(),
            status: ctx.combos[i].status,
            values: cols.iter().map(|c| c[i]).collect(),
            best: cols
                .iter()
                .zip(&bests)
                .map(|(c, b)| candidates.contains(&i) && c[i].is_some() && c[i] == *b)
                .collect(),
            ratio: cols
                .iter()
                .zip(&bests)
                .map(|(c, b)| match (c[i], b) {
                    (Some(v), Some(b)) if *b != 0.0 => Some(v / b),
                    _ => None,
                })
                .collect(),
        })
        .collect();
    let columns = ms
        .into_iter()
        .map(|m| Column {
            key: m.key,
            title: m.title,
            unit: m.unit.into(),
            better: m.better,
            workload: m.workload,
            source: m.source,
        })
        .collect();
    Table { columns, rows }
}

// ---- verdicts ----

/// The winners (every candidate at the best value) and the worst candidate of `source`.
struct Ranked {
    winners: Vec<usize>,
    /// The first candidate at the worst value (`None` when all tie), and every one there.
    worst: Option<usize>,
    losers: Vec<usize>,
}

impl Ranked {
    fn loser_names(&self, ctx: &Ctx) -> String {
        list(&self.losers.iter().map(|&i| ctx.label(i)).collect::<Vec<_>>())
    }
}

fn rank(ctx: &Ctx, source: &str, when: Option<&str>, better: Better) -> Option<Ranked> {
    let (_, candidates) = ctx.candidates();
    let vals: Vec<Option<f64>> = (0..ctx.combos.len())
        .map(|i| {
            if let Some(w) = when {
                if ctx.get(i, w).is_none_or(|n| n <= 0.0) {
                    return None;
                }
            }
            ctx.get(i, source)
        })
        .collect();
    let best = best_of(&vals, &candidates, better)?;
    let flip = match better {
        Better::Lower => Better::Higher,
        Better::Higher => Better::Lower,
    };
    let worst_v = best_of(&vals, &candidates, flip)?;
    let winners: Vec<usize> = candidates.iter().copied().filter(|&i| vals[i] == Some(best)).collect();
    let losers: Vec<usize> = if worst_v == best {
        Vec::new()
    } else {
        candidates.iter().copied().filter(|&i| vals[i] == Some(worst_v)).collect()
    };
    Some(Ranked { winners, worst: losers.first().copied(), losers })
}

/// "a", "a and b", "a, b and c".
fn list(names: &[&str]) -> String {
    match names {
        [] => String::new(),
        [one] => one.to_string(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

fn verdicts(ctx: &Ctx, works_figures: Vec<Figure>) -> Vec<Verdict> {
    let mut out = vec![works(ctx, works_figures)];
    if ctx.combos.iter().all(|c| c.figures.is_none()) {
        return out;
    }
    for (wi, w) in ctx.facts.workloads.iter().enumerate() {
        out.extend(latency(ctx, wi, w));
    }
    out.extend(throughput_per_core(ctx));
    out.extend(cpu_per_gbps(ctx));
    out.extend(overhead(ctx));
    out.extend(service_connection(ctx));
    out
}

/// The words in front of a ranking when no combination works fully.
fn among(ctx: &Ctx) -> String {
    match ctx.candidates().0 {
        Some(Status::Works) | None => String::new(),
        Some(s) => format!("No combination works fully here; among those that {}: ", s.words()),
    }
}

fn works(ctx: &Ctx, figures: Vec<Figure>) -> Verdict {
    let n = ctx.combos.len();
    let good: Vec<&str> =
        ctx.combos.iter().filter(|c| c.status == Status::Works).map(|c| c.label.as_str()).collect();
    let mut text = if good.len() == n {
        format!(
            "All {n} work here: every workload delivered at least {} % of what the best combination delivered.",
            LOSES * 100.0
        )
    } else if good.is_empty() {
        format!("None of the {n} works fully here.")
    } else {
        format!(
            "{} of {n} work here (every workload delivered at least {} % of what the best combination delivered): {}.",
            good.len(),
            LOSES * 100.0,
            list(&good)
        )
    };
    for c in ctx.combos.iter().filter(|c| c.status != Status::Works) {
        text.push_str(&format!(" {} {}: {}.", c.label, c.status.words(), c.status_reason));
    }
    Verdict {
        key: "works".into(),
        question: "Works on this underlay".into(),
        answer: good.iter().map(|s| s.to_string()).collect(),
        text,
        figures,
    }
}

fn latency(ctx: &Ctx, wi: usize, w: &super::WorkloadFacts) -> Option<Verdict> {
    let rr = w.is_request_response();
    let (what, stats) = if rr { ("RTT", "rtt") } else { ("one-way latency", "latency") };
    let p50 = format!("/workloads/{wi}/{stats}/p50_ns");
    let p99 = format!("/workloads/{wi}/{stats}/p99_ns");
    let when = format!("/workloads/{wi}/{stats}/count");
    let r = rank(ctx, &p50, Some(&when), Better::Lower)?;
    let first = r.winners[0];
    let mut figures = Vec::new();
    let b50 = ctx.fig(first, &p50, |v| fmt::ns(v as u64))?;
    let b99 = ctx.fig(first, &p99, |v| fmt::ns(v as u64))?;
    let names: Vec<&str> = r.winners.iter().map(|&i| ctx.label(i)).collect();
    let mut text = format!(
        "{}{}: {what} p50 {}, p99 {}; {}.",
        among(ctx),
        list(&names),
        b50.shown,
        b99.shown,
        mechanism(&ctx.combos[first].cni)
    );
    figures.extend([b50, b99]);
    if let Some(worst) = r.worst {
        let v = ctx.fig(worst, &p50, |v| fmt::ns(v as u64))?;
        let ratio = ctx.ratio(worst, first, &p50)?;
        text.push_str(&format!(
            " Slowest: {} at {} p50, {} the best; {}.",
            r.loser_names(ctx),
            v.shown,
            ratio.shown,
            mechanism(&ctx.combos[worst].cni)
        ));
        figures.extend([v, ratio]);
    }
    Some(Verdict {
        key: format!("latency:{}", w.name),
        question: format!(
            "Lowest latency: {} ({})",
            w.name,
            if rr { "request/response round trip" } else { "one way" }
        ),
        answer: names.iter().map(|s| s.to_string()).collect(),
        text,
        figures,
    })
}

fn throughput_per_core(ctx: &Ctx) -> Option<Verdict> {
    let src = "/gbps_per_core";
    let r = rank(ctx, src, None, Better::Higher)?;
    let first = r.winners[0];
    let gbps = |v: f64| format!("{} Gbit/s", fmt::sig3(v));
    let b = ctx.fig(first, src, gbps)?;
    let names: Vec<&str> = r.winners.iter().map(|&i| ctx.label(i)).collect();
    let mut text = format!(
        "{}{}: {} of payload per busy core (all nodes, kernel and userspace CPU); {}.",
        among(ctx),
        list(&names),
        b.shown,
        mechanism(&ctx.combos[first].cni)
    );
    let mut figures = vec![b];
    if let Some(worst) = r.worst {
        let v = ctx.fig(worst, src, gbps)?;
        let ratio = ctx.ratio(worst, first, "/cpu_ns_per_datagram")?;
        text.push_str(&format!(
            " Least: {} at {}; {}: {} the CPU per delivered datagram of {} on this scenario.",
            r.loser_names(ctx),
            v.shown,
            mechanism(&ctx.combos[worst].cni),
            ratio.shown,
            ctx.label(first)
        ));
        figures.extend([v, ratio]);
        let (words, steps) = top_steps(ctx, worst);
        if !steps.is_empty() {
            text.push_str(&format!(" Where its datagram's CPU goes: {words}."));
            figures.extend(steps);
        }
    }
    Some(Verdict {
        key: "throughput_per_core".into(),
        question: "Highest throughput per core".into(),
        answer: names.iter().map(|s| s.to_string()).collect(),
        text,
        figures,
    })
}

/// The three kernel steps that took most of combination `i`'s CPU per delivered datagram, in
/// words ("userspace 2.10 µs, socket 1.00 µs, copy 800 ns") and as figures.
fn top_steps(ctx: &Ctx, i: usize) -> (String, Vec<Figure>) {
    let Some(f) = ctx.combos[i].figures.as_ref() else { return (String::new(), Vec::new()) };
    let mut steps: Vec<(&String, f64)> = f.cpu_ns_per_datagram_by_step.iter().map(|(k, &v)| (k, v)).collect();
    // Most first; equal times in key order, so the words never depend on anything else.
    steps.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    let figures: Vec<Figure> = steps
        .iter()
        .take(3)
        .filter_map(|(k, _)| ctx.fig(i, &format!("/cpu_ns_per_datagram_by_step/{}", key(k)), fmt::ns_f))
        .collect();
    let words =
        steps.iter().zip(&figures).map(|((k, _), fig)| format!("{k} {}", fig.shown)).collect::<Vec<_>>();
    (words.join(", "), figures)
}

fn cpu_per_gbps(ctx: &Ctx) -> Option<Verdict> {
    let sender = ctx.facts.sender_node.as_ref()?;
    let src = "/ends_cores_per_gbps";
    let r = rank(ctx, src, None, Better::Lower)?;
    let first = r.winners[0];
    let cores = |v: f64| format!("{} cores", fmt::sig3(v));
    let b = ctx.fig(first, src, cores)?;
    let names: Vec<&str> = r.winners.iter().map(|&i| ctx.label(i)).collect();
    let mut figures = Vec::new();
    let ends = match &ctx.facts.receiver_node {
        Some(receiver) => {
            let s = ctx.fig(first, "/sender/cores_per_gbps", fmt::sig3)?;
            let rcv = ctx.fig(first, "/receiver/cores_per_gbps", fmt::sig3)?;
            let text = format!(
                "at the two ends of {sender} → {receiver} ({} on the sender, {} on the receiver)",
                s.shown, rcv.shown
            );
            figures.extend([s, rcv]);
            text
        }
        None => format!("on {sender}"),
    };
    let mut text = format!(
        "{}{}: {} per Gbit/s of payload {ends}; {}.",
        among(ctx),
        list(&names),
        b.shown,
        mechanism(&ctx.combos[first].cni)
    );
    figures.insert(0, b);
    if let Some(worst) = r.worst {
        let v = ctx.fig(worst, src, cores)?;
        let ratio = ctx.ratio(worst, first, src)?;
        text.push_str(&format!(
            " Most: {} with {}, {} the best; {}.",
            r.loser_names(ctx),
            v.shown,
            ratio.shown,
            mechanism(&ctx.combos[worst].cni)
        ));
        figures.extend([v, ratio]);
    }
    Some(Verdict {
        key: "cpu_per_gbps".into(),
        question: "Least CPU per Gbit/s".into(),
        answer: names.iter().map(|s| s.to_string()).collect(),
        text,
        figures,
    })
}

fn overhead(ctx: &Ctx) -> Option<Verdict> {
    let src = "/encap_overhead_bytes";
    let r = rank(ctx, src, None, Better::Lower)?;
    let first = r.winners[0];
    let bytes = |v: f64| format!("{} B", fmt::signed(v as i64));
    let b = ctx.fig(first, src, bytes)?;
    let names: Vec<&str> = r.winners.iter().map(|&i| ctx.label(i)).collect();
    let how = if b.value == 0.0 {
        "no encapsulation".to_string()
    } else {
        mechanism(&ctx.combos[first].cni).to_string()
    };
    let mut text = format!("{}{}: {} per packet on the underlay ({how}).", among(ctx), list(&names), b.shown);
    let mut figures = vec![b];
    if let Some(worst) = r.worst {
        let v = ctx.fig(worst, src, bytes)?;
        text.push_str(&format!(" Most: {} with {} per packet", r.loser_names(ctx), v.shown));
        figures.push(v);
        if let Some((k, _)) = common_payload(ctx) {
            let payload = ctx.fig(worst, &format!("/overhead/{k}/payload"), |v| fmt::count(v as u64))?;
            let pct = ctx.fig(worst, &format!("/overhead/{k}/encap_pct"), |v| format!("{v:.1} %"))?;
            text.push_str(&format!(", {} more bytes on the wire at {} B payload", pct.shown, payload.shown));
            figures.extend([pct, payload]);
        }
        text.push_str(&format!("; {}.", mechanism(&ctx.combos[worst].cni)));
    }
    // The pod MTU follows from the overhead: what the CNI leaves the pods.
    if let Some(m) = rank(ctx, "/pod_mtu", None, Better::Higher) {
        let mtu = |v: f64| format!("{} B", fmt::count(v as u64));
        let top = ctx.fig(m.winners[0], "/pod_mtu", mtu)?;
        let tops: Vec<&str> = m.winners.iter().map(|&i| ctx.label(i)).collect();
        if let Some(low) = m.worst {
            let l = ctx.fig(low, "/pod_mtu", mtu)?;
            text.push_str(&format!(
                " Pods get an MTU of {} with {}; {} {} them {}.",
                top.shown,
                list(&tops),
                m.loser_names(ctx),
                if m.losers.len() > 1 { "leave" } else { "leaves" },
                l.shown
            ));
            figures.extend([top, l]);
        }
    }
    Some(Verdict {
        key: "overhead".into(),
        question: "Least overhead".into(),
        answer: names.iter().map(|s| s.to_string()).collect(),
        text,
        figures,
    })
}

fn service_connection(ctx: &Ctx) -> Option<Verdict> {
    let src = "/services/cpu_ns_per_service_connection";
    let r = rank(ctx, src, None, Better::Lower)?;
    let first = r.winners[0];
    let b = ctx.fig(first, src, fmt::ns_f)?;
    let rules = ctx.fig(first, "/services/rules_evaluated_mean", |v| fmt::decimal(v, 1))?;
    let names: Vec<&str> = r.winners.iter().map(|&i| ctx.label(i)).collect();
    let mut text = format!(
        "{}{}: {} of CPU per new connection to a Service, {} rules evaluated on average; {}.",
        among(ctx),
        list(&names),
        b.shown,
        rules.shown,
        proxy_mechanism(&ctx.combos[first].cni, &ctx.combos[first].proxy)
    );
    let mut figures = vec![b, rules];
    if let Some(worst) = r.worst {
        let v = ctx.fig(worst, src, fmt::ns_f)?;
        let ratio = ctx.ratio(worst, first, src)?;
        text.push_str(&format!(
            " Dearest: {} at {}, {} the best; {}.",
            r.loser_names(ctx),
            v.shown,
            ratio.shown,
            proxy_mechanism(&ctx.combos[worst].cni, &ctx.combos[worst].proxy)
        ));
        figures.extend([v, ratio]);
    }
    Some(Verdict {
        key: "service_connection".into(),
        question: "Cheapest new connection to a Service".into(),
        answer: names.iter().map(|s| s.to_string()).collect(),
        text,
        figures,
    })
}

/// What a CNI does with a packet between pods on two nodes, in a few words (from the plugins'
/// documentation and `docs/cnis.md`; no figures).
pub fn mechanism(cni: &str) -> &'static str {
    match cni {
        "flannel-udp" => {
            "every packet crosses to flanneld in userspace and back (tun device and UDP socket: two system \
             calls and two copies per packet)"
        }
        "flannel-vxlan" => "the kernel wraps each packet in VXLAN on flannel.1 (outer Ethernet, IPv4, UDP, VXLAN)",
        "flannel-host-gw" => "plain routing via the other node's address, no encapsulation; it needs every node on one L2 segment",
        "calico-bgp" => "plain routing from the pod's veth (proxy ARP, a route per IPAM block), no bridge, no encapsulation",
        "calico-ipip" => "an outer IPv4 header on every packet between nodes (IP-in-IP on tunl0)",
        "calico-ipip-crosssubnet" => "IP-in-IP between subnets only, plain routing within one",
        "calico-vxlan" => "VXLAN on vxlan.calico for every packet between nodes",
        "calico-vxlan-crosssubnet" => "VXLAN between subnets only, plain routing within one",
        "cilium-vxlan" => "eBPF programs on the pod's veth and a VXLAN tunnel",
        "cilium-geneve" => "eBPF programs on the pod's veth and a Geneve tunnel",
        "cilium-native" => "eBPF programs on the pod's veth and native routing, no encapsulation",
        "weave-sleeve" => "every packet crosses to the Weave router in userspace and back (sleeve over UDP)",
        "weave-fastdp" => "the Open vSwitch kernel datapath with VXLAN",
        "macvlan" => "pods sit on the node's NIC directly (macvlan): no bridge, no host routing, no host netfilter",
        "ipvlan-l3" => "pods share the node's NIC (ipvlan L3), routed in the host without netfilter",
        _ => "as the plugin builds it",
    }
}

/// What a combination does for a connection's first packet to a Service, in a few words. With
/// a Cilium CNI, pods' ClusterIP traffic is translated by Cilium's own program whatever
/// kube-proxy mode runs (ARCHITECTURE.md, "Departures").
fn proxy_mechanism(cni: &str, proxy: &str) -> &'static str {
    if cni.starts_with("cilium-") && !proxy.starts_with("ebpf") {
        return "Cilium's program on the pod's veth translates with its own service maps, whatever kube-proxy programs";
    }
    match proxy {
        "userspace" => {
            "the userspace kube-proxy relays every connection through its own process (a socket of its own \
             per UDP client; for TCP it accepts, dials the endpoint and splices the two)"
        }
        "iptables" => "the first packet walks KUBE-SERVICES rule by rule until its Service",
        "ipvs" | "ipvs-lc" | "ipvs-sh" | "ipvs-sed" => {
            "one hash lookup of the IPVS virtual server, then its scheduler"
        }
        "nftables" => "one verdict-map lookup in table ip kube-proxy",
        "ebpf" => "Cilium translates once, at connect(), in the socket layer",
        "ebpf-no-socket-lb" => "Cilium's tc program looks the Service up in a BPF map per packet",
        _ => "as the proxy builds its rules",
    }
}
