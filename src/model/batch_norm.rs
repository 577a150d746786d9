//! BatchNorm over (N, H, W) per channel with PyTorch's semantics: biased batch variance for
//! normalising, unbiased for the running variance, momentum 0.1, eps 1e-5.
//!
//! Unlike candle-nn's, its evaluation path detaches the running statistics, so a model
//! built from plain tensors records no autograd graph at all.

use super::kernels::batch_norm::{fused, Normalise, Stats};
use candle_core::{Result, Tensor, Var, D};
use candle_nn::{Init, VarBuilder};

#[derive(Debug, Clone)]
pub struct BatchNorm2d {
    weight: Tensor,
    bias: Tensor,
    running_mean: Var,
    running_var: Var,
    eps: f64,
    momentum: f64,
}

impl BatchNorm2d {
    pub fn new(channels: usize, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get_with_hints(channels, "weight", Init::Const(1.0))?;
        let bias = vb.get_with_hints(channels, "bias", Init::Const(0.0))?;
        let running_mean = vb.get_with_hints(channels, "running_mean", Init::Const(0.0))?;
        let running_var = vb.get_with_hints(channels, "running_var", Init::Const(1.0))?;
        Ok(Self {
            weight,
            bias,
            // Shares storage with the VarMap's variable when built from one.
            running_mean: Var::from_tensor(&running_mean)?,
            running_var: Var::from_tensor(&running_var)?,
            eps: 1e-5,
            momentum: 0.1,
        })
    }

    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.forward_act(x, None, false, train)
    }

    /// `bn(x) [+ residual]`, then `relu` if asked: the tail of a convolution or of a
    /// residual block. On the CPU it is one custom op, forward and backward.
    pub fn forward_act(
        &self,
        x: &Tensor,
        residual: Option<&Tensor>,
        relu: bool,
        train: bool,
    ) -> Result<Tensor> {
        if fused(x) {
            return self.forward_fused(x, residual, relu, train);
        }
        let mut y = self.forward_composed(x, train)?;
        if let Some(r) = residual {
            y = (y + r)?;
        }
        if relu {
            y = y.relu()?;
        }
        Ok(y)
    }

    /// Composed of candle's operations: any device.
    fn forward_composed(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let c = x.dim(1)?;
        let shape = (1, c, 1, 1);
        if !train {
            let mean = self.running_mean.as_tensor().detach().reshape(shape)?;
            let var = self.running_var.as_tensor().detach().reshape(shape)?;
            let scale = (self.weight.reshape(shape)? / (var + self.eps)?.sqrt()?)?;
            let shift = (self.bias.reshape(shape)? - mean.mul(&scale)?)?;
            return x.broadcast_mul(&scale)?.broadcast_add(&shift);
        }
        // (N, C, H, W) -> (C, N·H·W) so that the statistics are last-dimension reductions.
        let (n, _, h, w) = x.dims4()?;
        let xt = x.transpose(0, 1)?.flatten_from(1)?.contiguous()?;
        let mean = xt.mean_keepdim(D::Minus1)?;
        let centred = xt.broadcast_sub(&mean)?;
        let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
        self.update_running(&mean, &var, (n * h * w) as f64)?;
        let normed = centred.broadcast_div(&(var + self.eps)?.sqrt()?)?;
        let y = normed
            .broadcast_mul(&self.weight.reshape((c, 1))?)?
            .broadcast_add(&self.bias.reshape((c, 1))?)?;
        y.reshape((c, n, h, w))?.transpose(0, 1)?.contiguous()
    }

    /// `running ← (1 - momentum)·running + momentum·batch`, with the unbiased variance.
    fn update_running(&self, mean: &Tensor, var: &Tensor, count: f64) -> Result<()> {
        let m = self.momentum;
        let mean_d = mean.detach().flatten_all()?;
        let var_d = var.detach().flatten_all()?;
        let unbiased = (var_d * (count / (count - 1.0).max(1.0)))?;
        let rm = ((self.running_mean.as_tensor() * (1.0 - m))? + (mean_d * m)?)?;
        let rv = ((self.running_var.as_tensor() * (1.0 - m))? + (unbiased * m)?)?;
        self.running_mean.set(&rm)?;
        self.running_var.set(&rv)
    }

    /// The CPU path: the statistics, then normalisation, residual and ReLU as one custom op
    /// with its own backward: two passes over the activations forward and two backward
    /// (the composed path makes about ten each way, plus the add's and ReLU's).
    fn forward_fused(
        &self,
        x: &Tensor,
        residual: Option<&Tensor>,
        relu: bool,
        train: bool,
    ) -> Result<Tensor> {
        let x = x.contiguous()?;
        let (n, _, h, w) = x.dims4()?;
        let stats = if train {
            let stats = x.apply_op1_no_bwd(&Stats)?;
            self.update_running(&stats.get(0)?, &stats.get(1)?, (n * h * w) as f64)?;
            stats.flatten_all()?
        } else {
            Tensor::cat(
                &[
                    self.running_mean.as_tensor().detach(),
                    self.running_var.as_tensor().detach(),
                ],
                0,
            )?
        };
        let op = Normalise {
            eps: self.eps,
            relu,
        };
        let (weight, bias) = if train {
            (self.weight.clone(), self.bias.clone())
        } else {
            (self.weight.detach(), self.bias.detach())
        };
        let params = Tensor::cat(&[&weight, &bias, &stats], 0)?;
        match (residual.map(Tensor::contiguous).transpose()?, train) {
            (None, true) => x.apply_op2(&params, op),
            (None, false) => x.apply_op2_no_bwd(&params, &op),
            (Some(r), true) => x.apply_op3(&params, &r, op),
            (Some(r), false) => x.apply_op3_no_bwd(&params, &r, &op),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};
    use candle_nn::VarMap;

    #[test]
    fn train_normalises_and_updates_running_stats_like_pytorch() {
        let vm = VarMap::new();
        let bn =
            BatchNorm2d::new(1, VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu)).unwrap();
        // One channel, values 1, 2, 3, 6: mean 3, biased var 3.5, unbiased var 14/3.
        let x = Tensor::new(&[1f32, 2., 3., 6.], &Device::Cpu)
            .unwrap()
            .reshape((2, 1, 1, 2))
            .unwrap();
        let y = bn
            .forward_t(&x, true)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let s = (3.5f32 + 1e-5).sqrt();
        let expect = [-2.0 / s, -1.0 / s, 0.0, 3.0 / s];
        for (a, b) in y.iter().zip(expect) {
            assert!((a - b).abs() < 1e-5, "{y:?}");
        }
        let rm = bn.running_mean.as_tensor().to_vec1::<f32>().unwrap()[0];
        let rv = bn.running_var.as_tensor().to_vec1::<f32>().unwrap()[0];
        assert!((rm - 0.3).abs() < 1e-6, "{rm}");
        assert!((rv - (0.9 + 0.1 * 14.0 / 3.0)).abs() < 1e-6, "{rv}");
        // Eval uses the running statistics.
        let e = bn
            .forward_t(&x, false)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert!((e[0] - (1.0 - 0.3) / (rv + 1e-5).sqrt()).abs() < 1e-5);
    }

    // Long: one table of cases (fused or composed, residual, ReLU, train or eval) over
    // shared inputs, every output and gradient compared.
    /// The fused CPU kernels against the composed operations, with and without the
    /// residual and the ReLU: output, the gradients of x, γ, β and the residual, the
    /// running statistics, and evaluation mode.
    #[test]
    fn fused_kernels_match_the_composed_operations() {
        use crate::rng::Rng;
        let dev = Device::Cpu;
        let mut rng = Rng::new(3);
        let mut random = |shape: &[usize], offset: f64| {
            let n: usize = shape.iter().product();
            let v: Vec<f32> = (0..n)
                .map(|_| (rng.normal() * 2.0 + offset) as f32)
                .collect();
            Tensor::from_vec(v, shape, &dev).unwrap()
        };
        let x = random(&[5, 3, 4, 6], 1.5);
        let r = random(&[5, 3, 4, 6], 0.0);
        let m = random(&[5, 3, 4, 6], 0.0);
        let (g, b) = (random(&[3], 1.0), random(&[3], 0.0));
        let run = |fused: bool, residual: bool, relu: bool| {
            let vm = VarMap::new();
            let bn = BatchNorm2d::new(3, VarBuilder::from_varmap(&vm, DType::F32, &dev)).unwrap();
            let (wv, bv) = (Var::from_tensor(&g).unwrap(), Var::from_tensor(&b).unwrap());
            let bn = BatchNorm2d {
                weight: wv.as_tensor().clone(),
                bias: bv.as_tensor().clone(),
                ..bn
            };
            let (xv, rv) = (Var::from_tensor(&x).unwrap(), Var::from_tensor(&r).unwrap());
            let f = |x: &Tensor, r: &Tensor, t| {
                let r = residual.then_some(r);
                if fused {
                    bn.forward_fused(x, r, relu, t)
                } else {
                    let mut y = bn.forward_composed(x, t).unwrap();
                    if let Some(r) = r {
                        y = (y + r).unwrap();
                    }
                    if relu {
                        y = y.relu().unwrap();
                    }
                    Ok(y)
                }
                .unwrap()
            };
            let y = f(xv.as_tensor(), rv.as_tensor(), true);
            let grads = (&y * &m).unwrap().sum_all().unwrap().backward().unwrap();
            let e = f(&x, &r, false);
            let v = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let dr = match grads.get(rv.as_tensor()) {
                Some(t) => v(t),
                None => vec![],
            };
            if relu {
                assert!(v(&y).contains(&0.0), "the ReLU never cut");
            }
            [
                v(&y),
                v(grads.get(xv.as_tensor()).unwrap()),
                v(grads.get(wv.as_tensor()).unwrap()),
                v(grads.get(bv.as_tensor()).unwrap()),
                dr,
                v(bn.running_mean.as_tensor()),
                v(bn.running_var.as_tensor()),
                v(&e),
            ]
        };
        let names = [
            "y",
            "dx",
            "dgamma",
            "dbeta",
            "dresidual",
            "running mean",
            "running var",
            "eval y",
        ];
        for (residual, relu) in [(false, false), (false, true), (true, false), (true, true)] {
            let (a, b) = (run(true, residual, relu), run(false, residual, relu));
            assert_eq!(a[4].len(), if residual { x.elem_count() } else { 0 });
            for ((name, p), q) in names.iter().zip(&a).zip(&b) {
                assert_eq!(p.len(), q.len(), "{name}");
                let scale = q.iter().fold(1f32, |s, v| s.max(v.abs()));
                for (u, w) in p.iter().zip(q) {
                    assert!(
                        (u - w).abs() < 2e-5 * scale,
                        "{name} (residual {residual}, relu {relu}): {u} vs {w}"
                    );
                }
            }
        }
    }
}
