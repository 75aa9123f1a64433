//! BGP-4 messages (RFC 4271 §4), byte-exact, as BIRD 1.6 writes them for Calico.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                                                               |
//! +                                                               +
//! |                                                               |
//! +                                                               +
//! |                           Marker                              |
//! +                                                               +
//! |                                                               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |          Length               |      Type     |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! The messages ride a TCP connection to [`PORT`]; [`Message::parse`] takes one from the front of
//! the received byte stream. Everything is IPv4 unicast, as in an IPv4 BIRD: NLRI and withdrawn
//! routes sit in the UPDATE body, and MP_REACH_NLRI / MP_UNREACH_NLRI (RFC 4760 §3, §4) are
//! skipped like any optional attribute cnisim does not model. What the codec must know of the
//! session (4-octet AS numbers, ADD-PATH) comes in a [`Session`].
//!
//! Not covered: extended messages (RFC 8654, off in BIRD unless configured), extended optional
//! parameters (RFC 9072, which BIRD 1.6 predates), confederations (RFC 5065: AS_CONFED segments
//! are dropped on receipt, as BIRD's `validate_path` does), communities and AGGREGATOR (skipped).
//! Errors follow RFC 4271 §6: a malformed message resets the session with a NOTIFICATION, as in
//! BIRD 1.6, not RFC 7606's "treat-as-withdraw". Where RFC 4271 leaves the NOTIFICATION's data
//! open, it is what BIRD sends (`proto/bgp/packets.c`, `proto/bgp/attrs.c`).

use std::fmt;
use std::net::Ipv4Addr;

use super::field::*;
use super::{Error, Result};
use crate::addr::Ipv4Net;

/// The BGP TCP port (RFC 4271 §3: "BGP listens on TCP port 179").
pub const PORT: u16 = 179;
/// Length of the message header: 16 octets of marker, 2 of length, 1 of type (RFC 4271 §4.1).
pub const HEADER_LEN: usize = 19;
/// The largest message: "The value of the Length field MUST always be at least 19 and no greater
/// than 4096" (RFC 4271 §4.1).
pub const MAX_LEN: usize = 4096;
/// The one version this codec speaks (RFC 4271 §4.2: "The current BGP version number is 4").
pub const VERSION: u8 = 4;
/// The 2-octet AS number put where a 4-octet one does not fit (RFC 6793 §3, §9: AS_TRANS).
pub const AS_TRANS: u32 = 23456;
/// Address Family Identifier of IPv4 (RFC 4760 §3, IANA "Address Family Numbers").
pub const AFI_IPV4: u16 = 1;
/// Subsequent Address Family Identifier of unicast forwarding (RFC 4760 §6).
pub const SAFI_UNICAST: u8 = 1;

/// Shortest OPEN: header, version, My AS, Hold Time, BGP Identifier, Opt Parm Len (RFC 4271 §4.2).
pub const OPEN_MIN_LEN: usize = 29;
/// Shortest UPDATE: header and the two 2-octet length fields (RFC 4271 §4.3).
pub const UPDATE_MIN_LEN: usize = 23;
/// Shortest NOTIFICATION: header, Error code and Error subcode (RFC 4271 §4.5).
pub const NOTIFICATION_MIN_LEN: usize = 21;
/// A KEEPALIVE "consists of only the message header and has a length of 19 octets" (RFC 4271 §4.4).
pub const KEEPALIVE_LEN: usize = HEADER_LEN;
/// A ROUTE-REFRESH: header, AFI, Reserved (RFC 7313: subtype), SAFI (RFC 2918 §3).
pub const ROUTE_REFRESH_LEN: usize = 23;

/// Optional Parameter type of Capabilities (RFC 5492 §4: "Capabilities Optional Parameter
/// (Parameter Type 2)").
const PARAM_CAPABILITIES: u8 = 2;
/// Capability Length and Opt Parm Len are one octet: all capabilities in one parameter must fit
/// 255 - 2 octets of parameter header.
const CAPABILITIES_MAX: usize = 255 - 2;

mod field {
    use super::{Field, Rest};

    pub const MARKER: Field = 0..16;
    pub const LENGTH: Field = 16..18;
    pub const TYPE: usize = 18;
    pub const BODY: Rest = 19..;
}

/// Message type codes (RFC 4271 §4.1; ROUTE-REFRESH: RFC 2918 §3).
pub mod msg_type {
    pub const OPEN: u8 = 1;
    pub const UPDATE: u8 = 2;
    pub const NOTIFICATION: u8 = 3;
    pub const KEEPALIVE: u8 = 4;
    pub const ROUTE_REFRESH: u8 = 5;
}

/// Path attribute type codes (RFC 4271 §5.1, §4.3; RFC 4456 §8; RFC 4760 §3-4; RFC 6793 §3).
pub mod attr_type {
    pub const ORIGIN: u8 = 1;
    pub const AS_PATH: u8 = 2;
    pub const NEXT_HOP: u8 = 3;
    pub const MULTI_EXIT_DISC: u8 = 4;
    pub const LOCAL_PREF: u8 = 5;
    pub const ATOMIC_AGGREGATE: u8 = 6;
    pub const AGGREGATOR: u8 = 7;
    /// RFC 1997.
    pub const COMMUNITIES: u8 = 8;
    /// RFC 4456 §8: "ORIGINATOR_ID is a new optional, non-transitive BGP attribute of Type code 9".
    pub const ORIGINATOR_ID: u8 = 9;
    /// RFC 4456 §8: "CLUSTER_LIST is a new, optional, non-transitive BGP attribute of Type code 10".
    pub const CLUSTER_LIST: u8 = 10;
    pub const MP_REACH_NLRI: u8 = 14;
    pub const MP_UNREACH_NLRI: u8 = 15;
    /// RFC 4360.
    pub const EXTENDED_COMMUNITIES: u8 = 16;
    /// RFC 6793 §3: "AS4_PATH ... optional transitive", type 17 (§9).
    pub const AS4_PATH: u8 = 17;
    pub const AS4_AGGREGATOR: u8 = 18;
    /// RFC 8092.
    pub const LARGE_COMMUNITY: u8 = 32;
}

/// Attribute Flags, the high-order bits of the first octet of each attribute (RFC 4271 §4.3).
pub mod attr_flag {
    /// "The high-order bit (bit 0) ... is the Optional bit."
    pub const OPTIONAL: u8 = 0x80;
    /// "The second high-order bit (bit 1) ... is the Transitive bit."
    pub const TRANSITIVE: u8 = 0x40;
    /// "The third high-order bit (bit 2) ... is the Partial bit."
    pub const PARTIAL: u8 = 0x20;
    /// "The fourth high-order bit (bit 3) ... is the Extended Length bit": a 2-octet length.
    pub const EXTENDED_LENGTH: u8 = 0x10;
}

/// Capability codes (IANA "Capability Codes", RFC 5492 §4).
pub mod cap_code {
    /// RFC 4760 §8.
    pub const MULTIPROTOCOL: u8 = 1;
    /// RFC 2918 §2.
    pub const ROUTE_REFRESH: u8 = 2;
    /// RFC 8654 (BIRD's `enable extended messages`; parsed as [`super::Capability::Unknown`]).
    pub const EXTENDED_MESSAGE: u8 = 6;
    /// RFC 4724 §3.
    pub const GRACEFUL_RESTART: u8 = 64;
    /// RFC 6793 §3, §9.
    pub const FOUR_OCTET_AS: u8 = 65;
    /// RFC 7911 §4.
    pub const ADD_PATH: u8 = 69;
    /// RFC 7313 §3.
    pub const ENHANCED_ROUTE_REFRESH: u8 = 70;
    /// RFC 9494 §3 (a draft when BIRD 1.6 implemented it, with the same code).
    pub const LONG_LIVED_GRACEFUL_RESTART: u8 = 71;
}

/// NOTIFICATION error codes and subcodes (RFC 4271 §4.5; Cease subcodes RFC 4486 §3; FSM
/// subcodes RFC 6608 §3; ROUTE-REFRESH RFC 7313 §5).
pub mod error {
    pub const MESSAGE_HEADER: u8 = 1;
    pub const OPEN_MESSAGE: u8 = 2;
    pub const UPDATE_MESSAGE: u8 = 3;
    pub const HOLD_TIMER_EXPIRED: u8 = 4;
    pub const FSM: u8 = 5;
    pub const CEASE: u8 = 6;
    pub const ROUTE_REFRESH_MESSAGE: u8 = 7;

    /// Subcodes of Message Header Error (RFC 4271 §4.5, §6.1).
    pub mod header {
        pub const CONNECTION_NOT_SYNCHRONIZED: u8 = 1;
        pub const BAD_MESSAGE_LENGTH: u8 = 2;
        pub const BAD_MESSAGE_TYPE: u8 = 3;
    }

    /// Subcodes of OPEN Message Error (RFC 4271 §4.5, §6.2; 7: RFC 5492 §5).
    pub mod open {
        pub const UNSPECIFIC: u8 = 0;
        pub const UNSUPPORTED_VERSION_NUMBER: u8 = 1;
        pub const BAD_PEER_AS: u8 = 2;
        pub const BAD_BGP_IDENTIFIER: u8 = 3;
        pub const UNSUPPORTED_OPTIONAL_PARAMETER: u8 = 4;
        pub const UNACCEPTABLE_HOLD_TIME: u8 = 6;
        pub const UNSUPPORTED_CAPABILITY: u8 = 7;
    }

    /// Subcodes of UPDATE Message Error (RFC 4271 §4.5, §6.3).
    pub mod update {
        pub const MALFORMED_ATTRIBUTE_LIST: u8 = 1;
        pub const UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE: u8 = 2;
        pub const MISSING_WELL_KNOWN_ATTRIBUTE: u8 = 3;
        pub const ATTRIBUTE_FLAGS_ERROR: u8 = 4;
        pub const ATTRIBUTE_LENGTH_ERROR: u8 = 5;
        pub const INVALID_ORIGIN_ATTRIBUTE: u8 = 6;
        pub const INVALID_NEXT_HOP_ATTRIBUTE: u8 = 8;
        pub const OPTIONAL_ATTRIBUTE_ERROR: u8 = 9;
        pub const INVALID_NETWORK_FIELD: u8 = 10;
        pub const MALFORMED_AS_PATH: u8 = 11;
    }

    /// Subcodes of Finite State Machine Error (RFC 6608 §3; 0 is RFC 4271's only one).
    pub mod fsm {
        pub const UNSPECIFIED: u8 = 0;
        pub const UNEXPECTED_IN_OPENSENT: u8 = 1;
        pub const UNEXPECTED_IN_OPENCONFIRM: u8 = 2;
        pub const UNEXPECTED_IN_ESTABLISHED: u8 = 3;
    }

