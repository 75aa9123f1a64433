//! Geneve header, RFC 8926 §3.4.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |Ver|  Opt Len  |O|C|    Rsvd.  |          Protocol Type        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |        Virtual Network Identifier (VNI)       |    Reserved   |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                                                               |
//! ~                    Variable-Length Options                    ~
//! |                                                               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! Options are kept as opaque bytes: cnisim sizes them (they cost MTU) but does not interpret
//! them. The header follows a UDP header; the outer headers are the caller's.

use super::field::*;
use super::{Error, Result};

/// IANA-assigned Geneve UDP destination port (RFC 8926 §3.3: "Dst Port: IANA has assigned port
/// 6081 as the fixed well-known destination port for Geneve").
pub const PORT: u16 = 6081;
/// Protocol Type of an Ethernet payload (RFC 8926 §3.4: "Ethernet ... Protocol Type field
/// value of 0x6558 (Transparent Ethernet Bridging)").
pub const ETHERNET_BRIDGING: u16 = 0x6558;
/// Length of the fixed header, without options.
pub const HEADER_LEN: usize = field::RESERVED + 1;
/// The largest options length: "Opt Len (6 bits): The length of the option fields, expressed
/// in 4-byte multiples".
pub const OPTIONS_MAX: usize = 0x3f * 4;
/// The largest VNI (24 bits).
pub const VNI_MAX: u32 = 0x00ff_ffff;
/// The one version defined: "The current version number is 0."
pub const VERSION: u8 = 0;

mod field {
    #![allow(non_snake_case)]

    use super::Field;

    /// Ver (2 bits) and Opt Len (6 bits).
    pub const VER_OPTLEN: usize = 0;
    /// O (1 bit), C (1 bit) and Rsvd. (6 bits).
    pub const FLAGS: usize = 1;
    pub const PROTOCOL: Field = 2..4;
    pub const VNI: Field = 4..7;
    pub const RESERVED: usize = 7;

    pub const fn OPTIONS(options_len: usize) -> Field {
        super::HEADER_LEN..super::HEADER_LEN + options_len
    }
}

const FLAG_OAM: u8 = 0x80;
const FLAG_CRITICAL: u8 = 0x40;

