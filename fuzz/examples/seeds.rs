//! Writes the committed seed corpora, `fuzz/seeds/<target>/`, from real inputs: the shipped
//! scenario files, and frames captured on every interface while the `datapath` target's worlds
//! run (VXLAN and Geneve headers, ICMP "fragmentation needed", IPv4 datagrams and their
//! fragments), plus BGP streams built with `cnisim::wire::bgp` (Calico's session as BIRD writes
//! it). Deterministic: running it again rewrites the same files.
//!
//! ```sh
//! cargo run --manifest-path fuzz/Cargo.toml --example seeds
//! ```

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use cnisim::run::Simulation;
use cnisim::wire::icmp_frag::frag_needed;
use cnisim::wire::ipv4frag::fragment;
use cnisim::world::LinkEnd;
use cnisim_fuzz::{cluster, encode, Injection, FLAG_CHECKSUMS, SCENARIOS};
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{EthernetFrame, EthernetProtocol, IpProtocol, Ipv4Packet, Ipv4Repr, UdpPacket};

/// Frames of one device's capture.
struct Capture {
    /// `<namespace>/<device>`, e.g. `node-1/eth0`.
    name: String,
    /// The device's MAC address.
    mac: [u8; 6],
    /// The cable whose far end is this device, if any (node, host and router NICs).
    link_in: Option<usize>,
    /// Ethernet frames (raw L3 captures are skipped).
    frames: Vec<Vec<u8>>,
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    let _ = fs::remove_dir_all(&root);
    let dir = |t: &str| {
        let d = root.join(t);
        fs::create_dir_all(&d).unwrap();
        d
    };
    let write = |d: &PathBuf, name: &str, bytes: &[u8]| fs::write(d.join(name), bytes).unwrap();

    // scenario: every shipped scenario file, and a few that fail in different places.
    let scen = dir("scenario");
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    for sub in [shipped.clone(), shipped.join("cni")] {
        let mut files: Vec<_> = fs::read_dir(&sub).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        for f in files.iter().filter(|f| f.extension().is_some_and(|e| e == "ron")) {
            let name = f.file_name().unwrap().to_str().unwrap();
            write(&scen, name, &fs::read(f).unwrap());
        }
    }
    let quick = SCENARIOS[0].1;
    for (name, from, to) in [
        ("bad-unit.ron", "\"10Gbit\"", "\"10 Gbit\""),
        ("bad-field.ron", "pods_per_node", "pods_per_nod"),
        ("bad-pod.ron", "Pod(\"node-1-pod-2\")", "Pod(\"node-9-pod-2\")"),
        ("bad-cidr.ron", "\"10.244.0.0/16\"", "\"10.244.0.0/33\""),
    ] {
        assert!(quick.contains(from), "{from}");
        write(&scen, name, quick.replacen(from, to, 1).as_bytes());
    }

