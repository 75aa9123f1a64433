//! Tests of kube-proxy's nftables mode: the table's chains and maps, lookups, `nft list`.

use super::*;
use crate::cluster::Service;
use crate::proxy::fixtures::{ep, many, node, svc, t, table};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// `default/dns` at 10.96.0.10:53 with an endpoint on node 0 and one on node 1.
fn dns() -> Service {
    let eps = vec![ep(0, "10.244.0.5", 0), ep(1, "10.244.1.7", 1)];
    svc("dns", "10.96.0.10", 53, None, eps, TrafficPolicy::Cluster)
}

fn zero() -> impl FnMut() -> u32 {
    || 0
}

#[test]
fn chain_name_hash_matches_kube_proxy() {
    // proxier_test.go: "ULMVA6XW-ns1/svc1/tcp/p80" and "5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80".
    assert_eq!(hash_and_truncate("ns1/svc1/tcp/p80"), "ULMVA6XW-ns1/svc1/tcp/p80");
    assert_eq!(
        hash_and_truncate("ns1/svc1/tcp/p80__10.180.0.1/80"),
        "5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80"
    );
}

#[test]
fn list_prints_the_table() {
    let s = dns();
    let empty = svc("none", "10.96.0.20", 80, None, vec![], TrafficPolicy::Cluster);
    let nft = NftTable::build(&table(vec![s, empty]), &node());
    let base = hash_and_truncate("default/dns/udp/");
    let e0 = hash_and_truncate("default/dns/udp/__10.244.0.5/53");
    let e1 = hash_and_truncate("default/dns/udp/__10.244.1.7/53");
    let expected = format!(
        "table ip kube-proxy {{
\tcomment \"rules for kube-proxy\"
\tset cluster-ips {{
\t\ttype ipv4_addr
\t\tcomment \"Active ClusterIPs\"
\t\telements = {{ 10.96.0.10, 10.96.0.20 }}
\t}}

\tmap no-endpoint-services {{
\t\ttype ipv4_addr . inet_proto . inet_service : verdict
\t\tcomment \"vmap to drop or reject packets to services with no endpoints\"
\t\telements = {{ 10.96.0.20 . udp . 80 comment \"default/none\" : goto reject-chain }}
\t}}

\tmap no-endpoint-nodeports {{
\t\ttype inet_proto . inet_service : verdict
\t\tcomment \"vmap to drop or reject packets to service nodeports with no endpoints\"
\t}}

\tmap firewall-ips {{
\t\ttype ipv4_addr . inet_proto . inet_service : verdict
\t\tcomment \"destinations that are subject to LoadBalancerSourceRanges\"
\t}}

\tmap service-ips {{
\t\ttype ipv4_addr . inet_proto . inet_service : verdict
\t\tcomment \"ClusterIP, ExternalIP and LoadBalancer IP traffic\"
\t\telements = {{ 10.96.0.10 . udp . 53 : goto service-{base} }}
\t}}

\tmap service-nodeports {{
\t\ttype inet_proto . inet_service : verdict
\t\tcomment \"NodePort traffic\"
\t}}

\tchain filter-prerouting {{
\t\ttype filter hook prerouting priority dstnat - 10; policy accept;
\t\tct state new jump firewall-check
\t}}

\tchain filter-input {{
\t\ttype filter hook input priority -110; policy accept;
\t\tct state new jump nodeport-endpoints-check
\t\tct state new jump service-endpoints-check
\t}}

\tchain filter-forward {{
\t\ttype filter hook forward priority -110; policy accept;
\t\tct state new jump service-endpoints-check
\t\tct state new jump cluster-ips-check
\t}}

\tchain filter-output {{
\t\ttype filter hook output priority dstnat - 10; policy accept;
\t\tct state new jump service-endpoints-check
\t\tct state new jump firewall-check
\t}}

\tchain filter-output-post-dnat {{
\t\ttype filter hook output priority dstnat + 10; policy accept;
\t\tct state new jump cluster-ips-check
\t}}

\tchain nat-prerouting {{
\t\ttype nat hook prerouting priority dstnat; policy accept;
\t\tjump services
\t}}

\tchain nat-output {{
\t\ttype nat hook output priority dstnat; policy accept;
\t\tjump services
\t}}

\tchain nat-postrouting {{
\t\ttype nat hook postrouting priority srcnat; policy accept;
\t\tjump masquerading
\t}}

\tchain nodeport-endpoints-check {{
\t\tip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @no-endpoint-nodeports
\t}}

\tchain service-endpoints-check {{
\t\tip daddr . meta l4proto . th dport vmap @no-endpoint-services
\t}}

\tchain firewall-check {{
\t\tip daddr . meta l4proto . th dport vmap @firewall-ips
\t}}

\tchain services {{
\t\tip daddr . meta l4proto . th dport vmap @service-ips
\t\tfib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports
\t}}

\tchain masquerading {{
\t\tmeta mark & 0x00004000 == 0x00000000 return
\t\tmeta mark set meta mark ^ 0x00004000
\t\tmasquerade fully-random
\t}}

\tchain cluster-ips-check {{
\t\tip daddr @cluster-ips reject comment \"Reject traffic to invalid ports of ClusterIPs\"
\t}}

\tchain mark-for-masquerade {{
\t\tmeta mark set meta mark | 0x00004000
\t}}

\tchain reject-chain {{
\t\tcomment \"helper for @no-endpoint-services / @no-endpoint-nodeports\"
\t\treject
\t}}

\tchain endpoint-{e0} {{
\t\tip saddr 10.244.0.5 jump mark-for-masquerade
\t\tmeta l4proto udp dnat to 10.244.0.5:53
\t}}

\tchain endpoint-{e1} {{
\t\tip saddr 10.244.1.7 jump mark-for-masquerade
\t\tmeta l4proto udp dnat to 10.244.1.7:53
\t}}

\tchain service-{base} {{
\t\tip daddr 10.96.0.10 udp dport 53 ip saddr != 10.244.0.0/16 jump mark-for-masquerade
\t\tnumgen random mod 2 vmap {{ 0 : goto endpoint-{e0}, 1 : goto endpoint-{e1} }}
\t}}
}}
"
    );
    assert_eq!(nft.list(), expected);
    assert_eq!(nft.rules(), 11 + 1 + 1 + 1 + 2 + 3 + 1 + 1 + 1 + 4 + 2);
    assert_eq!(nft.map_elements(), 2 + 1 + 1 + 2);
}

