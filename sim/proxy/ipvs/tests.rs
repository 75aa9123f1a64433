//! Tests of kube-proxy's IPVS mode: virtual servers, the schedulers, ipsets, `ipvsadm -Ln`.

use super::*;
use crate::proxy::fixtures::{ep, ip, many, node, svc, t, table};

fn two_services() -> ServiceTable {
    let dns = svc(
        "kube-dns",
        "10.96.0.10",
        53,
        None,
        vec![ep(0, "10.244.0.5", 0), ep(1, "10.244.1.7", 1)],
        TrafficPolicy::Cluster,
    );
    let web =
        svc("web", "10.96.0.100", 8080, Some(30080), vec![ep(2, "10.244.1.9", 1)], TrafficPolicy::Cluster);
    table(vec![dns, web])
}

fn picks(ipvs: &mut Ipvs, src: &str, n: usize) -> Vec<usize> {
    (0..n)
        .map(|_| match ipvs.lookup(Hook::Prerouting, &t(src, "10.96.0.10", 53), false, false).verdict {
            Verdict::Dnat { endpoint, .. } => endpoint,
            v => panic!("{v:?}"),
        })
        .collect()
}

#[test]
fn ipvsadm_output_is_byte_exact() {
    let ipvs = Ipvs::build(&two_services(), &node(), IpvsScheduler::Rr);
    // 172.18.0.2 - 10.96.0.10 = 0xA1B1FFF8, negative as an int: libipvs lists the NodePort first.
    let expected = concat!(
        "IP Virtual Server version 1.2.1 (size=4096)\n",
        "Prot LocalAddress:Port Scheduler Flags\n",
        "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n",
        "UDP  172.18.0.2:30080 rr\n",
        "  -> 10.244.1.9:8080              Masq    1      0          0         \n",
        "UDP  10.96.0.10:53 rr\n",
        "  -> 10.244.0.5:53                Masq    1      0          0         \n",
        "  -> 10.244.1.7:53                Masq    1      0          0         \n",
        "UDP  10.96.0.100:8080 rr\n",
        "  -> 10.244.1.9:8080              Masq    1      0          0         \n",
    );
    assert_eq!(ipvs.ipvsadm_ln(), expected);
    assert_eq!((ipvs.virtual_servers(), ipvs.real_servers()), (3, 4));
}

#[test]
fn ipvsadm_sort_wraps_like_libipvs() {
    // 10.96.0.10 - 192.168.0.1 wraps to a positive int: libipvs sorts the node address first.
    let mut s = svc("web", "10.96.0.100", 80, Some(30080), vec![], TrafficPolicy::Cluster);
    s.cluster_ip = Some(ip("10.96.0.100"));
    let n = NodeView { id: 0, name: "n".into(), ip: ip("192.168.0.1"), random_fully: true };
    let out = Ipvs::build(&table(vec![s]), &n, IpvsScheduler::Rr).ipvsadm_ln();
    let services: Vec<&str> = out.lines().filter(|l| l.starts_with("UDP")).collect();
    assert_eq!(services, ["UDP  192.168.0.1:30080 rr", "UDP  10.96.0.100:80 rr"]);
}

fn three_eps() -> ServiceTable {
    let eps = vec![ep(0, "10.244.0.5", 0), ep(1, "10.244.1.7", 1), ep(2, "10.244.2.9", 2)];
    table(vec![svc("kube-dns", "10.96.0.10", 53, None, eps, TrafficPolicy::Cluster)])
}

#[test]
fn rr_cycles_in_kernel_list_order() {
    // Added 0, 1, 2 at the list head: the list is 2, 1, 0 and rr starts at the head.
    let mut ipvs = Ipvs::build(&three_eps(), &node(), IpvsScheduler::Rr);
    assert_eq!(picks(&mut ipvs, "10.244.0.20", 6), [2, 1, 0, 2, 1, 0]);
}

