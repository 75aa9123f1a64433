//! The simulator's own memory: how many bytes the process holds, and the cap a simulation must
//! stay under.
//!
//! The library does not measure memory itself (it touches no file): the `cnisim` binary hands
//! in a probe with [`set_probe`] (the process's resident set, from `/proc/self/status`) and the
//! cap with [`set_cap`] (`--max-memory`, by default 80% of the memory the machine has
//! available). Long loops (the event loop, the build) call [`check`], which fails once the
//! process holds more than the cap, so a run that outgrows the machine ends with an error
//! instead of being killed. Without a probe (the library in tests and benches) nothing is
//! measured and [`check`] always passes.
//!
//! The resident set, not a count of allocations: a latency histogram allocates ~250 KiB of
//! zeroed counters of which a run touches a few pages, and only touched pages use memory.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use crate::error::Error;

static PROBE: OnceLock<fn() -> Option<u64>> = OnceLock::new();
/// The cap in bytes; 0: none.
static CAP: AtomicU64 = AtomicU64::new(0);

/// Installs the function that says how many bytes the process holds (once; later calls are
/// ignored).
pub fn set_probe(probe: fn() -> Option<u64>) {
    let _ = PROBE.set(probe);
}

/// Sets the cap in bytes; `None` removes it.
pub fn set_cap(bytes: Option<u64>) {
    CAP.store(bytes.unwrap_or(0), Ordering::Relaxed);
}

/// The cap, if one is set.
pub fn cap() -> Option<u64> {
    Some(CAP.load(Ordering::Relaxed)).filter(|&c| c > 0)
}

/// Bytes the process holds now, if a probe is installed and can tell.
pub fn in_use() -> Option<u64> {
    PROBE.get().and_then(|p| p())
}

/// Fails with [`Error::OutOfMemory`] when the process holds more than the cap; `doing` says what
/// the simulator was doing and what grew, for the message.
pub fn check(doing: impl FnOnce() -> String) -> Result<(), Error> {
    let (Some(cap), Some(used)) = (cap(), in_use()) else { return Ok(()) };
    if used <= cap {
        return Ok(());
    }
    Err(Error::OutOfMemory(format!(
        "the simulator holds {} of memory, over the limit of {} (--max-memory; by default 80% of the memory \
         this process may have), {}; stopped, nothing was written",
        fmt_bytes(used),
        fmt_bytes(cap),
        doing()
    )))
}

/// `1.5 GiB`, `300 MiB`, `12 KiB`, `512 B`.
pub fn fmt_bytes(b: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (size, unit) in UNITS {
        if b >= size {
            let v = b as f64 / size as f64;
            return if v >= 100.0 { format!("{v:.0} {unit}") } else { format!("{v:.1} {unit}") };
        }
    }
    format!("{b} B")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_read_as_a_person_would() {
        assert_eq!(fmt_bytes(512), "512 B");
        assert_eq!(fmt_bytes(1536), "1.5 KiB");
        assert_eq!(fmt_bytes(300 << 20), "300 MiB");
        assert_eq!(fmt_bytes(6 << 30), "6.0 GiB");
    }

    #[test]
    fn no_probe_no_failure() {
        // The library's tests install no probe (nor a cap): nothing is measured, nothing
        // fails. (The cap is process-wide, so no test here sets one.)
        assert_eq!(in_use(), None);
        assert!(check(|| unreachable!("no probe: the message is never built")).is_ok());
    }
}
