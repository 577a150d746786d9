//! A linear layer with PyTorch's parameter names (`weight` of shape `out × in`, `bias`)
//! whose product is the one of the `Kernels` it is built with (on the CPU lecal's, the
//! same bits on every CPU); candle_nn's `Linear` always runs candle's.

use super::kernels::{matmul, Kernels};
use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

#[derive(Debug, Clone)]
pub struct Linear {
    weight: Tensor,
    bias: Tensor,
    kernels: Kernels,
}

impl Linear {
    /// `in_dim → out_dim` with the initialisation hints of candle_nn's `linear` (lecal
    /// initialises its models' weights itself: `model::init_weights`).
    pub fn new(in_dim: usize, out_dim: usize, kernels: Kernels, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get_with_hints(
            (out_dim, in_dim),
            "weight",
            candle_nn::init::DEFAULT_KAIMING_NORMAL,
        )?;
        let bound = 1. / (in_dim as f64).sqrt();
        let init = candle_nn::Init::Uniform {
            lo: -bound,
            up: bound,
        };
        let bias = vb.get_with_hints(out_dim, "bias", init)?;
        Ok(Self {
            weight,
            bias,
            kernels,
        })
    }
}

impl Module for Linear {
    /// `x · Wᵀ + b` for a batch `x` of shape `N × in`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        matmul::linear(x, &self.weight, Some(&self.bias), self.kernels)
    }
}
