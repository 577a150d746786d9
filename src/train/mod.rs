//! Training one run: the loop, evaluation after every epoch, and the `Trainer` trait that
//! lets the executor be tested with a fake.

mod cohort;
mod crd;
pub mod sgd;
mod sskd;
mod teachers;

pub use cohort::{CohortStopped, Member};

use crate::data::{self, Splits};
use crate::metrics::{self, Evaluation};
use crate::model;
use crate::spec::RunSpec;
use crate::store::checkpoint::Checkpoint;
use crate::store::EpochRecord;
use anyhow::bail;
use candle_core::{Device, Tensor};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// What a finished run hands back to be written.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub epochs: Vec<EpochRecord>,
    /// The last epoch's evaluation (the paper's protocol).
    pub last: Evaluation,
    /// The last epoch's evaluation on the validation set, when the run holds one out.
    pub validation: Option<Evaluation>,
}

/// Where a trainer reports as it goes; the executor writes each epoch as it ends.
pub trait RunSink {
    /// The checkpoint to continue from, if an earlier attempt left one that verifies.
    /// Called once, before the first epoch.
    fn resume(&mut self) -> anyhow::Result<Option<Checkpoint>> {
        Ok(None)
    }
    /// An epoch has ended: `state` is the trainer's checkpoint (safetensors of
    /// `model.<variable>` and `momentum.<parameter>`), to be written before the epoch's
    /// row so that a row on disk always has its checkpoint.
    fn epoch(&mut self, record: &EpochRecord, state: &[u8]) -> anyhow::Result<()>;
    /// `done` of `total` training batches of the current epoch.
    fn progress(&mut self, _epoch: usize, _done: usize, _total: usize) {}
    /// Whether `batch` should be called with every training batch (`lecal parity`
    /// replays a run's batches in PyTorch).
    fn wants_batches(&self) -> bool {
        false
    }
    /// Training batch `index` (0-based) of `epoch` as the student saw it: the images after
    /// crop, flip, normalisation and mixing (`B×3×H×W`; with SSKD's rotated copies
    /// `4B×3×H×W`, image by image), its `B×K` label targets, and the loss of the step
    /// taken on it.
    fn batch(&mut self, _epoch: usize, _index: usize, _x: &[f32], _targets: &[f32], _loss: f64) {}
    /// A line worth showing the user about the run's progress outside its epochs (SSKD's
    /// teacher head, trained before them).
    fn note(&mut self, _text: &str) {}
    /// A stop signal, if one has arrived: the trainer then stops before its next step.
    fn stop_requested(&self) -> Option<i32> {
        None
    }
    /// The run has trained its last epoch: its final weights (safetensors of
    /// `<variable>`) and its outcome, to be written. Called as soon as the run ends, while
    /// the other members of its cohort may go on.
    fn finish(&mut self, weights: &[u8], outcome: &Outcome) -> anyhow::Result<()>;
    /// The run ended with `error` (a failure of its own, a stop signal, or a stop of its
    /// cohort), said as soon as it happens; the run's result carries the same error.
    fn failed(&mut self, _error: &anyhow::Error) {}
}

/// A teacher's weights, resolved by the executor: a finished run's weights or an
/// external checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct TeacherSource {
    pub model: crate::spec::ModelName,
    pub path: PathBuf,
}

/// Trains runs. A trainer implements `train_cohort` (runs that see identical batches,
/// trained together), `train` (one run), or both: each defaults to the other.
pub trait Trainer: Sync {
    /// Trains one run to its last epoch.
    fn train(
        &self,
        spec: &RunSpec,
        teachers: &[TeacherSource],
        sink: &mut dyn RunSink,
    ) -> anyhow::Result<Outcome> {
        let member = Member {
            spec,
            teachers,
            sink,
        };
        self.train_cohort(vec![member])
            .pop()
            .unwrap_or_else(|| Err(anyhow::anyhow!("the trainer gave no result")))
    }
    /// Trains a cohort (`RunSpec::batch_key` equal for all) to each member's last
    /// epoch: one result per member, in order. By default, each member alone.
    fn train_cohort(&self, members: Vec<Member>) -> Vec<anyhow::Result<Outcome>> {
        members
            .into_iter()
            .map(|m| self.train(m.spec, m.teachers, m.sink))
            .collect()
    }
    /// The device as recorded in run.toml, and whether it promises bitwise repeatability.
    fn device(&self) -> (String, bool);
    /// The device's name and, on CUDA, its driver's and libraries' versions, for run.toml.
    fn device_details(&self) -> crate::store::DeviceDetails {
        crate::store::DeviceDetails::default()
    }
}

