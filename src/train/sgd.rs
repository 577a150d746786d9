//! SGD with momentum and weight decay in PyTorch's semantics (candle's SGD has neither):
//! `g ← g + wd·w; b ← μ·b + g` (b = g on the first step, no dampening, no Nesterov);
//! `w ← w - lr·b`.

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
    pub fn step(&mut self, grads: &GradStore, lr: f64) -> Result<()> {
        for ((_, var), buf) in self.params.iter().zip(self.buffers.iter_mut()) {
            let Some(g) = grads.get(var) else { continue };
            // Detach everything: the update must not extend any autograd graph.
            let w = var.as_tensor().detach();
            let mut d = g.detach();
            if self.weight_decay != 0.0 {
                d = (d + (&w * self.weight_decay)?)?;
            }
            let b = match buf.take() {
                Some(b) if self.momentum != 0.0 => ((b * self.momentum)? + d)?,
                _ => d,
            };
            var.set(&(w - (&b * lr)?)?)?;
            *buf = Some(b);
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
