//! BatchNorm over (N, H, W) per channel with PyTorch's semantics: biased batch variance for
//! normalising, unbiased for the running variance, momentum 0.1, eps 1e-5.
//!
//! Unlike candle-nn's, its evaluation path detaches the running statistics, so a model
//! built from plain tensors records no autograd graph at all.

use candle_core::{CpuStorage, CustomOp1, CustomOp3, Layout, Result, Shape, Tensor, Var, D};
use candle_nn::{Init, VarBuilder};
use rayon::prelude::*;

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
        if fused(x) {
            self.forward_fused(x, train)
        } else {
            self.forward_composed(x, train)
        }
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

    /// The CPU path: statistics, normalisation and its gradient as three custom ops, two
    /// passes over the activations forward and two backward (the composed path above
    /// makes about ten each way).
    fn forward_fused(&self, x: &Tensor, train: bool) -> Result<Tensor> {
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
        let affine = Tensor::cat(&[&self.weight, &self.bias], 0)?;
        if train {
            x.apply_op3(&affine, &stats, Normalise { eps: self.eps })
        } else {
            x.apply_op3_no_bwd(&affine.detach(), &stats, &Normalise { eps: self.eps })
        }
    }
}

/// Whether the fused CPU kernels apply (f32 on the CPU).
fn fused(x: &Tensor) -> bool {
    x.device().is_cpu() && x.dtype() == candle_core::DType::F32 && x.rank() == 4
}

fn slice<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    super::kernel::f32_slice("batch norm", s, l, what)
}

/// The `h·w` values of channel `c` of image `i`, for every image.
fn channel(x: &[f32], c: usize, channels: usize, hw: usize) -> impl Iterator<Item = &[f32]> {
    x.chunks(channels * hw)
        .map(move |img| &img[c * hw..(c + 1) * hw])
}

/// Per-channel mean and biased variance of `x` (N, C, H, W) as a (2, C) tensor, summed
/// in f64 (two passes, so the variance does not cancel).
struct Stats;

impl CustomOp1 for Stats {
    fn name(&self) -> &'static str {
        "lecal-bn-stats"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = slice(s, l, "input")?;
        let &[n, c, h, w] = l.dims() else {
            candle_core::bail!("batch norm: input must be 4-D")
        };
        let (hw, count) = (h * w, (n * h * w) as f64);
        let per: Vec<(f32, f32)> = (0..c)
            .into_par_iter()
            .map(|ch| {
                let sum: f64 = channel(x, ch, c, hw)
                    .map(|v| v.iter().map(|&a| a as f64).sum::<f64>())
                    .sum();
                let mean = sum / count;
                let sq: f64 = channel(x, ch, c, hw)
                    .map(|v| v.iter().map(|&a| (a as f64 - mean).powi(2)).sum::<f64>())
                    .sum();
                (mean as f32, (sq / count) as f32)
            })
            .collect();
        let mut out: Vec<f32> = per.iter().map(|p| p.0).collect();
        out.extend(per.iter().map(|p| p.1));
        Ok((CpuStorage::F32(out), Shape::from((2, c))))
    }
}

/// `y = (x - mean) / sqrt(var + eps) · γ + β` from `affine = [γ, β]` and
/// `stats = [mean, var]` (a constant: its gradient flows through `Normalise`'s).
struct Normalise {
    eps: f64,
}

/// Per-channel `(scale, shift)` of `y = scale·x + shift`.
fn scale_shift(affine: &[f32], stats: &[f32], c: usize, eps: f64) -> Vec<(f32, f32)> {
    (0..c)
        .map(|ch| {
            let inv = 1.0 / (stats[c + ch] as f64 + eps).sqrt();
            let scale = affine[ch] as f64 * inv;
            let shift = affine[c + ch] as f64 - stats[ch] as f64 * scale;
            (scale as f32, shift as f32)
        })
        .collect()
}

impl CustomOp3 for Normalise {
    fn name(&self) -> &'static str {
        "lecal-bn"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = slice(s1, l1, "input")?;
        let (affine, stats) = (slice(s2, l2, "affine")?, slice(s3, l3, "statistics")?);
        let &[_, c, h, w] = l1.dims() else {
            candle_core::bail!("batch norm: input must be 4-D")
        };
        let ss = scale_shift(affine, stats, c, self.eps);
        let hw = h * w;
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(c * hw)
            .zip(x.par_chunks(c * hw))
            .for_each(|(yi, xi)| {
                for ((yc, xc), &(a, b)) in yi.chunks_mut(hw).zip(xi.chunks(hw)).zip(&ss) {
                    for (o, &v) in yc.iter_mut().zip(xc) {
                        *o = a * v + b;
                    }
                }
            });
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        affine: &Tensor,
        stats: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let params = Tensor::cat(&[affine.detach(), stats.detach()], 0)?;
        let all = x.apply_op3_no_bwd(
            &dy.contiguous()?,
            &params,
            &NormaliseBackward { eps: self.eps },
        )?;
        let (dx, daffine) = super::kernel::split_gradients(&all, x, affine)?;
        Ok((Some(dx), Some(daffine), None))
    }
}

