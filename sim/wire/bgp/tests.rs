//! Literal bytes both ways, the NOTIFICATION of each malformed case, seeded round trips and
//! packing. Byte strings are written out whole, marker included.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;

const PLAIN: Session = Session { four_octet_as: true, add_path: false };
const ADD_PATH: Session = Session { four_octet_as: true, add_path: true };
const OLD: Session = Session { four_octet_as: false, add_path: false };

fn net(s: &str) -> Ipv4Net {
    s.parse().unwrap()
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

/// `bytes` parses to `msg` (consuming all of it) and `msg` emits `bytes`.
fn check(bytes: &[u8], msg: &Message, s: Session) {
    assert_eq!(Message::parse(bytes, s), Ok(Some((msg.clone(), bytes.len()))), "parse");
    assert_eq!(msg.buffer_len(s), bytes.len(), "buffer_len");
    assert_eq!(msg.to_bytes(s), bytes, "emit");
}

fn parse_err(bytes: &[u8], s: Session) -> (u8, u8, Vec<u8>) {
    match Message::parse(bytes, s) {
        Err(n) => (n.code, n.subcode, n.data),
        other => panic!("expected an error, got {other:?}"),
    }
}

/// The attributes Calico's BIRD puts on a pod block it originates to an iBGP peer
/// (`bgp_create_attrs`): ORIGIN IGP, empty AS_PATH, NEXT_HOP the source address, LOCAL_PREF
/// (`default_local_pref` 100).
fn calico_attrs() -> PathAttrs {
    PathAttrs {
        origin: Some(Origin::Igp),
        next_hop: Some(ip("10.192.0.2")),
        local_pref: Some(100),
        ..PathAttrs::default()
    }
}

#[rustfmt::skip]
static KEEPALIVE: [u8; 19] = [
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0x00, 0x13, 0x04,
];

#[test]
fn keepalive() {
    check(&KEEPALIVE, &Message::Keepalive, PLAIN);
    assert_eq!(Message::Keepalive.kind().name(), "KEEPALIVE");
}

#[rustfmt::skip]
static CEASE_ADMIN_SHUTDOWN: [u8; 21] = [
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0x00, 0x15, 0x03,
    0x06, 0x02,
];

// UPDATE Message Error / Missing Well-known Attribute, data the NEXT_HOP type code.
#[rustfmt::skip]
static MISSING_NEXT_HOP: [u8; 22] = [
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0x00, 0x16, 0x03,
    0x03, 0x03, 0x03,
];

#[test]
fn notification() {
    let n = Notification::cease(error::cease::ADMINISTRATIVE_SHUTDOWN);
    check(&CEASE_ADMIN_SHUTDOWN, &Message::Notification(n.clone()), PLAIN);
    assert_eq!(n.to_string(), "NOTIFICATION 6/2 (Administrative shutdown)");
    let n = Notification::update_error(error::update::MISSING_WELL_KNOWN_ATTRIBUTE, &[3]);
    check(&MISSING_NEXT_HOP, &Message::Notification(n.clone()), PLAIN);
    assert_eq!(n.to_string(), "NOTIFICATION 3/3 (Missing mandatory attribute) data 03");
    assert_eq!(Notification::hold_timer_expired(), Notification::new(4, 0, vec![]));
    assert_eq!(Notification::fsm_error(error::fsm::UNSPECIFIED), Notification::new(5, 0, vec![]));
    assert_eq!(
        Notification::cease(error::cease::CONNECTION_COLLISION_RESOLUTION).description(),
        "Connection collision resolution"
    );
    assert_eq!(Notification::new(2, 99, vec![]).description(), "OPEN message error");
}

// Open::bird_calico(64512, 240, 10.192.0.2, 120, false): one optional parameter (type 2, 32
// octets) with MP IPv4 unicast, route refresh, graceful restart (120 s, IPv4 unicast), 4-octet AS
// 64512, ADD-PATH IPv4 unicast both, enhanced route refresh, LLGR aware.
#[rustfmt::skip]
static CALICO_OPEN: [u8; 63] = [
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0x00, 0x3f, 0x01,
    0x04,                                   // version
    0xfc, 0x00,                             // My AS 64512
    0x00, 0xf0,                             // Hold Time 240
    0x0a, 0xc0, 0x00, 0x02,                 // BGP Identifier 10.192.0.2
    0x22,                                   // Opt Parm Len 34
    0x02, 0x20,                             // Capabilities, 32 octets
    0x01, 0x04, 0x00, 0x01, 0x00, 0x01,     // multiprotocol IPv4 unicast
    0x02, 0x00,                             // route refresh
    0x40, 0x06, 0x00, 0x78, 0x00, 0x01, 0x01, 0x00, // graceful restart 120 s, IPv4 unicast
    0x41, 0x04, 0x00, 0x00, 0xfc, 0x00,     // 4-octet AS 64512
    0x45, 0x04, 0x00, 0x01, 0x01, 0x03,     // ADD-PATH IPv4 unicast send/receive
    0x46, 0x00,                             // enhanced route refresh
    0x47, 0x00,                             // long-lived graceful restart, no families
];

#[test]
fn calico_open() {
    let open = Open::bird_calico(64512, 240, ip("10.192.0.2"), 120, false);
    check(&CALICO_OPEN, &Message::Open(open.clone()), PLAIN);
    // The OPEN does not depend on the session.
    check(&CALICO_OPEN, &Message::Open(open.clone()), OLD);
    assert_eq!(open.four_octet_as(), Some(64512));
    assert_eq!(open.add_path_mode(), Some(AddPathMode::Both));
    assert!(open.has_capability(cap_code::ENHANCED_ROUTE_REFRESH));
    let peer = Open::bird_calico(64512, 240, ip("10.192.0.3"), 120, false);
    assert_eq!(Session::sending(&open, &peer), ADD_PATH);
    assert_eq!(Session::receiving(&open, &peer), ADD_PATH);
}

#[test]
fn calico_open_restarting_sets_r_and_f() {
    let mut bytes = CALICO_OPEN;
    bytes[41] = 0x80; // R bit over the restart time 0x078
    bytes[46] = 0x80; // F bit of IPv4 unicast
    check(&bytes, &Message::Open(Open::bird_calico(64512, 240, ip("10.192.0.2"), 120, true)), PLAIN);
}

#[test]
fn open_with_a_4_octet_as_sends_as_trans() {
    let open = Open::bird_calico(4_200_000_000, 90, ip("192.0.2.1"), 120, false);
    let bytes = Message::Open(open.clone()).to_bytes(PLAIN);
    assert_eq!(&bytes[20..22], &[0x5b, 0xa0], "AS_TRANS 23456");
    assert_eq!(&bytes[47..53], &[0x41, 0x04, 0xfa, 0x56, 0xea, 0x00]);
    assert_eq!(Message::parse(&bytes, PLAIN), Ok(Some((Message::Open(open), 63))));
    assert_eq!(
        Open { my_as: 65535, ..Open::bird_calico(1, 90, ip("192.0.2.1"), 1, false) }.my_as_2octet(),
        65535
    );
}

#[test]
fn open_without_capabilities_and_with_several_parameters() {
    #[rustfmt::skip]
    let bare = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0x00, 0x1d, 0x01,
        0x04, 0xfd, 0xe8, 0x00, 0x00, 0xc0, 0x00, 0x02, 0x01, 0x00,
    ];
    let open = Open { version: 4, my_as: 65000, hold_time: 0, bgp_id: ip("192.0.2.1"), capabilities: vec![] };
    check(&bare, &Message::Open(open.clone()), PLAIN);

    // Two Capabilities parameters, one capability each (RFC 5492 §4 allows it), and an
    // unknown capability kept as it is (Cisco's pre-standard route refresh, 128).
    #[rustfmt::skip]
    let split = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0x00, 0x29, 0x01,
        0x04, 0xfd, 0xe8, 0x00, 0x00, 0xc0, 0x00, 0x02, 0x01, 0x0c,
        0x02, 0x06, 0x41, 0x04, 0x00, 0x00, 0xfd, 0xe8,
        0x02, 0x02, 0x80, 0x00,
    ];
    let expect = Open {
        capabilities: vec![Capability::FourOctetAs(65000), Capability::Unknown { code: 128, data: vec![] }],
        ..open
    };
    assert_eq!(Message::parse(&split, PLAIN), Ok(Some((Message::Open(expect.clone()), split.len()))));
    // Emitted, both go in one parameter.
    let joined = Message::Open(expect).to_bytes(PLAIN);
    assert_eq!(&joined[28..], &[0x0a, 0x02, 0x08, 0x41, 0x04, 0x00, 0x00, 0xfd, 0xe8, 0x80, 0x00]);
}

