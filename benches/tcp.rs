//! One TCP stream between two pods on two nodes with 10 Gbit/s NICs (flannel-host-gw, Linux's
//! default offloads: TSO/GSO super-packets, GRO), smoltcp at both ends, real bytes through
//! every device. Reported as wire segments per wall second (criterion "elements": the data
//! segments and ACKs the stream's two ends put on the wire); each iteration simulates 100 ms,
//! so a time per iteration under 100 ms means a simulated second of the stream takes less
//! than a wall second. `no-offloads` is the same stream with `gso`, `tso` and `gro` off.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use cnisim::run::Simulation;

fn scenario(offloads: &str) -> cnisim::cluster::Cluster {
    let text = format!(
        r#"Scenario(
    name: "tcp-bench", seed: 1, duration: "100ms", cni: "flannel-host-gw",
    nodes: Count(count: 2, cores: 4, nic: "10Gbit", offloads: ({offloads})),
    pods_per_node: 1,
    workloads: [(name: "s", kind: TcpStream(), from: Pod("node-1-pod-1"), to: Pod("node-2-pod-1"))],
)"#
    );
    cnisim::scenario::load_str(&text, "tcp-bench.ron").expect("a valid scenario")
}

/// Wire segments of the stream, both directions.
fn segments(sim: &Simulation) -> u64 {
    sim.obs.flows[0].tcp.as_ref().map_or(0, |t| t.streams.iter().map(|s| s.segments[0] + s.segments[1]).sum())
}

fn tcp_stream(c: &mut Criterion) {
    let mut g = c.benchmark_group("tcp");
    g.sample_size(10);
    for (name, offloads) in
        [("10gbit-stream", ""), ("10gbit-stream-no-offloads", "gso: false, tso: false, gro: false")]
    {
        let cl = scenario(offloads);
        let mut probe = Simulation::new(&cl);
        probe.run().expect("conserved");
        g.throughput(Throughput::Elements(segments(&probe)));
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut sim = Simulation::new(&cl);
                sim.run().expect("conserved");
                segments(&sim)
            })
        });
    }
    g.finish();
}

criterion_group!(benches, tcp_stream);
criterion_main!(benches);
