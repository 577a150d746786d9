//! `lecal parity DIR`: lecal's side of the check that it trains as PyTorch does
//! (`make parity`, `scripts/parity.py`). It writes identical inputs and lecal's outputs
//! for them; the script recomputes every output with PyTorch from the same inputs and
//! reports the largest differences (PARITY.md):
//!
//! - `models.safetensors`: every CIFAR ResNet's weights (seeded; BatchNorm running
//!   statistics made non-trivial), one input batch, and the logits in eval and in train
//!   mode;
//! - `losses.safetensors` + `losses.toml`: the loss and its gradient with respect to the
//!   logits for every method preset (plain and mixed labels; one and three teachers);
//! - `crd.safetensors`: CRD's term (embedding heads, scores against the memories, NCE
//!   with its constants fixed at this batch) and its gradients with respect to the
//!   student's features and both heads, and the memories after the batch's update;
//! - `sskd.safetensors`: SSKD's loss (the preset's own terms on the upright rows, the
//!   rotated copies' KD and the similarity KD over the rows kept) with the paper's and
//!   with smaller kept shares, its gradients with respect to the student's logits,
//!   features and head, the rows kept, and the teacher head's loss and gradients;
//! - `sgd.safetensors`: two SGD steps of ResNet20 (momentum, weight decay on every
//!   parameter, BatchNorm running statistics) and their losses;
//! - `schedules.csv`: the learning rate at every epoch of each schedule preset;
//! - `train-<case>.safetensors`, `.toml` and `.csv`: a short ResNet20 training run on the
//!   built-in data: the initial weights, every training batch as the student saw it
//!   (after crop, flip, normalisation and mixing) with its label targets and step loss,
//!   the test set, the schedule of the spec, the trainer's state after every epoch
//!   (`.state<epoch>.safetensors`), and lecal's per-epoch numbers, for PyTorch to replay.

use crate::data::{self, transform};
use crate::model::{self, Kernels};
use crate::plan::{self, Scale};
use crate::recipe;
use crate::rng::Rng;
use crate::spec::{Method, ModelName, RunSpec, SchedulePreset};
use crate::store::EpochRecord;
use crate::train::{sgd::Sgd, CandleTrainer, Outcome, RunSink, Trainer};
use anyhow::Context;
use candle_core::{Device, Tensor};
use std::collections::HashMap;
use std::path::Path;

mod sskd;

const CLASSES: usize = 100;
const BATCH: usize = 8;

/// Writes every part into `dir`; with `seeds > 0` also `seeds.csv` and
/// `seeds-data.safetensors`: the final test accuracy and ECE of `seeds` runs of one small
/// setting, for PyTorch to train the same setting with its own random draws (weights,
/// order, crops, flips) and compare the two samples.
pub fn dump(dir: &Path, seeds: u64) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    models(dir)?;
    losses(dir)?;
    crd(dir)?;
    sskd::dump(dir, &preset_methods(&["sskd"], 1)?[0].1)?;
    sgd_steps(dir)?;
    schedules(dir)?;
    for (case, augment) in [("plain", ""), ("mixup", "augment = { kind = \"mixup\" }\n")] {
        training(dir, case, augment)?;
    }
    if seeds > 0 {
        seed_sample(dir, seeds)?;
    }
    Ok(())
}

/// The setting of the seed sample: small enough for many seeds on two cores.
const SEED_SETTING: &str =
    "synthetic = { train = 2000, test = 1000, resolution = 16, classes = 10 }\n\
     schedule = { epochs = 15, milestones = [8, 12], batch = 64 }\n\
     student = \"resnet8\"\n";

