//! A unit of work (a cohort: one run or several that train together) from start to end,
//! each run through its `RunDir`: the provenance record, resuming from a checkpoint, each
//! epoch's checkpoint and row, the failure record, the evaluation and its logits, the
//! summary, and `done.toml` (last: it marks the run done). Also a done teacher trained
//! again for its missing weights.

use super::backend::{Job, JobKind};
use super::{halt_of, lock, message, Progress};
use crate::interrupt;
use crate::plan::{Plan, PlannedRun};
use crate::spec::TeacherRef;
use crate::store::checkpoint::Checkpoint;
use crate::store::lock::{hostname, RunLock};
use crate::store::{now_unix, EpochRecord, Failure, Provenance, RunDir, RunRecord, Store, Summary};
use crate::train::{Member, Outcome, RunSink, TeacherSource, Trainer};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

/// What training a run needs besides the run.
pub(super) struct Driver<'a> {
    pub plan: &'a Plan,
    pub store: &'a Store,
    pub trainer: &'a dyn Trainer,
}

impl Driver<'_> {
    /// Trains (or resumes) the jobs of a unit together, as one cohort: one result per
    /// job, in order. A `Train` job trains in its run's folder; a `Rebuild` job (a done run
    /// whose weights are missing) trains in its `rebuild/` folder and moves only the new
    /// weights into its run's folder, so the committed files stay as they are.
    pub fn train_unit(
        &self,
        jobs: Vec<Job>,
        progress: &Mutex<Progress>,
    ) -> Vec<anyhow::Result<()>> {
        let mut results: Vec<Option<anyhow::Result<()>>> = jobs.iter().map(|_| None).collect();
        let mut sinks = Vec::new();
        let mut teachers = Vec::new();
        let in_cohort = jobs.len() > 1;
        for (i, job) in jobs.into_iter().enumerate() {
            let sources = teacher_sources(self.plan, job.run, self.store);
            match self.prepare(job, in_cohort, progress) {
                Ok(sink) => {
                    teachers.push(sources);
                    sinks.push((i, sink));
                }
                Err(e) => results[i] = Some(Err(e)),
            }
        }
        let members = sinks
            .iter_mut()
            .zip(&teachers)
            .map(|((_, sink), teachers)| Member {
                spec: &sink.run.spec,
                teachers,
                sink,
            })
            .collect();
        let outcomes = self.trainer.train_cohort(members);
        for ((i, mut sink), outcome) in sinks.into_iter().zip(outcomes) {
            if let Err(e) = &outcome {
                if !sink.told_failed {
                    sink.failed(e);
                }
            }
            results[i] = Some(match (outcome, sink.failure_unwritten) {
                (Ok(_), _) => Ok(()),
                // A failure record that could not be written halts the invocation.
                (Err(_), Some(write)) => Err(write),
                (Err(e), None) => Err(e),
            });
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(anyhow::anyhow!("the trainer gave no result"))))
            .collect()
    }

    /// A job's folder made ready (temporaries of a killed writer gone, an earlier failure
    /// cleared, run.toml written) and the sink that writes its results.
    fn prepare<'p>(
        &self,
        job: Job<'p>,
        in_cohort: bool,
        progress: &'p Mutex<Progress>,
    ) -> anyhow::Result<StoreSink<'p>> {
        let home = self.store.run(&job.run.id);
        let (dir, home) = match job.kind {
            JobKind::Train => (home, None),
            JobKind::Rebuild => {
                let dir = home.rebuild();
                dir.create()?;
                (dir, Some(home))
            }
        };
        dir.remove_temporaries();
        dir.clear_failure();
        let record = self.record(&dir, job.run);
        dir.write_record(&record)?;
        Ok(StoreSink {
            dir,
            home,
            lock: Some(job.lock),
            run: job.run,
            epochs: Vec::new(),
            progress,
            in_cohort,
            record,
            told_failed: false,
            failure_unwritten: None,
        })
    }

    /// run.toml of a new attempt; one that resumes keeps the first attempt's start and
    /// its list of resumes. Called on the slot's thread pool: its threads are the run's.
    fn record(&self, dir: &RunDir, run: &PlannedRun) -> RunRecord {
        let (device, repeatable) = self.trainer.device();
        let earlier = dir.record();
        RunRecord {
            id: run.id.clone(),
            spec: run.spec.clone(),
            provenance: Provenance {
                lecal_version: env!("CARGO_PKG_VERSION").into(),
                candle_version: env!("LECAL_CANDLE_VERSION").into(),
                git_commit: env!("LECAL_GIT_COMMIT").into(),
                git_dirty: env!("LECAL_GIT_DIRTY") == "true",
                cargo_lock_sha256: env!("LECAL_CARGO_LOCK_SHA256").into(),
                seed: Some(run.spec.seed),
                threads: Some(rayon::current_num_threads()),
                device_details: self.trainer.device_details(),
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

/// Writes a run's checkpoints and epochs as they end and its results when it finishes,
/// and tells the progress display.
struct StoreSink<'a> {
    /// Where the run trains: its folder, or its `rebuild/` folder.
    dir: RunDir,
    /// The run's folder when it trains again in `rebuild/` for its weights.
    home: Option<RunDir>,
    /// The run's lock, released as soon as the run ends (the rest of a cohort may go on).
    lock: Option<RunLock>,
    run: &'a PlannedRun,
    epochs: Vec<EpochRecord>,
    progress: &'a Mutex<Progress>,
    /// Whether other runs train with it (its lines then name it).
    in_cohort: bool,
    /// run.toml, rewritten when the run resumes and when it ends.
    record: RunRecord,
    /// Whether the trainer said how the run ended with an error (else the driver does).
    told_failed: bool,
    /// The error of writing its failure record, which halts the invocation.
    failure_unwritten: Option<anyhow::Error>,
}

impl StoreSink<'_> {
    fn total_epochs(&self) -> usize {
        self.run.spec.schedule.epochs
    }

    /// The results of a finished run, `done.toml` last: it vouches for every file before
    /// it and marks the run done.
    fn write_results(&mut self, weights: &[u8], outcome: &Outcome) -> anyhow::Result<()> {
        let (dir, run) = (&self.dir, self.run);
        dir.write_weights(weights)?;
        // Training and evaluation time over every attempt.
        let wall: f64 = outcome.epochs.iter().map(|e| e.seconds).sum();
        let last = outcome.epochs.last().expect("at least one epoch");
        dir.write_evaluation(&outcome.last)?;
        dir.write_logits(&outcome.last, outcome.validation.as_ref())?;
        self.record.provenance.finished_unix = Some(now_unix());
        self.record.provenance.wall_seconds = Some(wall);
        dir.write_record(&self.record)?;
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
            top5: Some(outcome.last.top5),
            val_nll: val.map(|e| e.nll),
            val_brier: val.map(|e| e.brier),
        })?;
        dir.write_done()?;
        dir.remove_checkpoints();
        lock(self.progress).end_run(run, &outcome.last, wall);
        Ok(())
    }

    /// After a rebuild: only the new weights move into the run's folder. A summary that
    /// comes out different (a device that is not bitwise repeatable) is said.
    fn keep_rebuilt_weights(&self, home: &RunDir) -> anyhow::Result<()> {
        // Compared as values: files written before a column was added read the same.
        if self.dir.summary().ok().flatten() != home.summary().ok().flatten() {
            lock(self.progress).line(&format!(
                "warning: run {}: the weights trained again give another summary than the \
                 committed one (see {}); the committed files are kept",
                self.run.id,
                self.dir.path().display(),
            ));
        }
        home.take_weights_from(&self.dir)?;
        self.dir.remove();
        Ok(())
    }
}

