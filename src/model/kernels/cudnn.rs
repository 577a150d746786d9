//! The convolution's CUDA passes through cuDNN (the `cudnn` feature): forward,
//! backward-data and backward-filter, for `conv.rs`'s custom operation.
//!
//! candle 0.11 runs cuDNN for the forward pass only, choosing an algorithm and allocating
//! a workspace on every call, and computes the input gradient with its own naive
//! transposed-convolution kernel. Here each shape's three algorithms are chosen once and
//! cached, and one workspace per device, grown to the largest need seen, is reused by
//! every call.
//!
//! Choice: cuDNN's heuristics, first choice, except that the gradients' algorithms that
//! add with atomics (backward-data 0, backward-filter 0 and 3; the forward ones are all
//! deterministic) are replaced by the deterministic algorithm 1 where the shape supports
//! it, and an algorithm wanting more than `MAX_WORKSPACE` is replaced by a frugal one.
//! Other candle kernels on CUDA still do not promise bitwise repeatability.
//!
//! cuDNN's default math mode lets FP32 convolutions use TF32 tensor cores on Ampere and
//! later GPUs, as PyTorch does by default (`torch.backends.cudnn.allow_tf32`);
//! `NVIDIA_TF32_OVERRIDE=0` turns it off (`lecal bench --check` does).
//!
//! The state is per thread and per candle device id, and lives as long as the thread.

use super::conv::Geometry;
use candle_core::cuda::cudarc::cudnn::{
    sys, ConvBackwardData, ConvBackwardFilter, ConvDescriptor, ConvForward, Cudnn, CudnnError,
    FilterDescriptor, TensorDescriptor,
};
use candle_core::cuda::cudarc::driver::{CudaSlice, CudaView};
use candle_core::cuda::{CudaDevice, DeviceId};
use candle_core::{CudaStorage, Layout, Result};
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

/// The algorithms of one shape and the workspace bytes the largest of them needs.
#[derive(Debug, Clone, Copy)]
struct Algorithms {
    forward: sys::cudnnConvolutionFwdAlgo_t,
    data: sys::cudnnConvolutionBwdDataAlgo_t,
    filter: sys::cudnnConvolutionBwdFilterAlgo_t,
    workspace: usize,
}

/// One device's cuDNN handle, chosen algorithms and workspace.
struct State {
    cudnn: Arc<Cudnn>,
    algorithms: HashMap<Geometry, Algorithms>,
    workspace: Option<CudaSlice<u8>>,
}

thread_local! {
    // cuDNN handles are neither Send nor Sync: one per thread and device, as candle keeps
    // its own.
    static STATES: RefCell<HashMap<DeviceId, State>> = RefCell::new(HashMap::new());
}

/// The descriptors of one convolution (cheap host objects, made per call).
struct Descriptors {
    conv: ConvDescriptor<f32>,
    x: TensorDescriptor<f32>,
    w: FilterDescriptor<f32>,
    y: TensorDescriptor<f32>,
}

impl Descriptors {
    fn new(cudnn: &Arc<Cudnn>, g: &Geometry) -> Result<Self> {
        use sys::cudnnTensorFormat_t::CUDNN_TENSOR_NCHW as NCHW;
        let i = |v: usize| v as i32;
        Ok(Self {
            conv: cudnn.create_conv2d::<f32>(
                [i(g.pad); 2],
                [i(g.stride); 2],
                [1, 1],
                sys::cudnnConvolutionMode_t::CUDNN_CROSS_CORRELATION,
            )?,
            x: cudnn.create_4d_tensor::<f32>(NCHW, [i(g.n), i(g.c), i(g.h), i(g.w)])?,
            w: cudnn.create_4d_filter::<f32>(NCHW, [i(g.k), i(g.c), i(g.r), i(g.s)])?,
            y: cudnn.create_4d_tensor::<f32>(NCHW, [i(g.n), i(g.k), i(g.oh), i(g.ow)])?,
        })
    }

    fn forward(&self) -> ConvForward<'_, f32, f32, f32> {
        ConvForward {
            conv: &self.conv,
            x: &self.x,
            w: &self.w,
            y: &self.y,
        }
    }

    fn data(&self) -> ConvBackwardData<'_, f32, f32, f32> {
        ConvBackwardData {
            conv: &self.conv,
            dx: &self.x,
            w: &self.w,
            dy: &self.y,
        }
    }

    fn filter(&self) -> ConvBackwardFilter<'_, f32, f32, f32> {
        ConvBackwardFilter {
            conv: &self.conv,
            x: &self.x,
            dw: &self.w,
            dy: &self.y,
        }
    }

    fn choose(&self) -> Result<Algorithms> {
        use sys::cudnnConvolutionBwdDataAlgo_t as D;
        use sys::cudnnConvolutionBwdFilterAlgo_t as W;
        use sys::cudnnConvolutionFwdAlgo_t as F;
        let (f, d, w) = (self.forward(), self.data(), self.filter());
        // `Ok(bytes)` when the algorithm supports this shape within the workspace cap.
        let fits = |bytes: std::result::Result<usize, CudnnError>| {
            bytes.ok().filter(|&b| b <= MAX_WORKSPACE)
        };

        let mut forward = f.pick_algorithm()?;
        if fits(f.get_workspace_size(forward)).is_none() {
            forward = F::CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM;
        }
        let mut data = d.pick_algorithm()?;
        let deterministic = D::CUDNN_CONVOLUTION_BWD_DATA_ALGO_1;
        if (data == D::CUDNN_CONVOLUTION_BWD_DATA_ALGO_0
            || fits(d.get_workspace_size(data)).is_none())
            && fits(d.get_workspace_size(deterministic)).is_some()
        {
            data = deterministic;
        }
        let mut filter = w.pick_algorithm()?;
        let deterministic = W::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1;
        if (matches!(
            filter,
            W::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0 | W::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3
        ) || fits(w.get_workspace_size(filter)).is_none())
            && fits(w.get_workspace_size(deterministic)).is_some()
        {
            filter = deterministic;
        }
        let workspace = f
            .get_workspace_size(forward)?
            .max(d.get_workspace_size(data)?)
            .max(w.get_workspace_size(filter)?);
        Ok(Algorithms {
            forward,
            data,
            filter,
            workspace,
        })
    }
}

