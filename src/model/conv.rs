//! A convolution layer without bias, with the parameter name `weight` (as PyTorch); the
//! convolution it runs is the one of the `Kernels` it is built with.

use super::kernels::{conv::conv2d_grouped, Kernels};
use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

/// A convolution layer without bias.
#[derive(Debug, Clone)]
pub struct Conv2d {
    weight: Tensor,
    stride: usize,
    pad: usize,
    groups: usize,
    kernels: Kernels,
}

/// A convolution's sizes: channels in and out, kernel size, stride, padding and groups.
#[derive(Debug, Clone, Copy)]
pub struct ConvShape {
    pub cin: usize,
    pub cout: usize,
    pub size: usize,
    pub stride: usize,
    pub pad: usize,
    pub groups: usize,
}

impl ConvShape {
    /// `members` convolutions of `cin → cout` channels side by side, one group each.
    pub fn grouped(
        members: usize,
        cin: usize,
        cout: usize,
        size: usize,
        stride: usize,
        pad: usize,
    ) -> Self {
        let (cin, cout, groups) = (cin * members, cout * members, members);
        Self {
            cin,
            cout,
            size,
            stride,
            pad,
            groups,
        }
    }
}

impl Conv2d {
    pub fn new(
        cin: usize,
        cout: usize,
        size: usize,
        stride: usize,
        pad: usize,
        kernels: Kernels,
        vb: VarBuilder,
    ) -> Result<Self> {
        let shape = ConvShape::grouped(1, cin, cout, size, stride, pad);
        Self::grouped(shape, kernels, vb)
    }

    /// A grouped convolution (a fused network's): weight `[cout, cin / groups, k, k]`.
    pub fn grouped(shape: ConvShape, kernels: Kernels, vb: VarBuilder) -> Result<Self> {
        let s = shape;
        let weight = vb.get_with_hints(
            (s.cout, s.cin / s.groups, s.size, s.size),
            "weight",
            candle_nn::init::DEFAULT_KAIMING_NORMAL,
        )?;
        let (stride, pad, groups) = (s.stride, s.pad, s.groups);
        Ok(Self {
            weight,
            stride,
            pad,
            groups,
            kernels,
        })
    }
}

impl Module for Conv2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (s, p, g) = (self.stride, self.pad, self.groups);
        conv2d_grouped(x, &self.weight, s, p, g, self.kernels)
    }
}
