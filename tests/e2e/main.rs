//! End-to-end runs of shipped scenarios, one module per behaviour, built as one test binary.

mod cli;
mod cni;
mod determinism;
mod pcap;
mod quickstart;
mod services;

use std::path::{Path, PathBuf};

/// Path of a file in the repository.
pub fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// A fresh, empty scratch directory for one test.
pub fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("cnisim-e2e-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}
