//! A convolution layer without bias, with the parameter name `weight` (as PyTorch); the
//! convolution it runs is the one of the `Kernels` it is built with.

use super::kernels::{conv::conv2d, Kernels};
use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

/// A convolution layer without bias.
#[derive(Debug, Clone)]
pub struct Conv2d {
    weight: Tensor,
    stride: usize,
    pad: usize,
    kernels: Kernels,
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
        let weight = vb.get_with_hints(
            (cout, cin, size, size),
            "weight",
            candle_nn::init::DEFAULT_KAIMING_NORMAL,
        )?;
        Ok(Self {
            weight,
            stride,
            pad,
            kernels,
        })
    }
}

impl Module for Conv2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        conv2d(x, &self.weight, self.stride, self.pad, self.kernels)
    }
}
