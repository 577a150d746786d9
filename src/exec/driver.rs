//! One run from start to end through its `RunDir`: the provenance record, resuming from a
//! checkpoint, each epoch's checkpoint and row, the failure record, the evaluation, the
//! summary (last: it marks the run done). Also a done teacher trained again for its
//! missing weights.

use super::{halt_of, lock, message, Progress};
use crate::interrupt;
use crate::plan::{Plan, PlannedRun};
use crate::spec::TeacherRef;
use crate::store::checkpoint::Checkpoint;
use crate::store::lock::hostname;
use crate::store::{now_unix, EpochRecord, Failure, Provenance, RunDir, RunRecord, Store, Summary};
use crate::train::{Outcome, RunSink, TeacherSource, Trainer};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

/// What training a run needs besides the run.
pub(super) struct Driver<'a> {
    pub plan: &'a Plan,
    pub store: &'a Store,
    pub trainer: &'a dyn Trainer,
    /// lecal's commit, for the provenance record.
    pub commit: String,
}

impl Driver<'_> {
    /// Trains (or resumes) `run` in its folder.
    pub fn train(&self, run: &PlannedRun, progress: &Mutex<Progress>) -> anyhow::Result<()> {
        let teachers = teacher_sources(self.plan, run, self.store);
        self.train_in(&self.store.run(&run.id), run, &teachers, progress)
    }

    /// Trains a done run whose weights are missing again, in its `rebuild/` folder, and
    /// moves only the new weights into its folder: the committed files stay as they are.
    /// A summary that comes out different (a device that is not bitwise repeatable) is
    /// said.
    pub fn rebuild(&self, run: &PlannedRun, progress: &Mutex<Progress>) -> anyhow::Result<()> {
        let teachers = teacher_sources(self.plan, run, self.store);
        let home = self.store.run(&run.id);
        let dir = home.rebuild();
        dir.create()?;
        self.train_in(&dir, run, &teachers, progress)?;
        // Compared as values: files written before a column was added read the same.
        if dir.summary().ok().flatten() != home.summary().ok().flatten() {
            lock(progress).line(&format!(
                "warning: run {}: the weights trained again give another summary than the \
                 committed one (see {}); the committed files are kept",
                run.id,
                dir.path().display(),
            ));
        }
        home.take_weights_from(&dir)?;
        dir.remove();
        Ok(())
    }

    fn train_in(
        &self,
        dir: &RunDir,
        run: &PlannedRun,
        teachers: &[TeacherSource],
        progress: &Mutex<Progress>,
    ) -> anyhow::Result<()> {
        dir.remove_temporaries();
        dir.clear_failure();
        let record = self.record(dir, run);
        dir.write_record(&record)?;
        let mut sink = StoreSink {
            dir,
            epochs: Vec::new(),
            progress,
            total_epochs: run.spec.schedule.epochs,
            record,
        };
        let outcome: Outcome = match self.trainer.train(&run.spec, teachers, &mut sink) {
            Ok(o) => o,
            Err(e) => {
                if halt_of(&e).is_none() {
                    let failure = Failure {
                        epoch: sink.epochs.len() + 1,
                        reason: message(&e),
                    };
                    dir.write_failure(&failure)?;
                }
                return Err(e);
            }
        };
        // Training and evaluation time over every attempt.
        let wall: f64 = outcome.epochs.iter().map(|e| e.seconds).sum();
        let mut record = sink.record;
        let last = outcome.epochs.last().expect("at least one epoch");
        dir.write_evaluation(&outcome.last)?;
        record.provenance.finished_unix = Some(now_unix());
        record.provenance.wall_seconds = Some(wall);
        dir.write_record(&record)?;
        let val = outcome.validation.as_ref();
        dir.write_summary(&Summary {
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
            val_accuracy: val.map(|e| e.accuracy),
            val_ece: val.map(|e| e.ece),
            val_nll: val.map(|e| e.nll),
            val_brier: val.map(|e| e.brier),
        })?;
        // Last: vouches for every file above, and marks the run done.
        dir.write_done()?;
        dir.remove_checkpoints();
        lock(progress).end_run(run, &outcome.last, wall);
        Ok(())
    }

    /// run.toml of a new attempt; one that resumes keeps the first attempt's start and
    /// its list of resumes.
    fn record(&self, dir: &RunDir, run: &PlannedRun) -> RunRecord {
        let (device, repeatable) = self.trainer.device();
        let earlier = dir.record();
        RunRecord {
            id: run.id.clone(),
            spec: run.spec.clone(),
            provenance: Provenance {
                lecal_version: env!("CARGO_PKG_VERSION").into(),
                candle_version: env!("LECAL_CANDLE_VERSION").into(),
                git_commit: self.commit.clone(),
                device,
                bitwise_repeatable: repeatable,
                cells: run
                    .cells
                    .iter()
                    .map(|(c, s)| format!("{c} seed {s}"))
                    .collect(),
                started_unix: earlier
                    .as_ref()
                    .map_or_else(now_unix, |r| r.provenance.started_unix),
                finished_unix: None,
                wall_seconds: None,
                resumed_after: earlier.map_or_else(Vec::new, |r| r.provenance.resumed_after),
                host: hostname(),
            },
        }
    }
}

