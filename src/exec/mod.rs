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
    dir: PathBuf,
    epochs: Vec<EpochRecord>,
    progress: &'a mut Progress,
    total_epochs: usize,
}

impl RunSink for StoreSink<'_> {
    fn epoch(&mut self, r: &EpochRecord) -> anyhow::Result<()> {
        self.epochs.push(r.clone());
        store::write_csv(&self.dir.join(store::EPOCHS), &self.epochs)?;
        self.progress.epoch(r, self.total_epochs);
        Ok(())
    }

    fn progress(&mut self, epoch: usize, done: usize, total: usize) {
        self.progress.batch(epoch, self.total_epochs, done, total);
    }

    fn weights_path(&self) -> PathBuf {
        self.dir.join(store::WEIGHTS)
    }
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

/// Trains every run of `plan` that is not done.
pub fn execute(
    plan: &Plan,
    store: &Store,
    trainer: &dyn Trainer,
    progress: &mut Progress,
) -> Report {
    let mut report = Report::default();
    let todo: Vec<&PlannedRun> = plan
        .runs
        .iter()
        .filter(|r| store.state(&r.id) != RunState::Done)
        .collect();
    for r in &plan.runs {
        if store.state(&r.id) == RunState::Done {
            report.ended.insert(r.id.clone(), Ended::AlreadyDone);
        }
    }
    let commit = git_commit();
    for (i, run) in todo.iter().enumerate() {
        let blocked = run.deps.iter().find(|d| {
            !matches!(
                report.ended.get(*d),
                Some(Ended::AlreadyDone | Ended::Trained)
            )
        });
        if let Some(dep) = blocked {
            let why = format!("teacher run {dep} is not done");
            progress.line(&format!(
                "[{}/{}] skip {}: {why}",
                i + 1,
                todo.len(),
                run.id
            ));
            report.ended.insert(run.id.clone(), Ended::Skipped(why));
            continue;
        }
        progress.start_run(i + 1, todo.len(), run);
        let teachers = teacher_sources(plan, run, store);
        let ended = match train_one(run, &teachers, store, trainer, progress, &commit) {
            Ok(()) => Ended::Trained,
            Err(e) => {
                let reason = format!("{e:#}");
                progress.line(&format!("error: run {} failed: {reason}", run.id));
                Ended::Failed(reason)
            }
        };
        report.ended.insert(run.id.clone(), ended);
    }
    report
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
    progress: &mut Progress,
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
    progress.end_run(run, &outcome.last, wall);
    Ok(())
}

#[cfg(test)]
mod tests;
