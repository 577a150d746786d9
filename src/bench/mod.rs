//! `lecal bench`: throughput of a training step, of a teacher's forward pass and of the
//! data pipeline, measured the way `scripts/bench_pytorch.py` measures PyTorch; Table 1's
//! rows run by run and as a cohort (`cohort.rs`); four students of one architecture one
//! after another and as one fused network (`fused.rs`); and `--check cuda:N`, one training step
//! on a GPU against the same step on the CPU.

pub mod cohort;
mod fused;
pub mod imagenet;

use crate::data::{mix, synthetic, transform};
use crate::method;
use crate::model::{self, Kernels};
use crate::rng::Rng;
use crate::spec::ModelName;
use crate::spec::{AugmentSpec, Method, SyntheticSpec, Transform};
use crate::train::sgd::Sgd;
use anyhow::Context;
use candle_core::{Device, Tensor};
use serde::Serialize;
use std::time::Instant;

pub const BATCH: usize = 64;
const CLASSES: usize = 100;
const SIZE: usize = 32;

/// One measurement: `what` (e.g. `train resnet20`), its implementation, images per second.
#[derive(Debug, Clone, Serialize)]
pub struct Measure {
    pub what: String,
    pub implementation: String,
    pub images_per_second: f64,
    pub iterations: usize,
    pub seconds: f64,
}

pub struct Options {
    pub device: Device,
    /// lecal's kernels on this device (`--cpu-kernels` chose their microkernel).
    pub kernels: Kernels,
    pub models: Vec<ModelName>,
    /// Also time candle's own convolution (on the CPU, ResNet20 and the teacher only: slow).
    pub baseline: bool,
    /// Time each measurement for at least this long.
    pub min_seconds: f64,
    /// Which parts to time: `train`, `teacher`, `data`, `cohort`, `imagenet-loader`.
    pub parts: Vec<String>,
    /// Training images of each run of the cohort part.
    pub cohort_images: usize,
    /// Students per fused network in the fused part.
    pub fused_members: Vec<usize>,
    /// Generated JPEGs of the `imagenet-loader` part, and where they are written.
    pub imagenet_images: usize,
    pub imagenet_dir: std::path::PathBuf,
}

