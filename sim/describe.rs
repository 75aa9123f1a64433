//! `cnisim describe`: a node's simulated kernel state, printed the way `ip -d link`,
//! `ip addr`, `ip route`, `bridge fdb` and `ip neigh` print a real one.

use std::fmt::Write;

use crate::cluster::NodeId;
use crate::net::neigh::NeighState;
use crate::net::route::{Proto, Route, RouteKind, RouteTable};
use crate::net::NsId;
use crate::time::Instant;
use crate::world::{DeviceKind, LinkEnd, TunnelProto, World};

/// The node's host namespace, then each pod namespace on it, at simulated time `now`.
pub fn describe_node(w: &World, node: NodeId, now: Instant) -> String {
    describe_node_with(w, node, now, "")
}

/// [`describe_node`] of a simulation: with its BIRD's view when the run simulates BGP.
pub fn describe_sim(sim: &crate::run::Simulation, node: NodeId, now: Instant) -> String {
    let bird = sim.bgp.as_ref().and_then(|cp| cp.birds.iter().find(|b| b.node == node));
    let extra = bird.map(|b| describe_bird(sim, b, now)).unwrap_or_default();
    describe_node_with(&sim.world, node, now, &extra)
}

fn describe_node_with(w: &World, node: NodeId, now: Instant, after_host: &str) -> String {
    let mut s = String::new();
    let spec = &w.cluster.nodes[node];
    let _ = writeln!(
        s,
        "# node {} ({}), {} cores, CNI {}, state at t = {}",
        spec.name,
        spec.ip,
        spec.cores,
        w.cluster.cni,
        crate::time::Duration::from_nanos(now.as_nanos())
    );
    let k = &w.nodes[node].kernel;
    let _ = writeln!(
        s,
        "\n$ sysctl net.core.rmem_default net.core.wmem_default net.core.netdev_max_backlog\n\
         net.core.rmem_default = {}\nnet.core.wmem_default = {}\nnet.core.netdev_max_backlog = {}\n\
         $ ethtool -g eth0   (RX ring in use)\nRX:\t\t{}\n\
         (eth0 qdisc mq: a pfifo_fast of txqueuelen {} per core's transmit queue; tun devices txqueuelen {})",
        k.rmem_default, k.wmem_default, k.netdev_max_backlog, k.rx_ring, k.txqueuelen, k.tun_txqueuelen
    );
    let o = k.offloads;
    let on = |b: bool| if b { "on" } else { "off" };
    // As `ethtool -k` prints them (the legacy name of a feature that has one, ethtool.c
    // `off_flag_def`); only the features cnisim models.
    let _ = writeln!(s, "$ ethtool -k eth0   (the offloads cnisim models; pods' veths share the node's)");
    for (name, value) in [
        ("tcp-segmentation-offload", o.tso),
        ("generic-segmentation-offload", o.gso),
        ("generic-receive-offload", o.gro),
        ("tx-udp_tnl-segmentation", o.tx_udp_tnl_segmentation),
        ("tx-ipxip4-segmentation", o.tx_ipxip4_segmentation),
    ] {
        let _ = writeln!(s, "{name}: {}", on(value));
    }
    let _ = writeln!(
        s,
        "$ sysctl net.ipv4.tcp_limit_output_bytes\nnet.ipv4.tcp_limit_output_bytes = {}",
        k.tcp_limit_output_bytes
    );
    describe_ns(w, w.nodes[node].ns, now, &mut s);
    describe_proxy(w, node, now, &mut s);
    describe_filter(w, node, &mut s);
    describe_cilium_policy(w, node, &mut s);
    s.push_str(after_host);
    for ns in 0..w.netns.len() {
        if w.netns[ns].node == node && ns != w.nodes[node].ns {
            let _ = writeln!(s, "\n# pod {} (network namespace on {})", w.netns[ns].name, spec.name);
            describe_ns(w, ns, now, &mut s);
        }
    }
    s
}