/// A read/write wrapper around a Geneve header, its options and the payload it carries.
#[derive(Debug, PartialEq, Eq, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Imbue a raw octet buffer with Geneve structure.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Shorthand for [`Packet::new_unchecked`] followed by [`Packet::check_len`].
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Ensure that no accessor method will panic if called: the buffer holds the fixed header
    /// and the options its Opt Len announces.
    ///
    /// The result is invalidated by [`Packet::set_options_len`].
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN || len < self.header_len() {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    /// Consume the packet, returning the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The version field (2 bits).
    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_OPTLEN] >> 6
    }

    /// Length of the options, in bytes (Opt Len times 4).
    #[inline]
    pub fn options_len(&self) -> usize {
        (self.buffer.as_ref()[field::VER_OPTLEN] & 0x3f) as usize * 4
    }

    /// Length of the fixed header plus the options: where the payload starts.
    #[inline]
    pub fn header_len(&self) -> usize {
        HEADER_LEN + self.options_len()
    }

    /// The O bit: "This packet contains a control message".
    #[inline]
    pub fn oam(&self) -> bool {
        self.buffer.as_ref()[field::FLAGS] & FLAG_OAM != 0
    }

    /// The C bit: "One or more options has the critical bit set".
    #[inline]
    pub fn critical(&self) -> bool {
        self.buffer.as_ref()[field::FLAGS] & FLAG_CRITICAL != 0
    }

    /// The Protocol Type of the payload (an EtherType).
    #[inline]
    pub fn protocol(&self) -> u16 {
        let d = &self.buffer.as_ref()[field::PROTOCOL];
        u16::from_be_bytes([d[0], d[1]])
    }

    /// The 24-bit Virtual Network Identifier.
    #[inline]
    pub fn vni(&self) -> u32 {
        let d = &self.buffer.as_ref()[field::VNI];
        u32::from_be_bytes([0, d[0], d[1], d[2]])
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    /// The option bytes, uninterpreted.
    #[inline]
    pub fn options(&self) -> &'a [u8] {
        &self.buffer.as_ref()[field::OPTIONS(self.options_len())]
    }

    /// The payload (an Ethernet frame when the protocol is [`ETHERNET_BRIDGING`]).
    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Set the version field.
    ///
    /// # Panics
    /// If `value` does not fit 2 bits.
    #[inline]
    pub fn set_version(&mut self, value: u8) {
        assert!(value < 4, "Geneve version {value} does not fit 2 bits");
        let b = &mut self.buffer.as_mut()[field::VER_OPTLEN];
        *b = (*b & 0x3f) | (value << 6);
    }

    /// Set the options length, in bytes.
    ///
    /// # Panics
    /// If `value` is not a multiple of 4 or exceeds [`OPTIONS_MAX`].
    #[inline]
    pub fn set_options_len(&mut self, value: usize) {
        assert!(
            value % 4 == 0 && value <= OPTIONS_MAX,
            "Geneve options length {value} is not a multiple of 4 up to {OPTIONS_MAX}"
        );
        let b = &mut self.buffer.as_mut()[field::VER_OPTLEN];
        *b = (*b & 0xc0) | (value / 4) as u8;
    }

    /// Set or clear the O bit.
    #[inline]
    pub fn set_oam(&mut self, value: bool) {
        self.set_flag(FLAG_OAM, value);
    }

    /// Set or clear the C bit.
    #[inline]
    pub fn set_critical(&mut self, value: bool) {
        self.set_flag(FLAG_CRITICAL, value);
    }

    fn set_flag(&mut self, flag: u8, value: bool) {
        let b = &mut self.buffer.as_mut()[field::FLAGS];
        *b = if value { *b | flag } else { *b & !flag };
    }

    /// Zero both reserved fields ("MUST be zero on transmission").
    #[inline]
    pub fn clear_reserved(&mut self) {
        let data = self.buffer.as_mut();
        data[field::FLAGS] &= FLAG_OAM | FLAG_CRITICAL;
        data[field::RESERVED] = 0;
    }

    /// Set the Protocol Type.
    #[inline]
    pub fn set_protocol(&mut self, value: u16) {
        self.buffer.as_mut()[field::PROTOCOL].copy_from_slice(&value.to_be_bytes());
    }

    /// Set the VNI.
    ///
    /// # Panics
    /// If `value` does not fit 24 bits ([`VNI_MAX`]).
    #[inline]
    pub fn set_vni(&mut self, value: u32) {
        assert!(value <= VNI_MAX, "Geneve VNI {value} does not fit 24 bits");
        self.buffer.as_mut()[field::VNI].copy_from_slice(&value.to_be_bytes()[1..]);
    }

    /// The option bytes, for writing.
    #[inline]
    pub fn options_mut(&mut self) -> &mut [u8] {
        let range = field::OPTIONS(self.options_len());
        &mut self.buffer.as_mut()[range]
    }

    /// The payload, for writing.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = self.header_len();
        &mut self.buffer.as_mut()[start..]
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// A parsed Geneve header. The option bytes themselves stay in the packet
/// ([`Packet::options`], [`Packet::options_mut`]).
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub struct Repr {
    /// The Virtual Network Identifier, at most [`VNI_MAX`].
    pub vni: u32,
    /// The Protocol Type of the payload, usually [`ETHERNET_BRIDGING`].
    pub protocol: u16,
    /// Length of the options in bytes: a multiple of 4, at most [`OPTIONS_MAX`].
    pub options_len: usize,
    /// The O bit (control message).
    pub oam: bool,
    /// The C bit (critical options present).
    pub critical: bool,
}