    /// Subcodes of Cease (RFC 4486 §3).
    pub mod cease {
        pub const MAXIMUM_NUMBER_OF_PREFIXES_REACHED: u8 = 1;
        pub const ADMINISTRATIVE_SHUTDOWN: u8 = 2;
        pub const PEER_DECONFIGURED: u8 = 3;
        pub const ADMINISTRATIVE_RESET: u8 = 4;
        pub const CONNECTION_REJECTED: u8 = 5;
        pub const OTHER_CONFIGURATION_CHANGE: u8 = 6;
        /// RFC 4486 §4: the Cease a speaker sends on the connection it closes when resolving a
        /// connection collision (RFC 4271 §6.8; BIRD `bgp_rx_open`: `bgp_error(other, 6, 7,
        /// NULL, 0)`).
        pub const CONNECTION_COLLISION_RESOLUTION: u8 = 7;
        pub const OUT_OF_RESOURCES: u8 = 8;
    }

    /// Subcodes of ROUTE-REFRESH Message Error (RFC 7313 §5).
    pub mod route_refresh {
        pub const INVALID_MESSAGE_LENGTH: u8 = 1;
    }
}

/// Message subtypes in the Reserved octet of ROUTE-REFRESH (RFC 7313 §3.2; 0 is RFC 2918's).
pub mod refresh_subtype {
    pub const REQUEST: u8 = 0;
    /// Beginning of Route Refresh.
    pub const BORR: u8 = 1;
    /// End of Route Refresh.
    pub const EORR: u8 = 2;
}

/// A read/write wrapper around a BGP message: the 19-octet header and the body its Length
/// field announces.
#[derive(Debug, PartialEq, Eq, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Imbue a raw octet buffer with BGP message structure.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Shorthand for [`Packet::new_unchecked`] followed by [`Packet::check_len`].
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Ensure that no accessor method will panic if called: the buffer holds the header and the
    /// whole message its Length announces, and that Length covers at least the header.
    ///
    /// The header accessors ([`Packet::marker_valid`], [`Packet::length`], [`Packet::msg_type`])
    /// need only [`HEADER_LEN`] octets; [`Message::parse`] reads them before the body arrives.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            Err(Error::Truncated)
        } else if (self.length() as usize) < HEADER_LEN {
            Err(Error::Malformed("BGP Length below 19"))
        } else if len < self.length() as usize {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    /// Consume the packet, returning the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Whether the marker is all ones (RFC 4271 §4.1: "This 16-octet field is included for
    /// compatibility; it MUST be set to all ones").
    #[inline]
    pub fn marker_valid(&self) -> bool {
        self.buffer.as_ref()[field::MARKER].iter().all(|&b| b == 0xff)
    }

    /// The total length of the message in octets, header included.
    #[inline]
    pub fn length(&self) -> u16 {
        let d = &self.buffer.as_ref()[field::LENGTH];
        u16::from_be_bytes([d[0], d[1]])
    }

    /// The type code of the message ([`msg_type`]).
    #[inline]
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    /// The message after its header, up to its Length.
    #[inline]
    pub fn body(&self) -> &'a [u8] {
        &self.buffer.as_ref()[field::BODY.start..self.length() as usize]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Set the marker to all ones.
    #[inline]
    pub fn set_marker(&mut self) {
        self.buffer.as_mut()[field::MARKER].fill(0xff);
    }

    /// Set the Length field.
    #[inline]
    pub fn set_length(&mut self, value: u16) {
        self.buffer.as_mut()[field::LENGTH].copy_from_slice(&value.to_be_bytes());
    }

    /// Set the Type field.
    #[inline]
    pub fn set_msg_type(&mut self, value: u8) {
        self.buffer.as_mut()[field::TYPE] = value;
    }

    /// The body, for writing: everything after the header, whatever the Length says.
    #[inline]
    pub fn body_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::BODY]
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// What the codec must know from the session: negotiated 4-octet AS and ADD-PATH (receive
/// direction for parsing, send direction for emitting).
///
/// - `four_octet_as`: both OPENs carried the 4-octet AS capability, so AS_PATH carries 4-octet
///   AS numbers (RFC 6793 §4.1); otherwise 2-octet ones, with AS4_PATH beside them (§4.2.2).
/// - `add_path`: each NLRI and withdrawn prefix is preceded by a 4-octet Path Identifier
///   (RFC 7911 §3), which holds in one direction when the sender announced Send and the
///   receiver Receive for IPv4 unicast (§4, §5).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Session {
    pub four_octet_as: bool,
    pub add_path: bool,
}

impl Session {
    /// How to emit messages to the peer, from the two OPENs exchanged: `add_path` when `local`
    /// may send and `remote` may receive several paths for IPv4 unicast (RFC 7911 §5; BIRD
    /// `bgp_rx_open`: `add_path_tx = (cf->add_path & ADD_PATH_TX) && (peer_add_path &
    /// ADD_PATH_RX)`).
    pub fn sending(local: &Open, remote: &Open) -> Session {
        Session {
            four_octet_as: local.four_octet_as().is_some() && remote.four_octet_as().is_some(),
            add_path: local.add_path_mode().is_some_and(AddPathMode::sends)
                && remote.add_path_mode().is_some_and(AddPathMode::receives),
        }
    }

    /// How to parse messages from the peer: [`Session::sending`] seen from the other end.
    pub fn receiving(local: &Open, remote: &Open) -> Session {
        Session::sending(remote, local)
    }
}

/// The five message types, for reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Open,
    Update,
    Notification,
    Keepalive,
    /// RFC 2918 §3.
    RouteRefresh,
}

impl Kind {
    /// The Type field of the header.
    pub const fn code(self) -> u8 {
        match self {
            Kind::Open => msg_type::OPEN,
            Kind::Update => msg_type::UPDATE,
            Kind::Notification => msg_type::NOTIFICATION,
            Kind::Keepalive => msg_type::KEEPALIVE,
            Kind::RouteRefresh => msg_type::ROUTE_REFRESH,
        }
    }

    /// The kind of a Type field, if it is one of the five.
    pub const fn from_code(code: u8) -> Option<Kind> {
        match code {
            msg_type::OPEN => Some(Kind::Open),
            msg_type::UPDATE => Some(Kind::Update),
            msg_type::NOTIFICATION => Some(Kind::Notification),
            msg_type::KEEPALIVE => Some(Kind::Keepalive),
            msg_type::ROUTE_REFRESH => Some(Kind::RouteRefresh),
            _ => None,
        }
    }

    /// The name the RFCs (and BIRD's traces) use: "OPEN", "UPDATE", "NOTIFICATION",
    /// "KEEPALIVE", "ROUTE-REFRESH".
    pub const fn name(self) -> &'static str {
        match self {
            Kind::Open => "OPEN",
            Kind::Update => "UPDATE",
            Kind::Notification => "NOTIFICATION",
            Kind::Keepalive => "KEEPALIVE",
            Kind::RouteRefresh => "ROUTE-REFRESH",
        }
    }

    /// Length limits of the type (RFC 4271 §6.1: a Length below the minimum of its type, or a
    /// KEEPALIVE not of 19 octets, is a Bad Message Length).
    const fn length_ok(self, len: usize) -> bool {
        match self {
            Kind::Open => len >= OPEN_MIN_LEN,
            Kind::Update => len >= UPDATE_MIN_LEN,
            Kind::Notification => len >= NOTIFICATION_MIN_LEN,
            Kind::Keepalive => len == KEEPALIVE_LEN,
            // Longer ones are ROUTE-REFRESH errors (RFC 7313 §5), found in the body.
            Kind::RouteRefresh => len >= ROUTE_REFRESH_LEN,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One BGP message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    Open(Open),
    Update(Update),
    Notification(Notification),
    Keepalive,
    /// RFC 2918 §3 (BIRD sends it for `reload in`; with RFC 7313 also BoRR / EoRR).
    RouteRefresh(RouteRefresh),
}

/// An OPEN message (RFC 4271 §4.2).
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+
/// |    Version    |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |     My Autonomous System      |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |           Hold Time           |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                         BGP Identifier                        |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// | Opt Parm Len  |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |             Optional Parameters (variable)                    |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
///
/// Capabilities are written as one Capabilities Optional Parameter (RFC 5492 §4), as BIRD's
/// `bgp_create_open` does; on receipt any number of them are read, in order, into one list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Open {
    /// Always [`VERSION`] when emitted by cnisim; a parsed OPEN has it too (others are errors).
    pub version: u8,
    /// The real AS number. The 2-octet My Autonomous System field gets it when it fits and
    /// [`AS_TRANS`] otherwise (RFC 6793 §4.2.1); the 4-octet AS capability should carry it
    /// too. On receipt, it is the capability's value when there is one, else the 2-octet field.
    pub my_as: u32,
    /// Seconds; 0 or at least 3 (RFC 4271 §4.2).
    pub hold_time: u16,
    pub bgp_id: Ipv4Addr,
    pub capabilities: Vec<Capability>,
}

/// One capability of an OPEN (RFC 5492 §4: Capability Code, Capability Length, Capability
/// Value).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Capability {
    /// RFC 4760 §8: AFI (2 octets), Reserved (1, zero), SAFI (1).
    Multiprotocol { afi: u16, safi: u8 },
    /// RFC 2918 §2: no value.
    RouteRefresh,
    /// RFC 4724 §3: Restart Flags (4 bits; the top one, R, set when the speaker has restarted)
    /// and Restart Time in seconds (12 bits, at most 4095), then per family AFI (2), SAFI (1)
    /// and Flags for Address Family (1; the top bit, F, set when the forwarding state of the
    /// family was preserved across the restart). Other flag bits are ignored on receipt.
    GracefulRestart {
        restarting: bool,
        restart_time: u16,
        families: Vec<(u16, u8, bool /*forwarding state preserved*/)>,
    },
    /// RFC 6793 §3: the speaker's AS number as 4 octets.
    FourOctetAs(u32),
    /// RFC 7911 §4: per family AFI (2), SAFI (1), Send/Receive (1).
    AddPath(Vec<(u16, u8, AddPathMode)>),
    /// RFC 7313 §3: no value.
    EnhancedRouteRefresh,
    /// RFC 9494 §3: per family AFI (2), SAFI (1), Flags (1, bit 0 F as in graceful restart),
    /// Long-lived Stale Time in seconds (3 octets). BIRD sends it with no families ("LLGR
    /// aware") whenever graceful restart is on.
    LongLivedGracefulRestart(Vec<(u16, u8, bool /*forwarding state preserved*/, u32 /*stale time*/)>),
    /// Any other capability, kept as its code and value. RFC 5492 §3: "If a BGP speaker
    /// receives from its peer a capability that it does not itself support or recognize, it
    /// MUST ignore that capability".
    Unknown { code: u8, data: Vec<u8> },
}

/// The Send/Receive field of the ADD-PATH capability (RFC 7911 §4): "1 indicates that the
/// sender is able to receive multiple paths from its peer. 2 ... able to send multiple paths to
/// its peer. 3 ... able to both send and receive multiple paths".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum AddPathMode {
    Receive = 1,
    Send = 2,
    Both = 3,
}

