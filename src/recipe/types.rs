//! The raw mirror of the recipe TOML: what a user writes, validated without I/O.
//!
//! Every struct rejects unknown keys. Values a recipe may leave out are `Option`s here;
//! the planner fills in the defaults of `methods.md`, so a default lives in one place.

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use std::fmt;
use toml::Spanned;

pub use crate::spec::{
    Combine, DatasetName, KlReduction, ModelName, SampleWeight, SchedulePreset, TeacherReduction,
};

/// A recipe file: one table cell.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRecipe {
    pub cell: Spanned<CellRef>,
    pub dataset: Spanned<DatasetName>,
    /// Options of the built-in synthetic dataset (only with `dataset = "synthetic"`).
    pub synthetic: Option<Spanned<SyntheticOptions>>,
    /// Per-channel normalisation; the dataset's default when absent.
    pub normalize: Option<Normalize>,
    /// The side the images are trained at, for datasets that offer more than one (STL-10:
    /// 96, the files' own, or 48, 32, 24 by area averaging; ImageNet: the crop, 224 by
    /// default); the dataset's own when absent.
    pub resolution: Option<Spanned<Positive<usize>>>,
    #[serde(default)]
    pub schedule: Option<Spanned<ScheduleChoice>>,
    pub student: Spanned<ModelName>,
    pub seeds: Spanned<Vec<u64>>,
    /// A method preset name, or a table `{ preset = "...", <overrides> }`; `vanilla` when absent.
    pub method: Option<Spanned<MethodChoice>>,
    #[serde(default = "no_teachers")]
    pub teachers: Spanned<Vec<TeacherDecl>>,
    pub augment: Option<Spanned<Augment>>,
    /// Training images held out as a validation set, evaluated every epoch beside the
    /// test set.
    pub validation: Option<Spanned<Positive<usize>>>,
    /// The student trains on this many of the training images (balanced over the classes);
    /// its teachers, planned as runs of a model, on all of them.
    pub train_subset: Option<Spanned<Positive<usize>>>,
}

fn no_teachers() -> Spanned<Vec<TeacherDecl>> {
    Spanned::new(0..0, Vec::new())
}

/// Where a recipe's result goes: one cell of one table.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CellRef {
    pub table: String,
    pub row: String,
    pub column: String,
}

impl fmt::Display for CellRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.table, self.row, self.column)
    }
}

/// Options of the procedurally generated dataset (see `data::synthetic`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyntheticOptions {
    pub train: Option<Positive<usize>>,
    pub test: Option<Positive<usize>>,
    pub resolution: Option<Positive<usize>>,
    pub classes: Option<Positive<usize>>,
    /// Seed of the generated images; fixed across run seeds so that seeds vary the training only.
    pub data_seed: Option<u64>,
    /// The share of images drawn between their class and its partner (0 to 1).
    pub confusion: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Normalize {
    pub mean: [f64; 3],
    pub std: [Positive<f64>; 3],
}

/// `schedule = "default"` or `schedule = { base = "default", epochs = 30, ... }`.
#[derive(Debug, Clone, PartialEq)]
pub enum ScheduleChoice {
    Preset(SchedulePreset),
    Explicit(ScheduleTable),
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleTable {
    pub base: Option<SchedulePreset>,
    pub lr: Option<Positive<f64>>,
    pub momentum: Option<NonNegative>,
    pub weight_decay: Option<NonNegative>,
    pub batch: Option<Positive<usize>>,
    pub epochs: Option<Positive<usize>>,
    pub milestones: Option<Vec<Positive<usize>>>,
    pub gamma: Option<Positive<f64>>,
}

impl<'de> Deserialize<'de> for ScheduleChoice {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ScheduleChoice;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("`default`, `long`, `imagenet`, or a table of schedule values")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                SchedulePreset::deserialize(de::value::StrDeserializer::<E>::new(v))
                    .map(ScheduleChoice::Preset)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                ScheduleTable::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(ScheduleChoice::Explicit)
            }
        }
        d.deserialize_any(V)
    }
}