/// Whether a cohort's students of one architecture train as one fused network
/// (`--fusion`; `--no-fusion` is `off`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum FusionChoice {
    /// On on CUDA, where a small network's step is bound by kernel launches that fusion
    /// divides by the group's size; off on the CPU, which has no launches to save and
    /// where a fused cohort measured about 10% slower (BENCHMARKS.md, "Fused students").
    #[default]
    Auto,
    On,
    Off,
}

impl FusionChoice {
    /// `--fusion` with `--no-fusion` folded in.
    pub fn from_flags(choice: Self, no_fusion: bool) -> Self {
        if no_fusion {
            Self::Off
        } else {
            choice
        }
    }

    /// Whether to fuse on a device that is (`cuda`) or is not a GPU.
    pub fn on(self, cuda: bool) -> bool {
        match self {
            Self::Auto => cuda,
            Self::On => true,
            Self::Off => false,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::On => "on",
            Self::Off => "off",
        }
    }
}

/// The real trainer, on a candle device.
pub struct CandleTrainer {
    pub device: Device,
    /// The kernels every model of a run is built with.
    pub kernels: model::Kernels,
    pub data_dir: PathBuf,
    /// Whether a cohort's members of one architecture train as one fused network
    /// (`RunSpec::fusion_key`); off, each takes its own step.
    pub fusion: bool,
    /// What the kernels' check at first use replaced (`selfcheck`), for provenance.
    pub fallbacks: Vec<String>,
    cache: Mutex<HashMap<String, Arc<Splits>>>,
}

/// Evaluation batch size: large enough to keep the device busy, small enough for memory.
const EVAL_BATCH: usize = 250;

impl CandleTrainer {
    pub fn new(device: Device, kernels: model::Kernels, data_dir: PathBuf) -> Self {
        Self {
            device,
            kernels,
            data_dir,
            fusion: false,
            fallbacks: Vec::new(),
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The trainer with fusion on or off.
    pub fn with_fusion(mut self, on: bool) -> Self {
        self.fusion = on;
        self
    }

    fn data(&self, spec: &RunSpec) -> anyhow::Result<Arc<Splits>> {
        let key = toml::to_string(&spec.data)?;
        let mut cache = self.cache.lock().expect("data cache lock");
        if let Some(d) = cache.get(&key) {
            return Ok(d.clone());
        }
        let d = Arc::new(data::load(&spec.data, &self.data_dir)?);
        if d.train.len() < 2 {
            bail!(
                "the training split has {} images, need at least 2",
                d.train.len()
            );
        }
        cache.insert(key, d.clone());
        Ok(d)
    }
}

const MODEL: &str = "model.";
const MOMENTUM: &str = "momentum.";

/// What a checkpoint holds: every model variable (BatchNorm statistics included) and the
/// optimiser's momentum buffers.
fn checkpoint_state(varmap: &candle_nn::VarMap, opt: &sgd::Sgd) -> HashMap<String, Tensor> {
    let mut state: HashMap<String, Tensor> = model::snapshot(varmap)
        .into_iter()
        .map(|(k, v)| (format!("{MODEL}{k}"), v))
        .collect();
    for (k, v) in opt.buffers() {
        state.insert(format!("{MOMENTUM}{k}"), v);
    }
    state
}

/// Puts a checkpoint's state back into the model and the optimiser.
fn restore(
    varmap: &candle_nn::VarMap,
    opt: &mut sgd::Sgd,
    tensors: HashMap<String, Tensor>,
) -> anyhow::Result<()> {
    let mut weights = HashMap::new();
    let mut momentum = HashMap::new();
    for (k, v) in tensors {
        if let Some(n) = k.strip_prefix(MODEL) {
            weights.insert(n.to_string(), v);
        } else if let Some(n) = k.strip_prefix(MOMENTUM) {
            momentum.insert(n.to_string(), v);
        } else {
            bail!("unexpected tensor `{k}`");
        }
    }
    model::load_into(varmap, &weights)?;
    opt.restore(|n| momentum.remove(n))?;
    if let Some(k) = momentum.keys().next() {
        bail!("momentum for `{k}`, which is not a parameter");
    }
    Ok(())
}

/// What is not finite after an epoch (a metric, the training loss or a weight), if
/// anything: a diverged run is a failure to report, never a result.
fn diverged(rec: &EpochRecord, varmap: &candle_nn::VarMap) -> anyhow::Result<Option<String>> {
    let metrics = [
        ("the training loss", Some(rec.train_loss)),
        ("the test NLL", Some(rec.nll)),
        ("the test ECE", Some(rec.ece)),
        ("the test Brier score", Some(rec.brier)),
        ("the test accuracy", Some(rec.test_acc)),
        ("the validation NLL", rec.val_loss),
        ("the validation ECE", rec.val_ece),
    ];
    if let Some((name, v)) = metrics
        .into_iter()
        .find_map(|(n, v)| v.filter(|v| !v.is_finite()).map(|v| (n, v)))
    {
        return Ok(Some(format!("{name} is {v}")));
    }
    for (name, var) in model::sorted_vars(varmap) {
        // NaN and infinity survive a sum.
        let sum = var.as_tensor().sum_all()?.to_scalar::<f32>()?;
        if !sum.is_finite() {
            return Ok(Some(format!("weight `{name}` holds non-finite values")));
        }
    }
    Ok(None)
}

/// Index of the largest value of each row.
fn argmax_rows(v: &[f32], classes: usize) -> impl Iterator<Item = usize> + '_ {
    v.chunks(classes).map(|row| {
        row.iter()
            .enumerate()
            .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &x)| {
                if x > bv {
                    (i, x)
                } else {
                    (bi, bv)
                }
            })
            .0
    })
}

