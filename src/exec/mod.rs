//! The local executor: trains the plan's pending runs in dependency order on one device,
//! writing each run's files as it goes.
//!
//! - A run is trained only under its lock (`store::lock`): processes sharing a results
//!   folder divide the runs between them, and wait for the runs the others are training.
//! - A partial run continues from its last checkpoint (`store::checkpoint`).
//! - A failed run is reported at once and marked failed; runs that need it are skipped;
//!   independent runs continue.
//! - A stop signal or a write error in the results folder stops the invocation: no new
//!   run starts, the run in progress keeps its last checkpoint and is not marked failed.

mod progress;

pub use progress::Progress;

use crate::interrupt::{self, Interrupted};
use crate::plan::TeacherRef;
use crate::plan::{Plan, PlannedRun};
use crate::store::checkpoint::{self, Checkpoint};
use crate::store::lock::{self, Acquired, Holder};
use crate::store::{self, Failure, Provenance, RunRecord, RunState, Store, Summary, WriteError};
use crate::train::{EpochRecord, Outcome, RunSink, TeacherSource, Trainer};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// How often a process looks again at runs that other processes are training.
const POLL: Duration = Duration::from_millis(500);

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

/// Writes checkpoints and epochs as they end, and tells the progress display.
struct StoreSink<'a> {
    id: String,
    dir: PathBuf,
    epochs: Vec<EpochRecord>,
    progress: &'a Mutex<Progress>,
    total_epochs: usize,
    /// run.toml, rewritten when the run resumes.
    record: RunRecord,
}

