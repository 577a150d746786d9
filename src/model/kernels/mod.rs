//! lecal's compute kernels, apart from the layers that use them (`model/`): the CPU
//! convolution (`conv/`), its CUDA passes through cuDNN (`cudnn.rs`), the fused CPU batch
//! norm (`batch_norm.rs`), and what they share (`common.rs`).
//!
//! Which kernels a model runs is a [`Kernels`] value given when the model is built, never
//! a process-wide switch: two models in one process may run different convolutions (the
//! benchmark's baseline does).

pub(crate) mod batch_norm;
mod common;
pub mod conv;
#[cfg(feature = "cudnn")]
mod cudnn;

use candle_core::Device;

/// The convolution a model runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConvKernel {
    /// lecal's: on the CPU, and on CUDA with the `cudnn` feature (else candle's there).
    Lecal,
    /// candle's own (`Tensor::conv2d`), the baseline of the benchmarks.
    Candle,
}

impl ConvKernel {
    /// Whether lecal's convolution runs on `device` under this choice.
    pub fn lecal_on(self, device: &Device) -> bool {
        match self {
            Self::Lecal => device.is_cpu() || (cfg!(feature = "cudnn") && device.is_cuda()),
            Self::Candle => false,
        }
    }
}

/// What the user asked for (`--conv`, `LECAL_CONV`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ConvChoice {
    /// lecal's on the CPU; candle's on CUDA, until lecal's cuDNN passes have been checked
    /// against the CPU on a GPU (`scripts/gpu-check.sh`).
    #[default]
    Auto,
    Lecal,
    Candle,
}

/// The kernels a model is built with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kernels {
    pub conv: ConvKernel,
}

impl Kernels {
    /// lecal's kernels, as on the CPU by default.
    pub const LECAL: Kernels = Kernels {
        conv: ConvKernel::Lecal,
    };
    /// candle's convolution everywhere.
    pub const CANDLE: Kernels = Kernels {
        conv: ConvKernel::Candle,
    };

    /// The kernels `choice` means on `device`.
    pub fn new(choice: ConvChoice, device: &Device) -> Self {
        let conv = match choice {
            ConvChoice::Auto if device.is_cpu() => ConvKernel::Lecal,
            ConvChoice::Auto | ConvChoice::Candle => ConvKernel::Candle,
            ConvChoice::Lecal => ConvKernel::Lecal,
        };
        Self { conv }
    }
}
