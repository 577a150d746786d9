//! The names a recipe and a run spec share: datasets, models, schedule presets and the
//! choices of a teacher method. Their TOML spelling is part of every run id.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DatasetName {
    Synthetic,
    Cifar10,
    Cifar100,
    Stl10,
    Imagenet,
}

impl DatasetName {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Synthetic => "synthetic",
            Self::Cifar10 => "cifar10",
            Self::Cifar100 => "cifar100",
            Self::Stl10 => "stl10",
            Self::Imagenet => "imagenet",
        }
    }
}

/// The sides an STL-10 run may train at: the files' 96, or 96 divided by 2, 3 or 4.
///
/// (An ImageNet run's `resolution` is its crop side instead: 224 by default.)
pub const STL10_RESOLUTIONS: [usize; 4] = [96, 48, 32, 24];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelName {
    Resnet8,
    Resnet14,
    Resnet20,
    Resnet32,
    Resnet44,
    Resnet56,
    Resnet110,
    Resnet18,
    Resnet34,
    Resnet50,
}

impl ModelName {
    pub const IMAGENET: [ModelName; 3] = [Self::Resnet18, Self::Resnet34, Self::Resnet50];

    pub const CIFAR: [ModelName; 7] = [
        Self::Resnet8,
        Self::Resnet14,
        Self::Resnet20,
        Self::Resnet32,
        Self::Resnet44,
        Self::Resnet56,
        Self::Resnet110,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Resnet8 => "resnet8",
            Self::Resnet14 => "resnet14",
            Self::Resnet20 => "resnet20",
            Self::Resnet32 => "resnet32",
            Self::Resnet44 => "resnet44",
            Self::Resnet56 => "resnet56",
            Self::Resnet110 => "resnet110",
            Self::Resnet18 => "resnet18",
            Self::Resnet34 => "resnet34",
            Self::Resnet50 => "resnet50",
        }
    }

    /// Depth of a CIFAR ResNet (6n+2), `None` for the ImageNet models.
    pub fn cifar_depth(self) -> Option<usize> {
        Some(match self {
            Self::Resnet8 => 8,
            Self::Resnet14 => 14,
            Self::Resnet20 => 20,
            Self::Resnet32 => 32,
            Self::Resnet44 => 44,
            Self::Resnet56 => 56,
            Self::Resnet110 => 110,
            _ => return None,
        })
    }

    /// The stages of an ImageNet ResNet as torchvision builds it, `None` for the CIFAR
    /// models.
    pub fn imagenet_layers(self) -> Option<ImagenetLayers> {
        let (blocks, bottleneck) = match self {
            Self::Resnet18 => ([2, 2, 2, 2], false),
            Self::Resnet34 => ([3, 4, 6, 3], false),
            Self::Resnet50 => ([3, 4, 6, 3], true),
            _ => return None,
        };
        Some(ImagenetLayers { blocks, bottleneck })
    }
}

/// Blocks per stage of an ImageNet ResNet (`layer1`..`layer4`), and whether they are
/// Bottlenecks (else BasicBlocks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImagenetLayers {
    pub blocks: [usize; 4],
    pub bottleneck: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SchedulePreset {
    Default,
    Long,
    Imagenet,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Combine {
    /// EN-SL / SL: cross-entropy to the mean of the teachers' softmax.
    MeanSoftmax,
    /// KD / KD-SL: a softened KL term per teacher.
    PerTeacherKl,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KlReduction {
    /// Averaged over B·K elements (PyTorch `reduction='mean'`), the paper's KD.
    ElementMean,
    /// Summed over classes, averaged over the batch (`batchmean`).
    BatchMean,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TeacherReduction {
    Mean,
    Sum,
}

/// A per-sample weight on the teacher term.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SampleWeight {
    /// Every sample weighs 1.
    #[default]
    None,
    /// WSL (Zhou et al., ICLR 2021, "Rethinking soft labels for knowledge distillation:
    /// a bias-variance tradeoff perspective", eq. 6): `w = 1 - exp(-CE_s / CE_t)`, the
    /// student's and the teacher's cross-entropies against the label at temperature 1,
    /// without gradient. Samples the student already fits better than the teacher
    /// (CE_s ≪ CE_t) are distilled less.
    Wsl,
}

impl SampleWeight {
    pub fn is_none(&self) -> bool {
        *self == SampleWeight::None
    }
}
