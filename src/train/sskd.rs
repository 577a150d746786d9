//! An SSKD student's own state (`method::sskd` has the formulas): its projection head,
//! trained with the student by the same SGD (variables `sskd.proj_s.{0,2}.{weight,bias}`
//! of its variable map, numbered as the `Sequential` of SSKD's code, so they are
//! checkpointed and restored as the model is), and the teacher's head, trained before the
//! student's first epoch with the teacher frozen and then fixed, checkpointed as
//! `sskd.proj_t.*` beside the model.
//!
//! The teacher's head trains on its own batches: order, crops and flips from the seed
//! `rng::derive(seed, "sskd-head", [])`, so the student's batches are those of the same
//! seed without it. It is a function of the teacher, the seed, the data and the head's
//! settings: the members of a cohort that share them train it once.

use super::{linear_vars, sgd};
use crate::data::mix::LabelMix;
use crate::data::{self, Dataset};
use crate::interrupt::Interrupted;
use crate::method::sskd;
use crate::model::{self, Kernels};
use crate::rng::{self, Rng};
use crate::spec::{Method, Schedule, Sskd, Transform, SSKD_VIEWS};
use anyhow::{bail, Context};
use candle_core::{Device, Tensor, Var};
use candle_nn::VarMap;
use std::collections::HashMap;

const PARTS: [&str; 4] = ["0.weight", "0.bias", "2.weight", "2.bias"];

/// The teacher's trained head, by what it depends on within a cohort.
pub type HeadCache = HashMap<String, [Tensor; 4]>;

pub struct SskdState {
    cfg: Sskd,
    student: [Var; 4],
    teacher: Option<[Tensor; 4]>,
}

/// A head `d → d → d` in `varmap` under `prefix`, drawn from `r`.
fn head(
    varmap: &VarMap,
    prefix: &str,
    d: usize,
    r: &mut Rng,
    dev: &Device,
) -> anyhow::Result<[Var; 4]> {
    let (w1, b1) = linear_vars(varmap, &format!("{prefix}.0"), (d, d), r, dev)?;
    let (w2, b2) = linear_vars(varmap, &format!("{prefix}.2"), (d, d), r, dev)?;
    Ok([w1, b1, w2, b2])
}

fn tensors(vars: &[Var; 4]) -> [&Tensor; 4] {
    vars.each_ref().map(|v| v.as_tensor())
}

/// What a teacher's head depends on in a cohort (the seed, data and batch size are the
/// cohort's): the teacher, the head's settings and the optimiser's.
fn cache_key(teacher: usize, cfg: &Sskd, s: &Schedule) -> String {
    let h = (cfg.head_epochs, cfg.head_lr, &cfg.head_milestones);
    format!(
        "{teacher}|{h:?}|{} {} {}",
        s.momentum, s.weight_decay, s.gamma
    )
}

impl SskdState {
    /// Adds the student's head to `varmap` (before its optimiser is made); `dim` the
    /// student's feature width.
    pub fn new(
        cfg: Sskd,
        seed: u64,
        varmap: &VarMap,
        dim: usize,
        dev: &Device,
    ) -> anyhow::Result<Self> {
        let mut r = Rng::stream(seed, "sskd-init", &[]);
        let student = head(varmap, "sskd.proj_s", dim, &mut r, dev)?;
        Ok(Self {
            cfg,
            student,
            teacher: None,
        })
    }

    /// The state of `spec`'s run when its method has SSKD's terms (its head added to
    /// `varmap`), with its one teacher `ts`.
    pub fn for_run(
        spec: &crate::spec::RunSpec,
        ts: &[super::TeacherSource],
        varmap: &VarMap,
        dev: &Device,
    ) -> anyhow::Result<Option<Self>> {
        match (spec.method.sskd(), ts) {
            (Some(k), [_]) => {
                let dim = model::feature_dim(spec.model);
                Ok(Some(Self::new(k.clone(), spec.seed, varmap, dim, dev)?))
            }
            (Some(_), _) => bail!("SSKD needs exactly one teacher"),
            (None, _) => Ok(None),
        }
    }

