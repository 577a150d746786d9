//! The records a run folder stores and their file formats (CSV and TOML). `RunDir`
//! decides where each goes.

use super::write_atomic;
use crate::metrics::{Evaluation, Prediction};
use crate::spec::RunSpec;
use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// One row of `epochs.csv`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    pub lr: f64,
    pub train_loss: f64,
    pub train_acc: f64,
    pub test_loss: f64,
    pub test_acc: f64,
    pub ece: f64,
    pub nll: f64,
    pub brier: f64,
    /// The validation set's loss (NLL), accuracy and ECE, when the run holds one out;
    /// empty columns otherwise.
    #[serde(default)]
    pub val_loss: Option<f64>,
    #[serde(default)]
    pub val_acc: Option<f64>,
    #[serde(default)]
    pub val_ece: Option<f64>,
    /// Training and evaluation time of the epoch (the times come last: every column
    /// before them is fixed by the spec and seed).
    pub seconds: f64,
    /// Time to write the epoch's checkpoint.
    pub checkpoint_seconds: f64,
}

/// The SHA-256 and size of one file a done record vouches for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileHash {
    pub bytes: u64,
    pub sha256: String,
}

/// `done.toml`: written last, it marks the run done and vouches for the files the run
/// wrote, by size and SHA-256.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DoneRecord {
    pub format: u32,
    pub id: String,
    pub files: std::collections::BTreeMap<String, FileHash>,
}

pub const RUN: &str = "run.toml";
pub const DONE: &str = "done.toml";
pub const EPOCHS: &str = "epochs.csv";
pub const SUMMARY: &str = "summary.csv";
pub const RELIABILITY: &str = "reliability.csv";
pub const PREDICTIONS: &str = "predictions.csv";
pub const FAILED: &str = "failed.toml";
pub const WEIGHTS: &str = "weights.safetensors";
/// The final test (and validation) logits, f16 (`logits.rs`): a result, committed.
pub const LOGITS: &str = "logits.safetensors";
/// The cluster job a run was submitted in (`lecal submit`): not a result, never vouched
/// for by the done record, and not committed.
pub const SLURM: &str = "slurm.toml";
/// The folder inside a done run's folder where a teacher whose weights are missing (they
/// are not committed) is trained again, leaving the committed files alone.
pub const REBUILD: &str = "rebuild";

/// Where and how a run was produced: what `lecal show` prints and a reviewer reads. Not
/// part of the run's id, and left out of every byte-for-byte comparison of results. The
/// fields added after the first records are `serde(default)`: older run.toml files read.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    pub lecal_version: String,
    pub candle_version: String,
    /// The commit lecal was built from (`unknown` outside a git checkout). Records written
    /// before `git_dirty` end it with `-dirty` instead.
    pub git_commit: String,
    /// Whether lecal's tracked files differed from `git_commit` when it was built.
    #[serde(default)]
    pub git_dirty: bool,
    /// SHA-256 of the Cargo.lock lecal was built with: every dependency's exact version.
    #[serde(default)]
    pub cargo_lock_sha256: String,
    /// The run's seed (also in its spec), where a reader of provenance looks for it.
    #[serde(default)]
    pub seed: Option<u64>,
    /// The CPU threads of the attempt that wrote this record (its slot's share of the
    /// process's threads with `--jobs` or `--devices`).
    #[serde(default)]
    pub threads: Option<usize>,
    pub device: String,
    /// Whether the device promises that rerunning gives bit-identical numbers.
    pub bitwise_repeatable: bool,
    pub cells: Vec<String>,
    pub started_unix: u64,
    pub finished_unix: Option<u64>,
    /// Training and evaluation time summed over the epochs (checkpoint writes excluded).
    pub wall_seconds: Option<f64>,
    /// The epochs after which an interrupted attempt was resumed from its checkpoint.
    #[serde(default)]
    pub resumed_after: Vec<usize>,
    /// The machine of the attempt that wrote this record.
    #[serde(default)]
    pub host: String,
    /// What the device is, beyond `device` (last: a TOML table after the values).
    #[serde(default)]
    pub device_details: DeviceDetails,
}

/// The device a run trained on: the processor's or GPU's name, and on CUDA the versions
/// of the driver and libraries. Absent where unknown (the CUDA ones on the CPU).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeviceDetails {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// On the CPU, its kernel level (`x86-64-v3`): CPUs of one level compute the same
    /// bits for the same run, whatever else they have. Absent from records written before
    /// lecal recorded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_level: Option<String>,
    /// On the CPU, the microkernel of lecal's matrix products (`avx2-fma`, `portable`):
    /// each gives the same bits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_kernels: Option<String>,
    /// On CUDA, the GPU's compute capability, e.g. `9.0` (H100), `8.0` (A100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compute_capability: Option<String>,
    /// The CUDA version the driver supports (`cuDriverGetVersion`), e.g. `13.0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cuda_driver: Option<String>,
    /// The CUDA runtime libraries loaded: NVRTC's version (candle links no cudart).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cuda_runtime: Option<String>,
    /// The CUDA toolkit (nvcc) candle's kernels were compiled with when lecal was built.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cuda_toolkit: Option<String>,
    /// The cuDNN library loaded (builds with the `cudnn` feature).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cudnn: Option<String>,
    /// lecal's kernels that failed their check at first use on the device, and that
    /// candle's path replaced for this run (`model::kernels::selfcheck`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fallbacks: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub id: String,
    pub spec: RunSpec,
    pub provenance: Provenance,
}

