//! The `fused` part: `members` students of one architecture trained on the same batch,
//! one after another and as one fused network (`CifarResNet::fused`), timed step for
//! step. Before timing, two steps of each from the same weights are compared: the fused
//! network's members must come out with the weights of the students alone.

use super::{random_batch, time, BATCH, CLASSES};
use crate::method;
use crate::model::{self, fused, CifarResNet, Kernels, ResNet};
use crate::spec::{Method, ModelName};
use crate::train::sgd::Sgd;
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};

/// Students one after another, and the same students fused.
struct Students {
    alone: Vec<(ResNet, VarMap, Sgd)>,
    fused: (CifarResNet, VarMap, Sgd),
    x: Tensor,
    mixes: Vec<crate::data::mix::LabelMix>,
    device: Device,
}

fn sgd(vars: &VarMap) -> Sgd {
    Sgd::new(model::trainable_vars(vars), 0.9, 5e-4)
}

impl Students {
    fn new(m: ModelName, members: usize, k: Kernels, device: &Device) -> anyhow::Result<Self> {
        let mut alone = Vec::new();
        for seed in 0..members as u64 {
            let (net, vars) = model::build_trainable(m, CLASSES, seed, k, device)?;
            let opt = sgd(&vars);
            alone.push((net, vars, opt));
        }
        let vars = VarMap::new();
        let vb = VarBuilder::from_varmap(&vars, DType::F32, device);
        let net = CifarResNet::fused(m, CLASSES, members, k, vb)?;
        fused::fuse(&vars, &alone.iter().map(|a| &a.1).collect::<Vec<_>>())?;
        let opt = sgd(&vars);
        let (x, labels) = random_batch(device, 0)?;
        Ok(Self {
            alone,
            fused: (net, vars, opt),
            x,
            mixes: labels.iter().map(|&y| vec![(y, 1.0)]).collect(),
            device: device.clone(),
        })
    }

    fn step_alone(&mut self) -> anyhow::Result<()> {
        for (net, _, opt) in &mut self.alone {
            let logits = net.forward_t(&self.x, true)?;
            let loss = method::loss(&Method::Hard, &logits, &self.mixes, &[], &self.device)?;
            opt.step(&loss.backward()?, 0.1)?;
            loss.to_scalar::<f32>()?;
        }
        Ok(())
    }

    /// One step of the fused network: each member's loss on its slice of the logits,
    /// summed, one backward pass, one SGD update of every parameter.
    fn step_fused(&mut self) -> anyhow::Result<()> {
        let (net, _, opt) = &mut self.fused;
        let logits = net.forward_t(&self.x, true)?;
        let mut total: Option<Tensor> = None;
        for i in 0..self.alone.len() {
            let mine = logits.narrow(1, i * CLASSES, CLASSES)?;
            let loss = method::loss(&Method::Hard, &mine, &self.mixes, &[], &self.device)?;
            total = Some(match total {
                Some(t) => (t + loss)?,
                None => loss,
            });
        }
        let total = total.expect("at least one member");
        opt.step(&total.backward()?, 0.1)?;
        total.to_scalar::<f32>()?;
        Ok(())
    }

    /// Whether every member's parameters, out of the fused network, equal (as numbers)
    /// those of the student alone.
    fn identical(&self) -> anyhow::Result<bool> {
        let members = self.alone.len();
        for (i, (_, vars, _)) in self.alone.iter().enumerate() {
            let mine = fused::member_tensors(&self.fused.1, i, members)?;
            for (name, v) in model::sorted_vars(vars) {
                let a: Vec<f32> = v.as_tensor().flatten_all()?.to_vec1()?;
                let b: Vec<f32> = mine[&name].flatten_all()?.to_vec1()?;
                if a != b {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }
}

/// What was timed, how, and the measurement (images per second, steps, seconds).
type Timed = (String, String, (f64, usize, f64));

/// For each model: (what, implementation, measurement) of the students one after
/// another and fused, after checking two steps of each for identical results.
pub fn measure(
    models: &[ModelName],
    members: usize,
    kernels: Kernels,
    device: &Device,
    min_seconds: f64,
) -> anyhow::Result<Vec<Timed>> {
    let mut out = Vec::new();
    for &m in models {
        let mut s = Students::new(m, members, kernels, device)?;
        for _ in 0..2 {
            s.step_alone()?;
            s.step_fused()?;
        }
        let same = s.identical()?;
        eprintln!(
            "  fused: {members} × {} on one batch: results identical: {}",
            m.as_str(),
            if same { "yes" } else { "NO" }
        );
        if !same && device.is_cpu() {
            anyhow::bail!("a fused network trained other numbers than its students alone");
        }
        let images = BATCH * members;
        let what = format!("fused {members}x {}", m.as_str());
        let r = time(min_seconds, images, || s.step_alone())?;
        out.push((what.clone(), "one after another".to_string(), r));
        let r = time(min_seconds, images, || s.step_fused())?;
        out.push((what, "fused".to_string(), r));
    }
    Ok(out)
}