#[test]
fn service_hit_and_miss_costs() {
    let s = dns();
    let nft = NftTable::build(&table(vec![s]), &node());
    let l = nft.lookup(Hook::Prerouting, &t("10.244.0.9", "10.96.0.10", 53), false, &mut zero(), true);
    assert_eq!(l.verdict, Verdict::Dnat { service: 0, port: 0, endpoint: 0, masq: false });
    assert_eq!((l.rules, l.lookups), (6, 2));
    assert_eq!(l.walk[0], "nat-prerouting: jump services");
    // u32::MAX picks the last endpoint: (0xFFFFFFFF * 2) >> 32 = 1. Off-cluster source masqueraded.
    let l = nft.lookup(Hook::Prerouting, &t("192.168.5.5", "10.96.0.10", 53), false, &mut || u32::MAX, false);
    assert_eq!(l.verdict, Verdict::Dnat { service: 0, port: 0, endpoint: 1, masq: true });
    assert_eq!((l.rules, l.lookups), (7, 2));
    let miss = nft.lookup(Hook::Prerouting, &t("10.244.0.9", "8.8.8.8", 53), false, &mut zero(), false);
    assert_eq!((miss.verdict, miss.rules, miss.lookups), (Verdict::NoService, 3, 1));
    let local_miss =
        nft.lookup(Hook::Prerouting, &t("10.244.0.9", "172.18.0.2", 22), true, &mut zero(), false);
    assert_eq!((local_miss.verdict, local_miss.rules, local_miss.lookups), (Verdict::NoService, 3, 2));
}