/// The filter table and ipsets a policy engine programmed on the node (Felix, weave-npc).
fn describe_filter(w: &World, node: NodeId, s: &mut String) {
    let Some(t) = w.netns[w.nodes[node].ns].filter.as_deref() else { return };
    let engine = w.cluster.cni.policy_engine().unwrap_or("none");
    let _ = writeln!(
        s,
        "# NetworkPolicy: {engine}, {} policies; filter table: {} chains, {} rules, {} ipsets",
        w.cluster.policy.policies.len(),
        t.chains.len(),
        t.rule_count(),
        t.sets.len()
    );
    let _ = writeln!(s, "$ iptables-save -t filter");
    s.push_str(&t.save());
    if !t.sets.is_empty() {
        let _ = writeln!(s, "$ ipset list");
        s.push_str(&t.save_sets());
    }
}

/// The node's Service rules as the mode's own tool prints them, and its conntrack table.
fn describe_proxy(w: &World, node: NodeId, now: Instant, s: &mut String) {
    use crate::proxy::node::Rules;
    let Some(p) = w.proxies.get(node) else { return };
    if w.cluster.services.services.is_empty() {
        // No Service rules, but a table masquerade or policy filled.
        if p.conntrack.created > 0 {
            describe_conntrack(p, now, s);
        }
        return;
    }
    let _ = writeln!(s, "# Services: proxy {}, {} rules installed", p.mode, p.rules.installed());
    match &p.rules {
        Rules::Iptables(t) => {
            let _ = writeln!(s, "$ iptables-save -t nat");
            s.push_str(&t.save());
        }
        Rules::Userspace(t) => {
            let _ = writeln!(s, "$ iptables-save -t nat");
            s.push_str(&t.save());
        }
        Rules::Ipvs(t) => {
            let _ = writeln!(s, "$ ipvsadm -Ln");
            s.push_str(&t.ipvsadm_ln());
            let _ = writeln!(s, "$ ipset list");
            s.push_str(&t.ipset_list());
        }
        Rules::Nftables(t) => {
            let _ = writeln!(s, "$ nft list table ip kube-proxy");
            s.push_str(&t.list());
        }
        Rules::Ebpf(_) => {
            let _ = writeln!(s, "$ cilium-dbg service list");
            let _ = writeln!(s, "ID   Frontend               Service Type   Backend");
            let mut id = 0;
            for svc in &p.table.services {
                let Some(vip) = svc.cluster_ip else { continue };
                for port in &svc.ports {
                    let proto = port.protocol;
                    let mut fronts = vec![(format!("{vip}:{}/{proto}", port.port), "ClusterIP")];
                    if let Some(np) = port.node_port {
                        fronts.push((format!("{}:{np}/{proto}", p.node.ip), "NodePort"));
                    }
                    for (front, kind) in fronts {
                        id += 1;
                        let backends: Vec<String> = svc
                            .ready()
                            .enumerate()
                            .map(|(i, (_, e))| {
                                format!("{} => {}:{}/{proto} (active)", i + 1, e.ip, port.target_port)
                            })
                            .collect();
                        let first = backends.first().cloned().unwrap_or_default();
                        let _ = writeln!(s, "{id:<4} {front:<22} {kind:<14} {first}");
                        for b in backends.iter().skip(1) {
                            let _ = writeln!(s, "{:<4} {:<22} {:<14} {b}", "", "", "");
                        }
                    }
                }
            }
        }
    }
    describe_conntrack(p, now, s);
}

/// `conntrack -L` (the first entries) and `conntrack -S` for the node's table.
fn describe_conntrack(p: &crate::proxy::node::NodeProxy, now: Instant, s: &mut String) {
    let entries = p.conntrack.list(now);
    // `-p udp` while the table holds UDP entries only (what every UDP scenario printed).
    let filter = if entries.iter().any(|e| !e.starts_with("udp ")) { "" } else { " -p udp" };
    let _ = writeln!(
        s,
        "$ conntrack -L{filter}   (at t = {}; {} entries, nf_conntrack_max {})",
        crate::time::Duration::from_nanos(now.as_nanos()),
        entries.len(),
        p.conntrack.max
    );
    const SHOWN: usize = 20;
    for e in entries.iter().take(SHOWN) {
        let _ = writeln!(s, "{e}");
    }
    if entries.len() > SHOWN {
        let _ = writeln!(s, "... {} more", entries.len() - SHOWN);
    }
    // conntrack -S prints one line per CPU with more counters; these are the ones kept, summed
    // over the node's cores: entries confirmed, refused at confirmation, packets dropped for
    // either reason or a full table, entries evicted to make room.
    let ct = &p.conntrack;
    let _ = writeln!(
        s,
        "$ conntrack -S   (all cores)\ninsert={} insert_failed={} drop={} early_drop={}",
        ct.inserted,
        ct.insert_failed,
        ct.insert_failed + ct.refused,
        ct.early_dropped
    );
}

