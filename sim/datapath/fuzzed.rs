//! Regression tests for frames the `datapath` fuzz target (`fuzz/`, docs/fuzzing.md) found
//! to break the pipeline: literal bytes off the wire that no cnisim sender builds, fed to the
//! step a cable hands them to. Each must end as an accounted drop, never a panic.

use super::*;
use crate::cluster::WorkloadKind;
use crate::units::Bandwidth;
use crate::world::LinkEnd;

/// The two-node flannel-host-gw world of `testkit`, built as `run` builds it.
fn world() -> World {
    let kind = WorkloadKind::UdpCbr { rate: Bandwidth(1_000_000), payload: 64 };
    crate::build::build(&crate::testkit::cluster(2, 1, kind, &[(0, 1)]))
}

fn control(frame: &[u8]) -> Packet {
    Packet { frame: frame.to_vec(), meta: Default::default() }
}

/// The drop reasons among `actions`.
fn drops(actions: &[Action]) -> Vec<DropReason> {
    actions
        .iter()
        .filter_map(|a| if let Action::Drop { reason, .. } = a { Some(*reason) } else { None })
        .collect()
}

/// A node's eth0 and the underlay switch's port, as cables reach them.
fn ends(w: &World) -> (DevId, (usize, usize)) {
    let nic = w.link_ends.iter().find_map(|e| if let LinkEnd::Device(d) = e { Some(*d) } else { None });
    let port = w.link_ends.iter().find_map(|e| match e {
        LinkEnd::Switch { switch, port } => Some((*switch, *port)),
        _ => None,
    });
    (nic.expect("a NIC at a cable's end"), port.expect("a switch port"))
}

#[test]
fn runt_frames_are_dropped_by_nic_and_switch() {
    // fuzz/artifacts/datapath/crash-9113c63d: a 0-byte frame reached the switch and
    // `eth_dst_src` sliced past its end. Shorter than an Ethernet header: 0, 1 and 13 bytes.
    for frame in [&[][..], &[0xff][..], &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 1, 8][..]] {
        let mut w = world();
        let (nic, (sw, port)) = ends(&w);
        let mut cx = Ctx::new(Instant::ZERO);
        nic_rx(&mut w, &mut cx, nic, control(frame));
        assert_eq!(drops(&cx.actions), [DropReason::Malformed], "NIC, {} B", frame.len());

        let mut out = Vec::new();
        switch_input(&mut w, sw, port, control(frame), Instant::ZERO, &mut out);
        assert_eq!(drops(&out), [DropReason::Malformed], "switch, {} B", frame.len());
    }
}
