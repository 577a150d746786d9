//! One run's folder: the only code that knows its file names and writes its files.
//!
//! ```text
//! <results>/runs/<id>/run.toml          resolved spec + provenance
//! <results>/runs/<id>/epochs.csv        one row per finished epoch
//! <results>/runs/<id>/summary.csv       the reported (last-epoch) numbers; present = done
//! <results>/runs/<id>/reliability.csv   ECE bins of the last epoch
//! <results>/runs/<id>/predictions.csv   per-sample label, prediction, confidence
//! <results>/runs/<id>/failed.toml       why the last attempt failed
//! <results>/runs/<id>/weights.safetensors
//! <results>/runs/<id>/checkpoint/       the last two epochs' checkpoints, while training
//! <results>/runs/<id>/lock              held by the process training the run
//! <results>/runs/<id>/rebuild/          a done teacher trained again for its weights
//! ```
//!
//! Every write is atomic (`write_atomic`). A Slurm job, a cohort or the local executor
//! that trains one run goes through a `RunDir` and re-derives none of this.

use super::checkpoint::{self, Found};
use super::lock::{self, Acquired};
use super::records::{self, *};
use super::{remove_temporaries, write_atomic, RunState, WriteError};
use crate::metrics::Evaluation;
use std::path::{Path, PathBuf};

/// The folder of the run `id` (or its `rebuild/` folder, which holds the same run).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir {
    id: String,
    path: PathBuf,
}

impl RunDir {
    pub fn new(id: &str, path: PathBuf) -> Self {
        Self {
            id: id.to_string(),
            path,
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// The folder where a done run whose weights are missing trains again, leaving its
    /// committed files alone.
    pub fn rebuild(&self) -> RunDir {
        RunDir::new(&self.id, self.file(REBUILD))
    }

    /// Creates the folder (and its parents).
    pub fn create(&self) -> Result<(), WriteError> {
        std::fs::create_dir_all(&self.path).map_err(|e| WriteError::new(&self.path, e))
    }

    /// Removes the whole folder (a finished `rebuild/`).
    pub fn remove(&self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }

    /// Takes the run's lock (`store::lock`).
    pub fn try_lock(&self) -> anyhow::Result<Acquired> {
        lock::try_lock(&self.path)
    }

    /// Temporary files a killed writer left; call only under the run's lock.
    pub fn remove_temporaries(&self) {
        remove_temporaries(&self.path);
    }

    /// The run's state as its files tell it.
    pub fn state(&self) -> RunState {
        match self.summary() {
            Ok(Some(_)) => return RunState::Done,
            Err(why) => return RunState::Damaged(why),
            Ok(None) => {}
        }
        if let Some(f) = self.failure() {
            return RunState::Failed {
                epoch: f.epoch,
                reason: f.reason,
            };
        }
        match self.epochs() {
            Ok(e) if !e.is_empty() => RunState::Partial(e.len()),
            _ => RunState::Pending,
        }
    }

    /// The summary: `Ok(None)` when there is none yet, `Err(why)` when the file is there
    /// but unreadable or another run's (`RunState::Damaged`).
    pub fn summary(&self) -> Result<Option<Summary>, String> {
        let path = self.file(SUMMARY);
        match std::fs::metadata(&path) {
            // No such file, or no run folder at all above it.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) =>
            {
                return Ok(None)
            }
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
            Ok(m) if !m.is_file() => return Err(format!("{} is not a file", path.display())),
            Ok(_) => {}
        }
        match read_summary(&path) {
            Ok(s) if s.id != self.id => {
                Err(format!("{} is the summary of run {}", path.display(), s.id))
            }
            Ok(s) => match s.out_of_range() {
                Some(why) => Err(format!("{}: {why}", path.display())),
                None => Ok(Some(s)),
            },
            Err(e) => Err(format!("{e:#}")),
        }
    }

    /// Written last: its presence marks the run done.
    pub fn write_summary(&self, s: &Summary) -> anyhow::Result<()> {
        write_csv(&self.file(SUMMARY), std::slice::from_ref(s))
    }

    /// The failure of the last attempt, when there is a readable `failed.toml`.
    pub fn failure(&self) -> Option<Failure> {
        let text = std::fs::read_to_string(self.file(FAILED)).ok()?;
        toml::from_str(&text).ok()
    }

    pub fn write_failure(&self, f: &Failure) -> anyhow::Result<()> {
        write_toml(&self.file(FAILED), f)
    }

    /// Forgets the last attempt's failure, as a new attempt starts.
    pub fn clear_failure(&self) {
        let _ = std::fs::remove_file(self.file(FAILED));
    }

    pub fn epochs(&self) -> anyhow::Result<Vec<EpochRecord>> {
        read_epochs(&self.file(EPOCHS))
    }

    pub fn write_epochs(&self, rows: &[EpochRecord]) -> anyhow::Result<()> {
        write_csv(&self.file(EPOCHS), rows)
    }

    /// Drops epoch rows that no checkpoint backs (the run starts again from epoch 1).
    pub fn remove_epochs(&self) {
        let _ = std::fs::remove_file(self.file(EPOCHS));
    }

    /// `run.toml`, when it is there, readable and this run's.
    pub fn record(&self) -> Option<RunRecord> {
        let text = std::fs::read_to_string(self.file(RUN)).ok()?;
        toml::from_str::<RunRecord>(&text)
            .ok()
            .filter(|r| r.id == self.id)
    }

    pub fn write_record(&self, r: &RunRecord) -> anyhow::Result<()> {
        write_toml(&self.file(RUN), r)
    }

    /// `reliability.csv` and `predictions.csv` of the last epoch's evaluation.
    pub fn write_evaluation(&self, e: &Evaluation) -> anyhow::Result<()> {
        records::write_evaluation(&self.path, e)
    }

    /// Where the final weights are (a teacher's students read them from there).
    pub fn weights_path(&self) -> PathBuf {
        self.file(WEIGHTS)
    }

    /// Whether the weights file is there (it is not committed with the results).
    pub fn has_weights(&self) -> bool {
        self.weights_path().is_file()
    }

    /// The final weights, as safetensors bytes.
    pub fn write_weights(&self, bytes: &[u8]) -> anyhow::Result<()> {
        write_atomic(&self.weights_path(), bytes)
    }

    /// Moves the weights of `other` (this run trained again in `rebuild/`) into place.
    pub fn take_weights_from(&self, other: &RunDir) -> Result<(), WriteError> {
        let to = self.weights_path();
        std::fs::rename(other.weights_path(), &to).map_err(|e| WriteError::new(&to, e))
    }

    /// Saves the checkpoint after `epochs.len()` epochs and prunes older ones.
    pub fn save_checkpoint(&self, epochs: &[EpochRecord], state: &[u8]) -> anyhow::Result<()> {
        checkpoint::save(&self.path, &self.id, epochs, state)
    }

    /// The newest checkpoint that verifies, and why others were skipped.
    pub fn load_checkpoint(&self) -> Found {
        checkpoint::load_latest(&self.path, &self.id)
    }

    /// Removes every checkpoint (the run is done).
    pub fn remove_checkpoints(&self) {
        let _ = checkpoint::remove_all(&self.path);
    }
}
