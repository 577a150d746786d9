//! Datasets as 8-bit images in memory, and the transforms that turn them into batches.
//!
//! Images are stored channel-first (3×H×W bytes each), the layout of the CIFAR binary
//! files, so a batch is a straight conversion to `f32` without transposes.

pub mod cifar;
pub mod fetch;
pub mod imagenet;
pub mod mix;
pub mod stl10;
pub mod synthetic;
pub mod transform;

use crate::spec::DataSpec;
use crate::spec::DatasetName;
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

    /// The images at `idx`, in that order.
    pub fn subset(&self, idx: &[usize]) -> Dataset {
        let mut images = Vec::with_capacity(idx.len() * self.image_size());
        for &i in idx {
            images.extend_from_slice(self.image(i));
        }
        Dataset {
            images,
            labels: idx.iter().map(|&i| self.labels[i]).collect(),
            ..*self
        }
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
    /// Held out of the training images when a recipe asks for it.
    pub validation: Option<Dataset>,
}

/// Splits `n` images off `train` as a validation set: the first `n` of a permutation
/// fixed by the training set's size alone, so every run on a dataset (any seed, method or
/// model) holds out the same images. Both parts keep the dataset's order.
pub fn hold_out(train: &Dataset, n: usize) -> (Dataset, Dataset) {
    let order =
        crate::rng::Rng::stream(0, "validation", &[train.len() as u64]).permutation(train.len());
    let (mut val, mut rest) = (order[..n].to_vec(), order[n..].to_vec());
    val.sort_unstable();
    rest.sort_unstable();
    (train.subset(&rest), train.subset(&val))
}

/// Checks, without loading, that the files a run needs are there: run before training so
/// that missing data stops the command at once instead of failing every run.
pub fn check_available(spec: &DataSpec, data_dir: &Path) -> anyhow::Result<()> {
    match spec.name {
        DatasetName::Cifar10 => cifar::check(data_dir, cifar::Variant::Cifar10),
        DatasetName::Cifar100 => cifar::check(data_dir, cifar::Variant::Cifar100),
        DatasetName::Stl10 => stl10::check(data_dir),
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
        DatasetName::Stl10 => stl10::load(data_dir, spec.resolution)?,
        other => anyhow::bail!("dataset `{}` is not implemented yet", other.as_str()),
    };
    if let Some(n) = spec.validation {
        anyhow::ensure!(
            n + 2 <= splits.train.len(),
            "{n} validation images leave fewer than 2 of {} to train on",
            splits.train.len()
        );
        let (train, val) = hold_out(&splits.train, n);
        splits.train = train;
        splits.validation = Some(val);
    }
    if let Some(n) = spec.train_limit {
        splits.train.truncate(n);
    }
    if let Some(n) = spec.test_limit {
        splits.test.truncate(n);
        if let Some(v) = &mut splits.validation {
            v.truncate(n);
        }
    }
    Ok(splits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::SyntheticSpec;

    #[test]
    fn a_held_out_validation_set_is_fixed_disjoint_and_in_order() {
        let spec = SyntheticSpec {
            train: 50,
            test: 5,
            data_seed: 4,
        };
        let all = synthetic::generate(&spec, 10, 8).train;
        let (train, val) = hold_out(&all, 12);
        assert_eq!((train.len(), val.len()), (38, 12));
        // Every image lands in exactly one part, each part in the dataset's order.
        let index = |d: &Dataset, i: usize| (0..all.len()).find(|&j| all.image(j) == d.image(i));
        let mut seen: Vec<usize> = (0..train.len())
            .map(|i| index(&train, i).unwrap())
            .chain((0..val.len()).map(|i| index(&val, i).unwrap()))
            .collect();
        assert!(seen[..38].windows(2).all(|w| w[0] < w[1]));
        assert!(seen[38..].windows(2).all(|w| w[0] < w[1]));
        seen.sort_unstable();
        assert_eq!(seen, (0..50).collect::<Vec<_>>());
        // The same split every time; a larger hold-out contains the smaller one.
        assert_eq!(hold_out(&all, 12), (train, val.clone()));
        let larger = hold_out(&all, 13).1;
        assert!((0..12).all(|i| (0..13).any(|j| larger.image(j) == val.image(i))));
    }
}