#[test]
fn rr_gives_exactly_one_nth() {
    let mut ipvs = Ipvs::build(&three_eps(), &node(), IpvsScheduler::Rr);
    let mut counts = [0; 3];
    for e in picks(&mut ipvs, "10.244.0.20", 3000) {
        counts[e] += 1;
    }
    assert_eq!(counts, [1000, 1000, 1000]);
}

#[test]
fn lc_picks_least_active_times_256_plus_inactive() {
    let mut ipvs = Ipvs::build(&three_eps(), &node(), IpvsScheduler::Lc);
    // List order 2, 1, 0. All 0: first (endpoint 2); then 1 and 0 (0 < 256).
    assert_eq!(picks(&mut ipvs, "10.244.0.20", 3), [2, 1, 0]);
    let vs = ipvs.state_mut(0);
    vs.active[0] = 1; // endpoint 2: 256
    vs.active[1] = 0;
    vs.inactive[1] = 300; // endpoint 1: 300
    vs.active[2] = 1;
    vs.inactive[2] = 1; // endpoint 0: 257
    assert_eq!(picks(&mut ipvs, "10.244.0.20", 1), [2]);
}

#[test]
fn sed_uses_active_plus_one_only() {
    let mut ipvs = Ipvs::build(&three_eps(), &node(), IpvsScheduler::Sed);
    let vs = ipvs.state_mut(0);
    vs.active[0] = 2; // endpoint 2: cost 3
    vs.active[1] = 1; // endpoint 1: cost 2
    vs.inactive[1] = 1000; // ignored by sed (lc would avoid it)
    vs.active[2] = 1; // endpoint 0: cost 2, later in the list
    assert_eq!(picks(&mut ipvs, "10.244.0.20", 1), [1]);
    let mut ipvs = Ipvs::build(&three_eps(), &node(), IpvsScheduler::Lc);
    let vs = ipvs.state_mut(0);
    (vs.active, vs.inactive) = (vec![2, 1, 1], vec![0, 1000, 0]);
    assert_eq!(picks(&mut ipvs, "10.244.0.20", 1), [0]);
}

#[test]
fn sh_maps_source_to_hand_computed_bucket() {
    // 10.244.0.20 = 0x0AF40014; 0x0AF40014 * 0x61C88647 mod 2^32 = 0x65567D8C; >> 24 = 0x65 = 101.
    assert_eq!(sh_bucket(ip("10.244.0.20")), 101);
    // Bucket 101 of 3 weight-1 destinations is list entry 101 % 3 = 2, which is endpoint 0.
    let mut ipvs = Ipvs::build(&three_eps(), &node(), IpvsScheduler::Sh);
    assert_eq!(picks(&mut ipvs, "10.244.0.20", 4), [0, 0, 0, 0]);
}

#[test]
fn udp_connections_stay_active_until_closed() {
    let mut ipvs = Ipvs::build(&three_eps(), &node(), IpvsScheduler::Lc);
    assert_eq!(picks(&mut ipvs, "10.244.0.20", 1), [2]);
    let d = |i: &Ipvs| i.virtual_server(Protocol::Udp, ip("10.96.0.10"), 53).unwrap().dests[0].clone();
    assert_eq!((d(&ipvs).active, d(&ipvs).inactive), (1, 0));
    ipvs.connection_closed(0, 0, 2);
    assert_eq!((d(&ipvs).active, d(&ipvs).inactive), (0, 0));
    ipvs.connection_closed(0, 0, 2);
    assert_eq!(d(&ipvs).active, 0);
}

#[test]
fn cost_is_flat_in_the_number_of_services() {
    let cost = |n: usize| {
        let services = many(n);
        let mut ipvs = Ipvs::build(&table(services), &node(), IpvsScheduler::Rr);
        let l = ipvs.lookup(Hook::Prerouting, &t("10.244.0.20", "10.96.0.1", 80), false, false);
        assert!(matches!(l.verdict, Verdict::Dnat { service: 0, masq: false, .. }));
        let miss = ipvs.lookup(Hook::Prerouting, &t("10.244.0.20", "8.8.8.8", 53), false, false);
        assert_eq!(miss.verdict, Verdict::NoService);
        (l.rules, l.lookups, miss.rules, miss.lookups)
    };
    // Hit: jump, RETURN, CLUSTER-IP mark (no ipset test from inside the CIDR), addrtype,
    // ACCEPT (one test); conn table + service table. Miss: the same rules, no IPVS.
    assert_eq!(cost(10), (5, 3, 5, 1));
    assert_eq!(cost(10), cost(10_000));
}

