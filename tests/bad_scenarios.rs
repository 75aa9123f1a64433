//! Broken scenarios: each case edits one spot of a valid scenario and checks that loading it
//! fails at the exact `line:col` with a message saying what is wrong.

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use cnisim::scenario::load_str;

/// A valid scenario; every case below breaks it in one place (line numbers refer to this text).
const BASE: &str = r#"Scenario(
    name: "bad",
    duration: "2s",
    cni: "flannel-host-gw",
    network: (
        node_cidr: "192.168.0.0/24",
        pod_cidr: "10.244.0.0/16",
        service_cidr: "10.96.0.0/12",
        node_subnet_prefix: 24,
    ),
    nodes: Count(count: 2, mtu: 1500),
    pods_per_node: 2,
    pods: [
        (name: "srv", node: "node-2", labels: {"app": "srv"}), // the server
    ],
    underlay: (bandwidth: "10Gbit", queue: "512KiB", loss: 0.0),
    workloads: [
        (name: "cbr", kind: UdpCbr(rate: "100Mbit", payload: 1400), from: Pod("node-1-pod-1"), to: Pod("srv")),
        (name: "rr", kind: UdpRr(request: 64, response: 1024), from: Node("node-1"), to: Labels({"app": "srv"})),
    ],
)
"#;

/// BASE with each `(from, to)` applied once, in order.
fn edit(edits: &[(&str, &str)]) -> String {
    let mut text = BASE.to_string();
    for (from, to) in edits {
        assert!(text.contains(from), "edit target {from:?} not in the scenario");
        text = text.replacen(from, to, 1);
    }
    text
}