impl AddPathMode {
    /// The mode of a Send/Receive octet, if it is one of the three.
    pub const fn from_u8(v: u8) -> Option<AddPathMode> {
        match v {
            1 => Some(AddPathMode::Receive),
            2 => Some(AddPathMode::Send),
            3 => Some(AddPathMode::Both),
            _ => None,
        }
    }

    pub const fn sends(self) -> bool {
        matches!(self, AddPathMode::Send | AddPathMode::Both)
    }

    pub const fn receives(self) -> bool {
        matches!(self, AddPathMode::Receive | AddPathMode::Both)
    }
}

/// An UPDATE message (RFC 4271 §4.3).
///
/// ```text
/// +-----------------------------------------------------+
/// |   Withdrawn Routes Length (2 octets)                |
/// +-----------------------------------------------------+
/// |   Withdrawn Routes (variable)                       |
/// +-----------------------------------------------------+
/// |   Total Path Attribute Length (2 octets)            |
/// +-----------------------------------------------------+
/// |   Path Attributes (variable)                        |
/// +-----------------------------------------------------+
/// |   Network Layer Reachability Information (variable) |
/// +-----------------------------------------------------+
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Update {
    pub withdrawn: Vec<Prefix>,
    pub attrs: PathAttrs,
    pub nlri: Vec<Prefix>,
}

/// An IPv4 prefix of the NLRI or Withdrawn Routes, with its ADD-PATH Path Identifier.
///
/// On the wire (RFC 4271 §4.3): a Length octet (in bits) and "the minimum number of octets" of
/// prefix; with ADD-PATH, a 4-octet Path Identifier first (RFC 7911 §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Prefix {
    /// `Some` exactly when ADD-PATH is negotiated for the direction: a parsed prefix has it
    /// then and only then. When emitting with [`Session::add_path`], `None` is sent as 0;
    /// without it, the identifier is not sent.
    pub path_id: Option<u32>,
    pub net: Ipv4Net,
}

impl Prefix {
    /// A prefix without a Path Identifier.
    pub const fn new(net: Ipv4Net) -> Prefix {
        Prefix { path_id: None, net }
    }

    /// A prefix with a Path Identifier, for ADD-PATH sessions.
    pub const fn with_path_id(path_id: u32, net: Ipv4Net) -> Prefix {
        Prefix { path_id: Some(path_id), net }
    }

    /// Octets on the wire: Path Identifier (with ADD-PATH), Length, prefix octets.
    pub fn wire_len(&self, s: Session) -> usize {
        (if s.add_path { 4 } else { 0 }) + 1 + (self.net.prefix() as usize).div_ceil(8)
    }
}

/// The path attributes cnisim models (RFC 4271 §5, RFC 4456 §8). `Default` is none at all (an
/// UPDATE that only withdraws, or End-of-RIB).
///
/// Emitted in ascending type code (RFC 4271 §5: "The sender of an UPDATE message SHOULD order
/// path attributes within the UPDATE message in ascending order of attribute type"), with the
/// flags of BIRD's `bgp_attr_table` (`proto/bgp/attrs.c`), which are RFC 4271's: well-known
/// transitive 0x40 for ORIGIN, AS_PATH, NEXT_HOP and LOCAL_PREF; optional non-transitive 0x80
/// for MULTI_EXIT_DISC, ORIGINATOR_ID and CLUSTER_LIST. The Extended Length flag 0x10 is set
/// only when the value is longer than 255 octets (`bgp_encode_attr_hdr`: `if (len < 256)`).
///
/// Two things follow BIRD's `bgp_encode_attrs` rather than a field-by-field mapping:
/// - AS_PATH is well-known mandatory (RFC 4271 §5.1.2) and an iBGP speaker's own routes carry
///   it empty (BIRD `bgp_create_attrs`: `bgp_set_attr_wa(ea->attrs+1, pool, BA_AS_PATH, 0)`),
///   so it is written, empty if need be, whenever any other attribute is.
/// - In a 2-octet session ([`Session::four_octet_as`] false) an AS number over 65535 is written
///   as [`AS_TRANS`] and the whole path again as AS4_PATH (RFC 6793 §4.2.2), right after
///   AS_PATH, which is where BIRD puts it (so the order is then 1, 2, 17, 3, ...). On receipt
///   the path is rebuilt from both (RFC 6793 §4.2.3).
///
/// An empty CLUSTER_LIST is not written (`bgp_encode_attrs`: "Skip empty sets"). BIRD sorts
/// CLUSTER_LIST numerically before sending (`bgp_get_bucket` -> `bgp_normalize_int_set`); this
/// codec writes it in the order given.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct PathAttrs {
    /// ORIGIN, type 1 (RFC 4271 §5.1.1).
    pub origin: Option<Origin>,
    /// AS_PATH, type 2 (RFC 4271 §5.1.2). A sequence of more than 255 AS numbers is written as
    /// several segments of at most 255 (RFC 4271 §4.3: "path segment length is a 1-octet
    /// length field, containing the number of ASes").
    pub as_path: Vec<AsSegment>,
    /// NEXT_HOP, type 3 (RFC 4271 §5.1.3).
    pub next_hop: Option<Ipv4Addr>,
    /// MULTI_EXIT_DISC, type 4 (RFC 4271 §5.1.4).
    pub med: Option<u32>,
    /// LOCAL_PREF, type 5 (RFC 4271 §5.1.5).
    pub local_pref: Option<u32>,
    /// ORIGINATOR_ID, type 9: "the ROUTER_ID of the originator of the route in the local AS"
    /// (RFC 4456 §8).
    pub originator_id: Option<Ipv4Addr>,
    /// CLUSTER_LIST, type 10: "a sequence of CLUSTER_ID values representing the reflection
    /// path that the route has passed" (RFC 4456 §8).
    pub cluster_list: Vec<Ipv4Addr>,
}

impl PathAttrs {
    /// No attribute at all.
    pub fn is_empty(&self) -> bool {
        *self == PathAttrs::default()
    }
}

/// ORIGIN values (RFC 4271 §4.3: "0 IGP ... 1 EGP ... 2 INCOMPLETE").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Origin {
    Igp = 0,
    Egp = 1,
    Incomplete = 2,
}

impl Origin {
    pub const fn from_u8(v: u8) -> Option<Origin> {
        match v {
            0 => Some(Origin::Igp),
            1 => Some(Origin::Egp),
            2 => Some(Origin::Incomplete),
            _ => None,
        }
    }
}

/// An AS_PATH segment (RFC 4271 §4.3: "1 AS_SET: unordered set of ASes a route in the UPDATE
/// message has traversed; 2 AS_SEQUENCE: ordered set of ASes").
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum AsSegment {
    Set(Vec<u32>),
    Sequence(Vec<u32>),
}

const SEGMENT_SET: u8 = 1;
const SEGMENT_SEQUENCE: u8 = 2;
/// RFC 5065 §3: AS_CONFED_SEQUENCE 3, AS_CONFED_SET 4.
const SEGMENT_CONFED_SEQUENCE: u8 = 3;
const SEGMENT_CONFED_SET: u8 = 4;

impl AsSegment {
    fn asns(&self) -> &[u32] {
        match self {
            AsSegment::Set(v) | AsSegment::Sequence(v) => v,
        }
    }

    /// Its length for path comparison and AS4_PATH merging: "AS_SET counts as 1, no matter how
    /// many ASes are in the set" (RFC 4271 §9.1.2.2 a).
    fn path_len(&self) -> usize {
        match self {
            AsSegment::Set(_) => 1,
            AsSegment::Sequence(v) => v.len(),
        }
    }
}

/// A NOTIFICATION message (RFC 4271 §4.5): Error code, Error subcode, Data. Also the error
/// [`Message::parse`] returns: the NOTIFICATION to send for a malformed message.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Notification {
    pub code: u8,
    pub subcode: u8,
    pub data: Vec<u8>,
}

impl Notification {
    pub fn new(code: u8, subcode: u8, data: Vec<u8>) -> Notification {
        Notification { code, subcode, data }
    }

    /// Message Header Error (RFC 4271 §6.1).
    pub fn header_error(subcode: u8, data: &[u8]) -> Notification {
        Notification::new(error::MESSAGE_HEADER, subcode, data.to_vec())
    }

    /// OPEN Message Error (RFC 4271 §6.2).
    pub fn open_error(subcode: u8, data: &[u8]) -> Notification {
        Notification::new(error::OPEN_MESSAGE, subcode, data.to_vec())
    }

    /// UPDATE Message Error (RFC 4271 §6.3).
    pub fn update_error(subcode: u8, data: &[u8]) -> Notification {
        Notification::new(error::UPDATE_MESSAGE, subcode, data.to_vec())
    }

    /// Hold Timer Expired, (4, 0): "If a system does not receive successive KEEPALIVE, UPDATE,
    /// and/or NOTIFICATION messages within the period specified in the Hold Time field of the
    /// OPEN message, then the NOTIFICATION message with the Hold Timer Expired Error Code is
    /// sent" (RFC 4271 §6.5).
    pub fn hold_timer_expired() -> Notification {
        Notification::new(error::HOLD_TIMER_EXPIRED, 0, Vec::new())
    }

    /// Finite State Machine Error (RFC 4271 §6.6) with an RFC 6608 §3 subcode ([`error::fsm`]):
    /// BIRD sends the one of the state it is in (`fsm_err_subcode` in `packets.c`).
    pub fn fsm_error(subcode: u8) -> Notification {
        Notification::new(error::FSM, subcode, Vec::new())
    }

    /// Cease (RFC 4271 §6.7) with an RFC 4486 §3 subcode ([`error::cease`]), no data.
    pub fn cease(subcode: u8) -> Notification {
        Notification::new(error::CEASE, subcode, Vec::new())
    }

    /// What RFC 4271 §4.5 and the RFCs of the subcodes call the error, as in BIRD's
    /// `bgp_msg_table` (`packets.c`), for reports.
    pub fn description(&self) -> &'static str {
        match (self.code, self.subcode) {
            (1, 0) => "Invalid message header",
            (1, 1) => "Connection not synchronized",
            (1, 2) => "Bad message length",
            (1, 3) => "Bad message type",
            (2, 0) => "Invalid OPEN message",
            (2, 1) => "Unsupported version number",
            (2, 2) => "Bad peer AS",
            (2, 3) => "Bad BGP identifier",
            (2, 4) => "Unsupported optional parameter",
            (2, 5) => "Authentication failure",
            (2, 6) => "Unacceptable hold time",
            (2, 7) => "Required capability missing",
            (3, 0) => "Invalid UPDATE message",
            (3, 1) => "Malformed attribute list",
            (3, 2) => "Unrecognized well-known attribute",
            (3, 3) => "Missing mandatory attribute",
            (3, 4) => "Invalid attribute flags",
            (3, 5) => "Invalid attribute length",
            (3, 6) => "Invalid ORIGIN attribute",
            (3, 7) => "AS routing loop",
            (3, 8) => "Invalid NEXT_HOP attribute",
            (3, 9) => "Optional attribute error",
            (3, 10) => "Invalid network field",
            (3, 11) => "Malformed AS_PATH",
            (4, 0) => "Hold timer expired",
            (5, 0) => "Finite state machine error",
            (5, 1) => "Unexpected message in OpenSent state",
            (5, 2) => "Unexpected message in OpenConfirm state",
            (5, 3) => "Unexpected message in Established state",
            (6, 0) => "Cease",
            (6, 1) => "Maximum number of prefixes reached",
            (6, 2) => "Administrative shutdown",
            (6, 3) => "Peer de-configured",
            (6, 4) => "Administrative reset",
            (6, 5) => "Connection rejected",
            (6, 6) => "Other configuration change",
            (6, 7) => "Connection collision resolution",
            (6, 8) => "Out of resources",
            (7, 0) => "Invalid ROUTE-REFRESH message",
            (7, 1) => "Invalid ROUTE-REFRESH message length",
            (1, _) => "Message header error",
            (2, _) => "OPEN message error",
            (3, _) => "UPDATE message error",
            (5, _) => "Finite state machine error",
            (6, _) => "Cease",
            _ => "Unknown error",
        }
    }
}