impl RunSink for StoreSink<'_> {
    fn resume(&mut self) -> anyhow::Result<Option<Checkpoint>> {
        let found = checkpoint::load_latest(&self.dir, &self.id);
        for why in &found.skipped {
            lock(self.progress).line(&format!("warning: run {}: {why}", self.id));
        }
        let Some(mut ck) = found.checkpoint else {
            if !found.skipped.is_empty() {
                lock(self.progress).line(&format!(
                    "warning: run {}: no usable checkpoint, starting again from epoch 1",
                    self.id
                ));
            }
            // Rows without a checkpoint cannot be continued from.
            let _ = std::fs::remove_file(self.dir.join(store::EPOCHS));
            return Ok(None);
        };
        // The checkpoint's records, with the checkpoint times that epochs.csv measured.
        let written = store::read_epochs(&self.dir.join(store::EPOCHS)).unwrap_or_default();
        for (r, w) in ck.epochs.iter_mut().zip(&written) {
            if w.epoch == r.epoch {
                r.checkpoint_seconds = w.checkpoint_seconds;
            }
        }
        self.epochs = ck.epochs.clone();
        store::write_csv(&self.dir.join(store::EPOCHS), &self.epochs)?;
        self.record.provenance.resumed_after.push(ck.epoch);
        store::write_toml(&self.dir.join(store::RUN), &self.record)?;
        lock(self.progress).line(&format!(
            "resume {} after epoch {} of {}",
            self.id, ck.epoch, self.total_epochs
        ));
        Ok(Some(ck))
    }

    fn epoch(&mut self, r: &EpochRecord, state: &[u8]) -> anyhow::Result<()> {
        let mut r = r.clone();
        let mut records = self.epochs.clone();
        records.push(r.clone());
        let t = Instant::now();
        checkpoint::save(&self.dir, &self.id, &records, state)?;
        r.checkpoint_seconds = t.elapsed().as_secs_f64();
        self.epochs.push(r.clone());
        store::write_csv(&self.dir.join(store::EPOCHS), &self.epochs)?;
        lock(self.progress).epoch(&self.id, &r, self.total_epochs);
        Ok(())
    }

    fn progress(&mut self, epoch: usize, done: usize, total: usize) {
        lock(self.progress).batch(epoch, self.total_epochs, done, total);
    }

    fn stop_requested(&self) -> Option<i32> {
        interrupt::requested()
    }

    fn weights_path(&self) -> PathBuf {
        self.dir.join(store::WEIGHTS)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn git_commit() -> String {
    let out = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match out(&["rev-parse", "HEAD"]) {
        Some(c) if !c.is_empty() => {
            let dirty = out(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            if dirty {
                format!("{c}-dirty")
            } else {
                c
            }
        }
        _ => "unknown".into(),
    }
}

/// Which runs are waiting, running and finished while workers take them.
struct Queue<'a> {
    waiting: Vec<&'a PlannedRun>,
    /// Runs another process holds the lock of; looked at again every `POLL`.
    elsewhere: Vec<&'a PlannedRun>,
    /// Runs already reported as trained elsewhere (said once).
    announced: BTreeSet<String>,
    /// Done teacher runs without their weights, trained again (`REBUILD`) for students
    /// that will train.
    rebuild: BTreeSet<String>,
    running: usize,
    started: usize,
    report: Report,
}

impl<'a> Queue<'a> {
    /// The first waiting run whose teachers are all done; runs whose teachers failed are
    /// marked skipped on the way. `None` when nothing is ready now.
    fn next_ready(&mut self, progress: &Mutex<Progress>) -> Option<&'a PlannedRun> {
        let mut i = 0;
        while i < self.waiting.len() {
            let run = self.waiting[i];
            let ended = |d: &String| self.report.ended.get(d);
            if let Some(dep) = run.deps.iter().find(|d| {
                matches!(
                    ended(d),
                    Some(Ended::Failed(_) | Ended::Skipped(_) | Ended::Stopped(_))
                )
            }) {
                let why = format!("teacher run {dep} is not done");
                lock(progress).line(&format!("skip {}: {why}", run.id));
                self.report
                    .ended
                    .insert(run.id.clone(), Ended::Skipped(why));
                self.waiting.remove(i);
                continue;
            }
            let ready = run
                .deps
                .iter()
                .all(|d| matches!(ended(d), Some(Ended::AlreadyDone | Ended::Trained)));
            if ready {
                return Some(self.waiting.remove(i));
            }
            i += 1;
        }
        None
    }

    /// Takes the lock of a ready run and decides what to do with it: `Some(lock)` to
    /// train it; `None` when it is done, failed or trained by another process.
    fn claim(
        &mut self,
        run: &'a PlannedRun,
        store: &Store,
        opts: &Options,
        progress: &Mutex<Progress>,
    ) -> Option<lock::RunLock> {
        let ended = match lock::try_lock(&store.run_dir(&run.id)) {
            Err(e) => {
                if WriteError::in_chain(&e) || e.chain().any(|c| c.is::<std::io::Error>()) {
                    self.halt(Halt::Storage(format!("{e:#}")));
                }
                Ended::Stopped(format!("{e:#}"))
            }
            Ok(Acquired::Busy(holder)) => {
                if self.announced.insert(run.id.clone()) {
                    let who = holder
                        .as_ref()
                        .map_or("another process".into(), Holder::to_string);
                    lock(progress).line(&format!("wait {}: being trained by {who}", run.id));
                }
                self.elsewhere.push(run);
                return None;
            }
            Ok(Acquired::Held { lock: l, took_over }) => {
                if let Some(h) = took_over {
                    lock(progress).line(&format!(
                        "run {}: taking over the lock left by {h}, which is no longer running",
                        run.id
                    ));
                }
                // Read again under the lock: another process may have finished it.
                let left = match store.state(&run.id) {
                    RunState::Done
                        if !self.rebuild.contains(&run.id) || store.has_weights(&run.id) =>
                    {
                        Some(Ended::AlreadyDone)
                    }
                    RunState::Done => rebuild_failed(store, &run.id, opts),
                    RunState::Failed { epoch, reason } if !opts.retry_failed => {
                        Some(failed_earlier(epoch, &reason))
                    }
                    RunState::Damaged(why) => Some(damaged(&why)),
                    _ => None,
                };
                match left {
                    Some(ended) => ended,
                    None => {
                        self.started += 1;
                        self.running += 1;
                        return Some(l);
                    }
                }
            }
        };
        self.report.ended.insert(run.id.clone(), ended);
        None
    }

    fn halt(&mut self, why: Halt) {
        if self.report.halted.is_none() {
            self.report.halted = Some(why);
        }
    }
}