    let (vxlan, geneve, icmp, frag, dp) =
        (dir("vxlan"), dir("geneve"), dir("icmp_frag"), dir("ipv4frag"), dir("datapath"));
    let mut seen_vxlan = BTreeSet::new();
    let mut seen_geneve = BTreeSet::new();
    let mut seen_icmp = 0;
    let mut biggest_ip: Vec<u8> = Vec::new();
    for (i, (name, _)) in SCENARIOS.iter().enumerate() {
        let caps = capture(i);
        // datapath: up to four frames of different kinds arriving at a node's NIC.
        let mut kinds = BTreeSet::new();
        let mut frames = Vec::new();
        for c in &caps {
            let Some(link) = c.link_in else { continue };
            for f in &c.frames {
                if frames.len() < 4 && kinds.insert(kind(f)) {
                    assert!(link < 256, "{name}: link {link} does not fit the link byte");
                    frames.push(Injection {
                        link: link as u8,
                        at: 5 + frames.len() as u8,
                        flags: 0,
                        frame: f.clone(),
                    });
                }
            }
        }
        assert!(!frames.is_empty(), "{name}: no frame captured at a NIC");
        write(&dp, &format!("{name}.bin"), &encode(i as u8, &frames));
        let mut fixed = frames.clone();
        fixed.iter_mut().for_each(|f| f.flags = FLAG_CHECKSUMS);
        write(&dp, &format!("{name}-checksums.bin"), &encode(i as u8, &fixed[..1]));
        for (kind, frames) in structured(i, &caps) {
            write(&dp, &format!("{name}-{kind}.bin"), &encode(i as u8, &frames));
        }

        for f in caps.iter().flat_map(|c| &c.frames) {
            let Some(ip) = ipv4(f) else { continue };
            let p = Ipv4Packet::new_unchecked(ip);
            if p.next_header() == IpProtocol::Udp && p.frag_offset() == 0 && !p.more_frags() {
                let udp = UdpPacket::new_unchecked(p.payload());
                let payload = udp.payload();
                match udp.dst_port() {
                    4789 | 8472 if seen_vxlan.insert(name) => write(&vxlan, &format!("{name}.bin"), payload),
                    6081 if seen_geneve.insert(name) => write(&geneve, &format!("{name}.bin"), payload),
                    _ => {}
                }
            }
            if p.next_header() == IpProtocol::Icmp && p.payload().first() == Some(&3) && seen_icmp < 4 {
                // The ICMP message as received, and its quote as an "original" for the round trip.
                write(&icmp, &format!("{name}-{seen_icmp}.bin"), p.payload());
                seen_icmp += 1;
            }
            if p.next_header() == IpProtocol::Udp && ip.len() > biggest_ip.len() && !p.dont_frag() {
                biggest_ip = ip.to_vec();
            }
        }
    }
    assert!(!seen_vxlan.is_empty() && !seen_geneve.is_empty(), "no VXLAN or Geneve frame captured");
    // geneve: Cilium sends no options; the same header with one 8-byte option, O and C set.
    let plain = fs::read(geneve.join("cilium-geneve.bin")).unwrap();
    let mut opts = vec![0x02, 0xc0];
    opts.extend_from_slice(&plain[2..8]);
    opts.extend_from_slice(&[0x01, 0x02, 0x80, 0x01, 0xde, 0xad, 0xbe, 0xef]);
    opts.extend_from_slice(&plain[8..]);
    write(&geneve, "cilium-geneve-option.bin", &opts);

    // icmp_frag: the next-hop MTU, then an original IPv4 packet.
    assert!(!biggest_ip.is_empty());
    for (mtu, len) in [(1450u16, biggest_ip.len()), (576, 28), (0, 20)] {
        let mut seed = mtu.to_be_bytes().to_vec();
        seed.extend_from_slice(&biggest_ip[..len]);
        write(&icmp, &format!("orig-{mtu}-{len}.bin"), &seed);
    }

    // ipv4frag: the largest captured datagram, then its fragments at 576 as received packets.
    let frags = fragment(&biggest_ip, 576).unwrap();
    for (name, mtu, order, records) in [
        ("whole-1400", 1400u16, 7u8, vec![biggest_ip.clone()]),
        ("whole-576-fragments", 576, 3, std::iter::once(biggest_ip.clone()).chain(frags.clone()).collect()),
        ("fragments-reversed", 68, 0, frags.iter().rev().cloned().collect()),
    ] {
        let mut seed = vec![(mtu >> 8) as u8, mtu as u8, order, 0];
        for r in &records {
            seed.extend_from_slice(&(r.len() as u16).to_be_bytes());
            seed.extend_from_slice(r);
            seed.push(1);
        }
        write(&frag, &format!("{name}.bin"), &seed);
    }
    bgp_seeds(&dir("bgp_parse"));

    let mut seeds = 0;
    for t in ["scenario", "vxlan", "geneve", "icmp_frag", "ipv4frag", "bgp_parse", "datapath"] {
        seeds += fs::read_dir(root.join(t)).unwrap().count();
    }
    println!("wrote {seeds} seeds under {}", root.display());
}