/// One training forward pass: the student (training mode) and every teacher (eval mode,
/// no graph) on the one batch `x`, so all of them see the same mixed images.
pub fn forward_batch(
    student: &model::ResNet,
    teachers: &[model::ResNet],
    x: &Tensor,
) -> candle_core::Result<(Tensor, Vec<Tensor>)> {
    let teacher_logits = teachers
        .iter()
        .map(|t| t.forward_t(x, false))
        .collect::<candle_core::Result<Vec<_>>>()?;
    Ok((student.forward_t(x, true)?, teacher_logits))
}

/// Logits of the whole test split under a frozen model.
pub fn predict(
    net: &model::ResNet,
    ds: &data::Dataset,
    t: &crate::spec::Transform,
    device: &Device,
) -> anyhow::Result<Vec<f32>> {
    let mut out = Vec::with_capacity(ds.len() * ds.classes);
    let per_image = 3 * ds.height * ds.width;
    for x in data::batches::eval(ds, t, EVAL_BATCH)? {
        let x = x?;
        let n = x.len() / per_image;
        let x = Tensor::from_vec(x, (n, 3, ds.height, ds.width), device)?;
        let logits = net.forward_t(&x, false)?;
        out.extend(logits.flatten_all()?.to_vec1::<f32>()?);
    }
    Ok(out)
}

/// The test-split evaluation of the model in `varmap` as it is now.
fn evaluate(
    spec: &RunSpec,
    kernels: model::Kernels,
    varmap: &candle_nn::VarMap,
    test: &data::Dataset,
    dev: &Device,
) -> anyhow::Result<Evaluation> {
    let classes = spec.data.classes;
    let frozen = model::build_frozen(spec.model, classes, model::snapshot(varmap), kernels, dev)?;
    let logits = predict(&frozen, test, &spec.transform, dev)?;
    Ok(metrics::evaluate(&logits, &test.labels, classes))
}

impl Trainer for CandleTrainer {
    fn device(&self) -> (String, bool) {
        (
            crate::device::describe(&self.device),
            crate::device::bitwise_repeatable(&self.device),
        )
    }

    fn device_details(&self) -> crate::store::DeviceDetails {
        let mut d = crate::device::details(&self.device);
        d.fallbacks = self.fallbacks.clone();
        if self.device.is_cpu() {
            d.cpu_kernels = Some(self.kernels.gemm.as_str().to_string());
        }
        d
    }

    fn train_cohort(&self, members: Vec<Member>) -> Vec<anyhow::Result<Outcome>> {
        self.cohort(members)
    }
}

