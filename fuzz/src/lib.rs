//! Shared by the `datapath` fuzz target and the seed generator (`examples/seeds.rs`): the
//! small worlds frames are injected into, the input format, and the run with its checks.
//!
//! Input of the `datapath` target:
//!
//! ```text
//! scenario: u8                      index into SCENARIOS (modulo)
//! then per frame, until the input ends:
//!   link: u8                        which cable the frame arrives on (modulo the links)
//!   at: u8                          when, in 10 us steps (0 to 2.55 ms)
//!   flags: u8                       FLAG_* below: fix-ups applied before injection
//!   len: u16 (big endian)           then `len` bytes of Ethernet frame (fewer at the end)
//! ```
//!
//! A frame arrives at the far end of its cable: a node's or an external host's NIC, a fabric
//! router's port or a switch port, as an `Arrive` event, exactly as if the cable had carried
//! it. Frames are control traffic (not workload datagrams), so they never count as sent; the
//! scenario's own workloads run alongside, and their packet conservation
//! (sent = delivered + dropped + in flight) must hold at the end.

use std::sync::OnceLock;

use cnisim::cluster::Cluster;
use cnisim::net::packet::{Meta, Packet};
use cnisim::run::{Event, Simulation};
use cnisim::time::{Duration, Instant};
use cnisim::world::LinkEnd;
use smoltcp::wire::{EthernetFrame, EthernetProtocol, IpProtocol, Ipv4Packet, UdpPacket};

/// The worlds frames are injected into: every CNI's scenario and the shipped examples with
/// Services, a leaf-spine fabric and an MTU mismatch.
pub const SCENARIOS: &[(&str, &str)] = &[
    ("quickstart", include_str!("../../scenarios/quickstart.ron")),
    ("services", include_str!("../../scenarios/services.ron")),
    ("leaf-spine", include_str!("../../scenarios/leaf-spine.ron")),
    ("mtu-blackhole", include_str!("../../scenarios/mtu-blackhole.ron")),
    ("calico-bgp", include_str!("../../scenarios/cni/calico-bgp.ron")),
    ("calico-ipip-crosssubnet", include_str!("../../scenarios/cni/calico-ipip-crosssubnet.ron")),
    ("calico-ipip", include_str!("../../scenarios/cni/calico-ipip.ron")),
    ("calico-vxlan-crosssubnet", include_str!("../../scenarios/cni/calico-vxlan-crosssubnet.ron")),
    ("calico-vxlan", include_str!("../../scenarios/cni/calico-vxlan.ron")),
    ("cilium-geneve", include_str!("../../scenarios/cni/cilium-geneve.ron")),
    ("cilium-native", include_str!("../../scenarios/cni/cilium-native.ron")),
    ("cilium-vxlan", include_str!("../../scenarios/cni/cilium-vxlan.ron")),
    ("flannel-host-gw", include_str!("../../scenarios/cni/flannel-host-gw.ron")),
    ("flannel-udp", include_str!("../../scenarios/cni/flannel-udp.ron")),
    ("flannel-vxlan", include_str!("../../scenarios/cni/flannel-vxlan.ron")),
    ("ipvlan-l3", include_str!("../../scenarios/cni/ipvlan-l3.ron")),
    ("macvlan", include_str!("../../scenarios/cni/macvlan.ron")),
    ("weave-fastdp", include_str!("../../scenarios/cni/weave-fastdp.ron")),
    ("weave-sleeve", include_str!("../../scenarios/cni/weave-sleeve.ron")),
];

/// Simulated time of one fuzzing run.
pub const DURATION: Duration = Duration::from_millis(3);
/// Workloads send for this long from t = 0.
const SENDING: Duration = Duration::from_micros(2500);
/// One step of a frame's `at` byte.
pub const AT_STEP: Duration = Duration::from_micros(10);

/// Overwrite the destination MAC with the receiving device's (a switch port: unchanged).
pub const FLAG_DST_MAC: u8 = 1;
/// Overwrite the IPv4 destination with the receiving device's first address.
pub const FLAG_DST_IP: u8 = 2;
/// Recompute IPv4, UDP and ICMP checksums, in tunnelled (VXLAN, Geneve, IPIP) packets too.
pub const FLAG_CHECKSUMS: u8 = 4;

/// The scenario's cluster, shortened to [`DURATION`]: every workload sends from 0 for
/// [`SENDING`], pod deletions happen from 1 ms on.
pub fn cluster(index: usize) -> &'static Cluster {
    static CLUSTERS: OnceLock<Vec<Cluster>> = OnceLock::new();
    let all = CLUSTERS.get_or_init(|| {
        SCENARIOS
            .iter()
            .map(|(name, text)| {
                let mut c = cnisim::scenario::load_str(text, name).expect("a shipped scenario loads");
                c.duration = DURATION;
                for w in &mut c.workloads {
                    w.start = Instant::ZERO;
                    w.duration = SENDING;
                }
                for (i, ch) in c.changes.iter_mut().enumerate() {
                    ch.at = Instant::ZERO + Duration::from_millis(1) + Duration::from_micros(100 * i as u64);
                }
                c
            })
            .collect()
    });
    &all[index % all.len()]
}

