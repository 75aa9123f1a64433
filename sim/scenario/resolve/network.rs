//! The address plan: the node, pod and Service ranges (disjoint, a pod subnet per node), and the
//! underlay: one switch, or a leaf-spine fabric whose racks get subnets of the node range.

use super::{check_bandwidth, check_mtu, Locator, Res};
use crate::addr::Ipv4Net;
use crate::cluster::{Fabric, Network, Rack, Underlay};
use crate::scenario;
use crate::scenario::locate::Seg;
use crate::units::Bandwidth;

/// Largest leaf-spine fabric accepted.
const MAX_RACKS: u32 = 1000;
const MAX_SPINES: u32 = 64;

pub(super) fn resolve_network(loc: &Locator, n: &scenario::Network) -> Res<Network> {
    let ranges = [("node_cidr", n.node_cidr), ("pod_cidr", n.pod_cidr), ("service_cidr", n.service_cidr)];
    for (i, (a_name, a)) in ranges.iter().enumerate() {
        for (b_name, b) in &ranges[i + 1..] {
            if a.overlaps(b) {
                return Err(loc.err(
                    at!["network", *b_name],
                    format!("{b_name} {b} overlaps {a_name} {a}; pick disjoint ranges"),
                ));
            }
        }
    }
    let p = n.node_subnet_prefix;
    if p <= n.pod_cidr.prefix() {
        return Err(loc.err(
            at!["network", "node_subnet_prefix"],
            format!(
                "node_subnet_prefix {p} must be longer than pod_cidr's /{} so each node gets a part of \
                 pod_cidr {}; use e.g. {}",
                n.pod_cidr.prefix(),
                n.pod_cidr,
                (n.pod_cidr.prefix() + 8).min(30)
            ),
        ));
    }
    if p > 30 {
        return Err(loc.err(
            at!["network", "node_subnet_prefix"],
            format!(
                "node_subnet_prefix {p} leaves no room for a gateway and a pod; use at most 30 (e.g. 24)"
            ),
        ));
    }
    Ok(Network {
        node_cidr: n.node_cidr,
        pod_cidr: n.pod_cidr,
        service_cidr: n.service_cidr,
        node_subnet_prefix: p,
    })
}

pub(super) fn resolve_underlay(loc: &Locator, u: &scenario::Underlay, net: &Network) -> Res<Underlay> {
    check_bandwidth(loc, u.bandwidth, "underlay bandwidth", at!["underlay", "bandwidth"])?;
    check_mtu(loc, u.mtu, "underlay mtu", at!["underlay", "mtu"])?;
    if u.queue.0 == 0 {
        return Err(loc.err(
            at!["underlay", "queue"],
            "underlay queue is zero, so every frame would be dropped; give a size such as \"512KiB\"",
        ));
    }
    if !(0.0..1.0).contains(&u.loss) {
        return Err(loc.err(
            at!["underlay", "loss"],
            format!("underlay loss {} is not in the range [0, 1); use e.g. 0.001 for 0.1% loss", u.loss),
        ));
    }
    let fabric = match u.fabric {
        scenario::Fabric::L2Switch => Fabric::L2Switch,
        scenario::Fabric::LeafSpine { racks, spines, uplink, rack_prefix, fabric_cidr, uplink_mtu } => {
            let uplink_mtu = uplink_mtu.unwrap_or(u.mtu);
            if !(68..=65535).contains(&uplink_mtu) {
                return Err(loc.err(
                    at!["underlay", "fabric", "uplink_mtu"],
                    format!(
                        "uplink_mtu {uplink_mtu} is outside 68..=65535 (RFC 791's minimum to IPv4's largest)"
                    ),
                ));
            }
            resolve_leaf_spine(loc, net, racks, spines, (uplink, uplink_mtu), rack_prefix, fabric_cidr)?
        }
    };
    Ok(Underlay {
        fabric,
        bandwidth: u.bandwidth,
        propagation: u.propagation,
        mtu: u.mtu,
        queue: u.queue,
        loss: u.loss,
        filter_icmp: u.filter_icmp,
    })
}