fn seed_sample(dir: &Path, seeds: u64) -> anyhow::Result<()> {
    let mut text = String::from("seed,accuracy,ece,nll\n");
    let trainer = CandleTrainer::new(Device::Cpu, Kernels::lecal(), "data".into());
    let mut spec = run_spec(SEED_SETTING)?;
    for seed in 0..seeds {
        spec.seed = seed;
        let mut rec = Recorder {
            shape: (3, 16, 16),
            ..Recorder::default()
        };
        let o = trainer.train(&spec, &[], &mut rec)?;
        eprintln!(
            "  seed {seed}: accuracy {:.2} ECE {:.4}",
            o.last.accuracy, o.last.ece
        );
        text.push_str(&format!(
            "{seed},{},{},{}\n",
            o.last.accuracy, o.last.ece, o.last.nll
        ));
    }
    std::fs::write(dir.join("seeds.csv"), text)?;
    let splits = data::load(&spec.data, Path::new("data"))?;
    let mut out = HashMap::new();
    for (name, ds) in [("train", &splits.train), ("test", &splits.test)] {
        let n = ds.len();
        let (h, w) = (ds.height, ds.width);
        out.insert(
            format!("{name}.images"),
            Tensor::from_vec(ds.images.clone(), (n, 3, h, w), &Device::Cpu)?,
        );
        let labels: Vec<u32> = ds.labels.iter().map(|&l| u32::from(l)).collect();
        out.insert(
            format!("{name}.labels"),
            Tensor::from_vec(labels, n, &Device::Cpu)?,
        );
    }
    let t = &spec.transform;
    let norm: Vec<f32> = t.mean.iter().chain(&t.std).map(|&v| v as f32).collect();
    out.insert("normalize".into(), Tensor::from_vec(norm, 6, &Device::Cpu)?);
    save(&out, &dir.join("seeds-data.safetensors"))?;
    std::fs::write(
        dir.join("seeds.toml"),
        format!(
            "crop_padding = {}\nflip = {}\n{}",
            t.crop_padding,
            t.flip,
            toml::to_string(&spec.schedule)?
        ),
    )?;
    Ok(())
}

pub(crate) fn random(shape: &[usize], rng: &mut Rng, scale: f64) -> anyhow::Result<Tensor> {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| (rng.normal() * scale) as f32).collect();
    Ok(Tensor::from_vec(v, shape, &Device::Cpu)?)
}