impl Repr {
    /// Parse a Geneve header. "Packets received by a tunnel endpoint with an unknown version
    /// MUST be dropped": a version other than 0 is an error. Reserved bits are ignored.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Packet<&T>) -> Result<Repr> {
        packet.check_len()?;
        if packet.version() != VERSION {
            return Err(Error::Malformed("Geneve version not 0"));
        }
        Ok(Repr {
            vni: packet.vni(),
            protocol: packet.protocol(),
            options_len: packet.options_len(),
            oam: packet.oam(),
            critical: packet.critical(),
        })
    }

    /// Length of the header with its options: what [`Repr::emit`] lays out.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN + self.options_len
    }

    /// Same as [`Repr::buffer_len`].
    pub const fn header_len(&self) -> usize {
        self.buffer_len()
    }

    /// Write the fixed header (version 0, reserved bits zero). The option bytes and the
    /// payload are left for the caller to fill.
    ///
    /// # Panics
    /// If the VNI does not fit 24 bits or `options_len` is not a multiple of 4 up to
    /// [`OPTIONS_MAX`].
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]> + ?Sized>(&self, packet: &mut Packet<&mut T>) {
        packet.set_version(VERSION);
        packet.set_options_len(self.options_len);
        packet.clear_reserved();
        packet.set_oam(self.oam);
        packet.set_critical(self.critical);
        packet.set_protocol(self.protocol);
        packet.set_vni(self.vni);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // VNI 0x123456, Ethernet payload, no options: OVN-Kubernetes' plain encapsulation.
    #[rustfmt::skip]
    static PACKET_BYTES: [u8; 12] = [
        0x00, 0x00, 0x65, 0x58,
        0x12, 0x34, 0x56, 0x00,
        0xaa, 0xbb, 0xcc, 0xdd,
    ];

    // VNI 7, O and C set, one 8-byte option (class 0x0102, type 0x80 critical, 1 word of data).
    #[rustfmt::skip]
    static OPTIONS_BYTES: [u8; 18] = [
        0x02, 0xc0, 0x65, 0x58,
        0x00, 0x00, 0x07, 0x00,
        0x01, 0x02, 0x80, 0x01, 0xde, 0xad, 0xbe, 0xef,
        0xaa, 0xbb,
    ];

    fn plain_repr() -> Repr {
        Repr { vni: 0x12_3456, protocol: ETHERNET_BRIDGING, options_len: 0, oam: false, critical: false }
    }

    fn options_repr() -> Repr {
        Repr { vni: 7, protocol: ETHERNET_BRIDGING, options_len: 8, oam: true, critical: true }
    }

    #[test]
    fn deconstruct() {
        let packet = Packet::new_checked(&OPTIONS_BYTES[..]).unwrap();
        assert_eq!(packet.version(), 0);
        assert_eq!(packet.options_len(), 8);
        assert_eq!(packet.header_len(), 16);
        assert!(packet.oam());
        assert!(packet.critical());
        assert_eq!(packet.protocol(), 0x6558);
        assert_eq!(packet.vni(), 7);
        assert_eq!(packet.options(), &OPTIONS_BYTES[8..16]);
        assert_eq!(packet.payload(), &[0xaa, 0xbb]);
    }

    #[test]
    fn parse() {
        let packet = Packet::new_checked(&PACKET_BYTES[..]).unwrap();
        assert_eq!(Repr::parse(&packet), Ok(plain_repr()));
        assert_eq!(packet.payload(), &[0xaa, 0xbb, 0xcc, 0xdd]);
        let packet = Packet::new_checked(&OPTIONS_BYTES[..]).unwrap();
        assert_eq!(Repr::parse(&packet), Ok(options_repr()));
    }

    #[test]
    fn emit() {
        let repr = plain_repr();
        let mut bytes = vec![0xa5; repr.buffer_len() + 4];
        let mut packet = Packet::new_unchecked(&mut bytes[..]);
        repr.emit(&mut packet);
        packet.payload_mut().copy_from_slice(&[0xaa, 0xbb, 0xcc, 0xdd]);
        assert_eq!(bytes, PACKET_BYTES);

        let repr = options_repr();
        let mut bytes = vec![0xa5; repr.buffer_len() + 2];
        let mut packet = Packet::new_unchecked(&mut bytes[..]);
        repr.emit(&mut packet);
        packet.options_mut().copy_from_slice(&OPTIONS_BYTES[8..16]);
        packet.payload_mut().copy_from_slice(&[0xaa, 0xbb]);
        assert_eq!(bytes, OPTIONS_BYTES);
    }

    #[test]
    fn reserved_bits_ignored_on_receipt() {
        let bytes = [0x00, 0x3f, 0x08, 0x00, 0x00, 0x00, 0x01, 0xff];
        let repr = Repr::parse(&Packet::new_checked(&bytes[..]).unwrap()).unwrap();
        assert_eq!(repr, Repr { vni: 1, protocol: 0x0800, options_len: 0, oam: false, critical: false });
    }

    #[test]
    fn version_not_zero_rejected() {
        let mut bytes = PACKET_BYTES;
        bytes[0] = 0x40;
        let packet = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(Repr::parse(&packet), Err(Error::Malformed("Geneve version not 0")));
    }

    #[test]
    fn truncated() {
        assert_eq!(Packet::new_checked(&PACKET_BYTES[..7]), Err(Error::Truncated));
        // Opt Len says 8 bytes of options; only 7 are there.
        assert_eq!(Packet::new_checked(&OPTIONS_BYTES[..15]), Err(Error::Truncated));
        assert!(Packet::new_checked(&OPTIONS_BYTES[..16]).unwrap().payload().is_empty());
    }

    #[test]
    fn largest_options() {
        let repr = Repr { options_len: OPTIONS_MAX, ..plain_repr() };
        let mut bytes = vec![0; repr.buffer_len()];
        repr.emit(&mut Packet::new_unchecked(&mut bytes[..]));
        assert_eq!(bytes[0], 0x3f);
        assert_eq!(Repr::parse(&Packet::new_checked(&bytes[..]).unwrap()), Ok(repr));
    }

    #[test]
    #[should_panic(expected = "not a multiple of 4")]
    fn options_len_not_multiple_of_4_panics() {
        let repr = Repr { options_len: 6, ..plain_repr() };
        let mut bytes = [0u8; 16];
        repr.emit(&mut Packet::new_unchecked(&mut bytes[..]));
    }
}
