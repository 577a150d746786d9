//! Stopping cleanly on SIGINT, SIGTERM and SIGUSR1 (what Slurm sends before it pre-empts
//! or times out a job, with `--signal=USR1@<seconds>` for the latter).
//!
//! The first signal only sets a flag. The trainer looks at it before every step: it
//! discards the epoch in progress, keeps the last complete epoch's checkpoint, and the
//! command exits non-zero saying how to resume. A second signal ends the process at once.

use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR1};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

static SIGNAL: AtomicUsize = AtomicUsize::new(0);
static SEEN: AtomicBool = AtomicBool::new(false);

/// The signals that ask lecal to stop.
pub const STOP_SIGNALS: [i32; 3] = [SIGINT, SIGTERM, SIGUSR1];

/// Installs the handlers. Call once, early, from the command that trains.
pub fn install() -> anyhow::Result<()> {
    for sig in STOP_SIGNALS {
        // Registered first, so it fires only from the second signal on.
        signal_hook::flag::register_conditional_shutdown(sig, 128 + sig, &SEEN)?;
        signal_hook::flag::register_usize(sig, &SIGNAL, sig as usize)?;
        signal_hook::flag::register(sig, &SEEN)?;
    }
    Ok(())
}

/// The stop signal received so far, if any.
pub fn requested() -> Option<i32> {
    match SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s as i32),
    }
}

pub fn signal_name(sig: i32) -> String {
    match sig {
        SIGINT => "SIGINT".into(),
        SIGTERM => "SIGTERM".into(),
        SIGUSR1 => "SIGUSR1".into(),
        s => format!("signal {s}"),
    }
}

/// The error a trainer returns when a stop signal ends a run before its last epoch. The
/// run is not failed: its checkpoint stays and a later `lecal run` resumes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("stopped by {}", signal_name(*.signal))]
pub struct Interrupted {
    pub signal: i32,
}
