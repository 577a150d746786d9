//! BatchNorm over (N, H, W) per channel with PyTorch's semantics: biased batch variance for
//! normalising, unbiased for the running variance, momentum 0.1, eps 1e-5.
//!
//! Unlike candle-nn's, its evaluation path detaches the running statistics, so a model
//! built from plain tensors records no autograd graph at all.

use super::kernel::{filled_vec, zeroed};
use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor, Var, D,
};
use candle_nn::{Init, VarBuilder};
use rayon::prelude::*;
use std::mem::MaybeUninit;

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

/// Independent partial sums per reduction: the f64 additions of a single running sum wait
/// on each other, and the statistics were a tenth of a training step.
const LANES: usize = 8;

/// `Σ f(v)` in f64 over `LANES` partial sums, added in a fixed order at the end.
fn lane_sum(v: &[f32], f: impl Fn(f32) -> f64) -> f64 {
    let mut acc = [0f64; LANES];
    let chunks = v.chunks_exact(LANES);
    for (a, &x) in acc.iter_mut().zip(chunks.remainder()) {
        *a += f(x);
    }
    for c in chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a += f(x);
        }
    }
    acc.iter().sum()
}

/// Two sums `Σ f(x, d, y)` over three equal-length slices, as `lane_sum`.
fn lane_sums2(
    x: &[f32],
    d: &[f32],
    y: &[f32],
    f: impl Fn(f32, f32, f32) -> (f64, f64),
) -> (f64, f64) {
    let (mut a, mut b) = ([0f64; LANES], [0f64; LANES]);
    let mut add = |j: usize, (p, q): (f64, f64)| {
        a[j] += p;
        b[j] += q;
    };
    let n = x.len() / LANES * LANES;
    for i in (0..n).step_by(LANES) {
        let (xs, ds, ys) = (&x[i..i + LANES], &d[i..i + LANES], &y[i..i + LANES]);
        for j in 0..LANES {
            add(j, f(xs[j], ds[j], ys[j]));
        }
    }
    for (j, i) in (n..x.len()).enumerate() {
        add(j, f(x[i], d[i], y[i]));
    }
    (a.iter().sum(), b.iter().sum())
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
                    .map(|v| lane_sum(v, |a| a as f64))
                    .sum();
                let mean = sum / count;
                let sq: f64 = channel(x, ch, c, hw)
                    .map(|v| lane_sum(v, |a| (a as f64 - mean).powi(2)))
                    .sum();
                (mean as f32, (sq / count) as f32)
            })
            .collect();
        let mut out: Vec<f32> = per.iter().map(|p| p.0).collect();
        out.extend(per.iter().map(|p| p.1));
        Ok((CpuStorage::F32(out), Shape::from((2, c))))
    }
}

/// `y = act((x - mean) / sqrt(var + eps) · γ + β [+ residual])` from
/// `params = [γ, β, mean, var]` (the statistics are constants: their gradient flows
/// through the backward below), `act` being ReLU or the identity.
struct Normalise {
    eps: f64,
    relu: bool,
}

/// Per-channel `(scale, shift)` of `y = scale·x + shift`, from `params = [γ, β, mean, var]`.
fn scale_shift(p: &[f32], c: usize, eps: f64) -> Vec<(f32, f32)> {
    (0..c)
        .map(|ch| {
            let inv = 1.0 / (p[3 * c + ch] as f64 + eps).sqrt();
            let scale = p[ch] as f64 * inv;
            let shift = p[c + ch] as f64 - p[2 * c + ch] as f64 * scale;
            (scale as f32, shift as f32)
        })
        .collect()
}