#[test]
fn open_add_path_with_a_bad_mode_is_an_unknown_capability() {
    let mut bytes = CALICO_OPEN;
    bytes[58] = 0x04;
    let Ok(Some((Message::Open(open), _))) = Message::parse(&bytes, PLAIN) else { panic!() };
    assert_eq!(open.capabilities[4], Capability::Unknown { code: 69, data: vec![0, 1, 1, 4] });
    assert_eq!(open.add_path_mode(), None);
    assert_eq!(Message::Open(open).to_bytes(PLAIN), bytes);
}

// Calico's UPDATE for two pod blocks, without ADD-PATH.
#[rustfmt::skip]
static TWO_26S: [u8; 54] = [
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0x00, 0x36, 0x02,
    0x00, 0x00,                                     // no withdrawn routes
    0x00, 0x15,                                     // 21 octets of attributes
    0x40, 0x01, 0x01, 0x00,                         // ORIGIN IGP
    0x40, 0x02, 0x00,                               // AS_PATH empty
    0x40, 0x03, 0x04, 0x0a, 0xc0, 0x00, 0x02,       // NEXT_HOP 10.192.0.2
    0x40, 0x05, 0x04, 0x00, 0x00, 0x00, 0x64,       // LOCAL_PREF 100
    0x1a, 0x0a, 0xf4, 0x01, 0x00,                   // 10.244.1.0/26
    0x1a, 0x0a, 0xf4, 0x01, 0x40,                   // 10.244.1.64/26
];

// The same with ADD-PATH: Path Identifier 1 before each prefix.
#[rustfmt::skip]
static TWO_26S_ADD_PATH: [u8; 62] = [
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0x00, 0x3e, 0x02,
    0x00, 0x00,
    0x00, 0x15,
    0x40, 0x01, 0x01, 0x00,
    0x40, 0x02, 0x00,
    0x40, 0x03, 0x04, 0x0a, 0xc0, 0x00, 0x02,
    0x40, 0x05, 0x04, 0x00, 0x00, 0x00, 0x64,
    0x00, 0x00, 0x00, 0x01, 0x1a, 0x0a, 0xf4, 0x01, 0x00,
    0x00, 0x00, 0x00, 0x01, 0x1a, 0x0a, 0xf4, 0x01, 0x40,
];

#[test]
fn update_two_26s() {
    let nlri = vec![Prefix::new(net("10.244.1.0/26")), Prefix::new(net("10.244.1.64/26"))];
    let update = Update { withdrawn: vec![], attrs: calico_attrs(), nlri };
    check(&TWO_26S, &Message::Update(update.clone()), PLAIN);
    assert_eq!(update.attrs.wire_len(PLAIN), 21);

    let nlri =
        vec![Prefix::with_path_id(1, net("10.244.1.0/26")), Prefix::with_path_id(1, net("10.244.1.64/26"))];
    check(&TWO_26S_ADD_PATH, &Message::Update(Update { nlri, ..update }), ADD_PATH);
}

// A route reflector's reflection of node 10.192.0.3's block: ORIGINATOR_ID and CLUSTER_LIST,
// optional non-transitive (0x80).
#[rustfmt::skip]
static REFLECTED: [u8; 63] = [
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0x00, 0x3f, 0x02,
    0x00, 0x00,
    0x00, 0x23,
    0x40, 0x01, 0x01, 0x00,
    0x40, 0x02, 0x00,
    0x40, 0x03, 0x04, 0x0a, 0xc0, 0x00, 0x03,
    0x40, 0x05, 0x04, 0x00, 0x00, 0x00, 0x64,
    0x80, 0x09, 0x04, 0x0a, 0xc0, 0x00, 0x03,       // ORIGINATOR_ID 10.192.0.3
    0x80, 0x0a, 0x04, 0x0a, 0xc0, 0x00, 0x01,       // CLUSTER_LIST 10.192.0.1
    0x1a, 0x0a, 0xf4, 0x02, 0x00,                   // 10.244.2.0/26
];

#[test]
fn update_with_originator_id_and_cluster_list() {
    let attrs = PathAttrs {
        next_hop: Some(ip("10.192.0.3")),
        originator_id: Some(ip("10.192.0.3")),
        cluster_list: vec![ip("10.192.0.1")],
        ..calico_attrs()
    };
    let update = Update { withdrawn: vec![], attrs, nlri: vec![Prefix::new(net("10.244.2.0/26"))] };
    check(&REFLECTED, &Message::Update(update), PLAIN);
}

// An eBGP path through 64512 and 4200000000 with a MED, between two 4-octet speakers.
#[rustfmt::skip]
static AS_PATH_4_OCTET: [u8; 59] = [
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0x00, 0x3b, 0x02,
    0x00, 0x00,
    0x00, 0x1f,
    0x40, 0x01, 0x01, 0x00,
    0x40, 0x02, 0x0a, 0x02, 0x02, 0x00, 0x00, 0xfc, 0x00, 0xfa, 0x56, 0xea, 0x00,
    0x40, 0x03, 0x04, 0xc0, 0x00, 0x02, 0x01,
    0x80, 0x04, 0x04, 0x00, 0x00, 0x00, 0x32,
    0x1a, 0x0a, 0xf4, 0x01, 0x00,
];

