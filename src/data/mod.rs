//! Datasets as 8-bit images in memory, and the transforms that turn them into batches.
//!
//! Images are stored channel-first (3×H×W bytes each), the layout of the CIFAR binary
//! files, so a batch is a straight conversion to `f32` without transposes.

pub mod cifar;
pub mod mix;
pub mod synthetic;
pub mod transform;

use crate::plan::DataSpec;
use crate::recipe::DatasetName;
use std::path::Path;

/// Images and labels of one split.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// `len × 3 × height × width` bytes.
    pub images: Vec<u8>,
    pub labels: Vec<u16>,
    pub height: usize,
    pub width: usize,
    pub classes: usize,
}

impl Dataset {
    pub const CHANNELS: usize = 3;

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn image_size(&self) -> usize {
        Self::CHANNELS * self.height * self.width
    }

    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.image_size();
        &self.images[i * n..(i + 1) * n]
    }

    /// Keeps the first `n` images (scaled runs).
    pub fn truncate(&mut self, n: usize) {
        if n < self.len() {
            self.labels.truncate(n);
            self.images.truncate(n * self.image_size());
        }
    }
}

/// Training and test splits.
#[derive(Debug, Clone)]
pub struct Splits {
    pub train: Dataset,
    pub test: Dataset,
}

/// Checks, without loading, that the files a run needs are there: run before training so
/// that missing data stops the command at once instead of failing every run.
pub fn check_available(spec: &DataSpec, data_dir: &Path) -> anyhow::Result<()> {
    match spec.name {
        DatasetName::Cifar10 => cifar::check(data_dir, cifar::Variant::Cifar10),
        DatasetName::Cifar100 => cifar::check(data_dir, cifar::Variant::Cifar100),
        _ => Ok(()),
    }
}

/// Loads the dataset a run asks for. CIFAR comes from `data_dir`; the synthetic dataset is
/// generated from its seed.
pub fn load(spec: &DataSpec, data_dir: &Path) -> anyhow::Result<Splits> {
    let mut splits = match spec.name {
        DatasetName::Synthetic => {
            let s = spec
                .synthetic
                .as_ref()
                .ok_or_else(|| anyhow::anyhow!("synthetic dataset without parameters"))?;
            synthetic::generate(s, spec.classes, spec.resolution)
        }
        DatasetName::Cifar10 => cifar::load(data_dir, cifar::Variant::Cifar10)?,
        DatasetName::Cifar100 => cifar::load(data_dir, cifar::Variant::Cifar100)?,
        other => anyhow::bail!("dataset `{}` is not implemented yet", other.as_str()),
    };
    if let Some(n) = spec.train_limit {
        splits.train.truncate(n);
    }
    if let Some(n) = spec.test_limit {
        splits.test.truncate(n);
    }
    Ok(splits)
}
