//! Calico's BGP control plane to convergence: every BIRD of a calico-ipip cluster starts at
//! t = 0 and the run goes until every node's kernel has every other node's block, under the
//! node-to-node mesh and under two route reflectors. Reported as BGP messages per second
//! (criterion "elements"): each is a real message in TCP segments through the nodes' kernels.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use cnisim::run::Simulation;

/// A cluster of `nodes` calico-ipip nodes without workloads, simulated for 3 s (the 2 s
/// connect delay and the exchange after it).
fn cluster(nodes: u32, reflectors: &str) -> cnisim::cluster::Cluster {
    let text = format!(
        "Scenario(name: \"bgp-bench\", seed: 1, duration: \"3s\", cni: \"calico-ipip\", \
         nodes: Count(count: {nodes}, cores: 2), pods_per_node: 1, bgp: ({reflectors}), workloads: [])"
    );
    cnisim::scenario::load_str(&text, "bgp-bench.ron").expect("a valid scenario")
}

fn converge(c: &mut Criterion) {
    let mut g = c.benchmark_group("control_plane");
    g.sample_size(10);
    for (name, nodes, reflectors) in
        [("mesh-50-nodes", 50, ""), ("rr2-200-nodes", 200, "route_reflectors: [\"node-1\", \"node-2\"]")]
    {
        let cl = cluster(nodes, reflectors);
        let mut probe = Simulation::new(&cl);
        probe.run().expect("conserved");
        let cp = probe.bgp.as_ref().expect("BGP simulated");
        assert!(!cp.convergences.is_empty(), "{name} converges within the run");
        let messages: u64 =
            cp.birds.iter().flat_map(|b| &b.speaker.peers).map(|p| p.stats.sent.iter().sum::<u64>()).sum();
        g.throughput(Throughput::Elements(messages));
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut sim = Simulation::new(&cl);
                sim.run().expect("conserved");
                sim.obs.packet_hops
            })
        });
    }
    g.finish();
}

criterion_group!(benches, converge);
criterion_main!(benches);