// The same to a 2-octet speaker: AS_TRANS in AS_PATH, the real path in AS4_PATH (0xc0, 17)
// right after it, where BIRD's bgp_encode_attrs writes it.
#[rustfmt::skip]
static AS_PATH_2_OCTET: [u8; 68] = [
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0x00, 0x44, 0x02,
    0x00, 0x00,
    0x00, 0x28,
    0x40, 0x01, 0x01, 0x00,
    0x40, 0x02, 0x06, 0x02, 0x02, 0xfc, 0x00, 0x5b, 0xa0,
    0xc0, 0x11, 0x0a, 0x02, 0x02, 0x00, 0x00, 0xfc, 0x00, 0xfa, 0x56, 0xea, 0x00,
    0x40, 0x03, 0x04, 0xc0, 0x00, 0x02, 0x01,
    0x80, 0x04, 0x04, 0x00, 0x00, 0x00, 0x32,
    0x1a, 0x0a, 0xf4, 0x01, 0x00,
];

#[test]
fn as_path_with_4_octet_numbers_and_as4_path() {
    let attrs = PathAttrs {
        origin: Some(Origin::Igp),
        as_path: vec![AsSegment::Sequence(vec![64512, 4_200_000_000])],
        next_hop: Some(ip("192.0.2.1")),
        med: Some(50),
        ..PathAttrs::default()
    };
    let update =
        Message::Update(Update { withdrawn: vec![], attrs, nlri: vec![Prefix::new(net("10.244.1.0/26"))] });
    check(&AS_PATH_4_OCTET, &update, PLAIN);
    check(&AS_PATH_2_OCTET, &update, OLD);
}

#[test]
fn as4_path_merged_after_an_old_speaker_prepends() {
    // An OLD speaker (AS 65001) prepended itself to AS_PATH but not to AS4_PATH.
    #[rustfmt::skip]
    let bytes = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0x00, 0x2f, 0x02,
        0x00, 0x00,
        0x00, 0x18,
        0x40, 0x02, 0x08, 0x02, 0x03, 0xfd, 0xe9, 0xfc, 0x00, 0x5b, 0xa0,
        0xc0, 0x11, 0x0a, 0x02, 0x02, 0x00, 0x00, 0xfc, 0x00, 0xfa, 0x56, 0xea, 0x00,
    ];
    let Ok(Some((Message::Update(u), 47))) = Message::parse(&bytes, OLD) else { panic!() };
    assert_eq!(
        u.attrs.as_path,
        vec![AsSegment::Sequence(vec![65001]), AsSegment::Sequence(vec![64512, 4_200_000_000])]
    );
    // Read as a 4-octet session, the segment of 3 AS numbers would need 12 octets.
    assert_eq!(parse_err(&bytes, PLAIN), (3, 11, bytes[23..34].to_vec()));
}

#[rustfmt::skip]
static END_OF_RIB: [u8; 23] = [
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0x00, 0x17, 0x02,
    0x00, 0x00, 0x00, 0x00,
];

#[test]
fn end_of_rib() {
    check(&END_OF_RIB, &Message::Update(Update::end_of_rib()), PLAIN);
    check(&END_OF_RIB, &Message::Update(Update::end_of_rib()), ADD_PATH);
    assert!(Update::end_of_rib().is_end_of_rib());
    let Ok(Some((Message::Update(u), _))) = Message::parse(&TWO_26S, PLAIN) else { panic!() };
    assert!(!u.is_end_of_rib());
}

#[rustfmt::skip]
static WITHDRAW_TWO_26S: [u8; 33] = [
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0x00, 0x21, 0x02,
    0x00, 0x0a,
    0x1a, 0x0a, 0xf4, 0x01, 0x00,
    0x1a, 0x0a, 0xf4, 0x01, 0x40,
    0x00, 0x00,
];

#[rustfmt::skip]
static WITHDRAW_TWO_26S_ADD_PATH: [u8; 41] = [
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0x00, 0x29, 0x02,
    0x00, 0x12,
    0x00, 0x00, 0x00, 0x07, 0x1a, 0x0a, 0xf4, 0x01, 0x00,
    0x00, 0x00, 0x00, 0x07, 0x1a, 0x0a, 0xf4, 0x01, 0x40,
    0x00, 0x00,
];

#[test]
fn withdrawals() {
    let withdrawn = vec![Prefix::new(net("10.244.1.0/26")), Prefix::new(net("10.244.1.64/26"))];
    check(&WITHDRAW_TWO_26S, &Message::Update(Update { withdrawn, ..Update::default() }), PLAIN);
    let withdrawn =
        vec![Prefix::with_path_id(7, net("10.244.1.0/26")), Prefix::with_path_id(7, net("10.244.1.64/26"))];
    check(&WITHDRAW_TWO_26S_ADD_PATH, &Message::Update(Update { withdrawn, ..Update::default() }), ADD_PATH);
}

#[test]
fn prefixes_of_every_length() {
    // /0 is one octet, /32 five; host bits past the length are cleared on receipt.
    #[rustfmt::skip]
    let bytes = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0x00, 0x24, 0x02,
        0x00, 0x0d,
        0x00,
        0x20, 0x0a, 0x00, 0x00, 0x01,
        0x09, 0x0a, 0xff,
        0x11, 0x0a, 0xf4, 0x80,
        0x00, 0x00,
    ];
    let withdrawn = vec![
        Prefix::new(net("0.0.0.0/0")),
        Prefix::new(net("10.0.0.1/32")),
        Prefix::new(net("10.128.0.0/9")),
        Prefix::new(net("10.244.128.0/17")),
    ];
    let msg = Message::Update(Update { withdrawn, ..Update::default() });
    assert_eq!(Message::parse(&bytes, PLAIN), Ok(Some((msg.clone(), bytes.len()))));
    let mut canonical = bytes;
    canonical[29] = 0x80;
    assert_eq!(msg.to_bytes(PLAIN), canonical);
}

#[rustfmt::skip]
static ROUTE_REFRESH: [u8; 23] = [
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0x00, 0x17, 0x05,
    0x00, 0x01, 0x00, 0x01,
];

#[test]
fn route_refresh() {
    check(&ROUTE_REFRESH, &Message::RouteRefresh(RouteRefresh::ipv4_unicast()), PLAIN);
    assert_eq!(Kind::RouteRefresh.name(), "ROUTE-REFRESH");
    // Longer than 23 octets: ROUTE-REFRESH Message Error / Invalid Message Length, data the
    // whole message (RFC 7313 §5).
    let mut long = ROUTE_REFRESH.to_vec();
    long[17] = 24;
    long.push(0);
    assert_eq!(parse_err(&long, PLAIN), (7, 1, long.clone()));
}

