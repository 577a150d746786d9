//! BatchNorm over (N, H, W) per channel with PyTorch's semantics: biased batch variance for
//! normalising, unbiased for the running variance, momentum 0.1, eps 1e-5.
//!
//! Unlike candle-nn's, its evaluation path detaches the running statistics, so a model
//! built from plain tensors records no autograd graph at all.

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
        let count = (n * h * w) as f64;
        let xt = x.transpose(0, 1)?.flatten_from(1)?.contiguous()?;
        let mean = xt.mean_keepdim(D::Minus1)?;
        let centred = xt.broadcast_sub(&mean)?;
        let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
        {
            let m = self.momentum;
            let mean_d = mean.detach().flatten_all()?;
            let var_d = var.detach().flatten_all()?;
            let unbiased = (var_d * (count / (count - 1.0).max(1.0)))?;
            let rm = ((self.running_mean.as_tensor() * (1.0 - m))? + (mean_d * m)?)?;
            let rv = ((self.running_var.as_tensor() * (1.0 - m))? + (unbiased * m)?)?;
            self.running_mean.set(&rm)?;
            self.running_var.set(&rv)?;
        }
        let normed = centred.broadcast_div(&(var + self.eps)?.sqrt()?)?;
        let y = normed
            .broadcast_mul(&self.weight.reshape((c, 1))?)?
            .broadcast_add(&self.bias.reshape((c, 1))?)?;
        y.reshape((c, n, h, w))?.transpose(0, 1)?.contiguous()
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
}
