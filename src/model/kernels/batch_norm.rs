//! The fused CPU batch norm: the statistics (`Stats`), and normalisation with the
//! optional residual add and ReLU (`Normalise`) with its backward, as candle custom ops.
//! Sums run over 8 independent f64 lanes in a fixed order, so results do not depend on
//! the number of threads.

use super::common::{filled_vec, zeroed};
use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Whether the fused CPU kernels apply (f32 on the CPU).
pub fn fused(x: &Tensor) -> bool {
    x.device().is_cpu() && x.dtype() == candle_core::DType::F32 && x.rank() == 4
}

fn slice<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    super::common::f32_slice("batch norm", s, l, what)
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
pub struct Stats;

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
pub struct Normalise {
    pub eps: f64,
    pub relu: bool,
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

    // Long: the backward kernel's two passes over each channel share its per-channel
    // sums, and the residual and ReLU cases differ only inside the loops.
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
