//! lecal's compute kernels, apart from the layers that use them (`model/`): the CPU
//! convolution (`conv/`), its CUDA passes through cuDNN (`cudnn.rs`), the fused CPU batch
//! norm (`batch_norm.rs`), the CPU matrix product with the same bits on every CPU
//! (`gemm/`) and the matrix-product op of the linear layers and heads (`matmul.rs`), the
//! CPU kernel level (`level.rs`), their check at first use on a device (`selfcheck.rs`),
//! and what they share (`common.rs`).
//!
//! Which kernels a model runs is a [`Kernels`] value given when the model is built, never
//! a process-wide switch: two models in one process may run different convolutions (the
//! benchmark's baseline does).

pub(crate) mod batch_norm;
pub(crate) mod common;
pub mod conv;
#[cfg(feature = "cudnn")]
mod cudnn;
pub mod gemm;
pub mod level;
pub mod matmul;
pub mod selfcheck;

use candle_core::Device;
pub use level::{CpuKernelChoice, CpuLevel, Microkernel};

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
    /// lecal's: on the CPU, and on CUDA through cuDNN (builds with the `cudnn` feature);
    /// checked against candle's on the CPU at first use (`selfcheck`), candle's where it
    /// disagrees.
    #[default]
    Auto,
    Lecal,
    Candle,
}

/// The kernels a model is built with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kernels {
    /// The convolution; with `ConvKernel::Candle` the linear layers run candle's matrix
    /// product too (the benchmarks' baseline: candle alone).
    pub conv: ConvKernel,
    /// The microkernel of lecal's CPU matrix products (convolutions, linear layers,
    /// heads): all give the same bits.
    pub gemm: Microkernel,
    /// Whether the linear layers and heads may run lecal's matrix product (off after it
    /// failed its check, `selfcheck`).
    pub lecal_matmul: bool,
}

impl Kernels {
    /// lecal's kernels, as on the CPU by default.
    pub fn lecal() -> Self {
        Self {
            conv: ConvKernel::Lecal,
            gemm: Microkernel::auto(),
            lecal_matmul: true,
        }
    }

    /// candle's convolution and matrix product everywhere.
    pub const CANDLE: Kernels = Kernels {
        conv: ConvKernel::Candle,
        gemm: Microkernel::Portable,
        lecal_matmul: false,
    };

    /// The kernels `choice` and `cpu` mean (on any device: `ConvKernel::lecal_on` says
    /// where lecal's convolution runs); an error where the CPU lacks the microkernel
    /// asked for.
    pub fn new(choice: ConvChoice, cpu: CpuKernelChoice) -> Result<Self, String> {
        let conv = match choice {
            ConvChoice::Auto | ConvChoice::Lecal => ConvKernel::Lecal,
            ConvChoice::Candle => ConvKernel::Candle,
        };
        Ok(Self {
            conv,
            gemm: Microkernel::detect(cpu)?,
            lecal_matmul: true,
        })
    }

    /// Whether lecal's matrix product runs on `device` (else candle's).
    pub fn lecal_matmul_on(self, device: &Device) -> bool {
        device.is_cpu() && self.conv == ConvKernel::Lecal && self.lecal_matmul
    }
}
