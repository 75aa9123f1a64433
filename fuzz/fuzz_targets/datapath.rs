//! The datapath on arbitrary frames: frames injected at a NIC (or switch port) of a small
//! world built from a shipped scenario must never panic the simulator, and the scenario's own
//! workloads must still conserve packets. The input format is in `src/lib.rs`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| cnisim_fuzz::run(data));
