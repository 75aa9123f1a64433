//! Packet path throughput: a 16-node UDP star (15 clients, one per node, each sending CBR to
//! one server pod on node 1) on flannel-host-gw, flannel-vxlan and cilium-geneve, real bytes
//! end to end. Reported as
//! packet-hops per second (criterion "elements"): every device step a packet takes (socket,
//! routing, veth, bridge, NIC, cable, switch) counts one.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use cnisim::cluster::{Cni, WorkloadKind};
use cnisim::run::Simulation;
use cnisim::testkit::cluster;
use cnisim::time::Duration;
use cnisim::units::Bandwidth;

fn star(cni: Cni) -> cnisim::cluster::Cluster {
    let kind = WorkloadKind::UdpCbr { rate: Bandwidth(500_000_000), payload: 1400 };
    let pairs: Vec<(usize, usize)> = (1..16).map(|c| (c, 0)).collect();
    let mut c = cluster(16, 1, kind, &pairs);
    c.cni = cni;
    // The pods' MTU as the plugin sets it (1450 for VXLAN) so 1400 B payloads fit.
    for p in &mut c.pods {
        p.mtu = cni.default_pod_mtu(1500);
    }
    c.duration = Duration::from_millis(20);
    c.workloads[0].duration = Duration::from_millis(20);
    c
}

fn udp_star(c: &mut Criterion) {
    let mut g = c.benchmark_group("datapath");
    g.sample_size(20);
    for cni in [Cni::FlannelHostGw, Cni::FlannelVxlan, Cni::CiliumGeneve] {
        let cl = star(cni);
        let mut probe = Simulation::new(&cl);
        probe.run().expect("conserved");
        g.throughput(Throughput::Elements(probe.obs.packet_hops));
        g.bench_function(format!("udp-star-16-nodes/{cni}"), |b| {
            b.iter(|| {
                let mut sim = Simulation::new(&cl);
                sim.run().expect("conserved");
                sim.obs.packet_hops
            })
        });
    }
    g.finish();
}

criterion_group!(benches, udp_star);
criterion_main!(benches);
