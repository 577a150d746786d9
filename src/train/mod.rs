//! Training one run: the loop, evaluation after every epoch, and the `Trainer` trait that
//! lets the executor be tested with a fake.

pub mod sgd;

use crate::data::{self, mix, transform, Splits};
use crate::metrics::{self, Evaluation};
use crate::model;
use crate::rng::Rng;
use crate::spec::RunSpec;
use crate::store::checkpoint::Checkpoint;
use crate::store::EpochRecord;
use anyhow::{bail, Context};
use candle_core::{Device, Tensor};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

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
    /// crop, flip, normalisation and mixing (`B×3×H×W`), its `B×K` label targets, and the
    /// loss of the step taken on it.
    fn batch(&mut self, _epoch: usize, _index: usize, _x: &[f32], _targets: &[f32], _loss: f64) {}
    /// A stop signal, if one has arrived: the trainer then stops before its next step.
    fn stop_requested(&self) -> Option<i32> {
        None
    }
    /// The final weights (safetensors of `<variable>`), once training has ended.
    fn weights(&mut self, safetensors: &[u8]) -> anyhow::Result<()>;
}

/// A teacher's weights, resolved by the executor: a finished run's weights or an
/// external checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct TeacherSource {
    pub model: crate::spec::ModelName,
    pub path: PathBuf,
}

pub trait Trainer: Sync {
    fn train(
        &self,
        spec: &RunSpec,
        teachers: &[TeacherSource],
        sink: &mut dyn RunSink,
    ) -> anyhow::Result<Outcome>;
    /// The device as recorded in run.toml, and whether it promises bitwise repeatability.
    fn device(&self) -> (String, bool);
}

