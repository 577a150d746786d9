//! One member's training step on the cohort's shared batch, when it trains alone (not in
//! a fused group): its forward pass, its loss against its teachers' outputs, the
//! backward pass and the update.

use super::super::teachers::TeacherOutput;
use super::Student;
use crate::data::mix;
use crate::model;
use anyhow::bail;
use candle_core::Tensor;

/// The outputs of the cohort's distinct teachers on a batch (`Teachers::outputs`).
pub(super) type TeacherOutputs = [Option<TeacherOutput>];

/// A member's loss and logits of one step, or its own error.
pub(super) type Stepped = anyhow::Result<(f64, Vec<f32>)>;

/// A training batch as every member sees it.
pub(super) struct Batch<'a> {
    pub x: &'a Tensor,
    pub mixes: &'a [mix::LabelMix],
    /// The images' indices in the training set, and its labels.
    pub samples: &'a [usize],
    pub labels: &'a [u16],
    /// (epoch, batch index).
    pub at: (usize, usize),
}

/// The features and logits of `s`'s teachers on the batch, in its own order.
pub(super) fn teachers_of(
    s: &Student,
    outputs: &TeacherOutputs,
) -> anyhow::Result<Vec<(Tensor, Tensor)>> {
    s.teachers
        .iter()
        .map(|&t| match &outputs[t] {
            Some(Ok(o)) => Ok(o.clone()),
            Some(Err(why)) => Err(anyhow::anyhow!("{why}")),
            None => Err(anyhow::anyhow!("teacher {t} was not run")),
        })
        .collect()
}

/// A step's loss as a number, or the error of a loss that is not finite.
pub(super) fn finite(loss: &Tensor) -> anyhow::Result<f64> {
    let lv = loss.to_scalar::<f32>()? as f64;
    if !lv.is_finite() {
        bail!("the loss is {lv}");
    }
    Ok(lv)
}

/// One member's step on the shared batch: its forward pass, its loss against its
/// teachers' outputs, the backward pass and the update. Its loss and logits.
pub(super) fn step(
    s: &mut Student,
    b: &Batch,
    outputs: &TeacherOutputs,
    (kernels, dev): (model::Kernels, &candle_core::Device),
) -> Stepped {
    let teacher = teachers_of(s, outputs)?;
    let teacher_logits: Vec<Tensor> = teacher.iter().map(|o| o.1.clone()).collect();
    let (features, out) = s.net.features_t(b.x, true)?;
    let (mut loss, out) = match (&s.sskd, teacher.first()) {
        (Some(k), Some((f_t, l_t))) => {
            let labels: Vec<u16> = b.samples.iter().map(|&i| b.labels[i]).collect();
            k.loss(
                &s.spec.method,
                (&features, &out),
                (f_t, l_t),
                b.mixes,
                &labels,
                kernels,
            )?
        }
        _ => {
            let m = &s.spec.method;
            (
                crate::method::loss(m, &out, b.mixes, &teacher_logits, dev)?,
                out,
            )
        }
    };
    if let (Some(c), Some((f_t, _))) = (&mut s.crd, teacher.first()) {
        loss = (loss + c.loss(&features, f_t, b.samples, b.labels, b.at, kernels)?)?;
    }
    let lv = finite(&loss)?;
    let grads = loss.backward()?;
    s.opt.step(&grads, s.spec.schedule.lr_at(b.at.0))?;
    if let Some(c) = &mut s.crd {
        c.update_memory()?;
    }
    Ok((lv, out.detach().flatten_all()?.to_vec1::<f32>()?))
}
