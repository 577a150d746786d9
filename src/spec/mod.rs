//! The fully resolved description of one training run. Every default is filled in, so the
//! spec alone decides what is trained; its hash is the run's id.
//!
//! This floor lies below both the planner that makes specs and the stages that read them
//! (`data`, `model`, `method`, `train`, `store`): it imports nothing of lecal but `hash`.

mod names;

pub use names::*;

use serde::{Deserialize, Serialize};

/// Bumped whenever training semantics change, so that old results are not mistaken for
/// new ones. Part of every run id. 5: the CPU's matrix products are lecal's own, one
/// chain of fused multiply-adds per element (the same bits on every x86-64-v3 CPU).
pub const TRAINER_VERSION: u32 = 5;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSpec {
    pub trainer_version: u32,
    pub seed: u64,
    pub model: ModelName,
    pub data: DataSpec,
    pub transform: Transform,
    pub schedule: Schedule,
    pub method: Method,
    pub augment: AugmentSpec,
    /// Teacher run ids or checkpoints, in the order the recipe lists them.
    pub teachers: Vec<TeacherRef>,
    /// The `--scale` the run was planned at (`full` for the paper's setting).
    pub scale: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataSpec {
    pub name: DatasetName,
    pub classes: usize,
    pub resolution: usize,
    /// Generation parameters of the synthetic dataset.
    pub synthetic: Option<SyntheticSpec>,
    /// Use only the first n training / test (and validation) images (scaled runs); with a
    /// `train_subset`, the subset of n images.
    pub train_limit: Option<usize>,
    pub test_limit: Option<usize>,
    /// Training images held out as a validation set (`data::hold_out`); left out of the
    /// spec when none, so that runs without one keep their ids.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<usize>,
    /// Train on this many of the training images only (`data::subset`: balanced over the
    /// classes, the same images for every run of the dataset with the same validation
    /// hold-out); left out when none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_subset: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyntheticSpec {
    pub train: usize,
    pub test: usize,
    pub data_seed: u64,
    /// The share of images drawn between their class and its partner class, labelled by
    /// the true posterior (`data::synthetic`); 0, the default, is left out of the spec,
    /// so that it does not change the ids of the runs without it.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub confusion: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transform {
    /// Random crop with this much zero padding on each side (0 = no crop).
    pub crop_padding: usize,
    pub flip: bool,
    pub mean: [f64; 3],
    pub std: [f64; 3],
    /// ImageNet's crops, from images of any size read from files: left out of the spec
    /// when absent, so that the in-memory datasets keep their ids.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resized_crop: Option<ResizedCrop>,
}

/// torchvision's ImageNet transforms: for training `RandomResizedCrop(size, scale, ratio)`
/// (then the flip of `Transform::flip`); for evaluation the shorter side resized to
/// `resize`, then a centre crop of `size`. Resampling is bilinear with antialiasing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResizedCrop {
    pub size: usize,
    pub resize: usize,
    /// The crop's area as a fraction of the image's, drawn uniformly from this range.
    pub scale: [f64; 2],
    /// The crop's width / height, drawn log-uniformly from this range.
    pub ratio: [f64; 2],
}

