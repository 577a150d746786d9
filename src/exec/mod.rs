//! The local executor: trains the plan's pending runs in dependency order, one at a time on
//! one device, writing each run's files as it goes. A failed run is reported at once and
//! marked failed; runs that need it are skipped; independent runs continue.

mod progress;

pub use progress::Progress;

use crate::plan::TeacherRef;
use crate::plan::{Plan, PlannedRun};
use crate::store::{self, Failure, Provenance, RunRecord, RunState, Store, Summary};
use crate::train::{EpochRecord, Outcome, RunSink, TeacherSource, Trainer};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Condvar, Mutex};
use std::time::Instant;

/// How one run of the plan ended in this invocation.
#[derive(Debug, Clone, PartialEq)]
pub enum Ended {
    AlreadyDone,
    Trained,
    Failed(String),
    /// Not attempted because a run it depends on is not done.
    Skipped(String),
}

#[derive(Debug, Default)]
pub struct Report {
    pub ended: BTreeMap<String, Ended>,
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
}

/// Writes epochs as they end and tells the progress display.
struct StoreSink<'a> {
    id: String,
    dir: PathBuf,
    epochs: Vec<EpochRecord>,
    progress: &'a Mutex<Progress>,
    total_epochs: usize,
}

impl RunSink for StoreSink<'_> {
    fn epoch(&mut self, r: &EpochRecord) -> anyhow::Result<()> {
        self.epochs.push(r.clone());
        store::write_csv(&self.dir.join(store::EPOCHS), &self.epochs)?;
        lock(self.progress).epoch(&self.id, r, self.total_epochs);
        Ok(())
    }

    fn progress(&mut self, epoch: usize, done: usize, total: usize) {
        lock(self.progress).batch(epoch, self.total_epochs, done, total);
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
            if let Some(dep) = run
                .deps
                .iter()
                .find(|d| matches!(ended(d), Some(Ended::Failed(_) | Ended::Skipped(_))))
            {
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
                self.started += 1;
                self.running += 1;
                return Some(self.waiting.remove(i));
            }
            i += 1;
        }
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
    progress: Progress,
    opts: Options,
) -> Report {
    let jobs = opts.jobs;
    let mut report = Report::default();
    let mut waiting = Vec::new();
    for r in &plan.runs {
        match store.state(&r.id) {
            RunState::Done => {
                report.ended.insert(r.id.clone(), Ended::AlreadyDone);
            }
            RunState::Failed { epoch, reason } if !opts.retry_failed => {
                let why = format!(
                    "failed in epoch {epoch} earlier ({reason}); --retry-failed attempts it again"
                );
                report.ended.insert(r.id.clone(), Ended::Failed(why));
            }
            _ => waiting.push(r),
        }
    }
    let total = waiting.len();
    let queue = Mutex::new(Queue {
        waiting,
        running: 0,
        started: 0,
        report,
    });
    let wake = Condvar::new();
    let progress = Mutex::new(progress);
    let commit = git_commit();
    let worker = || loop {
        let (run, i) = {
            let mut q = lock(&queue);
            loop {
                if let Some(run) = q.next_ready(&progress) {
                    break (run, q.started);
                }
                if q.waiting.is_empty() || q.running == 0 {
                    // Nothing left, or nothing can become ready (cannot happen with a
                    // dependency-ordered plan).
                    let left: Vec<&PlannedRun> = q.waiting.drain(..).collect();
                    for r in left {
                        let why = "its teachers are not in the plan".to_string();
                        q.report.ended.insert(r.id.clone(), Ended::Skipped(why));
                    }
                    wake.notify_all();
                    return;
                }
                q = wake.wait(q).unwrap_or_else(|e| e.into_inner());
            }
        };
        lock(&progress).start_run(i, total, run);
        let teachers = teacher_sources(plan, run, store);
        let ended = match train_one(run, &teachers, store, trainer, &progress, &commit) {
            Ok(()) => Ended::Trained,
            Err(e) => {
                let reason = format!("{e:#}");
                lock(&progress).line(&format!("error: run {} failed: {reason}", run.id));
                Ended::Failed(reason)
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
            TeacherRef::Checkpoint { model, path } => TeacherSource {
                model: *model,
                path: PathBuf::from(path),
            },
        })
        .collect()
}

fn train_one(
    run: &PlannedRun,
    teachers: &[TeacherSource],
    store: &Store,
    trainer: &dyn Trainer,
    progress: &Mutex<Progress>,
    commit: &str,
) -> anyhow::Result<()> {
    let dir = store.run_dir(&run.id);
    std::fs::create_dir_all(&dir)?;
    // A partial or failed earlier attempt restarts from epoch 1 (no checkpoints yet).
    for f in [store::EPOCHS, store::FAILED] {
        let _ = std::fs::remove_file(dir.join(f));
    }
    let (device, repeatable) = trainer.device();
    let mut record = RunRecord {
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
            started_unix: store::now_unix(),
            finished_unix: None,
            wall_seconds: None,
        },
    };
    store::write_toml(&dir.join(store::RUN), &record)?;
    let started = Instant::now();
    let mut sink = StoreSink {
        id: run.id.clone(),
        dir: dir.clone(),
        epochs: Vec::new(),
        progress,
        total_epochs: run.spec.schedule.epochs,
    };
    let result = trainer.train(run, teachers, &mut sink);
    let done_epochs = sink.epochs.len();
    let outcome: Outcome = match result {
        Ok(o) => o,
        Err(e) => {
            let failure = Failure {
                epoch: done_epochs + 1,
                reason: format!("{e:#}"),
            };
            store::write_toml(&dir.join(store::FAILED), &failure)?;
            return Err(e);
        }
    };
    let wall = started.elapsed().as_secs_f64();
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
        wall_seconds: wall,
    };
    // Written last: its presence marks the run done.
    store::write_csv(&dir.join(store::SUMMARY), &[summary])?;
    lock(progress).end_run(run, &outcome.last, wall);
    Ok(())
}

#[cfg(test)]
mod tests;