impl fmt::Display for Notification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NOTIFICATION {}/{} ({})", self.code, self.subcode, self.description())?;
        if !self.data.is_empty() {
            f.write_str(" data")?;
            for b in self.data.iter().take(16) {
                write!(f, " {b:02x}")?;
            }
            if self.data.len() > 16 {
                f.write_str(" ...")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for Notification {}

/// A ROUTE-REFRESH message (RFC 2918 §3): AFI (2 octets), Reserved (1), SAFI (1). RFC 7313
/// §3.2 turns Reserved into a Message Subtype ([`refresh_subtype`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RouteRefresh {
    pub afi: u16,
    pub subtype: u8,
    pub safi: u8,
}

impl RouteRefresh {
    /// The request BIRD sends (`bgp_create_route_refresh`: AFI 1, subtype 0, SAFI 1).
    pub const fn ipv4_unicast() -> RouteRefresh {
        RouteRefresh { afi: AFI_IPV4, subtype: refresh_subtype::REQUEST, safi: SAFI_UNICAST }
    }
}

impl Message {
    /// Its kind, for reports.
    pub fn kind(&self) -> Kind {
        match self {
            Message::Open(_) => Kind::Open,
            Message::Update(_) => Kind::Update,
            Message::Notification(_) => Kind::Notification,
            Message::Keepalive => Kind::Keepalive,
            Message::RouteRefresh(_) => Kind::RouteRefresh,
        }
    }

    /// Octets of the whole message, header included, as [`Message::emit`] writes it.
    pub fn buffer_len(&self, s: Session) -> usize {
        HEADER_LEN
            + match self {
                Message::Open(o) => o.body_len(),
                Message::Update(u) => u.body_len(s),
                Message::Notification(n) => 2 + n.data.len(),
                Message::Keepalive => 0,
                Message::RouteRefresh(_) => ROUTE_REFRESH_LEN - HEADER_LEN,
            }
    }

    /// Write the message, header included; `buf.len()` must be [`Message::buffer_len`].
    ///
    /// # Panics
    /// If `buf` is not exactly [`Message::buffer_len`] long; if the message is longer than
    /// [`MAX_LEN`] (an UPDATE too big for one message: use [`pack_updates`]); if a capability
    /// does not fit its fields (see [`Capability`]) or they all do not fit one optional
    /// parameter (253 octets); if an AS_SET has more than 255 AS numbers. Each is a cnisim bug.
    pub fn emit(&self, s: Session, buf: &mut [u8]) {
        let len = self.buffer_len(s);
        assert_eq!(
            buf.len(),
            len,
            "BGP {} buffer of {} octets for a message of {len}",
            self.kind(),
            buf.len()
        );
        assert!(len <= MAX_LEN, "BGP {} of {len} octets exceeds {MAX_LEN}", self.kind());
        let mut packet = Packet::new_unchecked(&mut *buf);
        packet.set_marker();
        packet.set_length(len as u16);
        packet.set_msg_type(self.kind().code());
        let mut w = Writer { buf: packet.body_mut(), pos: 0 };
        match self {
            Message::Open(o) => o.emit(&mut w),
            Message::Update(u) => u.emit(s, &mut w),
            Message::Notification(n) => {
                w.u8(n.code);
                w.u8(n.subcode);
                w.bytes(&n.data);
            }
            Message::Keepalive => {}
            Message::RouteRefresh(r) => {
                w.u16(r.afi);
                w.u8(r.subtype);
                w.u8(r.safi);
            }
        }
        debug_assert_eq!(w.pos, len - HEADER_LEN);
    }

    /// The message as a new buffer.
    ///
    /// # Panics
    /// As [`Message::emit`].
    /// Appends the message to `out`, header included.
    pub fn write_to(&self, s: Session, out: &mut Vec<u8>) {
        let start = out.len();
        out.resize(start + self.buffer_len(s), 0);
        self.emit(s, &mut out[start..]);
    }

    pub fn to_bytes(&self, s: Session) -> Vec<u8> {
        let mut buf = vec![0; self.buffer_len(s)];
        self.emit(s, &mut buf);
        buf
    }

    /// One message from the front of a TCP byte stream: Ok(None) if the buffer does not yet
    /// hold a whole message (need more bytes), Ok(Some((msg, consumed))), Err(Notification) for
    /// a malformed message with the NOTIFICATION (code, subcode, data) RFC 4271 §6 says to send.
    ///
    /// The header is checked as soon as its 19 octets are there, as BIRD's `bgp_rx` does, so a
    /// bad marker or length is reported without waiting for a body that may never come:
    /// - marker not all ones: (1, 1) "Connection Not Synchronized" (RFC 4271 §6.1);
    /// - Length below 19 or above 4096, or below the minimum of the type, or a KEEPALIVE not of
    ///   19 octets: (1, 2) "Bad Message Length", data the Length field (§6.1);
    /// - Type not one of the five: (1, 3) "Bad Message Type", data the Type field (§6.1).
    ///
    /// The body's checks are those of RFC 4271 §6.2 (OPEN) and §6.3 (UPDATE), described at
    /// [`Open`]'s and [`Update`]'s parsers. Never panics, whatever the bytes.
    pub fn parse(buf: &[u8], s: Session) -> core::result::Result<Option<(Message, usize)>, Notification> {
        if buf.len() < HEADER_LEN {
            return Ok(None);
        }
        let header = Packet::new_unchecked(&buf[..HEADER_LEN]);
        if !header.marker_valid() {
            return Err(Notification::header_error(error::header::CONNECTION_NOT_SYNCHRONIZED, &[]));
        }
        let len = header.length() as usize;
        let bad_length =
            || Notification::header_error(error::header::BAD_MESSAGE_LENGTH, &buf[field::LENGTH]);
        if !(HEADER_LEN..=MAX_LEN).contains(&len) {
            return Err(bad_length());
        }
        let Some(kind) = Kind::from_code(header.msg_type()) else {
            return Err(Notification::header_error(error::header::BAD_MESSAGE_TYPE, &[header.msg_type()]));
        };
        if !kind.length_ok(len) {
            return Err(bad_length());
        }
        if buf.len() < len {
            return Ok(None);
        }
        let packet = Packet::new_unchecked(&buf[..len]);
        let body = packet.body();
        let msg = match kind {
            Kind::Open => Message::Open(Open::parse(body, &buf[field::LENGTH])?),
            Kind::Update => Message::Update(Update::parse(body, s)?),
            Kind::Notification => {
                Message::Notification(Notification::new(body[0], body[1], body[2..].to_vec()))
            }
            Kind::Keepalive => Message::Keepalive,
            Kind::RouteRefresh => {
                if len != ROUTE_REFRESH_LEN {
                    // RFC 7313 §5: a ROUTE-REFRESH of the wrong length gets the NOTIFICATION
                    // ROUTE-REFRESH Message Error / Invalid Message Length, whose data is the
                    // complete message (BIRD `bgp_rx_route_refresh` likewise).
                    return Err(Notification::new(
                        error::ROUTE_REFRESH_MESSAGE,
                        error::route_refresh::INVALID_MESSAGE_LENGTH,
                        buf[..len].to_vec(),
                    ));
                }
                Message::RouteRefresh(RouteRefresh {
                    afi: u16::from_be_bytes([body[0], body[1]]),
                    subtype: body[2],
                    safi: body[3],
                })
            }
        };
        Ok(Some((msg, len)))
    }
}

impl Open {
    /// The OPEN BIRD 1.6 sends with Calico's `bgp_template`: `my_as` is the template's `local
    /// as`, `hold_time` 240 (BIRD's default), `bgp_id` the node's `router id`, `restart_time`
    /// 120 (BIRD's default `graceful restart time`), `restarting` as described below.
    ///
    /// Calico's confd template (calico `node/filesystem/etc/calico/confd/templates/
    /// bird.cfg.template`, compiled e.g. in `confd/tests/compiled_templates/mesh/bgp-export/
    /// bird.cfg`): `template bgp bgp_template { local as 64512; gateway recursive; add paths
    /// on; graceful restart; connect delay time 2; connect retry time 5; error wait time 5,30;
    /// }`, each peer `neighbor <ip> as <as>; source address ...; ttl security off; multihop;
    /// passive on` (some). None but `local as`, `add paths` and `graceful restart` touch the
    /// OPEN; the rest are defaults of `bgp_proto_start` in `proto/bgp/config.Y`. A BGPPeer may
    /// add `local as N` (its `localASNumber`) and `graceful restart time N` (its
    /// `maxRestartTime`), which give other `my_as` and `restart_time` values.
    ///
    /// `proto/bgp/packets.c:bgp_create_open` writes (projectcalico/bird, the BIRD 1.6 fork
    /// calico-node ships):
    /// - Version 4 (`BGP_VERSION`); My AS `(p->local_as < 0xFFFF) ? p->local_as : AS_TRANS`;
    ///   Hold Time `p->cf->hold_time`, 240 unless configured (`config.Y`: `hold_time = 240`,
    ///   Calico sets none); BGP Identifier the router id (`router id` in `bird.cfg`).
    /// - One optional parameter, type 2, holding every capability ("Skipped 3 B for length
    ///   field and Capabilities parameter header": `buf[9] = cap_len + 2; buf[10] = 2;
    ///   buf[11] = cap_len`), in this order:
    ///   1. Multiprotocol IPv4 unicast, `01 04 00 01 00 01` (`bgp_put_cap_ipv4`, under
    ///      `p->cf->advertise_ipv4`, 1 by default in `config.Y`);
    ///   2. Route refresh, `02 00` (`bgp_put_cap_rr`, under `enable_refresh`, default 1);
    ///   3. Graceful restart, `40 06 <R|time> 00 01 01 <F>` (`bgp_put_cap_gr1`: `graceful
    ///      restart;` is `GRACEFUL RESTART bool` with an empty bool, which is 1 in
    ///      `conf/confbase.Y` ("Silence means agreement"), so `gr_mode = BGP_GR_ABLE`; restart
    ///      time `gr_time`, 120 by default; R bit 0x80 of the first octet and F bit 0x80 of the
    ///      family flags both from `p->p.gr_recovery`);
    ///   4. 4-octet AS, `41 04 <AS>` (`bgp_put_cap_as4`, `enable_as4` default 1);
    ///   5. ADD-PATH IPv4 unicast, mode 3 = send and receive (`bgp_put_cap_add_path` writes
    ///      `p->cf->add_path`, and `add paths on` is `ADD_PATH_FULL` = 3);
    ///   6. Enhanced route refresh, `46 00` (`bgp_put_cap_err`, also under `enable_refresh`);
    ///   7. Long-lived graceful restart with no families ("aware"), `47 00`
    ///      (`bgp_put_cap_llgr2`: `llgr_mode` defaults to -1 in `config.Y`, which
    ///      `bgp.c:bgp_check_config` turns into `BGP_LLGR_AWARE` when `gr_mode` is set).
    ///
    ///   Extended messages (cap 6) are not sent: `enable_extended_messages` defaults to 0.
    ///
    /// `restarting`: calico-node starts BIRD as `bird -R` (calico
    /// `node/filesystem/etc/service/available/bird/run`), so `nest/proto.c:proto_init_instance`
    /// sets `gr_recovery` on every protocol at start. The OPENs of that start carry R and F;
    /// once `graceful_restart_done` (or the protocol going down, `proto_falling_down`) clears
    /// it, later OPENs carry neither. The restart time must fit 12 bits.
    pub fn bird_calico(
        my_as: u32,
        hold_time: u16,
        bgp_id: Ipv4Addr,
        restart_time: u16,
        restarting: bool,
    ) -> Open {
        Open {
            version: VERSION,
            my_as,
            hold_time,
            bgp_id,
            capabilities: vec![
                Capability::Multiprotocol { afi: AFI_IPV4, safi: SAFI_UNICAST },
                Capability::RouteRefresh,
                Capability::GracefulRestart {
                    restarting,
                    restart_time,
                    families: vec![(AFI_IPV4, SAFI_UNICAST, restarting)],
                },
                Capability::FourOctetAs(my_as),
                Capability::AddPath(vec![(AFI_IPV4, SAFI_UNICAST, AddPathMode::Both)]),
                Capability::EnhancedRouteRefresh,
                Capability::LongLivedGracefulRestart(Vec::new()),
            ],
        }
    }

    /// The AS number of the 4-octet AS capability, if announced (RFC 6793 §3).
    pub fn four_octet_as(&self) -> Option<u32> {
        self.capabilities.iter().find_map(|c| match c {
            Capability::FourOctetAs(asn) => Some(*asn),
            _ => None,
        })
    }

    /// The ADD-PATH mode announced for IPv4 unicast, if any (RFC 7911 §4). The last tuple for
    /// the family wins, as in BIRD's `bgp_parse_capabilities`.
    pub fn add_path_mode(&self) -> Option<AddPathMode> {
        self.capabilities.iter().rev().find_map(|c| match c {
            Capability::AddPath(families) => {
                families.iter().rev().find(|f| (f.0, f.1) == (AFI_IPV4, SAFI_UNICAST)).map(|f| f.2)
            }
            _ => None,
        })
    }

    /// Whether a capability of this code was announced.
    pub fn has_capability(&self, code: u8) -> bool {
        self.capabilities.iter().any(|c| c.code() == code)
    }

    /// The 2-octet My Autonomous System field: the AS if it fits, else AS_TRANS (RFC 6793
    /// §4.2.1, a speaker whose AS number is not mappable to 2 octets).
    /// BIRD tests `local_as < 0xFFFF`, so it sends AS_TRANS for 65535 too (a reserved AS,
    /// RFC 7300); this follows the RFC.
    pub fn my_as_2octet(&self) -> u16 {
        u16::try_from(self.my_as).unwrap_or(AS_TRANS as u16)
    }

    fn capabilities_len(&self) -> usize {
        self.capabilities.iter().map(|c| 2 + c.value_len()).sum()
    }

    fn body_len(&self) -> usize {
        let caps = self.capabilities_len();
        OPEN_MIN_LEN - HEADER_LEN + if caps > 0 { 2 + caps } else { 0 }
    }

    fn emit(&self, w: &mut Writer) {
        let caps = self.capabilities_len();
        assert!(caps <= CAPABILITIES_MAX, "BGP OPEN capabilities of {caps} octets exceed {CAPABILITIES_MAX}");
        w.u8(self.version);
        w.u16(self.my_as_2octet());
        w.u16(self.hold_time);
        w.ipv4(self.bgp_id);
        if caps == 0 {
            // BIRD: "buf[9] = 0; /* No optional parameters */".
            w.u8(0);
            return;
        }
        w.u8((caps + 2) as u8);
        w.u8(PARAM_CAPABILITIES);
        w.u8(caps as u8);
        for c in &self.capabilities {
            c.emit(w);
        }
    }

    /// Checks of RFC 4271 §6.2, in BIRD's order (`bgp_rx_open`):
    /// - Opt Parm Len not matching the message Length: (1, 2) with the Length field (BIRD;
    ///   RFC 4271 names no error for it);
    /// - Version not 4: (2, 1), data "a 2-octet unsigned integer, which indicates the largest,
    ///   locally-supported version number less than the version the remote BGP peer bid ... or
    ///   if the smallest ... is greater than the version the remote BGP peer bid, then the
    ///   smallest": 4 either way (BIRD sends the peer's version octet instead);
    /// - an optional parameter overrunning the others: (2, 0) (BIRD `bgp_parse_options`);
    ///   a parameter other than Capabilities: (2, 4) "Unsupported Optional Parameters", data
    ///   the parameter (type, length, value); a recognized capability of the wrong length: (2,
    ///   0), "If one of the Optional Parameters in the OPEN message is recognized, but is
    ///   malformed, then the Error Subcode MUST be set to 0 (Unspecific)";
    /// - Hold Time 1 or 2: (2, 6) "Unacceptable Hold Time" ("An implementation MUST reject Hold
    ///   Time values of one or two seconds", §4.2), data the Hold Time (BIRD);
    /// - BGP Identifier 0: (2, 3) "Bad BGP Identifier" (RFC 6286 §2.2: "a 4-octet, unsigned,
    ///   non-zero integer"), data the identifier (BIRD).
    ///
    /// Bad Peer AS and a BGP Identifier equal to one's own need the session's configuration:
    /// the caller checks them.
    fn parse(body: &[u8], length_field: &[u8]) -> core::result::Result<Open, Notification> {
        let opt_len = body[9] as usize;
        if body.len() != 10 + opt_len {
            return Err(Notification::header_error(error::header::BAD_MESSAGE_LENGTH, length_field));
        }
        if body[0] != VERSION {
            return Err(Notification::open_error(
                error::open::UNSUPPORTED_VERSION_NUMBER,
                &u16::from(VERSION).to_be_bytes(),
            ));
        }
        let my_as_2octet = u16::from_be_bytes([body[1], body[2]]);
        let hold_time = u16::from_be_bytes([body[3], body[4]]);
        let bgp_id = Ipv4Addr::new(body[5], body[6], body[7], body[8]);
        let mut capabilities = Vec::new();
        let mut params = Reader::new(&body[10..]);
        while !params.is_empty() {
            let unspecific = || Notification::open_error(error::open::UNSPECIFIC, &[]);
            let start = params.rest();
            let (Some(ptype), Some(plen)) = (params.u8(), params.u8()) else {
                return Err(unspecific());
            };
            let Some(value) = params.take(plen as usize) else {
                return Err(unspecific());
            };
            if ptype != PARAM_CAPABILITIES {
                return Err(Notification::open_error(
                    error::open::UNSUPPORTED_OPTIONAL_PARAMETER,
                    &start[..2 + plen as usize],
                ));
            }
            let mut caps = Reader::new(value);
            while !caps.is_empty() {
                let (Some(code), Some(clen)) = (caps.u8(), caps.u8()) else {
                    return Err(unspecific());
                };
                let Some(data) = caps.take(clen as usize) else {
                    return Err(unspecific());
                };
                capabilities.push(Capability::parse(code, data).ok_or_else(unspecific)?);
            }
        }
        if hold_time == 1 || hold_time == 2 {
            return Err(Notification::open_error(error::open::UNACCEPTABLE_HOLD_TIME, &body[3..5]));
        }
        if bgp_id.is_unspecified() {
            return Err(Notification::open_error(error::open::BAD_BGP_IDENTIFIER, &body[5..9]));
        }
        let mut open =
            Open { version: VERSION, my_as: u32::from(my_as_2octet), hold_time, bgp_id, capabilities };
        if let Some(asn) = open.four_octet_as() {
            open.my_as = asn;
        }
        Ok(open)
    }
}

/// Flag bits of the graceful restart capability (RFC 4724 §3).
const GR_RESTART_FLAG: u16 = 0x8000;
const GR_TIME_MASK: u16 = 0x0fff;
/// "Forwarding State (F)" of a family's flags (RFC 4724 §3; LLGR: RFC 9494 §3).
const FAMILY_FORWARDING: u8 = 0x80;
const LLGR_STALE_TIME_MAX: u32 = 0x00ff_ffff;

impl Capability {
    /// Its Capability Code ([`cap_code`]).
    pub fn code(&self) -> u8 {
        match self {
            Capability::Multiprotocol { .. } => cap_code::MULTIPROTOCOL,
            Capability::RouteRefresh => cap_code::ROUTE_REFRESH,
            Capability::GracefulRestart { .. } => cap_code::GRACEFUL_RESTART,
            Capability::FourOctetAs(_) => cap_code::FOUR_OCTET_AS,
            Capability::AddPath(_) => cap_code::ADD_PATH,
            Capability::EnhancedRouteRefresh => cap_code::ENHANCED_ROUTE_REFRESH,
            Capability::LongLivedGracefulRestart(_) => cap_code::LONG_LIVED_GRACEFUL_RESTART,
            Capability::Unknown { code, .. } => *code,
        }
    }

    /// Octets of the Capability Value.
    fn value_len(&self) -> usize {
        match self {
            Capability::Multiprotocol { .. } | Capability::FourOctetAs(_) => 4,
            Capability::RouteRefresh | Capability::EnhancedRouteRefresh => 0,
            Capability::GracefulRestart { families, .. } => 2 + 4 * families.len(),
            Capability::AddPath(families) => 4 * families.len(),
            Capability::LongLivedGracefulRestart(families) => 7 * families.len(),
            Capability::Unknown { data, .. } => data.len(),
        }
    }

    fn emit(&self, w: &mut Writer) {
        let len = self.value_len();
        assert!(len <= CAPABILITIES_MAX - 2, "BGP capability {} of {len} octets does not fit", self.code());
        w.u8(self.code());
        w.u8(len as u8);
        match self {
            Capability::Multiprotocol { afi, safi } => {
                w.u16(*afi);
                w.u8(0);
                w.u8(*safi);
            }
            Capability::RouteRefresh | Capability::EnhancedRouteRefresh => {}
            Capability::GracefulRestart { restarting, restart_time, families } => {
                assert!(
                    *restart_time <= GR_TIME_MASK,
                    "BGP graceful restart time {restart_time} does not fit 12 bits"
                );
                w.u16(*restart_time | if *restarting { GR_RESTART_FLAG } else { 0 });
                for &(afi, safi, forwarding) in families {
                    w.u16(afi);
                    w.u8(safi);
                    w.u8(if forwarding { FAMILY_FORWARDING } else { 0 });
                }
            }
            Capability::FourOctetAs(asn) => w.u32(*asn),
            Capability::AddPath(families) => {
                for &(afi, safi, mode) in families {
                    w.u16(afi);
                    w.u8(safi);
                    w.u8(mode as u8);
                }
            }
            Capability::LongLivedGracefulRestart(families) => {
                for &(afi, safi, forwarding, stale) in families {
                    assert!(
                        stale <= LLGR_STALE_TIME_MAX,
                        "BGP long-lived stale time {stale} does not fit 24 bits"
                    );
                    w.u16(afi);
                    w.u8(safi);
                    w.u8(if forwarding { FAMILY_FORWARDING } else { 0 });
                    w.bytes(&stale.to_be_bytes()[1..]);
                }
            }
            Capability::Unknown { data, .. } => w.bytes(data),
        }
    }

    /// A capability from its code and value; `None` if a recognized one has the wrong length
    /// (the lengths BIRD's `bgp_parse_capabilities` accepts). Reserved bits are ignored. An
    /// ADD-PATH Send/Receive value other than 1-3 makes the whole capability
    /// [`Capability::Unknown`]: "If any other value is received, then the capability SHOULD be
    /// treated as not understood and ignored" (RFC 7911 §4; BIRD resets the session instead).
    fn parse(code: u8, data: &[u8]) -> Option<Capability> {
        let family = |d: &[u8]| (u16::from_be_bytes([d[0], d[1]]), d[2]);
        Some(match code {
            cap_code::MULTIPROTOCOL if data.len() == 4 => {
                Capability::Multiprotocol { afi: u16::from_be_bytes([data[0], data[1]]), safi: data[3] }
            }
            cap_code::ROUTE_REFRESH if data.is_empty() => Capability::RouteRefresh,
            cap_code::ENHANCED_ROUTE_REFRESH if data.is_empty() => Capability::EnhancedRouteRefresh,
            cap_code::GRACEFUL_RESTART if data.len() >= 2 && (data.len() - 2) % 4 == 0 => {
                let word = u16::from_be_bytes([data[0], data[1]]);
                Capability::GracefulRestart {
                    restarting: word & GR_RESTART_FLAG != 0,
                    restart_time: word & GR_TIME_MASK,
                    families: data[2..]
                        .chunks_exact(4)
                        .map(|f| {
                            let (afi, safi) = family(f);
                            (afi, safi, f[3] & FAMILY_FORWARDING != 0)
                        })
                        .collect(),
                }
            }
            cap_code::FOUR_OCTET_AS if data.len() == 4 => {
                Capability::FourOctetAs(u32::from_be_bytes([data[0], data[1], data[2], data[3]]))
            }
            cap_code::ADD_PATH if data.len() % 4 == 0 => {
                let families: Option<Vec<_>> = data
                    .chunks_exact(4)
                    .map(|f| {
                        let (afi, safi) = family(f);
                        AddPathMode::from_u8(f[3]).map(|mode| (afi, safi, mode))
                    })
                    .collect();
                match families {
                    Some(families) => Capability::AddPath(families),
                    None => Capability::Unknown { code, data: data.to_vec() },
                }
            }
            cap_code::LONG_LIVED_GRACEFUL_RESTART if data.len() % 7 == 0 => {
                Capability::LongLivedGracefulRestart(
                    data.chunks_exact(7)
                        .map(|f| {
                            let (afi, safi) = family(f);
                            (
                                afi,
                                safi,
                                f[3] & FAMILY_FORWARDING != 0,
                                u32::from_be_bytes([0, f[4], f[5], f[6]]),
                            )
                        })
                        .collect(),
                )
            }
            cap_code::MULTIPROTOCOL
            | cap_code::ROUTE_REFRESH
            | cap_code::ENHANCED_ROUTE_REFRESH
            | cap_code::GRACEFUL_RESTART
            | cap_code::FOUR_OCTET_AS
            | cap_code::ADD_PATH
            | cap_code::LONG_LIVED_GRACEFUL_RESTART => return None,
            _ => Capability::Unknown { code, data: data.to_vec() },
        })
    }
}

/// An attribute's header length: flags, type code and a length of one octet, or two with the
/// Extended Length flag, which BIRD sets only for values over 255 octets
/// (`bgp_encode_attr_hdr`: `if (len < 256)`).
const fn attr_header_len(value_len: usize) -> usize {
    if value_len > 255 {
        4
    } else {
        3
    }
}

const WELL_KNOWN: u8 = attr_flag::TRANSITIVE;
const OPTIONAL_NON_TRANSITIVE: u8 = attr_flag::OPTIONAL;
const OPTIONAL_TRANSITIVE: u8 = attr_flag::OPTIONAL | attr_flag::TRANSITIVE;

/// The Optional and Transitive bits an attribute BIRD knows must have (`bgp_attr_table`'s
/// `expected_flags`); `bgp_decode_attrs` compares them for every attribute of the table.
const fn expected_flags(code: u8) -> Option<u8> {
    use attr_type::*;
    match code {
        ORIGIN | AS_PATH | NEXT_HOP | LOCAL_PREF | ATOMIC_AGGREGATE => Some(WELL_KNOWN),
        MULTI_EXIT_DISC | ORIGINATOR_ID | CLUSTER_LIST | MP_REACH_NLRI | MP_UNREACH_NLRI => {
            Some(OPTIONAL_NON_TRANSITIVE)
        }
        AGGREGATOR | COMMUNITIES | EXTENDED_COMMUNITIES | AS4_PATH | AS4_AGGREGATOR | LARGE_COMMUNITY => {
            Some(OPTIONAL_TRANSITIVE)
        }
        _ => None,
    }
}

/// The value length a fixed-length attribute must have (RFC 4271 §5.1, RFC 4456 §8; BIRD's
/// `expected_length`).
const fn expected_len(code: u8) -> Option<usize> {
    use attr_type::*;
    match code {
        ORIGIN => Some(1),
        NEXT_HOP | MULTI_EXIT_DISC | LOCAL_PREF | ORIGINATOR_ID => Some(4),
        ATOMIC_AGGREGATE => Some(0),
        _ => None,
    }
}

/// The chunks an AS_PATH segment is written as: at most 255 AS numbers each, and an empty
/// segment kept as one chunk of none, so that it parses back the same.
fn segment_chunks(asns: &[u32]) -> impl Iterator<Item = &[u32]> {
    let empty: &[u32] = &[];
    asns.chunks(255).chain(asns.is_empty().then_some(empty))
}

/// Octets of an AS_PATH (or AS4_PATH) value.
fn segments_len(segments: &[AsSegment], four_octet: bool) -> usize {
    let width = if four_octet { 4 } else { 2 };
    segments.iter().flat_map(|seg| segment_chunks(seg.asns())).map(|c| 2 + c.len() * width).sum()
}

fn encode_segments(segments: &[AsSegment], four_octet: bool, w: &mut Writer) {
    for seg in segments {
        let (kind, asns) = match seg {
            AsSegment::Set(v) => {
                assert!(v.len() <= 255, "BGP AS_SET of {} AS numbers exceeds 255", v.len());
                (SEGMENT_SET, v)
            }
            AsSegment::Sequence(v) => (SEGMENT_SEQUENCE, v),
        };
        for chunk in segment_chunks(asns) {
            w.u8(kind);
            w.u8(chunk.len() as u8);
            for &asn in chunk {
                if four_octet {
                    w.u32(asn);
                } else {
                    w.u16(u16::try_from(asn).unwrap_or(AS_TRANS as u16));
                }
            }
        }
    }
}

/// The value lengths of the attributes [`PathAttrs`] writes, in order (at most eight).
struct AttrLens {
    lens: [usize; 8],
    n: usize,
}

impl AttrLens {
    fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.lens[..self.n].iter().copied()
    }

    /// Octets of the Path Attributes field.
    fn total(&self) -> usize {
        self.iter().map(|l| attr_header_len(l) + l).sum()
    }
}