    // Long: the head's training loop in one place, as SSKD's code runs it before the
    // student's: epochs, batches, forward pass, step, learning rate.
    /// Trains the teacher's head (unless a cohort member with the same teacher already
    /// did): `teacher` frozen, in evaluation mode, on rotated batches of `train`.
    #[allow(clippy::too_many_arguments)]
    pub fn train_head(
        &mut self,
        (net, teacher, dim): (&model::ResNet, usize, usize),
        train: &Dataset,
        t: &Transform,
        s: &Schedule,
        seed: u64,
        cache: &mut HeadCache,
        sink: &mut dyn super::RunSink,
        (k, dev): (Kernels, &Device),
    ) -> anyhow::Result<()> {
        let key = cache_key(teacher, &self.cfg, s);
        if let Some(h) = cache.get(&key) {
            self.teacher = Some(h.clone());
            sink.note("SSKD teacher head: the one trained for its cohort");
            return Ok(());
        }
        let seed = rng::derive(seed, "sskd-head", &[]);
        let varmap = VarMap::new();
        let vars = head(
            &varmap,
            "sskd.proj_t",
            dim,
            &mut Rng::stream(seed, "init", &[]),
            dev,
        )?;
        let mut opt = sgd::Sgd::new(model::trainable_vars(&varmap), s.momentum, s.weight_decay);
        let (h, w) = (train.height, train.width);
        let epochs = self.cfg.head_epochs;
        for epoch in 1..=epochs {
            let (mut loss_sum, mut right, mut rows) = (0.0, 0, 0);
            let passed = self
                .cfg
                .head_milestones
                .iter()
                .filter(|&&m| epoch > m)
                .count();
            let lr = self.cfg.head_lr * s.gamma.powi(passed as i32);
            let order = Rng::stream(seed, "order", &[epoch as u64]).permutation(train.len());
            let batches: Vec<&[usize]> = order.chunks(s.batch).filter(|b| b.len() >= 2).collect();
            let made =
                data::batches::train(train, &batches, t, (seed, epoch), s.batch, SSKD_VIEWS)?;
            for (bi, (xb, idx)) in made.zip(&batches).enumerate() {
                if let Some(signal) = sink.stop_requested() {
                    return Err(Interrupted { signal }.into());
                }
                let at = || format!("the teacher's SSKD head, epoch {epoch}, batch {}", bi + 1);
                let x =
                    Tensor::from_vec(xb.with_context(at)?, (idx.len() * SSKD_VIEWS, 3, h, w), dev)?;
                let (f, _) = net.features_t(&x, false)?;
                let p = sskd::project(&f.detach(), tensors(&vars), k)?;
                let loss = sskd::head_loss(&p, k)?;
                let lv = loss.to_scalar::<f32>()?;
                if !lv.is_finite() {
                    bail!("{}: the loss is {lv}", at());
                }
                let best = sskd::similarity(&p.detach(), k)?
                    .argmax(1)?
                    .to_vec1::<u32>()?;
                let own = sskd::own_columns(idx.len());
                right += best
                    .iter()
                    .zip(&own)
                    .filter(|(a, b)| **a as usize == **b)
                    .count();
                rows += own.len();
                loss_sum += lv as f64 * own.len() as f64;
                opt.step(&loss.backward()?, lr)?;
            }
            sink.note(&format!(
                "SSKD teacher head, epoch {epoch}/{epochs}: loss {:.4}, rotated copies matched \
                 to their image {:.2}%",
                loss_sum / rows.max(1) as f64,
                100.0 * right as f64 / rows.max(1) as f64
            ));
        }
        let trained = vars.each_ref().map(|v| v.as_tensor().detach());
        cache.insert(key, trained.clone());
        self.teacher = Some(trained);
        Ok(())
    }

    /// The batch's loss and the upright images' logits: the method's own terms on the
    /// upright rows, plus SSKD's two terms. `out`, `features` the student's on all rows
    /// (with gradient), `t_out` the teacher's features and logits.
    pub fn loss(
        &self,
        method: &Method,
        (features, out): (&Tensor, &Tensor),
        (t_features, t_logits): (&Tensor, &Tensor),
        mixes: &[LabelMix],
        labels: &[u16],
        k: Kernels,
    ) -> anyhow::Result<(Tensor, Tensor)> {
        let Some(teacher) = &self.teacher else {
            bail!("the teacher's SSKD head was not trained");
        };
        let p_s = sskd::project(features, tensors(&self.student), k)?;
        let p_t = sskd::project(&t_features.detach(), teacher.each_ref(), k)?;
        let (s, t) = ((out, &p_s), (t_logits, &p_t));
        Ok(sskd::loss(method, &self.cfg, s, t, (mixes, labels), k)?)
    }

    /// The teacher's head, for the checkpoint.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        self.teacher
            .iter()
            .flat_map(|h| {
                PARTS
                    .iter()
                    .zip(h)
                    .map(|(p, t)| (format!("sskd.proj_t.{p}"), t.clone()))
            })
            .collect()
    }

    /// Takes the teacher's head out of a checkpoint's tensors.
    pub fn restore(
        &mut self,
        tensors: &mut HashMap<String, Tensor>,
        dev: &Device,
    ) -> anyhow::Result<()> {
        let mut part = |p: &str| -> anyhow::Result<Tensor> {
            let name = format!("sskd.proj_t.{p}");
            let t = tensors
                .remove(&name)
                .with_context(|| format!("no `{name}` in the checkpoint"))?;
            Ok(t.to_device(dev)?)
        };
        let [w1, b1, w2, b2] = PARTS;
        self.teacher = Some([part(w1)?, part(b1)?, part(w2)?, part(b2)?]);
        Ok(())
    }
}
