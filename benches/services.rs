//! Service lookup: what one new connection's rule walk or hash lookup costs the simulator at
//! 1,000 to 50,000 Services (2 endpoints each), per proxy mode, and building a node's rules.
//! iptables walks are reported as rules evaluated per second (criterion "elements"), the
//! others as lookups per second.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use cnisim::cluster::{
    Endpoint, IpvsScheduler, Protocol, Service, ServiceKind, ServicePort, ServiceTable, TrafficPolicy,
};
use cnisim::net::conntrack::{Tuple, L4};
use cnisim::proxy::iptables::NatTable;
use cnisim::proxy::ipvs::Ipvs;
use cnisim::proxy::nftables::NftTable;
use cnisim::proxy::{Hook, NodeView};

fn table(n: usize) -> ServiceTable {
    let services = (0..n)
        .map(|i| Service {
            namespace: "default".into(),
            name: format!("svc-{i}"),
            kind: ServiceKind::ClusterIp,
            cluster_ip: Some(std::net::Ipv4Addr::from(0x0a60_0002 + i as u32)),
            ports: vec![ServicePort {
                name: String::new(),
                protocol: Protocol::Udp,
                port: 80,
                target_port: 8080,
                node_port: None,
            }],
            endpoints: (0..2)
                .map(|e| Endpoint {
                    pod: e,
                    ip: std::net::Ipv4Addr::from(0x0af4_0102 + e as u32),
                    node: 1,
                    ready: true,
                })
                .collect(),
            external_traffic_policy: TrafficPolicy::Cluster,
        })
        .collect();
    ServiceTable { services, cluster_cidr: Some("10.244.0.0/16".parse().unwrap()) }
}

fn node() -> NodeView {
    NodeView { id: 0, name: "node-1".into(), ip: [192, 168, 0, 1].into(), random_fully: true }
}

/// New connections from a pod to uniformly random Services.
fn tuples(n: usize) -> Vec<Tuple> {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    (0..1024)
        .map(|k| Tuple {
            src: [10, 244, 0, 3].into(),
            sport: 32768 + k as u16,
            dst: std::net::Ipv4Addr::from(0x0a60_0002 + rng.random_range(0..n) as u32),
            dport: 80,
            proto: L4::Udp,
        })
        .collect()
}

fn lookups(c: &mut Criterion) {
    let mut g = c.benchmark_group("service-lookup");
    g.sample_size(20);
    for n in [1_000, 10_000, 50_000] {
        let t = table(n);
        let order: Vec<usize> = (0..n).collect();
        let ipt = NatTable::build(&t, &node(), &order, true);
        let ts = tuples(n);
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let rules: u64 = ts
            .iter()
            .map(|tu| ipt.walk(Hook::Prerouting, tu, false, false, &mut || rng.random(), false).rules as u64)
            .sum();
        g.throughput(Throughput::Elements(rules));
        g.bench_with_input(BenchmarkId::new("iptables-walk", n), &n, |b, _| {
            b.iter(|| {
                for tu in &ts {
                    std::hint::black_box(ipt.walk(
                        Hook::Prerouting,
                        tu,
                        false,
                        false,
                        &mut || rng.random(),
                        false,
                    ));
                }
            })
        });
        g.throughput(Throughput::Elements(ts.len() as u64));
        let mut ipvs = Ipvs::build(&t, &node(), IpvsScheduler::Rr);
        g.bench_with_input(BenchmarkId::new("ipvs-lookup", n), &n, |b, _| {
            b.iter(|| {
                for tu in &ts {
                    std::hint::black_box(ipvs.lookup(Hook::Prerouting, tu, false, false));
                }
            })
        });
        let nft = NftTable::build(&t, &node());
        g.bench_with_input(BenchmarkId::new("nftables-lookup", n), &n, |b, _| {
            b.iter(|| {
                for tu in &ts {
                    std::hint::black_box(nft.lookup(
                        Hook::Prerouting,
                        tu,
                        false,
                        &mut || rng.random(),
                        false,
                    ));
                }
            })
        });
    }
    g.finish();
}

fn builds(c: &mut Criterion) {
    let mut g = c.benchmark_group("rule-build");
    g.sample_size(10);
    for n in [1_000, 10_000] {
        let t = table(n);
        let order: Vec<usize> = (0..n).collect();
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new("iptables", n), &n, |b, _| {
            b.iter(|| NatTable::build(&t, &node(), &order, true))
        });
        g.bench_with_input(BenchmarkId::new("ipvs", n), &n, |b, _| {
            b.iter(|| Ipvs::build(&t, &node(), IpvsScheduler::Rr))
        });
        g.bench_with_input(BenchmarkId::new("nftables", n), &n, |b, _| {
            b.iter(|| NftTable::build(&t, &node()))
        });
    }
    g.finish();
}

criterion_group!(benches, lookups, builds);
criterion_main!(benches);
