//! The binary: exit codes, messages and "nothing written" on bad input.

use std::process::Command;

use crate::{repo, scratch};

fn cnisim(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_cnisim")).args(args).output().unwrap()
}

#[test]
fn bad_scenarios_exit_2_with_position_and_write_nothing() {
    let dir = scratch("cli-bad");
    let good = std::fs::read_to_string(repo("scenarios/quickstart.ron")).unwrap();
    let cases = [
        ("syntax", good.replacen("seed: 42,", "seed: 42", 1), "bad.ron:17:5: expected a comma"),
        ("unknown-field", good.replacen("pods_per_node", "podz_per_node", 1), "bad.ron:43:5: unknown field"),
        (
            "unit",
            good.replacen("\"10Gbit\"", "\"10Gbits\"", 1),
            "bad.ron:37:14: unknown bandwidth unit 'Gbits'",
        ),
        ("cni", good.replacen("flannel-host-gw\"", "flannel-hostgw\"", 1), "bad.ron:19:10: unknown CNI"),
    ];
    for (name, text, want) in cases {
        let path = dir.join("bad.ron");
        std::fs::write(&path, &text).unwrap();
        let out_dir = dir.join(format!("out-{name}"));
        let o = cnisim(&["run", path.to_str().unwrap(), "--out", out_dir.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{name}: {stderr}");
        assert!(stderr.contains(want), "{name}: expected {want:?} in {stderr}");
        assert!(!out_dir.exists(), "{name}: output written for a bad scenario");
        let v = cnisim(&["validate", path.to_str().unwrap()]);
        assert_eq!(v.status.code(), Some(2));
    }
    let leftovers: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(leftovers, ["bad.ron"], "no temporary directories left behind");
}

#[test]
fn validate_and_usage_errors() {
    let qs = repo("scenarios/quickstart.ron");
    let o = cnisim(&["validate", qs.to_str().unwrap()]);
    assert!(o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("ok: 3 nodes, 7 pods, 0 services, 3 workloads (4 flows)")
    );
    let o = cnisim(&["trace", qs.to_str().unwrap(), "--from", "nope", "--to", "server"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--from 'nope' names no pod or external host"));
    let o = cnisim(&["run", qs.to_str().unwrap(), "--proxy", "ipvs-wrr"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown proxy mode 'ipvs-wrr'"));
    let o = cnisim(&["sweep", qs.to_str().unwrap(), "--quiet"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("has no sweep section"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = cnisim(&["run", "/nonexistent/x.ron"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent/x.ron"));
    let out = scratch("cli-pcap").join("o");
    let o = cnisim(&["run", qs.to_str().unwrap(), "--pcap", "node-9/*", "--out", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(!out.exists());
}

/// A run whose scenario asks for what the cluster cannot do says why on stderr, next to the
/// figures it explains (a ClusterIP Service behind macvlan gets nothing delivered).
#[test]
fn run_prints_the_scenario_warnings() {
    let dir = scratch("cli-warnings");
    let out = dir.join("out");
    let o = cnisim(&[
        "run",
        repo("scenarios/services.ron").to_str().unwrap(),
        "--cni",
        "macvlan",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("warning: macvlan: pod traffic bypasses the host namespace"), "{stderr}");
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    let n = summary["scenario"]["warnings"].as_array().unwrap().len();
    assert_eq!(stderr.lines().filter(|l| l.starts_with("warning: ")).count(), n);
}
