//! One run's folder: the only code that knows its file names and writes its files.
//!
//! ```text
//! <results>/runs/<id>/run.toml          resolved spec + provenance
//! <results>/runs/<id>/epochs.csv        one row per finished epoch
//! <results>/runs/<id>/summary.csv       the reported (last-epoch) numbers; present = done
//! <results>/runs/<id>/reliability.csv   ECE bins of the last epoch
//! <results>/runs/<id>/predictions.csv   per-sample label, prediction, confidence
//! <results>/runs/<id>/logits.safetensors  the last epoch's test (and validation) logits,
//!                                       f16 (`logits.rs`)
//! <results>/runs/<id>/done.toml         written last: marks the run done, vouches for
//!                                       its files by size and SHA-256
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
use super::logits::{self, read_logits, StoredLogits};
use super::records::{self, *};
use super::{remove_temporaries, write_atomic, RunState, WriteError};
use crate::metrics::Evaluation;
use std::path::{Path, PathBuf};

/// Format of the `done.toml` this lecal writes. Format 2 vouches for the logits too.
/// Format 1, written before runs kept their logits, still marks its run done: its files
/// are what the record says, and training it again would rewrite committed results; such
/// a run only has no logits to compute the calibration measures from (`RunDir::logits`
/// says so). A format-2 record without the logits is damage, like any vouched file.
const DONE_FORMAT: u32 = 2;

/// The files a done record vouches for besides the weights (which are not committed, so
/// a missing weights file is not damage). The logits are results like the CSV files:
/// fixed by the spec and seed, written before the done record, committed.
const VOUCHED: [&str; 6] = [RUN, EPOCHS, SUMMARY, RELIABILITY, PREDICTIONS, LOGITS];

/// The files a done record of `format` must vouch for.
fn vouched(format: u32) -> &'static [&'static str] {
    match format {
        1 => &VOUCHED[..5],
        _ => &VOUCHED,
    }
}

