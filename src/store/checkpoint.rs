//! Per-epoch checkpoints of a run, so that a killed run resumes where it stopped.
//!
//! ```text
//! <run>/checkpoint/epoch-000012.safetensors   the trainer's state (model.<name>, momentum.<name>)
//! <run>/checkpoint/epoch-000012.toml          manifest: epoch, SHA-256 of the state, metrics so far
//! ```
//!
//! The state is bytes here: the trainer serialises and reads it, so this module knows no
//! tensor library.
//! Each file is written atomically, tensors first: the manifest is the commit point, so a
//! kill at any moment leaves either a complete checkpoint or none for that epoch. The two
//! newest checkpoints are kept; when the newest does not verify (checksum, size, epoch
//! numbering), loading falls back to the one before, and with none usable the run starts
//! again from epoch 1. Every random stream of a run is keyed by (seed, epoch, position),
//! so the epoch number is the whole random state; the learning rate is a function of the
//! epoch.

use super::records::EpochRecord;
use super::write_atomic;
use crate::hash::sha256_hex;
use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const CHECKPOINT_DIR: &str = "checkpoint";
const FORMAT: u32 = 1;
/// Checkpoints kept: the newest and one to fall back to.
const KEEP: usize = 2;
const RANDOM_STATE: &str =
    "every stream is keyed by (seed, epoch, position): the epoch is the state";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Manifest {
    format: u32,
    run: String,
    epoch: usize,
    tensors: String,
    bytes: u64,
    sha256: String,
    random_state: String,
    epochs: Vec<EpochRecord>,
}

/// A verified checkpoint: the state after `epoch` complete epochs.
#[derive(Debug)]
pub struct Checkpoint {
    pub epoch: usize,
    pub epochs: Vec<EpochRecord>,
    /// The trainer's state, as it was saved (checksum verified).
    pub state: Vec<u8>,
}

/// What looking for a checkpoint found, with a line for each one skipped and why.
#[derive(Debug, Default)]
pub struct Found {
    pub checkpoint: Option<Checkpoint>,
    pub skipped: Vec<String>,
}

fn stem(epoch: usize) -> String {
    format!("epoch-{epoch:06}")
}

/// Writes the checkpoint of `epoch` under `run_dir` and prunes older ones.
pub fn save(
    run_dir: &Path,
    run_id: &str,
    epochs: &[EpochRecord],
    bytes: &[u8],
) -> anyhow::Result<()> {
    let epoch = epochs.len();
    let dir = dir(run_dir);
    let name = format!("{}.safetensors", stem(epoch));
    write_atomic(&dir.join(&name), bytes)?;
    let manifest = Manifest {
        format: FORMAT,
        run: run_id.into(),
        epoch,
        tensors: name,
        bytes: bytes.len() as u64,
        sha256: sha256_hex(bytes),
        random_state: RANDOM_STATE.into(),
        epochs: epochs.to_vec(),
    };
    write_atomic(
        &dir.join(format!("{}.toml", stem(epoch))),
        toml::to_string(&manifest)?.as_bytes(),
    )?;
    for old in manifests(&dir).into_iter().skip(KEEP) {
        remove_checkpoint(&dir, old);
    }
    Ok(())
}

fn remove_checkpoint(dir: &Path, epoch: usize) {
    for ext in ["toml", "safetensors"] {
        let _ = std::fs::remove_file(dir.join(format!("{}.{ext}", stem(epoch))));
    }
}

/// Epochs that have a manifest, newest first.
fn manifests(dir: &Path) -> Vec<usize> {
    let mut v: Vec<usize> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let n = e.file_name().to_str()?.to_owned();
            n.strip_prefix("epoch-")?
                .strip_suffix(".toml")?
                .parse()
                .ok()
        })
        .collect();
    v.sort_unstable_by(|a, b| b.cmp(a));
    v
}

fn verify(dir: &Path, run_id: &str, epoch: usize) -> anyhow::Result<Checkpoint> {
    let mpath = dir.join(format!("{}.toml", stem(epoch)));
    let text = std::fs::read_to_string(&mpath).context("cannot read the manifest")?;
    let m: Manifest = toml::from_str(&text).context("malformed manifest")?;
    if m.format != FORMAT {
        bail!("format {} (this lecal writes {FORMAT})", m.format);
    }
    if m.run != run_id || m.epoch != epoch {
        bail!("the manifest is of run {} epoch {}", m.run, m.epoch);
    }
    let numbered = m.epochs.iter().enumerate().all(|(i, r)| r.epoch == i + 1);
    if m.epochs.len() != epoch || !numbered {
        bail!("the manifest lists {} epochs", m.epochs.len());
    }
    let tpath = dir.join(&m.tensors);
    let bytes = std::fs::read(&tpath).with_context(|| format!("cannot read {}", m.tensors))?;
    if bytes.len() as u64 != m.bytes {
        bail!(
            "{} has {} bytes, the manifest says {}",
            m.tensors,
            bytes.len(),
            m.bytes
        );
    }
    if sha256_hex(&bytes) != m.sha256 {
        bail!("{} does not match its SHA-256 checksum", m.tensors);
    }
    Ok(Checkpoint {
        epoch,
        epochs: m.epochs,
        state: bytes,
    })
}