impl Normalise {
    fn forward(
        &self,
        (s1, l1): (&CpuStorage, &Layout),
        (s2, l2): (&CpuStorage, &Layout),
        residual: Option<(&CpuStorage, &Layout)>,
    ) -> Result<(CpuStorage, Shape)> {
        let x = slice(s1, l1, "input")?;
        let p = slice(s2, l2, "parameters")?;
        let &[_, c, h, w] = l1.dims() else {
            candle_core::bail!("batch norm: input must be 4-D")
        };
        let r = match residual {
            Some((s, l)) if l.dims() == l1.dims() => Some(slice(s, l, "residual")?),
            Some((_, l)) => candle_core::bail!(
                "batch norm: residual {:?} differs from input {:?}",
                l.dims(),
                l1.dims()
            ),
            None => None,
        };
        if p.len() != 4 * c {
            candle_core::bail!("batch norm: {} parameters for {c} channels", p.len());
        }
        let ss = scale_shift(p, c, self.eps);
        let (hw, relu) = (h * w, self.relu);
        let act = |v: f32| if relu { v.max(0.0) } else { v };
        let fill = |y: &mut [MaybeUninit<f32>]| {
            y.par_chunks_mut(c * hw)
                .zip(x.par_chunks(c * hw))
                .enumerate()
                .for_each(|(i, (yi, xi))| {
                    let ri = r.map(|r| &r[i * c * hw..(i + 1) * c * hw]);
                    for (ch, &(a, b)) in ss.iter().enumerate() {
                        let span = ch * hw..(ch + 1) * hw;
                        let (yc, xc) = (&mut yi[span.clone()], &xi[span.clone()]);
                        match ri {
                            Some(ri) => {
                                for ((o, &v), &q) in yc.iter_mut().zip(xc).zip(&ri[span.clone()]) {
                                    o.write(act((a * v + b) + q));
                                }
                            }
                            None => {
                                for (o, &v) in yc.iter_mut().zip(xc) {
                                    o.write(act(a * v + b));
                                }
                            }
                        }
                    }
                })
        };
        // SAFETY: `fill` writes every element of every channel of every image.
        let y = unsafe { filled_vec(x.len(), fill) };
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    /// `(dx, dparams, dresidual)`.
    fn backward(
        &self,
        x: &Tensor,
        params: &Tensor,
        y: &Tensor,
        dy: &Tensor,
        residual: bool,
    ) -> Result<(Tensor, Tensor, Option<Tensor>)> {
        let op = NormaliseBackward {
            eps: self.eps,
            relu: self.relu,
            residual,
            params: params.detach().to_vec1::<f32>()?,
        };
        let all = x.apply_op3_no_bwd(&dy.contiguous()?, y, &op)?;
        let n = x.elem_count();
        let dx = all.narrow(0, 0, n)?.reshape(x.shape())?;
        let at = if residual { 2 * n } else { n };
        let dparams = all.narrow(0, at, params.elem_count())?;
        let dres = residual
            .then(|| all.narrow(0, n, n)?.reshape(x.shape()))
            .transpose()?;
        Ok((dx, dparams, dres))
    }
}

impl CustomOp2 for Normalise {
    fn name(&self) -> &'static str {
        "lecal-bn"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.forward((s1, l1), (s2, l2), None)
    }

    fn bwd(
        &self,
        x: &Tensor,
        params: &Tensor,
        y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (dx, dparams, _) = self.backward(x, params, y, dy, false)?;
        Ok((Some(dx), Some(dparams)))
    }
}

