//! VXLAN header, RFC 7348 §5.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |R|R|R|R|I|R|R|R|            Reserved                           |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                VXLAN Network Identifier (VNI) |   Reserved    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! The header follows a UDP header and is followed by the inner Ethernet frame (without FCS).
//! UDP checksums and the outer headers are the caller's (smoltcp's UDP and IPv4 types).

use super::field::*;
use super::{Error, Result};

/// IANA-assigned VXLAN UDP destination port (RFC 7348 §5: "Destination Port: IANA has assigned
/// the value 4789 for the VXLAN UDP port").
pub const IANA_PORT: u16 = 4789;
/// The port the Linux kernel used before IANA's assignment, and still flannel's default.
pub const LINUX_LEGACY_PORT: u16 = 8472;

/// Length of the VXLAN header.
pub const HEADER_LEN: usize = field::RESERVED2 + 1;
/// The largest VNI: "VXLAN Network Identifier (VNI): this is a 24-bit value".
pub const VNI_MAX: u32 = 0x00ff_ffff;
/// The I flag: "The I flag MUST be set to 1 for a valid VXLAN Network ID (VNI)."
pub const FLAG_I: u8 = 0x08;

mod field {
    use super::{Field, Rest};

    pub const FLAGS: usize = 0;
    pub const RESERVED1: Field = 1..4;
    pub const VNI: Field = 4..7;
    pub const RESERVED2: usize = 7;
    pub const PAYLOAD: Rest = 8..;
}

/// A read/write wrapper around a VXLAN header and the frame it carries.
#[derive(Debug, PartialEq, Eq, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Imbue a raw octet buffer with VXLAN structure.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Shorthand for [`Packet::new_unchecked`] followed by [`Packet::check_len`].
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Ensure that no accessor method will panic if called: the buffer holds the whole header.
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    /// Consume the packet, returning the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The flags byte (I flag and seven reserved bits).
    #[inline]
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    /// Whether the I flag is set, i.e. the VNI is valid.
    #[inline]
    pub fn vni_valid(&self) -> bool {
        self.flags() & FLAG_I != 0
    }

    /// The 24-bit VXLAN Network Identifier.
    #[inline]
    pub fn vni(&self) -> u32 {
        let d = &self.buffer.as_ref()[field::VNI];
        u32::from_be_bytes([0, d[0], d[1], d[2]])
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    /// The inner Ethernet frame.
    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        &self.buffer.as_ref()[field::PAYLOAD]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Set the flags byte.
    #[inline]
    pub fn set_flags(&mut self, value: u8) {
        self.buffer.as_mut()[field::FLAGS] = value;
    }

    /// Zero both reserved fields ("MUST be set to zero on transmission").
    #[inline]
    pub fn clear_reserved(&mut self) {
        let data = self.buffer.as_mut();
        data[field::RESERVED1].fill(0);
        data[field::RESERVED2] = 0;
    }

    /// Set the VNI.
    ///
    /// # Panics
    /// If `value` does not fit 24 bits ([`VNI_MAX`]): a VNI that large is a cnisim bug.
    #[inline]
    pub fn set_vni(&mut self, value: u32) {
        assert!(value <= VNI_MAX, "VXLAN VNI {value} does not fit 24 bits");
        self.buffer.as_mut()[field::VNI].copy_from_slice(&value.to_be_bytes()[1..]);
    }

    /// The inner Ethernet frame, for writing.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD]
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// A parsed VXLAN header.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub struct Repr {
    /// The VXLAN Network Identifier, at most [`VNI_MAX`].
    pub vni: u32,
}

impl Repr {
    /// Parse a VXLAN header. Reserved bits are ignored, as RFC 7348 asks of receivers; a clear
    /// I flag is an error (the VNI is not valid).
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Packet<&T>) -> Result<Repr> {
        packet.check_len()?;
        if !packet.vni_valid() {
            return Err(Error::Malformed("VXLAN I flag clear"));
        }
        Ok(Repr { vni: packet.vni() })
    }

    /// Length of the header [`Repr::emit`] writes.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Same as [`Repr::buffer_len`]: VXLAN has no options.
    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    /// Write the header: I flag set, reserved bits zero, the VNI. The payload is untouched.
    ///
    /// # Panics
    /// If the VNI does not fit 24 bits.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]> + ?Sized>(&self, packet: &mut Packet<&mut T>) {
        packet.set_flags(FLAG_I);
        packet.clear_reserved();
        packet.set_vni(self.vni);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // VNI 1 (flannel's default), then the first bytes of an inner Ethernet frame.
    #[rustfmt::skip]
    static PACKET_BYTES: [u8; 12] = [
        0x08, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x01, 0x00,
        0xaa, 0xbb, 0xcc, 0xdd,
    ];

    static PAYLOAD_BYTES: [u8; 4] = [0xaa, 0xbb, 0xcc, 0xdd];

    #[test]
    fn deconstruct() {
        let packet = Packet::new_checked(&PACKET_BYTES[..]).unwrap();
        assert_eq!(packet.flags(), 0x08);
        assert!(packet.vni_valid());
        assert_eq!(packet.vni(), 1);
        assert_eq!(packet.payload(), &PAYLOAD_BYTES[..]);
    }

    #[test]
    fn parse() {
        let packet = Packet::new_checked(&PACKET_BYTES[..]).unwrap();
        assert_eq!(Repr::parse(&packet), Ok(Repr { vni: 1 }));
    }

    #[test]
    fn emit() {
        let repr = Repr { vni: 1 };
        let mut bytes = vec![0xa5; repr.buffer_len() + PAYLOAD_BYTES.len()];
        let mut packet = Packet::new_unchecked(&mut bytes[..]);
        repr.emit(&mut packet);
        packet.payload_mut().copy_from_slice(&PAYLOAD_BYTES);
        assert_eq!(bytes, PACKET_BYTES);
    }

    #[test]
    fn largest_vni_round_trips() {
        let bytes = [0x08, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0x00];
        let repr = Repr::parse(&Packet::new_checked(&bytes[..]).unwrap()).unwrap();
        assert_eq!(repr, Repr { vni: VNI_MAX });
        let mut out = [0xa5; 8];
        repr.emit(&mut Packet::new_unchecked(&mut out[..]));
        assert_eq!(out, bytes);
    }

    #[test]
    fn reserved_bits_ignored_on_receipt() {
        let bytes = [0xff, 0x12, 0x34, 0x56, 0x00, 0x10, 0x00, 0x78];
        let packet = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(Repr::parse(&packet), Ok(Repr { vni: 0x1000 }));
        assert!(packet.payload().is_empty());
    }

    #[test]
    fn i_flag_clear_rejected() {
        let bytes = [0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00];
        let packet = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(Repr::parse(&packet), Err(Error::Malformed("VXLAN I flag clear")));
    }

    #[test]
    fn truncated() {
        assert_eq!(Packet::new_checked(&PACKET_BYTES[..7]), Err(Error::Truncated));
        assert!(Packet::new_checked(&PACKET_BYTES[..8]).unwrap().payload().is_empty());
    }

    #[test]
    #[should_panic(expected = "does not fit 24 bits")]
    fn vni_over_24_bits_panics() {
        let mut bytes = [0u8; 8];
        Repr { vni: VNI_MAX + 1 }.emit(&mut Packet::new_unchecked(&mut bytes[..]));
    }
}