/// Cilium's identities and the node's endpoints' policy maps, as `cilium-dbg identity list` and
/// `cilium-dbg bpf policy get -n <endpoint>` print them (cilium-dbg/cmd/bpf_policy_get.go:
/// POLICY, DIRECTION, IDENTITY, PORT/PROTO, PREFIX; without the proxy-port, auth-type and
/// byte/packet counter columns, which cnisim does not keep; with what each entry was derived
/// from). Endpoint IDs are the pods' order on the node.
fn describe_cilium_policy(w: &World, node: NodeId, s: &mut String) {
    let Some(maps) = w.netns[w.nodes[node].ns].cilium.as_ref() else { return };
    let policy = &maps.policy;
    const SHOWN: usize = 20;
    let _ = writeln!(s, "# Cilium: security identities, policy maps of this node's endpoints");
    let _ = writeln!(s, "$ cilium-dbg identity list");
    let _ = writeln!(s, "{:<10} LABELS", "ID");
    for (id, labels) in policy.identities.iter().take(SHOWN * 2) {
        for (i, l) in labels.iter().enumerate() {
            let shown_id = if i == 0 { id.to_string() } else { String::new() };
            let _ = writeln!(s, "{shown_id:<10} {l}");
        }
    }
    if policy.identities.len() > SHOWN * 2 {
        let _ = writeln!(s, "... {} more", policy.identities.len() - SHOWN * 2);
    }
    let local: Vec<(usize, &crate::cluster::PodSpec, (crate::net::route::DevId, u32))> = w
        .cluster
        .pods
        .iter()
        .filter(|p| p.node == node)
        .filter_map(|p| maps.endpoints.get(&p.ip).map(|&e| (p, e)))
        .enumerate()
        .map(|(i, (p, e))| (i + 1, p, e))
        .collect();
    for &(ep, pod, (lxc, id)) in local.iter().take(SHOWN) {
        let map = policy.policy(id);
        let state = |on: bool| if on { "Enabled" } else { "Disabled" };
        let _ = writeln!(
            s,
            "$ cilium-dbg bpf policy get -n {ep}   ({}, pod {}/{}, identity {id}; policy enforcement: \
             ingress {}, egress {})",
            w.devices[lxc].name,
            pod.namespace,
            pod.name,
            state(map.enforced[0]),
            state(map.enforced[1])
        );
        let _ = writeln!(
            s,
            "{:<8} {:<11} {:<10} {:<16} {:<7} DERIVED FROM",
            "POLICY", "DIRECTION", "IDENTITY", "PORT/PROTO", "PREFIX"
        );
        for (key, entry) in map.sorted() {
            let _ = writeln!(
                s,
                "{:<8} {:<11} {:<10} {:<16} {:<7} {}",
                if entry.deny { "Deny" } else { "Allow" },
                key.direction.name(),
                key.identity,
                key.port_proto(),
                key.prefix,
                policy.origin(&entry)
            );
        }
    }
    if local.len() > SHOWN {
        let _ = writeln!(s, "... {} more endpoints", local.len() - SHOWN);
    }
    let _ = writeln!(
        s,
        "(policy connection tracking: {} CT_EGRESS and {} CT_INGRESS entries)",
        maps.policy_ct.egress.len(),
        maps.policy_ct.ingress.len()
    );
}

