//! Grouped convolution on the CPU (a fused network's layers: `groups` independent
//! convolutions side by side in the channels). A group of an image is a contiguous block
//! of its channels, so `cpu::forward` and `cpu::backward` run each (image, group) in
//! place as an ungrouped convolution's image, and a group's output and gradients are the
//! same bits as that convolution alone: the same kernel, blocking and summation order.

use super::cpu::Geometry;
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