pub(crate) fn save(tensors: &HashMap<String, Tensor>, path: &Path) -> anyhow::Result<()> {
    candle_core::safetensors::save(tensors, path)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Weights of `m` as initialised for `seed`, with running statistics drawn so that eval
/// mode does not see the identity.
fn weights(m: ModelName, classes: usize, seed: u64) -> anyhow::Result<HashMap<String, Tensor>> {
    let (_, vm) = model::build_trainable(m, classes, seed, Kernels::lecal(), &Device::Cpu)?;
    let mut w = model::snapshot(&vm);
    let mut rng = Rng::stream(seed, "parity-running", &[]);
    for (name, t) in w.iter_mut() {
        if name.ends_with(".running_mean") {
            *t = random(t.dims(), &mut rng, 0.1)?;
        } else if name.ends_with(".running_var") {
            let v: Vec<f32> = (0..t.elem_count())
                .map(|_| (0.5 + rng.uniform()) as f32)
                .collect();
            *t = Tensor::from_vec(v, t.dims(), &Device::Cpu)?;
        }
    }
    Ok(w)
}

fn models(dir: &Path) -> anyhow::Result<()> {
    let mut out = HashMap::new();
    let x = random(&[BATCH, 3, 32, 32], &mut Rng::new(11), 1.0)?;
    for m in ModelName::CIFAR {
        let w = weights(m, CLASSES, 5)?;
        let net = model::build_frozen(m, CLASSES, w.clone(), Kernels::lecal(), &Device::Cpu)?;
        out.insert(format!("{}.eval", m.as_str()), net.forward_t(&x, false)?);
        out.insert(format!("{}.train", m.as_str()), net.forward_t(&x, true)?);
        for (k, v) in w {
            out.insert(format!("{}.param.{k}", m.as_str()), v);
        }
    }
    out.insert("x".into(), x);
    save(&out, &dir.join("models.safetensors"))
}

/// The presets whose loss `losses` checks on logits alone.
const LOSS_PRESETS: [&str; 7] = ["vanilla", "smoothing", "kd", "sl", "en-sl", "kd-sl", "wsl"];

/// The method of each of `presets`, as the planner resolves it for a student with
/// `teachers` teacher runs.
fn preset_methods(presets: &[&str], teachers: usize) -> anyhow::Result<Vec<(String, Method)>> {
    let rows: Vec<String> = presets.iter().map(|p| format!("\"{p}\"")).collect();
    let mut files = vec![(
        "p.table.toml".to_string(),
        format!(
            "title = \"p\"\nrows = [{}]\ncolumns = [\"ResNet8\"]\n",
            rows.join(", ")
        ),
    )];
    let seeds: Vec<String> = (0..teachers).map(|s| s.to_string()).collect();
    for &p in presets {
        let teacher_line = if ["vanilla", "smoothing"].contains(&p) {
            String::new()
        } else {
            format!(
                "teachers = [{{ model = \"resnet8\", seeds = [{}] }}]\n",
                seeds.join(", ")
            )
        };
        files.push((
            format!("{p}.toml"),
            format!(
                "cell = {{ table = \"p\", row = \"{p}\", column = \"ResNet8\" }}\n\
                 dataset = \"synthetic\"\nstudent = \"resnet8\"\nseeds = [0]\n\
                 method = \"{p}\"\n{teacher_line}"
            ),
        ));
    }
    let plan = plan_of(&files)?;
    Ok(plan
        .cells
        .iter()
        .map(|(cell, c)| {
            let run = plan.get(&c.runs[0].1).expect("the cell's run");
            (cell.row.clone(), run.spec.method.clone())
        })
        .collect())
}

/// The plan of recipe `files` (name, text), written to a scratch folder that is removed
/// again whatever happens.
fn plan_of(files: &[(String, String)]) -> anyhow::Result<plan::Plan> {
    let dir = std::env::temp_dir().join(format!("lecal-parity-{}", std::process::id()));
    let planned = (|| {
        std::fs::create_dir_all(&dir)?;
        for (name, text) in files {
            std::fs::write(dir.join(name), text)?;
        }
        let set = recipe::load(std::slice::from_ref(&dir))?;
        Ok(plan::build(&set, &Scale::named("full").expect("a scale"))?)
    })();
    let _ = std::fs::remove_dir_all(&dir);
    planned
}

/// Label mixtures: plain labels, or two labels per sample with a weight drawn per sample
/// (as mixup and CutMix give).
fn mixes(rng: &mut Rng, mixed: bool) -> Vec<data::mix::LabelMix> {
    (0..BATCH)
        .map(|_| {
            let a = rng.below(CLASSES as u64) as u16;
            if !mixed {
                return vec![(a, 1.0)];
            }
            let b = rng.below(CLASSES as u64) as u16;
            let w = rng.uniform();
            vec![(a, w), (b, 1.0 - w)]
        })
        .collect()
}

fn losses(dir: &Path) -> anyhow::Result<()> {
    let mut out = HashMap::new();
    let mut cases = Vec::new();
    let mut rng = Rng::new(21);
    let logits = random(&[BATCH, CLASSES], &mut rng, 3.0)?;
    let teacher_logits: Vec<Tensor> = (0..3)
        .map(|_| random(&[BATCH, CLASSES], &mut rng, 3.0))
        .collect::<anyhow::Result<_>>()?;
    for teachers in [1, 3] {
        for (preset, method) in preset_methods(&LOSS_PRESETS, teachers)? {
            if teachers == 3 && !matches!(method, Method::Teachers { .. }) {
                continue;
            }
            for mixed in [false, true] {
                let m = mixes(&mut rng, mixed);
                let var = candle_core::Var::from_tensor(&logits)?;
                let t = &teacher_logits[..teachers];
                let loss = crate::method::loss(&method, var.as_tensor(), &m, t, &Device::Cpu)?;
                let grad = loss
                    .backward()?
                    .get(var.as_tensor())
                    .context("no gradient")?
                    .clone();
                let i = cases.len();
                let targets = crate::method::mixed_targets(&m, CLASSES, 0.0);
                out.insert(
                    format!("case{i}.targets"),
                    Tensor::from_vec(targets, (BATCH, CLASSES), &Device::Cpu)?,
                );
                out.insert(format!("case{i}.loss"), loss);
                out.insert(format!("case{i}.grad"), grad);
                cases.push(LossCase {
                    index: i,
                    preset: preset.clone(),
                    teachers,
                    mixed,
                    method: method.clone(),
                });
            }
        }
    }
    out.insert("logits".into(), logits);
    out.insert("teachers".into(), Tensor::stack(&teacher_logits, 0)?);
    save(&out, &dir.join("losses.safetensors"))?;
    let text = toml::to_string(&LossCases { case: cases })?;
    std::fs::write(dir.join("losses.toml"), text)?;
    Ok(())
}

#[derive(serde::Serialize)]
struct LossCases {
    case: Vec<LossCase>,
}

#[derive(serde::Serialize)]
struct LossCase {
    index: usize,
    preset: String,
    teachers: usize,
    mixed: bool,
    method: Method,
}

/// CRD's term on random features, heads and memories, as `train::crd` composes
/// `method::crd` (τ = 0.07, momentum 0.5, 24 negatives, 40 training images).
fn crd(dir: &Path) -> anyhow::Result<()> {
    use crate::method::crd as c;
    let (b, fs_dim, ft_dim, dim, k, n) = (BATCH, 64, 48, 16, 24, 40);
    let (tau, momentum) = (0.07, 0.5);
    let mut rng = Rng::new(31);
    let memory = |rng: &mut Rng| -> anyhow::Result<Tensor> {
        Ok(c::normalize_rows(&random(&[n, dim], rng, 1.0)?)?)
    };
    let mut t: HashMap<String, Tensor> = HashMap::new();
    for (name, shape) in [
        ("f_s", vec![b, fs_dim]),
        ("f_t", vec![b, ft_dim]),
        ("w_s", vec![dim, fs_dim]),
        ("b_s", vec![dim]),
        ("w_t", vec![dim, ft_dim]),
        ("b_t", vec![dim]),
    ] {
        t.insert(name.into(), random(&shape, &mut rng, 0.5)?);
    }
    t.insert("memory_s".into(), memory(&mut rng)?);
    t.insert("memory_t".into(), memory(&mut rng)?);
    let samples: Vec<u32> = (0..b as u32).map(|i| 3 * i + 1).collect();
    let mut index = Vec::new();
    for &s in &samples {
        index.push(s);
        index.extend((0..k).map(|_| rng.below(n as u64) as u32));
    }
    let index = Tensor::from_vec(index, (b, k + 1), &Device::Cpu)?;
    let samples = Tensor::from_vec(samples, b, &Device::Cpu)?;
    let vars: Vec<candle_core::Var> = ["f_s", "w_s", "b_s", "w_t", "b_t"]
        .iter()
        .map(|k| candle_core::Var::from_tensor(&t[*k]))
        .collect::<candle_core::Result<_>>()?;
    let [f_s, w_s, b_s, w_t, b_t] = [0, 1, 2, 3, 4].map(|i| vars[i].as_tensor());
    let kernels = Kernels::lecal();
    let v_s = c::embed(f_s, w_s, b_s, kernels)?;
    let v_t = c::embed(&t["f_t"], w_t, b_t, kernels)?;
    let memories = (&t["memory_s"], &t["memory_t"]);
    let (loss, _) = c::term((&v_s, &v_t), memories, &index, tau, None, kernels)?;
    let grads = loss.backward()?;
    for (name, var) in ["f_s", "w_s", "b_s", "w_t", "b_t"].iter().zip(&vars) {
        let g = grads.get(var.as_tensor()).context("no gradient")?;
        t.insert(format!("grad_{name}"), g.clone());
    }
    let updated_s = c::update_memory(&t["memory_s"], &samples, &v_s, momentum)?;
    let updated_t = c::update_memory(&t["memory_t"], &samples, &v_t, momentum)?;
    t.insert("memory_s_after".into(), updated_s);
    t.insert("memory_t_after".into(), updated_t);
    t.insert("loss".into(), loss);
    t.insert("index".into(), index);
    t.insert("samples".into(), samples);
    let consts = [n as f32, tau as f32, momentum as f32];
    t.insert("consts".into(), Tensor::new(&consts, &Device::Cpu)?);
    save(&t, &dir.join("crd.safetensors"))
}

fn sgd_steps(dir: &Path) -> anyhow::Result<()> {
    let (lr, momentum, wd) = (0.1, 0.9, 5e-4);
    let (net, vm) =
        model::build_trainable(ModelName::Resnet20, 10, 3, Kernels::lecal(), &Device::Cpu)?;
    let mut out: HashMap<String, Tensor> = model::snapshot(&vm)
        .into_iter()
        .map(|(k, v)| (format!("before.{k}"), v.copy().expect("a copy")))
        .collect();
    let mut rng = Rng::new(31);
    let mut opt = Sgd::new(model::trainable_vars(&vm), momentum, wd);
    for step in 0..2 {
        let x = random(&[BATCH, 3, 32, 32], &mut rng, 1.0)?;
        let labels: Vec<u16> = (0..BATCH).map(|_| rng.below(10) as u16).collect();
        let m: Vec<data::mix::LabelMix> = labels.iter().map(|&l| vec![(l, 1.0)]).collect();
        let logits = net.forward_t(&x, true)?;
        let loss = crate::method::loss(&Method::Hard, &logits, &m, &[], &Device::Cpu)?;
        opt.step(&loss.backward()?, lr)?;
        let labels: Vec<u32> = labels.iter().map(|&l| u32::from(l)).collect();
        out.insert(format!("step{step}.x"), x);
        out.insert(
            format!("step{step}.labels"),
            Tensor::from_vec(labels, BATCH, &Device::Cpu)?,
        );
        out.insert(format!("step{step}.loss"), loss);
    }
    for (k, v) in model::snapshot(&vm) {
        out.insert(format!("after.{k}"), v);
    }
    save(&out, &dir.join("sgd.safetensors"))
}

fn schedules(dir: &Path) -> anyhow::Result<()> {
    let mut text = String::from("preset,epoch,lr,milestones,gamma,base\n");
    for (name, p) in [
        ("default", SchedulePreset::Default),
        ("long", SchedulePreset::Long),
        ("imagenet", SchedulePreset::Imagenet),
    ] {
        let s = crate::spec::Schedule::preset(p);
        let ms: Vec<String> = s.milestones.iter().map(|m| m.to_string()).collect();
        for e in 1..=s.epochs {
            text.push_str(&format!(
                "{name},{e},{:e},{},{},{}\n",
                s.lr_at(e),
                ms.join(" "),
                s.gamma,
                s.lr
            ));
        }
    }
    std::fs::write(dir.join("schedules.csv"), text)?;
    Ok(())
}

/// Records the run's epochs, the trainer's state after each (model and momentum, as a
/// checkpoint holds it) and every training batch.
#[derive(Default)]
struct Recorder {
    epochs: Vec<EpochRecord>,
    batches: HashMap<String, Tensor>,
    shape: (usize, usize, usize),
    /// Where `<prefix>.state<epoch>.safetensors` go.
    prefix: std::path::PathBuf,
}

impl RunSink for Recorder {
    fn epoch(&mut self, record: &EpochRecord, state: &[u8]) -> anyhow::Result<()> {
        self.epochs.push(record.clone());
        let mut path = self.prefix.clone().into_os_string();
        path.push(format!(".state{}.safetensors", record.epoch));
        std::fs::write(&path, state)?;
        Ok(())
    }

    fn wants_batches(&self) -> bool {
        true
    }

    fn batch(&mut self, epoch: usize, index: usize, x: &[f32], targets: &[f32], loss: f64) {
        let (c, h, w) = self.shape;
        let b = x.len() / (c * h * w);
        let key = |what: &str| format!("e{epoch}.b{index}.{what}");
        let x = Tensor::from_vec(x.to_vec(), (b, c, h, w), &Device::Cpu);
        let t = Tensor::from_vec(targets.to_vec(), (b, targets.len() / b), &Device::Cpu);
        let l = Tensor::new(&[loss as f32], &Device::Cpu);
        if let (Ok(x), Ok(t), Ok(l)) = (x, t, l) {
            self.batches.insert(key("x"), x);
            self.batches.insert(key("t"), t);
            self.batches.insert(key("loss"), l);
        }
    }

    fn finish(&mut self, _weights: &[u8], _outcome: &Outcome) -> anyhow::Result<()> {
        Ok(())
    }
}

/// The ResNet20 run of the short training, with `augment`.
fn training_spec(augment: &str) -> anyhow::Result<RunSpec> {
    run_spec(&format!(
        "synthetic = {{ train = 512, test = 256, resolution = 32, classes = 10 }}\n\
         schedule = {{ epochs = 4, milestones = [3], batch = 64, lr = 0.01 }}\n\
         student = \"resnet20\"\n{augment}"
    ))
}

/// The one run (seed 0) of a recipe on the built-in data with `setting` (its
/// `synthetic`, `schedule`, `student` and other keys), written to a scratch folder.
fn run_spec(setting: &str) -> anyhow::Result<RunSpec> {
    let plan = plan_of(&[
        (
            "t.table.toml".into(),
            "title = \"t\"\nrows = [\"r\"]\ncolumns = [\"c\"]\n".into(),
        ),
        (
            "r.toml".into(),
            format!(
                "cell = {{ table = \"t\", row = \"r\", column = \"c\" }}\n\
                 dataset = \"synthetic\"\nseeds = [0]\n{setting}"
            ),
        ),
    ])?;
    Ok(plan.runs[0].spec.clone())
}

fn training(dir: &Path, case: &str, augment: &str) -> anyhow::Result<()> {
    let spec = training_spec(augment)?;
    let splits = data::load(&spec.data, Path::new("data"))?;
    let (h, w) = (splits.train.height, splits.train.width);
    let mut rec = Recorder {
        shape: (3, h, w),
        prefix: dir.join(format!("train-{case}")),
        ..Recorder::default()
    };
    let trainer = CandleTrainer::new(Device::Cpu, Kernels::lecal(), "data".into());
    let outcome: Outcome = trainer.train(&spec, &[], &mut rec)?;
    let classes = spec.data.classes;
    let (_, vm) = model::build_trainable(
        spec.model,
        classes,
        spec.seed,
        Kernels::lecal(),
        &Device::Cpu,
    )?;
    let mut out = rec.batches;
    for (k, v) in model::snapshot(&vm) {
        out.insert(format!("init.{k}"), v);
    }
    let test = &splits.test;
    let x = transform::test_batch(test, 0, test.len(), &spec.transform);
    out.insert(
        "test.x".into(),
        Tensor::from_vec(x, (test.len(), 3, h, w), &Device::Cpu)?,
    );
    let labels: Vec<u32> = test.labels.iter().map(|&l| u32::from(l)).collect();
    out.insert(
        "test.labels".into(),
        Tensor::from_vec(labels, test.len(), &Device::Cpu)?,
    );
    save(&out, &dir.join(format!("train-{case}.safetensors")))?;
    // The schedule as the spec gives it: PyTorch derives each epoch's rate itself.
    std::fs::write(
        dir.join(format!("train-{case}.toml")),
        toml::to_string(&spec.schedule)?,
    )?;
    let mut text = format!(
        "# ResNet20, {} training and {} test images of {h}x{w}, {} classes; final accuracy {}\n",
        splits.train.len(),
        test.len(),
        classes,
        outcome.last.accuracy
    );
    text.push_str("epoch,lr,train_loss,train_acc,test_acc,test_nll\n");
    for e in &rec.epochs {
        text.push_str(&format!(
            "{},{:e},{:e},{:e},{:e},{:e}\n",
            e.epoch, e.lr, e.train_loss, e.train_acc, e.test_acc, e.nll
        ));
    }
    std::fs::write(dir.join(format!("train-{case}.csv")), text)?;
    Ok(())
}