fn describe_ns(w: &World, ns: NsId, now: Instant, s: &mut String) {
    let n = &w.netns[ns];
    let _ = writeln!(s, "$ ip -d link");
    for &d in &n.devices {
        link_line(w, d, s);
    }
    let _ = writeln!(s, "$ ip addr");
    for &d in &n.devices {
        let dev = &w.devices[d];
        if dev.addrs.is_empty() {
            continue;
        }
        let _ = writeln!(s, "{}: {}: mtu {}", dev.ifindex, dev.name, dev.mtu);
        for &(a, p) in &dev.addrs {
            let scope = if a.is_loopback() { "host" } else { "global" };
            let brd = if p < 31 && !a.is_loopback() {
                let b = std::net::Ipv4Addr::from(u32::from(a) | (u32::MAX >> p));
                format!(" brd {b}")
            } else {
                String::new()
            };
            let _ = writeln!(s, "    inet {a}/{p}{brd} scope {scope} {}", dev.name);
        }
    }
    let _ = writeln!(s, "$ ip route");
    routes(w, &n.main, false, s);
    let _ = writeln!(s, "$ ip route show table local");
    routes(w, &n.local, true, s);
    let _ = writeln!(s, "$ sysctl net.ipv4.ip_forward\nnet.ipv4.ip_forward = {}", n.ip_forward as u8);
    for &d in &n.devices {
        if let DeviceKind::Bridge { fdb, .. } = &w.devices[d].kind {
            let _ = writeln!(s, "$ bridge fdb show br {}", w.devices[d].name);
            for (mac, e) in fdb.entries(now) {
                let flags = if e.permanent { " permanent" } else { "" };
                let _ =
                    writeln!(s, "{mac} dev {} master {}{flags}", w.devices[e.port].name, w.devices[d].name);
            }
        }
    }
    for &d in &n.devices {
        if let Some(t) = w.devices[d].tunnel() {
            if t.metadata {
                continue;
            }
            let _ = writeln!(s, "$ bridge fdb show dev {}", w.devices[d].name);
            let mut fdb: Vec<_> = t.fdb.iter().collect();
            fdb.sort();
            for (mac, ip) in fdb {
                let _ = writeln!(s, "{mac} dev {} dst {ip} self permanent", w.devices[d].name);
            }
        }
    }
    let _ = writeln!(s, "$ ip neigh");
    for (ip, e) in n.neigh.entries() {
        let state = match e.state {
            NeighState::Reachable => "REACHABLE",
            NeighState::Permanent => "PERMANENT",
        };
        let _ = writeln!(s, "{ip} dev {} lladdr {} {state}", w.devices[e.dev].name, e.mac);
    }
    for (ip, inc) in n.neigh.incomplete() {
        let _ = writeln!(s, "{ip} dev {}  INCOMPLETE", w.devices[inc.dev].name);
    }
}