/// The weights of a done run, as its done record finds them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Weights {
    Missing,
    Sound,
    /// There, but not the bytes the done record vouches for.
    Damaged(String),
}

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

    pub(super) fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// The folder where a done run whose weights are missing trains again, leaving its
    /// committed files alone.
    pub fn rebuild(&self) -> RunDir {
        RunDir::new(&self.id, self.file(REBUILD))
    }

    /// Creates the folder (and its parents): a real folder, not a link (`real_folder`).
    pub fn create(&self) -> Result<(), WriteError> {
        super::real_folder(&self.path)
    }

    /// Removes the whole folder (a finished `rebuild/`).
    pub fn remove(&self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }

    /// Takes the run's lock (`store::lock`).
    pub fn try_lock(&self) -> anyhow::Result<Acquired> {
        lock::try_lock(&self.path)
    }

    /// Removes the lock file a process killed after finishing the run left behind (the
    /// window between its done record and its lock's release), so that a done run's folder
    /// holds its results only. A lock a live process holds stays.
    pub fn clear_stale_lock(&self) {
        if self.file(lock::LOCK).exists() {
            if let Ok(Acquired::Held { lock, .. }) = self.try_lock() {
                drop(lock);
            }
        }
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

    /// Why the run's folder is not one: a file took its place.
    pub fn misplaced(&self) -> Option<String> {
        std::fs::metadata(&self.path)
            .is_ok_and(|m| !m.is_dir())
            .then(|| {
                format!(
                    "{} is not a folder (a file took the run folder's place); remove it, and \
                 `lecal run` trains the run again",
                    self.path.display()
                )
            })
    }

    /// The summary of a done run: `Ok(None)` when the run is not done, `Err(why)` when
    /// its files are damaged (`RunState::Damaged`): a summary that is not a file, cannot
    /// be read, is another run's or holds impossible numbers, or a file that the done
    /// record vouches for that is missing or changed. A summary without a done record is
    /// a run killed before writing it while its checkpoints are still there (not done),
    /// else one written before done records existed (done, unverified).
    pub fn summary(&self) -> Result<Option<Summary>, String> {
        if let Some(why) = self.misplaced() {
            return Err(why);
        }
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
        let s = match read_summary(&path) {
            Ok(s) if s.id != self.id => {
                return Err(format!("{} is the summary of run {}", path.display(), s.id))
            }
            Ok(s) => s,
            Err(e) => return Err(format!("{e:#}")),
        };
        if let Some(why) = s.out_of_range() {
            return Err(format!("{}: {why}", path.display()));
        }
        match self.done_record()? {
            Some(rec) => self.check_vouched(&rec)?,
            None if checkpoint::dir(&self.path).exists() => return Ok(None),
            None => {}
        }
        RunRecord::read_checked(&self.file(RUN), &self.id)?;
        Ok(Some(s))
    }

    /// `done.toml`, when there is one; `Err` when it is there but unreadable.
    pub(super) fn done_record(&self) -> Result<Option<DoneRecord>, String> {
        let path = self.file(DONE);
        let text = match std::fs::read_to_string(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
            Ok(t) => t,
        };
        match toml::from_str::<DoneRecord>(&text) {
            Ok(r) if r.id == self.id && (1..=DONE_FORMAT).contains(&r.format) => Ok(Some(r)),
            Ok(r) if r.id != self.id => Err(format!(
                "{} is the done record of run {}",
                path.display(),
                r.id
            )),
            Ok(r) => Err(format!(
                "{}: format {} (this lecal writes {DONE_FORMAT})",
                path.display(),
                r.format
            )),
            Err(e) => Err(format!("{}: malformed: {}", path.display(), e.message())),
        }
    }

    /// Every file of `rec` but the weights, as it vouches for them.
    fn check_vouched(&self, rec: &DoneRecord) -> Result<(), String> {
        for (name, want) in rec.files.iter().filter(|(n, _)| *n != WEIGHTS) {
            let path = self.file(name);
            if !path.is_file() {
                return Err(format!(
                    "{} is missing ({DONE} vouches for it)",
                    path.display()
                ));
            }
            Self::check_hash(&path, want)?;
        }
        for &name in vouched(rec.format) {
            if !rec.files.contains_key(name) {
                return Err(format!(
                    "{}: no entry for {name}",
                    self.file(DONE).display()
                ));
            }
        }
        Ok(())
    }

    /// The size first: a truncated file needs no hashing to be told apart.
    fn check_hash(path: &Path, want: &FileHash) -> Result<(), String> {
        let unreadable = |e: std::io::Error| format!("cannot read {}: {e}", path.display());
        let bytes = std::fs::metadata(path).map_err(unreadable)?.len();
        if bytes != want.bytes {
            return Err(format!(
                "{} has {bytes} bytes, {DONE} says {}",
                path.display(),
                want.bytes
            ));
        }
        let sha256 = crate::hash::file_sha256(path).map_err(unreadable)?;
        if sha256 != want.sha256 {
            return Err(format!(
                "{} does not match its SHA-256 in {DONE}",
                path.display()
            ));
        }
        Ok(())
    }

    /// Written after the summary: vouches for every file of the done run.
    pub fn write_done(&self) -> anyhow::Result<()> {
        let mut files = std::collections::BTreeMap::new();
        for name in VOUCHED.into_iter().chain([WEIGHTS]) {
            let path = self.file(name);
            let h = hash_of(&path).map_err(|e| WriteError::new(&path, e))?;
            files.insert(name.to_string(), h);
        }
        let rec = DoneRecord {
            format: DONE_FORMAT,
            id: self.id.clone(),
            files,
        };
        write_toml(&self.file(DONE), &rec)
    }

    /// The weights file against the done record (read in full: call it where the weights
    /// are about to be used or reported, not for every state).
    pub fn weights(&self) -> Weights {
        let path = self.weights_path();
        if !path.is_file() {
            return Weights::Missing;
        }
        let want = match self.done_record() {
            Ok(Some(rec)) => rec.files.get(WEIGHTS).cloned(),
            _ => None,
        };
        match want {
            Some(want) => match Self::check_hash(&path, &want) {
                Ok(()) => Weights::Sound,
                Err(why) => Weights::Damaged(why),
            },
            None => Weights::Sound,
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

    /// The batch job the run was last submitted in, if any.
    pub fn slurm(&self) -> Option<SlurmRecord> {
        let text = std::fs::read_to_string(self.file(SLURM)).ok()?;
        toml::from_str(&text).ok()
    }

    pub fn write_slurm(&self, r: &SlurmRecord) -> anyhow::Result<()> {
        write_toml(&self.file(SLURM), r)
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

    /// `predictions.csv`: the last epoch's test images, each with its label, prediction and
    /// confidence.
    pub fn predictions(&self) -> anyhow::Result<Vec<crate::metrics::Prediction>> {
        read_predictions(&self.file(PREDICTIONS))
    }

    /// `logits.safetensors`: the last epoch's test logits and, where the run holds out a
    /// validation split, its validation logits.
    pub fn write_logits(&self, test: &Evaluation, val: Option<&Evaluation>) -> anyhow::Result<()> {
        let bytes = logits::encode_evaluations(test, val)?;
        write_atomic(&self.file(LOGITS), &bytes)
    }

    /// The stored logits of a done run. A run done before runs kept their logits has none:
    /// the error says so.
    pub fn logits(&self) -> anyhow::Result<StoredLogits> {
        let path = self.file(LOGITS);
        if !path.exists() {
            if let Ok(Some(rec)) = self.done_record() {
                if !rec.files.contains_key(LOGITS) {
                    anyhow::bail!(
                        "{} is missing: run {} was done before runs kept their logits; \
                         remove its folder to train it again",
                        path.display(),
                        self.id
                    );
                }
            }
        }
        read_logits(&path)
    }

    /// Where the final weights are (a teacher's students read them from there).
    pub fn weights_path(&self) -> PathBuf {
        self.file(WEIGHTS)
    }

    /// Whether the weights are there and sound (they are not committed with the results).
    pub fn has_weights(&self) -> bool {
        self.weights() == Weights::Sound
    }

    /// The final weights, as safetensors bytes.
    pub fn write_weights(&self, bytes: &[u8]) -> anyhow::Result<()> {
        write_atomic(&self.weights_path(), bytes)
    }

    /// Moves the weights of `other` (this run trained again in `rebuild/`) into place.
    /// Where they differ from the ones the done record vouches for (a device that is not
    /// bitwise repeatable), the record's weights entry follows them; the other files
    /// stay as they were.
    pub fn take_weights_from(&self, other: &RunDir) -> anyhow::Result<()> {
        let to = self.weights_path();
        std::fs::rename(other.weights_path(), &to).map_err(|e| WriteError::new(&to, e))?;
        if let Ok(Some(mut rec)) = self.done_record() {
            let h = hash_of(&to).map_err(|e| WriteError::new(&to, e))?;
            if rec.files.get(WEIGHTS) != Some(&h) {
                rec.files.insert(WEIGHTS.to_string(), h);
                write_toml(&self.file(DONE), &rec)?;
            }
        }
        Ok(())
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

/// Size and SHA-256 of a file.
fn hash_of(path: &Path) -> std::io::Result<FileHash> {
    Ok(FileHash {
        bytes: std::fs::metadata(path)?.len(),
        sha256: crate::hash::file_sha256(path)?,
    })
}

/// A done run of `spec::example()` in `root`: its real `run.toml`, placeholder result
/// files and a summary (for tests).
#[cfg(test)]
pub(super) fn done_example(root: &Path) -> RunDir {
    let spec = crate::spec::example();
    let id = spec.id();
    let r = RunDir::new(&id, root.join(&id));
    r.create().unwrap();
    let provenance = Provenance::default();
    r.write_record(&RunRecord {
        id: id.clone(),
        spec,
        provenance,
    })
    .unwrap();
    for f in [EPOCHS, RELIABILITY, PREDICTIONS, LOGITS, WEIGHTS] {
        std::fs::write(r.file(f), format!("{f}\n")).unwrap();
    }
    let summary = Summary {
        id,
        accuracy: 50.0,
        ece: 0.1,
        nll: 1.0,
        brier: 0.5,
        train_accuracy: 60.0,
        ..Default::default()
    };
    r.write_summary(&summary).unwrap();
    r.write_done().unwrap();
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done_run(root: &Path) -> RunDir {
        done_example(root)
    }

    #[test]
    fn issue_13_the_done_record_marks_done_and_vouches_for_its_files() {
        let d = tempfile::tempdir().unwrap();
        let r = done_run(d.path());
        assert_eq!(r.state(), RunState::Done);
        assert_eq!(r.weights(), Weights::Sound);
        // The weights are not committed: missing is not damage.
        std::fs::remove_file(r.weights_path()).unwrap();
        assert_eq!((r.state(), r.weights()), (RunState::Done, Weights::Missing));
        std::fs::write(r.weights_path(), "WEIGHTS.SAFETENSORS\n").unwrap();
        assert!(matches!(r.weights(), Weights::Damaged(w) if w.contains("SHA-256")));
        // A committed file changed, then removed.
        std::fs::write(r.file(RELIABILITY), "changed\n").unwrap();
        assert!(matches!(r.state(), RunState::Damaged(w) if w.contains("reliability.csv")));
        std::fs::remove_file(r.file(RELIABILITY)).unwrap();
        assert!(matches!(r.state(), RunState::Damaged(w) if w.contains("is missing")));
    }

    #[test]
    fn a_spec_changed_after_the_run_is_damage_even_with_its_done_record_hashed_again() {
        let d = tempfile::tempdir().unwrap();
        let r = done_run(d.path());
        let mut rec = r.record().unwrap();
        rec.spec.schedule.lr = 0.777;
        r.write_record(&rec).unwrap();
        r.write_done().unwrap();
        let RunState::Damaged(why) = r.state() else {
            panic!("{:?}", r.state())
        };
        assert!(why.contains("run.toml: its spec hashes to run id"), "{why}");
        std::fs::write(r.file(RUN), "id = 3").unwrap();
        r.write_done().unwrap();
        assert!(matches!(r.state(), RunState::Damaged(w) if w.contains("malformed")));
    }

    #[test]
    fn issue_13_a_summary_without_its_done_record_is_done_only_without_checkpoints() {
        let d = tempfile::tempdir().unwrap();
        let r = done_run(d.path());
        std::fs::remove_file(r.file(DONE)).unwrap();
        // Written before done records existed: done, unverified.
        assert_eq!(r.state(), RunState::Done);
        // Killed between the summary and the done record: its checkpoints are still
        // there, so it is resumed rather than taken as done.
        std::fs::create_dir(checkpoint::dir(r.path())).unwrap();
        assert_ne!(r.state(), RunState::Done);
        std::fs::write(r.file(DONE), "id = ").unwrap();
        assert!(matches!(r.state(), RunState::Damaged(w) if w.contains("malformed")));
    }

    #[test]
    fn a_done_record_of_format_1_needs_no_logits_and_one_of_format_2_does() {
        let d = tempfile::tempdir().unwrap();
        let r = done_run(d.path());
        std::fs::remove_file(r.file(LOGITS)).unwrap();
        assert!(
            matches!(r.state(), RunState::Damaged(w) if w.contains("logits.safetensors is missing"))
        );
        // A run done before runs kept their logits: format 1, no entry for them.
        let mut rec = r.done_record().unwrap().unwrap();
        rec.format = 1;
        rec.files.remove(LOGITS);
        write_toml(&r.file(DONE), &rec).unwrap();
        assert_eq!(r.state(), RunState::Done);
        let e = format!("{:#}", r.logits().unwrap_err());
        assert!(e.contains("was done before runs kept their logits"), "{e}");
        rec.format = 2;
        write_toml(&r.file(DONE), &rec).unwrap();
        assert!(matches!(r.state(), RunState::Damaged(w) if w.contains("no entry for logits")));
        rec.format = 3;
        write_toml(&r.file(DONE), &rec).unwrap();
        assert!(matches!(r.state(), RunState::Damaged(w) if w.contains("format 3")));
    }

    #[test]
    fn an_evaluations_logits_are_written_and_read_back() {
        let d = tempfile::tempdir().unwrap();
        let r = RunDir::new("run-a", d.path().join("run-a"));
        r.create().unwrap();
        let test = crate::metrics::evaluate(&[2.0, 0.5, -1.0, 0.0, 3.0, 1.0], &[0, 2], 3);
        let val = crate::metrics::evaluate(&[0.0, 1.0, 0.25], &[1], 3);
        r.write_logits(&test, Some(&val)).unwrap();
        let got = r.logits().unwrap();
        // Each row less its largest (all exact in f16).
        assert_eq!(got.test.logits, [0.0, -1.5, -3.0, -3.0, 0.0, -2.0]);
        assert_eq!(
            (got.test.labels.as_slice(), got.test.classes),
            (&[0u16, 2][..], 3)
        );
        let v = got.validation.unwrap();
        assert_eq!(
            (v.logits.as_slice(), v.labels.as_slice()),
            (&[-1.0, 0.0, -0.75][..], &[1u16][..])
        );
        r.write_logits(&test, None).unwrap();
        assert_eq!(r.logits().unwrap().validation, None);
    }
}
