//! Datasets as 8-bit images in memory, or as a list of image files (ImageNet, which does
//! not fit in memory), and the transforms that turn them into batches.
//!
//! Images in memory are stored channel-first (3×H×W bytes each), the layout of the CIFAR
//! binary files, so a batch is a straight conversion to `f32` without transposes.

pub mod batches;
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
use std::sync::Arc;

/// Images and labels of one split.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// `len × 3 × height × width` bytes.
    pub images: Vec<u8>,
    pub labels: Vec<u16>,
    pub height: usize,
    pub width: usize,
    pub classes: usize,
    /// The image files, when the images are decoded as batches need them (`images` is
    /// then empty, and `height` × `width` is the crop a batch holds).
    pub files: Option<Arc<[imagenet::Sample]>>,
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
        let mut images = Vec::new();
        if self.files.is_none() {
            images.reserve(idx.len() * self.image_size());
            for &i in idx {
                images.extend_from_slice(self.image(i));
            }
        }
        Dataset {
            images,
            labels: idx.iter().map(|&i| self.labels[i]).collect(),
            files: self
                .files
                .as_ref()
                .map(|f| idx.iter().map(|&i| f[i].clone()).collect()),
            ..*self
        }
    }

    /// Keeps the first `n` images (scaled runs).
    pub fn truncate(&mut self, n: usize) {
        if n < self.len() {
            self.labels.truncate(n);
            if let Some(f) = &self.files {
                self.files = Some(f[..n].into());
            } else {
                self.images.truncate(n * self.image_size());
            }
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

/// `n` of `train`'s images, balanced over the classes: each class's images ranked by a
/// permutation fixed by the set's size alone, then the first-ranked of every class, the
/// second-ranked, and so on (a class that runs out leaves its turns to the others), so
/// every run on a dataset (any seed, method or model) trains on the same images. They keep
/// the dataset's order, and a smaller subset is part of a larger one.
pub fn subset(train: &Dataset, n: usize) -> Dataset {
    let order =
        crate::rng::Rng::stream(0, "train-subset", &[train.len() as u64]).permutation(train.len());
    let mut seen = vec![0usize; train.classes];
    let mut ranked: Vec<(usize, usize, usize)> = order
        .iter()
        .enumerate()
        .map(|(position, &i)| {
            let class = usize::from(train.labels[i]);
            seen[class] += 1;
            (seen[class], position, i)
        })
        .collect();
    ranked.sort_unstable();
    let mut chosen: Vec<usize> = ranked[..n].iter().map(|&(_, _, i)| i).collect();
    chosen.sort_unstable();
    train.subset(&chosen)
}

/// Checks, without loading, that the files a run needs are there: run before training so
/// that missing data stops the command at once instead of failing every run.
pub fn check_available(spec: &DataSpec, data_dir: &Path) -> anyhow::Result<()> {
    match spec.name {
        DatasetName::Cifar10 => cifar::check(data_dir, cifar::Variant::Cifar10),
        DatasetName::Cifar100 => cifar::check(data_dir, cifar::Variant::Cifar100),
        DatasetName::Stl10 => stl10::check(data_dir),
        DatasetName::Imagenet => imagenet_present(data_dir),
        DatasetName::Synthetic => Ok(()),
    }
}

/// ImageNet's folder: `<data>/imagenet/` with `train/` and `val/`.
pub const IMAGENET_FOLDER: &str = "imagenet";

fn imagenet_present(data_dir: &Path) -> anyhow::Result<()> {
    let root = data_dir.join(IMAGENET_FOLDER);
    let missing: Vec<String> = ["train", "val"]
        .iter()
        .map(|s| root.join(s))
        .filter(|p| !p.is_dir())
        .map(|p| p.display().to_string())
        .collect();
    anyhow::ensure!(
        missing.is_empty(),
        "ImageNet data not found: missing {}; ILSVRC2012 cannot be downloaded without an account: \
         get it from https://image-net.org/ and lay it out as {}/train/<wnid>/*.JPEG and val/ \
         (class folders, or flat with val/labels.txt or LOC_val_solution.csv), then run \
         `lecal data check imagenet --dir {}`",
        missing.join(", "),
        root.display(),
        root.display()
    );
    Ok(())
}

/// ImageNet's file lists: every image of `train/` and `val/` (the test split), labelled
/// by the sorted class folders.
fn load_imagenet(spec: &DataSpec, data_dir: &Path) -> anyhow::Result<Splits> {
    imagenet_present(data_dir)?;
    let root = data_dir.join(IMAGENET_FOLDER);
    let found = imagenet::scan(&root)?;
    anyhow::ensure!(
        found.classes.len() == spec.classes,
        "{}: {} classes in train/, ImageNet has {}; `lecal data check imagenet --dir {}` says what is there",
        root.display(),
        found.classes.len(),
        spec.classes,
        root.display()
    );
    let split = |samples: Vec<imagenet::Sample>| Dataset {
        images: Vec::new(),
        labels: samples.iter().map(|s| s.label).collect(),
        height: spec.resolution,
        width: spec.resolution,
        classes: spec.classes,
        files: Some(samples.into()),
    };
    Ok(Splits {
        train: split(found.train),
        test: split(found.val),
        validation: None,
    })
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
        DatasetName::Imagenet => load_imagenet(spec, data_dir)?,
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
    if let Some(n) = spec.train_subset {
        anyhow::ensure!(
            (2..=splits.train.len()).contains(&n),
            "a training subset of {n} images: expected 2 to {}",
            splits.train.len()
        );
        // A scaled subset is the smaller subset: still balanced over the classes.
        let n = spec.train_limit.map_or(n, |l| l.min(n));
        splits.train = subset(&splits.train, n);
    } else if let Some(n) = spec.train_limit {
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

    /// `n` synthetic training images of ten classes, 8×8, from `data_seed`.
    fn training_images(n: usize, data_seed: u64) -> Dataset {
        let spec = SyntheticSpec {
            train: n,
            test: 5,
            data_seed,
            confusion: 0.0,
        };
        synthetic::generate(&spec, 10, 8).train
    }

    /// Where image `i` of `part` is in `all`.
    fn position(all: &Dataset, part: &Dataset, i: usize) -> Option<usize> {
        (0..all.len()).find(|&j| all.image(j) == part.image(i))
    }

    #[test]
    fn a_held_out_validation_set_is_fixed_disjoint_and_in_order() {
        let all = training_images(50, 4);
        let (train, val) = hold_out(&all, 12);
        assert_eq!((train.len(), val.len()), (38, 12));
        // Every image lands in exactly one part, each part in the dataset's order.
        let index = |d: &Dataset, i: usize| position(&all, d, i);
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

    #[test]
    fn a_training_subset_is_balanced_fixed_nested_and_in_order() {
        let all = training_images(103, 2);
        let index = |d: &Dataset, i: usize| position(&all, d, i);
        let picked = |n: usize| -> Vec<usize> {
            let s = subset(&all, n);
            assert_eq!(s.len(), n);
            (0..n).map(|i| index(&s, i).unwrap()).collect()
        };
        let small = picked(25);
        // Balanced: 2 or 3 of each class; in the dataset's order; labels kept.
        let mut per_class = [0; 10];
        for &i in &small {
            per_class[usize::from(all.labels[i])] += 1;
        }
        assert!(per_class.iter().all(|&c| c == 2 || c == 3), "{per_class:?}");
        assert!(small.windows(2).all(|w| w[0] < w[1]));
        let s = subset(&all, 25);
        assert!((0..25).all(|i| s.labels[i] == all.labels[small[i]]));
        // Fixed, and a larger subset holds the smaller one.
        assert_eq!(picked(25), small);
        let large = picked(60);
        assert!(small.iter().all(|i| large.contains(i)));
        // A class with fewer images leaves its turns to the others.
        let few = all.subset(
            &(0..all.len())
                .filter(|&i| all.labels[i] != 3 || i < 20)
                .collect::<Vec<_>>(),
        );
        let n3 = (0..few.len()).filter(|&i| few.labels[i] == 3).count();
        assert!(n3 < 10);
        let s = subset(&few, few.len() - 1);
        assert_eq!((0..s.len()).filter(|&i| s.labels[i] == 3).count(), n3);
    }

    #[test]
    fn a_scaled_subset_is_the_smaller_subset_after_the_hold_out() {
        let spec = DataSpec {
            name: crate::spec::DatasetName::Synthetic,
            classes: 10,
            resolution: 8,
            synthetic: Some(SyntheticSpec {
                train: 60,
                test: 5,
                data_seed: 3,
                confusion: 0.0,
            }),
            train_limit: Some(10),
            test_limit: None,
            validation: Some(5),
            train_subset: Some(25),
        };
        let got = load(&spec, Path::new("no-data-needed")).unwrap();
        let (rest, val) = hold_out(&training_images(60, 3), 5);
        assert_eq!(got.train, subset(&rest, 10));
        assert_eq!(got.validation, Some(val));
        let unscaled = DataSpec {
            train_limit: None,
            ..spec
        };
        assert_eq!(
            load(&unscaled, Path::new("x")).unwrap().train,
            subset(&rest, 25)
        );
    }
}