impl RunSink for StoreSink<'_> {
    fn resume(&mut self) -> anyhow::Result<Option<Checkpoint>> {
        let id = self.dir.id().to_string();
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
            ck.epoch,
            self.total_epochs()
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
        let total = self.total_epochs();
        lock(self.progress).epoch(self.dir.id(), &r, total, self.in_cohort);
        Ok(())
    }

    fn progress(&mut self, epoch: usize, done: usize, total: usize) {
        let epochs = self.total_epochs();
        lock(self.progress).batch(epoch, epochs, done, total);
    }

    fn note(&mut self, text: &str) {
        lock(self.progress).line(&format!("  {}: {text}", self.run.id));
    }

    fn stop_requested(&self) -> Option<i32> {
        interrupt::requested()
    }

    fn finish(&mut self, weights: &[u8], outcome: &Outcome) -> anyhow::Result<()> {
        self.write_results(weights, outcome)?;
        if let Some(home) = self.home.take() {
            self.keep_rebuilt_weights(&home)?;
        }
        self.lock = None;
        Ok(())
    }

    fn failed(&mut self, error: &anyhow::Error) {
        self.told_failed = true;
        if halt_of(error).is_some() {
            return;
        }
        let failure = Failure {
            epoch: self.epochs.len() + 1,
            reason: message(error),
        };
        if self.in_cohort {
            lock(self.progress).line(&format!(
                "  {} failed in epoch {}; the rest of its cohort goes on",
                self.run.id, failure.epoch
            ));
        }
        if let Err(e) = self.dir.write_failure(&failure) {
            self.failure_unwritten = Some(e);
        }
        self.lock = None;
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
