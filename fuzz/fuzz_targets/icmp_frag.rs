//! ICMP "fragmentation needed" (RFC 792, RFC 1191): `parse_frag_needed` on arbitrary bytes must
//! never panic, and what it accepts is a well-formed type 3 code 4 message. Input: two bytes of
//! next-hop MTU, then an "original" IPv4 packet: the messages `frag_needed` and
//! `frag_needed_linux` build for it must parse back to that MTU and the quote they carry.

#![no_main]

use cnisim::wire::icmp_frag::{frag_needed, frag_needed_linux, parse_frag_needed, LINUX_MAX_QUOTE};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The whole input as a received ICMP message.
    if let Some((_mtu, quote)) = parse_frag_needed(data) {
        assert!(data.len() >= 8 + 20);
        assert_eq!(data[0], 3);
        assert_eq!(data[1], 4);
        assert_eq!(quote, &data[8..]);
        assert_eq!(quote[0] >> 4, 4);
        assert!((quote[0] & 0x0f) as usize * 4 <= quote.len());
    }

    // Round trip: build the message for an arbitrary original, parse it back.
    if data.len() < 2 {
        return;
    }
    let mtu = u16::from_be_bytes([data[0], data[1]]);
    let orig = &data[2..];
    let ihl = orig.first().map_or(0, |b| (b & 0x0f) as usize * 4);
    // parse accepts a quote holding a whole IPv4 header: version 4, IHL at least 5 words.
    let quotes_header =
        |quote_len: usize| orig.first().is_some_and(|b| b >> 4 == 4) && ihl >= 20 && quote_len >= ihl;

    let rfc_len = (ihl + 8).min(orig.len());
    let msg = frag_needed(orig, mtu);
    assert_eq!(msg.len(), 8 + rfc_len);
    let parsed = parse_frag_needed(&msg);
    if quotes_header(rfc_len) {
        assert_eq!(parsed, Some((mtu, &orig[..rfc_len])));
    } else {
        assert_eq!(parsed, None);
    }

    let linux_len = orig.len().min(LINUX_MAX_QUOTE);
    let msg = frag_needed_linux(orig, mtu);
    assert_eq!(msg.len(), 8 + linux_len);
    let parsed = parse_frag_needed(&msg);
    if quotes_header(linux_len) {
        assert_eq!(parsed, Some((mtu, &orig[..linux_len])));
    } else {
        assert_eq!(parsed, None);
    }
});