/// One frame of the input.
#[derive(Clone, Debug)]
pub struct Injection {
    pub link: u8,
    pub at: u8,
    pub flags: u8,
    pub frame: Vec<u8>,
}

/// Splits an input into the scenario index and its frames.
pub fn decode(data: &[u8]) -> Option<(usize, Vec<Injection>)> {
    let (&scenario, mut rest) = data.split_first()?;
    let mut frames = Vec::new();
    while rest.len() >= 5 {
        let len = (u16::from_be_bytes([rest[3], rest[4]]) as usize).min(rest.len() - 5);
        frames.push(Injection {
            link: rest[0],
            at: rest[1],
            flags: rest[2],
            frame: rest[5..5 + len].to_vec(),
        });
        rest = &rest[5 + len..];
    }
    Some((scenario as usize, frames))
}

/// The input [`decode`] reads back as `scenario` and `frames`.
pub fn encode(scenario: u8, frames: &[Injection]) -> Vec<u8> {
    let mut out = vec![scenario];
    for f in frames {
        let len = f.frame.len().min(u16::MAX as usize);
        out.extend_from_slice(&[f.link, f.at, f.flags]);
        out.extend_from_slice(&(len as u16).to_be_bytes());
        out.extend_from_slice(&f.frame[..len]);
    }
    out
}

/// Builds the scenario's world, injects the frames, runs to the end and checks packet
/// conservation (panics if it fails: that is the bug the target looks for).
pub fn run(data: &[u8]) {
    let Some((scenario, frames)) = decode(data) else { return };
    let cluster = cluster(scenario);
    let mut sim = Simulation::new(cluster);
    let links = sim.world.links.len();
    for mut f in frames {
        let link = f.link as usize % links;
        if let LinkEnd::Device(dev) = sim.world.link_ends[link] {
            let d = &sim.world.devices[dev];
            if f.flags & FLAG_DST_MAC != 0 && f.frame.len() >= 6 {
                f.frame[..6].copy_from_slice(&d.mac.0);
            }
            if let (true, Some(&(ip, _))) = (f.flags & FLAG_DST_IP != 0, d.addrs.first()) {
                set_dst_ip(&mut f.frame, ip);
            }
        }
        if f.flags & FLAG_CHECKSUMS != 0 {
            fix_frame(&mut f.frame, 0);
        }
        let pkt = Packet { frame: f.frame, meta: Meta::default() };
        let at = Instant::ZERO + Duration::from_nanos(AT_STEP.as_nanos() * f.at as u64);
        sim.queue.schedule(at, Event::Arrive { link, pkt });
    }
    if let Err(e) = sim.run() {
        panic!("{} with injected frames: {e}", SCENARIOS[scenario % SCENARIOS.len()].0);
    }
}

fn set_dst_ip(frame: &mut [u8], ip: std::net::Ipv4Addr) {
    let Ok(mut eth) = EthernetFrame::new_checked(&mut *frame) else { return };
    if eth.ethertype() != EthernetProtocol::Ipv4 {
        return;
    }
    if let Ok(mut p) = Ipv4Packet::new_checked(eth.payload_mut()) {
        p.set_dst_addr(ip);
    }
}

/// Recomputes the checksums of an Ethernet frame's IPv4 packet, and of the packet it tunnels.
fn fix_frame(frame: &mut [u8], depth: u32) {
    let Ok(mut eth) = EthernetFrame::new_checked(&mut *frame) else { return };
    if eth.ethertype() == EthernetProtocol::Ipv4 {
        fix_ip(eth.payload_mut(), depth);
    }
}

fn fix_ip(bytes: &mut [u8], depth: u32) {
    if depth > 3 {
        return;
    }
    let Ok(mut ip) = Ipv4Packet::new_checked(&mut *bytes) else { return };
    if ip.header_len() < 20 {
        return;
    }
    let (src, dst, proto) = (ip.src_addr(), ip.dst_addr(), ip.next_header());
    let whole = ip.frag_offset() == 0 && !ip.more_frags();
    if whole {
        let payload = ip.payload_mut();
        match proto {
            IpProtocol::Udp => {
                if let Ok(mut udp) = UdpPacket::new_checked(&mut *payload) {
                    let port = udp.dst_port();
                    let inner = udp.payload_mut();
                    match port {
                        4789 | 8472 if inner.len() > 8 => fix_frame(&mut inner[8..], depth + 1),
                        6081 if inner.len() > 8 => {
                            let hl = 8 + (inner[0] & 0x3f) as usize * 4;
                            if inner.len() > hl {
                                fix_frame(&mut inner[hl..], depth + 1);
                            }
                        }
                        _ => {}
                    }
                    udp.fill_checksum(&src.into(), &dst.into());
                }
            }
            IpProtocol::Icmp => {
                if payload.len() >= 8 {
                    let mut icmp = smoltcp::wire::Icmpv4Packet::new_unchecked(payload);
                    icmp.fill_checksum();
                }
            }
            // IPIP (protocol 4): Calico's tunl0.
            p if u8::from(p) == 4 => fix_ip(payload, depth + 1),
            _ => {}
        }
    }
    ip.fill_checksum();
}