impl PathAttrs {
    /// Whether a 2-octet session needs AS4_PATH for this path (RFC 6793 §4.2.2).
    fn needs_as4_path(&self, s: Session) -> bool {
        !s.four_octet_as && self.as_path.iter().flat_map(AsSegment::asns).any(|&asn| asn > 0xffff)
    }

    /// The value lengths of the attributes [`PathAttrs::encode`] writes, in its order, without
    /// writing them.
    fn value_lens(&self, s: Session) -> AttrLens {
        let mut out = AttrLens { lens: [0; 8], n: 0 };
        if self.is_empty() {
            return out;
        }
        let mut push = |len| {
            out.lens[out.n] = len;
            out.n += 1;
        };
        if self.origin.is_some() {
            push(1);
        }
        push(segments_len(&self.as_path, s.four_octet_as));
        if self.needs_as4_path(s) {
            push(segments_len(&self.as_path, true));
        }
        for present in [self.next_hop.is_some(), self.med.is_some(), self.local_pref.is_some()] {
            if present {
                push(4);
            }
        }
        if self.originator_id.is_some() {
            push(4);
        }
        if !self.cluster_list.is_empty() {
            push(4 * self.cluster_list.len());
        }
        out
    }

    /// Writes the attributes in the order and with the flags BIRD's `bgp_encode_attrs` writes
    /// them; `lens` are their [`PathAttrs::value_lens`].
    fn encode(&self, s: Session, lens: &AttrLens, w: &mut Writer) {
        let mut lens = lens.iter();
        let mut header = |w: &mut Writer, flags: u8, code: u8| {
            let len = lens.next().expect("one length per attribute");
            if len > 255 {
                w.u8(flags | attr_flag::EXTENDED_LENGTH);
                w.u8(code);
                w.u16(len as u16);
            } else {
                w.u8(flags);
                w.u8(code);
                w.u8(len as u8);
            }
        };
        if self.is_empty() {
            return;
        }
        if let Some(origin) = self.origin {
            header(w, WELL_KNOWN, attr_type::ORIGIN);
            w.u8(origin as u8);
        }
        header(w, WELL_KNOWN, attr_type::AS_PATH);
        encode_segments(&self.as_path, s.four_octet_as, w);
        if self.needs_as4_path(s) {
            header(w, OPTIONAL_TRANSITIVE, attr_type::AS4_PATH);
            encode_segments(&self.as_path, true, w);
        }
        if let Some(nh) = self.next_hop {
            header(w, WELL_KNOWN, attr_type::NEXT_HOP);
            w.ipv4(nh);
        }
        if let Some(med) = self.med {
            header(w, OPTIONAL_NON_TRANSITIVE, attr_type::MULTI_EXIT_DISC);
            w.u32(med);
        }
        if let Some(lp) = self.local_pref {
            header(w, WELL_KNOWN, attr_type::LOCAL_PREF);
            w.u32(lp);
        }
        if let Some(id) = self.originator_id {
            header(w, OPTIONAL_NON_TRANSITIVE, attr_type::ORIGINATOR_ID);
            w.ipv4(id);
        }
        if !self.cluster_list.is_empty() {
            header(w, OPTIONAL_NON_TRANSITIVE, attr_type::CLUSTER_LIST);
            for &id in &self.cluster_list {
                w.ipv4(id);
            }
        }
    }

