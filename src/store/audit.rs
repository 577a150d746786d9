//! What `lecal show` and `lecal verify` read of a run folder besides its state: the files
//! it holds, its result files as bytes for `compare`, whether a live process trains it,
//! and a done run copied into another results folder (a teacher with its weights).

use super::compare::RunFiles;
use super::lock::{self, Holder};
use super::records::*;
use super::{write_atomic, RunDir, WriteError};

/// One entry of a run folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    /// Bytes; `None` for a folder (`checkpoint/`, `rebuild/`).
    pub bytes: Option<u64>,
}

impl RunDir {
    /// The folder's entries, sorted by name (temporaries of a live writer included).
    pub fn entries(&self) -> Vec<Entry> {
        let mut out: Vec<Entry> = std::fs::read_dir(self.path())
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let meta = e.metadata().ok()?;
                Some(Entry {
                    name: e.file_name().to_str()?.to_string(),
                    bytes: meta.is_file().then_some(meta.len()),
                })
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// The result files as they are, read without checking them against the done record
    /// (a damaged run is compared too, to say where it differs).
    pub fn result_files(&self) -> RunFiles {
        let read = |name: &str| std::fs::read(self.file(name)).ok();
        RunFiles {
            summary: read(SUMMARY),
            epochs: read(EPOCHS),
            reliability: read(RELIABILITY),
            predictions: read(PREDICTIONS),
            logits: read(LOGITS),
        }
    }

    /// Whether the folder holds any of the files a run writes from its first moments (its
    /// record, lock, epochs, checkpoints, failure or summary): a folder of another kind
    /// is not taken for a pending run.
    pub fn holds_a_run(&self) -> bool {
        [RUN, EPOCHS, FAILED, SUMMARY]
            .iter()
            .any(|f| self.file(f).is_file())
            || super::checkpoint::dir(self.path()).is_dir()
            || self.path().join(lock::LOCK).is_file()
    }

    /// Whether a done record vouches for the run's files (a done run without one was
    /// written before done records existed, or had it removed: done, unverified).
    pub fn vouched(&self) -> bool {
        self.file(DONE).is_file()
    }

    /// The live process training the run, if one holds its lock (`Some(None)`: it has not
    /// written who it is yet). Takes no lock and writes nothing.
    pub fn holder(&self) -> Option<Option<Holder>> {
        lock::holder(self.path())
    }

    /// Copies this done run into `to` (another results folder's folder of the same run):
    /// every file its done record vouches for, the weights among them, and the record
    /// last, so that `to` is done only once whole. Fails unless the run is done with sound
    /// weights.
    pub fn copy_done_to(&self, to: &RunDir) -> anyhow::Result<()> {
        let rec = match self.done_record() {
            Ok(Some(rec)) => rec,
            Ok(None) => anyhow::bail!("run {}: no {DONE} in {}", self.id(), self.path().display()),
            Err(why) => anyhow::bail!("{why}"),
        };
        match self.weights() {
            super::Weights::Sound => {}
            super::Weights::Missing => {
                anyhow::bail!("{} is missing", self.weights_path().display())
            }
            super::Weights::Damaged(why) => anyhow::bail!("{why}"),
        }
        to.create()?;
        for name in rec.files.keys().map(String::as_str).chain([DONE]) {
            let from = self.file(name);
            let bytes = std::fs::read(&from)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", from.display()))?;
            let dest = to.file(name);
            write_atomic(&dest, &bytes).map_err(|e| WriteError::new(&dest, e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{RunState, Weights};

    fn done_run(root: &std::path::Path) -> RunDir {
        super::super::run_dir::done_example(root)
    }

    #[test]
    fn a_done_run_is_copied_whole_with_its_weights_and_is_done_there() {
        let d = tempfile::tempdir().unwrap();
        let r = done_run(&d.path().join("a"));
        let to = RunDir::new(r.id(), d.path().join("b").join(r.id()));
        r.copy_done_to(&to).unwrap();
        assert_eq!(to.state(), RunState::Done);
        assert_eq!(to.weights(), Weights::Sound);
        assert_eq!(to.result_files(), r.result_files());
        let names: Vec<String> = to.entries().into_iter().map(|e| e.name).collect();
        assert_eq!(
            names,
            [
                "done.toml",
                "epochs.csv",
                "logits.safetensors",
                "predictions.csv",
                "reliability.csv",
                "run.toml",
                "summary.csv",
                "weights.safetensors"
            ]
        );
        // Damaged weights are not copied.
        std::fs::write(r.weights_path(), "other\n").unwrap();
        let e = r.copy_done_to(&RunDir::new(r.id(), d.path().join("c").join(r.id())));
        assert!(format!("{:#}", e.unwrap_err()).contains("done.toml says"));
        assert!(to.holder().is_none());
    }
}