/// bgp_parse: a session byte (bit 0 4-octet AS, bit 1 ADD-PATH), then a TCP stream of messages.
/// Calico's session as BIRD writes it (OPEN, KEEPALIVE, two /26s with ADD-PATH, End-of-RIB);
/// a 4-octet session without ADD-PATH (a reflected route, withdrawals, ROUTE-REFRESH, Cease);
/// a 2-octet one (AS4_PATH, Hold Timer Expired); 1,000 routes packed as BIRD does; and an
/// UPDATE whose ORIGIN is 2 octets long, which must be refused.
fn bgp_seeds(d: &Path) {
    use cnisim::addr::Ipv4Net;
    use cnisim::wire::bgp::*;
    use std::net::Ipv4Addr;

    let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap();
    let net = |s: &str| s.parse::<Ipv4Net>().unwrap();
    let seed = |name: &str, flags: u8, s: Session, msgs: &[Message]| {
        let mut bytes = vec![flags];
        for m in msgs {
            bytes.extend(m.to_bytes(s));
        }
        fs::write(d.join(name), bytes).unwrap();
    };
    let (plain, add_path, old) = (
        Session { four_octet_as: true, add_path: false },
        Session { four_octet_as: true, add_path: true },
        Session { four_octet_as: false, add_path: false },
    );
    let attrs = PathAttrs {
        origin: Some(Origin::Igp),
        next_hop: Some(ip("10.192.0.2")),
        local_pref: Some(100),
        ..PathAttrs::default()
    };
    let blocks = |path_id: Option<u32>| {
        [net("10.244.1.0/26"), net("10.244.1.64/26")].map(|net| Prefix { path_id, net }).to_vec()
    };
    seed(
        "calico-session.bin",
        3,
        add_path,
        &[
            Message::Open(Open::bird_calico(64512, 240, ip("10.192.0.2"), 120, true)),
            Message::Keepalive,
            Message::Update(Update { withdrawn: vec![], attrs: attrs.clone(), nlri: blocks(Some(1)) }),
            Message::Update(Update::end_of_rib()),
        ],
    );
    let reflected = PathAttrs {
        originator_id: Some(ip("10.192.0.3")),
        cluster_list: vec![ip("10.192.0.1")],
        ..attrs.clone()
    };
    let caps = vec![
        Capability::Multiprotocol { afi: 1, safi: 1 },
        Capability::RouteRefresh,
        Capability::FourOctetAs(64512),
    ];
    seed(
        "plain-session.bin",
        1,
        plain,
        &[
            Message::Open(Open {
                version: 4,
                my_as: 64512,
                hold_time: 90,
                bgp_id: ip("10.192.0.1"),
                capabilities: caps,
            }),
            Message::Keepalive,
            Message::Update(Update { withdrawn: vec![], attrs: reflected, nlri: blocks(None) }),
            Message::Update(Update { withdrawn: blocks(None), ..Update::default() }),
            Message::RouteRefresh(RouteRefresh::ipv4_unicast()),
            Message::Notification(Notification::cease(2)),
        ],
    );
    let ebgp = PathAttrs {
        as_path: vec![AsSegment::Sequence(vec![64512, 4_200_000_000]), AsSegment::Set(vec![65001, 65002])],
        med: Some(50),
        ..attrs.clone()
    };
    seed(
        "old-session.bin",
        0,
        old,
        &[
            Message::Open(Open {
                version: 4,
                my_as: 65000,
                hold_time: 3,
                bgp_id: ip("10.192.0.9"),
                capabilities: vec![],
            }),
            Message::Update(Update { withdrawn: vec![], attrs: ebgp, nlri: blocks(None) }),
            Message::Notification(Notification::hold_timer_expired()),
        ],
    );
    let many: Vec<Prefix> =
        (0..1000).map(|i| Prefix::new(net("10.0.0.0/8").subnet(26, i).unwrap())).collect();
    let packed: Vec<Message> = pack_updates(&attrs, &many, plain).into_iter().map(Message::Update).collect();
    seed("packed-1000.bin", 1, plain, &packed);
    let mut bad = vec![1];
    bad.extend(Message::Update(Update { withdrawn: vec![], attrs, nlri: blocks(None) }).to_bytes(plain));
    // ORIGIN 40 01 01 00 becomes 40 01 02 00 00: every length grows by one.
    bad.insert(1 + 23 + 3, 0);
    bad[1 + 23 + 2] = 2;
    bad[1 + 17] += 1;
    bad[1 + 22] += 1;
    fs::write(d.join("origin-length.bin"), bad).unwrap();
}