impl ResizedCrop {
    /// The standard transforms at crop side `size` (224 in the paper), the evaluation
    /// resize scaled with it (256 at 224).
    pub fn imagenet(size: usize) -> Self {
        Self {
            size,
            resize: (size as f64 * 256.0 / 224.0).round() as usize,
            scale: [0.08, 1.0],
            ratio: [3.0 / 4.0, 4.0 / 3.0],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    pub lr: f64,
    pub momentum: f64,
    pub weight_decay: f64,
    pub batch: usize,
    pub epochs: usize,
    /// Epochs (1-based) after which the learning rate is multiplied by `gamma`.
    pub milestones: Vec<usize>,
    pub gamma: f64,
}

impl Schedule {
    pub fn preset(p: SchedulePreset) -> Self {
        match p {
            SchedulePreset::Default => Self {
                lr: 0.05,
                momentum: 0.9,
                weight_decay: 5e-4,
                batch: 64,
                epochs: 240,
                milestones: vec![150, 180, 210],
                gamma: 0.1,
            },
            SchedulePreset::Long => Self {
                epochs: 350,
                milestones: vec![150, 200, 250, 300],
                ..Self::preset(SchedulePreset::Default)
            },
            SchedulePreset::Imagenet => Self {
                lr: 0.1,
                momentum: 0.9,
                weight_decay: 1e-4,
                batch: 256,
                epochs: 100,
                milestones: vec![30, 60, 90],
                gamma: 0.1,
            },
        }
    }

    /// Learning rate of epoch `epoch` (1-based): epochs 1..=m1 use `lr`, m1+1..=m2 use
    /// `lr·gamma`, and so on (PyTorch's MultiStepLR stepped after each epoch).
    pub fn lr_at(&self, epoch: usize) -> f64 {
        let passed = self.milestones.iter().filter(|&&m| epoch > m).count();
        self.lr * self.gamma.powi(passed as i32)
    }
}

/// The loss a run trains with. Only the fields that matter for a label source are kept,
/// so that equal methods hash equally.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "label", rename_all = "kebab-case")]
pub enum Method {
    Hard,
    Smoothed {
        epsilon: f64,
    },
    Teachers {
        combine: Combine,
        temperature: f64,
        hard_weight: f64,
        teacher_weight: f64,
        kl_reduction: KlReduction,
        teacher_reduction: TeacherReduction,
        /// Label smoothing of the hard-label term (LS + KD); 0, the default, is left out
        /// of the spec, so that it does not change the ids of the runs without it.
        #[serde(default, skip_serializing_if = "is_zero")]
        epsilon: f64,
        /// A per-sample weight of the `per-teacher-kl` term (WSL); none, the default, is
        /// left out of the spec like `epsilon`.
        #[serde(default, skip_serializing_if = "SampleWeight::is_none")]
        sample_weight: SampleWeight,
        /// CRD's contrastive term added to the loss (CRD, CRD+KD); absent, the default, is
        /// left out of the spec.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        crd: Option<Crd>,
        /// SSKD's terms on rotated copies of each image (SSKD); absent, the default, is
        /// left out of the spec.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sskd: Option<Sskd>,
    },
}

impl Method {
    /// SSKD's settings, when the method has its terms.
    pub fn sskd(&self) -> Option<&Sskd> {
        match self {
            Method::Teachers { sskd, .. } => sskd.as_ref(),
            _ => None,
        }
    }
}

/// Contrastive representation distillation (Tian et al., ICLR 2020, "Contrastive
/// Representation Distillation", eq. 10 and its NCE form): the student's and the
/// teacher's pooled features embedded to `dim` (linear, L2-normalised), each scored
/// against a momentum memory of the other's embeddings of the training set, the positive
/// of a sample its own index and `negatives` indices of other classes. `method::crd` has
/// the formula, `train::crd` the memory.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Crd {
    /// β, the weight of the contrastive term.
    pub weight: f64,
    /// The embedding width.
    pub dim: usize,
    /// Negatives per sample (K).
    pub negatives: usize,
    /// The temperature of the scores `exp(v·m / τ)`.
    pub temperature: f64,
    /// The memory's momentum: `m ← normalise(momentum·m + (1 - momentum)·v)`.
    pub momentum: f64,
}

/// Self-supervised knowledge distillation (Xu et al., ECCV 2020, "Knowledge Distillation
/// Meets Self-Supervision", Sec. 3 and its CIFAR-100 code): every training image is seen
/// at 0°, 90°, 180° and 270°; a projection head on the teacher's pooled features is trained
/// first, the teacher frozen, to match each rotated copy to its upright image by cosine
/// similarity; the student then learns, beside the hard-label and KD terms of the upright
/// images (the method's own), the teacher's outputs on the rotated copies (`tf`) and the
/// teacher's similarity matrix (`ss`), each on the copies the teacher ranks best
/// (`keep`: the share of the teacher's wrong rows kept). `method::sskd` has the formulas,
/// `train::sskd` the head and the batches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sskd {
    /// Weight, temperature and kept share of wrong rows of the rotated copies' KD term.
    pub tf_weight: f64,
    pub tf_temperature: f64,
    pub tf_keep: f64,
    /// The same of the similarity term.
    pub ss_weight: f64,
    pub ss_temperature: f64,
    pub ss_keep: f64,
    /// The teacher's head: epochs, learning rate and its milestones (1-based, × the
    /// schedule's gamma), with the schedule's batch, momentum and weight decay.
    pub head_epochs: usize,
    pub head_lr: f64,
    pub head_milestones: Vec<usize>,
}

