//! VXLAN (RFC 7348): arbitrary bytes through `Packet::new_checked` and `Repr::parse` must never
//! panic; a header that parses, emitted back over a copy of the bytes, parses to the same
//! `Repr`, with the I flag set, the reserved bits zero and the payload untouched.

#![no_main]

use cnisim::wire::vxlan::{Packet, Repr, FLAG_I, HEADER_LEN, VNI_MAX};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(packet) = Packet::new_checked(data) else {
        assert!(data.len() < HEADER_LEN);
        return;
    };
    // Every accessor is safe after new_checked.
    let _ = (packet.flags(), packet.vni_valid(), packet.vni(), packet.payload());
    let Ok(repr) = Repr::parse(&packet) else {
        assert!(!packet.vni_valid());
        return;
    };
    assert!(repr.vni <= VNI_MAX);

    let mut bytes = data.to_vec();
    repr.emit(&mut Packet::new_unchecked(&mut bytes[..]));
    let emitted = Packet::new_checked(&bytes[..]).expect("same length");
    assert_eq!(Repr::parse(&emitted), Ok(repr));
    assert_eq!(emitted.flags(), FLAG_I);
    assert_eq!(&bytes[1..4], &[0, 0, 0]);
    assert_eq!(bytes[7], 0);
    assert_eq!(emitted.payload(), packet.payload());
    // Only the reserved bits and the flags may differ from the input.
    assert_eq!(&bytes[4..7], &data[4..7]);
});