/// The real trainer, on a candle device.
pub struct CandleTrainer {
    pub device: Device,
    /// The kernels every model of a run is built with.
    pub kernels: model::Kernels,
    pub data_dir: PathBuf,
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
            cache: Mutex::new(HashMap::new()),
        }
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
    let mut start = 0;
    while start < ds.len() {
        let end = (start + EVAL_BATCH).min(ds.len());
        let x = transform::test_batch(ds, start, end, t);
        let x = Tensor::from_vec(x, (end - start, 3, ds.height, ds.width), device)?;
        let logits = net.forward_t(&x, false)?;
        out.extend(logits.flatten_all()?.to_vec1::<f32>()?);
        start = end;
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

    // Long: the epoch loop in one place: the order of the random streams, the step, the
    // evaluation and the checkpoint is the training semantics, reviewed top to bottom
    // against PyTorch's loop.
    fn train(
        &self,
        spec: &RunSpec,
        teachers: &[TeacherSource],
        sink: &mut dyn RunSink,
    ) -> anyhow::Result<Outcome> {
        let dev = &self.device;
        let splits = self.data(spec)?;
        let (train, test, val) = (&splits.train, &splits.test, splits.validation.as_ref());
        let classes = spec.data.classes;
        if train.classes != classes {
            bail!(
                "dataset has {} classes, the run expects {classes}",
                train.classes
            );
        }
        let teacher_nets = teachers
            .iter()
            .map(|t| {
                model::checkpoint::load_teacher(&t.path, t.model, classes, self.kernels, dev)
                    .with_context(|| format!("loading teacher {}", t.path.display()))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let (net, varmap) =
            model::build_trainable(spec.model, classes, spec.seed, self.kernels, dev)?;
        let s = &spec.schedule;
        let mut opt = sgd::Sgd::new(model::trainable_vars(&varmap), s.momentum, s.weight_decay);
        let (h, w) = (train.height, train.width);
        let mut epochs = Vec::new();
        if let Some(ck) = sink.resume()? {
            let tensors = candle_core::safetensors::load_buffer(&ck.state, dev)?;
            restore(&varmap, &mut opt, tensors)
                .with_context(|| format!("resuming from the checkpoint of epoch {}", ck.epoch))?;
            epochs = ck.epochs;
        }
        let mut last = None;
        for epoch in epochs.len() + 1..=s.epochs {
            let started = Instant::now();
            let lr = s.lr_at(epoch);
            let order = Rng::stream(spec.seed, "order", &[epoch as u64]).permutation(train.len());
            // A last batch of one image is dropped: BatchNorm needs two.
            let batches: Vec<&[usize]> = order.chunks(s.batch).filter(|b| b.len() >= 2).collect();
            let (mut loss_sum, mut correct, mut seen) = (0.0f64, 0usize, 0usize);
            for (bi, idx) in batches.iter().enumerate() {
                if let Some(signal) = sink.stop_requested() {
                    return Err(crate::interrupt::Interrupted { signal }.into());
                }
                let mut xb = transform::train_batch(
                    train,
                    idx,
                    &spec.transform,
                    spec.seed,
                    epoch,
                    bi * s.batch,
                );
                let labels: Vec<u16> = idx.iter().map(|&i| train.labels[i]).collect();
                // The student and every teacher see the same mixed batch.
                let mut mix_rng = Rng::stream(spec.seed, "mix", &[epoch as u64, bi as u64]);
                let mixed = mix::mix(&spec.augment, &mut xb, &labels, h, w, &mut mix_rng);
                let traced = sink.wants_batches().then(|| {
                    let t = crate::method::mixed_targets(&mixed.labels, classes, 0.0);
                    (xb.clone(), t)
                });
                let x = Tensor::from_vec(xb, (idx.len(), 3, h, w), dev)?;
                let (logits, teacher_logits) = forward_batch(&net, &teacher_nets, &x)?;
                let loss = crate::method::loss(
                    &spec.method,
                    &logits,
                    &mixed.labels,
                    &teacher_logits,
                    dev,
                )?;
                let lv = loss.to_scalar::<f32>()? as f64;
                if !lv.is_finite() {
                    bail!("epoch {epoch}, batch {}: the loss is {lv}", bi + 1);
                }
                let grads = loss.backward()?;
                opt.step(&grads, lr)?;
                if let Some((x, t)) = traced {
                    sink.batch(epoch, bi, &x, &t, lv);
                }
                let lg = logits.detach().flatten_all()?.to_vec1::<f32>()?;
                correct += argmax_rows(&lg, classes)
                    .zip(&labels)
                    .filter(|(p, &l)| *p == l as usize)
                    .count();
                loss_sum += lv * idx.len() as f64;
                seen += idx.len();
                sink.progress(epoch, bi + 1, batches.len());
            }
            let eval = evaluate(spec, self.kernels, &varmap, test, dev)?;
            let val_eval = val
                .map(|v| evaluate(spec, self.kernels, &varmap, v, dev))
                .transpose()?;
            let rec = EpochRecord {
                epoch,
                lr,
                train_loss: loss_sum / seen as f64,
                train_acc: 100.0 * correct as f64 / seen as f64,
                test_loss: eval.nll,
                test_acc: eval.accuracy,
                ece: eval.ece,
                nll: eval.nll,
                brier: eval.brier,
                seconds: started.elapsed().as_secs_f64(),
                checkpoint_seconds: 0.0,
                val_loss: val_eval.as_ref().map(|e| e.nll),
                val_acc: val_eval.as_ref().map(|e| e.accuracy),
                val_ece: val_eval.as_ref().map(|e| e.ece),
            };
            if let Some(what) = diverged(&rec, &varmap)? {
                bail!("epoch {epoch}: the run diverged: {what}");
            }
            let state = safetensors::serialize(checkpoint_state(&varmap, &opt), None)?;
            sink.epoch(&rec, &state)
                .context("writing the epoch's results")?;
            epochs.push(rec);
            last = Some((eval, val_eval));
        }
        let (last, validation) = match last {
            Some(e) => e,
            // Resumed after the last epoch's checkpoint: its evaluation again, which
            // gives the same numbers.
            None => (
                evaluate(spec, self.kernels, &varmap, test, dev)?,
                val.map(|v| evaluate(spec, self.kernels, &varmap, v, dev))
                    .transpose()?,
            ),
        };
        let weights: HashMap<String, Tensor> = model::snapshot(&varmap);
        sink.weights(&safetensors::serialize(&weights, None)?)?;
        Ok(Outcome {
            epochs,
            last,
            validation,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::mix::mix;
    use crate::spec::AugmentSpec;
    use crate::spec::ModelName;

    /// Teachers get the student's mixed batch: a teacher that is a frozen copy of a
    /// model gives, inside the training step, exactly that model's eval logits on the
    /// mixed images.
    #[test]
    fn teachers_see_the_students_mixed_batch() {
        let dev = Device::Cpu;
        let (student, _) =
            model::build_trainable(ModelName::Resnet8, 10, 1, model::Kernels::LECAL, &dev).unwrap();
        let (_, tvm) =
            model::build_trainable(ModelName::Resnet8, 10, 2, model::Kernels::LECAL, &dev).unwrap();
        let teacher = model::build_frozen(
            ModelName::Resnet8,
            10,
            model::snapshot(&tvm),
            model::Kernels::LECAL,
            &dev,
        )
        .unwrap();
        let reference = model::build_frozen(
            ModelName::Resnet8,
            10,
            model::snapshot(&tvm),
            model::Kernels::LECAL,
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
            model::Kernels::LECAL,
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