    /// Octets of the Path Attributes field.
    pub fn wire_len(&self, s: Session) -> usize {
        self.value_lens(s).total()
    }
}

/// Whether BIRD takes an address as a NEXT_HOP: `bgp_check_next_hop` wants `ipa_classify(addr)
/// & IADDR_HOST` (`lib/ip.c:ip4_classify`), which excludes 0.0.0.0/8, 224.0.0.0/4 and
/// 255.255.255.255 (RFC 4271 §6.3: "Syntactic correctness means that the NEXT_HOP attribute
/// represents a valid IP host address").
pub fn valid_next_hop(addr: Ipv4Addr) -> bool {
    let first = addr.octets()[0];
    first != 0 && !addr.is_multicast() && !addr.is_broadcast()
}

/// Segments of an AS_PATH or AS4_PATH value, `None` if malformed. AS_CONFED_* segments are
/// dropped, as BIRD's `validate_path` does ("contains AS_CONFED_* segment, skipping segment").
fn parse_segments(value: &[u8], width: usize) -> Option<Vec<AsSegment>> {
    let mut r = Reader::new(value);
    let mut out = Vec::new();
    while !r.is_empty() {
        let kind = r.u8()?;
        let count = r.u8()? as usize;
        let data = r.take(count * width)?;
        let asns = data
            .chunks_exact(width)
            .map(|c| {
                if width == 4 {
                    u32::from_be_bytes([c[0], c[1], c[2], c[3]])
                } else {
                    u32::from(u16::from_be_bytes([c[0], c[1]]))
                }
            })
            .collect();
        match kind {
            SEGMENT_SET => out.push(AsSegment::Set(asns)),
            SEGMENT_SEQUENCE => out.push(AsSegment::Sequence(asns)),
            SEGMENT_CONFED_SEQUENCE | SEGMENT_CONFED_SET => {}
            _ => return None,
        }
    }
    Some(out)
}

