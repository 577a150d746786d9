//! SGD with momentum and weight decay in PyTorch's semantics (candle's SGD has neither):
//! `g ← g + wd·w; b ← μ·b + g` (b = g on the first step, no dampening, no Nesterov);
//! `w ← w - lr·b`. `FusedSgd`: the same update for each member of a fused network.

use candle_core::{backprop::GradStore, Result, Tensor, Var};

pub struct Sgd {
    params: Vec<(String, Var)>,
    buffers: Vec<Option<Tensor>>,
    momentum: f64,
    weight_decay: f64,
}

impl Sgd {
    /// `params` in a fixed (sorted) order.
    pub fn new(params: Vec<(String, Var)>, momentum: f64, weight_decay: f64) -> Self {
        let buffers = vec![None; params.len()];
        Self {
            params,
            buffers,
            momentum,
            weight_decay,
        }
    }

    /// The momentum buffers by parameter name (none before the first step).
    pub fn buffers(&self) -> Vec<(String, Tensor)> {
        self.params
            .iter()
            .zip(&self.buffers)
            .filter_map(|((n, _), b)| Some((n.clone(), b.clone()?)))
            .collect()
    }

    /// Sets the momentum buffers from a checkpoint: every parameter must have one of its
    /// shape, or `take` must give none at all (a checkpoint from before the first step).
    pub fn restore(&mut self, mut take: impl FnMut(&str) -> Option<Tensor>) -> anyhow::Result<()> {
        let found: Vec<Option<Tensor>> = self.params.iter().map(|(n, _)| take(n)).collect();
        if found.iter().all(Option::is_none) {
            return Ok(());
        }
        for ((name, var), b) in self.params.iter().zip(&found) {
            match b {
                Some(b) if b.shape() == var.shape() => {}
                Some(b) => anyhow::bail!(
                    "momentum of `{name}` has shape {:?}, the parameter {:?}",
                    b.dims(),
                    var.dims()
                ),
                None => anyhow::bail!("no momentum for `{name}`"),
            }
        }
        self.buffers = found;
        Ok(())
    }

    /// One update. Parameters without a gradient are left alone, as PyTorch does.
    fn hyper(&self) -> Hyper {
        Hyper {
            momentum: self.momentum,
            weight_decay: self.weight_decay,
        }
    }

    pub fn step(&mut self, grads: &GradStore, lr: f64) -> Result<()> {
        let h = self.hyper();
        for ((_, var), buf) in self.params.iter().zip(self.buffers.iter_mut()) {
            let Some(g) = grads.get(var) else { continue };
            let (w, b) = update(var.as_tensor(), g, buf.take(), h, lr)?;
            var.set(&w)?;
            *buf = Some(b);
        }
        Ok(())
    }
}

/// One run's momentum and weight decay.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hyper {
    pub momentum: f64,
    pub weight_decay: f64,
}

/// The update of one parameter `w` with gradient `g` and momentum buffer `buf`: the new
/// parameter and buffer. Everything detached: the update extends no autograd graph. The
/// one arithmetic of every optimiser here, so that a fused member's slice is updated as
/// the member alone.
fn update(
    w: &Tensor,
    g: &Tensor,
    buf: Option<Tensor>,
    h: Hyper,
    lr: f64,
) -> Result<(Tensor, Tensor)> {
    let w = w.detach();
    let mut d = g.detach();
    if h.weight_decay != 0.0 {
        d = (d + (&w * h.weight_decay)?)?;
    }
    let b = match buf {
        Some(b) if h.momentum != 0.0 => ((b * h.momentum)? + d)?,
        _ => d,
    };
    Ok(((w - (&b * lr)?)?, b))
}

/// SGD over a fused network's parameters (`model::fused`), each member with its own
/// momentum, weight decay and learning rate: every member's slice of a parameter (its rows
/// along the first dimension; a head is one member's alone) is updated by `update`, as
/// that member's `Sgd` would, and keeps its own momentum buffer.
pub struct FusedSgd {
    /// Each parameter, and the member it belongs to wholly (a head), if one.
    params: Vec<(String, Var, Option<usize>)>,
    /// Per parameter, per member: the momentum buffer of the member's slice.
    buffers: Vec<Vec<Option<Tensor>>>,
    members: Vec<Hyper>,
}