#[test]
fn off_cluster_source_and_hairpin_are_masqueraded() {
    let eps = vec![ep(0, "10.244.0.5", 0)];
    let mut ipvs = Ipvs::build(
        &table(vec![svc("a", "10.96.0.10", 53, None, eps, TrafficPolicy::Cluster)]),
        &node(),
        IpvsScheduler::Rr,
    );
    let l = ipvs.lookup(Hook::Prerouting, &t("192.168.5.5", "10.96.0.10", 53), false, true);
    assert_eq!(l.verdict, Verdict::Dnat { service: 0, port: 0, endpoint: 0, masq: true });
    assert_eq!((l.rules, l.lookups), (7, 5));
    let l = ipvs.lookup(Hook::Prerouting, &t("10.244.0.5", "10.96.0.10", 53), false, false);
    assert_eq!(l.verdict, Verdict::Dnat { service: 0, port: 0, endpoint: 0, masq: true });
    let l = ipvs.lookup(Hook::Prerouting, &t("10.244.0.6", "10.96.0.10", 53), false, false);
    assert_eq!(l.verdict, Verdict::Dnat { service: 0, port: 0, endpoint: 0, masq: false });
}

#[test]
fn no_endpoints_is_rejected() {
    let mut ipvs = Ipvs::build(
        &table(vec![svc("e", "10.96.0.50", 80, None, vec![], TrafficPolicy::Cluster)]),
        &node(),
        IpvsScheduler::Rr,
    );
    let l = ipvs.lookup(Hook::Output, &t("172.18.0.2", "10.96.0.50", 80), false, false);
    assert_eq!(l.verdict, Verdict::Reject { service: 0, port: 0 });
}

#[test]
fn nodeport_local_lists_only_local_endpoints() {
    let eps = vec![ep(0, "10.244.0.5", 0), ep(1, "10.244.1.7", 1)];
    let s = svc("web", "10.96.0.100", 8080, Some(30080), eps, TrafficPolicy::Local);
    let mut ipvs = Ipvs::build(&table(vec![s]), &node(), IpvsScheduler::Rr);
    let vs = ipvs.virtual_server(Protocol::Udp, ip("172.18.0.2"), 30080).unwrap();
    assert_eq!(vs.dests.iter().map(|d| d.endpoint).collect::<Vec<_>>(), [0]);
    assert_eq!(ipvs.virtual_server(Protocol::Udp, ip("10.96.0.100"), 8080).unwrap().dests.len(), 2);
    let l = ipvs.lookup(Hook::Prerouting, &t("192.168.5.5", "172.18.0.2", 30080), true, false);
    assert_eq!(l.verdict, Verdict::Dnat { service: 0, port: 0, endpoint: 0, masq: false });
    let out = ipvs.ipset_list();
    assert!(out.contains(
        "Name: KUBE-NODE-PORT-LOCAL-UDP\nType: bitmap:port\nNumber of entries: 1\nMembers:\n30080\n"
    ));
}

#[test]
fn nodeport_local_without_local_endpoints_falls_back_to_all() {
    let s = svc("web", "10.96.0.100", 8080, Some(30080), vec![ep(1, "10.244.1.7", 1)], TrafficPolicy::Local);
    let ipvs = Ipvs::build(&table(vec![s]), &node(), IpvsScheduler::Rr);
    assert_eq!(ipvs.virtual_server(Protocol::Udp, ip("172.18.0.2"), 30080).unwrap().dests.len(), 1);
}

