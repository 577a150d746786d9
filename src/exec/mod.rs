//! The executor: trains the plan's pending runs in dependency order, writing each run's
//! files as it goes.
//!
//! Three parts, each with one concern:
//! - `select.rs`: which runs of a plan train in this invocation (the one place that
//!   decides it; `lecal run` asks it too);
//! - `scheduler.rs`: what runs next, in dependency order, on which slot; locks, failure
//!   isolation, `--retry-failed`, halting on a signal or a write error;
//! - a [`Backend`] (`backend.rs`) that only runs a unit of work on a slot and says how
//!   each run ended; the in-process backend drives each run with `driver.rs` (one run
//!   from start to end through its `store::RunDir`).
//!
//! - A run is trained only under its lock (`store::lock`): processes sharing a results
//!   folder divide the runs between them, and wait for the runs the others are training.
//! - A partial run continues from its last checkpoint.
//! - A failed run is reported at once and marked failed; runs that need it are skipped;
//!   independent runs continue.
//! - A stop signal or a write error in the results folder stops the invocation: no new
//!   run starts, the run in progress keeps its last checkpoint and is not marked failed.

mod backend;
mod driver;
mod progress;
pub mod sbatch;
mod scheduler;
mod select;
pub mod slurm;

pub use backend::{Backend, InProcess, Job, JobKind};
pub use driver::teacher_sources;
pub use progress::Progress;
pub use select::{select, Selection};

use crate::interrupt::Interrupted;
use crate::plan::Plan;
use crate::store::{Store, WriteError};
use crate::train::{CohortStopped, Trainer};
use std::collections::BTreeMap;

/// How one run of the plan ended in this invocation.
#[derive(Debug, Clone, PartialEq)]
pub enum Ended {
    AlreadyDone,
    Trained,
    Failed(String),
    /// Not attempted because a run it depends on is not done.
    Skipped(String),
    /// Stopped by a signal or a write error before its last epoch; a later invocation
    /// resumes it from its checkpoint.
    Stopped(String),
}

/// Why an invocation stopped early.
#[derive(Debug, Clone, PartialEq)]
pub enum Halt {
    Signal(i32),
    /// A file of the results folder could not be written.
    Storage(String),
}

#[derive(Debug, Default)]
pub struct Report {
    pub ended: BTreeMap<String, Ended>,
    pub halted: Option<Halt>,
}

impl Report {
    pub fn count(&self, f: impl Fn(&Ended) -> bool) -> usize {
        self.ended.values().filter(|e| f(e)).count()
    }

    pub fn failures(&self) -> Vec<(&String, &Ended)> {
        self.ended
            .iter()
            .filter(|(_, e)| matches!(e, Ended::Failed(_) | Ended::Skipped(_)))
            .collect()
    }

    pub fn stopped(&self) -> Vec<(&String, &String)> {
        self.ended
            .iter()
            .filter_map(|(id, e)| match e {
                Ended::Stopped(why) => Some((id, why)),
                _ => None,
            })
            .collect()
    }
}

/// How to execute a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Runs trained at once.
    pub jobs: usize,
    /// Attempt again the runs an earlier invocation marked failed (else they are
    /// reported as failed and left alone).
    pub retry_failed: bool,
    /// Train runs that see identical batches together, as cohorts of at most this many
    /// bytes of estimated device memory (`plan::memory`); `None`: each run alone
    /// (`--no-cohorts`).
    pub cohort_memory: Option<u64>,
    /// Whether the trainer fuses a cohort's members of one architecture (its memory
    /// estimate counts the fused groups).
    pub fusion: bool,
    /// Train only these runs of the plan (`--only`, a cluster job's runs).
    pub only: Option<std::collections::BTreeSet<String>>,
}

/// The default memory budget of a cohort: 16 GiB, which fits the GPUs Table 1 is trained
/// on and a workstation's RAM; Table 1's largest cohort (30 runs) estimates at ≈ 1.4 GiB.
pub const DEFAULT_COHORT_MEMORY: u64 = 16 << 30;

impl Default for Options {
    fn default() -> Self {
        Self {
            jobs: 1,
            retry_failed: false,
            cohort_memory: Some(DEFAULT_COHORT_MEMORY),
            fusion: false,
            only: None,
        }
    }
}

/// Trains every run of `plan` that is not done, up to `opts.jobs` at a time in this
/// process, each after the runs it depends on.
pub fn execute(
    plan: &Plan,
    store: &Store,
    trainer: &dyn Trainer,
    progress: Progress,
    opts: Options,
) -> Report {
    execute_on(plan, store, vec![(String::new(), trainer)], progress, opts)
}

/// As [`execute`], on several devices of this machine (one named trainer each): units of
/// work spread over them, `opts.jobs` at a time on each.
pub fn execute_on<'a>(
    plan: &'a Plan,
    store: &'a Store,
    trainers: Vec<(String, &'a dyn Trainer)>,
    progress: Progress,
    opts: Options,
) -> Report {
    let backend = InProcess::new(plan, store, trainers, opts.jobs);
    scheduler::run(plan, store, &backend, progress, opts)
}

/// An error with its causes (`{e:#}`) on one line, without the stack backtrace that
/// candle appends to its messages when `RUST_BACKTRACE` is set: it goes into the committed
/// `failed.toml` and the run's progress line.
pub fn message(e: &anyhow::Error) -> String {
    let frame = |l: &str| {
        let t = l.trim_start();
        t.len() < l.len()
            && (t.starts_with("at ")
                || t.split_once(": ")
                    .is_some_and(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())))
    };
    let text = format!("{e:#}");
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !frame(l))
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines.join(" ")
}

/// Whether a run's error stops the whole invocation (a stop signal, a results folder that
/// cannot be written) rather than failing that run alone.
fn halt_of(e: &anyhow::Error) -> Option<Halt> {
    if let Some(i) = e.downcast_ref::<Interrupted>() {
        Some(Halt::Signal(i.signal))
    } else if WriteError::in_chain(e) {
        Some(Halt::Storage(format!("{e:#}")))
    } else {
        e.downcast_ref::<CohortStopped>()
            .map(|s| Halt::Storage(s.0.clone()))
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests;
