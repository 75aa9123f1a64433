//! The `bgp:` section: Calico's BGP speakers, simulated.

use std::net::Ipv4Addr;

use super::{ChosenCni, Locator, Res};
use crate::bgp::Timers;
use crate::cluster::{Bgp, Cni, Fabric, NodeSpec};
use crate::scenario::locate::Seg;
use crate::scenario::Scenario;
use crate::time::Duration;

/// Calico's default AS (BGPConfiguration `asNumber`, "default: 64512").
const CALICO_AS: u32 = 64512;
/// The cluster ID Calico's route-reflector documentation configures
/// (`routeReflectorClusterID: 244.0.0.1`).
const DOCS_CLUSTER_ID: Ipv4Addr = Ipv4Addr::new(244, 0, 0, 1);
/// RFC 4271 §4.2: "Hold Time MUST be either zero or at least three seconds".
const MIN_HOLD: Duration = Duration::from_secs(3);
/// The largest hold time the 16-bit OPEN field carries, in seconds.
const MAX_HOLD_SECS: u64 = 65_535;

pub(super) fn resolve_bgp(
    loc: &Locator,
    s: &Scenario,
    chosen: ChosenCni,
    nodes: &[NodeSpec],
    fabric: &Fabric,
) -> Res<Option<Bgp>> {
    let Some(b) = &s.bgp else { return Ok(None) };
    if !chosen.cni.runs_bird() {
        return Err(loc.err(
            at!["bgp"],
            format!(
                "bgp: simulates Calico's BIRD speakers, but {} runs no BGP (only calico-bgp, calico-ipip \
                 and calico-ipip-crosssubnet do); remove the section or choose one of those",
                chosen.describe()
            ),
        ));
    }
    if chosen.cni == Cni::CalicoBgp && matches!(fabric, Fabric::LeafSpine { .. }) {
        return Err(loc.err(
            at!["bgp"],
            "calico-bgp on a leaf-spine fabric needs the nodes to peer with their ToRs, which cnisim does \
             not simulate yet (the fabric's routes are installed as converged); remove `bgp:`, or use \
             calico-ipip, whose mesh runs over the fabric",
        ));
    }
    let mut reflectors = Vec::new();
    for (i, name) in b.route_reflectors.iter().enumerate() {
        let Some(n) = nodes.iter().position(|x| &x.name == name) else {
            return Err(loc.err(
                at!["bgp", "route_reflectors", i],
                format!("route reflector '{name}' names no node; check the name against the nodes"),
            ));
        };
        if reflectors.contains(&n) {
            return Err(loc.err(
                at!["bgp", "route_reflectors", i],
                format!("node '{name}' is listed twice as a route reflector; list it once"),
            ));
        }
        reflectors.push(n);
    }
    if !reflectors.is_empty() && reflectors.len() == nodes.len() {
        return Err(loc.err(
            at!["bgp", "route_reflectors"],
            "every node is a route reflector, so no node is a client and the reflectors only peer \
             with each other; leave at least one node out",
        ));
    }
    let cluster_id = match &b.cluster_id {
        None => DOCS_CLUSTER_ID,
        Some(text) => text.parse().map_err(|_| {
            loc.err(
                at!["bgp", "cluster_id"],
                format!("cluster_id '{text}' is not an IPv4 address; write it like \"244.0.0.1\""),
            )
        })?,
    };
    if b.cluster_id.is_some() && reflectors.is_empty() {
        return Err(loc.err(
            at!["bgp", "cluster_id"],
            "cluster_id is the route reflectors' and there are none; list `route_reflectors` or remove it",
        ));
    }
    let as_number = b.as_number.unwrap_or(CALICO_AS);
    if as_number == 0 || as_number == 23456 {
        return Err(loc.err(
            at!["bgp", "as_number"],
            format!(
                "AS {as_number} is reserved (0 by RFC 7607, 23456 is AS_TRANS, RFC 6793); use a private AS \
                 such as 64512"
            ),
        ));
    }
    let d = Timers::default();
    let hold = b.hold_time.unwrap_or(d.hold);
    if hold != Duration::ZERO && (hold < MIN_HOLD || hold.as_nanos() > MAX_HOLD_SECS * 1_000_000_000) {
        return Err(loc.err(
            at!["bgp", "hold_time"],
            format!("hold_time {hold} must be 0 or 3s to 65535s (RFC 4271 §4.2); BIRD's default is 240s"),
        ));
    }
    if hold.as_nanos() % 1_000_000_000 != 0 {
        return Err(loc.err(
            at!["bgp", "hold_time"],
            format!("hold_time {hold} is not whole seconds, and OPEN carries seconds; round it"),
        ));
    }
    if let Some(k) = b.keepalive_time {
        if k == Duration::ZERO || (hold != Duration::ZERO && k >= hold) {
            return Err(loc.err(
                at!["bgp", "keepalive_time"],
                format!("keepalive_time {k} must be above zero and below the hold time {hold}; BIRD's default is a third of it"),
            ));
        }
    }
    let positive = |v: Option<Duration>, key: &'static str, default: Duration| -> Res<Duration> {
        match v {
            Some(x) if x == Duration::ZERO => Err(loc.err(
                at!["bgp", key],
                format!("{key} is zero; give a time such as \"{default}\" (Calico's value)"),
            )),
            Some(x) => Ok(x),
            None => Ok(default),
        }
    };
    let connect_delay = b.connect_delay.unwrap_or(d.connect_delay);
    let connect_retry = positive(b.connect_retry, "connect_retry", d.connect_retry)?;
    let error_wait = b.error_wait.unwrap_or(d.error_wait);
    if error_wait.0 == Duration::ZERO || error_wait.0 > error_wait.1 {
        return Err(loc.err(
            at!["bgp", "error_wait"],
            format!(
                "error_wait ({}, {}) must be (min, max) with 0 < min <= max; Calico's is (\"5s\", \"30s\")",
                error_wait.0, error_wait.1
            ),
        ));
    }
    let graceful_restart = b.graceful_restart.unwrap_or(d.graceful_restart);
    if graceful_restart.as_nanos() > 4095 * 1_000_000_000 || graceful_restart.as_nanos() % 1_000_000_000 != 0
    {
        return Err(loc.err(
            at!["bgp", "graceful_restart"],
            format!(
                "graceful_restart {graceful_restart} must be whole seconds up to 4095s (the capability's 12-bit \
                 field, RFC 4724 §3)"
            ),
        ));
    }
    let graceful_restart_wait =
        positive(b.graceful_restart_wait, "graceful_restart_wait", d.graceful_restart_wait)?;
    let start_spread = b.start_spread.unwrap_or(Duration::ZERO);
    if start_spread >= s.duration {
        return Err(loc.err(
            at!["bgp", "start_spread"],
            format!(
                "start_spread {start_spread} is not shorter than the scenario ({}), so some BIRDs would never \
                 start; shorten it or lengthen duration",
                s.duration
            ),
        ));
    }
    Ok(Some(Bgp {
        as_number,
        reflectors,
        cluster_id,
        start_spread,
        timers: Timers {
            hold,
            startup_hold: d.startup_hold,
            keepalive: b.keepalive_time,
            connect_delay,
            connect_retry,
            error_wait,
            graceful_restart,
            graceful_restart_wait,
        },
    }))
}