fn link_line(w: &World, d: usize, s: &mut String) {
    let dev = &w.devices[d];
    let (flags, qdisc) = match dev.kind {
        DeviceKind::Loopback => ("LOOPBACK,UP,LOWER_UP", "noqueue"),
        DeviceKind::Nic { .. } => ("BROADCAST,MULTICAST,UP,LOWER_UP", "mq"),
        DeviceKind::Ipip => ("NOARP,UP,LOWER_UP", "noqueue"),
        DeviceKind::Tun { .. } => ("POINTOPOINT,MULTICAST,NOARP,UP,LOWER_UP", "fq_codel"),
        DeviceKind::UdpTunnel(_) => ("BROADCAST,MULTICAST,UP,LOWER_UP", "noqueue"),
        _ => ("BROADCAST,MULTICAST,UP,LOWER_UP", "noqueue"),
    };
    let name = match dev.kind {
        DeviceKind::Veth { peer } => format!("{}@if{}", dev.name, w.devices[peer].ifindex),
        DeviceKind::Macvlan { lower } | DeviceKind::IpvlanL3 { lower } => {
            format!("{}@if{}", dev.name, w.devices[lower].ifindex)
        }
        _ => dev.name.clone(),
    };
    let master = dev.master.map(|m| format!(" master {}", w.devices[m].name)).unwrap_or_default();
    let _ = writeln!(s, "{}: {name}: <{flags}> mtu {} qdisc {qdisc}{master} state UP", dev.ifindex, dev.mtu);
    match &dev.kind {
        DeviceKind::Loopback => {
            let _ = writeln!(s, "    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00");
        }
        DeviceKind::Veth { peer } => {
            let _ = writeln!(
                s,
                "    link/ether {} brd ff:ff:ff:ff:ff:ff link-netns {}",
                dev.mac, w.netns[w.devices[*peer].ns].name
            );
            let _ = writeln!(s, "    veth");
        }
        DeviceKind::Bridge { ports, .. } => {
            let _ = writeln!(s, "    link/ether {} brd ff:ff:ff:ff:ff:ff", dev.mac);
            let _ = writeln!(
                s,
                "    bridge forward_delay 1500 hello_time 200 max_age 2000 ageing_time 30000 stp_state 0 priority 32768 ({} ports)",
                ports.len()
            );
        }
        DeviceKind::Nic { tx } => {
            let l = &w.links[*tx];
            let to = match w.link_ends[*tx] {
                LinkEnd::Switch { switch, .. } => w.switches[switch].name.clone(),
                LinkEnd::Device(d) => format!("{} {}", w.netns[w.devices[d].ns].name, w.devices[d].name),
            };
            let _ = writeln!(s, "    link/ether {} brd ff:ff:ff:ff:ff:ff", dev.mac);
            let _ =
                writeln!(s, "    # physical NIC: {} cable to {to}", crate::units::Bandwidth(l.bandwidth_bps));
        }
        DeviceKind::UdpTunnel(t) => {
            let _ = writeln!(s, "    link/ether {} brd ff:ff:ff:ff:ff:ff", dev.mac);
            let dev_part = t.underlay.map(|d| format!(" dev {}", w.devices[d].name)).unwrap_or_default();
            let csum = if t.udp_csum { "udpcsum" } else { "noudpcsum" };
            let df = if t.df { " df set" } else { "" };
            match (t.proto, t.metadata) {
                (TunnelProto::Vxlan, false) => {
                    let learning = if t.learning { "" } else { " nolearning" };
                    let _ = writeln!(
                        s,
                        "    vxlan id {} local {}{dev_part} srcport 0 0 dstport {}{learning} ttl auto{df} ageing 300 {csum}",
                        t.vni, t.local, t.port
                    );
                }
                (TunnelProto::Vxlan, true) => {
                    let _ = writeln!(
                        s,
                        "    vxlan external id 0 srcport 0 0 dstport {} nolearning ttl auto{df} {csum}",
                        t.port
                    );
                }
                (TunnelProto::Geneve, true) => {
                    let _ = writeln!(s, "    geneve external id 0 ttl auto{df} dstport {} {csum}", t.port);
                }
                (TunnelProto::Geneve, false) => {
                    let _ = writeln!(s, "    geneve id {} ttl auto{df} dstport {} {csum}", t.vni, t.port);
                }
            }
        }
        DeviceKind::Macvlan { lower } => {
            let _ = writeln!(
                s,
                "    link/ether {} brd ff:ff:ff:ff:ff:ff link-netns {}",
                dev.mac, w.netns[w.devices[*lower].ns].name
            );
            let _ = writeln!(s, "    macvlan mode bridge bcqueuelen 1000 usedbcqueuelen 1000");
        }
        DeviceKind::IpvlanL3 { lower } => {
            let _ = writeln!(
                s,
                "    link/ether {} brd ff:ff:ff:ff:ff:ff link-netns {}",
                w.devices[*lower].mac, w.netns[w.devices[*lower].ns].name
            );
            let _ = writeln!(s, "    ipvlan  mode l3 bridge");
        }
        DeviceKind::Ovs(o) => {
            let _ = writeln!(s, "    link/ether {} brd ff:ff:ff:ff:ff:ff", dev.mac);
            let _ = writeln!(
                s,
                "    openvswitch datapath: vports {} (netdev), {} (vxlan); {} MACs learned",
                w.devices[o.local_port].name,
                w.devices[o.tunnel].name,
                o.macs.len()
            );
        }
        DeviceKind::Tun { proc } => {
            let _ = writeln!(s, "    link/none");
            let _ = writeln!(
                s,
                "    tun type tun pi off vnet_hdr off persist off ({} holds it)",
                w.procs[*proc].name
            );
        }
        DeviceKind::UserPort { proc } => {
            let _ = writeln!(s, "    link/ether {} brd ff:ff:ff:ff:ff:ff", dev.mac);
            let _ = writeln!(s, "    # captured and injected by {}", w.procs[*proc].name);
        }
        DeviceKind::Ipip => {
            let _ = writeln!(s, "    link/ipip 0.0.0.0 brd 0.0.0.0");
            let _ = writeln!(s, "    ipip any remote any local any ttl inherit nopmtudisc");
        }
    }
    if dev.master.is_some() {
        let _ = writeln!(
            s,
            "    bridge_slave state forwarding priority 32 cost 2 hairpin off learning on flood on"
        );
    }
}