#[test]
fn cost_is_flat_in_the_number_of_services() {
    let cost = |n: usize| {
        let services = many(n);
        let nft = NftTable::build(&table(services), &node());
        let l = nft.lookup(Hook::Prerouting, &t("10.244.0.9", "10.96.0.1", 80), false, &mut zero(), false);
        assert!(matches!(l.verdict, Verdict::Dnat { service: 0, .. }));
        let m = nft.lookup(Hook::Prerouting, &t("10.244.0.9", "8.8.8.8", 80), false, &mut zero(), false);
        (l.rules, l.lookups, m.rules, m.lookups)
    };
    assert_eq!(cost(10), (6, 2, 3, 1));
    assert_eq!(cost(10), cost(10_000));
}

#[test]
fn numgen_is_uniform_within_bound() {
    let eps = (0..4).map(|i| ep(i, &format!("10.244.1.{}", i + 10), 1)).collect();
    let nft =
        NftTable::build(&table(vec![svc("s", "10.96.0.10", 53, None, eps, TrafficPolicy::Cluster)]), &node());
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut random = || rng.next_u32();
    let n = 40_000;
    let mut counts = [0u32; 4];
    for _ in 0..n {
        match nft
            .lookup(Hook::Prerouting, &t("10.244.0.9", "10.96.0.10", 53), false, &mut random, false)
            .verdict
        {
            Verdict::Dnat { endpoint, .. } => counts[endpoint] += 1,
            v => panic!("{v:?}"),
        }
    }
    // Binomial(40000, 1/4): sd = sqrt(40000 * 0.25 * 0.75) ~ 86.6; 5 sd = 433.
    for c in counts {
        assert!((c as i64 - 10_000).abs() < 433, "{counts:?}");
    }
}

#[test]
fn no_endpoints_is_rejected_in_the_filter_chains() {
    let nft = NftTable::build(
        &table(vec![svc("e", "10.96.0.50", 80, None, vec![], TrafficPolicy::Cluster)]),
        &node(),
    );
    let out = nft.lookup(Hook::Output, &t("172.18.0.2", "10.96.0.50", 80), false, &mut zero(), false);
    assert_eq!((out.verdict, out.rules, out.lookups), (Verdict::Reject { service: 0, port: 0 }, 3, 1));
    let fwd = nft.lookup(Hook::Prerouting, &t("10.244.0.9", "10.96.0.50", 80), false, &mut zero(), false);
    assert_eq!((fwd.verdict, fwd.rules, fwd.lookups), (Verdict::Reject { service: 0, port: 0 }, 6, 2));
}

#[test]
fn nodeport_local_uses_only_local_endpoints() {
    let eps = vec![ep(0, "10.244.0.5", 0), ep(1, "10.244.1.7", 1), ep(2, "10.244.0.6", 0)];
    let s = svc("web", "10.96.0.100", 8080, Some(30080), eps, TrafficPolicy::Local);
    let nft = NftTable::build(&table(vec![s]), &node());
    let local = format!("local-{}", hash_and_truncate("default/web/udp/"));
    let e0 = hash_and_truncate("default/web/udp/__10.244.0.5/8080");
    let e2 = hash_and_truncate("default/web/udp/__10.244.0.6/8080");
    let listing = nft.list();
    let numgen = format!("numgen random mod 2 vmap {{ 0 : goto endpoint-{e0}, 1 : goto endpoint-{e2} }}");
    let expected = format!("\tchain {local} {{\n\t\t{numgen}\n\t}}\n");
    assert!(listing.contains(&expected), "{listing}");
    for r in [0, u32::MAX / 2 + 1, u32::MAX] {
        let l = nft.lookup(Hook::Prerouting, &t("192.168.5.5", "172.18.0.2", 30080), true, &mut || r, false);
        let Verdict::Dnat { endpoint, masq, .. } = l.verdict else { panic!("{l:?}") };
        assert!(endpoint == 0 || endpoint == 2);
        assert!(!masq);
    }
}