/// Checks a leaf-spine fabric against the address plan and carves the rack subnets.
fn resolve_leaf_spine(
    loc: &Locator,
    net: &Network,
    racks: u32,
    spines: u32,
    (uplink, uplink_mtu): (Bandwidth, u32),
    rack_prefix: u8,
    fabric_cidr: Ipv4Net,
) -> Res<Fabric> {
    let field = |f: &'static str| [Seg::Key("underlay"), Seg::Key("fabric"), Seg::Key(f)];
    if !(1..=MAX_RACKS).contains(&racks) {
        return Err(loc.err(
            &field("racks"),
            format!("racks {racks} is outside 1..={MAX_RACKS}; a leaf-spine fabric needs at least one rack"),
        ));
    }
    if !(1..=MAX_SPINES).contains(&spines) {
        return Err(loc.err(
            &field("spines"),
            format!("spines {spines} is outside 1..={MAX_SPINES}; racks reach each other through the spines, use e.g. 2"),
        ));
    }
    check_bandwidth(loc, uplink, "uplink bandwidth", &field("uplink"))?;
    let node_prefix = net.node_cidr.prefix();
    if rack_prefix <= node_prefix {
        return Err(loc.err(
            &field("rack_prefix"),
            format!(
                "rack_prefix {rack_prefix} must be longer than node_cidr's /{node_prefix} so each rack gets a \
                 part of node_cidr {}; use e.g. {}, or widen node_cidr (e.g. \"{}/16\")",
                net.node_cidr,
                (node_prefix + 2).min(30),
                net.node_cidr.network()
            ),
        ));
    }
    if rack_prefix > 30 {
        return Err(loc.err(
            &field("rack_prefix"),
            format!(
                "rack_prefix {rack_prefix} leaves no room for a gateway and a node; use at most 30 (e.g. 24)"
            ),
        ));
    }
    let subnets = 1u64 << (rack_prefix - node_prefix);
    if u64::from(racks) > subnets {
        return Err(loc.err(
            &field("racks"),
            format!(
                "{racks} racks need {racks} subnets of /{rack_prefix} but node_cidr {} holds only {subnets}; \
                 widen node_cidr, lengthen rack_prefix or use fewer racks",
                net.node_cidr
            ),
        ));
    }
    // One /31 per ToR-spine cable.
    let needed = 2 * u64::from(racks) * u64::from(spines);
    if fabric_cidr.size() < needed {
        let fits = (0..=31u8).rev().find(|p| 1u64 << (32 - p) >= needed).unwrap_or(0);
        return Err(loc.err(
            &field("fabric_cidr"),
            format!(
                "fabric_cidr {fabric_cidr} holds {} addresses but {racks} racks x {spines} spines need {needed} \
                 (one /31 per ToR-spine cable); use a /{fits} or larger",
                fabric_cidr.size()
            ),
        ));
    }
    let ranges =
        [("node_cidr", net.node_cidr), ("pod_cidr", net.pod_cidr), ("service_cidr", net.service_cidr)];
    if let Some((name, range)) = ranges.iter().find(|(_, r)| r.overlaps(&fabric_cidr)) {
        return Err(loc.err(
            &field("fabric_cidr"),
            format!(
                "fabric_cidr {fabric_cidr} overlaps {name} {range}; pick a range disjoint from the network's"
            ),
        ));
    }
    let mut out = Vec::with_capacity(racks as usize);
    for i in 0..racks {
        let subnet = net.node_cidr.subnet(rack_prefix, u64::from(i));
        let Some((subnet, gateway)) = subnet.and_then(|s| Some((s, s.nth(1)?))) else {
            return Err(loc.err(&field("racks"), "too many racks for node_cidr"));
        };
        out.push(Rack { name: format!("rack-{}", i + 1), subnet, gateway });
    }
    Ok(Fabric::LeafSpine { racks: out, spines, uplink, fabric_cidr, uplink_mtu })
}