fn routes(w: &World, t: &RouteTable, local: bool, s: &mut String) {
    let mut rs: Vec<&Route> = t.routes().iter().collect();
    rs.sort_by_key(|r| (r.dst.network(), r.dst.prefix()));
    for r in rs {
        let mut line = String::new();
        if local {
            line.push_str(match r.kind {
                RouteKind::Local => "local ",
                RouteKind::Broadcast => "broadcast ",
                RouteKind::Unicast => "",
            });
        }
        if r.dst.prefix() == 0 {
            line.push_str("default");
        } else if r.dst.prefix() == 32 {
            let _ = write!(line, "{}", r.dst.network());
        } else {
            let _ = write!(line, "{}", r.dst);
        }
        if r.ecmp.len() > 1 {
            for (gw, dev) in &r.ecmp {
                let _ = write!(line, " nexthop via {gw} dev {} weight 1", w.devices[*dev].name);
            }
        } else {
            if let Some(gw) = r.gateway {
                let _ = write!(line, " via {gw}");
            }
            let _ = write!(line, " dev {}", w.devices[r.dev].name);
        }
        if r.proto != Proto::Boot {
            let _ = write!(line, " proto {}", r.proto);
        }
        if r.scope != crate::net::route::Scope::Global {
            let _ = write!(line, " scope {}", r.scope);
        }
        if let Some(src) = r.src {
            let _ = write!(line, " src {src}");
        }
        if let Some(mtu) = r.mtu {
            let _ = write!(line, " mtu {mtu}");
        }
        if r.onlink {
            line.push_str(" onlink");
        }
        let _ = writeln!(s, "{line}");
    }
}

/// The greeting of Calico's BIRD build (`birdc` on calico-node, bird-facts.md §9).
const BIRD_READY: &str = "BIRD v0.3.3+birdv1.6.8 ready.";

