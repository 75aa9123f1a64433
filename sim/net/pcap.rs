//! Writing pcap capture files (the classic libpcap format, nanosecond timestamps).
//!
//! Format: <https://www.tcpdump.org/manpages/pcap-savefile.5.html>. Magic 0xa1b23c4d marks
//! nanosecond resolution; link type 1 is Ethernet (LINKTYPE_ETHERNET).

use crate::time::Instant;

const MAGIC_NANOS: u32 = 0xa1b2_3c4d;
const LINKTYPE_ETHERNET: u32 = 1;
/// Raw IPv4/IPv6 packets with no link-layer header (L3 devices such as `tunl0`).
const LINKTYPE_RAW: u32 = 101;
const SNAPLEN: u32 = 262_144;

/// An in-memory pcap file; `bytes()` is the complete file at any point.
#[derive(Clone, Debug)]
pub struct PcapWriter {
    buf: Vec<u8>,
    packets: u64,
}

impl Default for PcapWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl PcapWriter {
    /// A capture of Ethernet frames.
    pub fn new() -> Self {
        Self::with_linktype(LINKTYPE_ETHERNET)
    }

    /// A capture of raw IP packets (records must then start at the IP header).
    pub fn new_raw() -> Self {
        Self::with_linktype(LINKTYPE_RAW)
    }

    /// Whether records are raw IP packets rather than Ethernet frames.
    pub fn is_raw(&self) -> bool {
        self.buf[20..24] == LINKTYPE_RAW.to_le_bytes()
    }

    fn with_linktype(linktype: u32) -> Self {
        let mut buf = Vec::with_capacity(4096);
        buf.extend_from_slice(&MAGIC_NANOS.to_le_bytes());
        buf.extend_from_slice(&2u16.to_le_bytes()); // version major
        buf.extend_from_slice(&4u16.to_le_bytes()); // version minor
        buf.extend_from_slice(&0i32.to_le_bytes()); // thiszone
        buf.extend_from_slice(&0u32.to_le_bytes()); // sigfigs
        buf.extend_from_slice(&SNAPLEN.to_le_bytes());
        buf.extend_from_slice(&linktype.to_le_bytes());
        PcapWriter { buf, packets: 0 }
    }

    /// Appends one frame captured at `time`.
    pub fn record(&mut self, time: Instant, frame: &[u8]) {
        let ns = time.as_nanos();
        let caplen = frame.len().min(SNAPLEN as usize);
        self.buf.extend_from_slice(&((ns / 1_000_000_000) as u32).to_le_bytes());
        self.buf.extend_from_slice(&((ns % 1_000_000_000) as u32).to_le_bytes());
        self.buf.extend_from_slice(&(caplen as u32).to_le_bytes());
        self.buf.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(&frame[..caplen]);
        self.packets += 1;
    }

    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    pub fn packets(&self) -> u64 {
        self.packets
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_record_bytes() {
        let mut w = PcapWriter::new();
        w.record(Instant::from_nanos(1_000_000_123), &[0xaa, 0xbb]);
        assert_eq!(
            w.bytes(),
            [
                0x4d, 0x3c, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 1, 0, 0, 0, //
                1, 0, 0, 0, 123, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 0xaa, 0xbb,
            ]
        );
    }
}
