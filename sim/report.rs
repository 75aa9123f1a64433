//! The human-facing outputs of one run: `report.html`, PNG charts and the CSV behind each chart.
//!
//! [`render`] turns a [`Summary`] into named files in memory; it does no file I/O (the `output`
//! module writes the directory atomically). Output is deterministic: the same summary renders
//! to the same bytes. No file shows [`Summary::run`]'s wall-clock facts (the HTML footer names
//! only the cnisim version and says where they are).
//!
//! Files, in order: `report.html`, then for each chart its PNG and CSV (`latency_cdf`,
//! `latency_percentiles`, `cpu`, `drops`, `overhead`), then `flows.csv`. The set never depends
//! on the data: a chart with nothing to show says why, and its CSV is a header line.
//!
//! **Architecture Invariant:** this module reads only the [`Summary`]; it knows nothing about
//! the engine, devices or CNI plugins.

mod charts;
mod compare;
mod csv;
mod html;
mod sweep;

pub use compare::render as render_compare;
pub use sweep::{render as render_sweep, rule_scaling_csv};

use crate::summary::{FlowSummary, Summary};

pub use crate::output::OutputFile;

/// A chart could not be rendered. Each is a bug in cnisim or its bundled font, not a user
/// error: please report it with the scenario that produced it.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The bundled DejaVu font was rejected by the font engine.
    #[error("cannot load the bundled chart font: {0}")]
    Font(String),
    /// plotters failed while drawing a chart.
    #[error("cannot draw chart {chart}: {message}")]
    Chart { chart: &'static str, message: String },
    /// PNG encoding of a rendered chart failed.
    #[error("cannot encode chart {chart} as PNG: {source}")]
    Png { chart: &'static str, source: png::EncodingError },
}

/// A chart as PNG bytes plus the CSV of exactly the data it shows.
struct Chart {
    stem: &'static str,
    title: String,
    /// Where report.html shows it.
    section: Section,
    png: Vec<u8>,
    csv: String,
}

/// The part of report.html a chart is embedded in.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Section {
    /// The "Charts" section, after the flows table.
    Charts,
    /// The "Encapsulation overhead" section, with the table of the same data.
    Overhead,
    /// The "TCP" section (runs with TCP workloads only).
    Tcp,
}