/// A simulated time as BIRD's and calicoctl's `since` column shows a time of day, counted from
/// the run's start at 00:00:00.
fn clock(t: Instant) -> String {
    let secs = t.as_nanos() / 1_000_000_000;
    format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

/// BIRD's own view: `birdc show protocols`, `birdc show route` and `calicoctl node status`.
fn describe_bird(sim: &crate::run::Simulation, b: &crate::run::bgp::Bird, now: Instant) -> String {
    use crate::bgp::State;
    let sp = &b.speaker;
    let mut s = String::new();
    let w = &sim.world;
    let name = &w.cluster.nodes[b.node].name;
    let running = sp.running && !b.dead;
    let _ = writeln!(
        s,
        "# BGP: BIRD on {name}, router id {}, AS {}{}; {} sessions, {} routes in its table",
        sp.config.router_id,
        sp.config.local_as,
        sp.config.cluster_id.map(|c| format!(", route reflector (cluster id {c})")).unwrap_or_default(),
        sp.peers.iter().filter(|p| p.config.configured).count(),
        sp.rib_len()
    );
    let _ = writeln!(s, "$ birdc show protocols");
    if !running {
        let _ = writeln!(s, "Unable to connect to server control socket (/var/run/calico/bird.ctl): No such file or directory");
    } else {
        // nest/proto.c `proto_cmd_show`: "%-8s %-8s %-8s %-5s  %-10s  %s", the BGP info the
        // state padded to 14 characters, then the last error (proto/bgp/bgp.c `bgp_show_proto_info`).
        let _ = writeln!(s, "{BIRD_READY}");
        let _ = writeln!(s, "name     proto    table    state  since       info");
        for (n, proto) in
            [("static1", "Static"), ("kernel1", "Kernel"), ("device1", "Device"), ("direct1", "Direct")]
        {
            let _ =
                writeln!(s, "{n:<8} {proto:<8} {:<8} {:<5}  {:<10}  ", "master", "up", clock(Instant::ZERO));
        }
        // A peer whose node has not joined yet is not in bird.cfg.
        for p in sp.peers.iter().filter(|p| p.config.configured) {
            let state = if p.state == State::Established { "up" } else { "start" };
            let err = if p.state == State::Established { "" } else { p.last_error.as_deref().unwrap_or("") };
            let info = format!("{:<14}{err}", p.state.name());
            let _ = writeln!(
                s,
                "{:<8} {:<8} {:<8} {:<5}  {:<10}  {info}",
                p.config.name,
                "BGP",
                "master",
                state,
                clock(p.since)
            );
        }
    }
    let _ = writeln!(s, "$ birdc show route");
    if running {
        let _ = writeln!(s, "{BIRD_READY}");
        for net in &sp.config.own {
            let _ =
                writeln!(s, "{:<18} blackhole [static1 {}] * (200)", net.to_string(), clock(Instant::ZERO));
        }
        let mut rows: Vec<(crate::addr::Ipv4Net, String)> = Vec::new();
        let best: std::collections::BTreeMap<_, _> =
            sp.fib.keys().filter_map(|&n| sp.best(n).map(|(i, id, _)| (n, (i, id)))).collect();
        for (i, p) in sp.peers.iter().enumerate() {
            for ((net, id), path) in &p.adj_in {
                let star = if best.get(net) == Some(&(i, *id)) { " *" } else { "" };
                let origin = match path.origin {
                    crate::wire::bgp::Origin::Igp => "i",
                    crate::wire::bgp::Origin::Egp => "e",
                    crate::wire::bgp::Origin::Incomplete => "?",
                };
                let dev = w.netns[w.nodes[b.node].ns]
                    .main
                    .lookup(path.next_hop)
                    .map(|r| w.devices[r.dev].name.clone())
                    .unwrap_or_else(|| "eth0".into());
                let stale = if path.stale { " (stale)" } else { "" };
                // nest/rt-table.c `rt_show_rte`: "%-18s %s [%s %s%s]%s%s", with " from <peer>"
                // when the route came from another address than its next hop (a reflector).
                let from = if path.next_hop != p.config.addr {
                    format!(" from {}", p.config.addr)
                } else {
                    String::new()
                };
                rows.push((
                    *net,
                    format!(
                        "via {} on {dev} [{} {}{from}]{star} (100/0) [{origin}]{stale}",
                        path.next_hop,
                        p.config.name,
                        clock(p.since)
                    ),
                ));
            }
        }
        rows.sort_by_key(|r| r.0);
        let mut last = None;
        for (net, row) in rows {
            let first = if last == Some(net) { String::new() } else { net.to_string() };
            let _ = writeln!(s, "{first:<18} {row}");
            last = Some(net);
        }
    }
    let _ = writeln!(s, "$ calicoctl node status");
    if !running {
        let _ = writeln!(s, "Calico process is not running.");
        return s;
    }
    let _ = writeln!(s, "Calico process is running.\n\nIPv4 BGP status");
    let rows: Vec<[String; 5]> = sp
        .peers
        .iter()
        .filter(|p| p.config.configured)
        .map(|p| {
            let kind = if p.config.name.starts_with("Mesh_") { "node-to-node mesh" } else { "node specific" };
            let state = if p.state == State::Established { "up" } else { "start" };
            [p.config.addr.to_string(), kind.into(), state.into(), clock(p.since), p.state.name().into()]
        })
        .collect();
    let heads = ["PEER ADDRESS", "PEER TYPE", "STATE", "SINCE", "INFO"];
    let widths: Vec<usize> = (0..5)
        .map(|i| rows.iter().map(|r| r[i].len()).chain([heads[i].len()]).max().unwrap_or(0) + 2)
        .collect();
    let rule: String = widths.iter().map(|w| format!("+{}", "-".repeat(*w))).collect::<String>() + "+";
    let centre = |t: &str, w: usize| {
        let pad = w - t.len();
        format!("{}{t}{}", " ".repeat(pad / 2), " ".repeat(pad - pad / 2))
    };
    let _ = writeln!(s, "{rule}");
    let _ = writeln!(s, "|{}|", (0..5).map(|i| centre(heads[i], widths[i])).collect::<Vec<_>>().join("|"));
    let _ = writeln!(s, "{rule}");
    for r in &rows {
        let _ = writeln!(
            s,
            "|{}|",
            (0..5).map(|i| format!(" {:<w$}", r[i], w = widths[i] - 1)).collect::<Vec<_>>().join("|")
        );
    }
    let _ = writeln!(s, "{rule}\n\nIPv6 BGP status\nNo IPv6 peers found.");
    let _ = now;
    s
}