/// Loads `text` as the library does, then runs `cnisim run` on it as a user would: the same
/// message on stderr, exit code 2, and no output directory.
fn check(text: &str, line: usize, col: usize, substring: &str) {
    let e = match load_str(text, "bad.ron") {
        Ok(_) => panic!("scenario loaded, expected an error containing {substring:?}:\n{text}"),
        Err(e) => e,
    };
    assert!(e.message.contains(substring), "message {:?} lacks {substring:?}", e.message);
    assert_eq!((e.line, e.col), (line, col), "wrong position for: {e}");
    assert_eq!(e.to_string(), format!("bad.ron:{line}:{col}: {}", e.message));

    static CASE: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "cnisim-bad-{}-{}",
        std::process::id(),
        CASE.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let (file, out) = (dir.join("bad.ron"), dir.join("out"));
    std::fs::write(&file, text).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_cnisim"))
        .args(["run", file.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    let want = format!("bad.ron:{line}:{col}: {}", e.message);
    assert!(stderr.contains(&want), "stderr {stderr:?} lacks {want:?}");
    assert!(!out.exists(), "output written for a bad scenario");
    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left, ["bad.ron"], "temporary files left behind");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn base_is_valid() {
    if let Err(e) = load_str(BASE, "bad.ron") {
        panic!("{e}");
    }
}

#[test]
fn syntax_missing_comma() {
    check(&edit(&[("\"bad\",", "\"bad\"")]), 3, 5, "expected a comma");
}

#[test]
fn unclosed_paren() {
    check(&edit(&[("    ],\n)\n", "    ],\n")]), 21, 1, "unexpected end of file");
}

#[test]
fn trailing_text() {
    check(&edit(&[("    ],\n)\n", "    ],\n) )\n")]), 21, 3, "unexpected text after");
}

#[test]
fn wrong_top_level_name() {
    check(&edit(&[("Scenario(", "Senario(")]), 1, 1, "must start with `Scenario(`");
}

#[test]
fn unknown_field_lists_expected() {
    check(&edit(&[("pod_cidr:", "podz:")]), 7, 9, "unknown field 'podz' in network, expected one of: node_cidr, pod_cidr, service_cidr, node_subnet_prefix");
}

#[test]
fn unknown_top_level_field() {
    check(
        &edit(&[("pods_per_node: 2", "pods_per_nod: 2")]),
        12,
        5,
        "unknown field 'pods_per_nod' in Scenario, expected one of: name, description, seed",
    );
}

#[test]
fn unknown_cost_field() {
    check(
        &edit(&[("underlay:", "costs: (vethxmit: \"1ns\"), underlay:")]),
        16,
        13,
        "unknown field 'vethxmit' in costs",
    );
}

#[test]
fn missing_required_field() {
    check(&edit(&[("    cni: \"flannel-host-gw\",\n", "")]), 20, 1, "missing field 'cni'");
}

#[test]
fn duplicate_field() {
    check(&edit(&[("payload: 1400", "payload: 1400, payload: 2")]), 18, 68, "field 'payload' is given twice");
}

#[test]
fn unknown_workload_kind() {
    check(
        &edit(&[("UdpRr(", "UdpRR(")]),
        19,
        28,
        "unknown workload kind 'UdpRR', expected one of: UdpCbr, UdpStream, UdpRr",
    );
}

#[test]
fn unknown_selector() {
    check(
        &edit(&[("Node(\"node-1\")", "Nod(\"node-1\")")]),
        19,
        70,
        "unknown selector 'Nod', expected one of: Pod, Node, Labels",
    );
}

#[test]
fn number_in_quotes() {
    check(&edit(&[("pods_per_node: 2", "pods_per_node: \"2\"")]), 12, 20, "expected a number here");
}

#[test]
fn unit_without_quotes() {
    check(&edit(&[("\"2s\"", "2")]), 3, 15, "expected a quoted string");
}

#[test]
fn fractional_integer() {
    check(&edit(&[("payload: 1400", "payload: 1400.5")]), 18, 66, "expected a whole number");
}

#[test]
fn negative_count() {
    check(&edit(&[("count: 2", "count: -2")]), 11, 25, "number out of range");
}

#[test]
fn unit_typo() {
    check(
        &edit(&[("\"10Gbit\"", "\"10Gbits\"")]),
        16,
        27,
        "unknown bandwidth unit 'Gbits' in '10Gbits', expected one of 'bit'",
    );
}

#[test]
fn duration_without_unit() {
    check(&edit(&[("\"2s\"", "\"2\"")]), 3, 15, "has no unit");
}

#[test]
fn negative_duration() {
    check(&edit(&[("\"2s\"", "\"-2s\"")]), 3, 15, "is negative");
}

#[test]
fn zero_duration() {
    check(&edit(&[("\"2s\"", "\"0s\"")]), 3, 15, "duration is zero");
}

#[test]
fn duration_over_an_hour() {
    check(&edit(&[("\"2s\"", "\"2h\"")]), 3, 15, "longer than the limit of 1h");
}

#[test]
fn duration_of_an_hour_in_hours_is_valid() {
    let c = load_str(&edit(&[("\"2s\"", "\"1h\"")]), "bad.ron").unwrap();
    assert_eq!(c.duration, cnisim::time::Duration::from_secs(3600));
}

#[test]
fn duration_with_a_space() {
    check(
        &edit(&[("\"2s\"", "\"1 s\"")]),
        3,
        15,
        "duration '1 s' has a space in it: write the number and the unit together, e.g. \"1s\"",
    );
}

#[test]
fn a_byte_order_mark_is_skipped() {
    let c = load_str(&format!("\u{feff}{BASE}"), "bad.ron").unwrap();
    assert_eq!(c.name, "bad");
    // Positions are those an editor shows (the mark is invisible).
    let e = load_str(&format!("\u{feff}{}", edit(&[("Scenario(", "Senario(")])), "bad.ron").unwrap_err();
    assert_eq!((e.line, e.col), (1, 1), "{e}");
}

/// Bytes that are not text: `cnisim run` and `validate` exit 2 at the byte's line, column and
/// offset, and write nothing.
#[test]
fn binary_and_non_utf8_files() {
    let dir = std::env::temp_dir().join(format!("cnisim-bad-bytes-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // "bad" with a Latin-1 é for its "a".
    let mut non_utf8 = BASE.as_bytes().to_vec();
    non_utf8[BASE.find("bad").unwrap() + 1] = 0xe9;
    let mut binary = BASE.as_bytes().to_vec();
    binary.splice(40..40, [0u8, 0x8b, 0x1f]);
    let cases: [(&str, Vec<u8>, String); 3] = [
        (
            "latin1.ron",
            non_utf8,
            "latin1.ron:2:13: byte 0xe9 at byte offset 22 is not UTF-8 text; scenario files are UTF-8 (save the file as UTF-8)".into(),
        ),
        (
            "binary.ron",
            binary,
            "binary.ron:3:14: NUL byte at byte offset 40: this is a binary file, not a scenario".into(),
        ),
        (
            "gzip.ron",
            vec![0x1f, 0x8b, 0x08, 0x00, 0xff, 0xff],
            "gzip.ron:1:4: NUL byte at byte offset 3".into(),
        ),
    ];
    for (name, bytes, want) in cases {
        let file = dir.join(name);
        std::fs::write(&file, &bytes).unwrap();
        let out = dir.join("out");
        for args in [
            vec!["run", file.to_str().unwrap(), "--out", out.to_str().unwrap()],
            vec!["validate", file.to_str().unwrap()],
        ] {
            let o = Command::new(env!("CARGO_BIN_EXE_cnisim")).args(&args).output().unwrap();
            let stderr = String::from_utf8_lossy(&o.stderr);
            assert_eq!(o.status.code(), Some(2), "{args:?}: {stderr}");
            assert!(
                stderr.contains(&format!("error: {}", dir.join(&want).display())),
                "{args:?}: {stderr:?} lacks {want:?}"
            );
            assert!(!out.exists());
        }
        assert_eq!(std::fs::read(&file).unwrap(), bytes);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn service_target_in_a_scenario_without_services() {
    check(
        &edit(&[("to: Pod(\"srv\")", "to: Service(\"ghost\")")]),
        18,
        100,
        "Service(\"ghost\") names no service; this scenario has no services; declare it under `services:`",
    );
}

#[test]
fn duration_too_long() {
    check(&edit(&[("\"2s\"", "\"61min\"")]), 3, 15, "longer than the limit of 1h");
}

#[test]
fn bad_name() {
    check(&edit(&[("\"bad\"", "\"Bad Name\"")]), 2, 11, "contains 'B'; use only lowercase");
}

#[test]
fn unknown_cni() {
    check(
        &edit(&[("\"flannel-host-gw\"", "\"flanel\"")]),
        4,
        10,
        "unknown CNI 'flanel', expected one of: flannel-udp",
    );
}

#[test]
fn cidr_host_bits() {
    check(
        &edit(&[("\"10.244.0.0/16\"", "\"10.244.1.0/16\"")]),
        7,
        19,
        "has host bits set; did you mean \"10.244.0.0/16\"?",
    );
}

#[test]
fn cidr_not_an_address() {
    check(&edit(&[("\"10.244.0.0/16\"", "\"10.244.0/16\"")]), 7, 19, "is not an IPv4 address");
}

#[test]
fn cidr_prefix_too_long() {
    check(&edit(&[("\"10.244.0.0/16\"", "\"10.244.0.0/33\"")]), 7, 19, "must be a whole number from 0 to 32");
}

#[test]
fn overlapping_pod_and_service_cidr() {
    check(
        &edit(&[("\"10.96.0.0/12\"", "\"10.0.0.0/8\"")]),
        8,
        23,
        "service_cidr 10.0.0.0/8 overlaps pod_cidr 10.244.0.0/16; pick disjoint ranges",
    );
}

#[test]
fn overlapping_node_and_pod_cidr() {
    check(
        &edit(&[("\"10.244.0.0/16\"", "\"192.168.0.0/16\"")]),
        7,
        19,
        "pod_cidr 192.168.0.0/16 overlaps node_cidr 192.168.0.0/24",
    );
}

#[test]
fn subnet_prefix_not_longer() {
    check(
        &edit(&[("node_subnet_prefix: 24", "node_subnet_prefix: 16")]),
        9,
        29,
        "must be longer than pod_cidr's /16",
    );
}

#[test]
fn subnet_prefix_too_long() {
    check(&edit(&[("node_subnet_prefix: 24", "node_subnet_prefix: 31")]), 9, 29, "use at most 30");
}

#[test]
fn zero_nodes() {
    check(&edit(&[("count: 2", "count: 0")]), 11, 25, "a cluster needs at least one node");
}

#[test]
fn empty_node_list() {
    check(&edit(&[("Count(count: 2, mtu: 1500)", "List([])")]), 11, 12, "the node list is empty");
}

#[test]
fn more_nodes_than_node_cidr() {
    check(
        &edit(&[("\"192.168.0.0/24\"", "\"192.168.0.0/31\"")]),
        11,
        25,
        "2 nodes do not fit node_cidr 192.168.0.0/31",
    );
}

#[test]
fn more_nodes_than_pod_subnets() {
    check(
        &edit(&[("node_subnet_prefix: 24", "node_subnet_prefix: 17"), ("count: 2", "count: 3")]),
        11,
        25,
        "3 nodes need 3 pod subnets of /17 but pod_cidr 10.244.0.0/16 holds only 2",
    );
}

#[test]
fn more_pods_than_subnet() {
    check(
        &edit(&[("pods_per_node: 2", "pods_per_node: 254")]),
        12,
        20,
        "pods_per_node 254 does not fit a /24 pod subnet, which holds 253 pods",
    );
}

#[test]
fn listed_pod_does_not_fit() {
    check(
        &edit(&[("pods_per_node: 2", "pods_per_node: 253")]),
        14,
        9,
        "pod 'srv' does not fit node 'node-2'",
    );
}

#[test]
fn duplicate_listed_node() {
    check(
        &edit(&[("Count(count: 2, mtu: 1500)", "List([(name: \"a\"), (name: \"a\")])")]),
        11,
        38,
        "node name 'a' is used twice",
    );
}

#[test]
fn zero_cores() {
    check(
        &edit(&[("Count(count: 2, mtu: 1500)", "List([(name: \"a\", cores: 0)])")]),
        11,
        37,
        "cores 0 is outside 1..=1024",
    );
}

#[test]
fn node_mtu_too_small() {
    check(&edit(&[("mtu: 1500)", "mtu: 60)")]), 11, 33, "node mtu 60 is outside 68..=65535");
}

#[test]
fn zero_nic() {
    check(&edit(&[("count: 2,", "count: 2, nic: \"0Gbit\",")]), 11, 33, "nic bandwidth is zero");
}

#[test]
fn pod_on_unknown_node() {
    check(
        &edit(&[("\"node-2\"", "\"node-9\"")]),
        14,
        29,
        "pod 'srv' is on unknown node 'node-9'; nodes are: node-1, node-2",
    );
}

#[test]
fn duplicate_pod_name() {
    check(
        &edit(&[("(name: \"srv\"", "(name: \"node-1-pod-1\"")]),
        14,
        16,
        "pod name 'node-1-pod-1' is used twice",
    );
}

#[test]
fn loss_one() {
    check(&edit(&[("loss: 0.0", "loss: 1.0")]), 16, 60, "underlay loss 1 is not in the range [0, 1)");
}

#[test]
fn loss_negative() {
    check(&edit(&[("loss: 0.0", "loss: -0.5")]), 16, 60, "not in the range [0, 1)");
}

#[test]
fn queue_zero() {
    check(&edit(&[("\"512KiB\"", "\"0B\"")]), 16, 44, "underlay queue is zero");
}

#[test]
fn underlay_bandwidth_zero() {
    check(&edit(&[("\"10Gbit\"", "\"0bit\"")]), 16, 27, "underlay bandwidth is zero");
}

#[test]
fn underlay_mtu_too_big() {
    check(
        &edit(&[("loss: 0.0", "loss: 0.0, mtu: 70000")]),
        16,
        70,
        "underlay mtu 70000 is outside 68..=65535",
    );
}

#[test]
fn payload_exceeds_mtu() {
    check(
        &edit(&[("payload: 1400", "payload: 1473")]),
        18,
        62,
        "a pod sends datagrams of at most its MTU; lower payload to ≤ MTU-28 = 1472",
    );
}

#[test]
fn payload_over_a_udp_datagram() {
    check(
        &edit(&[("payload: 1400", "payload: 70000")]),
        18,
        62,
        "payload 70000 B is more than one UDP datagram holds over IPv4 (65,507 B); lower it",
    );
}

#[test]
fn payload_zero() {
    check(&edit(&[("payload: 1400", "payload: 0")]), 18, 62, "payload is 0 bytes");
}

#[test]
fn response_exceeds_server_mtu() {
    check(
        &edit(&[("response: 1024", "response: 9000")]),
        19,
        57,
        "response 9000 B + 28 B of IPv4/UDP headers exceeds the MTU 1500 of server pod 'srv'",
    );
}

#[test]
fn zero_rate() {
    check(&edit(&[("\"100Mbit\"", "\"0Mbit\"")]), 18, 42, "rate is zero");
}

#[test]
fn absurd_rate() {
    check(&edit(&[("\"100Mbit\"", "\"100Tbit\"")]), 18, 42, "rate 100Tbit is absurd");
}

#[test]
fn zero_timeout() {
    check(&edit(&[("response: 1024", "response: 1024, timeout: \"0s\"")]), 19, 72, "timeout is zero");
}

#[test]
fn dangling_pod_selector() {
    check(
        &edit(&[("Pod(\"srv\")", "Pod(\"server\")")]),
        18,
        100,
        "dangling selector: Pod(\"server\") matches no pod",
    );
}

#[test]
fn dangling_node_selector() {
    check(
        &edit(&[("Node(\"node-1\")", "Node(\"node-7\")")]),
        19,
        70,
        "selector Node(\"node-7\") names no node",
    );
}

#[test]
fn dangling_label_selector() {
    check(
        &edit(&[("{\"app\": \"srv\"})),", "{\"app\": \"web\"})),")]),
        19,
        90,
        "dangling selector: Labels({\"app\": \"web\"}) matches no pod",
    );
}

#[test]
fn no_flow_left() {
    check(&edit(&[("to: Pod(\"srv\")", "to: Pod(\"node-1-pod-1\")")]), 18, 100, "has no flow");
}

#[test]
fn duplicate_workload_name() {
    check(&edit(&[("(name: \"rr\"", "(name: \"cbr\"")]), 19, 16, "workload name 'cbr' is used twice");
}

#[test]
fn workload_starts_after_end() {
    check(
        &edit(&[("to: Pod(\"srv\")", "to: Pod(\"srv\"), start: \"2s\"")]),
        18,
        119,
        "starts at 2s, not before the end of the scenario at 2s",
    );
}

#[test]
fn workload_past_the_end() {
    check(
        &edit(&[("to: Pod(\"srv\")", "to: Pod(\"srv\"), start: \"1s\", duration: \"1.5s\"")]),
        18,
        135,
        "runs from 1s to 2.5s, past the end of the scenario at 2s; shorten its duration to at most 1s",
    );
}

#[test]
fn workload_zero_duration() {
    check(&edit(&[("to: Pod(\"srv\")", "to: Pod(\"srv\"), duration: \"0s\"")]), 18, 122, "has duration zero");
}

#[test]
fn port_zero() {
    check(
        &edit(&[("to: Pod(\"srv\")", "to: Pod(\"srv\"), port: 0")]),
        18,
        118,
        "port 0 is not a valid UDP port",
    );
}

#[test]
fn port_too_big() {
    check(&edit(&[("to: Pod(\"srv\")", "to: Pod(\"srv\"), port: 70000")]), 18, 118, "number out of range");
}

#[test]
fn too_many_flows() {
    check(
        &edit(&[
            ("pods_per_node: 2", "pods_per_node: 200"),
            ("from: Node(\"node-1\"), to: Labels({\"app\": \"srv\"})", "from: Labels({}), to: Labels({})"),
        ]),
        19,
        9,
        "over the limit of 100000",
    );
}

/// The underlay of BASE turned into a valid leaf-spine fabric: 3 racks of /26 in node_cidr's /24.
const LEAF_SPINE: (&str, &str) = (
    "underlay: (",
    "underlay: (fabric: LeafSpine(racks: 3, spines: 2, rack_prefix: 26, fabric_cidr: \"172.31.0.0/16\"), ",
);

/// `LEAF_SPINE` with one of its texts replaced.
fn leaf_spine(from: &str, to: &str) -> String {
    edit(&[(LEAF_SPINE.0, &LEAF_SPINE.1.replacen(from, to, 1))])
}

#[test]
fn leaf_spine_base_is_valid() {
    if let Err(e) = load_str(&edit(&[LEAF_SPINE]), "bad.ron") {
        panic!("{e}");
    }
}

#[test]
fn unknown_fabric() {
    check(
        &leaf_spine("LeafSpine(", "LeafSpin("),
        16,
        24,
        "unknown fabric (L2Switch or LeafSpine) 'LeafSpin', expected one of: L2Switch, LeafSpine",
    );
}

#[test]
fn unknown_leaf_spine_field() {
    check(
        &leaf_spine("spines:", "spine:"),
        16,
        44,
        "unknown field 'spine' in LeafSpine(...), expected one of: racks, spines",
    );
}

#[test]
fn zero_racks() {
    check(&leaf_spine("racks: 3", "racks: 0"), 16, 41, "racks 0 is outside 1..=1000");
}

#[test]
fn zero_spines() {
    check(&leaf_spine("spines: 2", "spines: 0"), 16, 52, "spines 0 is outside 1..=64");
}

#[test]
fn zero_uplink() {
    check(&leaf_spine("spines: 2,", "spines: 2, uplink: \"0Gbit\","), 16, 63, "uplink bandwidth is zero");
}

#[test]
fn rack_prefix_not_longer() {
    check(
        &leaf_spine("rack_prefix: 26", "rack_prefix: 24"),
        16,
        68,
        "rack_prefix 24 must be longer than node_cidr's /24",
    );
}

#[test]
fn rack_prefix_too_long() {
    check(&leaf_spine("rack_prefix: 26", "rack_prefix: 31"), 16, 68, "rack_prefix 31 leaves no room");
}

#[test]
fn node_cidr_too_small_for_racks() {
    check(
        &leaf_spine("racks: 3", "racks: 5"),
        16,
        41,
        "5 racks need 5 subnets of /26 but node_cidr 192.168.0.0/24 holds only 4",
    );
}

#[test]
fn rack_too_small_for_its_nodes() {
    check(
        &leaf_spine("racks: 3, spines: 2, rack_prefix: 26", "racks: 1, spines: 2, rack_prefix: 30"),
        11,
        25,
        "2 nodes are in rack-1 but its subnet 192.168.0.0/30 holds 1 (its hosts minus the ToR gateway)",
    );
}

#[test]
fn listed_rack_does_not_exist() {
    let text = edit(&[
        LEAF_SPINE,
        ("Count(count: 2, mtu: 1500)", "List([(name: \"node-1\"), (name: \"node-2\", rack: 4)])"),
    ]);
    check(&text, 11, 59, "rack 4 does not exist: racks are numbered 1 to 3");
}

#[test]
fn rack_without_leaf_spine() {
    check(
        &edit(&[("Count(count: 2, mtu: 1500)", "List([(name: \"node-1\", rack: 1), (name: \"node-2\")])")]),
        11,
        41,
        "rack is only meaningful in a leaf-spine fabric",
    );
}

#[test]
fn fabric_cidr_overlaps_pod_cidr() {
    check(
        &leaf_spine("\"172.31.0.0/16\"", "\"10.244.0.0/24\""),
        16,
        85,
        "fabric_cidr 10.244.0.0/24 overlaps pod_cidr 10.244.0.0/16",
    );
}

#[test]
fn fabric_cidr_too_small() {
    check(
        &leaf_spine("\"172.31.0.0/16\"", "\"172.31.0.0/30\""),
        16,
        85,
        "fabric_cidr 172.31.0.0/30 holds 4 addresses but 3 racks x 2 spines need 12 (one /31 per ToR-spine \
         cable); use a /28 or larger",
    );
}

#[test]
fn cni_mtu_too_small() {
    check(
        &edit(&[("\"flannel-host-gw\",", "\"flannel-host-gw\", cni_options: (mtu: 40),")]),
        4,
        48,
        "cni_options.mtu 40 is outside 68..=65535",
    );
}

#[test]
fn direct_routing_needs_flannel_vxlan() {
    check(
        &edit(&[("\"flannel-host-gw\",", "\"flannel-host-gw\", cni_options: (direct_routing: true),")]),
        4,
        59,
        "direct_routing is a flannel-vxlan option, but the CNI is flannel-host-gw",
    );
}

#[test]
fn unknown_cni_option() {
    check(
        &edit(&[(
            "\"flannel-host-gw\",",
            "\"flannel-host-gw\", cni_options: (mtu: 1400, directrouting: true),",
        )]),
        4,
        54,
        "unknown field 'directrouting' in cni_options, expected one of: mtu, direct_routing",
    );
}

#[test]
fn payload_exceeds_cni_options_mtu() {
    check(
        &edit(&[("\"flannel-host-gw\",", "\"flannel-host-gw\", cni_options: (mtu: 1400),")]),
        18,
        62,
        "payload 1400 B + 28 B of IPv4/UDP headers exceeds the MTU 1400 of client pod 'node-1-pod-1' (set by \
         cni_options.mtu); a pod sends datagrams of at most its MTU; lower payload to ≤ MTU-28 = 1372",
    );
}

/// BASE with a `web` Service on line 16, before `underlay:`, and `extra` in the Service.
fn with_service(extra: &str) -> String {
    edit(&[(
        "    underlay:",
        &format!("    services: [(name: \"web\", selector: {{\"app\": \"srv\"}}, ports: [(port: 80){extra}])], underlay:"),
    )])
}

#[test]
fn unknown_proxy_mode() {
    check(
        &edit(&[("\"flannel-host-gw\",", "\"flannel-host-gw\", proxy: \"ipvs-wrr\",")]),
        4,
        36,
        "unknown proxy mode 'ipvs-wrr', expected one of: userspace, iptables, ipvs, ipvs-lc",
    );
}

#[test]
fn a_service_cannot_send() {
    let text = with_service("").replacen("from: Pod(\"node-1-pod-1\")", "from: Service(\"web\")", 1);
    check(&text, 18, 75, "a Service cannot send");
}

#[test]
fn target_names_no_service() {
    let text = with_service("").replacen("to: Pod(\"srv\")", "to: Service(\"wbe\")", 1);
    check(&text, 18, 100, "Service(\"wbe\") names no service; services are: web");
}

#[test]
fn target_names_no_service_port() {
    let text = with_service("").replacen("to: Pod(\"srv\")", "to: Service(\"web:http\")", 1);
    check(&text, 18, 100, "service 'web' has no port named 'http'");
}

#[test]
fn node_port_outside_range() {
    let text = with_service("").replacen("(name: \"web\",", "(name: \"web\", kind: NodePort,", 1).replacen(
        "ports: [(port: 80)]",
        "ports: [(port: 80, node_port: 8080)]",
        1,
    );
    check(&text, 16, 102, "node_port 8080 is outside the NodePort range 30000-32767");
}

#[test]
fn node_port_on_a_cluster_ip_service() {
    let text = with_service("").replacen("ports: [(port: 80)]", "ports: [(port: 80, node_port: 30080)]", 1);
    check(&text, 16, 86, "node_port is only for NodePort Services");
}

#[test]
fn unknown_service_kind() {
    let text = with_service("").replacen("(name: \"web\",", "(name: \"web\", kind: ClusterIp,", 1);
    check(&text, 16, 36, "unknown service kind (ClusterIP, NodePort or Headless) 'ClusterIp'");
}

#[test]
fn empty_service_selector() {
    let text = with_service("").replacen("selector: {\"app\": \"srv\"}", "selector: {}", 1);
    check(&text, 16, 40, "selector is empty");
}

#[test]
fn unnamed_ports_of_a_multi_port_service() {
    let text = with_service(", (port: 81)");
    check(&text, 16, 64, "service 'web' has 2 ports, so each needs a name");
}

#[test]
fn cluster_ip_outside_service_cidr() {
    let text = with_service("").replacen("(name: \"web\",", "(name: \"web\", cluster_ip: \"10.244.9.9\",", 1);
    check(&text, 16, 42, "cluster_ip 10.244.9.9 is not a usable address of service_cidr 10.96.0.0/12");
}

#[test]
fn delete_unknown_pod() {
    let text = edit(&[("    underlay:", "    changes: [(at: \"1s\", delete_pod: \"srvv\")], underlay:")]);
    check(&text, 16, 38, "delete_pod 'srvv' names no pod");
}

#[test]
fn new_connection_per_request_on_cbr() {
    let text = edit(&[("to: Pod(\"srv\")),", "to: Pod(\"srv\"), new_connection_per_request: true),")]);
    check(&text, 18, 140, "new_connection_per_request is for request/response (UdpRr) workloads");
}

#[test]
fn any_generated_service_without_generated_services() {
    let text = edit(&[("to: Pod(\"srv\")", "to: AnyGeneratedService")]);
    check(&text, 18, 100, "AnyGeneratedService needs a generated_services section");
}

#[test]
fn generated_endpoints_more_than_pods() {
    let text = edit(&[("    underlay:", "    generated_services: (count: 10, endpoints: 9), underlay:")]);
    check(&text, 16, 48, "generated_services.endpoints 9 is outside 1..=5");
}

#[test]
fn unknown_sweep_parameter() {
    let text = edit(&[(
        "    underlay:",
        "    generated_services: (count: 10), sweep: (parameter: \"rate\", values: [1]), underlay:",
    )]);
    check(
        &text,
        16,
        57,
        "unknown sweep parameter 'rate', expected one of: services, endpoints, payload, nodes, pods_per_node",
    );
}

#[test]
fn conntrack_max_zero() {
    check(
        &edit(&[("\"flannel-host-gw\",", "\"flannel-host-gw\", conntrack_max: 0,")]),
        4,
        44,
        "conntrack_max 0",
    );
}

#[test]
fn external_host_must_target_a_nodeport() {
    let text = edit(&[
        ("    underlay:", "    external_hosts: [\"ext\"], underlay:"),
        ("from: Pod(\"node-1-pod-1\")", "from: External(\"ext\")"),
    ]);
    check(&text, 18, 96, "a host outside the cluster reaches it through a NodePort");
}

#[test]
fn cluster_ip_of_the_kubernetes_service() {
    let text = with_service("").replacen("(name: \"web\",", "(name: \"web\", cluster_ip: \"10.96.0.1\",", 1);
    check(&text, 16, 42, "nor 10.96.0.1, the `kubernetes` Service's");
}

#[test]
fn service_name_taken_by_generated_services() {
    let text = with_service("").replacen("(name: \"web\",", "(name: \"svc-2\",", 1).replacen(
        "    services:",
        "    generated_services: (count: 5), services:",
        1,
    );
    check(&text, 16, 55, "service name 'svc-2' is taken by generated_services");
}

#[test]
fn unknown_sysctl() {
    let text = edit(&[(
        "nodes: Count(count: 2, mtu: 1500)",
        r#"nodes: Count(count: 2, mtu: 1500, sysctls: {"net.core.rmem_max": 1})"#,
    )]);
    check(&text, 11, 70, "unknown sysctl 'net.core.rmem_max': cnisim models net.core.rmem_default");
}

#[test]
fn sysctl_below_the_kernels_floor() {
    let text = edit(&[(
        "nodes: Count(count: 2, mtu: 1500)",
        r#"nodes: Count(count: 2, mtu: 1500, sysctls: {"net.core.wmem_default": 100})"#,
    )]);
    check(&text, 11, 74, "net.core.wmem_default = 100 is outside 4608..=2147483647");
}

#[test]
fn rx_ring_out_of_range() {
    let text =
        edit(&[("nodes: Count(count: 2, mtu: 1500)", "nodes: Count(count: 2, mtu: 1500, rx_ring: 10)")]);
    check(&text, 11, 48, "rx_ring 10 is outside 64..=8192");
}

#[test]
fn unknown_offload() {
    let text = edit(&[(
        "nodes: Count(count: 2, mtu: 1500)",
        "nodes: Count(count: 2, mtu: 1500, offloads: (tso: false, lro: true))",
    )]);
    check(&text, 11, 62, "lro");
}

#[test]
fn tcp_limit_output_bytes_zero() {
    let text = edit(&[(
        "nodes: Count(count: 2, mtu: 1500)",
        r#"nodes: Count(count: 2, mtu: 1500, sysctls: {"net.ipv4.tcp_limit_output_bytes": 0})"#,
    )]);
    check(&text, 11, 84, "net.ipv4.tcp_limit_output_bytes = 0 is outside 1..=2147483647");
}

#[test]
fn txqueuelen_zero() {
    let text =
        edit(&[("nodes: Count(count: 2, mtu: 1500)", "nodes: Count(count: 2, mtu: 1500, txqueuelen: 0)")]);
    check(&text, 11, 51, "txqueuelen 0 is outside 1..=");
}

/// BASE with `sweep: <sweep>` on the underlay's line (16); `at` is the text whose first
/// character the error must point at.
fn sweep_case(sweep: &str, at: &str, message: &str) {
    let text = edit(&[("    underlay:", &format!("    sweep: {sweep}, underlay:"))]);
    let line = text.lines().nth(15).unwrap();
    let col = line.find(at).unwrap_or_else(|| panic!("{at:?} not in {line:?}")) + 1;
    check(&text, 16, col, message);
}

#[test]
fn sweep_across_cnis_errors_at_the_element() {
    sweep_case(
        r#"(parameter: "payload", values: [64], cnis: ["calico-ipip", "calico"])"#,
        r#""calico"]"#,
        "unknown CNI 'calico', expected 'all' or one of",
    );
    sweep_case(
        r#"(parameter: "payload", values: [64], cnis: ["macvlan", "macvlan"])"#,
        r#""macvlan"]"#,
        "CNI 'macvlan' is listed twice; keep one",
    );
    sweep_case(
        r#"(parameter: "payload", values: [64], cnis: ["macvlan", "all"])"#,
        r#""all""#,
        "'all' stands for every CNI; give it alone",
    );
    sweep_case(
        r#"(parameter: "payload", values: [64, 256, 64])"#,
        "64])",
        "value 64 is listed twice; keep one",
    );
    sweep_case(
        r#"(parameter: "payload", values: [64, 70000])"#,
        "70000",
        "value 70000 is outside 1..=65,507 (the most one UDP datagram holds over IPv4)",
    );
    sweep_case(r#"(parameter: "nodes", values: [0, 2])"#, "0, 2", "value 0 is outside 1..=100,000");
    sweep_case(r#"(parameter: "pods_per_node", values: [])"#, "[]", "values is empty");
    sweep_case(
        r#"(parameter: "services", values: [10])"#,
        r#""services""#,
        "sweeping 'services' needs a generated_services section to vary",
    );
}

#[test]
fn nodes_sweep_needs_counted_nodes() {
    let text = edit(&[
        ("nodes: Count(count: 2, mtu: 1500),", "nodes: List([(name: \"node-1\"), (name: \"node-2\")]),"),
        ("    underlay:", "    sweep: (parameter: \"nodes\", values: [2, 4]), underlay:"),
    ]);
    let col = text.lines().nth(15).unwrap().find("\"nodes\"").unwrap() + 1;
    check(&text, 16, col, "sweeping 'nodes' needs nodes: Count(count: N, ...) to vary");
}

#[test]
fn payload_sweep_needs_a_workload() {
    let text = edit(&[
        ("    underlay:", "    sweep: (parameter: \"payload\", values: [64]), underlay:"),
        (
            "        (name: \"cbr\", kind: UdpCbr(rate: \"100Mbit\", payload: 1400), from: Pod(\"node-1-pod-1\"), to: Pod(\"srv\")),\n",
            "",
        ),
        (
            "        (name: \"rr\", kind: UdpRr(request: 64, response: 1024), from: Node(\"node-1\"), to: Labels({\"app\": \"srv\"})),\n",
            "",
        ),
    ]);
    let line = text.lines().position(|l| l.contains("sweep:")).unwrap();
    let col = text.lines().nth(line).unwrap().find("\"payload\"").unwrap() + 1;
    check(&text, line + 1, col, "sweeping 'payload' needs a workload whose payload it sets");
}

#[test]
fn unknown_service_port_protocol() {
    // Kubernetes spells the protocols in capitals; "tcp" is not one of them.
    let text = with_service("").replacen("ports: [(port: 80)]", "ports: [(port: 80, protocol: \"tcp\")]", 1);
    check(&text, 16, 85, "unknown protocol 'tcp', expected one of: TCP, UDP");
    let text = edit(&[("    underlay:", "    generated_services: (count: 2, protocol: \"Tcp\"), underlay:")]);
    check(&text, 16, 46, "unknown protocol 'Tcp', expected one of: TCP, UDP");
}

#[test]
fn service_port_repeated_with_its_protocol() {
    let ports = "ports: [(name: \"a\", port: 80), (name: \"b\", port: 80)]";
    let text = with_service("").replacen("ports: [(port: 80)]", ports, 1);
    check(&text, 16, 87, "port 80/UDP is used twice in service 'web'");
    // The same number with the other protocol is a port of its own, as DNS's 53/UDP and 53/TCP.
    let ports = "ports: [(name: \"a\", port: 80), (name: \"b\", port: 80, protocol: \"TCP\")]";
    let text = with_service("").replacen("ports: [(port: 80)]", ports, 1);
    let c = load_str(&text, "ok.ron").expect("53/UDP beside 53/TCP is allowed");
    let p = &c.services.services[0].ports;
    assert_eq!(
        (p[0].protocol, p[1].protocol),
        (cnisim::cluster::Protocol::Udp, cnisim::cluster::Protocol::Tcp)
    );
}

#[test]
fn workload_protocol_must_match_the_service_port() {
    // A UDP workload to a TCP port, and a TCP workload to a UDP one (the default).
    let tcp_port =
        with_service("").replacen("ports: [(port: 80)]", "ports: [(port: 80, protocol: \"TCP\")]", 1);
    let text = tcp_port.replacen("to: Pod(\"srv\")", "to: Service(\"web\")", 1);
    check(
        &text,
        18,
        100,
        "Service 'web' port 80 is TCP, and this workload sends UDP; give the port protocol: \"UDP\"",
    );
    let text = with_service("")
        .replacen("kind: UdpCbr(rate: \"100Mbit\", payload: 1400)", "kind: TcpStream()", 1)
        .replacen("to: Pod(\"srv\")", "to: Service(\"web\")", 1);
    check(
        &text,
        18,
        73,
        "Service 'web' port 80 is UDP, and this workload sends TCP; give the port protocol: \"TCP\"",
    );
}

#[test]
fn tcp_workload_fields_are_checked() {
    let text = edit(&[("kind: UdpCbr(rate: \"100Mbit\", payload: 1400)", "kind: TcpStream(streams: 0)")]);
    check(&text, 18, 48, "streams 0 is outside 1..=128");
    let text = edit(&[("kind: UdpCbr(rate: \"100Mbit\", payload: 1400)", "kind: TcpCrr(request: 0)")]);
    check(&text, 18, 45, "request 0 B is outside 1..=131072");
    let text = edit(&[
        ("to: Pod(\"srv\")", "to: External(\"x\")"),
        ("kind: UdpCbr(rate: \"100Mbit\", payload: 1400)", "kind: TcpRr()"),
    ]);
    // TCP runs to external hosts too; this one names a host the scenario does not have.
    check(&text, 18, 69, "External(\"x\") names no external host");
}

/// BASE with `fields` (top-level fields such as `namespaces: [...]`) on a line of their own
/// before `underlay:` (line 16).
fn with_fields(fields: &str) -> String {
    edit(&[("    underlay:", &format!("    {fields},\n    underlay:"))])
}

/// [`check`] at the start of `marker`, which must occur exactly once in `text`: the error must
/// point at that value.
fn check_at(text: &str, marker: &str, substring: &str) {
    assert_eq!(text.matches(marker).count(), 1, "marker {marker:?} is not unique in:\n{text}");
    check_at_offset(text, text.find(marker).unwrap(), substring);
}

/// [`check`] at byte `offset` of `text`.
fn check_at_offset(text: &str, offset: usize, substring: &str) {
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().unwrap().chars().count() + 1;
    check(text, line, col, substring);
}

/// BASE with one network policy in `default`, written `(name: "p", <body>)`.
fn with_policy(body: &str) -> String {
    with_fields(&format!("network_policies: [(name: \"p\", {body})]"))
}

#[test]
fn policies_and_namespaces_are_valid_as_written() {
    let text = with_fields(
        "namespaces: [(name: \"prod\", labels: {\"team\": \"a\"})], network_policies: [(name: \"deny\"), \
         (name: \"allow\", namespace: \"prod\", ingress: [(from: [(namespace_selector: (match_labels: \
         {\"team\": \"a\"}), pod_selector: (match_expressions: [(key: \"app\", operator: \"Exists\")])), \
         (ip_block: (cidr: \"0.0.0.0/0\", except: [\"10.0.0.0/8\"]))], ports: [(protocol: \"UDP\", port: 53), \
         (port: 8000, end_port: 8080), ()])], egress: [()])]",
    )
    .replacen("labels: {\"app\": \"srv\"})", "labels: {\"app\": \"srv\"}, namespace: \"prod\")", 1);
    let c = load_str(&text, "ok.ron").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.policy.policies.len(), 2);
    assert_eq!(c.pods.iter().find(|p| p.name == "srv").unwrap().namespace, "prod");
}

#[test]
fn policy_in_unknown_namespace() {
    check_at(
        &with_policy("namespace: \"prod\""),
        "\"prod\"",
        "network policy 'p' is in unknown namespace 'prod'; add it to `namespaces:` (namespaces are: default)",
    );
}

#[test]
fn pod_in_unknown_namespace() {
    let text = edit(&[("labels: {\"app\": \"srv\"})", "labels: {\"app\": \"srv\"}, namespace: \"prod\")")]);
    check_at(&text, "\"prod\"", "pod 'srv' is in unknown namespace 'prod'; add it to `namespaces:`");
}

#[test]
fn namespace_names_are_dns_labels_listed_once() {
    check_at(
        &with_fields("namespaces: [(name: \"Prod\")]"),
        "\"Prod\"",
        "namespace name 'Prod' contains 'P'",
    );
    check_at(
        &with_fields("namespaces: [(name: \"-prod\")]"),
        "\"-prod\"",
        "must start and end with a letter or digit",
    );
    check_at(
        &with_fields("namespaces: [(name: \"prod\"), (name: \"prod\" )]"),
        "\"prod\" )",
        "namespace 'prod' is listed twice",
    );
}

#[test]
fn namespace_name_label_is_kubernetes_own() {
    check_at(
        &with_fields("namespaces: [(name: \"prod\", labels: {\"kubernetes.io/metadata.name\": \"dev\"})]"),
        "\"dev\"",
        "label kubernetes.io/metadata.name is 'dev', but Kubernetes sets it to the namespace's name ('prod')",
    );
}

#[test]
fn policy_names_unique_per_namespace() {
    check_at(
        &with_fields("network_policies: [(name: \"p\"), (name: \"p\" )]"),
        "\"p\" )",
        "network policy 'p' is defined twice in namespace 'default'",
    );
    check_at(
        &with_fields("network_policies: [(name: \"Allow_all\")]"),
        "\"Allow_all\"",
        "network policy name 'Allow_all' contains 'A'",
    );
}

#[test]
fn bad_selector_operator() {
    check_at(
        &with_policy(
            "pod_selector: (match_expressions: [(key: \"app\", operator: \"in\", values: [\"a\"])])",
        ),
        "\"in\"",
        "selector operator 'in' is not one of: In, NotIn, Exists, DoesNotExist",
    );
}

#[test]
fn selector_operator_values() {
    check_at(
        &with_policy("pod_selector: (match_expressions: [(key: \"app\", operator: \"NotIn\")])"),
        "(key:",
        "operator NotIn needs at least one value in `values`",
    );
    check_at(
        &with_policy(
            "ingress: [(from: [(namespace_selector: (match_expressions: [(key: \"a\", operator: \
             \"DoesNotExist\", values: [\"x\"])]))])]",
        ),
        "[\"x\"]",
        "operator DoesNotExist takes no values; remove `values`",
    );
    check_at(
        &with_policy("pod_selector: (match_expressions: [(key: \"\", operator: \"Exists\")])"),
        "\"\"",
        "key is empty",
    );
}

#[test]
fn bad_policy_type() {
    check_at(
        &with_policy("policy_types: [\"Ingress\", \"egress\"]"),
        "\"egress\"",
        "policy type 'egress' is not one of: Ingress, Egress",
    );
    check_at(
        &with_policy("policy_types: [\"Egress\", \"Egress\" ]"),
        "\"Egress\" ]",
        "policy type Egress is given twice",
    );
}

#[test]
fn peer_needs_exactly_one_kind() {
    check_at(
        &with_policy("ingress: [(from: [(pod_selector: ()), ()])]"),
        "()]",
        "this peer selects nothing: give pod_selector, namespace_selector (or both), or ip_block",
    );
    check_at(
        &with_policy("egress: [(to: [(pod_selector: (), ip_block: (cidr: \"10.0.0.0/8\"))])]"),
        "(cidr:",
        "ip_block cannot share a peer with pod_selector or namespace_selector",
    );
}

#[test]
fn bad_ip_block_cidr() {
    let block = |b: &str| with_policy(&format!("egress: [(to: [(ip_block: {b})])]"));
    check_at(&block("(cidr: \"10.0.0.0/33\")"), "\"10.0.0.0/33\"", "prefix length '33' in '10.0.0.0/33'");
    check_at(
        &block("(cidr: \"10.0.0.1/8\")"),
        "\"10.0.0.1/8\"",
        "has host bits set; did you mean \"10.0.0.0/8\"?",
    );
    check_at(&block("(cidr: \"10.0.0.0\")"), "\"10.0.0.0\"", "'10.0.0.0' is not a CIDR");
    check_at(
        &block("(cidr: \"2001:db8::/64\")"),
        "\"2001:db8::/64\"",
        "is an IPv6 CIDR; cnisim models IPv4 only",
    );
}

#[test]
fn ip_block_except_must_be_inside_cidr() {
    let block = |e: &str| {
        with_policy(&format!("ingress: [(from: [(ip_block: (cidr: \"10.1.0.0/16\", except: [{e}]))])]"))
    };
    check_at(
        &block("\"10.2.0.0/24\""),
        "\"10.2.0.0/24\"",
        "except 10.2.0.0/24 is not strictly inside cidr 10.1.0.0/16",
    );
    check_at(&block("\"10.1.0.0/16\""), "\"10.1.0.0/16\"]", "except 10.1.0.0/16 is not strictly inside");
    check_at(&block("\"10.0.0.0/8\""), "\"10.0.0.0/8\"", "except 10.0.0.0/8 is not strictly inside");
}

#[test]
fn end_port_below_port() {
    check_at(
        &with_policy("ingress: [(ports: [(port: 8080, end_port: 8000)])]"),
        "8000",
        "end_port 8000 is below port 8080; end_port must be at least port",
    );
}

#[test]
fn end_port_without_port() {
    check_at(
        &with_policy("egress: [(ports: [(protocol: \"UDP\", end_port: 8000)])]"),
        "8000",
        "end_port needs port: the range is port..=end_port",
    );
}

#[test]
fn policy_port_out_of_range() {
    check_at(&with_policy("ingress: [(ports: [(port: 0)])]"), "0)]", "port 0 is outside 1..=65535");
    check_at(&with_policy("ingress: [(ports: [(port: 70000)])]"), "70000", "port 70000 is outside 1..=65535");
    check_at(
        &with_policy("ingress: [(ports: [(port: 80, end_port: 65536)])]"),
        "65536",
        "end_port 65536 is outside 1..=65535",
    );
}

#[test]
fn named_policy_port_is_refused() {
    check_at(
        &with_policy("ingress: [(ports: [(port: \"http\")])]"),
        "\"http\"",
        "named port 'http' is not supported",
    );
}

#[test]
fn bad_policy_port_protocol() {
    check_at(
        &with_policy("ingress: [(ports: [(protocol: \"tcp\", port: 80)])]"),
        "\"tcp\"",
        "protocol 'tcp' is not one of: TCP, UDP, SCTP",
    );
}

#[test]
fn policy_fields_are_snake_case() {
    check_at(&with_policy("podSelector: ()"), "podSelector", "unknown field 'podSelector'");
}

#[test]
fn every_enforcing_cni_loads_policies() {
    // Calico, Cilium and Weave enforce them: their scenarios load.
    let text = with_policy("").replacen("\"flannel-host-gw\"", "\"calico-bgp\"", 1);
    assert!(load_str(&text, "ok.ron").is_ok());
    let text = with_policy("").replacen("\"flannel-host-gw\"", "\"cilium-native\"", 1);
    assert!(load_str(&text, "np.ron").is_ok_and(|c| c.policy.policies.len() == 1));
    // Weave's pod MTU is 1376: a smaller payload keeps the workloads valid.
    let text = with_policy("").replacen("\"flannel-host-gw\"", "\"weave-fastdp\"", 1).replacen(
        "payload: 1400",
        "payload: 1000",
        1,
    );
    assert!(load_str(&text, "np.ron").is_ok_and(|c| c.policy.policies.len() == 1));
}

#[test]
fn generated_policies_count_out_of_range() {
    let text = with_fields("generated_policies: (count: 0)");
    let at = text.find("(count: 0)").unwrap() + "(count: ".len();
    check_at_offset(&text, at, "generated_policies.count 0 is outside 1..=100,000; change it");
    check_at(
        &with_fields("generated_policies: (count: 100001)"),
        "100001",
        "generated_policies.count 100001 is outside 1..=100,000",
    );
}

#[test]
fn generated_policies_in_unknown_namespace() {
    check_at(
        &with_fields("generated_policies: (count: 3, namespace: \"prod\")"),
        "\"prod\"",
        "generated_policies.namespace 'prod' is not a namespace; add it to `namespaces:` (namespaces are: default)",
    );
}

#[test]
fn generated_policy_name_taken_by_a_listed_one() {
    let text = with_fields("network_policies: [(name: \"gen-2\")], generated_policies: (count: 3)");
    check_at(
        &text,
        "(count: 3)",
        "network policy 'gen-2' in namespace 'default' is also made by generated_policies",
    );
}

#[test]
fn policies_sweep_without_generated_policies() {
    check_at(
        &with_fields("sweep: (parameter: \"policies\", values: [10])"),
        "\"policies\"",
        "sweeping 'policies' needs a generated_policies section to vary; add one",
    );
}

#[test]
fn generated_policies_make_the_policies_they_say() {
    let c = load_str(&with_fields("generated_policies: (count: 3, port: 80)"), "ok.ron")
        .unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<&str> = c.policy.policies.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["gen-1", "gen-2", "gen-3"]);
    let p = &c.policy.policies[2];
    assert_eq!(p.ingress[0].ports.len(), 2, "TCP and UDP on the port");
    assert!(p.ingress[0].ports.iter().all(|x| x.port == Some(80)));
}

/// BASE under calico-ipip (BIRD runs) with `bgp: <section>` and `more` top-level fields.
fn with_bgp(section: &str, more: &str) -> String {
    let fields = if more.is_empty() { format!("bgp: {section}") } else { format!("bgp: {section}, {more}") };
    with_fields(&fields).replacen("\"flannel-host-gw\"", "\"calico-ipip\"", 1)
}

#[test]
fn bgp_sections_valid_as_written() {
    for text in [
        with_bgp("()", ""),
        with_bgp("(route_reflectors: [\"node-1\"], cluster_id: \"10.0.0.1\", as_number: 65001)", ""),
        with_bgp(
            "(hold_time: \"90s\", keepalive_time: \"30s\", connect_delay: \"1s\", connect_retry: \"2s\", \
             error_wait: (\"1s\", \"10s\"), graceful_restart: \"60s\")",
            "changes: [(at: \"1s\", stop_bird: \"node-1\"), (at: \"1500ms\", power_off: \"node-2\")]",
        ),
        with_bgp(
            "()",
            "changes: [(at: \"1s\", join_node: \"node-2\"), (at: \"1500ms\", restart_bird: \"node-2\")]",
        ),
    ] {
        let c = load_str(&text, "ok.ron").unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert!(c.bgp.is_some());
    }
}

#[test]
fn join_node_errors() {
    check_at(
        &with_fields("changes: [(at: \"1s\", join_node: \"node-2\")]"),
        "\"node-2\")]",
        "join_node needs the BGP control plane simulated",
    );
    check_at(
        &with_bgp("()", "changes: [(at: \"1s\", join_node: \"node-9\")]"),
        "\"node-9\"",
        "join_node 'node-9' names no node",
    );
    let text = with_bgp(
        "()",
        "changes: [(at: \"1s\", join_node: \"node-2\"), (at: \"1500ms\", join_node: \"node-2\")]",
    );
    check_at_offset(&text, text.rfind("\"node-2\")]").unwrap(), "node 'node-2' joins twice");
    // Nothing happens to a node before it joins.
    let text = with_bgp(
        "()",
        "changes: [(at: \"1s\", join_node: \"node-2\"), (at: \"500ms\", power_off: \"node-2\")]",
    );
    check_at_offset(
        &text,
        text.find("power_off: ").unwrap() + "power_off: ".len(),
        "this change at 500ms is not after node 'node-2' joins at 1s; make it later or the join earlier",
    );
    let text =
        with_bgp("()", "changes: [(at: \"1s\", delete_pod: \"srv\"), (at: \"1s\", join_node: \"node-2\")]");
    check_at(&text, "\"srv\"), (at", "this change at 1s is not after node 'node-2' joins at 1s");
    // A joining node's clients start after it joins.
    let text = with_bgp("()", "changes: [(at: \"1s\", join_node: \"node-1\")]");
    check_at(
        &text,
        "(name: \"cbr\"",
        "workload 'cbr' has clients on node 'node-1', which joins at 1s, but starts at 0ns; start it after the join",
    );
}

#[test]
fn bgp_under_a_cni_without_bird() {
    let text = with_fields("bgp: ()");
    check_at(&text, "(),\n    underlay", "but flannel-host-gw runs no BGP (only calico-bgp, calico-ipip");
}

#[test]
fn bgp_route_reflector_errors() {
    check_at(
        &with_bgp("(route_reflectors: [\"node-9\"])", ""),
        "\"node-9\"",
        "route reflector 'node-9' names no node",
    );
    let text = with_bgp("(route_reflectors: [\"node-1\", \"node-1\"])", "");
    let at = text.find("\"node-1\"]").unwrap();
    check_at_offset(&text, at, "node 'node-1' is listed twice as a route reflector");
    check_at(
        &with_bgp("(route_reflectors: [\"node-1\", \"node-2\"])", ""),
        "[\"node-1\", \"node-2\"]",
        "every node is a route reflector, so no node is a client",
    );
    check_at(
        &with_bgp("(cluster_id: \"244.0.0.1\")", ""),
        "\"244.0.0.1\"",
        "cluster_id is the route reflectors' and there are none",
    );
    check_at(
        &with_bgp("(route_reflectors: [\"node-1\"], cluster_id: \"244.0.0\")", ""),
        "\"244.0.0\"",
        "cluster_id '244.0.0' is not an IPv4 address",
    );
}

#[test]
fn bgp_numbers_and_timers_out_of_range() {
    for (section, marker, message) in [
        ("(as_number: 23456)", "23456", "AS 23456 is reserved"),
        ("(as_number: 0, hold_time: \"240s\")", "0, hold", "AS 0 is reserved"),
        ("(hold_time: \"2s\")", "\"2s\")", "hold_time 2s must be 0 or 3s to 65535s"),
        ("(hold_time: \"1500ms\")", "\"1500ms\"", "must be 0 or 3s to 65535s"),
        ("(hold_time: \"3500ms\")", "\"3500ms\"", "is not whole seconds"),
        (
            "(keepalive_time: \"240s\")",
            "\"240s\"",
            "keepalive_time 240s must be above zero and below the hold time 240s",
        ),
        ("(connect_retry: \"0s\")", "\"0s\"", "connect_retry is zero"),
        ("(error_wait: (\"30s\", \"5s\"))", "(\"30s\"", "must be (min, max) with 0 < min <= max"),
        ("(graceful_restart: \"4096s\")", "\"4096s\"", "up to 4095s"),
        ("(graceful_restart_wait: \"0s\")", "\"0s\"", "graceful_restart_wait is zero"),
    ] {
        check_at(&with_bgp(section, ""), marker, message);
    }
}

#[test]
fn change_errors() {
    check_at(
        &with_fields("changes: [(at: \"1s\", power_off: \"node-1\", delete_pod: \"srv\")]"),
        "(at: \"1s\"",
        "give exactly one of delete_pod, power_off, stop_bird, restart_bird, join_node, apply_policy, \
         delete_policy and label_pod (this one has delete_pod and power_off)",
    );
    check_at(&with_fields("changes: [(at: \"1s\")]"), "(at: \"1s\")", "(this one has none)");
    check_at(
        &with_fields("changes: [(at: \"1s\", power_off: \"node-7\")]"),
        "\"node-7\"",
        "power_off 'node-7' names no node",
    );
    let text = with_fields(
        "changes: [(at: \"1s\", power_off: \"node-1\"), (at: \"1200ms\", power_off: \"node-1\")]",
    );
    let at = text.rfind("\"node-1\")]").unwrap();
    check_at_offset(&text, at, "node 'node-1' is powered off twice");
    check_at(
        &with_fields("changes: [(at: \"1s\", stop_bird: \"node-1\")]"),
        "\"node-1\")]",
        "stop_bird needs the BGP control plane simulated",
    );
    check_at(
        &with_bgp("()", "changes: [(at: \"1s\", stop_bird: \"node-3\")]"),
        "\"node-3\"",
        "stop_bird 'node-3' names no node",
    );
    check_at(
        &with_fields("changes: [(at: \"1s\", restart_bird: \"node-1\")]"),
        "\"node-1\")]",
        "restart_bird needs the BGP control plane simulated",
    );
    check_at(
        &with_bgp("()", "changes: [(at: \"1s\", restart_bird: \"node-9\")]"),
        "\"node-9\"",
        "restart_bird 'node-9' names no node",
    );
    check_at(
        &with_bgp("()", "changes: [(at: \"1s\", restart_bird: \"node-1\", stop_bird: \"node-1\")]"),
        "(at: \"1s\"",
        "(this one has stop_bird and restart_bird)",
    );
    check_at(
        &with_fields("changes: [(at: \"2s\", power_off: \"node-1\")]"),
        "\"2s\", power_off",
        "change at 2s is not before the end of the scenario at 2s",
    );
}

#[test]
fn policy_change_errors() {
    let policies = "namespaces: [(name: \"prod\")], network_policies: [(name: \"p\"), (name: \"p\", namespace: \"prod\"), (name: \"q\")]";
    let with = |changes: &str| with_fields(&format!("{policies}, changes: [{changes}]"));
    check_at(
        &with("(at: \"1s\", apply_policy: \"r\")"),
        "\"r\"",
        "'r' names no NetworkPolicy; check it against",
    );
    check_at(
        &with("(at: \"1s\", apply_policy: \"p\")"),
        "\"p\")]",
        "'p' names policies in 2 namespaces; say which as \"namespace/p\"",
    );
    check_at(&with("(at: \"1s\", delete_policy: \"dev/p\")"), "\"dev/p\"", "'dev/p' names no NetworkPolicy");
    let text = with("(at: \"1s\", apply_policy: \"prod/p\"), (at: \"1500ms\", apply_policy: \"prod/p\")");
    check_at_offset(
        &text,
        text.rfind("\"prod/p\"").unwrap(),
        "policy 'prod/p' is created twice; create it once",
    );
    let text = with("(at: \"1s\", delete_policy: \"q\"), (at: \"1500ms\", delete_policy: \"default/q\")");
    check_at(&text, "\"default/q\"", "policy 'default/q' is deleted twice; delete it once");
    // Deleted before it is created: the first of the two says so.
    let text = with("(at: \"1s\", delete_policy: \"q\"), (at: \"1500ms\", apply_policy: \"q\")");
    let at = text.find("delete_policy: \"q\"").unwrap() + "delete_policy: ".len();
    check_at_offset(&text, at, "policy 'q' is deleted no later than it is created");
    check_at(
        &with("(at: \"1s\", label_pod: (pod: \"nope\", labels: {}))"),
        "\"nope\"",
        "label_pod 'nope' names no pod",
    );
    // Created, then deleted: valid; the policy is not in force at the start.
    let text = with("(at: \"1s\", apply_policy: \"q\"), (at: \"1500ms\", delete_policy: \"q\")");
    let c = load_str(&text, "ok.ron").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((c.policy.policies.len(), c.policy_catalog.len()), (2, 3));
}

#[test]
fn bgp_sweep_errors() {
    check_at(
        &with_fields("sweep: (parameter: \"nodes\", values: [4], bgp: [\"mesh\"])"),
        "[\"mesh\"]",
        "sweeping BGP topologies needs the BGP control plane simulated",
    );
    check_at(
        &with_bgp("()", "sweep: (parameter: \"nodes\", values: [4], bgp: [\"mesh\", \"rr:0\"])"),
        "\"rr:0\"",
        "unknown BGP topology 'rr:0': write \"mesh\" or \"rr:N\"",
    );
    check_at(
        &with_bgp("()", "sweep: (parameter: \"nodes\", values: [4], bgp: [\"full-mesh\"])"),
        "\"full-mesh\"",
        "unknown BGP topology 'full-mesh'",
    );
    let text = with_bgp("()", "sweep: (parameter: \"nodes\", values: [4], bgp: [\"rr:2\", \"rr:2\"])");
    let at = text.rfind("\"rr:2\"").unwrap();
    check_at_offset(&text, at, "topology 'rr:2' is listed twice; keep one");
}

#[test]
fn bgp_start_spread_not_shorter_than_the_run() {
    check_at(
        &with_bgp("(start_spread: \"5s\")", ""),
        "\"5s\")",
        "start_spread 5s is not shorter than the scenario (2s)",
    );
}