/// Renders every report file for `summary`, in a fixed order.
pub fn render(summary: &Summary) -> Result<Vec<OutputFile>, RenderError> {
    let charts = [
        Chart {
            stem: "latency_cdf",
            section: Section::Charts,
            title: "One-way latency CDF per flow".into(),
            png: charts::latency_cdf(summary)?,
            csv: csv::latency_cdf(summary),
        },
        Chart {
            stem: "latency_percentiles",
            section: Section::Charts,
            title: "One-way latency p50 / p99 / max per flow".into(),
            png: charts::latency_percentiles(summary)?,
            csv: csv::latency_percentiles(summary),
        },
        Chart {
            stem: "cpu",
            section: Section::Charts,
            title: "CPU utilisation per core, per node".into(),
            png: charts::cpu(summary)?,
            csv: csv::cpu(summary),
        },
        Chart {
            stem: "drops",
            section: Section::Charts,
            title: "Drops by reason".into(),
            png: charts::drops(summary)?,
            csv: csv::drops(summary),
        },
        Chart {
            stem: "overhead",
            section: Section::Overhead,
            title: overhead_title(summary),
            png: charts::overhead(summary)?,
            csv: csv::overhead(summary),
        },
    ];
    let mut charts = Vec::from(charts);
    // A run with TCP workloads has a TCP section with its own charts.
    if summary.flows.iter().any(|f| f.tcp.is_some()) {
        charts.push(Chart {
            stem: "tcp_goodput",
            section: Section::Tcp,
            title: "TCP goodput per stream over time".into(),
            png: charts::tcp_series(
                summary,
                "tcp_goodput",
                "TCP goodput per stream over time",
                "goodput (Gbit/s)",
                |s| s.goodput_bps_series.iter().map(|b| b / 1e9).collect(),
            )?,
            csv: csv::tcp_series(summary, "goodput_bps", |s| s.goodput_bps_series.clone()),
        });
        charts.push(Chart {
            stem: "tcp_in_flight",
            section: Section::Tcp,
            title:
                "TCP bytes in flight per stream over time (what the congestion and receive windows let out)"
                    .into(),
            png: charts::tcp_series(
                summary,
                "tcp_in_flight",
                "TCP bytes in flight per stream",
                "most bytes in flight (KiB)",
                |s| s.in_flight_bytes_series.iter().map(|&b| f64::from(b) / 1024.0).collect(),
            )?,
            csv: csv::tcp_series(summary, "in_flight_bytes", |s| {
                s.in_flight_bytes_series.iter().map(|&b| f64::from(b)).collect()
            }),
        });
        charts.push(Chart {
            stem: "tcp_transactions",
            section: Section::Tcp,
            title: "TCP transaction time CDF per request/response flow".into(),
            png: charts::tcp_transactions(summary)?,
            csv: csv::tcp_transactions(summary),
        });
    }
    let mut files =
        vec![OutputFile { name: "report.html".into(), bytes: html::page(summary, &charts).into_bytes() }];
    for chart in charts {
        files.push(OutputFile { name: format!("{}.png", chart.stem), bytes: chart.png });
        files.push(OutputFile { name: format!("{}.csv", chart.stem), bytes: chart.csv.into_bytes() });
    }
    files.push(OutputFile { name: "flows.csv".into(), bytes: csv::flows(summary).into_bytes() });
    Ok(files)
}

/// Short name of a flow for legends: "3 web client-0->server-1".
fn flow_label(flow: &FlowSummary) -> String {
    format!("{} {} {}->{}", flow.id, flow.workload, flow.src_pod, flow.dst_pod)
}

/// Title of the overhead chart and figure, naming the CNI.
fn overhead_title(summary: &Summary) -> String {
    format!("Overhead on the underlay vs payload size: {}", summary.scenario.cni)
}

/// Data and ARP drops as (scope, reason, count) rows, data first, reasons sorted.
fn drop_rows(summary: &Summary) -> Vec<(&'static str, &str, u64)> {
    let data = summary.totals.drops_by_reason.iter().map(|(r, n)| ("data", r.as_str(), *n));
    let arp = summary.totals.arp_drops_by_reason.iter().map(|(r, n)| ("arp", r.as_str(), *n));
    data.chain(arp).collect()
}

// Number formatting is shared by every report and by `compare`'s sentences.
use crate::fmt::{bps as fmt_bps, count as fmt_count, ns as fmt_ns, sig3};