impl FusedSgd {
    pub fn new(params: Vec<(String, Var)>, members: Vec<Hyper>) -> Self {
        let params: Vec<_> = params
            .into_iter()
            .map(|(n, v)| {
                let owner = crate::model::fused::member_name(&n).0;
                (n, v, owner)
            })
            .collect();
        let buffers = vec![vec![None; members.len()]; params.len()];
        Self {
            params,
            buffers,
            members,
        }
    }

    /// Member `i`'s momentum buffers by its own parameter names (`model::fused`), as its
    /// `Sgd` alone holds them: none before its first step.
    pub fn member_buffers(&self, i: usize) -> Vec<(String, Tensor)> {
        self.params
            .iter()
            .zip(&self.buffers)
            .filter(|((_, _, owner), _)| owner.is_none_or(|o| o == i))
            .filter_map(|((n, _, _), b)| {
                let own = crate::model::fused::member_name(n).1;
                Some((own, b[i].clone()?))
            })
            .collect()
    }

    /// Sets member `i`'s momentum buffers from its own optimiser's (`Sgd::buffers`, by its
    /// own parameter names).
    pub fn set_member_buffers(&mut self, i: usize, buffers: Vec<(String, Tensor)>) {
        let mut by_name: std::collections::HashMap<String, Tensor> = buffers.into_iter().collect();
        for ((n, _, owner), b) in self.params.iter().zip(self.buffers.iter_mut()) {
            if owner.is_none_or(|o| o == i) {
                b[i] = by_name.remove(&crate::model::fused::member_name(n).1);
            }
        }
    }

