//! 2-D convolution (no bias, no dilation) as a candle custom op: the CPU passes in
//! `cpu.rs`, grouped ones (a fused network's) group by group in `grouped.rs`, the CUDA
//! passes through cuDNN (`../cudnn.rs`, the `cudnn` feature; one group).
//! Which convolution a layer runs is the `ConvKernel` of the `Kernels` it was built with;
//! on the CPU their `Microkernel` runs the matrix products.

mod cpu;
mod grouped;

pub use cpu::{backward, forward, Geometry};

use super::common;
use super::gemm::Microkernel;
use super::Kernels;
use candle_core::{CpuStorage, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor};

/// `conv2d(x, w)` with `kernels`: lecal's where it runs on `x`'s device (f32), candle's
/// elsewhere.
pub fn conv2d(
    x: &Tensor,
    w: &Tensor,
    stride: usize,
    pad: usize,
    kernels: Kernels,
) -> Result<Tensor> {
    conv2d_grouped(x, w, stride, pad, 1, kernels)
}

/// `conv2d` in `groups` groups: input channel group `g` convolved with output channel
/// group `g` only (`w` is `[out, in / groups, r, s]`). Grouped convolutions other than
/// on the CPU are candle's.
pub fn conv2d_grouped(
    x: &Tensor,
    w: &Tensor,
    stride: usize,
    pad: usize,
    groups: usize,
    kernels: Kernels,
) -> Result<Tensor> {
    let lecal = kernels.conv.lecal_on(x.device()) && (groups == 1 || x.device().is_cpu());
    if x.dtype() != DType::F32 || !lecal {
        return x.conv2d(w, pad, stride, 1, groups);
    }
    let op = Conv {
        stride,
        pad,
        groups,
        gemm: kernels.gemm,
    };
    x.contiguous()?.apply_op2(&w.contiguous()?, op)
}

fn f32_slice<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    common::f32_slice("conv2d", s, l, what)
}

struct Conv {
    stride: usize,
    pad: usize,
    groups: usize,
    gemm: Microkernel,
}

impl CustomOp2 for Conv {
    fn name(&self) -> &'static str {
        "lecal-conv2d"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, w) = (f32_slice(s1, l1, "input")?, f32_slice(s2, l2, "weight")?);
        let g = grouped::group_geometry(l1.dims(), l2.dims(), self.stride, self.pad, self.groups)?;
        let y = forward(x, w, &g, self.groups, self.gemm);
        let [n, k, oh, ow] = g.y_dims();
        Ok((
            CpuStorage::F32(y),
            Shape::from((n, k * self.groups, oh, ow)),
        ))
    }

    #[cfg(feature = "cudnn")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let g = Geometry::new(l1.dims(), l2.dims(), self.stride, self.pad)?;
        let y = super::cudnn::forward((s1, l1), (s2, l2), &g)?;
        Ok((y, Shape::from(&g.y_dims()[..])))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let both = x.apply_op3_no_bwd(
            w,
            &dy.contiguous()?,
            &ConvBackward {
                stride: self.stride,
                pad: self.pad,
                groups: self.groups,
                gemm: self.gemm,
            },
        )?;
        let (dx, dw) = common::split_gradients(&both, x, w)?;
        Ok((Some(dx), Some(dw)))
    }
}

/// Both gradients as one flat tensor `[dx, dW]` (a custom op has one output).
struct ConvBackward {
    stride: usize,
    pad: usize,
    groups: usize,
    gemm: Microkernel,
}

impl ConvBackward {
    /// The geometry of inputs `(x, w, dy)`, with dy's shape checked against it.
    /// Grouped: one group's geometry.
    fn geometry(&self, x: &Layout, w: &Layout, dy: &Layout) -> Result<Geometry> {
        let g = grouped::group_geometry(x.dims(), w.dims(), self.stride, self.pad, self.groups)?;
        let [n, k, oh, ow] = g.y_dims();
        if dy.dims() != [n, k * self.groups, oh, ow] {
            candle_core::bail!("conv2d backward: output gradient of shape {:?}", dy.dims());
        }
        Ok(g)
    }
}

impl CustomOp3 for ConvBackward {
    fn name(&self) -> &'static str {
        "lecal-conv2d-backward"
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
        let g = self.geometry(l1, l2, l3)?;
        let x = f32_slice(s1, l1, "input")?;
        let w = f32_slice(s2, l2, "weight")?;
        let dy = f32_slice(s3, l3, "output gradient")?;
        let both = backward(x, w, dy, &g, self.groups, self.gemm);
        let len = both.len();
        Ok((CpuStorage::F32(both), Shape::from(len)))
    }

    #[cfg(feature = "cudnn")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
        s3: &candle_core::CudaStorage,
        l3: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let g = self.geometry(l1, l2, l3)?;
        let both = super::cudnn::backward((s1, l1), (s2, l2), (s3, l3), &g)?;
        Ok((both, Shape::from(g.grads_len())))
    }
}

#[cfg(test)]
mod tests;
