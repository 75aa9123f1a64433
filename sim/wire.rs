//! cnisim's own wire formats: the headers smoltcp lacks, written the way smoltcp writes its own.
//!
//! - [`csum`]: the Internet checksum (RFC 1071) for TCP and UDP, partial and incremental.
//! - [`vxlan`]: the VXLAN header (RFC 7348), as flannel, Calico and Cilium put it on UDP.
//! - [`geneve`]: the Geneve header (RFC 8926), as OVN-Kubernetes and Cilium put it on UDP.
//! - [`icmp_frag`]: ICMPv4 "fragmentation needed" with the next-hop MTU (RFC 792, RFC 1191),
//!   which smoltcp parses but cannot write.
//! - [`ipv4frag`]: IPv4 fragmentation and reassembly over raw packets (RFC 791).
//! - [`bgp`]: BGP-4 messages (RFC 4271 and the extensions Calico's BIRD 1.6 negotiates:
//!   capabilities, 4-octet AS, ADD-PATH, graceful restart, route reflection), over TCP port
//!   179; its `Message` has `parse` and `emit` in place of a `Repr`.
//!
//! Each packet type wraps a buffer (`Packet<T: AsRef<[u8]>>`): `new_checked` checks the length
//! once, after which no accessor can panic; a small validated `Repr` has `parse` and `emit`.
//! Ethernet, ARP, IPv4, UDP and the rest of ICMP come from `smoltcp::wire`.
//!
//! Nothing here knows about devices, routes or events: these are bytes in, bytes out.

pub mod bgp;
pub mod csum;
pub mod geneve;
pub mod icmp_frag;
pub mod ipv4frag;
pub mod vxlan;

mod field {
    pub type Field = ::core::ops::Range<usize>;
    pub type Rest = ::core::ops::RangeFrom<usize>;
}

/// Why a header could not be parsed. A datapath drops such a packet (and may count it); it is
/// never a cnisim bug unless cnisim emitted the bytes itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The buffer is shorter than the header, or than a length field in it says.
    #[error("truncated header")]
    Truncated,
    /// A field holds a value the RFC says a receiver must reject (the field is named).
    #[error("malformed header: {0}")]
    Malformed(&'static str),
}

pub type Result<T> = core::result::Result<T, Error>;