    /// One step with member `i`'s learning rate `lrs[i]`.
    pub fn step(&mut self, grads: &GradStore, lrs: &[f64]) -> Result<()> {
        let k = self.members.len();
        for ((_, var, owner), bufs) in self.params.iter().zip(self.buffers.iter_mut()) {
            let Some(g) = grads.get(var) else { continue };
            if let Some(i) = *owner {
                let (w, b) = update(var.as_tensor(), g, bufs[i].take(), self.members[i], lrs[i])?;
                var.set(&w)?;
                bufs[i] = Some(b);
                continue;
            }
            let rows = var.dim(0)? / k;
            let mut parts = Vec::with_capacity(k);
            for (i, buf) in bufs.iter_mut().enumerate() {
                let slice = |t: &Tensor| t.narrow(0, i * rows, rows)?.contiguous();
                let (w, b) = update(
                    &slice(var.as_tensor())?,
                    &slice(g)?,
                    buf.take(),
                    self.members[i],
                    lrs[i],
                )?;
                parts.push(w);
                *buf = Some(b);
            }
            var.set(&Tensor::cat(&parts, 0)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn two_steps_match_hand_arithmetic() {
        // loss = Σ 0.5·w², so g = w. w0 = (1, -2), lr 0.1, μ 0.9, wd 0.01.
        let w = Var::new(&[1f32, -2.0], &Device::Cpu).unwrap();
        let mut opt = Sgd::new(vec![("w".into(), w.clone())], 0.9, 0.01);
        let step = |opt: &mut Sgd| {
            let loss = (w.as_tensor().sqr().unwrap().sum_all().unwrap() * 0.5).unwrap();
            opt.step(&loss.backward().unwrap(), 0.1).unwrap();
        };
        step(&mut opt);
        // d = w + 0.01w = 1.01w; b = d; w1 = w - 0.1·1.01w = 0.899w.
        let w1: Vec<f32> = w.as_tensor().to_vec1().unwrap();
        assert!(
            (w1[0] - 0.899).abs() < 1e-6 && (w1[1] + 1.798).abs() < 1e-6,
            "{w1:?}"
        );
        step(&mut opt);
        // d = 1.01·w1; b = 0.9·1.01·w0 + 1.01·w1; w2 = w1 - 0.1·b.
        for (i, w0) in [1f64, -2.0].into_iter().enumerate() {
            let w1 = 0.899 * w0;
            let b = 0.9 * 1.01 * w0 + 1.01 * w1;
            let w2 = w1 - 0.1 * b;
            let got = w.as_tensor().to_vec1::<f32>().unwrap()[i] as f64;
            assert!((got - w2).abs() < 1e-6, "{got} vs {w2}");
        }
    }
}

#[cfg(test)]
mod fused_tests {
    //! Three ResNet-8 students with their own learning-rate schedules and weight decays,
    //! trained alone and as one fused network with `FusedSgd`: after three steps each
    //! member's parameters are the student's, as numbers (see `model`'s fused test on the
    //! sign of a zero gradient).
    use super::*;
    use crate::model::{self, fused, CifarResNet, Kernels};
    use crate::spec::{Method, ModelName};
    use candle_core::{DType, Device};
    use candle_nn::{VarBuilder, VarMap};

    #[test]
    fn each_member_of_a_fused_network_steps_as_it_does_alone() {
        let (dev, k, classes) = (Device::Cpu, Kernels::lecal(), 10);
        let hyper = |momentum, weight_decay| Hyper {
            momentum,
            weight_decay,
        };
        let members = [hyper(0.9, 5e-4), hyper(0.9, 1e-4), hyper(0.0, 0.0)];
        // Member 1 drops its learning rate after the first step (a milestone).
        let lrs = |step: usize| [0.1, if step == 0 { 0.05 } else { 0.005 }, 0.2];
        let mut alone: Vec<_> = (0..3)
            .map(|i| {
                let (net, vars) =
                    model::build_trainable(ModelName::Resnet8, classes, i as u64, k, &dev).unwrap();
                let h = members[i];
                let opt = Sgd::new(model::trainable_vars(&vars), h.momentum, h.weight_decay);
                (net, vars, opt)
            })
            .collect();
        let fused_vars = VarMap::new();
        let vb = VarBuilder::from_varmap(&fused_vars, DType::F32, &dev);
        let net = CifarResNet::fused(ModelName::Resnet8, classes, 3, k, vb).unwrap();
        fused::fuse(&fused_vars, &alone.iter().map(|a| &a.1).collect::<Vec<_>>()).unwrap();
        let mut opt = FusedSgd::new(model::trainable_vars(&fused_vars), members.to_vec());
        let mut rng = crate::rng::Rng::new(3);
        let x: Vec<f32> = (0..16 * 3 * 8 * 8).map(|_| rng.normal() as f32).collect();
        let x = Tensor::from_vec(x, (16, 3, 8, 8), &dev).unwrap();
        let mixes: Vec<_> = (0..16u16).map(|y| vec![(y % 10, 1.0)]).collect();
        let loss = |logits: &Tensor| {
            crate::method::loss(&Method::Hard, logits, &mixes, &[], &dev).unwrap()
        };
        for step in 0..3 {
            let lr = lrs(step);
            for (i, (net, _, opt)) in alone.iter_mut().enumerate() {
                let l = loss(&net.forward_t(&x, true).unwrap());
                opt.step(&l.backward().unwrap(), lr[i]).unwrap();
            }
            let logits = net.forward_t(&x, true).unwrap();
            let mut total = loss(&logits.narrow(1, 0, classes).unwrap());
            for i in 1..3 {
                let mine = logits.narrow(1, i * classes, classes).unwrap();
                total = (total + loss(&mine)).unwrap();
            }
            opt.step(&total.backward().unwrap(), &lr).unwrap();
        }
        for (i, (_, vars, _)) in alone.iter().enumerate() {
            let mine = fused::member_tensors(&fused_vars, i, 3).unwrap();
            for (name, v) in model::sorted_vars(vars) {
                let a: Vec<f32> = v.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
                let b: Vec<f32> = mine[&name].flatten_all().unwrap().to_vec1().unwrap();
                assert!(a == b, "member {i} {name} differs after three steps");
            }
        }
    }
}