#[test]
fn extended_length_only_over_255_octets() {
    // 63 cluster ids are 252 octets: a 1-octet length; 64 are 256: flag 0x10, 2-octet length.
    for (n, flags, header) in [(63, 0x80, 3), (64, 0x90, 4)] {
        let attrs = PathAttrs { cluster_list: vec![ip("10.192.0.1"); n], ..PathAttrs::default() };
        let msg = Message::Update(Update { attrs, ..Update::default() });
        let bytes = msg.to_bytes(PLAIN);
        // After the 23 octets of header and lengths, the empty AS_PATH (3), then CLUSTER_LIST.
        assert_eq!(bytes[26], flags);
        assert_eq!(bytes[27], 10);
        assert_eq!(bytes.len(), 23 + 3 + header + 4 * n);
        assert_eq!(Message::parse(&bytes, PLAIN), Ok(Some((msg, bytes.len()))));
    }
    // A receiver takes the Extended Length flag on a short value too.
    let mut bytes = TWO_26S.to_vec();
    bytes.splice(23..27, [0x50, 0x01, 0x00, 0x01, 0x00]);
    bytes[17] += 1;
    bytes[22] += 1;
    let Ok(Some((Message::Update(u), 55))) = Message::parse(&bytes, PLAIN) else { panic!() };
    assert_eq!(u.attrs, calico_attrs());
}

#[test]
fn skipped_attributes() {
    // ATOMIC_AGGREGATE (well-known, empty), COMMUNITIES (optional transitive) and an unknown
    // optional attribute are checked and skipped; an AS_CONFED_SEQUENCE segment is dropped.
    #[rustfmt::skip]
    let bytes = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0x00, 0x4c, 0x02,
        0x00, 0x00,
        0x00, 0x30,
        0x40, 0x01, 0x01, 0x00,
        0x40, 0x02, 0x0c, 0x03, 0x01, 0x00, 0x00, 0xfd, 0xe9, 0x02, 0x01, 0x00, 0x00, 0xfc, 0x00,
        0x40, 0x03, 0x04, 0x0a, 0xc0, 0x00, 0x02,
        0x40, 0x06, 0x00,
        0xc0, 0x08, 0x04, 0xfc, 0x00, 0x00, 0x01,
        0xe0, 0xf0, 0x02, 0xab, 0xcd,
        0x40, 0x05, 0x04, 0x00, 0x00, 0x00, 0x64,
        0x1a, 0x0a, 0xf4, 0x01, 0x00,
    ];
    let Ok(Some((Message::Update(u), 76))) = Message::parse(&bytes, PLAIN) else { panic!() };
    assert_eq!(u.attrs, PathAttrs { as_path: vec![AsSegment::Sequence(vec![64512])], ..calico_attrs() });
}

#[test]
fn header_errors() {
    let mut bad_marker = KEEPALIVE;
    bad_marker[3] = 0xfe;
    assert_eq!(parse_err(&bad_marker, PLAIN), (1, 1, vec![]));

    let with_length = |base: &[u8], len: u16| {
        let mut b = base.to_vec();
        b[16..18].copy_from_slice(&len.to_be_bytes());
        b
    };
    // Below 19, above 4096: the header alone is enough to tell.
    assert_eq!(parse_err(&with_length(&KEEPALIVE, 18), PLAIN), (1, 2, vec![0x00, 0x12]));
    assert_eq!(parse_err(&with_length(&KEEPALIVE, 4097), PLAIN), (1, 2, vec![0x10, 0x01]));
    // Below the minimum of the type, or a KEEPALIVE that is not 19 octets.
    assert_eq!(parse_err(&with_length(&KEEPALIVE, 20), PLAIN), (1, 2, vec![0x00, 0x14]));
    assert_eq!(parse_err(&with_length(&CALICO_OPEN, 28), PLAIN), (1, 2, vec![0x00, 0x1c]));
    assert_eq!(parse_err(&with_length(&END_OF_RIB, 22), PLAIN), (1, 2, vec![0x00, 0x16]));
    assert_eq!(parse_err(&with_length(&CEASE_ADMIN_SHUTDOWN, 20), PLAIN), (1, 2, vec![0x00, 0x14]));
    assert_eq!(parse_err(&with_length(&ROUTE_REFRESH, 22), PLAIN), (1, 2, vec![0x00, 0x16]));

    for t in [0, 6, 0xff] {
        let mut bad_type = KEEPALIVE;
        bad_type[18] = t;
        assert_eq!(parse_err(&bad_type, PLAIN), (1, 3, vec![t]));
    }
}

#[test]
fn open_errors() {
    for v in [3, 5] {
        let mut b = CALICO_OPEN;
        b[19] = v;
        assert_eq!(parse_err(&b, PLAIN), (2, 1, vec![0x00, 0x04]), "version {v}");
    }
    for hold in [1u16, 2] {
        let mut b = CALICO_OPEN;
        b[22..24].copy_from_slice(&hold.to_be_bytes());
        assert_eq!(parse_err(&b, PLAIN), (2, 6, vec![0x00, hold as u8]), "hold time {hold}");
    }
    for hold in [0u16, 3] {
        let mut b = CALICO_OPEN;
        b[22..24].copy_from_slice(&hold.to_be_bytes());
        assert!(Message::parse(&b, PLAIN).is_ok(), "hold time {hold}");
    }
    let mut zero_id = CALICO_OPEN;
    zero_id[24..28].fill(0);
    assert_eq!(parse_err(&zero_id, PLAIN), (2, 3, vec![0, 0, 0, 0]));

    // Opt Parm Len one more than the message holds.
    let mut opt_len = CALICO_OPEN;
    opt_len[28] = 0x23;
    assert_eq!(parse_err(&opt_len, PLAIN), (1, 2, vec![0x00, 0x3f]));
    // A parameter of type 1 (the obsolete Authentication Information).
    let mut param = CALICO_OPEN;
    param[29] = 1;
    let mut expect = CALICO_OPEN[29..].to_vec();
    expect[0] = 1;
    assert_eq!(parse_err(&param, PLAIN), (2, 4, expect));
    // The Capabilities parameter says 33 octets, 32 are there.
    let mut overrun = CALICO_OPEN;
    overrun[30] = 0x21;
    assert_eq!(parse_err(&overrun, PLAIN), (2, 0, vec![]));
    // Route refresh with one octet of value (taken from the next capability's code).
    let mut rr = CALICO_OPEN;
    rr[38] = 0x01;
    assert_eq!(parse_err(&rr, PLAIN), (2, 0, vec![]));
    // A 4-octet AS capability of 3 octets.
    let mut as4 = CALICO_OPEN;
    as4[48] = 0x03;
    assert_eq!(parse_err(&as4, PLAIN), (2, 0, vec![]));
}

/// TWO_26S with the attribute field replaced (lengths fixed up).
fn with_attrs(attrs: &[u8]) -> Vec<u8> {
    let mut b = TWO_26S[..21].to_vec();
    b.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    b.extend_from_slice(attrs);
    b.extend_from_slice(&TWO_26S[44..]);
    let len = b.len() as u16;
    b[16..18].copy_from_slice(&len.to_be_bytes());
    b
}