/// Standard base64 (RFC 4648 section 4) with `=` padding.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::net::packet::Hop;
    use crate::summary::*;

    const EVIL_POD: &str = "<script>alert(1)</script>";

    fn stats(base: u64) -> LatencyStats {
        let cdf = (0..=10u32).map(|i| (f64::from(i) / 10.0, base + u64::from(i * i) * 300)).collect();
        LatencyStats {
            count: 100,
            min_ns: base,
            mean_ns: base + 4_000,
            p50_ns: base + 7_500,
            p90_ns: base + 24_300,
            p99_ns: base + 29_400,
            p999_ns: base + 29_900,
            max_ns: base + 30_000,
            cdf,
        }
    }

    fn flow(id: usize, src_pod: &str, same_node: bool, rtt: bool) -> FlowSummary {
        let drops = if id == 1 { BTreeMap::from([("queue_full".to_string(), 3)]) } else { BTreeMap::new() };
        FlowSummary {
            id,
            workload: if rtt { "rr, ping".into() } else { "bulk".into() },
            kind: if rtt { "udp_rr".into() } else { "udp_cbr".into() },
            src_pod: src_pod.into(),
            dst_pod: format!("server-{id}"),
            src_node: "node-1".into(),
            dst_node: if same_node { "node-1".into() } else { "node-2".into() },
            same_node,
            src_ip: format!("10.244.1.{}", id + 2),
            dst_ip: "10.244.2.2".into(),
            src_port: 40000 + id as u16,
            dst_port: 5201,
            sent: 103,
            delivered: 100,
            dropped: if id == 1 { 3 } else { 0 },
            drops_by_reason: drops,
            latency: stats(20_000 * (id as u64 + 1)),
            rtt: rtt.then(|| stats(60_000)),
            transactions: if rtt { 50 } else { 0 },
            timeouts: 0,
            payload_bytes: 140_000,
            wire_bytes: 147_000,
            throughput_bps: 1.12e9,
            encap_overhead_bytes: None,
            overhead_ratio: 0.05,
            offered: None,
            send_blocks: 0,
            peak_send_buffer_bytes: 2_304,
            peak_receive_buffer_bytes: 2_304,
            cpu_ns: 4_000,
            cpu_by_step: BTreeMap::from([("socket".into(), 3_000), ("veth".into(), 1_000)]),
            cpu_ns_per_datagram: 4_000.0,
            bottleneck: Some(Bottleneck {
                place: "node-1 core 0".into(),
                utilisation: 0.25,
                top_steps: vec![("socket".into(), 3_000)],
            }),
            tcp: None,
        }
    }

    fn node(name: &str, util: [f64; 2]) -> NodeSummary {
        NodeSummary {
            name: name.into(),
            ip: "192.168.0.1".into(),
            pod_subnet: "10.244.1.0/24".into(),
            pods: 2,
            cpu_utilisation: util.to_vec(),
            cpu_busy_ns: util.map(|u| (u * 1e9) as u64).to_vec(),
            userspace_busy_ns: 0,
            packets_processed: 1234,
            cpu_ns_per_packet: 812.5,
            cpu_by_step: BTreeMap::from([("socket".into(), 3_000), ("veth".into(), 1_000)]),
            kernel: Default::default(),
        }
    }

    fn hop(time_ns: u64, place: &str, device: &str, action: &str, why: &str) -> Hop {
        Hop {
            time_ns,
            place: place.into(),
            device: device.into(),
            action: action.into(),
            why: why.into(),
            size: 1450,
        }
    }

    fn sample() -> Summary {
        let flows = vec![
            flow(0, "client-0", false, false),
            flow(1, EVIL_POD, false, false),
            flow(2, "client-2", true, true),
        ];
        let sent = flows.iter().map(|f| f.sent).sum();
        let hops = vec![
            hop(1_000_000, "pod client-0", "eth0", "xmit", "default via 10.244.1.1"),
            hop(1_000_900, "node-1", "cni0", "forward", "route 10.244.2.0/24 via flannel.1"),
            hop(1_002_100, "node-1", "flannel.1", "encap", "FDB entry -> 192.168.0.2 \"vxlan\""),
            hop(1_007_400, "underlay", "switch", "forward", "MAC table port 2"),
            hop(1_012_000, "pod server-0", "eth0", "deliver", "socket 10.244.2.2:5201"),
        ];
        Summary {
            schema_version: SCHEMA_VERSION,
            scenario: ScenarioInfo {
                name: "flannel & friends".into(),
                description: "Two nodes, flannel VXLAN, three UDP flows <one same-node>.".into(),
                cni: "flannel (vxlan)".into(),
                proxy: "iptables".into(),
                seed: 42,
                duration_ns: 2_000_000_000,
                nodes: 2,
                pods: 6,
                node_cidr: "192.168.0.0/24".into(),
                pod_cidr: "10.244.0.0/16".into(),
                service_cidr: "10.96.0.0/12".into(),
                underlay: "one L2 switch, 10Gbit ports, 5us propagation, MTU 1500".into(),
                warnings: vec!["flanneld on node-1: route <refused>".into()],
                workloads: vec![WorkloadInfo {
                    name: "bulk".into(),
                    kind: "udp_cbr".into(),
                    params: "100Mbit, 1400B payload".into(),
                    flows: 2,
                }],
            },
            totals: Totals {
                sent,
                delivered: 300,
                dropped: 3,
                in_flight: sent - 303,
                drops_by_reason: BTreeMap::from([("queue_full".to_string(), 3)]),
                arp_frames: 8,
                arp_drops_by_reason: BTreeMap::new(),
                icmp_frag_needed: 0,
                icmp_frag_needed_filtered: 0,
                icmp_port_unreachable: 0,
                events: 123_456,
                packet_hops: 45_678,
                end_ns: 2_000_000_000,
                cpu_ns_per_datagram: 4_321.5,
                cpu_ns: 4_000,
                cpu_by_step: BTreeMap::from([("socket".into(), 3_000), ("veth".into(), 1_000)]),
                kernel_queue_drops: vec![KernelQueueDrops {
                    reason: "rcvbuf_full".into(),
                    counter: "/proc/net/snmp Udp: RcvbufErrors".into(),
                    count: 3,
                }],
            },
            flows,
            nodes: vec![node("node-1", [0.423, 0.051]), node("node-2", [0.325, 0.0])],
            paths: vec![PathTrace { flow: 0, description: "cross-node via VXLAN".into(), hops }],
            overhead: [64u32, 512, 1400]
                .iter()
                .map(|&p| OverheadPoint {
                    payload: p,
                    pod_frame: p as usize + 42,
                    underlay_frame: p as usize + 92,
                    overhead_bytes: 50,
                    overhead_pct: 92.0 / p as f64 * 100.0,
                })
                .collect(),
            services: None,
            policy: None,
            bgp: None,
            masquerade: None,
            run: RunInfo { cnisim_version: "0.1.0".into(), wall_seconds: 0.5, events_per_second: 246_912.0 },
        }
    }

    fn file<'a>(files: &'a [OutputFile], name: &str) -> &'a [u8] {
        &files.iter().find(|f| f.name == name).unwrap_or_else(|| panic!("{name} missing")).bytes
    }

    fn csv_rows(files: &[OutputFile], name: &str) -> usize {
        std::str::from_utf8(file(files, name)).unwrap().lines().count() - 1
    }

    #[test]
    fn renders_every_file() {
        let files = render(&sample()).unwrap();
        let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
        let expected = [
            "report.html",
            "latency_cdf.png",
            "latency_cdf.csv",
            "latency_percentiles.png",
            "latency_percentiles.csv",
            "cpu.png",
            "cpu.csv",
            "drops.png",
            "drops.csv",
            "overhead.png",
            "overhead.csv",
            "flows.csv",
        ];
        assert_eq!(names, expected);
    }

    #[test]
    fn html_is_self_contained_and_escaped() {
        let files = render(&sample()).unwrap();
        let html = std::str::from_utf8(file(&files, "report.html")).unwrap();
        for attr in ["src=\"http", "href=\"http", "src='http", "href='http", "url(http", "<link", "@import"] {
            assert!(!html.contains(attr), "external fetch via {attr}");
        }
        assert!(!html.contains("<script"), "unescaped script tag");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("flannel &amp; friends"));
        assert!(html.contains("FDB entry -&gt; 192.168.0.2 &quot;vxlan&quot;"));
        assert!(html.contains("0 bulk client-0-&gt;server-0"));
        assert!(html.contains("rr, ping"));
        assert_eq!(html.matches("src=\"data:image/png;base64,iVBORw0KGgo").count(), 5);
        assert!(html.contains("sent 309 = delivered 300 + dropped 3 + in flight at the end 6"));
        assert!(html.contains("queue_full"));
    }

    #[test]
    fn pngs_decode_to_chart_size() {
        let files = render(&sample()).unwrap();
        for name in ["latency_cdf.png", "latency_percentiles.png", "cpu.png", "drops.png", "overhead.png"] {
            let bytes = file(&files, name);
            assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "{name} signature");
            let info = png::Decoder::new(bytes).read_info().unwrap().info().clone();
            assert_eq!((info.width, info.height), charts::SIZE, "{name} size");
        }
    }

    #[test]
    fn csv_rows_match_data() {
        let files = render(&sample()).unwrap();
        assert_eq!(csv_rows(&files, "latency_cdf.csv"), 33);
        assert_eq!(csv_rows(&files, "latency_percentiles.csv"), 3);
        assert_eq!(csv_rows(&files, "cpu.csv"), 4);
        assert_eq!(csv_rows(&files, "drops.csv"), 1);
        assert_eq!(csv_rows(&files, "flows.csv"), 3);
        assert_eq!(csv_rows(&files, "overhead.csv"), 3);
        let overhead = std::str::from_utf8(file(&files, "overhead.csv")).unwrap();
        assert_eq!(
            overhead.lines().next(),
            Some("payload,pod_frame,underlay_frame,overhead_bytes,overhead_pct")
        );
        assert!(overhead.contains("\n64,106,156,50,143.75\n"));
        let flows = std::str::from_utf8(file(&files, "flows.csv")).unwrap();
        assert!(flows.contains(",\"rr, ping\",udp_rr,"));
        assert!(flows.contains(",queue_full=3,"));
        let header_fields = flows.lines().next().unwrap().split(',').count();
        assert_eq!(header_fields, 39);
    }

    #[test]
    fn no_drops_still_renders_drops_chart() {
        let mut summary = sample();
        summary.totals.drops_by_reason.clear();
        let files = render(&summary).unwrap();
        let html = std::str::from_utf8(file(&files, "report.html")).unwrap();
        assert!(html.contains("No drops"));
        assert!(file(&files, "drops.png").starts_with(b"\x89PNG"));
        assert_eq!(csv_rows(&files, "drops.csv"), 0);
    }

    #[test]
    fn empty_run_renders_every_chart() {
        let mut summary = sample();
        summary.flows.clear();
        summary.nodes.clear();
        summary.paths.clear();
        summary.totals.drops_by_reason.clear();
        summary.overhead.clear();
        let files = render(&summary).unwrap();
        assert_eq!(files.len(), 12);
        assert_eq!(csv_rows(&files, "overhead.csv"), 0);
        assert_eq!(csv_rows(&files, "flows.csv"), 0);
        let html = std::str::from_utf8(file(&files, "report.html")).unwrap();
        assert!(html.contains("No packet was traced"));
    }

    #[test]
    fn overhead_section_states_the_measured_bytes() {
        let files = render(&sample()).unwrap();
        let html = std::str::from_utf8(file(&files, "report.html")).unwrap();
        let section = &html[html.find("id=\"overhead\"").unwrap()..html.find("id=\"charts\"").unwrap()];
        assert!(section
            .contains("flannel (vxlan) adds 50 B per packet on the underlay (outer Ethernet, IPv4, UDP"));
        assert!(section.contains("On the node NIC, a 64 B payload travels in a 156 B frame, 92 B (143.8 % of the payload) beyond it; \
             a 1,400 B payload travels in a 1,492 B frame, 92 B (6.6 % of the payload) beyond it."));
        assert!(section
            .contains("<td class=\"num\">1,492</td><td class=\"num\">50</td><td class=\"num\">6.6 %</td>"));
        assert!(section.contains("src=\"data:image/png;base64,"));
        assert!(html.find("id=\"flows\"").unwrap() < html.find("id=\"overhead\"").unwrap());
    }

    #[test]
    fn overhead_sentence_lists_differing_bytes_and_unreached_sizes() {
        let mut summary = sample();
        summary.overhead[2].underlay_frame += 20;
        summary.overhead[2].overhead_bytes += 20;
        let mut lost = summary.overhead[0].clone();
        lost.payload = 2000;
        lost.underlay_frame = 0;
        lost.overhead_bytes = -(lost.pod_frame as i64);
        summary.overhead.push(lost);
        let files = render(&summary).unwrap();
        let html = std::str::from_utf8(file(&files, "report.html")).unwrap();
        assert!(html.contains("50 B at 64–512 B payloads, 70 B at 1,400 B payload."));
        assert!(html.contains("The datagram with 2,000 B payload never reached the node NIC."));
        assert_eq!(csv_rows(&files, "overhead.csv"), 4);
    }

    #[test]
    fn no_encapsulation_says_so() {
        let mut summary = sample();
        for p in &mut summary.overhead {
            p.underlay_frame = p.pod_frame;
            p.overhead_bytes = 0;
        }
        let files = render(&summary).unwrap();
        let html = std::str::from_utf8(file(&files, "report.html")).unwrap();
        assert!(html.contains("adds no bytes per packet on the underlay"));
    }

    #[test]
    fn empty_overhead_still_renders_its_files() {
        let mut summary = sample();
        summary.overhead.clear();
        let files = render(&summary).unwrap();
        let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, render(&sample()).unwrap().iter().map(|f| f.name.as_str()).collect::<Vec<_>>());
        let png = file(&files, "overhead.png");
        let info = png::Decoder::new(png).read_info().unwrap().info().clone();
        assert_eq!((info.width, info.height), charts::SIZE);
        assert_eq!(
            std::str::from_utf8(file(&files, "overhead.csv")).unwrap(),
            "payload,pod_frame,underlay_frame,overhead_bytes,overhead_pct\n"
        );
        let html = std::str::from_utf8(file(&files, "report.html")).unwrap();
        assert!(html.contains("Encapsulation overhead"));
        assert!(html.contains("Not measured: no two pods sit on different nodes"));
        assert_eq!(render(&summary).unwrap(), files);
    }

    #[test]
    fn cpu_section_shows_per_datagram_and_userspace() {
        let files = render(&sample()).unwrap();
        let html = std::str::from_utf8(file(&files, "report.html")).unwrap();
        assert!(html
            .contains("CPU per delivered datagram, all nodes, kernel + userspace: <strong>4.32 µs</strong>"));
        assert!(!html.contains("moves packets through a userspace process"));
        assert_eq!(html.matches("<td class=\"num\">–</td></tr>").count(), 2);

        let mut summary = sample();
        summary.nodes[1].userspace_busy_ns = 12_345_678;
        let files = render(&summary).unwrap();
        let html = std::str::from_utf8(file(&files, "report.html")).unwrap();
        assert!(html.contains("<td class=\"num\">12.3 ms</td></tr>"));
        assert!(html.contains(
            "flannel (vxlan) moves packets through a userspace process: each packet costs it a wake-up, \
             two system calls and two copies"
        ));
    }

    #[test]
    fn rendering_is_deterministic() {
        assert_eq!(render(&sample()).unwrap(), render(&sample()).unwrap());
        let mut summary = sample();
        summary.overhead.clear();
        summary.nodes[0].userspace_busy_ns = 5_000;
        assert_eq!(render(&summary).unwrap(), render(&summary).unwrap());
    }

    #[test]
    fn base64_matches_rfc4648_vectors() {
        let cases = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, encoded) in cases {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
    }

    #[test]
    fn human_units() {
        assert_eq!(fmt_ns(850), "850 ns");
        assert_eq!(fmt_ns(12_345), "12.3 µs");
        assert_eq!(fmt_ns(1_500_000), "1.50 ms");
        assert_eq!(fmt_bps(950.0), "950 bit/s");
        assert_eq!(fmt_bps(12.5e6), "12.5 Mbit/s");
        assert_eq!(fmt_count(1_234_567), "1,234,567");
    }
}