/// The parts a label-enhancement method is composed of (`methods.md`). Preset files hold
/// these keys; a recipe names a preset and may override any of them inline.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MethodFields {
    /// Another preset this one starts from.
    pub preset: Option<String>,
    /// Free text shown by `lecal plan`; not part of the run.
    pub description: Option<String>,
    pub label: Option<LabelSource>,
    /// Label smoothing ε of `q = ε/K + (1-ε)·onehot(y)`.
    pub epsilon: Option<UnitInterval>,
    pub combine: Option<Combine>,
    pub temperature: Option<Positive<f64>>,
    /// Weight of the hard-label cross-entropy term.
    pub hard_weight: Option<NonNegative>,
    /// Weight of the teacher term (KD's α).
    pub teacher_weight: Option<NonNegative>,
    pub kl_reduction: Option<KlReduction>,
    pub teacher_reduction: Option<TeacherReduction>,
    /// A per-sample weight of the per-teacher KL (`wsl`; `none` by default).
    pub sample_weight: Option<SampleWeight>,
    /// β of CRD's contrastive term; set, it adds the term (CRD, CRD+KD).
    pub crd_weight: Option<NonNegative>,
    /// CRD's embedding width (128).
    pub crd_dim: Option<Positive<usize>>,
    /// CRD's negatives per sample (16384).
    pub crd_negatives: Option<Positive<usize>>,
    /// CRD's score temperature τ (0.07).
    pub crd_temperature: Option<Positive<f64>>,
    /// CRD's memory momentum (0.5).
    pub crd_momentum: Option<UnitInterval>,
    /// SSKD's weights of its rotated-copy KD term (2.7) and similarity term (10); either
    /// above 0 adds SSKD's rotated copies and both terms.
    pub sskd_tf_weight: Option<NonNegative>,
    pub sskd_ss_weight: Option<NonNegative>,
    /// Their temperatures (4 and 0.5).
    pub sskd_tf_temperature: Option<Positive<f64>>,
    pub sskd_ss_temperature: Option<Positive<f64>>,
    /// The share of the teacher's wrong rows each keeps (1 and 0.75).
    pub sskd_tf_keep: Option<UnitInterval>,
    pub sskd_ss_keep: Option<UnitInterval>,
    /// The teacher's projection head: epochs (60), learning rate (0.05), milestones
    /// ([30, 45]).
    pub sskd_head_epochs: Option<Positive<usize>>,
    pub sskd_head_lr: Option<Positive<f64>>,
    pub sskd_head_milestones: Option<Vec<Positive<usize>>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LabelSource {
    Hard,
    Smoothed,
    Teachers,
}

/// `method = "kd"` or `method = { preset = "en-sl", temperature = 2.0 }`.
#[derive(Debug, Clone, PartialEq)]
pub struct MethodChoice(pub MethodFields);

impl<'de> Deserialize<'de> for MethodChoice {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = MethodChoice;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a method preset name or a table `{ preset = \"...\", ... }`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(MethodChoice(MethodFields {
                    preset: Some(v.to_string()),
                    ..Default::default()
                }))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                MethodFields::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(MethodChoice)
            }
        }
        d.deserialize_any(V)
    }
}

/// A teacher: the vanilla runs of a model (by seed), or an external checkpoint.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeacherDecl {
    pub model: ModelName,
    pub seeds: Option<Vec<u64>>,
    /// The teacher runs' schedule; `default` when the cell names a preset, else the cell's
    /// own table of values on the `default` base.
    pub schedule: Option<ScheduleChoice>,
    pub checkpoint: Option<String>,
    /// The checkpoint's SHA-256 (hex), so that plans and tables do not need the file
    /// (weights are not committed); checked against it before training.
    pub sha256: Option<String>,
}

/// Batch augmentation applied to every training batch.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Augment {
    None,
    Mixup { alpha: Option<Positive<f64>> },
    Cutmix { alpha: Option<Positive<f64>> },
    Ricap { beta: Option<Positive<f64>> },
}

/// A number that must be greater than zero.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize)]
pub struct Positive<T>(pub T);

/// The largest value a recipe may give for a count (images, classes, epochs, ...): far
/// above any real setting, and small enough that totals over a plan cannot overflow.
pub const MAX_COUNT: usize = 1_000_000_000;

/// What `Positive` accepts of a type besides being above zero.
pub trait InRange: Sized {
    /// `None` when the value may be used, else what was expected.
    fn out_of_range(&self) -> Option<String>;
}

