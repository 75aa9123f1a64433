//! IPv4 prefixes (`10.244.0.0/16`) and MAC addresses, with the arithmetic IPAM needs.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::de::{self, Deserialize, Deserializer};
use serde::{Serialize, Serializer};

/// An IPv4 network: an address whose host bits are zero, and a prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ipv4Net {
    network: u32,
    prefix: u8,
}

impl Ipv4Net {
    /// `0.0.0.0/0`.
    pub const DEFAULT: Ipv4Net = Ipv4Net { network: 0, prefix: 0 };

    /// Builds a network; `None` if `prefix > 32` or host bits of `addr` are set.
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Option<Ipv4Net> {
        if prefix > 32 {
            return None;
        }
        let a = u32::from(addr);
        (a & !mask(prefix) == 0).then_some(Ipv4Net { network: a, prefix })
    }
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.network)
    }
    pub fn prefix(&self) -> u8 {
        self.prefix
    }
    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        u32::from(addr) & mask(self.prefix) == self.network
    }
    pub fn overlaps(&self, other: &Ipv4Net) -> bool {
        let m = mask(self.prefix.min(other.prefix));
        self.network & m == other.network & m
    }
    /// Number of addresses in the network (2^(32-prefix)).
    pub fn size(&self) -> u64 {
        1u64 << (32 - self.prefix)
    }
    /// Usable host addresses: all but the network and broadcast addresses (/31 and /32 excepted).
    pub fn hosts(&self) -> u64 {
        match self.prefix {
            32 => 1,
            31 => 2,
            _ => self.size() - 2,
        }
    }
    /// The `i`-th address counted from the network address, if inside.
    pub fn nth(&self, i: u64) -> Option<Ipv4Addr> {
        (i < self.size()).then(|| Ipv4Addr::from(self.network + i as u32))
    }
    /// The `i`-th sub-network of length `prefix`, if it fits.
    pub fn subnet(&self, prefix: u8, i: u64) -> Option<Ipv4Net> {
        if prefix < self.prefix || prefix > 32 || i >= 1u64 << (prefix - self.prefix) {
            return None;
        }
        Some(Ipv4Net { network: self.network + (i << (32 - prefix)) as u32, prefix })
    }
    pub fn mask(&self) -> u32 {
        mask(self.prefix)
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    }
}

impl FromStr for Ipv4Net {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, p) = s.split_once('/').ok_or_else(|| {
            format!("'{s}' is not a CIDR: write an address and a prefix length, e.g. \"10.244.0.0/16\"")
        })?;
        let addr: Ipv4Addr = a.parse().map_err(|_| format!("'{a}' in '{s}' is not an IPv4 address"))?;
        let prefix: u8 = p
            .parse()
            .ok()
            .filter(|p| *p <= 32)
            .ok_or_else(|| format!("prefix length '{p}' in '{s}' must be a whole number from 0 to 32"))?;
        Ipv4Net::new(addr, prefix).ok_or_else(|| {
            let net = Ipv4Addr::from(u32::from(addr) & mask(prefix));
            format!("'{s}' has host bits set; did you mean \"{net}/{prefix}\"?")
        })
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network(), self.prefix)
    }
}

impl<'de> Deserialize<'de> for Ipv4Net {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(de::Error::custom)
    }
}
impl Serialize for Ipv4Net {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A 48-bit Ethernet address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    pub const BROADCAST: Mac = Mac([0xff; 6]);

    /// The MAC the CNI bridge plugin gives a pod's `eth0`: `0a:58` followed by the IPv4 address
    /// (containernetworking/plugins `pkg/utils/hwaddr`, used by releases before 0.8).
    pub fn from_ip(ip: Ipv4Addr) -> Mac {
        let o = ip.octets();
        Mac([0x0a, 0x58, o[0], o[1], o[2], o[3]])
    }
    /// A locally administered unicast address built from a counter (for host-side devices).
    pub fn local(prefix: u8, n: u32) -> Mac {
        let b = n.to_be_bytes();
        Mac([0x02, prefix, b[0], b[1], b[2], b[3]])
    }
    pub fn is_broadcast(&self) -> bool {
        *self == Mac::BROADCAST
    }
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 == 1
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(f, "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3], m[4], m[5])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_arithmetic() {
        let n: Ipv4Net = "10.244.0.0/16".parse().unwrap();
        assert_eq!(n.subnet(24, 3).unwrap().to_string(), "10.244.3.0/24");
        assert!(n.subnet(24, 256).is_none());
        assert!(n.contains("10.244.255.1".parse().unwrap()));
        assert!(!n.contains("10.245.0.1".parse().unwrap()));
        assert_eq!(n.subnet(24, 1).unwrap().hosts(), 254);
        let s: Ipv4Net = "10.96.0.0/12".parse().unwrap();
        assert!(!n.overlaps(&s));
        assert!(n.overlaps(&"10.0.0.0/8".parse().unwrap()));
    }

    #[test]
    fn parse_errors() {
        assert!("10.244.1.0/16".parse::<Ipv4Net>().unwrap_err().contains("did you mean \"10.244.0.0/16\""));
        assert!("10.244.0.0/33".parse::<Ipv4Net>().unwrap_err().contains("0 to 32"));
        assert!("10.244.0.0".parse::<Ipv4Net>().unwrap_err().contains("not a CIDR"));
        assert!("10.244.0.300/24".parse::<Ipv4Net>().unwrap_err().contains("not an IPv4 address"));
    }

    #[test]
    fn pod_mac_follows_bridge_plugin() {
        assert_eq!(Mac::from_ip(Ipv4Addr::new(10, 244, 1, 2)).to_string(), "0a:58:0a:f4:01:02");
    }
}
