//! Grouped convolution on the CPU (a fused network's layers: `groups` independent
//! convolutions side by side in the channels). Each group is gathered into its own
//! contiguous input and run through `forward` and `backward` exactly as an ungrouped
//! convolution of its size, so a group's output and gradients are the same bits as that
//! convolution alone: the same kernel, blocking and summation order.

use super::cpu::{backward, forward, Geometry};
use crate::model::kernels::gemm::Microkernel;
use candle_core::Result;

/// The shapes of one group of a convolution of input `x` and weight `w` (PyTorch's
/// layout: `w` is `[out, in / groups, r, s]`), checked.
pub fn group_geometry(
    x: &[usize],
    w: &[usize],
    stride: usize,
    pad: usize,
    groups: usize,
) -> Result<Geometry> {
    let (Some(&c), Some(&o)) = (x.get(1), w.first()) else {
        candle_core::bail!("conv2d: input {x:?} and weight {w:?} must be 4-dimensional");
    };
    if groups == 0 || c % groups != 0 || o % groups != 0 || w.get(1) != Some(&(c / groups)) {
        candle_core::bail!("conv2d: {groups} groups do not divide input {x:?} and weight {w:?}");
    }
    let gx = [x[0], c / groups, x[2], x[3]];
    let gw = [o / groups, w[1], w[2], w[3]];
    Geometry::new(&gx, &gw, stride, pad)
}

/// Group `g`'s `part` values of each of the images of `src`, `whole` values each.
fn take(src: &[f32], whole: usize, part: usize, g: usize) -> Vec<f32> {
    src.chunks(whole)
        .flat_map(|img| &img[g * part..(g + 1) * part])
        .copied()
        .collect()
}

/// Writes `part` (group `g`'s values of each image) into `dst`, `whole` values an image.
fn put(dst: &mut [f32], whole: usize, part: &[f32], len: usize, g: usize) {
    for (img, p) in dst.chunks_mut(whole).zip(part.chunks(len)) {
        img[g * len..(g + 1) * len].copy_from_slice(p);
    }
}

/// `y` of the grouped convolution; `g` is one group's geometry.
pub fn forward_grouped(
    x: &[f32],
    w: &[f32],
    g: &Geometry,
    groups: usize,
    kernel: Microkernel,
) -> Vec<f32> {
    let [n, go, oh, ow] = g.y_dims();
    let (xg, wg, yg) = (g.chw(), w.len() / groups, go * oh * ow);
    let mut y = vec![0f32; n * yg * groups];
    for k in 0..groups {
        let part = forward(
            &take(x, xg * groups, xg, k),
            &w[k * wg..(k + 1) * wg],
            g,
            kernel,
        );
        put(&mut y, yg * groups, &part, yg, k);
    }
    y
}

/// `[dx, dW]` of the grouped convolution, flat, as `backward` gives them ungrouped.
pub fn backward_grouped(
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    g: &Geometry,
    groups: usize,
    kernel: Microkernel,
) -> Vec<f32> {
    let [_, go, oh, ow] = g.y_dims();
    let (xg, wg, yg) = (g.chw(), w.len() / groups, go * oh * ow);
    let mut both = vec![0f32; x.len() + w.len()];
    let (dx, dw) = both.split_at_mut(x.len());
    for k in 0..groups {
        let part = backward(
            &take(x, xg * groups, xg, k),
            &w[k * wg..(k + 1) * wg],
            &take(dy, yg * groups, yg, k),
            g,
            kernel,
        );
        let (pdx, pdw) = part.split_at(part.len() - wg);
        put(dx, xg * groups, pdx, xg, k);
        dw[k * wg..(k + 1) * wg].copy_from_slice(pdw);
    }
    both
}