/// Inputs the mutator would take long to find: at a node's NIC, an ICMP
/// "fragmentation needed" (MTU 576) for the largest packet the NIC sent, 10 us into the run,
/// so that later traffic meets a path MTU; and the largest packet it received, split into
/// fragments at 576 and delivered last fragment first.
fn structured(i: usize, caps: &[Capture]) -> Vec<(&'static str, Vec<Injection>)> {
    let nodes: Vec<String> = cluster(i).nodes.iter().map(|n| format!("{}/eth0", n.name)).collect();
    // The largest IPv4 frame a node's NIC sent (its MAC the source) or received (the
    // destination), with that NIC and the cable into it.
    let largest = |sent: bool| {
        let at = if sent { 6..12 } else { 0..6 };
        caps.iter()
            .filter(|c| nodes.contains(&c.name) && c.link_in.is_some())
            .flat_map(|c| c.frames.iter().map(move |f| (c, f)))
            .filter(|(c, f)| ipv4(f).is_some() && f[at.clone()] == c.mac)
            .max_by_key(|(_, f)| f.len())
    };
    let mut out = Vec::new();
    if let Some((nic, f)) = largest(true) {
        let link = nic.link_in.unwrap();
        let orig = ipv4(f).unwrap();
        let icmp = frag_needed(orig, 576);
        let ip_repr = Ipv4Repr {
            src_addr: Ipv4Packet::new_unchecked(orig).dst_addr(),
            dst_addr: Ipv4Packet::new_unchecked(orig).src_addr(),
            next_header: IpProtocol::Icmp,
            payload_len: icmp.len(),
            hop_limit: 64,
        };
        let mut frame = vec![0u8; 14 + ip_repr.buffer_len() + icmp.len()];
        frame[..6].copy_from_slice(&nic.mac);
        frame[6..12].copy_from_slice(&f[..6]);
        frame[12..14].copy_from_slice(&[0x08, 0x00]);
        let mut ip = Ipv4Packet::new_unchecked(&mut frame[14..]);
        ip_repr.emit(&mut ip, &ChecksumCapabilities::default());
        ip.payload_mut().copy_from_slice(&icmp);
        ip.fill_checksum();
        out.push(("icmp-frag-needed", vec![Injection { link: link as u8, at: 1, flags: 0, frame }]));
    }
    if let Some((nic, f)) = largest(false) {
        let link = nic.link_in.unwrap();
        // Sent with DF (Linux's IP_PMTUDISC_WANT): cleared so that it can be fragmented.
        let mut ip = ipv4(f).unwrap().to_vec();
        let mut p = Ipv4Packet::new_unchecked(&mut ip[..]);
        p.set_dont_frag(false);
        p.fill_checksum();
        if let Ok(frags) = fragment(&ip, 576) {
            let frames = frags
                .iter()
                .rev()
                .enumerate()
                .map(|(k, ip)| {
                    let mut frame = f[..14].to_vec();
                    frame.extend_from_slice(ip);
                    Injection { link: link as u8, at: 1 + k as u8, flags: 0, frame }
                })
                .collect();
            out.push(("fragments", frames));
        }
    }
    out
}

/// Runs scenario `i`'s shortened world with capture on every interface.
fn capture(i: usize) -> Vec<Capture> {
    let mut sim = Simulation::new(cluster(i));
    sim.world.enable_capture("*");
    sim.run().expect("a shipped scenario conserves packets");
    let w = &sim.world;
    let mut out = Vec::new();
    for (d, p) in w.pcaps.iter().enumerate() {
        let Some(p) = p else { continue };
        if p.is_raw() {
            continue;
        }
        let link_in = w.link_ends.iter().position(|e| matches!(e, LinkEnd::Device(x) if *x == d));
        let name = format!("{}/{}", w.netns[w.devices[d].ns].name, w.devices[d].name);
        out.push(Capture { name, mac: w.devices[d].mac.0, link_in, frames: records(p.bytes()) });
    }
    out
}

/// The records of a pcap file written by `PcapWriter` (little endian).
fn records(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut at = 24;
    while at + 16 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap()) as usize;
        out.push(bytes[at + 16..at + 16 + len].to_vec());
        at += 16 + len;
    }
    out
}

fn ipv4(frame: &[u8]) -> Option<&[u8]> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != EthernetProtocol::Ipv4 {
        return None;
    }
    let ip = &frame[14..];
    Ipv4Packet::new_checked(ip).ok()?;
    Some(ip)
}

/// What a frame is, to pick frames of different kinds: ethertype, IP protocol, UDP port.
fn kind(frame: &[u8]) -> (u16, u8, u16) {
    let Ok(eth) = EthernetFrame::new_checked(frame) else { return (0, 0, 0) };
    let ethertype = u16::from(eth.ethertype());
    let Some(ip) = ipv4(frame) else { return (ethertype, 0, 0) };
    let p = Ipv4Packet::new_unchecked(ip);
    let port = match p.next_header() {
        IpProtocol::Udp => UdpPacket::new_checked(p.payload()).map_or(0, |u| u.dst_port()),
        _ => 0,
    };
    (ethertype, p.next_header().into(), port)
}