/// A `Linear` layer's weight (`out × fan_in`) and bias as variables `<prefix>.weight` and
/// `<prefix>.bias` of `varmap`, drawn `U(-1/√fan_in, 1/√fan_in)` as PyTorch's `Linear`
/// (weight first) from `r`: the heads CRD and SSKD add to a model, from the run's own
/// stream (the model's initial weights stay those of the same seed without them).
fn linear_vars(
    varmap: &candle_nn::VarMap,
    prefix: &str,
    (fan_in, out): (usize, usize),
    r: &mut crate::rng::Rng,
    dev: &Device,
) -> anyhow::Result<(candle_core::Var, candle_core::Var)> {
    let bound = 1.0 / (fan_in as f64).sqrt();
    let mut make = |shape: &[usize], part: &str| -> anyhow::Result<candle_core::Var> {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n)
            .map(|_| ((2.0 * r.uniform() - 1.0) * bound) as f32)
            .collect();
        let path = format!("{prefix}.{part}");
        let init = candle_nn::Init::Const(0.0);
        varmap.get(shape, &path, init, candle_core::DType::F32, dev)?;
        let var = varmap.data().lock().expect("varmap lock")[&path].clone();
        var.set(&Tensor::from_vec(v, shape, dev)?)?;
        Ok(var)
    };
    Ok((make(&[out, fan_in], "weight")?, make(&[out], "bias")?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::mix::mix;
    use crate::rng::Rng;
    use crate::spec::AugmentSpec;
    use crate::spec::ModelName;

    /// Teachers get the student's mixed batch: a teacher that is a frozen copy of a
    /// model gives, inside the training step, exactly that model's eval logits on the
    /// mixed images.
    #[test]
    fn teachers_see_the_students_mixed_batch() {
        let dev = Device::Cpu;
        let (student, _) =
            model::build_trainable(ModelName::Resnet8, 10, 1, model::Kernels::lecal(), &dev)
                .unwrap();
        let (_, tvm) =
            model::build_trainable(ModelName::Resnet8, 10, 2, model::Kernels::lecal(), &dev)
                .unwrap();
        let teacher = model::build_frozen(
            ModelName::Resnet8,
            10,
            model::snapshot(&tvm),
            model::Kernels::lecal(),
            &dev,
        )
        .unwrap();
        let reference = model::build_frozen(
            ModelName::Resnet8,
            10,
            model::snapshot(&tvm),
            model::Kernels::lecal(),
            &dev,
        )
        .unwrap();
        let mut xb: Vec<f32> = (0..4 * 3 * 8 * 8)
            .map(|i| ((i * 7919) % 97) as f32 / 50.0 - 1.0)
            .collect();
        let plain = Tensor::from_vec(xb.clone(), (4, 3, 8, 8), &dev).unwrap();
        let labels = [0u16, 1, 2, 3];
        mix(
            &AugmentSpec::Cutmix { alpha: 1.0 },
            &mut xb,
            &labels,
            8,
            8,
            &mut Rng::new(3),
        );
        let x = Tensor::from_vec(xb, (4, 3, 8, 8), &dev).unwrap();
        let (_, tl) = forward_batch(&student, &[teacher], &x).unwrap();
        let values = |t: Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let eval = |x: &Tensor| values(reference.forward_t(x, false).unwrap());
        let got = values(tl[0].clone());
        assert_eq!(got, eval(&x));
        assert_ne!(got, eval(&plain), "the batch was mixed");
    }

    #[test]
    fn issue_13_non_finite_metrics_and_weights_are_divergence() {
        let (_, vm) = model::build_trainable(
            ModelName::Resnet8,
            10,
            1,
            model::Kernels::lecal(),
            &Device::Cpu,
        )
        .unwrap();
        let good = EpochRecord {
            epoch: 1,
            train_loss: 3e25,
            nll: 2.0,
            brier: 0.9,
            val_loss: None,
            ..Default::default()
        };
        assert_eq!(
            diverged(&good, &vm).unwrap(),
            None,
            "a huge loss is not divergence"
        );
        let nan = EpochRecord {
            brier: f64::NAN,
            ..good.clone()
        };
        let why = diverged(&nan, &vm).unwrap().unwrap();
        assert_eq!(why, "the test Brier score is NaN");
        let inf_val = EpochRecord {
            val_loss: Some(f64::INFINITY),
            ..good.clone()
        };
        assert_eq!(
            diverged(&inf_val, &vm).unwrap().unwrap(),
            "the validation NLL is inf"
        );
        let (name, var) = model::sorted_vars(&vm).into_iter().next().unwrap();
        let mut v = var
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        v[0] = f32::INFINITY;
        let t = Tensor::from_vec(v, var.as_tensor().shape(), &Device::Cpu).unwrap();
        var.set(&t).unwrap();
        let why = diverged(&good, &vm).unwrap().unwrap();
        assert_eq!(why, format!("weight `{name}` holds non-finite values"));
    }
}