/// RFC 6793 §4.2.3: "if the number of AS numbers in the AS_PATH attribute is larger than or
/// equal to the number of AS numbers in the AS4_PATH attribute, then the AS path information
/// SHALL be constructed by taking as many AS numbers and path segments as necessary from the
/// leading part of the AS_PATH attribute, and then prepending them to the AS4_PATH attribute"
/// (BIRD `bgp_reconstruct_4b_atts` -> `bgp_merge_as_paths`). Otherwise AS4_PATH is ignored.
fn merge_as4_path(as_path: Vec<AsSegment>, as4_path: Vec<AsSegment>) -> Vec<AsSegment> {
    let len2: usize = as_path.iter().map(AsSegment::path_len).sum();
    let len4: usize = as4_path.iter().map(AsSegment::path_len).sum();
    if len4 == 0 || len2 < len4 {
        return as_path;
    }
    let mut keep = len2 - len4;
    let mut out = Vec::new();
    for seg in as_path {
        if keep == 0 {
            break;
        }
        match seg {
            AsSegment::Set(v) => {
                out.push(AsSegment::Set(v));
                keep -= 1;
            }
            AsSegment::Sequence(mut v) => {
                v.truncate(keep);
                keep -= v.len();
                out.push(AsSegment::Sequence(v));
            }
        }
    }
    out.extend(as4_path);
    out
}

impl PathAttrs {
    /// The Path Attributes field (RFC 4271 §6.3 checks, as BIRD's `bgp_decode_attrs` does them):
    /// - an attribute cut short by the end of the field, or one appearing twice: (3, 1)
    ///   "Malformed Attribute List" ("If any attribute appears more than once in the UPDATE
    ///   message, then the Error Subcode MUST be set to Malformed Attribute List");
    /// - for an attribute BIRD knows: a fixed length not matched, (3, 5) "Attribute Length
    ///   Error"; Optional or Transitive bits not its own, (3, 4) "Attribute Flags Error"; an
    ///   ORIGIN over 2, (3, 6); an AS_PATH that does not parse, (3, 11) "Malformed AS_PATH"; a
    ///   NEXT_HOP that is not a host address ([`valid_next_hop`]), (3, 8); a CLUSTER_LIST not a
    ///   multiple of 4 octets, (3, 5) (BIRD `bgp_check_cluster_list`). "The Data field MUST
    ///   contain the erroneous attribute (type, length, and value)";
    /// - an unknown attribute without the Optional bit: (3, 2) "Unrecognized Well-known
    ///   Attribute", data the attribute; unknown optional ones are skipped;
    /// - with NLRI present, ORIGIN, AS_PATH or NEXT_HOP missing: (3, 3) "Missing Well-known
    ///   Attribute", data its type code.
    ///
    /// AS4_PATH is used only in a 2-octet session, and dropped if malformed ("attribute
    /// discard", RFC 6793 §6); between two NEW speakers it is discarded (RFC 6793 §4.1; BIRD's
    /// `bgp_remove_as4_attrs` removes it in either case).
    fn parse(data: &[u8], s: Session, has_nlri: bool) -> core::result::Result<PathAttrs, Notification> {
        let malformed = || Notification::update_error(error::update::MALFORMED_ATTRIBUTE_LIST, &[]);
        let mut attrs = PathAttrs::default();
        let mut seen = [false; 256];
        let mut as4_path = None;
        let mut r = Reader::new(data);
        while !r.is_empty() {
            let start = r.rest();
            let (Some(flags), Some(code)) = (r.u8(), r.u8()) else { return Err(malformed()) };
            let len = if flags & attr_flag::EXTENDED_LENGTH != 0 {
                r.u16().map(usize::from)
            } else {
                r.u8().map(usize::from)
            };
            let Some(len) = len else { return Err(malformed()) };
            let Some(value) = r.take(len) else { return Err(malformed()) };
            let whole = &start[..start.len() - r.rest().len()];
            let attr_error = |subcode| Notification::update_error(subcode, whole);
            if std::mem::replace(&mut seen[code as usize], true) {
                return Err(malformed());
            }
            let Some(expected) = expected_flags(code) else {
                if flags & attr_flag::OPTIONAL == 0 {
                    return Err(attr_error(error::update::UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE));
                }
                continue;
            };
            if expected_len(code).is_some_and(|l| l != len) {
                return Err(attr_error(error::update::ATTRIBUTE_LENGTH_ERROR));
            }
            if (flags ^ expected) & (attr_flag::OPTIONAL | attr_flag::TRANSITIVE) != 0 {
                return Err(attr_error(error::update::ATTRIBUTE_FLAGS_ERROR));
            }
            let u32_value = || u32::from_be_bytes([value[0], value[1], value[2], value[3]]);
            let ipv4_value = || Ipv4Addr::new(value[0], value[1], value[2], value[3]);
            match code {
                attr_type::ORIGIN => {
                    let Some(origin) = Origin::from_u8(value[0]) else {
                        return Err(attr_error(error::update::INVALID_ORIGIN_ATTRIBUTE));
                    };
                    attrs.origin = Some(origin);
                }
                attr_type::AS_PATH => {
                    let width = if s.four_octet_as { 4 } else { 2 };
                    let Some(path) = parse_segments(value, width) else {
                        return Err(attr_error(error::update::MALFORMED_AS_PATH));
                    };
                    attrs.as_path = path;
                }
                attr_type::NEXT_HOP => {
                    let nh = ipv4_value();
                    if !valid_next_hop(nh) {
                        return Err(attr_error(error::update::INVALID_NEXT_HOP_ATTRIBUTE));
                    }
                    attrs.next_hop = Some(nh);
                }
                attr_type::MULTI_EXIT_DISC => attrs.med = Some(u32_value()),
                attr_type::LOCAL_PREF => attrs.local_pref = Some(u32_value()),
                attr_type::ORIGINATOR_ID => attrs.originator_id = Some(ipv4_value()),
                attr_type::CLUSTER_LIST => {
                    if len % 4 != 0 {
                        return Err(attr_error(error::update::ATTRIBUTE_LENGTH_ERROR));
                    }
                    attrs.cluster_list =
                        value.chunks_exact(4).map(|c| Ipv4Addr::new(c[0], c[1], c[2], c[3])).collect();
                }
                attr_type::AS4_PATH if !s.four_octet_as => as4_path = parse_segments(value, 4),
                // ATOMIC_AGGREGATE, AGGREGATOR, communities, MP_(UN)REACH_NLRI, a 4-octet
                // session's AS4_PATH: checked as above, not modelled.
                _ => {}
            }
        }
        if has_nlri {
            for code in [attr_type::ORIGIN, attr_type::AS_PATH, attr_type::NEXT_HOP] {
                if !seen[code as usize] {
                    return Err(Notification::update_error(
                        error::update::MISSING_WELL_KNOWN_ATTRIBUTE,
                        &[code],
                    ));
                }
            }
        }
        if let Some(as4) = as4_path {
            attrs.as_path = merge_as4_path(std::mem::take(&mut attrs.as_path), as4);
        }
        Ok(attrs)
    }
}

fn emit_prefix(w: &mut Writer, p: &Prefix, s: Session) {
    if s.add_path {
        w.u32(p.path_id.unwrap_or(0));
    }
    let bits = p.net.prefix();
    w.u8(bits);
    w.bytes(&p.net.network().octets()[..(bits as usize).div_ceil(8)]);
}

/// Withdrawn Routes or NLRI: each prefix a Length in bits and "the minimum number of octets"
/// (RFC 4271 §4.3), after a Path Identifier with ADD-PATH (RFC 7911 §3). "The value of trailing
/// bits is irrelevant": host bits are cleared, as BIRD's `DECODE_PREFIX` does. A Length over 32
/// or a prefix cut short: (3, 10) "Invalid Network Field" (RFC 4271 §6.3: "If the field is
/// syntactically incorrect"; BIRD sends (3, 1) for a cut-short one).
fn parse_prefixes(data: &[u8], s: Session) -> core::result::Result<Vec<Prefix>, Notification> {
    let invalid = || Notification::update_error(error::update::INVALID_NETWORK_FIELD, &[]);
    let mut r = Reader::new(data);
    let mut out = Vec::new();
    while !r.is_empty() {
        let path_id = if s.add_path { Some(r.u32().ok_or_else(invalid)?) } else { None };
        let bits = r.u8().ok_or_else(invalid)?;
        if bits > 32 {
            return Err(invalid());
        }
        let octets = r.take((bits as usize).div_ceil(8)).ok_or_else(invalid)?;
        let mut addr = [0u8; 4];
        addr[..octets.len()].copy_from_slice(octets);
        let mask = if bits == 0 { 0 } else { u32::MAX << (32 - bits) };
        let network = Ipv4Addr::from(u32::from_be_bytes(addr) & mask);
        let net = Ipv4Net::new(network, bits).ok_or_else(invalid)?;
        out.push(Prefix { path_id, net });
    }
    Ok(out)
}