/// A run whose summary cannot be read: left alone, so that nothing committed is
/// overwritten.
fn damaged(why: &str) -> Ended {
    Ended::Skipped(format!(
        "{why}; restore the file (`git checkout`) or remove the run's folder to train it again"
    ))
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

/// A done run whose training again for its weights failed earlier: left alone without
/// `--retry-failed`, like any failed run.
fn rebuild_failed(store: &Store, id: &str, opts: &Options) -> Option<Ended> {
    if opts.retry_failed {
        return None;
    }
    let f = store.rebuild_failure(id)?;
    Some(failed_earlier(f.epoch, &f.reason))
}

/// A run an earlier attempt marked failed, left alone without `--retry-failed`.
fn failed_earlier(epoch: usize, reason: &str) -> Ended {
    Ended::Failed(format!(
        "failed in epoch {epoch} earlier ({reason}); --retry-failed attempts it again"
    ))
}

/// Whether a run's error stops the whole invocation (a stop signal, a results folder that
/// cannot be written) rather than failing that run alone.
fn halt_of(e: &anyhow::Error) -> Option<Halt> {
    if let Some(i) = e.downcast_ref::<Interrupted>() {
        Some(Halt::Signal(i.signal))
    } else if WriteError::in_chain(e) {
        Some(Halt::Storage(format!("{e:#}")))
    } else {
        None
    }
}

/// How to execute a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Runs trained at once.
    pub jobs: usize,
    /// Attempt again the runs an earlier invocation marked failed (else they are
    /// reported as failed and left alone).
    pub retry_failed: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            jobs: 1,
            retry_failed: false,
        }
    }
}

/// Trains every run of `plan` that is not done, up to `opts.jobs` at a time, each after
/// the runs it depends on.
pub fn execute(
    plan: &Plan,
    store: &Store,
    trainer: &dyn Trainer,
    mut progress: Progress,
    opts: Options,
) -> Report {
    let jobs = opts.jobs;
    let mut report = Report::default();
    let mut waiting = Vec::new();
    let states: BTreeMap<&str, RunState> = plan
        .runs
        .iter()
        .map(|r| (r.id.as_str(), store.state(&r.id)))
        .collect();
    let trains = |s: &RunState| match s {
        RunState::Done | RunState::Damaged(_) => false,
        RunState::Failed { .. } => opts.retry_failed,
        _ => true,
    };
    // Teachers of runs that will train, done but without their weights.
    let rebuild: BTreeSet<String> = plan
        .runs
        .iter()
        .filter(|r| trains(&states[r.id.as_str()]))
        .flat_map(|r| &r.deps)
        .filter(|d| states.get(d.as_str()) == Some(&RunState::Done) && !store.has_weights(d))
        .cloned()
        .collect();
    for r in &plan.runs {
        let rebuild_failed = rebuild
            .contains(&r.id)
            .then(|| rebuild_failed(store, &r.id, &opts))
            .flatten();
        match &states[r.id.as_str()] {
            RunState::Done if rebuild_failed.is_some() => {
                report
                    .ended
                    .insert(r.id.clone(), rebuild_failed.expect("matched"));
            }
            RunState::Done if rebuild.contains(&r.id) => {
                progress.line(&format!(
                    "run {}: done, but its weights (never committed) are not here; its \
                     students need them, so it trains again in {}/{} and its files stay",
                    r.id,
                    r.id,
                    store::REBUILD
                ));
                waiting.push(r);
            }
            RunState::Done => {
                report.ended.insert(r.id.clone(), Ended::AlreadyDone);
            }
            RunState::Failed { epoch, reason } if !opts.retry_failed => {
                report
                    .ended
                    .insert(r.id.clone(), failed_earlier(*epoch, reason));
            }
            RunState::Damaged(why) => {
                progress.line(&format!("error: run {}: {why}", r.id));
                report.ended.insert(r.id.clone(), damaged(why));
            }
            _ => waiting.push(r),
        }
    }
    let total = waiting.len();
    let queue = Mutex::new(Queue {
        waiting,
        elsewhere: Vec::new(),
        announced: BTreeSet::new(),
        rebuild,
        running: 0,
        started: 0,
        report,
    });
    let wake = Condvar::new();
    let progress = Mutex::new(progress);
    let commit = git_commit();
    let worker = || loop {
        let (run, i, _held) = {
            let mut q = lock(&queue);
            loop {
                if let Some(sig) = interrupt::requested() {
                    q.halt(Halt::Signal(sig));
                }
                if q.report.halted.is_some() {
                    wake.notify_all();
                    return;
                }
                if let Some(run) = q.next_ready(&progress) {
                    if let Some(l) = q.claim(run, store, &opts, &progress) {
                        break (run, q.started, l);
                    }
                    wake.notify_all();
                    continue;
                }
                if q.waiting.is_empty() && q.elsewhere.is_empty() {
                    wake.notify_all();
                    return;
                }
                if q.running == 0 && q.elsewhere.is_empty() {
                    // Nothing can become ready (cannot happen with a dependency-ordered
                    // plan).
                    let left: Vec<&PlannedRun> = q.waiting.drain(..).collect();
                    for r in left {
                        let why = "its teachers are not in the plan".to_string();
                        q.report.ended.insert(r.id.clone(), Ended::Skipped(why));
                    }
                    wake.notify_all();
                    return;
                }
                q = wake
                    .wait_timeout(q, POLL)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
                // Look again at the runs other processes hold.
                let back: Vec<_> = q.elsewhere.drain(..).collect();
                q.waiting.splice(0..0, back);
            }
        };
        lock(&progress).start_run(i, total, run);
        let teachers = teacher_sources(plan, run, store);
        let rebuild = store.state(&run.id) == RunState::Done;
        let trained = if rebuild {
            rebuild_weights(run, &teachers, store, trainer, &progress, &commit)
        } else {
            let dir = store.run_dir(&run.id);
            train_one(run, &dir, &teachers, trainer, &progress, &commit)
        };
        let ended = match trained {
            Ok(()) => Ended::Trained,
            Err(e) => {
                let reason = message(&e);
                match halt_of(&e) {
                    Some(halt) => {
                        if matches!(halt, Halt::Storage(_)) {
                            lock(&progress)
                                .line(&format!("error: run {} stopped: {reason}", run.id));
                        }
                        lock(&queue).halt(halt);
                        Ended::Stopped(reason)
                    }
                    None => {
                        lock(&progress).line(&format!("error: run {} failed: {reason}", run.id));
                        Ended::Failed(reason)
                    }
                }
            }
        };
        let mut q = lock(&queue);
        q.running -= 1;
        q.report.ended.insert(run.id.clone(), ended);
        wake.notify_all();
    };
    std::thread::scope(|s| {
        for _ in 0..jobs.max(1) {
            s.spawn(worker);
        }
    });
    queue.into_inner().unwrap_or_else(|e| e.into_inner()).report
}