/// The rotated copies of each image SSKD trains on: 0°, 90°, 180°, 270°.
pub const SSKD_VIEWS: usize = 4;

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum AugmentSpec {
    None,
    Mixup { alpha: f64 },
    Cutmix { alpha: f64 },
    Ricap { beta: f64 },
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "lowercase")]
pub enum TeacherRef {
    Run {
        id: String,
    },
    /// An external checkpoint, known by its content: `path` (absolute where it can be
    /// resolved) says where it was found, and is left out of the run id, which must not
    /// depend on the folder that lecal was started from.
    Checkpoint {
        model: ModelName,
        path: String,
        sha256: String,
    },
}

impl RunSpec {
    /// The content id: `<dataset>-<model>-<12 hex digits of SHA-256 of the spec>`.
    pub fn id(&self) -> String {
        let mut keyed = self.clone();
        for t in &mut keyed.teachers {
            if let TeacherRef::Checkpoint { path, .. } = t {
                path.clear();
            }
        }
        let text = toml::to_string(&keyed).expect("a run spec always serialises");
        let hex = crate::hash::short_sha256_hex(text.as_bytes(), 6);
        format!("{}-{}-{hex}", self.data.name.as_str(), self.model.as_str())
    }

    /// What the run's training batches depend on, as text: its data (dataset, subset,
    /// held-out split), seed, batch size, transform, batch augmentation and views. The order,
    /// crops, flips and mixes are keyed by (seed, epoch, position), never by the model,
    /// the method or the learning rate, so runs with equal keys see identical batches.
    pub fn batch_key(&self) -> String {
        format!(
            "{}|seed {}|batch {}|{}|{}|views {}",
            text(&self.data),
            self.seed,
            self.schedule.batch,
            text(&self.transform),
            text(&self.augment),
            self.views(),
        )
    }

    /// What runs must share to train as one fused network (horizontal fusion, one
    /// grouped network for several students): the batches (`batch_key`: images, their
    /// size and the batch size), the architecture and the classes; lecal trains in f32
    /// only, so precision always matches. `None` for a run that trains alone: the ImageNet
    /// ResNets (no fused form), and CRD and SSKD, whose loss needs the pooled features
    /// through heads and per-sample memories of their own (CRD), or a 4-view batch and a
    /// pretrained teacher head (SSKD), beside the network the optimiser fuses.
    pub fn fusion_key(&self) -> Option<String> {
        self.model.cifar_depth()?;
        if let Method::Teachers { crd, sskd, .. } = &self.method {
            if crd.is_some() || sskd.is_some() {
                return None;
            }
        }
        Some(format!(
            "{}|{}|classes {}",
            self.batch_key(),
            self.model.as_str(),
            self.data.classes
        ))
    }

    /// The sets of `items` (each with its run's spec) that train as one fused network:
    /// two or more with one `fusion_key` each, in the order of their first member; the
    /// one grouping the planner and the trainer share.
    pub fn fused_sets<'a, T>(items: impl IntoIterator<Item = (&'a RunSpec, T)>) -> Vec<Vec<T>> {
        let mut sets: Vec<(String, Vec<T>)> = Vec::new();
        for (spec, item) in items {
            let Some(key) = spec.fusion_key() else {
                continue;
            };
            match sets.iter_mut().find(|(k, _)| *k == key) {
                Some((_, members)) => members.push(item),
                None => sets.push((key, vec![item])),
            }
        }
        (sets.into_iter())
            .map(|(_, members)| members)
            .filter(|m| m.len() > 1)
            .collect()
    }

    /// Images per sample in a training batch: SSKD's rotated copies, else 1.
    pub fn views(&self) -> usize {
        if self.method.sskd().is_some() {
            SSKD_VIEWS
        } else {
            1
        }
    }
}

/// TOML text of a spec part.
fn text<T: Serialize>(v: &T) -> String {
    toml::to_string(v).expect("a spec part always serialises")
}

/// A complete spec for tests that need a run whose id is its spec's hash.
#[cfg(test)]
pub fn example() -> RunSpec {
    toml::from_str(
        r#"trainer_version = 5
seed = 0
model = "resnet8"
teachers = []
scale = "smoke"
data = { name = "synthetic", classes = 10, resolution = 8, synthetic = { train = 64, test = 20, data_seed = 0, confusion = 0.0 } }
transform = { crop_padding = 1, flip = true, mean = [0.5, 0.5, 0.5], std = [0.25, 0.25, 0.25] }
schedule = { lr = 0.05, momentum = 0.9, weight_decay = 0.0005, batch = 32, epochs = 1, milestones = [], gamma = 0.1 }
method = { label = "hard" }
augment = { kind = "none" }
"#,
    )
    .expect("the example spec parses")
}