impl CustomOp3 for Normalise {
    fn name(&self) -> &'static str {
        "lecal-bn-residual"
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
        self.forward((s1, l1), (s2, l2), Some((s3, l3)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        params: &Tensor,
        _residual: &Tensor,
        y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (dx, dparams, dres) = self.backward(x, params, y, dy, true)?;
        Ok((Some(dx), Some(dparams), dres))
    }
}

/// The training-mode gradient of `Normalise` (the batch statistics depend on `x`): with
/// `dz = dy` masked by `y > 0` under ReLU, `x̂ = (x - mean)·inv`, `dβ = Σ dz`,
/// `dγ = Σ dz·x̂`, `dx = γ·inv·(dz - dβ/M - x̂·dγ/M)`, and `dresidual = dz`.
/// Inputs `(x, dy, y)`; output `[dx, dresidual (with a residual), dγ, dβ, 0, 0]` flat.
struct NormaliseBackward {
    eps: f64,
    relu: bool,
    residual: bool,
    /// `[γ, β, mean, var]`.
    params: Vec<f32>,
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
        let y = slice(s3, l3, "output")?;
        let &[n, c, h, w] = l1.dims() else {
            candle_core::bail!("batch norm: input must be 4-D")
        };
        if dy.len() != x.len() || y.len() != x.len() || self.params.len() != 4 * c {
            candle_core::bail!("batch norm backward: mismatched shapes");
        }
        let (hw, m, relu) = (h * w, (n * h * w) as f64, self.relu);
        let p = &self.params;
        let (gamma, mean, var) = (&p[..c], &p[2 * c..3 * c], &p[3 * c..]);
        let dz = |d: f32, y: f32| if relu && y <= 0.0 { 0.0 } else { d };
        let sums: Vec<(f64, f64)> = (0..c)
            .into_par_iter()
            .map(|ch| {
                let mu = mean[ch] as f64;
                let (xs, ds, ys) = (
                    channel(x, ch, c, hw),
                    channel(dy, ch, c, hw),
                    channel(y, ch, c, hw),
                );
                xs.zip(ds)
                    .zip(ys)
                    .fold((0.0, 0.0), |(s, sx), ((xv, dv), yv)| {
                        let (a, b) = lane_sums2(xv, dv, yv, |x, d, y| {
                            let d = dz(d, y) as f64;
                            (d, d * (x as f64 - mu))
                        });
                        (s + a, sx + b)
                    })
            })
            .collect();
        let inv: Vec<f64> = var
            .iter()
            .map(|&v| 1.0 / (v as f64 + self.eps).sqrt())
            .collect();
        // dx = k·dz + u·x + v per channel.
        let coef: Vec<(f32, f32, f32)> = (0..c)
            .map(|ch| {
                let inv = inv[ch];
                let k = gamma[ch] as f64 * inv;
                let (sdz, sdzx) = sums[ch];
                let u = -k * inv * inv * sdzx / m;
                let v = -k * sdz / m - u * mean[ch] as f64;
                (k as f32, u as f32, v as f32)
            })
            .collect();
        let len = x.len();
        let img = c * hw;
        let fill = |i: usize, o: &mut [MaybeUninit<f32>], r: Option<&mut [MaybeUninit<f32>]>| {
            let span = i * img..(i + 1) * img;
            let (xi, di, yi) = (&x[span.clone()], &dy[span.clone()], &y[span]);
            for (ch, &(k, u, v)) in coef.iter().enumerate() {
                let span = ch * hw..(ch + 1) * hw;
                let (oc, xc) = (&mut o[span.clone()], &xi[span.clone()]);
                let (dc, yc) = (&di[span.clone()], &yi[span.clone()]);
                for (((a, &xv), &dv), &yv) in oc.iter_mut().zip(xc).zip(dc).zip(yc) {
                    a.write(k * dz(dv, yv) + u * xv + v);
                }
            }
            if let Some(r) = r {
                for ((a, &dv), &yv) in r.iter_mut().zip(di).zip(yi) {
                    a.write(dz(dv, yv));
                }
            }
        };
        let all = |out: &mut [MaybeUninit<f32>]| {
            let (dx, rest) = out.split_at_mut(len);
            let (dres, dparams) = rest.split_at_mut(if self.residual { len } else { 0 });
            if self.residual {
                dx.par_chunks_mut(img)
                    .zip(dres.par_chunks_mut(img))
                    .enumerate()
                    .for_each(|(i, (o, r))| fill(i, o, Some(r)));
            } else {
                dx.par_chunks_mut(img)
                    .enumerate()
                    .for_each(|(i, o)| fill(i, o, None));
            }
            // [dγ, dβ, dmean, dvar]: the statistics are constants here.
            let dparams = zeroed(dparams);
            for ch in 0..c {
                dparams[ch] = (sums[ch].1 * inv[ch]) as f32;
                dparams[c + ch] = sums[ch].0 as f32;
            }
        };
        let total = if self.residual { 2 * len } else { len } + 4 * c;
        // SAFETY: `all` writes dx and the residual's gradient through `fill`, element by
        // element, and zeroes the parameters' gradient before setting it.
        let out = unsafe { filled_vec(total, all) };
        Ok((CpuStorage::F32(out), Shape::from(total)))
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
