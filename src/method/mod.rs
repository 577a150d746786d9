//! Label-enhancement methods: the targets a student is trained towards and the loss
//! (`methods.md`). A method is a composition:
//!
//! `loss = hard_weight·CE(q, σ(z_s)) + teacher_weight·teacher_term`
//!
//! where `q` is the (possibly mixed, possibly smoothed) label distribution and the teacher
//! term is either `T²·CE(p̄, σ(z_s/T))` with `p̄` the mean of the teachers' softened
//! softmax (`mean-softmax`: SL, EN-SL) or the mean (or sum) over teachers of
//! `T²·KL(σ(z_t/T) ‖ σ(z_s/T))` (`per-teacher-kl`: KD, KD-SL), the KL averaged over the
//! batch (`batch-mean`) or over all B·K elements (`element-mean`, PyTorch's
//! `reduction='mean'`, the paper's KD, K times weaker).
//!
//! With `sample_weight = "wsl"` each teacher's KL is weighted per sample by
//! `w = 1 - exp(-CE_s/CE_t)` (WSL; see `SampleWeight::Wsl`) before its reduction.
//!
//! `hard` (Vanilla) and `smoothed` (label smoothing, `q = ε/K + (1-ε)·onehot(y)`) have
//! only the first term, with weight 1.

pub mod crd;
pub mod sskd;

use crate::data::mix::LabelMix;
use crate::spec::Method;
use crate::spec::{Combine, KlReduction, SampleWeight, TeacherReduction};
use candle_core::{Device, Result, Tensor, D};

/// Row-major `B×K` targets: each sample's label mixture, each label smoothed by ε.
pub fn mixed_targets(mixes: &[LabelMix], classes: usize, epsilon: f64) -> Vec<f32> {
    let off = epsilon / classes as f64;
    let mut t = vec![0f32; mixes.len() * classes];
    for (i, m) in mixes.iter().enumerate() {
        let row = &mut t[i * classes..(i + 1) * classes];
        let total: f64 = m.iter().map(|(_, w)| w).sum();
        for v in row.iter_mut() {
            *v = (off * total) as f32;
        }
        for &(l, w) in m {
            row[l as usize] += ((1.0 - epsilon) * w) as f32;
        }
    }
    t
}

/// Hard (or smoothed) targets of unmixed labels.
pub fn label_targets(labels: &[u16], classes: usize, epsilon: f64) -> Vec<f32> {
    let mixes: Vec<LabelMix> = labels.iter().map(|&l| vec![(l, 1.0)]).collect();
    mixed_targets(&mixes, classes, epsilon)
}

/// `CE(q, σ(z)) = -Σ_k q_k log σ(z)_k`, averaged over the batch.
pub fn soft_cross_entropy(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let logp = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    (targets * logp)?.sum(D::Minus1)?.mean_all()?.neg()
}

/// `KL(softmax(t) ‖ softmax(s))` of each sample, a `B` vector (reduce it yourself).
fn kl_rows(teacher: &Tensor, student_logp: &Tensor) -> Result<Tensor> {
    let logq = candle_nn::ops::log_softmax(teacher, D::Minus1)?;
    let q = logq.exp()?;
    (q * (logq - student_logp)?)?.sum(D::Minus1)
}

/// Each sample's `CE(q, σ(z)) = -Σ_k q_k log σ(z)_k`, a `B` vector, without gradient.
fn cross_entropy_rows(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let logp = candle_nn::ops::log_softmax(&logits.detach(), D::Minus1)?;
    (targets * logp)?.sum(D::Minus1)?.neg()
}

/// WSL's weight of each sample (Zhou et al. 2021, eq. 6, as their CIFAR code computes
/// it): `1 - exp(-max(0, CE_s / (CE_t + 1e-7)))`, both cross-entropies against the
/// (mixed) label at temperature 1 and without gradient, so the weight is a constant of
/// the step.
fn wsl_weights(student: &Tensor, teacher: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let ce_s = cross_entropy_rows(student, targets)?;
    let ce_t = cross_entropy_rows(teacher, targets)?;
    let ratio = (ce_s / (ce_t + 1e-7)?)?.relu()?;
    (1.0 - ratio.neg()?.exp()?)?.detach().contiguous()
}