impl RunRecord {
    /// A done run's `run.toml` read and checked: it is this run's, and its spec hashes to
    /// the run id. A spec edited after the run (lr 0.05 made 0.777, the done record
    /// hashed again) is another run's spec under this run's id, and damage.
    pub fn read_checked(path: &Path, id: &str) -> Result<RunRecord, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let rec: RunRecord = toml::from_str(&text)
            .map_err(|e| format!("{}: malformed: {}", path.display(), e.message()))?;
        if rec.id != id {
            return Err(format!(
                "{} is the record of run {}",
                path.display(),
                rec.id
            ));
        }
        let hashed = rec.spec.id();
        if hashed != id {
            return Err(format!(
                "{}: its spec hashes to run id {hashed}, not {id}: it was changed after the run",
                path.display()
            ));
        }
        Ok(rec)
    }
}

/// The reported numbers of a finished run: those of its last epoch. Only numbers that the
/// seed fixes, so that equal runs have byte-identical summaries (times are in run.toml).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub id: String,
    pub dataset: String,
    pub model: String,
    pub seed: u64,
    pub epochs: usize,
    pub accuracy: f64,
    pub ece: f64,
    pub nll: f64,
    pub brier: f64,
    pub train_accuracy: f64,
    /// The last epoch on the validation set, when the run holds one out.
    #[serde(default)]
    pub val_accuracy: Option<f64>,
    #[serde(default)]
    pub val_ece: Option<f64>,
    #[serde(default)]
    pub val_nll: Option<f64>,
    #[serde(default)]
    pub val_brier: Option<f64>,
    /// Top-5 accuracy on the test set (percent); empty in summaries written before it.
    #[serde(default)]
    pub top5: Option<f64>,
}

impl Summary {
    /// What makes these numbers impossible for a finished run (not finite, or outside
    /// their range), if anything: such a summary is not a result.
    pub fn out_of_range(&self) -> Option<String> {
        // (column, value, largest allowed; none for NLL): every one finite and >= 0.
        let checks = [
            ("accuracy", Some(self.accuracy), Some(100.0)),
            ("train_accuracy", Some(self.train_accuracy), Some(100.0)),
            ("ece", Some(self.ece), Some(1.0)),
            ("nll", Some(self.nll), None),
            ("brier", Some(self.brier), Some(2.0)),
            ("val_accuracy", self.val_accuracy, Some(100.0)),
            ("top5", self.top5, Some(100.0)),
            ("val_ece", self.val_ece, Some(1.0)),
            ("val_nll", self.val_nll, None),
            ("val_brier", self.val_brier, Some(2.0)),
        ];
        checks.into_iter().find_map(|(name, v, max)| {
            let v = v?;
            let ok = v.is_finite() && v >= 0.0 && max.is_none_or(|m| v <= m);
            (!ok).then(|| match max {
                Some(m) => format!("{name} is {v}, expected a number from 0 to {m}"),
                None => format!("{name} is {v}, expected a finite number of 0 or more"),
            })
        })
    }
}

/// `slurm.toml`: the batch job that trains a run, as `lecal submit` submitted it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlurmRecord {
    pub job_id: String,
    pub submitted_unix: u64,
    /// The job script.
    pub script: String,
    /// Every run the job trains (its cohort).
    pub runs: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    pub epoch: usize,
    pub reason: String,
}

pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub fn write_toml<T: Serialize>(path: &Path, value: &T) -> anyhow::Result<()> {
    write_atomic(path, toml::to_string(value)?.as_bytes())
}

fn csv_bytes<T: Serialize>(rows: &[T]) -> anyhow::Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for r in rows {
        w.serialize(r)?;
    }
    w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))
}

pub fn write_csv<T: Serialize>(path: &Path, rows: &[T]) -> anyhow::Result<()> {
    write_atomic(path, &csv_bytes(rows)?)
}

pub fn read_csv<T: for<'de> Deserialize<'de>>(path: &Path) -> anyhow::Result<Vec<T>> {
    let mut r =
        csv::Reader::from_path(path).with_context(|| format!("cannot read {}", path.display()))?;
    r.deserialize()
        .collect::<Result<Vec<T>, _>>()
        .with_context(|| format!("{}: malformed CSV", path.display()))
}