/// Repeats `step` (one warm-up first) until `min_seconds` have passed, at least twice.
fn time(
    min_seconds: f64,
    images: usize,
    mut step: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<(f64, usize, f64)> {
    step()?;
    let t = Instant::now();
    let mut n = 0;
    while n < 2 || t.elapsed().as_secs_f64() < min_seconds {
        step()?;
        n += 1;
    }
    let s = t.elapsed().as_secs_f64();
    Ok(((n * images) as f64 / s, n, s))
}

fn random_batch(device: &Device, seed: u64) -> anyhow::Result<(Tensor, Vec<u16>)> {
    let mut rng = Rng::new(seed);
    let x: Vec<f32> = (0..BATCH * 3 * SIZE * SIZE)
        .map(|_| rng.normal() as f32)
        .collect();
    let labels: Vec<u16> = (0..BATCH)
        .map(|_| rng.below(CLASSES as u64) as u16)
        .collect();
    Ok((Tensor::from_vec(x, (BATCH, 3, SIZE, SIZE), device)?, labels))
}

/// A trainer's step: forward in training mode, cross-entropy, backward, SGD update.
pub struct Step {
    net: model::ResNet,
    pub varmap: candle_nn::VarMap,
    opt: Sgd,
    x: Tensor,
    mixes: Vec<mix::LabelMix>,
    device: Device,
}

impl Step {
    pub fn new(m: ModelName, kernels: Kernels, device: &Device, seed: u64) -> anyhow::Result<Self> {
        let (net, varmap) = model::build_trainable(m, CLASSES, seed, kernels, device)?;
        let params = model::trainable_vars(&varmap);
        let (x, labels) = random_batch(device, seed)?;
        Ok(Self {
            net,
            varmap,
            opt: Sgd::new(params, 0.9, 5e-4),
            x,
            mixes: labels.iter().map(|&y| vec![(y, 1.0)]).collect(),
            device: device.clone(),
        })
    }

    /// One step; returns the loss.
    pub fn run(&mut self) -> anyhow::Result<f32> {
        let logits = self.net.forward_t(&self.x, true)?;
        let loss = method::loss(&Method::Hard, &logits, &self.mixes, &[], &self.device)?;
        let grads = loss.backward()?;
        self.opt.step(&grads, 0.1)?;
        Ok(loss.to_scalar::<f32>()?)
    }
}

fn implementation(device: &Device, candle_conv: bool) -> String {
    let conv = if candle_conv { ", candle's conv" } else { "" };
    match device {
        Device::Cpu => format!("lecal{conv}"),
        _ => format!("lecal{conv} ({})", crate::device::describe(device)),
    }
}

/// candle's convolution for the baseline measurements, lecal's otherwise.
fn kernels(o: &Options, candle_conv: bool) -> Kernels {
    if candle_conv {
        Kernels::CANDLE
    } else {
        o.kernels
    }
}

// Long: the three parts (train, teacher, data) share one `push` that prints and records
// each measurement as it is taken, in the order `make bench` lays them beside PyTorch's.
pub fn run(o: &Options) -> anyhow::Result<Vec<Measure>> {
    let mut out = Vec::new();
    let mut push = |what: String, imp: String, (ips, n, s): (f64, usize, f64)| {
        eprintln!("  {what:<22} {imp:<24} {ips:>10.1} img/s  ({n} iterations, {s:.1} s)");
        out.push(Measure {
            what,
            implementation: imp,
            images_per_second: ips,
            iterations: n,
            seconds: s,
        });
    };
    let convs: &[bool] = if o.baseline { &[false, true] } else { &[false] };
    let part = |p: &str| o.parts.iter().any(|x| x == p);
    let models: &[ModelName] = if part("train") { &o.models } else { &[] };
    for &m in models {
        for &candle_conv in convs {
            // candle's CPU convolution takes minutes a step on the deep models: there,
            // baseline ResNet20 only.
            if candle_conv && o.device.is_cpu() && m != ModelName::Resnet20 {
                continue;
            }
            let mut step = Step::new(m, kernels(o, candle_conv), &o.device, 0)?;
            let r = time(o.min_seconds, BATCH, || step.run().map(|_| ()))?;
            push(
                format!("train {}", m.as_str()),
                implementation(&o.device, candle_conv),
                r,
            );
        }
    }
    // A teacher's forward pass: ResNet110, evaluation mode, no graph.
    let teacher_convs: &[bool] = if part("teacher") { convs } else { &[] };
    for &candle_conv in teacher_convs {
        let k = kernels(o, candle_conv);
        let (_, vm) = model::build_trainable(ModelName::Resnet110, CLASSES, 0, k, &o.device)?;
        let teacher = model::build_frozen(
            ModelName::Resnet110,
            CLASSES,
            model::snapshot(&vm),
            k,
            &o.device,
        )?;
        let (x, _) = random_batch(&o.device, 1)?;
        let r = time(o.min_seconds, BATCH, || {
            let y = teacher.forward_t(&x, false)?;
            y.to_vec2::<f32>()?;
            Ok(())
        })?;
        push(
            "teacher resnet110".into(),
            implementation(&o.device, candle_conv),
            r,
        );
    }
    if part("cohort") {
        for (what, seconds, images) in cohort_part(o)? {
            push(
                what,
                implementation(&o.device, false),
                (images as f64 / seconds, 1, seconds),
            );
        }
    }
    if part("fused") {
        let models: Vec<ModelName> = (o.models.iter().copied())
            .filter(|m| m.cifar_depth().is_some())
            .collect();
        for &k in &o.fused_members {
            for (what, imp, r) in fused::measure(&models, k, o.kernels, &o.device, o.min_seconds)? {
                push(what, imp, r);
            }
        }
    }
    if part("imagenet-loader") {
        let r = imagenet::measure(&o.imagenet_dir, o.imagenet_images, o.min_seconds)?;
        push("imagenet-loader".into(), "lecal".into(), r);
        for (decoder, r) in imagenet::decoders(&o.imagenet_dir, o.imagenet_images, o.min_seconds)? {
            push("imagenet-decode 1 thread".into(), decoder.into(), r);
        }
        for (resizer, r, worst) in
            imagenet::resizers(&o.imagenet_dir, o.imagenet_images, o.min_seconds)?
        {
            let name = format!("{resizer}, max |Δ| {worst} from Pillow");
            push("imagenet-resize 1 thread".into(), name, r);
        }
    }
    if !part("data") {
        return Ok(out);
    }
    // The data pipeline on CIFAR-sized images.
    let spec = SyntheticSpec {
        train: 2048,
        test: 1,
        data_seed: 0,
        confusion: 0.0,
    };
    let ds = synthetic::generate(&spec, 10, SIZE).train;
    let t = Transform {
        crop_padding: 4,
        flip: true,
        mean: [0.5; 3],
        std: [0.25; 3],
        resized_crop: None,
    };
    let order: Vec<usize> = Rng::new(0).permutation(ds.len());
    let batches: Vec<&[usize]> = order.chunks(BATCH).collect();
    let mut epoch = 0;
    let r = time(o.min_seconds, ds.len(), || {
        epoch += 1;
        for (bi, idx) in batches.iter().enumerate() {
            std::hint::black_box(transform::train_batch(&ds, idx, &t, 0, epoch, bi * BATCH));
        }
        Ok(())
    })?;
    push("crop+flip+normalise".into(), "lecal".into(), r);
    let x0 = transform::train_batch(&ds, batches[0], &t, 0, 1, 0);
    let labels: Vec<u16> = batches[0].iter().map(|&i| ds.labels[i]).collect();
    for (name, aug) in [
        ("mixup", AugmentSpec::Mixup { alpha: 1.0 }),
        ("cutmix", AugmentSpec::Cutmix { alpha: 1.0 }),
        ("ricap", AugmentSpec::Ricap { beta: 0.3 }),
    ] {
        let mut rng = Rng::new(0);
        let mut x = x0.clone();
        let r = time(o.min_seconds, 32 * BATCH, || {
            for _ in 0..32 {
                x.copy_from_slice(&x0);
                std::hint::black_box(mix::mix(&aug, &mut x, &labels, SIZE, SIZE, &mut rng));
            }
            Ok(())
        })?;
        push(name.into(), "lecal".into(), r);
    }
    Ok(out)
}

/// The cohort part: its two timings, as (what, seconds, images trained), after saying
/// where the time goes.
fn cohort_part(o: &Options) -> anyhow::Result<Vec<(String, f64, usize)>> {
    let trainer = crate::train::CandleTrainer::new(o.device.clone(), o.kernels, ".".into());
    let b = cohort::run(&trainer, o.cohort_images)?;
    let (a, c) = (b.alone_seconds, b.cohort_seconds);
    // One teacher's forward pass over a run's batches, from the two timings: the runs
    // alone make `alone_passes` of them, the cohort `cohort_passes`; the rest (student
    // steps, evaluation, data) is the same work both ways.
    let pass = (a - c) / (b.alone_passes - b.cohort_passes) as f64;
    eprintln!(
        "  cohort: {} runs × {} images: run by run {a:.1} s, as one cohort {c:.1} s: {:.2}× \
         (results identical: {})",
        b.runs,
        b.images_per_run,
        c / a,
        if b.identical { "yes" } else { "NO" },
    );
    eprintln!(
        "  cohort: where the time goes: teacher forward passes {:.1} s run by run ({} passes \
         over the batches) and {:.1} s as a cohort ({}); student steps, evaluation and data \
         {:.1} s either way",
        pass * b.alone_passes as f64,
        b.alone_passes,
        pass * b.cohort_passes as f64,
        b.cohort_passes,
        c - pass * b.cohort_passes as f64,
    );
    eprintln!(
        "  cohort: with its students fused (one network per architecture) {:.1} s: {:.2}× the \
         time run by run, {:.2}× the unfused cohort's",
        b.fused_seconds,
        b.fused_seconds / a,
        b.fused_seconds / c,
    );
    if !b.identical && o.device.is_cpu() {
        anyhow::bail!("a cohort trained different numbers than its runs alone on the CPU");
    }
    let images = b.runs * b.images_per_run;
    Ok(vec![
        ("table-1 rows, run by run".into(), a, images),
        ("table-1 rows, as a cohort".into(), c, images),
        (
            "table-1 rows, as a fused cohort".into(),
            b.fused_seconds,
            images,
        ),
    ])
}

/// One training step of ResNet20 from the same weights and batch on `device` with
/// `kernels` and on the CPU with its default kernels: the largest differences of the loss
/// and of the updated weights.
pub fn check_device(device: &Device, kernels: Kernels) -> anyhow::Result<(f64, f64)> {
    let mut gpu =
        Step::new(ModelName::Resnet20, kernels, device, 7).context("building on the device")?;
    let cpu_kernels = Kernels::lecal();
    let mut cpu = Step::new(ModelName::Resnet20, cpu_kernels, &Device::Cpu, 7)?;
    let (lg, lc) = (gpu.run()?, cpu.run()?);
    let mut worst = 0f64;
    let a = model::snapshot(&gpu.varmap);
    for (name, c) in model::snapshot(&cpu.varmap) {
        let g = a[&name]
            .to_device(&Device::Cpu)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let c = c.flatten_all()?.to_vec1::<f32>()?;
        for (x, y) in g.iter().zip(&c) {
            worst = worst.max((x - y).abs() as f64);
        }
    }
    Ok(((lg - lc).abs() as f64, worst))
}