impl InRange for usize {
    fn out_of_range(&self) -> Option<String> {
        (*self > MAX_COUNT).then(|| format!("expected a number from 1 to {MAX_COUNT}"))
    }
}

impl InRange for f64 {
    fn out_of_range(&self) -> Option<String> {
        (!self.is_finite()).then(|| "expected a finite number greater than 0".to_string())
    }
}

impl<'de, T> Deserialize<'de> for Positive<T>
where
    T: Deserialize<'de> + PartialOrd + Default + fmt::Display + InRange,
{
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = T::deserialize(d)?;
        if let Some(expected) = v.out_of_range() {
            return Err(de::Error::custom(format!("{expected}, found {v}")));
        }
        if v > T::default() {
            Ok(Positive(v))
        } else {
            Err(de::Error::custom(format!(
                "expected a number greater than 0, found {v}"
            )))
        }
    }
}

/// A finite number that must be zero or more.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize)]
pub struct NonNegative(pub f64);

impl<'de> Deserialize<'de> for NonNegative {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = f64::deserialize(d)?;
        if v.is_finite() && v >= 0.0 {
            Ok(NonNegative(v))
        } else {
            Err(de::Error::custom(format!(
                "expected a finite number of 0 or more, found {v}"
            )))
        }
    }
}

/// A number in [0, 1].
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize)]
pub struct UnitInterval(pub f64);

impl<'de> Deserialize<'de> for UnitInterval {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = f64::deserialize(d)?;
        if (0.0..=1.0).contains(&v) {
            Ok(UnitInterval(v))
        } else {
            Err(de::Error::custom(format!(
                "expected a number between 0 and 1, found {v}"
            )))
        }
    }
}

/// A table spec file (`<name>.table.toml`): layout and reference values of one table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTableSpec {
    pub title: String,
    pub rows: Vec<String>,
    pub columns: Vec<String>,
    /// How a run's number is chosen; only `last-epoch` (the paper's protocol) is implemented.
    #[serde(default = "default_protocol")]
    pub protocol: Spanned<String>,
    /// Text shown under the table.
    pub note: Option<String>,
    /// Rows reported from the literature, not trained: their cells show the `paper`
    /// values, marked as cited.
    #[serde(default)]
    pub cited: Vec<String>,
    /// The paper's published value per row and column.
    #[serde(default)]
    pub paper: std::collections::BTreeMap<String, std::collections::BTreeMap<String, PaperValue>>,
    /// Which set the numbers are on: `test` (the paper's) or `validation` (runs whose
    /// recipes hold one out).
    #[serde(default)]
    pub split: Split,
    /// Show top-5 accuracy beside top-1 in each cell (ImageNet's tables).
    #[serde(default)]
    pub top5: bool,
    /// Orderings of the paper's rows that the reproduction should keep, checked in every
    /// column by `lecal table --verdicts`: `["KD-SL", "<", "Vanilla", "ece"]`.
    #[serde(default)]
    pub orderings: Vec<Spanned<Ordering>>,
}

/// "`first`'s `measure` is below (or above) `second`'s", in every column.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "[String; 4]")]
pub struct Ordering {
    pub first: String,
    pub below: bool,
    pub second: String,
    pub measure: Measure,
}

/// A number the paper publishes for each cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    Acc,
    Ece,
}

impl Measure {
    pub fn as_str(self) -> &'static str {
        match self {
            Measure::Acc => "acc",
            Measure::Ece => "ece",
        }
    }
}

impl TryFrom<[String; 4]> for Ordering {
    type Error = String;

    fn try_from([first, op, second, measure]: [String; 4]) -> Result<Self, String> {
        let below = match op.as_str() {
            "<" => true,
            ">" => false,
            _ => return Err(format!("unknown comparison `{op}`, expected `<` or `>`")),
        };
        let measure = match measure.as_str() {
            "acc" => Measure::Acc,
            "ece" => Measure::Ece,
            _ => {
                return Err(format!(
                    "unknown measure `{measure}`, expected `acc` or `ece`"
                ))
            }
        };
        Ok(Ordering {
            first,
            below,
            second,
            measure,
        })
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    #[default]
    Test,
    Validation,
}

fn default_protocol() -> Spanned<String> {
    Spanned::new(0..0, "last-epoch".to_string())
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaperValue {
    pub acc: f64,
    pub ece: f64,
    pub acc_std: Option<f64>,
}