/// The newest checkpoint of the run that verifies.
pub fn load_latest(run_dir: &Path, run_id: &str) -> Found {
    let dir = dir(run_dir);
    let mut found = Found::default();
    for epoch in manifests(&dir) {
        match verify(&dir, run_id, epoch) {
            Ok(c) => {
                found.checkpoint = Some(c);
                break;
            }
            Err(e) => found
                .skipped
                .push(format!("checkpoint of epoch {epoch} is unusable: {e:#}")),
        }
    }
    found
}

/// Removes every checkpoint of a run (once it is done, or to start it again).
pub fn remove_all(run_dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(dir(run_dir)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The folder of a run's checkpoints.
pub fn dir(run_dir: &Path) -> PathBuf {
    run_dir.join(CHECKPOINT_DIR)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(epoch: usize) -> EpochRecord {
        EpochRecord {
            epoch,
            lr: 0.1,
            train_loss: 1.0 / epoch as f64,
            train_acc: 10.0,
            test_loss: 2.0,
            test_acc: 20.0,
            ece: 0.1,
            nll: 2.0,
            brier: 0.9,
            seconds: 1.5,
            checkpoint_seconds: 0.01,
            ..Default::default()
        }
    }

    fn state(v: u8) -> Vec<u8> {
        vec![v; 64]
    }

    fn value(c: &Checkpoint) -> u8 {
        c.state[0]
    }

    fn save_epochs(dir: &Path, n: usize) {
        let mut records = Vec::new();
        for e in 1..=n {
            records.push(record(e));
            save(dir, "run-a", &records, &state(e as u8)).unwrap();
        }
    }

    #[test]
    fn the_newest_checkpoint_round_trips_and_two_are_kept() {
        let d = tempfile::tempdir().unwrap();
        save_epochs(d.path(), 3);
        let names: Vec<String> = std::fs::read_dir(dir(d.path()))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 4, "{names:?}");
        let f = load_latest(d.path(), "run-a");
        let c = f.checkpoint.unwrap();
        assert_eq!((c.epoch, value(&c)), (3, 3));
        assert_eq!(c.epochs, vec![record(1), record(2), record(3)]);
        assert!(f.skipped.is_empty());
    }

    #[test]
    fn a_corrupt_checkpoint_falls_back_to_the_previous_then_to_none() {
        let d = tempfile::tempdir().unwrap();
        save_epochs(d.path(), 3);
        let cdir = dir(d.path());
        // One flipped bit in the newest tensors.
        let t3 = cdir.join("epoch-000003.safetensors");
        let mut bytes = std::fs::read(&t3).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&t3, &bytes).unwrap();
        let f = load_latest(d.path(), "run-a");
        assert_eq!(value(f.checkpoint.as_ref().unwrap()), 2);
        assert_eq!(f.skipped.len(), 1);
        assert!(f.skipped[0].contains("epoch 3") && f.skipped[0].contains("checksum"));
        // A truncated file, then a manifest cut short.
        let t2 = cdir.join("epoch-000002.safetensors");
        let len = std::fs::metadata(&t2).unwrap().len();
        std::fs::File::options()
            .write(true)
            .open(&t2)
            .unwrap()
            .set_len(len / 2)
            .unwrap();
        let f = load_latest(d.path(), "run-a");
        assert!(f.checkpoint.is_none());
        assert!(f.skipped[1].contains("bytes"), "{:?}", f.skipped);
        remove_all(d.path()).unwrap();
        save_epochs(d.path(), 1);
        let m1 = cdir.join("epoch-000001.toml");
        let text = std::fs::read_to_string(&m1).unwrap();
        std::fs::write(&m1, &text[..text.len() / 2]).unwrap();
        let f = load_latest(d.path(), "run-a");
        assert!(f.checkpoint.is_none());
    }

    #[test]
    fn a_checkpoint_of_another_run_is_not_used() {
        let d = tempfile::tempdir().unwrap();
        save_epochs(d.path(), 1);
        let f = load_latest(d.path(), "run-b");
        assert!(f.checkpoint.is_none());
        assert!(f.skipped[0].contains("run run-a"), "{:?}", f.skipped);
        remove_all(d.path()).unwrap();
        assert!(!dir(d.path()).exists());
        remove_all(d.path()).unwrap();
    }
}
