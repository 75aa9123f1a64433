//! A node's kernel queue settings: the sysctls a scenario may set, each checked against the
//! range the kernel's own sysctl handler accepts, and the device queue lengths.

use std::collections::BTreeMap;

use super::locate::Seg;
use super::resolve::Locator;
use crate::cluster::KernelQueues;
use crate::error::ScenarioError;

/// `SOCK_MIN_RCVBUF` (2,048 + `SKB_TRUESIZE`-aligned `sk_buff`, include/net/sock.h): the floor
/// `net.core.rmem_default` accepts (`min_rcvbuf` in net/core/sysctl_net_core.c).
const SOCK_MIN_RCVBUF: u64 = 2_304;
/// `SOCK_MIN_SNDBUF` = 2 x `TCP_SKB_MIN_TRUESIZE`: the floor of `net.core.wmem_default`.
const SOCK_MIN_SNDBUF: u64 = 4_608;
/// `INT_MAX`: the sysctls are ints.
const INT_MAX: u64 = i32::MAX as u64;

/// The sysctls cnisim models, with the range each accepts.
const KNOWN: [(&str, u64, u64); 4] = [
    ("net.core.rmem_default", SOCK_MIN_RCVBUF, INT_MAX),
    ("net.core.wmem_default", SOCK_MIN_SNDBUF, INT_MAX),
    // proc_dointvec accepts 0, which drops every backlogged packet; a queue of at least one
    // packet is what a scenario means.
    ("net.core.netdev_max_backlog", 1, INT_MAX),
    // proc_dointvec_minmax from 0 (ipv4_net_table); 0 would stop every TCP sender.
    ("net.ipv4.tcp_limit_output_bytes", 1, INT_MAX),
];

/// Resolves one node entry's settings (`entry`: its index in a `List`, `None` for a `Count`).
pub(super) fn resolve(
    loc: &Locator,
    sysctls: &BTreeMap<String, u64>,
    (txqueuelen, rx_ring): (Option<u64>, Option<u64>),
    offloads: &crate::scenario::OffloadsSpec,
    entry: Option<usize>,
) -> Result<KernelQueues, ScenarioError> {
    fn path<'a>(entry: Option<usize>, field: &'a str, key: Option<&'a str>) -> Vec<Seg<'a>> {
        let mut p = vec![Seg::Key("nodes")];
        p.extend(entry.map(Seg::Idx));
        p.push(Seg::Key(field));
        p.extend(key.map(Seg::Key));
        p
    }
    let path = |field, key| path(entry, field, key);
    let mut k = KernelQueues::default();
    for (key, &value) in sysctls {
        let Some(&(_, min, max)) = KNOWN.iter().find(|(name, ..)| name == key) else {
            let known = KNOWN.iter().map(|(n, ..)| *n).collect::<Vec<_>>().join(", ");
            return Err(loc
                .err(&path("sysctls", Some(key)), format!("unknown sysctl '{key}': cnisim models {known}")));
        };
        if !(min..=max).contains(&value) {
            return Err(loc.err(
                &path("sysctls", Some(key)),
                format!("{key} = {value} is outside {min}..={max}, the range the kernel accepts"),
            ));
        }
        match key.as_str() {
            "net.core.rmem_default" => k.rmem_default = value as u32,
            "net.core.wmem_default" => k.wmem_default = value as u32,
            "net.ipv4.tcp_limit_output_bytes" => k.tcp_limit_output_bytes = value as u32,
            _ => k.netdev_max_backlog = value as u32,
        }
    }
    // dev_change_tx_queue_len takes any unsigned int; a queue of zero packets would drop
    // everything, so at least one. Ring sizes: drivers accept 64..=8192 on common NICs
    // (mlx5: 2^6 ..= 2^13).
    if let Some(q) = txqueuelen {
        if !(1..=INT_MAX).contains(&q) {
            return Err(
                loc.err(&path("txqueuelen", None), format!("txqueuelen {q} is outside 1..={INT_MAX}"))
            );
        }
        k.txqueuelen = q as u32;
    }
    if let Some(r) = rx_ring {
        if !(64..=8192).contains(&r) {
            return Err(loc.err(
                &path("rx_ring", None),
                format!("rx_ring {r} is outside 64..=8192, what common NICs accept (ethtool -G eth0 rx N)"),
            ));
        }
        k.rx_ring = r as u32;
    }
    let o = &mut k.offloads;
    let spec = offloads;
    for (value, field) in [
        (spec.gso, &mut o.gso),
        (spec.tso, &mut o.tso),
        (spec.gro, &mut o.gro),
        (spec.tx_udp_tnl_segmentation, &mut o.tx_udp_tnl_segmentation),
        (spec.tx_ipxip4_segmentation, &mut o.tx_ipxip4_segmentation),
    ] {
        if let Some(v) = value {
            *field = v;
        }
    }
    Ok(k)
}
