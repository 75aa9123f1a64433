//! tshark reads every pcap: ARP, IPv4 and UDP decoded, checksums valid, nothing malformed.
//!
//! Needs tshark (`.ci/run` installs it). Set CNISIM_SKIP_TSHARK=1 to skip on a machine
//! without it; the test fails otherwise, so a missing tool is never a silent pass.

use std::process::Command;

use cnisim::app::{self, RunOptions};

use crate::{repo, scratch, tshark};

#[test]
fn every_pcap_decodes_cleanly() {
    if std::env::var_os("CNISIM_SKIP_TSHARK").is_some() {
        eprintln!("CNISIM_SKIP_TSHARK set: pcap decoding not checked");
        return;
    }
    assert!(
        Command::new("tshark").arg("-v").output().is_ok(),
        "tshark is not installed: apt-get install tshark (or set CNISIM_SKIP_TSHARK=1)"
    );
    // The quickstart, cut to 50 ms so that capturing everywhere stays small.
    let dir = scratch("pcap");
    let text = std::fs::read_to_string(repo("scenarios/quickstart.ron")).unwrap();
    let short = text.replacen("duration: \"1s\"", "duration: \"50ms\"", 1).replacen(
        "start: \"100ms\"",
        "start: \"10ms\"",
        1,
    );
    assert_ne!(short, text);
    std::fs::write(dir.join("short.ron"), short).unwrap();
    let out = dir.join("r");
    let opts =
        RunOptions { out: Some(out.clone()), pcap: vec!["*".into()], seed: None, cni: None, proxy: None };
    let o = app::run(&dir.join("short.ron"), &opts).unwrap();
    let pcaps: Vec<_> = o.files.iter().filter(|f| f.starts_with("pcap/")).collect();
    assert!(pcaps.len() >= 20, "{pcaps:?}");
    let checks = ["-o", "ip.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE"];
    let mut protocols = std::collections::BTreeSet::new();
    for p in pcaps {
        let path = out.join(p);
        let path = path.to_str().unwrap();
        let bad = tshark(&[&["-r", path], &checks[..], &["-Y", "_ws.malformed || _ws.expert.severity >= warning || ip.checksum.status == 0 || udp.checksum.status == 0"]].concat());
        assert!(bad.trim().is_empty(), "{p}: problems:\n{bad}");
        let fields = tshark(&["-r", path, "-T", "fields", "-e", "frame.protocols"]);
        protocols.extend(fields.lines().map(str::to_owned));
    }
    assert!(protocols.contains("eth:ethertype:arp"), "{protocols:?}");
    assert!(protocols.contains("eth:ethertype:ip:udp:data"), "{protocols:?}");
    // The cross-node flow's frames on node-1's NIC: checksums verified good, 1242 B each.
    let good = tshark(
        &[
            &["-r", out.join("pcap/node-1-eth0.pcap").to_str().unwrap()],
            &checks[..],
            &[
                "-Y",
                "udp.checksum.status == 1 && ip.checksum.status == 1 && frame.len == 1242",
                "-T",
                "fields",
                "-e",
                "frame.number",
            ],
        ]
        .concat(),
    );
    // 50 ms at one datagram per 96 us: 521 datagrams (k = 0..520), none lost.
    assert_eq!(good.lines().count(), 521);
}
