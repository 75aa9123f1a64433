//! What a long command is doing, on a terminal: the stage it is in (building the nodes, the
//! CNI's routes, the proxies' rules, simulating, rendering) as an indicatif bar on stderr,
//! shown only once a stage has taken more than a second.
//!
//! Off unless the binary calls [`enable`] (it does when stderr is a terminal, for `run`,
//! `describe` and `trace`): the library in tests, benches and sweeps (which have their own
//! bar) reports nothing, and nothing here changes what a run computes.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A stage is shown once it has run this long.
const SHOW_AFTER: Duration = Duration::from_secs(1);

static ENABLED: AtomicBool = AtomicBool::new(false);
/// Work done in the current stage (read by the ticker thread, written by [`inc`] and [`set`]).
static POS: AtomicU64 = AtomicU64::new(0);
static STATE: Mutex<Option<Stage>> = Mutex::new(None);

struct Stage {
    name: String,
    total: u64,
    started: Instant,
    bar: Option<ProgressBar>,
}

/// Reports stages on stderr from now on (call once, from the binary, on a terminal).
pub fn enable() {
    if ENABLED.swap(true, Ordering::Relaxed) {
        return;
    }
    // A ticker shows a stage that has run long enough, even one that never calls `inc`.
    let _ = std::thread::Builder::new().name("progress".into()).spawn(|| loop {
        std::thread::sleep(Duration::from_millis(200));
        let mut guard = STATE.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(st) = guard.as_mut() {
            if st.bar.is_none() && st.started.elapsed() >= SHOW_AFTER {
                st.bar = Some(show(&st.name, st.total));
            }
            if let Some(b) = &st.bar {
                b.set_position(POS.load(Ordering::Relaxed));
            }
        }
    });
}

fn show(name: &str, total: u64) -> ProgressBar {
    let bar = if total > 0 {
        let b = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        b.set_style(
            ProgressStyle::with_template("{elapsed_precise} {msg} [{bar:40}] {pos}/{len}")
                .expect("static template")
                .progress_chars("=> "),
        );
        b
    } else {
        let b = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        b.set_style(
            ProgressStyle::with_template("{elapsed_precise} {spinner} {msg}").expect("static template"),
        );
        b
    };
    bar.set_message(name.to_string());
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}

/// Starts a stage of `total` steps (0: unknown), ending the one before.
pub fn stage(name: &str, total: u64) {
    if !ENABLED.load(Ordering::Relaxed) {
        return;
    }
    let mut guard = STATE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(b) = guard.take().and_then(|s| s.bar) {
        b.finish_and_clear();
    }
    POS.store(0, Ordering::Relaxed);
    *guard = Some(Stage { name: name.to_string(), total, started: Instant::now(), bar: None });
}

/// One more step of the current stage done.
pub fn inc() {
    if ENABLED.load(Ordering::Relaxed) {
        POS.fetch_add(1, Ordering::Relaxed);
    }
}

/// `pos` steps of the current stage done.
pub fn set(pos: u64) {
    if ENABLED.load(Ordering::Relaxed) {
        POS.store(pos, Ordering::Relaxed);
    }
}

/// Ends the current stage and clears its bar (before the command prints its result).
pub fn done() {
    if !ENABLED.load(Ordering::Relaxed) {
        return;
    }
    let mut guard = STATE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(b) = guard.take().and_then(|s| s.bar) {
        b.finish_and_clear();
    }
}
