//! The scenario loader, as `cnisim validate` runs it: arbitrary text through
//! `scenario::load_str` must never panic, and every error it returns is located
//! (`file:line:col`, inside the text) and says something. A scenario that loads and is small
//! enough to run in a fuzzing iteration is also built and run for its first 200 us, after
//! which packet conservation must hold.

#![no_main]

use cnisim::cluster::{Cluster, WorkloadKind};
use cnisim::run::Simulation;
use cnisim::scenario::load_str;
use cnisim::time::{Duration, Instant};
use libfuzzer_sys::fuzz_target;

const PATH: &str = "fuzz.ron";

fuzz_target!(|data: &[u8]| {
    // Scenario files are UTF-8; what `load_with` would refuse before parsing is mapped to text
    // here so that mutations of a byte keep exercising the parser.
    let text = String::from_utf8_lossy(data);
    match load_str(&text, PATH) {
        Err(e) => {
            assert!(!e.message.is_empty(), "empty message at {}:{}", e.line, e.col);
            let lines = text.split('\n').count();
            assert!(e.line >= 1 && e.line <= lines, "line {} outside 1..={lines}: {e}", e.line);
            assert!(e.col >= 1, "column 0: {e}");
            assert!(e.to_string().starts_with(&format!("{PATH}:{}:{}: ", e.line, e.col)));
        }
        Ok(cluster) => {
            assert!(!cluster.nodes.is_empty());
            if small(&cluster) {
                let mut sim = Simulation::new(&cluster);
                let _ = sim.run_until(Instant::ZERO + cluster.duration.min(Duration::from_micros(200)));
                if let Err(e) = sim.check_conservation() {
                    panic!("{e}\n{text}");
                }
            }
        }
    }
});

/// Small enough to build and run for 200 us in a few milliseconds.
fn small(c: &Cluster) -> bool {
    let flows: usize = c.workloads.iter().map(|w| w.flows.len()).sum();
    // Datagrams per second offered by every flow together.
    let rate: f64 = c
        .workloads
        .iter()
        .map(|w| match w.kind {
            WorkloadKind::UdpCbr { rate, payload } => rate.0 as f64 / (payload.max(1) as f64 * 8.0),
            WorkloadKind::UdpRr { .. } => 100_000.0,
            // As fast as the socket allows: about what one core sends.
            WorkloadKind::UdpStream { .. } => 1_000_000.0,
            // Segments each way at a core's pace, per stream.
            WorkloadKind::TcpStream { streams, .. } => 1_000_000.0 * f64::from(streams),
            WorkloadKind::TcpRr { .. } | WorkloadKind::TcpCrr { .. } => 200_000.0,
        } * w.flows.len() as f64)
        .sum();
    c.nodes.len() <= 16
        && c.pods.len() <= 128
        && c.externals.len() <= 16
        && c.services.services.len() <= 64
        && flows <= 64
        && rate <= 20_000_000.0
}