#[test]
fn update_errors() {
    const ORIGIN: [u8; 4] = [0x40, 0x01, 0x01, 0x00];
    const AS_PATH: [u8; 3] = [0x40, 0x02, 0x00];
    const NEXT_HOP: [u8; 7] = [0x40, 0x03, 0x04, 0x0a, 0xc0, 0x00, 0x02];
    let cat = |parts: &[&[u8]]| parts.concat();
    assert_eq!(with_attrs(&TWO_26S[23..44]), TWO_26S);

    // Truncated attributes: the last one's length runs past the field, or its header does.
    assert_eq!(
        parse_err(&with_attrs(&cat(&[&ORIGIN, &AS_PATH, &[0x40, 0x03, 0x04, 0x0a, 0xc0]])), PLAIN),
        (3, 1, vec![])
    );
    assert_eq!(parse_err(&with_attrs(&cat(&[&ORIGIN, &AS_PATH, &NEXT_HOP, &[0x40]])), PLAIN), (3, 1, vec![]));
    assert_eq!(
        parse_err(&with_attrs(&cat(&[&ORIGIN, &AS_PATH, &NEXT_HOP, &[0x50, 0x05, 0x00]])), PLAIN),
        (3, 1, vec![])
    );
    // The same attribute twice.
    assert_eq!(parse_err(&with_attrs(&cat(&[&ORIGIN, &ORIGIN, &AS_PATH, &NEXT_HOP])), PLAIN), (3, 1, vec![]));
    // ORIGIN of 2 octets: Attribute Length Error with the attribute.
    let long_origin = [0x40, 0x01, 0x02, 0x00, 0x00];
    assert_eq!(
        parse_err(&with_attrs(&cat(&[&long_origin, &AS_PATH, &NEXT_HOP])), PLAIN),
        (3, 5, long_origin.to_vec())
    );
    // ORIGIN marked optional: Attribute Flags Error.
    let optional_origin = [0xc0, 0x01, 0x01, 0x00];
    assert_eq!(
        parse_err(&with_attrs(&cat(&[&optional_origin, &AS_PATH, &NEXT_HOP])), PLAIN),
        (3, 4, optional_origin.to_vec())
    );
    // MED marked transitive.
    let med = [0xc0, 0x04, 0x04, 0x00, 0x00, 0x00, 0x01];
    assert_eq!(
        parse_err(&with_attrs(&cat(&[&ORIGIN, &AS_PATH, &NEXT_HOP, &med])), PLAIN),
        (3, 4, med.to_vec())
    );
    // ORIGIN 3.
    let origin3 = [0x40, 0x01, 0x01, 0x03];
    assert_eq!(
        parse_err(&with_attrs(&cat(&[&origin3, &AS_PATH, &NEXT_HOP])), PLAIN),
        (3, 6, origin3.to_vec())
    );
    // An unknown attribute without the Optional bit.
    let unknown = [0x40, 0xf0, 0x01, 0x07];
    assert_eq!(
        parse_err(&with_attrs(&cat(&[&ORIGIN, &AS_PATH, &NEXT_HOP, &unknown])), PLAIN),
        (3, 2, unknown.to_vec())
    );
    // Mandatory ones missing with NLRI present: the first missing type code is the data.
    assert_eq!(parse_err(&with_attrs(&cat(&[&ORIGIN, &AS_PATH])), PLAIN), (3, 3, vec![3]));
    assert_eq!(parse_err(&with_attrs(&cat(&[&ORIGIN, &NEXT_HOP])), PLAIN), (3, 3, vec![2]));
    assert_eq!(parse_err(&with_attrs(&[]), PLAIN), (3, 3, vec![1]));
    // A NEXT_HOP that is not a host address.
    for bad in [[0, 0, 0, 0], [224, 0, 0, 5], [255, 255, 255, 255]] {
        let nh = [&[0x40, 0x03, 0x04][..], &bad].concat();
        assert_eq!(parse_err(&with_attrs(&cat(&[&ORIGIN, &AS_PATH, &nh])), PLAIN), (3, 8, nh.clone()));
    }
    // AS_PATH: a segment of type 5, a segment longer than the attribute.
    for path in [
        [0x40, 0x02, 0x06, 0x05, 0x01, 0x00, 0x00, 0xfc, 0x00],
        [0x40, 0x02, 0x06, 0x02, 0x02, 0x00, 0x00, 0xfc, 0x00],
    ] {
        assert_eq!(parse_err(&with_attrs(&cat(&[&ORIGIN, &path, &NEXT_HOP])), PLAIN), (3, 11, path.to_vec()));
    }
    // CLUSTER_LIST of 6 octets.
    let cl = [0x80, 0x0a, 0x06, 0x0a, 0xc0, 0x00, 0x01, 0x0a, 0xc0];
    assert_eq!(
        parse_err(&with_attrs(&cat(&[&ORIGIN, &AS_PATH, &NEXT_HOP, &cl])), PLAIN),
        (3, 5, cl.to_vec())
    );

    // Withdrawn Routes Length past the message; Total Path Attribute Length past it.
    let mut wd = END_OF_RIB;
    wd[20] = 1;
    assert_eq!(parse_err(&wd, PLAIN), (3, 1, vec![]));
    let mut al = END_OF_RIB;
    al[22] = 1;
    assert_eq!(parse_err(&al, PLAIN), (3, 1, vec![]));
    // A prefix of 33 bits; a /26 with 2 of its 4 octets; an ADD-PATH prefix cut in its Path
    // Identifier.
    let mut b = TWO_26S;
    b[49] = 33;
    assert_eq!(parse_err(&b, PLAIN), (3, 10, vec![]));
    let mut short = TWO_26S[..51].to_vec();
    short[17] = 51;
    assert_eq!(parse_err(&short, PLAIN), (3, 10, vec![]));
    let mut short = TWO_26S_ADD_PATH[..56].to_vec();
    short[17] = 56;
    assert_eq!(parse_err(&short, ADD_PATH), (3, 10, vec![]));
    // The ADD-PATH UPDATE read without ADD-PATH: Path Identifier octets read as Lengths
    // (/0, /0, /0, /1, /10, ...) until the second prefix's 0x40, a Length of 64 bits.
    assert_eq!(parse_err(&TWO_26S_ADD_PATH, PLAIN), (3, 10, vec![]));
}

#[test]
fn incomplete_buffers_need_more_bytes() {
    for msg in [&CALICO_OPEN[..], &TWO_26S, &KEEPALIVE, &END_OF_RIB, &MISSING_NEXT_HOP, &ROUTE_REFRESH] {
        for n in 0..msg.len() {
            assert_eq!(Message::parse(&msg[..n], PLAIN), Ok(None), "{n} of {} octets", msg.len());
        }
    }
    // A stream of three messages, one at a time.
    let stream = [&CALICO_OPEN[..], &KEEPALIVE, &TWO_26S].concat();
    let mut at = 0;
    let mut kinds = Vec::new();
    while let Some((msg, n)) = Message::parse(&stream[at..], PLAIN).unwrap() {
        kinds.push(msg.kind().name());
        at += n;
    }
    assert_eq!((kinds, at), (vec!["OPEN", "KEEPALIVE", "UPDATE"], stream.len()));
    // The header is judged before the body arrives.
    let mut huge = CALICO_OPEN[..19].to_vec();
    huge[16] = 0x20;
    assert_eq!(parse_err(&huge, PLAIN).0, 1);
}