/// The most workspace one algorithm may take: FFT algorithms can ask for gigabytes.
const MAX_WORKSPACE: usize = 512 << 20;

/// Runs `f` with the descriptors, algorithms and workspace of shape `g` on `device`.
fn with_shape<R>(
    device: &CudaDevice,
    g: &Geometry,
    f: impl FnOnce(&Descriptors, Algorithms, Option<&mut CudaSlice<u8>>) -> Result<R>,
) -> Result<R> {
    STATES.with(|states| {
        let mut states = states.borrow_mut();
        let state = match states.entry(device.id()) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => e.insert(State {
                cudnn: Cudnn::new(device.cuda_stream())?,
                algorithms: HashMap::new(),
                workspace: None,
            }),
        };
        let d = Descriptors::new(&state.cudnn, g)?;
        let a = match state.algorithms.entry(*g) {
            std::collections::hash_map::Entry::Occupied(e) => *e.get(),
            std::collections::hash_map::Entry::Vacant(e) => *e.insert(d.choose()?),
        };
        let have = state.workspace.as_ref().map_or(0, |w| w.len());
        if a.workspace > have {
            state.workspace = Some(device.alloc_zeros::<u8>(a.workspace)?);
        }
        f(&d, a, state.workspace.as_mut())
    })
}

/// The f32 values of a contiguous input as a view.
fn view<'a>((s, l): (&'a CudaStorage, &Layout), what: &str) -> Result<CudaView<'a, f32>> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(s.as_cuda_slice::<f32>()?.slice(a..b)),
        None => candle_core::bail!("conv2d: {what} must be contiguous f32"),
    }
}

/// `y = conv(x, w)`, (N, K, OH, OW).
pub fn forward(
    x: (&CudaStorage, &Layout),
    w: (&CudaStorage, &Layout),
    g: &Geometry,
) -> Result<CudaStorage> {
    let device = &x.0.device;
    let (xv, wv) = (view(x, "input")?, view(w, "weight")?);
    // SAFETY: cuDNN writes every element (β = 0: the output is not read).
    let mut y = unsafe { device.alloc::<f32>(g.n * g.k * g.ohw())? };
    with_shape(device, g, |d, a, workspace| {
        // SAFETY: the descriptors were made from `g`, which the callers derived from
        // these tensors' shapes; `y` holds N·K·OH·OW elements.
        unsafe {
            d.forward()
                .launch(a.forward, workspace, (1.0, 0.0), &xv, &wv, &mut y)?
        };
        Ok(())
    })?;
    Ok(CudaStorage::wrap_cuda_slice(y, device.clone()))
}

/// Both gradients as one flat vector `[dx (N, C, H, W), dW (K, C, R, S)]`, as on the CPU.
pub fn backward(
    x: (&CudaStorage, &Layout),
    w: (&CudaStorage, &Layout),
    dy: (&CudaStorage, &Layout),
    g: &Geometry,
) -> Result<CudaStorage> {
    let device = &x.0.device;
    let (xv, wv) = (view(x, "input")?, view(w, "weight")?);
    let dyv = view(dy, "output gradient")?;
    let dx_len = g.n * g.chw();
    // SAFETY: the two cuDNN calls write every element of their halves (β = 0).
    let mut out = unsafe { device.alloc::<f32>(g.grads_len())? };
    with_shape(device, g, |d, a, mut workspace| {
        let (mut dx, mut dw) = out.split_at_mut(dx_len);
        // SAFETY: as in `forward`; `dx` holds N·C·H·W elements and `dw` K·C·R·S. The two
        // calls run in order on the device's stream and share the workspace.
        unsafe {
            d.data().launch(
                a.data,
                workspace.as_deref_mut(),
                (1.0, 0.0),
                &mut dx,
                &wv,
                &dyv,
            )?;
            d.filter()
                .launch(a.filter, workspace, (1.0, 0.0), &xv, &mut dw, &dyv)?;
        }
        Ok(())
    })?;
    Ok(CudaStorage::wrap_cuda_slice(out, device.clone()))
}