#[test]
fn nodeport_local_without_local_endpoints_drops() {
    let s = svc("web", "10.96.0.100", 8080, Some(30080), vec![ep(1, "10.244.1.7", 1)], TrafficPolicy::Local);
    let nft = NftTable::build(&table(vec![s]), &node());
    assert!(nft.list().contains("\t\telements = { udp . 30080 comment \"default/web\" : drop }\n"));
    let l = nft.lookup(Hook::Prerouting, &t("192.168.5.5", "172.18.0.2", 30080), true, &mut zero(), false);
    assert_eq!(l.verdict, Verdict::Drop { service: 0, port: 0 });
    // A pod on this node still reaches the Service through the short-circuit rule.
    let l = nft.lookup(Hook::Prerouting, &t("10.244.0.9", "172.18.0.2", 30080), true, &mut zero(), false);
    assert_eq!(l.verdict, Verdict::Dnat { service: 0, port: 0, endpoint: 0, masq: false });
}

#[test]
fn nodeport_cluster_policy_masquerades() {
    let s =
        svc("web", "10.96.0.100", 8080, Some(30080), vec![ep(1, "10.244.1.7", 1)], TrafficPolicy::Cluster);
    let nft = NftTable::build(&table(vec![s]), &node());
    let l = nft.lookup(Hook::Prerouting, &t("192.168.5.5", "172.18.0.2", 30080), true, &mut zero(), false);
    assert_eq!(l.verdict, Verdict::Dnat { service: 0, port: 0, endpoint: 0, masq: true });
    // jump, service-ips miss, nodeports rule + lookup, external (2 + mark), service chain
    // masq rule (no match: daddr is the node), numgen, endpoint chain 2.
    assert_eq!((l.rules, l.lookups), (10, 3));
    assert_eq!(nft.rule_count(), nft.rules() + nft.map_elements());
    assert!(nft.memory_bytes() > 0);
}

#[test]
fn tcp_ports_are_keyed_and_dnated_as_tcp() {
    use crate::cluster::Protocol;
    use crate::proxy::fixtures::{tcp, with_protocol};
    let web = with_protocol(
        svc("web", "10.96.0.20", 80, Some(30080), vec![ep(0, "10.244.0.5", 0)], TrafficPolicy::Cluster),
        Protocol::Tcp,
    );
    let nft = NftTable::build(&table(vec![dns(), web]), &node());
    let out = nft.list();
    let base = hash_and_truncate("default/web/tcp/");
    for text in [
        format!("10.96.0.20 . tcp . 80 : goto service-{base}"),
        format!("tcp . 30080 : goto external-{base}"),
        "10.96.0.10 . udp . 53 : goto service-".to_string(),
        "ip daddr 10.96.0.20 tcp dport 80 ip saddr != 10.244.0.0/16 jump mark-for-masquerade".to_string(),
        "meta l4proto tcp dnat to 10.244.0.5:80".to_string(),
    ] {
        assert!(out.contains(&text), "{text:?} in\n{out}");
    }
    let l = nft.lookup(Hook::Prerouting, &tcp("10.244.1.9", "10.96.0.20", 80), false, &mut zero(), false);
    assert!(matches!(l.verdict, Verdict::Dnat { service: 1, .. }), "{l:?}");
    let l = nft.lookup(Hook::Prerouting, &t("10.244.1.9", "10.96.0.20", 80), false, &mut zero(), false);
    assert_eq!(l.verdict, Verdict::NoService, "UDP to a TCP-only port");
    let l = nft.lookup(Hook::Prerouting, &tcp("10.244.1.9", "10.96.0.10", 53), false, &mut zero(), false);
    assert_eq!(l.verdict, Verdict::NoService, "TCP to a UDP-only port");
}