pub fn read_epochs(path: &Path) -> anyhow::Result<Vec<EpochRecord>> {
    read_csv(path)
}

pub fn read_summary(path: &Path) -> anyhow::Result<Summary> {
    read_csv::<Summary>(path)?
        .into_iter()
        .next()
        .with_context(|| format!("{}: no row", path.display()))
}

#[derive(Serialize)]
struct BinRow {
    bin: usize,
    lo: f64,
    hi: f64,
    count: usize,
    accuracy: f64,
    confidence: f64,
}

#[derive(Serialize, Deserialize)]
struct PredictionRow {
    index: usize,
    label: u16,
    prediction: u16,
    confidence: f64,
}

/// The per-image predictions of `predictions.csv`, in the file's order.
pub fn read_predictions(path: &Path) -> anyhow::Result<Vec<Prediction>> {
    Ok(read_csv::<PredictionRow>(path)?
        .into_iter()
        .map(|r| Prediction {
            label: r.label,
            prediction: r.prediction,
            confidence: r.confidence,
        })
        .collect())
}

/// Writes reliability.csv and predictions.csv of an evaluation into `dir`.
pub(super) fn write_evaluation(dir: &Path, e: &Evaluation) -> anyhow::Result<()> {
    let bins: Vec<BinRow> = e
        .bins
        .iter()
        .enumerate()
        .map(|(i, b)| BinRow {
            bin: i,
            lo: b.lo,
            hi: b.hi,
            count: b.count,
            accuracy: b.accuracy,
            confidence: b.confidence,
        })
        .collect();
    write_csv(&dir.join(RELIABILITY), &bins)?;
    let preds: Vec<PredictionRow> = e
        .predictions
        .iter()
        .enumerate()
        .map(|(i, p)| PredictionRow {
            index: i,
            label: p.label,
            prediction: p.prediction,
            confidence: p.confidence,
        })
        .collect();
    write_csv(&dir.join(PREDICTIONS), &preds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_whole_files_and_leaves_no_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a/b.txt");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(p.parent().unwrap()).unwrap().collect();
        assert_eq!(names.len(), 1);
        // A failing writer leaves the old file intact.
        let r = super::super::write_atomic_with(&p, |_| anyhow::bail!("disk full"));
        assert!(r.is_err());
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(p.parent().unwrap()).unwrap().count(), 1);
    }

    #[test]
    fn provenance_written_before_its_newer_fields_still_reads() {
        let old = r#"
lecal_version = "0.1.0"
candle_version = "0.11.1"
git_commit = "abc-dirty"
device = "cpu (4 threads)"
bitwise_repeatable = true
cells = ["t/Vanilla/ResNet8 seed 0"]
started_unix = 1
finished_unix = 2
wall_seconds = 1.5
"#;
        let p: Provenance = toml::from_str(old).unwrap();
        assert_eq!((p.git_dirty, p.seed, p.threads), (false, None, None));
        assert_eq!(p.cargo_lock_sha256, "");
        assert_eq!(p.device_details, DeviceDetails::default());
        // Written and read back with the new fields.
        let p = Provenance {
            seed: Some(3),
            threads: Some(4),
            device_details: DeviceDetails {
                name: Some("cpu x".into()),
                cuda_driver: Some("13.0".into()),
                ..DeviceDetails::default()
            },
            ..p
        };
        let text = toml::to_string(&p).unwrap();
        assert!(
            text.contains("[device_details]\nname = \"cpu x\"\ncuda_driver = \"13.0\"\n"),
            "{text}"
        );
        assert_eq!(toml::from_str::<Provenance>(&text).unwrap(), p);
    }

    #[test]
    fn files_written_before_the_validation_columns_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("summary.csv");
        std::fs::write(
            &p,
            "id,dataset,model,seed,epochs,accuracy,ece,nll,brier,train_accuracy\nx,d,m,0,2,50.0,0.1,1.5,0.6,40.0\n",
        )
        .unwrap();
        let s = read_summary(&p).unwrap();
        assert_eq!((s.accuracy, s.val_accuracy), (50.0, None));
        let p = dir.path().join("epochs.csv");
        std::fs::write(
            &p,
            "epoch,lr,train_loss,train_acc,test_loss,test_acc,ece,nll,brier,seconds,checkpoint_seconds\n1,0.1,2.0,10.0,2.1,12.0,0.1,2.1,0.9,1.0,0.01\n",
        )
        .unwrap();
        let e = read_epochs(&p).unwrap();
        assert_eq!((e[0].test_acc, e[0].val_acc), (12.0, None));
        // Written and read back: empty columns are None again.
        let again = dir.path().join("again.csv");
        write_csv(&again, &e).unwrap();
        assert_eq!(read_epochs(&again).unwrap(), e);
    }
}