#[test]
fn nodeport_cluster_policy_is_masqueraded() {
    let mut ipvs = Ipvs::build(&two_services(), &node(), IpvsScheduler::Rr);
    let l = ipvs.lookup(Hook::Prerouting, &t("192.168.5.5", "172.18.0.2", 30080), true, false);
    assert_eq!(l.verdict, Verdict::Dnat { service: 1, port: 0, endpoint: 0, masq: true });
    assert!(ipvs.rule_count() > ipvs.iptables_rules());
}
#[test]
fn nodes_sharing_one_table_keep_their_own_state() {
    let eps = vec![ep(0, "10.244.0.5", 0), ep(1, "10.244.1.7", 1), ep(2, "10.244.1.8", 1)];
    let web = svc("web", "10.96.0.100", 8080, Some(30080), eps.clone(), TrafficPolicy::Local);
    let dns = svc("kube-dns", "10.96.0.10", 53, None, eps, TrafficPolicy::Cluster);
    let tbl = table(vec![web, dns]);
    let shared = Ipvs::shared(&tbl);
    let views: Vec<NodeView> = (0..3)
        .map(|i| NodeView {
            id: i,
            name: format!("node-{i}"),
            ip: Ipv4Addr::new(172, 18, 0, 2 + i as u8),
            random_fully: true,
        })
        .collect();
    let mut nodes: Vec<Ipvs> =
        views.iter().map(|n| Ipvs::for_node(shared.clone(), &tbl, n, IpvsScheduler::Rr)).collect();
    for (n, ipvs) in views.iter().zip(&nodes) {
        let own = Ipvs::build(&tbl, n, IpvsScheduler::Rr);
        assert_eq!(ipvs.ipvsadm_ln(), own.ipvsadm_ln());
        assert_eq!(ipvs.ipset_list(), own.ipset_list());
        assert_eq!((ipvs.rule_count(), ipvs.memory_bytes()), (own.rule_count(), own.memory_bytes()));
    }
    // Local NodePort: node 1 lists its two endpoints, node 2 (none local) all three.
    let np = |i: &Ipvs, n: usize| i.virtual_server(Protocol::Udp, views[n].ip, 30080).unwrap().dests.len();
    assert_eq!((np(&nodes[0], 0), np(&nodes[1], 1), np(&nodes[2], 2)), (1, 2, 3));
    assert_eq!(nodes[1].real_servers(), 3 + 3 + 2);
    assert!(nodes[0].ipset_list().contains("10.244.0.5,udp:8080,10.244.0.5"));
    assert!(!nodes[1].ipset_list().contains("10.244.0.5,udp:8080,10.244.0.5"));
    // Scheduling on one node leaves the others at the list head with zero counters.
    let dnat = |i: &mut Ipvs, dst: &str, port: u16| match i
        .lookup(Hook::Prerouting, &t("192.168.5.5", dst, port), true, false)
        .verdict
    {
        Verdict::Dnat { endpoint, .. } => endpoint,
        v => panic!("{v:?}"),
    };
    assert_eq!(dnat(&mut nodes[0], "10.96.0.10", 53), 2);
    assert_eq!(dnat(&mut nodes[0], "10.96.0.10", 53), 1);
    assert_eq!(dnat(&mut nodes[1], "10.96.0.10", 53), 2);
    assert_eq!(dnat(&mut nodes[1], "172.18.0.3", 30080), 2);
    assert_eq!(dnat(&mut nodes[1], "172.18.0.3", 30080), 1);
    assert_eq!(dnat(&mut nodes[1], "172.18.0.3", 30080), 2);
    let active = |i: &Ipvs, a: &str, p: u16| {
        i.virtual_server(Protocol::Udp, ip(a), p).unwrap().dests.iter().map(|d| d.active).collect::<Vec<_>>()
    };
    assert_eq!(active(&nodes[0], "10.96.0.10", 53), [1, 1, 0]);
    assert_eq!(active(&nodes[1], "10.96.0.10", 53), [1, 0, 0]);
    assert_eq!(active(&nodes[1], "172.18.0.3", 30080), [2, 1]);
    assert_eq!(active(&nodes[2], "10.96.0.10", 53), [0, 0, 0]);
    assert!(nodes[1].ipvsadm_ln().contains("  -> 10.244.1.8:8080              Masq    1      2          0"));
    assert_eq!(nodes[2].ipvsadm_ln(), Ipvs::build(&tbl, &views[2], IpvsScheduler::Rr).ipvsadm_ln());
}

