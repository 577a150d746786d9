//! The results folder: run folders (`RunDir`, which alone knows a run's files), the
//! records they hold, reading a run's state back, tables, and atomic writes (temporary
//! file + rename, so a reader never sees half a file).
//!
//! ```text
//! <results>/runs/<id>/      one run (see `run_dir.rs`)
//! <results>/tables/<table>.md, .csv, .tex
//! <results>/report/<table>/ a table's report (index.html and its plots, `report::page`)
//! ```
//!
//! `audit.rs` reads a run folder for `lecal show` and `lecal verify` (its entries, its
//! result files, a live holder) and copies a done run; `compare.rs` says whether two
//! copies of a run's results agree.
//!
//! It imports no stage that writes into it (`train`, `exec`) and not the planner: what it
//! stores is defined here (`records.rs`) or on the spec floor.

mod audit;
pub mod checkpoint;
pub mod compare;
pub mod lock;
mod logits;
mod records;
mod run_dir;

pub use audit::Entry;
pub use logits::{read_logits, SplitLogits, StoredLogits};
pub use records::*;
pub use run_dir::{RunDir, Weights};

use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes `path` through a temporary file in the same folder and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    write_atomic_with(path, |f| Ok(f.write_all(bytes)?))
}

/// Creates `dir` (and its parents) as a real folder, not a link (`links::real_folder`).
pub fn real_folder(dir: &Path) -> Result<(), WriteError> {
    crate::links::real_folder(dir).map_err(|e| WriteError::new(dir, e))
}

/// A file of the results folder could not be written (full disk, permissions, ...). It
/// says nothing about the run being trained, so the executor stops instead of marking
/// runs failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot write {}", path.display())]
pub struct WriteError {
    pub path: PathBuf,
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

impl WriteError {
    pub fn new(path: &Path, source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self {
            path: path.to_path_buf(),
            source: source.into(),
        }
    }

    /// Whether `e` is, or was caused by, a write error.
    pub fn in_chain(e: &anyhow::Error) -> bool {
        e.chain().any(|c| c.is::<WriteError>())
    }
}

/// Lets `write` fill a new temporary file, then renames it to `path`. On error the
/// temporary file is removed and `path` is untouched. No link is followed: the folder
/// must be real (`real_folder`), the temporary file is created new (whatever had its name
/// is removed first), and the rename replaces whatever entry `path` is, a link included,
/// never what a link points to.
pub fn write_atomic_with(
    path: &Path,
    write: impl FnOnce(&mut std::fs::File) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    real_folder(dir)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        write(&mut f)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        anyhow::Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(WriteError::new(path, e).into());
    }
    Ok(())
}

/// Whether `name` is one of `write_atomic`'s temporary files.
pub fn is_temporary(name: &str) -> bool {
    name.starts_with('.') && name.contains(".tmp.")
}

/// Removes temporary files that a killed writer left in `dir` and its subfolders. Call
/// only while holding the folder's run lock: then no live writer owns them.
pub fn remove_temporaries(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        // The entry's own type: a link to a folder elsewhere is not descended into.
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            remove_temporaries(&p);
        } else if e.file_name().to_str().is_some_and(is_temporary) {
            let _ = std::fs::remove_file(&p);
        }
    }
}

/// State of a run as read from its folder.
#[derive(Debug, Clone, PartialEq)]
pub enum RunState {
    Done,
    /// Epochs finished so far.
    Partial(usize),
    Failed {
        epoch: usize,
        reason: String,
    },
    Pending,
    /// `summary.csv` is there but cannot be read (a hand edit, a merge conflict): the run
    /// is neither trained again nor reported until it is restored or removed.
    Damaged(String),
}

impl RunState {
    pub fn label(&self, epochs: usize) -> String {
        match self {
            Self::Done => "done".into(),
            Self::Partial(k) => format!("partial {k} of {epochs} epochs"),
            Self::Failed { epoch, .. } => format!("failed in epoch {epoch}"),
            Self::Pending => "pending".into(),
            Self::Damaged(_) => "damaged".into(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Store {
    pub root: PathBuf,
}

impl Store {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn runs_dir(&self) -> PathBuf {
        self.root.join("runs")
    }

    pub fn run_dir(&self, id: &str) -> PathBuf {
        self.runs_dir().join(id)
    }

    /// The folder of run `id`.
    pub fn run(&self, id: &str) -> RunDir {
        RunDir::new(id, self.run_dir(id))
    }

    /// Whether a run's weights file is there (it is not committed with the results).
    pub fn has_weights(&self, id: &str) -> bool {
        self.run(id).has_weights()
    }

    /// The failure of the last attempt to train a done run again for its weights.
    pub fn rebuild_failure(&self, id: &str) -> Option<Failure> {
        self.run(id).rebuild().failure()
    }

    /// A run's summary: `Ok(None)` when it has none yet, `Err(why)` when the file is there
    /// but unreadable or another run's (`RunState::Damaged`).
    pub fn summary(&self, id: &str) -> Result<Option<Summary>, String> {
        self.run(id).summary()
    }

    pub fn tables_dir(&self) -> PathBuf {
        self.root.join("tables")
    }

    pub fn reports_dir(&self) -> PathBuf {
        self.root.join("report")
    }

    /// The folder of the report of table `stem` (`<name>` or `<name>.<scale>`, as its
    /// table files are named); what goes in it is the report's own.
    pub fn report_dir(&self, stem: &str) -> PathBuf {
        self.reports_dir().join(stem)
    }

    pub fn state(&self, id: &str) -> RunState {
        self.run(id).state()
    }

    /// Ids of every run folder, sorted.
    pub fn run_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = std::fs::read_dir(self.runs_dir())
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir())
            .filter_map(|e| e.file_name().to_str().map(str::to_owned))
            .collect();
        ids.sort();
        ids
    }
}
