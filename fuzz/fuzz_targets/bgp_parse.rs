//! BGP-4 (RFC 4271): `Message::parse` over an arbitrary TCP byte stream must never panic. Input:
//! one byte of session (bit 0: 4-octet AS numbers, bit 1: ADD-PATH), then the stream. Messages
//! are taken from its front one after the other, as a speaker does: each one parsed consumes
//! between 19 and 4096 octets, and emitted again it parses to the same message; `Ok(None)` only
//! when the rest is shorter than a header or than the Length its header announces; an error is
//! a NOTIFICATION whose code is one RFC 4271 §4.5 defines (1, 2, 3 or 7), and it ends the stream.

#![no_main]

use cnisim::wire::bgp::{Message, Session, HEADER_LEN, MAX_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, mut stream)) = data.split_first() else { return };
    let s = Session { four_octet_as: flags & 1 != 0, add_path: flags & 2 != 0 };
    loop {
        match Message::parse(stream, s) {
            Ok(Some((msg, n))) => {
                assert!((HEADER_LEN..=MAX_LEN.min(stream.len())).contains(&n));
                assert_eq!(usize::from(u16::from_be_bytes([stream[16], stream[17]])), n);
                assert_eq!(stream[18], msg.kind().code());
                // Parsing drops what cnisim does not model (unknown optional attributes,
                // AS_CONFED segments) and can rebuild a longer AS path from AS4_PATH, so the
                // message may emit to other bytes, and rarely to more than 4096 of them.
                if msg.buffer_len(s) <= MAX_LEN {
                    let again = msg.to_bytes(s);
                    assert_eq!(Message::parse(&again, s), Ok(Some((msg, again.len()))));
                }
                stream = &stream[n..];
            }
            Ok(None) => {
                if stream.len() >= HEADER_LEN {
                    assert!(stream.len() < usize::from(u16::from_be_bytes([stream[16], stream[17]])));
                }
                return;
            }
            Err(notification) => {
                assert!(matches!(notification.code, 1 | 2 | 3 | 7), "{notification}");
                return;
            }
        }
    }
});