#[test]
fn tcp_virtual_servers_and_sets_carry_the_protocol() {
    use crate::proxy::fixtures::{tcp, with_protocol};
    let dns = svc("kube-dns", "10.96.0.10", 53, None, vec![ep(0, "10.244.0.5", 0)], TrafficPolicy::Cluster);
    let dns_tcp = with_protocol(dns.clone(), Protocol::Tcp);
    let web = with_protocol(
        svc("web", "10.96.0.100", 8080, Some(30080), vec![ep(2, "10.244.0.9", 0)], TrafficPolicy::Cluster),
        Protocol::Tcp,
    );
    let mut ipvs = Ipvs::build(&table(vec![dns, dns_tcp, web]), &node(), IpvsScheduler::Rr);
    // ipvs_cmp_services compares the protocol first: TCP (6) before UDP (17).
    let expected = concat!(
        "IP Virtual Server version 1.2.1 (size=4096)\n",
        "Prot LocalAddress:Port Scheduler Flags\n",
        "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n",
        "TCP  172.18.0.2:30080 rr\n",
        "  -> 10.244.0.9:8080              Masq    1      0          0         \n",
        "TCP  10.96.0.10:53 rr\n",
        "  -> 10.244.0.5:53                Masq    1      0          0         \n",
        "TCP  10.96.0.100:8080 rr\n",
        "  -> 10.244.0.9:8080              Masq    1      0          0         \n",
        "UDP  10.96.0.10:53 rr\n",
        "  -> 10.244.0.5:53                Masq    1      0          0         \n",
    );
    assert_eq!(ipvs.ipvsadm_ln(), expected);
    let sets = ipvs.ipset_list();
    for member in ["10.96.0.10,tcp:53\n", "10.96.0.10,udp:53\n", "10.244.0.9,tcp:8080,10.244.0.9\n"] {
        assert!(sets.contains(member), "{member:?} in\n{sets}");
    }
    assert!(sets.contains("Name: KUBE-NODE-PORT-TCP\n") && !sets.contains("KUBE-NODE-PORT-UDP"), "{sets}");
    // The NodePort is TCP: a TCP packet is marked by KUBE-NODE-PORT-TCP, a UDP one finds no server.
    let l = ipvs.lookup(Hook::Prerouting, &tcp("192.168.5.5", "172.18.0.2", 30080), true, true);
    assert!(matches!(l.verdict, Verdict::Dnat { service: 2, masq: true, .. }), "{l:?}");
    assert!(l
        .walk
        .iter()
        .any(|w| w == "KUBE-NODE-PORT: -p tcp -m set --match-set KUBE-NODE-PORT-TCP dst -j KUBE-MARK-MASQ"));
    let l = ipvs.lookup(Hook::Prerouting, &t("192.168.5.5", "172.18.0.2", 30080), true, false);
    assert_eq!(l.verdict, Verdict::NoService);
    // Same address and port, each protocol its own virtual server.
    let l = ipvs.lookup(Hook::Prerouting, &tcp("10.244.0.20", "10.96.0.10", 53), false, false);
    assert!(matches!(l.verdict, Verdict::Dnat { service: 1, .. }), "{l:?}");
    let l = ipvs.lookup(Hook::Prerouting, &t("10.244.0.20", "10.96.0.10", 53), false, false);
    assert!(matches!(l.verdict, Verdict::Dnat { service: 0, .. }), "{l:?}");
    assert_eq!(ipvs.virtual_server(Protocol::Tcp, ip("10.96.0.10"), 53).unwrap().service, 1);
    assert_eq!(
        ipvs.iptables_rules(),
        Ipvs::build(&two_services(), &node(), IpvsScheduler::Rr).iptables_rules()
    );
}