/// Where each teacher's weights are: a teacher run's folder or the checkpoint's path.
pub fn teacher_sources(plan: &Plan, run: &PlannedRun, store: &Store) -> Vec<TeacherSource> {
    run.spec
        .teachers
        .iter()
        .map(|t| match t {
            TeacherRef::Run { id } => TeacherSource {
                model: plan.get(id).map_or(run.spec.model, |r| r.spec.model),
                path: store.run_dir(id).join(store::WEIGHTS),
            },
            TeacherRef::Checkpoint { model, path, .. } => TeacherSource {
                model: *model,
                path: PathBuf::from(path),
            },
        })
        .collect()
}

/// Trains a done run whose weights are missing again, in its `REBUILD` folder, and moves
/// only the new weights into its folder: the committed files stay as they are. A
/// summary that comes out different (a device that is not bitwise repeatable) is said.
fn rebuild_weights(
    run: &PlannedRun,
    teachers: &[TeacherSource],
    store: &Store,
    trainer: &dyn Trainer,
    progress: &Mutex<Progress>,
    commit: &str,
) -> anyhow::Result<()> {
    let home = store.run_dir(&run.id);
    let dir = home.join(store::REBUILD);
    std::fs::create_dir_all(&dir).map_err(|e| WriteError::new(&dir, e))?;
    train_one(run, &dir, teachers, trainer, progress, commit)?;
    // Compared as values: files written before a column was added read the same.
    let read = |d: &std::path::Path| store::read_summary(&d.join(store::SUMMARY)).ok();
    if read(&dir) != read(&home) {
        lock(progress).line(&format!(
            "warning: run {}: the weights trained again give another summary than the \
             committed one (see {}/{}); the committed files are kept",
            run.id,
            dir.display(),
            store::SUMMARY
        ));
    }
    let weights = home.join(store::WEIGHTS);
    std::fs::rename(dir.join(store::WEIGHTS), &weights)
        .map_err(|e| WriteError::new(&weights, e))?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn train_one(
    run: &PlannedRun,
    dir: &std::path::Path,
    teachers: &[TeacherSource],
    trainer: &dyn Trainer,
    progress: &Mutex<Progress>,
    commit: &str,
) -> anyhow::Result<()> {
    let dir = dir.to_path_buf();
    store::remove_temporaries(&dir);
    let _ = std::fs::remove_file(dir.join(store::FAILED));
    let (device, repeatable) = trainer.device();
    // An attempt that resumes keeps the first attempt's start and its list of resumes.
    let earlier: Option<RunRecord> = std::fs::read_to_string(dir.join(store::RUN))
        .ok()
        .and_then(|t| toml::from_str(&t).ok())
        .filter(|r: &RunRecord| r.id == run.id);
    let record = RunRecord {
        id: run.id.clone(),
        spec: run.spec.clone(),
        provenance: Provenance {
            lecal_version: env!("CARGO_PKG_VERSION").into(),
            candle_version: env!("LECAL_CANDLE_VERSION").into(),
            git_commit: commit.into(),
            device,
            bitwise_repeatable: repeatable,
            cells: run
                .cells
                .iter()
                .map(|(c, s)| format!("{c} seed {s}"))
                .collect(),
            started_unix: earlier
                .as_ref()
                .map_or_else(store::now_unix, |r| r.provenance.started_unix),
            finished_unix: None,
            wall_seconds: None,
            resumed_after: earlier.map_or_else(Vec::new, |r| r.provenance.resumed_after),
            host: lock::hostname(),
        },
    };
    store::write_toml(&dir.join(store::RUN), &record)?;
    let mut sink = StoreSink {
        id: run.id.clone(),
        dir: dir.clone(),
        epochs: Vec::new(),
        progress,
        total_epochs: run.spec.schedule.epochs,
        record,
    };
    let result = trainer.train(run, teachers, &mut sink);
    let done_epochs = sink.epochs.len();
    let outcome: Outcome = match result {
        Ok(o) => o,
        Err(e) => {
            if halt_of(&e).is_none() {
                let failure = Failure {
                    epoch: done_epochs + 1,
                    reason: message(&e),
                };
                store::write_toml(&dir.join(store::FAILED), &failure)?;
            }
            return Err(e);
        }
    };
    // Training and evaluation time over every attempt.
    let wall: f64 = outcome.epochs.iter().map(|e| e.seconds).sum();
    let mut record = sink.record;
    let last = outcome.epochs.last().expect("at least one epoch");
    store::write_evaluation(&dir, &outcome.last)?;
    record.provenance.finished_unix = Some(store::now_unix());
    record.provenance.wall_seconds = Some(wall);
    store::write_toml(&dir.join(store::RUN), &record)?;
    let summary = Summary {
        id: run.id.clone(),
        dataset: run.spec.data.name.as_str().into(),
        model: run.spec.model.as_str().into(),
        seed: run.spec.seed,
        epochs: last.epoch,
        accuracy: outcome.last.accuracy,
        ece: outcome.last.ece,
        nll: outcome.last.nll,
        brier: outcome.last.brier,
        train_accuracy: last.train_acc,
        val_accuracy: outcome.validation.as_ref().map(|e| e.accuracy),
        val_ece: outcome.validation.as_ref().map(|e| e.ece),
        val_nll: outcome.validation.as_ref().map(|e| e.nll),
        val_brier: outcome.validation.as_ref().map(|e| e.brier),
    };
    // Written last: its presence marks the run done.
    store::write_csv(&dir.join(store::SUMMARY), &[summary])?;
    let _ = checkpoint::remove_all(&dir);
    lock(progress).end_run(run, &outcome.last, wall);
    Ok(())
}

#[cfg(test)]
mod tests;