/// Writes checkpoints and epochs as they end, and tells the progress display.
struct StoreSink<'a> {
    dir: &'a RunDir,
    epochs: Vec<EpochRecord>,
    progress: &'a Mutex<Progress>,
    total_epochs: usize,
    /// run.toml, rewritten when the run resumes.
    record: RunRecord,
}

impl RunSink for StoreSink<'_> {
    fn resume(&mut self) -> anyhow::Result<Option<Checkpoint>> {
        let id = self.dir.id();
        let found = self.dir.load_checkpoint();
        for why in &found.skipped {
            lock(self.progress).line(&format!("warning: run {id}: {why}"));
        }
        let Some(mut ck) = found.checkpoint else {
            if !found.skipped.is_empty() {
                lock(self.progress).line(&format!(
                    "warning: run {id}: no usable checkpoint, starting again from epoch 1"
                ));
            }
            // Rows without a checkpoint cannot be continued from.
            self.dir.remove_epochs();
            return Ok(None);
        };
        // The checkpoint's records, with the checkpoint times that epochs.csv measured.
        let written = self.dir.epochs().unwrap_or_default();
        for (r, w) in ck.epochs.iter_mut().zip(&written) {
            if w.epoch == r.epoch {
                r.checkpoint_seconds = w.checkpoint_seconds;
            }
        }
        self.epochs = ck.epochs.clone();
        self.dir.write_epochs(&self.epochs)?;
        self.record.provenance.resumed_after.push(ck.epoch);
        self.dir.write_record(&self.record)?;
        lock(self.progress).line(&format!(
            "resume {id} after epoch {} of {}",
            ck.epoch, self.total_epochs
        ));
        Ok(Some(ck))
    }

    fn epoch(&mut self, r: &EpochRecord, state: &[u8]) -> anyhow::Result<()> {
        let mut r = r.clone();
        let mut records = self.epochs.clone();
        records.push(r.clone());
        let t = Instant::now();
        self.dir.save_checkpoint(&records, state)?;
        r.checkpoint_seconds = t.elapsed().as_secs_f64();
        self.epochs.push(r.clone());
        self.dir.write_epochs(&self.epochs)?;
        lock(self.progress).epoch(self.dir.id(), &r, self.total_epochs);
        Ok(())
    }

    fn progress(&mut self, epoch: usize, done: usize, total: usize) {
        lock(self.progress).batch(epoch, self.total_epochs, done, total);
    }

    fn stop_requested(&self) -> Option<i32> {
        interrupt::requested()
    }

    fn weights(&mut self, safetensors: &[u8]) -> anyhow::Result<()> {
        self.dir.write_weights(safetensors)
    }
}

/// lecal's commit, with `-dirty` when tracked files have changes.
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

/// Where each teacher's weights are: a teacher run's folder or the checkpoint's path.
pub fn teacher_sources(plan: &Plan, run: &PlannedRun, store: &Store) -> Vec<TeacherSource> {
    run.spec
        .teachers
        .iter()
        .map(|t| match t {
            TeacherRef::Run { id } => TeacherSource {
                model: plan.get(id).map_or(run.spec.model, |r| r.spec.model),
                path: store.run(id).weights_path(),
            },
            TeacherRef::Checkpoint { model, path, .. } => TeacherSource {
                model: *model,
                path: PathBuf::from(path),
            },
        })
        .collect()
}
