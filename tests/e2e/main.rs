//! End-to-end runs of shipped scenarios, one module per behaviour, built as one test binary.

mod bgp;
mod browser;
mod cilium_policy;
mod cli;
mod cli_safety;
mod cni;
mod compare;
mod determinism;
mod masquerade;
mod pcap;
mod policy;
mod quickstart;
mod saturation;
mod services;
mod sweep_cni;
mod tcp;

use std::path::{Path, PathBuf};

/// Path of a file in the repository.
pub fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// Runs tshark (`.ci/run` installs it) and returns its standard output.
pub fn tshark(args: &[&str]) -> String {
    let o =
        std::process::Command::new("tshark").args(args).output().expect("tshark runs (.ci/run installs it)");
    assert!(o.status.success(), "tshark {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A summary.json or sweep.json without its `run` key (wall-clock times, versions): what two
/// runs of the same scenario and seed must agree on byte for byte.
pub fn without_run(mut v: serde_json::Value) -> serde_json::Value {
    v.as_object_mut().expect("a JSON object").remove("run");
    v
}

/// `cnisim compare` of `path` over `cnis` (and `proxies`) on one thread into `dir/one` and on
/// two into `dir/two`: the two output directories, which must hold the same bytes.
pub fn compare_on_one_and_two_threads(
    path: &Path,
    dir: &Path,
    cnis: Vec<cnisim::cluster::Cni>,
    proxies: Option<Vec<cnisim::cluster::ProxyMode>>,
) -> (PathBuf, PathBuf) {
    let opts = |threads| cnisim::compare::Options {
        cnis: Some(cnis.clone()),
        proxies: proxies.clone(),
        threads: Some(threads),
        progress: false,
        shard: None,
    };
    let one = cnisim::app::compare(path, Some(dir.join("one")), &opts(1)).unwrap().0;
    let two = cnisim::app::compare(path, Some(dir.join("two")), &opts(2)).unwrap().0;
    (one, two)
}

/// A fresh, empty scratch directory for one test.
pub fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("cnisim-e2e-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}