#[test]
fn packet_accessors() {
    let p = Packet::new_checked(&TWO_26S[..]).unwrap();
    assert!(p.marker_valid());
    assert_eq!((p.length(), p.msg_type(), p.body().len()), (54, 2, 35));
    assert_eq!(Packet::new_checked(&TWO_26S[..53]), Err(Error::Truncated));
    assert_eq!(Packet::new_checked(&TWO_26S[..18]), Err(Error::Truncated));
    let mut short = KEEPALIVE;
    short[17] = 18;
    assert_eq!(Packet::new_checked(&short[..]), Err(Error::Malformed("BGP Length below 19")));
    // Extra bytes after the message are not its body.
    let two = [&KEEPALIVE[..], &KEEPALIVE].concat();
    assert!(Packet::new_checked(&two[..]).unwrap().body().is_empty());
}

fn random_prefix(rng: &mut ChaCha8Rng, s: Session) -> Prefix {
    let bits = rng.random_range(0..=32u8);
    let mask = if bits == 0 { 0 } else { u32::MAX << (32 - bits) };
    let net = Ipv4Net::new(Ipv4Addr::from(rng.random::<u32>() & mask), bits).unwrap();
    Prefix { path_id: s.add_path.then(|| rng.random()), net }
}

fn random_asn(rng: &mut ChaCha8Rng) -> u32 {
    match rng.random_range(0..3) {
        0 => rng.random_range(0..=0xffff),
        1 => AS_TRANS,
        _ => rng.random(),
    }
}

fn random_host(rng: &mut ChaCha8Rng) -> Ipv4Addr {
    loop {
        let a = Ipv4Addr::from(rng.random::<u32>());
        if valid_next_hop(a) {
            return a;
        }
    }
}

fn random_attrs(rng: &mut ChaCha8Rng, with_nlri: bool) -> PathAttrs {
    let some = |rng: &mut ChaCha8Rng| with_nlri || rng.random_bool(0.5);
    let as_path = (0..rng.random_range(0..4))
        .map(|_| {
            let asns = (0..rng.random_range(0..6)).map(|_| random_asn(rng)).collect();
            if rng.random_bool(0.3) {
                AsSegment::Set(asns)
            } else {
                AsSegment::Sequence(asns)
            }
        })
        .collect();
    PathAttrs {
        origin: some(rng).then(|| [Origin::Igp, Origin::Egp, Origin::Incomplete][rng.random_range(0..3)]),
        as_path,
        next_hop: some(rng).then(|| random_host(rng)),
        med: rng.random_bool(0.5).then(|| rng.random()),
        local_pref: rng.random_bool(0.5).then(|| rng.random()),
        originator_id: rng.random_bool(0.3).then(|| Ipv4Addr::from(rng.random::<u32>())),
        cluster_list: (0..rng.random_range(0..4)).map(|_| Ipv4Addr::from(rng.random::<u32>())).collect(),
    }
}

fn random_capability(rng: &mut ChaCha8Rng) -> Capability {
    let family = |rng: &mut ChaCha8Rng| (rng.random::<u16>(), rng.random::<u8>());
    let families = |rng: &mut ChaCha8Rng| rng.random_range(0..4);
    match rng.random_range(0..8) {
        0 => {
            let (afi, safi) = family(rng);
            Capability::Multiprotocol { afi, safi }
        }
        1 => Capability::RouteRefresh,
        2 => Capability::GracefulRestart {
            restarting: rng.random(),
            restart_time: rng.random_range(0..=0xfff),
            families: (0..families(rng))
                .map(|_| {
                    let (afi, safi) = family(rng);
                    (afi, safi, rng.random())
                })
                .collect(),
        },
        3 => Capability::AddPath(
            (0..families(rng))
                .map(|_| {
                    let (afi, safi) = family(rng);
                    (
                        afi,
                        safi,
                        [AddPathMode::Receive, AddPathMode::Send, AddPathMode::Both][rng.random_range(0..3)],
                    )
                })
                .collect(),
        ),
        4 => Capability::EnhancedRouteRefresh,
        5 => Capability::LongLivedGracefulRestart(
            (0..families(rng))
                .map(|_| {
                    let (afi, safi) = family(rng);
                    (afi, safi, rng.random(), rng.random_range(0..=0xff_ffff))
                })
                .collect(),
        ),
        _ => {
            let code = loop {
                let c: u8 = rng.random();
                if !matches!(c, 1 | 2 | 64 | 65 | 69 | 70 | 71) {
                    break c;
                }
            };
            Capability::Unknown { code, data: (0..rng.random_range(0..12)).map(|_| rng.random()).collect() }
        }
    }
}

fn random_message(rng: &mut ChaCha8Rng, s: Session) -> Message {
    match rng.random_range(0..5) {
        0 => {
            let four_octet = rng.random_bool(0.7);
            let my_as = if four_octet { random_asn(rng) } else { rng.random_range(0..=0xffff) };
            let mut capabilities: Vec<_> =
                (0..rng.random_range(0..6)).map(|_| random_capability(rng)).collect();
            if four_octet {
                capabilities.insert(rng.random_range(0..=capabilities.len()), Capability::FourOctetAs(my_as));
            }
            let hold_time = loop {
                let h: u16 = rng.random();
                if h != 1 && h != 2 {
                    break h;
                }
            };
            let bgp_id = Ipv4Addr::from(rng.random_range(1..=u32::MAX));
            Message::Open(Open { version: VERSION, my_as, hold_time, bgp_id, capabilities })
        }
        1 => {
            let nlri: Vec<_> = (0..rng.random_range(0..6)).map(|_| random_prefix(rng, s)).collect();
            let withdrawn = (0..rng.random_range(0..6)).map(|_| random_prefix(rng, s)).collect();
            Message::Update(Update { withdrawn, attrs: random_attrs(rng, !nlri.is_empty()), nlri })
        }
        2 => Message::Notification(Notification::new(
            rng.random(),
            rng.random(),
            (0..rng.random_range(0..40)).map(|_| rng.random()).collect(),
        )),
        3 => Message::RouteRefresh(RouteRefresh {
            afi: rng.random(),
            subtype: rng.random(),
            safi: rng.random(),
        }),
        _ => Message::Keepalive,
    }
}

fn random_session(rng: &mut ChaCha8Rng) -> Session {
    Session { four_octet_as: rng.random(), add_path: rng.random() }
}

#[test]
fn seeded_round_trips() {
    let mut rng = ChaCha8Rng::seed_from_u64(179);
    for i in 0..5000 {
        let s = random_session(&mut rng);
        let msg = random_message(&mut rng, s);
        let bytes = msg.to_bytes(s);
        assert_eq!(Message::parse(&bytes, s), Ok(Some((msg.clone(), bytes.len()))), "#{i} {s:?} {msg:?}");
    }
}

/// Whatever `parse` accepts emits again and parses to the same message.
fn parse_is_stable(bytes: &[u8], s: Session) {
    if let Ok(Some((msg, n))) = Message::parse(bytes, s) {
        assert!((HEADER_LEN..=bytes.len()).contains(&n));
        if msg.buffer_len(s) <= MAX_LEN {
            let again = msg.to_bytes(s);
            assert_eq!(Message::parse(&again, s), Ok(Some((msg, again.len()))));
        }
    }
}

