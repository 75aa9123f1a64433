//! Linux networking building blocks, as data: packets with real bytes, routing tables,
//! neighbour tables, bridge forwarding databases, links and pcap capture.
//!
//! Nothing here schedules events or knows about CNI plugins; `datapath` strings these pieces
//! into a node's kernel pipeline and `world` builds them from the cluster.

pub mod bridge;
pub mod conntrack;
pub mod filter;
pub mod gso;
pub mod link;
pub mod neigh;
pub mod packet;
pub mod pcap;
pub mod route;

/// Index of a network namespace (a node's host namespace, a pod's, an external host's or a
/// fabric router's) in the world.
pub type NsId = usize;
/// Index of a directed cable in the world.
pub type LinkId = usize;
