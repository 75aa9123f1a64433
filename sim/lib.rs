//! cnisim: a packet-level, discrete-event simulator of Kubernetes cluster networks.
//!
//! Data flows one way (see ARCHITECTURE.md):
//! `scenario` (RON text -> [`cluster::Cluster`]) -> `world` (build devices, routes, tables)
//! -> `sim` (run the event engine, collect `observe::Observations`) -> `summary`
//! -> `report` (HTML, PNG, CSV) -> `output` (atomic directory write).

pub mod addr;
pub mod app;
pub mod bgp;
pub mod build;
pub mod cluster;
pub mod cni;
pub mod compare;
pub mod cost;
pub mod datapath;
pub mod describe;
pub mod engine;
pub mod error;
pub mod estimate;
pub mod fmt;
pub mod memory;
pub mod net;
pub mod observe;
pub mod output;
pub mod policy;
pub mod progress;
pub mod proxy;
pub mod report;
pub mod run;
pub mod scenario;
pub mod summary;
pub mod sweep;
#[doc(hidden)]
pub mod testkit;
pub mod time;
pub mod trace;
pub mod units;
pub mod userspace;
pub mod wire;
pub mod world;