#[test]
fn arbitrary_bytes_never_panic() {
    let mut rng = ChaCha8Rng::seed_from_u64(4271);
    for _ in 0..20_000 {
        let s = random_session(&mut rng);
        let mut bytes = random_message(&mut rng, s).to_bytes(s);
        // Flip a few octets past the marker, often in the length fields and attribute headers.
        for _ in 0..rng.random_range(1..4) {
            let at = rng.random_range(16..bytes.len());
            bytes[at] = if rng.random_bool(0.5) { rng.random() } else { bytes[at].wrapping_add(1) };
        }
        if rng.random_bool(0.2) {
            bytes.truncate(rng.random_range(0..=bytes.len()));
        }
        parse_is_stable(&bytes, s);
        // And noise after a valid header.
        let mut noise = KEEPALIVE[..16].to_vec();
        noise.extend((0..rng.random_range(0..64)).map(|_| rng.random::<u8>()));
        if noise.len() >= 19 {
            noise[16] = 0;
            noise[18] = rng.random_range(0..7);
            noise[17] = rng.random_range(19..=noise.len().min(255)) as u8;
        }
        parse_is_stable(&noise, s);
    }
}

/// 2,000 /26 pod blocks of 10.0.0.0/8.
fn blocks(s: Session) -> Vec<Prefix> {
    let cidr = net("10.0.0.0/8");
    (0..2000).map(|i| Prefix { path_id: s.add_path.then_some(1), net: cidr.subnet(26, i).unwrap() }).collect()
}

#[test]
fn pack_updates_splits_2000_prefixes() {
    // Room for prefixes: 4096 - 19 - 4 - 21 = 4052 octets, filled while 9 remain: 809 /26s of
    // 5 octets (4089-octet messages), or 450 of 9 with ADD-PATH (4094 octets).
    for (s, per_message) in [(PLAIN, 809), (ADD_PATH, 450)] {
        let nlri = blocks(s);
        let updates = pack_updates(&calico_attrs(), &nlri, s);
        assert_eq!(updates.len(), nlri.len().div_ceil(per_message));
        let mut all = Vec::new();
        for (i, u) in updates.iter().enumerate() {
            let msg = Message::Update(u.clone());
            let len = msg.buffer_len(s);
            assert!(len <= MAX_LEN, "{len}");
            if i + 1 < updates.len() {
                assert_eq!(u.nlri.len(), per_message);
                assert!(len > MAX_LEN - 9, "{len}");
            }
            assert!(u.withdrawn.is_empty());
            assert_eq!(u.attrs, calico_attrs());
            let bytes = msg.to_bytes(s);
            assert_eq!(Message::parse(&bytes, s), Ok(Some((msg, len))));
            all.extend_from_slice(&u.nlri);
        }
        assert_eq!(all, nlri);
    }
    assert!(pack_updates(&calico_attrs(), &[], PLAIN).is_empty());
    // BIRD drops routes whose attributes do not fit 3 KB.
    let huge = PathAttrs { cluster_list: vec![ip("10.0.0.1"); 800], ..calico_attrs() };
    assert!(pack_updates(&huge, &blocks(PLAIN), PLAIN).is_empty());
}

#[test]
fn pack_withdrawals_splits_2000_prefixes() {
    // 4073 octets of room: 813 /26s (4088-octet messages), 452 with ADD-PATH (4091 octets).
    for (s, per_message) in [(PLAIN, 813), (ADD_PATH, 452)] {
        let w = blocks(s);
        let updates = pack_withdrawals(&w, s);
        assert_eq!(updates.len(), w.len().div_ceil(per_message));
        let mut all = Vec::new();
        for u in &updates {
            assert!(u.nlri.is_empty() && u.attrs.is_empty());
            assert!(Message::Update(u.clone()).buffer_len(s) <= MAX_LEN);
            all.extend_from_slice(&u.withdrawn);
        }
        assert_eq!(updates[0].withdrawn.len(), per_message);
        assert_eq!(all, w);
    }
}

#[test]
#[should_panic(expected = "exceeds 4096")]
fn an_update_over_4096_octets_panics() {
    let nlri = blocks(PLAIN);
    Message::Update(Update { withdrawn: vec![], attrs: calico_attrs(), nlri }).to_bytes(PLAIN);
}

#[test]
#[should_panic(expected = "does not fit 12 bits")]
fn a_restart_time_over_12_bits_panics() {
    Message::Open(Open::bird_calico(64512, 240, ip("10.192.0.2"), 4096, false)).to_bytes(PLAIN);
}

/// A pcap file of raw IPv4 packets with nanosecond times (the format `net::pcap` writes; wire
/// formats sit below `net`, so the test writes its own).
struct Pcap {
    buf: Vec<u8>,
    packets: u64,
}

impl Pcap {
    fn new_raw() -> Pcap {
        let mut buf = Vec::new();
        buf.extend_from_slice(&0xa1b2_3c4du32.to_le_bytes());
        buf.extend_from_slice(&2u16.to_le_bytes());
        buf.extend_from_slice(&4u16.to_le_bytes());
        buf.extend_from_slice(&0i32.to_le_bytes());
        buf.extend_from_slice(&0u32.to_le_bytes());
        buf.extend_from_slice(&262_144u32.to_le_bytes());
        buf.extend_from_slice(&101u32.to_le_bytes()); // LINKTYPE_RAW
        Pcap { buf, packets: 0 }
    }

    fn record(&mut self, time: crate::time::Instant, frame: &[u8]) {
        let ns = time.as_nanos();
        self.buf.extend_from_slice(&((ns / 1_000_000_000) as u32).to_le_bytes());
        self.buf.extend_from_slice(&((ns % 1_000_000_000) as u32).to_le_bytes());
        self.buf.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(frame);
        self.packets += 1;
    }

    fn packets(&self) -> u64 {
        self.packets
    }

    fn bytes(&self) -> &[u8] {
        &self.buf
    }
}

/// One TCP connection of a capture: addresses, ports, next sequence numbers.
struct TcpStream {
    ends: [(Ipv4Addr, u16); 2],
    seq: [u32; 2],
}

impl TcpStream {
    /// A segment from end `from` (0 the client, 1 the server), SYN or carrying `payload`.
    fn segment(&mut self, pcap: &mut Pcap, from: usize, syn: bool, payload: &[u8]) {
        use crate::time::Instant;
        use smoltcp::wire::{IpProtocol, Ipv4Packet, TcpPacket, TcpSeqNumber};

        let ((src, sport), (dst, dport)) = (self.ends[from], self.ends[1 - from]);
        let mut frame = vec![0u8; 20 + 20 + payload.len()];
        let mut iph = Ipv4Packet::new_unchecked(&mut frame[..]);
        iph.set_version(4);
        iph.set_header_len(20);
        iph.set_total_len((40 + payload.len()) as u16);
        iph.set_dont_frag(true);
        iph.set_hop_limit(64);
        iph.set_next_header(IpProtocol::Tcp);
        iph.set_src_addr(src);
        iph.set_dst_addr(dst);
        iph.fill_checksum();
        // Everything but the client's SYN acknowledges the other end.
        let ack = !(syn && from == 0);
        let mut tcp = TcpPacket::new_unchecked(&mut frame[20..]);
        tcp.set_src_port(sport);
        tcp.set_dst_port(dport);
        tcp.set_seq_number(TcpSeqNumber(self.seq[from] as i32));
        tcp.set_ack_number(TcpSeqNumber(if ack { self.seq[1 - from] as i32 } else { 0 }));
        tcp.set_header_len(20);
        tcp.clear_flags();
        tcp.set_syn(syn);
        tcp.set_ack(ack);
        tcp.set_psh(!payload.is_empty());
        tcp.set_window_len(64240);
        tcp.payload_mut().copy_from_slice(payload);
        tcp.fill_checksum(&src.into(), &dst.into());
        self.seq[from] += payload.len() as u32 + u32::from(syn);
        pcap.record(Instant::from_nanos(pcap.packets() * 1_000_000), &frame);
    }