/// The training loss of a batch. `mixes` holds each sample's labels and weights (one
/// label of weight 1 without batch augmentation); `teachers` the teachers' logits on the
/// same (mixed) images.
pub fn loss(
    method: &Method,
    logits: &Tensor,
    mixes: &[LabelMix],
    teachers: &[Tensor],
    device: &Device,
) -> Result<Tensor> {
    let (b, classes) = logits.dims2()?;
    let label_term = |epsilon: f64| -> Result<Tensor> {
        let t = mixed_targets(mixes, classes, epsilon);
        soft_cross_entropy(logits, &Tensor::from_vec(t, (b, classes), device)?)
    };
    match *method {
        Method::Hard => label_term(0.0),
        Method::Smoothed { epsilon } => label_term(epsilon),
        Method::Teachers {
            combine,
            temperature: t,
            hard_weight,
            teacher_weight,
            kl_reduction,
            teacher_reduction,
            epsilon,
            sample_weight,
            // CRD's term needs the features and a memory: the trainer adds it
            // (`train::crd`).
            crd: _,
            // SSKD's terms on the rotated copies: the trainer adds them (`train::sskd`);
            // this composes its terms on the upright images.
            sskd: _,
        } => {
            if teachers.is_empty() {
                candle_core::bail!("label = \"teachers\" needs at least one teacher");
            }
            let student_logp = candle_nn::ops::log_softmax(&(logits / t)?, D::Minus1)?;
            let term = match combine {
                Combine::MeanSoftmax => {
                    let mut sum: Option<Tensor> = None;
                    for z in teachers {
                        let p = candle_nn::ops::softmax(&(z / t)?, D::Minus1)?;
                        sum = Some(match sum {
                            Some(s) => (s + p)?,
                            None => p,
                        });
                    }
                    let mean = (sum.expect("one teacher at least") / teachers.len() as f64)?;
                    ((mean * &student_logp)?.sum(D::Minus1)?.mean_all()?.neg()? * (t * t))?
                }
                Combine::PerTeacherKl => {
                    let hard = match sample_weight {
                        SampleWeight::None => None,
                        SampleWeight::Wsl => {
                            let q = mixed_targets(mixes, classes, 0.0);
                            Some(Tensor::from_vec(q, (b, classes), device)?)
                        }
                    };
                    let kl = PerTeacherKl {
                        temperature: t,
                        kl_reduction,
                        teacher_reduction,
                        wsl_targets: hard.as_ref(),
                    };
                    kl.term(logits, &student_logp, teachers)?
                }
            };
            let mut out = (term * teacher_weight)?;
            if hard_weight > 0.0 {
                out = (out + (label_term(epsilon)? * hard_weight)?)?;
            }
            Ok(out)
        }
    }
}

/// The `per-teacher-kl` teacher term: each teacher's `T²·KL(σ(z_t/T) ‖ σ(z_s/T))`
/// (weighted per sample by WSL when `wsl_targets` holds the labels), reduced over the
/// batch, then over the teachers.
struct PerTeacherKl<'a> {
    temperature: f64,
    kl_reduction: KlReduction,
    teacher_reduction: TeacherReduction,
    wsl_targets: Option<&'a Tensor>,
}

impl PerTeacherKl<'_> {
    fn term(&self, logits: &Tensor, student_logp: &Tensor, teachers: &[Tensor]) -> Result<Tensor> {
        let (b, classes) = logits.dims2()?;
        let t = self.temperature;
        let denom = match self.kl_reduction {
            KlReduction::BatchMean => b as f64,
            KlReduction::ElementMean => (b * classes) as f64,
        };
        let mut total: Option<Tensor> = None;
        for z in teachers {
            let mut rows = kl_rows(&(z / t)?, student_logp)?;
            if let Some(q) = self.wsl_targets {
                rows = (rows * wsl_weights(logits, z, q)?)?;
            }
            let kl = ((rows.sum_all()? / denom)? * (t * t))?;
            total = Some(match total {
                Some(s) => (s + kl)?,
                None => kl,
            });
        }
        let total = total.expect("one teacher at least");
        match self.teacher_reduction {
            TeacherReduction::Mean => total / teachers.len() as f64,
            TeacherReduction::Sum => Ok(total),
        }
    }
}

#[cfg(test)]
mod tests;