/// The training-mode gradient of batch norm (the batch statistics depend on `x`):
/// with `x̂ = (x - mean)·inv`, `dβ = Σ dy`, `dγ = Σ dy·x̂`,
/// `dx = γ·inv·(dy - dβ/M - x̂·dγ/M)`. Output: `[dx, dγ, dβ]` flat.
struct NormaliseBackward {
    eps: f64,
}

impl CustomOp3 for NormaliseBackward {
    fn name(&self) -> &'static str {
        "lecal-bn-backward"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = slice(s1, l1, "input")?;
        let dy = slice(s2, l2, "output gradient")?;
        let p = slice(s3, l3, "parameters")?;
        let &[n, c, h, w] = l1.dims() else {
            candle_core::bail!("batch norm: input must be 4-D")
        };
        let (hw, m) = (h * w, (n * h * w) as f64);
        let (gamma, mean, var) = (&p[..c], &p[2 * c..3 * c], &p[3 * c..]);
        let sums: Vec<(f64, f64)> = (0..c)
            .into_par_iter()
            .map(|ch| {
                let mu = mean[ch] as f64;
                channel(x, ch, c, hw).zip(channel(dy, ch, c, hw)).fold(
                    (0.0, 0.0),
                    |(s, sx), (xv, dv)| {
                        let (a, b) = xv.iter().zip(dv).fold((0.0, 0.0), |(a, b), (&xi, &di)| {
                            (a + di as f64, b + di as f64 * (xi as f64 - mu))
                        });
                        (s + a, sx + b)
                    },
                )
            })
            .collect();
        // dx = k·dy + u·x + v per channel.
        let coef: Vec<(f32, f32, f32)> = (0..c)
            .map(|ch| {
                let inv = 1.0 / (var[ch] as f64 + self.eps).sqrt();
                let k = gamma[ch] as f64 * inv;
                let (sdy, sdyx) = sums[ch];
                let u = -k * inv * inv * sdyx / m;
                let v = -k * sdy / m - u * mean[ch] as f64;
                (k as f32, u as f32, v as f32)
            })
            .collect();
        let mut out = vec![0f32; x.len() + 2 * c];
        let (dx, dparams) = out.split_at_mut(x.len());
        dx.par_chunks_mut(c * hw)
            .zip(x.par_chunks(c * hw).zip(dy.par_chunks(c * hw)))
            .for_each(|(o, (xi, di))| {
                for (ch, &(k, u, v)) in coef.iter().enumerate() {
                    let r = ch * hw..(ch + 1) * hw;
                    for ((a, &xv), &dv) in o[r.clone()].iter_mut().zip(&xi[r.clone()]).zip(&di[r]) {
                        *a = k * dv + u * xv + v;
                    }
                }
            });
        for ch in 0..c {
            let inv = 1.0 / (var[ch] as f64 + self.eps).sqrt();
            dparams[ch] = (sums[ch].1 * inv) as f32;
            dparams[c + ch] = sums[ch].0 as f32;
        }
        let len = out.len();
        Ok((CpuStorage::F32(out), Shape::from(len)))
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

    /// The fused CPU kernels against the composed operations: output, the three
    /// gradients and the running statistics, in training and evaluation mode.
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
        let m = random(&[5, 3, 4, 6], 0.0);
        let (g, b) = (random(&[3], 1.0), random(&[3], 0.0));
        let run = |fused: bool| {
            let vm = VarMap::new();
            let bn = BatchNorm2d::new(3, VarBuilder::from_varmap(&vm, DType::F32, &dev)).unwrap();
            let (wv, bv) = (Var::from_tensor(&g).unwrap(), Var::from_tensor(&b).unwrap());
            let bn = BatchNorm2d {
                weight: wv.as_tensor().clone(),
                bias: bv.as_tensor().clone(),
                ..bn
            };
            let xv = Var::from_tensor(&x).unwrap();
            let f = |x: &Tensor, t| {
                if fused {
                    bn.forward_fused(x, t)
                } else {
                    bn.forward_composed(x, t)
                }
                .unwrap()
            };
            let y = f(xv.as_tensor(), true);
            let grads = (&y * &m).unwrap().sum_all().unwrap().backward().unwrap();
            let e = f(&x, false);
            let v = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            [
                v(&y),
                v(grads.get(xv.as_tensor()).unwrap()),
                v(grads.get(wv.as_tensor()).unwrap()),
                v(grads.get(bv.as_tensor()).unwrap()),
                v(bn.running_mean.as_tensor()),
                v(bn.running_var.as_tensor()),
                v(&e),
            ]
        };
        let (a, b) = (run(true), run(false));
        let names = [
            "y",
            "dx",
            "dgamma",
            "dbeta",
            "running mean",
            "running var",
            "eval y",
        ];
        for ((name, p), q) in names.iter().zip(&a).zip(&b) {
            let scale = q.iter().fold(1f32, |s, v| s.max(v.abs()));
            for (u, w) in p.iter().zip(q) {
                assert!((u - w).abs() < 2e-5 * scale, "{name}: {u} vs {w}");
            }
        }
    }
}