impl Update {
    /// End-of-RIB for IPv4 unicast: "an UPDATE message with no reachable Network Layer
    /// Reachability Information (NLRI) and empty withdrawn NLRI" (RFC 4724 §2), which for IPv4
    /// unicast is the 23-octet UPDATE with both lengths zero (BIRD `bgp_create_end_mark`:
    /// `put_u32(buf, 0)`).
    pub fn end_of_rib() -> Update {
        Update::default()
    }

    /// Whether this is the IPv4 unicast End-of-RIB: no withdrawn routes, no attributes, no
    /// NLRI (BIRD `bgp_do_rx_update`: `if (!withdrawn_len && !attr_len && !nlri_len)`). An
    /// UPDATE whose only attributes are ones this codec skips (such as another family's
    /// End-of-RIB, an empty MP_UNREACH_NLRI) parses to the same value.
    pub fn is_end_of_rib(&self) -> bool {
        self.withdrawn.is_empty() && self.attrs.is_empty() && self.nlri.is_empty()
    }

    fn body_len(&self, s: Session) -> usize {
        4 + self.withdrawn.iter().map(|p| p.wire_len(s)).sum::<usize>()
            + self.attrs.wire_len(s)
            + self.nlri.iter().map(|p| p.wire_len(s)).sum::<usize>()
    }

    fn emit(&self, s: Session, w: &mut Writer) {
        emit_update_body(w, s, &self.withdrawn, &self.attrs, &self.attrs.value_lens(s), &self.nlri);
    }

    /// The lengths first (RFC 4271 §6.3: "If the Withdrawn Routes Length or Total Attribute
    /// Length is too large (i.e., if Withdrawn Routes Length + Total Attribute Length + 23
    /// exceeds the message Length), then the Error Subcode MUST be set to Malformed Attribute
    /// List"), then withdrawn routes, attributes and NLRI in BIRD's order (`bgp_rx_update`,
    /// `bgp_do_rx_update`), each as its parser says ([`PathAttrs`], prefixes).
    fn parse(body: &[u8], s: Session) -> core::result::Result<Update, Notification> {
        let malformed = || Notification::update_error(error::update::MALFORMED_ATTRIBUTE_LIST, &[]);
        let mut r = Reader::new(body);
        let withdrawn_len = r.u16().ok_or_else(malformed)? as usize;
        let withdrawn = r.take(withdrawn_len).ok_or_else(malformed)?;
        let attrs_len = r.u16().ok_or_else(malformed)? as usize;
        let attrs = r.take(attrs_len).ok_or_else(malformed)?;
        let nlri = r.rest();
        let withdrawn = parse_prefixes(withdrawn, s)?;
        let attrs = PathAttrs::parse(attrs, s, !nlri.is_empty())?;
        let nlri = parse_prefixes(nlri, s)?;
        Ok(Update { withdrawn, attrs, nlri })
    }
}

/// Room BIRD's `bgp_create_update` starts with: `bgp_max_packet_length(p) - BGP_HEADER_LENGTH
/// - 4` (the two length fields), 4073 octets.
const BIRD_UPDATE_ROOM: usize = MAX_LEN - HEADER_LEN - 4;
/// BIRD encodes the attributes into `remains - 1024` and drops the routes when they do not fit.
const BIRD_ATTRS_ROOM: usize = BIRD_UPDATE_ROOM - 1024;
/// `bgp_encode_prefixes` adds prefixes `while (... (remains >= (5+sizeof(ip_addr))))`: room for
/// the largest IPv4 prefix with a Path Identifier (4 + 1 + 4), with or without ADD-PATH.
const BIRD_PREFIX_ROOM: usize = 5 + 4;

/// Whether BIRD's `bgp_encode_attrs` fits the attributes in [`BIRD_ATTRS_ROOM`]: it gives up
/// when `remains < len + 4` before any attribute.
fn bird_attrs_fit(lens: &AttrLens) -> bool {
    let mut remains = BIRD_ATTRS_ROOM;
    for len in lens.iter() {
        if remains < len + 4 {
            return false;
        }
        remains -= attr_header_len(len) + len;
    }
    true
}

/// An UPDATE's body: Withdrawn Routes, Path Attributes (`lens` their value lengths) and NLRI.
fn emit_update_body(
    w: &mut Writer,
    s: Session,
    withdrawn: &[Prefix],
    attrs: &PathAttrs,
    lens: &AttrLens,
    nlri: &[Prefix],
) {
    w.u16(prefixes_len(withdrawn, s) as u16);
    for p in withdrawn {
        emit_prefix(w, p, s);
    }
    w.u16(lens.total() as u16);
    let start = w.pos;
    attrs.encode(s, lens, w);
    debug_assert_eq!(w.pos - start, lens.total(), "PathAttrs::value_lens and encode disagree");
    for p in nlri {
        emit_prefix(w, p, s);
    }
}

fn prefixes_len(prefixes: &[Prefix], s: Session) -> usize {
    prefixes.iter().map(|p| p.wire_len(s)).sum()
}

/// Appends one UPDATE to `out`, header included.
fn write_update(
    out: &mut Vec<u8>,
    s: Session,
    withdrawn: &[Prefix],
    attrs: &PathAttrs,
    lens: &AttrLens,
    nlri: &[Prefix],
) {
    let len = HEADER_LEN + 4 + prefixes_len(withdrawn, s) + lens.total() + prefixes_len(nlri, s);
    assert!(len <= MAX_LEN, "BGP UPDATE of {len} octets exceeds {MAX_LEN}");
    let start = out.len();
    out.resize(start + len, 0);
    let mut packet = Packet::new_unchecked(&mut out[start..]);
    packet.set_marker();
    packet.set_length(len as u16);
    packet.set_msg_type(Kind::Update.code());
    let mut w = Writer { buf: packet.body_mut(), pos: 0 };
    emit_update_body(&mut w, s, withdrawn, attrs, lens, nlri);
    debug_assert_eq!(w.pos, len - HEADER_LEN);
}

/// The UPDATEs of [`pack_updates`], appended to `out` as bytes without building them; how
/// many.
pub fn write_updates(attrs: &PathAttrs, nlri: &[Prefix], s: Session, out: &mut Vec<u8>) -> usize {
    let lens = attrs.value_lens(s);
    let mut n = 0;
    for chunk in pack_chunks(&lens, nlri, s) {
        write_update(out, s, &[], attrs, &lens, chunk);
        n += 1;
    }
    n
}

/// The UPDATEs of [`pack_withdrawals`], appended to `out` as bytes; how many.
pub fn write_withdrawals(w: &[Prefix], s: Session, out: &mut Vec<u8>) -> usize {
    let attrs = PathAttrs::default();
    let lens = attrs.value_lens(s);
    let mut n = 0;
    for chunk in pack_chunks(&lens, w, s) {
        write_update(out, s, chunk, &attrs, &lens, &[]);
        n += 1;
    }
    n
}

/// The runs of `routes` BIRD's `bgp_create_update` puts in one packet each, with attributes of
/// value lengths `lens`: prefixes in order, each added while at least [`BIRD_PREFIX_ROOM`]
/// octets remain. None when the attributes do not fit (BIRD: "Attribute list too long,
/// skipping corresponding routes").
fn pack_chunks<'a>(lens: &AttrLens, routes: &'a [Prefix], s: Session) -> impl Iterator<Item = &'a [Prefix]> {
    let room = if bird_attrs_fit(lens) { BIRD_UPDATE_ROOM - lens.total() } else { 0 };
    let mut rest = if room > 0 { routes } else { &[] };
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut remains = room;
        let mut n = 0;
        while n < rest.len() && remains >= BIRD_PREFIX_ROOM {
            remains -= rest[n].wire_len(s);
            n += 1;
        }
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        Some(chunk)
    })
}

/// Fill UPDATEs the way BIRD's `bgp_create_update` fills a packet: prefixes in order, each
/// added while at least [`BIRD_PREFIX_ROOM`] octets remain, so a message can end a few octets
/// short of [`MAX_LEN`].
fn pack(attrs: &PathAttrs, routes: &[Prefix], s: Session, withdraw: bool) -> Vec<Update> {
    pack_chunks(&attrs.value_lens(s), routes, s)
        .map(|chunk| {
            if withdraw {
                Update { withdrawn: chunk.to_vec(), ..Update::default() }
            } else {
                Update { withdrawn: Vec::new(), attrs: attrs.clone(), nlri: chunk.to_vec() }
            }
        })
        .collect()
}

/// Splits routes into as few UPDATE messages as fit MAX_LEN (the way BIRD's bgp_create_update
/// fills a packet): used by the speaker to advertise many prefixes.
///
/// Every UPDATE carries `attrs` and a run of `nlri` in order, and none withdraws: BIRD sends
/// one bucket (one attribute set) per packet, and withdrawals in packets of their own
/// ([`pack_withdrawals`]). It adds a prefix while 9 octets remain, so without ADD-PATH a
/// message holds up to 809 /26s with Calico's 21 octets of attributes (4089 octets), with it
/// 450 (4094 octets). No NLRI, no UPDATE; attributes longer than about 3 KB, none either (BIRD
/// drops such routes). `attrs` should hold ORIGIN and NEXT_HOP (AS_PATH is always written): a
/// receiver refuses NLRI without them with (3, 3).
pub fn pack_updates(attrs: &PathAttrs, nlri: &[Prefix], s: Session) -> Vec<Update> {
    pack(attrs, nlri, s, false)
}

/// [`pack_updates`] for withdrawals: UPDATEs with Withdrawn Routes only, no attributes, no NLRI
/// (BIRD `bgp_create_update` with a non-empty `withdraw_bucket`).
pub fn pack_withdrawals(w: &[Prefix], s: Session) -> Vec<Update> {
    pack(&PathAttrs::default(), w, s, true)
}

/// Sequential writes into a buffer sized beforehand ([`Message::buffer_len`]).
struct Writer<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl Writer<'_> {
    fn bytes(&mut self, b: &[u8]) {
        self.buf[self.pos..self.pos + b.len()].copy_from_slice(b);
        self.pos += b.len();
    }
    fn u8(&mut self, v: u8) {
        self.bytes(&[v]);
    }
    fn u16(&mut self, v: u16) {
        self.bytes(&v.to_be_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.bytes(&v.to_be_bytes());
    }
    fn ipv4(&mut self, a: Ipv4Addr) {
        self.bytes(&a.octets());
    }
}

/// Sequential reads that return `None` instead of reading past the end.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf }
    }
    fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
    fn rest(&self) -> &'a [u8] {
        self.buf
    }
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.buf.len() {
            return None;
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

#[cfg(test)]
mod tests;
