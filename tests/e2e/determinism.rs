//! Same scenario and seed: byte-identical outputs, apart from the `run` key of summary.json
//! (wall-clock); report.html holds no wall-clock value.

use std::fs;

use cnisim::app::{self, RunOptions};

use crate::{repo, scratch};

fn run_into(dir: &std::path::Path, seed: Option<u64>) -> serde_json::Value {
    let opts = RunOptions {
        out: Some(dir.to_path_buf()),
        pcap: vec!["node-1/*".into()],
        seed,
        cni: None,
        proxy: None,
    };
    app::run(&repo("scenarios/quickstart.ron"), &opts).unwrap();
    let mut v: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("summary.json")).unwrap()).unwrap();
    v.as_object_mut().unwrap().remove("run").expect("summary has a run key");
    v
}

#[test]
fn same_seed_same_bytes() {
    let root = scratch("det");
    let (a, b) = (root.join("a"), root.join("b"));
    assert_eq!(run_into(&a, None), run_into(&b, None));
    let mut names: Vec<_> = fs::read_dir(&a).unwrap().map(|e| e.unwrap().file_name()).collect();
    names.sort();
    for n in names {
        let n = n.to_string_lossy().into_owned();
        if n == "summary.json" || n == "pcap" {
            continue;
        }
        assert!(fs::read(a.join(&n)).unwrap() == fs::read(b.join(&n)).unwrap(), "{n} differs between runs");
    }
    for p in fs::read_dir(a.join("pcap")).unwrap() {
        let n = p.unwrap().file_name();
        assert!(fs::read(a.join("pcap").join(&n)).unwrap() == fs::read(b.join("pcap").join(&n)).unwrap());
    }
}

#[test]
fn another_seed_changes_what_is_random() {
    let root = scratch("seed");
    let a = run_into(&root.join("a"), Some(1));
    let b = run_into(&root.join("b"), Some(2));
    // Ephemeral source ports are drawn from the seed.
    assert_ne!(a["flows"][0]["src_port"], b["flows"][0]["src_port"]);
}

/// The same holds with tunnels, userspace processes, eBPF, OVS and fragmentation in the path.
#[test]
fn same_seed_same_summary_for_every_kind_of_data_path() {
    use cnisim::cluster::Cni;
    let root = scratch("det-cni");
    for cni in [Cni::WeaveSleeve, Cni::WeaveFastdp, Cni::CiliumGeneve, Cni::FlannelUdp, Cni::CalicoVxlan] {
        let summary = |dir: &str| {
            let out = root.join(format!("{}-{dir}", cni.id()));
            let opts = RunOptions { out: Some(out.clone()), cni: Some(cni), ..Default::default() };
            app::run(&repo("scenarios/mtu-blackhole.ron"), &opts).unwrap();
            let mut v: serde_json::Value =
                serde_json::from_slice(&fs::read(out.join("summary.json")).unwrap()).unwrap();
            v.as_object_mut().unwrap().remove("run");
            v
        };
        assert_eq!(summary("a"), summary("b"), "{cni}");
    }
}