    /// The three-way handshake, then each message from its end.
    fn session(pcap: &mut Pcap, client_port: u16, messages: &[(usize, &[u8])]) {
        let mut tcp = TcpStream {
            ends: [(ip("10.192.0.3"), client_port), (ip("10.192.0.2"), PORT)],
            seq: [1000, 5000],
        };
        tcp.segment(pcap, 0, true, &[]);
        tcp.segment(pcap, 1, true, &[]);
        tcp.segment(pcap, 0, false, &[]);
        for &(from, bytes) in messages {
            tcp.segment(pcap, from, false, bytes);
        }
    }
}

/// A capture of the literal messages above for `tshark -r FILE -V -Y bgp`, written to the file
/// `CNISIM_BGP_PCAP` names, if set (otherwise only built). Three TCP connections to port 179:
/// Calico's session (OPENs with ADD-PATH, KEEPALIVEs, the ADD-PATH UPDATE, End-of-RIB both
/// ways); a 4-octet session without ADD-PATH (plain, reflected and eBGP UPDATEs, withdrawals,
/// ROUTE-REFRESH, Cease); a 2-octet one (AS4_PATH, Hold Timer Expired).
#[test]
fn pcap_of_three_sessions() {
    let mut pcap = Pcap::new_raw();
    let (a, b) = (ip("10.192.0.3"), ip("10.192.0.2"));
    let (open_a, open_b) =
        (Open::bird_calico(64512, 240, a, 120, true), Open::bird_calico(64512, 240, b, 120, true));
    let tx_b = Session::sending(&open_b, &open_a);
    assert_eq!(tx_b, ADD_PATH);
    let (open_a, open_b) = (Message::Open(open_a).to_bytes(tx_b), Message::Open(open_b).to_bytes(tx_b));
    assert_eq!(
        open_b,
        CALICO_OPEN
            .iter()
            .enumerate()
            .map(|(i, &x)| if i == 41 || i == 46 { 0x80 } else { x })
            .collect::<Vec<_>>()
    );
    TcpStream::session(
        &mut pcap,
        50179,
        &[
            (0, &open_a),
            (1, &open_b),
            (0, &KEEPALIVE),
            (1, &KEEPALIVE),
            (1, &TWO_26S_ADD_PATH),
            (1, &END_OF_RIB),
            (0, &END_OF_RIB),
        ],
    );

    let plain = |id| {
        let caps = vec![
            Capability::Multiprotocol { afi: 1, safi: 1 },
            Capability::RouteRefresh,
            Capability::FourOctetAs(64512),
        ];
        Message::Open(Open { version: 4, my_as: 64512, hold_time: 90, bgp_id: ip(id), capabilities: caps })
            .to_bytes(PLAIN)
    };
    let (open_a, open_b) = (plain("10.192.0.3"), plain("10.192.0.2"));
    TcpStream::session(
        &mut pcap,
        50180,
        &[
            (0, &open_a),
            (1, &open_b),
            (0, &KEEPALIVE),
            (1, &KEEPALIVE),
            (1, &TWO_26S),
            (1, &REFLECTED),
            (1, &AS_PATH_4_OCTET),
            (1, &WITHDRAW_TWO_26S),
            (0, &ROUTE_REFRESH),
            (0, &CEASE_ADMIN_SHUTDOWN),
        ],
    );

    let old = |id| {
        Message::Open(Open { version: 4, my_as: 65000, hold_time: 3, bgp_id: ip(id), capabilities: vec![] })
            .to_bytes(OLD)
    };
    let (open_a, open_b) = (old("10.192.0.3"), old("10.192.0.2"));
    let expired = Message::Notification(Notification::hold_timer_expired()).to_bytes(OLD);
    TcpStream::session(
        &mut pcap,
        50181,
        &[(0, &open_a), (1, &open_b), (0, &KEEPALIVE), (1, &KEEPALIVE), (1, &AS_PATH_2_OCTET), (0, &expired)],
    );
    assert_eq!(pcap.packets(), 3 * 3 + 7 + 10 + 6);
    if let Some(path) = std::env::var_os("CNISIM_BGP_PCAP") {
        std::fs::write(path, pcap.bytes()).unwrap();
    }
}

#[test]
fn write_updates_and_withdrawals_are_the_packed_messages_bytes() {
    let reflected = PathAttrs {
        originator_id: Some(ip("10.0.0.5")),
        cluster_list: vec![ip("244.0.0.1"), ip("244.0.0.2")],
        as_path: vec![AsSegment::Sequence(vec![64512, 4_200_000_000])],
        med: Some(7),
        ..calico_attrs()
    };
    // Long enough for the Extended Length flag, short enough for BIRD's 3 KB.
    let long = PathAttrs { cluster_list: vec![ip("10.0.0.1"); 100], ..calico_attrs() };
    let huge = PathAttrs { cluster_list: vec![ip("10.0.0.1"); 800], ..calico_attrs() };
    for s in [PLAIN, ADD_PATH, Session { four_octet_as: false, ..PLAIN }] {
        for attrs in [calico_attrs(), reflected.clone(), long.clone(), huge.clone()] {
            let nlri = blocks(s);
            let mut written = vec![0xaa];
            let n = write_updates(&attrs, &nlri, s, &mut written);
            let packed = pack_updates(&attrs, &nlri, s);
            assert_eq!(n, packed.len());
            let mut want = vec![0xaa];
            packed.into_iter().for_each(|u| want.extend(Message::Update(u).to_bytes(s)));
            assert_eq!(written, want);
        }
        let w = blocks(s);
        let mut written = Vec::new();
        let n = write_withdrawals(&w, s, &mut written);
        let packed = pack_withdrawals(&w, s);
        assert_eq!(n, packed.len());
        assert_eq!(
            written,
            packed.into_iter().flat_map(|u| Message::Update(u).to_bytes(s)).collect::<Vec<u8>>()
        );
    }
    // Message::write_to appends what to_bytes returns.
    let mut buf = vec![1, 2, 3];
    Message::Keepalive.write_to(PLAIN, &mut buf);
    assert_eq!(buf[3..], Message::Keepalive.to_bytes(PLAIN)[..]);
}
