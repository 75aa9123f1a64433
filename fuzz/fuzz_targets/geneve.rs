//! Geneve (RFC 8926): arbitrary bytes through `Packet::new_checked` and `Repr::parse` must never
//! panic; a header that parses, emitted back over a copy of the bytes, parses to the same
//! `Repr`, with version 0, the reserved bits zero and the options and payload untouched.

#![no_main]

use cnisim::wire::geneve::{Packet, Repr, HEADER_LEN, OPTIONS_MAX, VERSION, VNI_MAX};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(packet) = Packet::new_checked(data) else {
        assert!(data.len() < HEADER_LEN || data.len() < HEADER_LEN + (data[0] & 0x3f) as usize * 4);
        return;
    };
    // Every accessor is safe after new_checked.
    let _ = (packet.version(), packet.oam(), packet.critical(), packet.protocol(), packet.vni());
    assert_eq!(packet.options().len(), packet.options_len());
    assert_eq!(packet.header_len() + packet.payload().len(), data.len());
    let Ok(repr) = Repr::parse(&packet) else {
        assert_ne!(packet.version(), VERSION);
        return;
    };
    assert!(repr.vni <= VNI_MAX);
    assert!(repr.options_len % 4 == 0 && repr.options_len <= OPTIONS_MAX);
    assert_eq!(repr.header_len(), packet.header_len());

    let mut bytes = data.to_vec();
    repr.emit(&mut Packet::new_unchecked(&mut bytes[..]));
    let emitted = Packet::new_checked(&bytes[..]).expect("same length and options length");
    assert_eq!(Repr::parse(&emitted), Ok(repr));
    assert_eq!(emitted.version(), VERSION);
    assert_eq!(bytes[1] & 0x3f, 0, "reserved bits of the flags byte");
    assert_eq!(bytes[7], 0, "reserved byte");
    assert_eq!(emitted.options(), packet.options());
    assert_eq!(emitted.payload(), packet.payload());
});
