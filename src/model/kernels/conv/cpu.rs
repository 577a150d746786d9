//! The convolution's CPU passes: im2col/col2im plus one `gemm` per image.
//!
//! candle 0.11's CPU convolution copies im2col tiles slowly and computes the input
//! gradient with a per-pixel `conv_transpose2d` loop; together they were most of a
//! training step. Here:
//!
//! - forward:          `y[n] = W · col(x[n])`
//! - input gradient:   `dx[n] = W' · col'(dy[n])` with stride 1 and a square kernel (a
//!   convolution of dy with the flipped, transposed weights: see `transposed`), else
//!   `dx[n] = col2im(Wᵀ · dy[n])`
//! - weight gradient:  `dW = Σₙ dy[n] · col(x[n])ᵀ`
//!
//! Both gradients come from one pass over the batch (one im2col per image). Images are
//! spread over rayon's threads; the weight gradient is summed over fixed chunks of images
//! in a fixed order, so the result does not depend on the number of threads.

use super::super::common::{filled_vec, zeroed};
use super::super::gemm::{self, Mat, Microkernel};
use candle_core::Result;
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Images per partial weight gradient.
const CHUNK: usize = 4;

/// Shapes of one convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Geometry {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    /// Output channels.
    pub k: usize,
    /// Kernel height and width.
    pub r: usize,
    pub s: usize,
    pub stride: usize,
    pub pad: usize,
    pub oh: usize,
    pub ow: usize,
}

impl Geometry {
    pub fn new(x: &[usize], w: &[usize], stride: usize, pad: usize) -> Result<Self> {
        let (&[n, c, h, wd], &[k, cw, r, s]) = (x, w) else {
            candle_core::bail!("conv2d: input {x:?} and weight {w:?} must both be 4-D")
        };
        if c != cw {
            candle_core::bail!("conv2d: input has {c} channels, the weight expects {cw}");
        }
        if stride == 0 || h + 2 * pad < r || wd + 2 * pad < s {
            candle_core::bail!(
                "conv2d: kernel {r}x{s} does not fit input {h}x{wd} with padding {pad}"
            );
        }
        Ok(Self {
            n,
            c,
            h,
            w: wd,
            k,
            r,
            s,
            stride,
            pad,
            oh: (h + 2 * pad - r) / stride + 1,
            ow: (wd + 2 * pad - s) / stride + 1,
        })
    }

    pub(super) fn crs(&self) -> usize {
        self.c * self.r * self.s
    }

    pub(crate) fn ohw(&self) -> usize {
        self.oh * self.ow
    }

    /// The row stride of a column buffer: OH·OW plus 16, so that its rows (often exactly
    /// 4 KiB apart) do not all fall into the same L1 cache set when gemm walks down a
    /// column of them.
    fn col_ld(&self) -> usize {
        self.ohw() + 16
    }

    pub(crate) fn chw(&self) -> usize {
        self.c * self.h * self.w
    }

    /// The output's dimensions, (N, K, OH, OW).
    pub fn y_dims(&self) -> [usize; 4] {
        [self.n, self.k, self.oh, self.ow]
    }

    /// The length of the backward op's output `[dx, dW]`.
    pub(crate) fn grads_len(&self) -> usize {
        self.n * self.chw() + self.k * self.crs()
    }

    /// The valid output columns `[lo, hi)` of kernel column `s` (stride 1), where the
    /// input column `ow + s - pad` lies inside the image.
    fn valid_cols(&self, s: usize) -> (usize, usize) {
        let lo = self.pad.saturating_sub(s).min(self.ow);
        let hi = (self.w + self.pad).saturating_sub(s).min(self.ow).max(lo);
        (lo, hi)
    }
}

/// For stride 1 and OW = W (a "same" convolution), the column row of kernel offset
/// `(r, s)` is the image plane shifted by `(r - pad)·W + (s - pad)`: one contiguous copy
/// `col[q] = x[q + shift]` for `q` in `span`, instead of one short copy per output row.
/// The output columns outside `valid_cols(s)` of the rows in `rows` then hold values that
/// wrapped in from the neighbouring image row, and are zeroed.
struct Flat {
    shift: isize,
    span: std::ops::Range<usize>,
    rows: std::ops::Range<usize>,
}

impl Geometry {
    fn flat(&self, r: usize, s: usize) -> Option<Flat> {
        if self.stride != 1 || self.ow != self.w {
            return None;
        }
        let (w, hw, pad) = (
            self.w as isize,
            (self.h * self.w) as isize,
            self.pad as isize,
        );
        let shift = (r as isize - pad) * w + s as isize - pad;
        // The rows whose source row oh + r - pad lies inside the image.
        let lo = self.pad.saturating_sub(r).min(self.oh);
        let rows = lo..(self.h + self.pad).saturating_sub(r).clamp(lo, self.oh);
        // Clamped into the rows' range too: on a plane smaller than the kernel reaches (a
        // 1×1 image under a 3×3 kernel), an offset may see nothing but padding.
        let end = (rows.end * self.ow) as isize;
        let q0 = ((rows.start * self.ow) as isize).max(-shift).min(end);
        let q1 = end.min(hw - shift).max(q0);
        Some(Flat {
            shift,
            span: q0 as usize..q1 as usize,
            rows,
        })
    }
}

/// Zeroes the output columns outside `[lo, hi)` of each row in `rows` of a column row.
fn zero_edges(d: &mut [f32], g: &Geometry, rows: std::ops::Range<usize>, (lo, hi): (usize, usize)) {
    if lo == 0 && hi == g.ow {
        return;
    }
    for oh in rows {
        let d = &mut d[oh * g.ow..(oh + 1) * g.ow];
        zero_few(&mut d[..lo]);
        zero_few(&mut d[hi..]);
    }
}

/// Zeroes a slice of usually one or two elements (the padding) with plain stores: `fill`
/// becomes a `memset` call, which costs more than the stores.
fn zero_few(d: &mut [f32]) {
    match d {
        [] => {}
        [a] => *a = 0.0,
        [a, b] => (*a, *b) = (0.0, 0.0),
        d => d.fill(0.0),
    }
}

/// Unfolds one image `x` (C, H, W) into `col` (C·R·S, OH·OW; row stride `col_ld`).
fn im2col(x: &[f32], g: &Geometry, col: &mut [f32]) {
    let (ohw, ld) = (g.ohw(), g.col_ld());
    for c in 0..g.c {
        let xc = &x[c * g.h * g.w..(c + 1) * g.h * g.w];
        for r in 0..g.r {
            for s in 0..g.s {
                let row = (c * g.r + r) * g.s + s;
                let dst = &mut col[row * ld..row * ld + ohw];
                if let Some(f) = g.flat(r, s) {
                    dst[..f.span.start].fill(0.0);
                    if !f.span.is_empty() {
                        let src = (f.span.start as isize + f.shift) as usize;
                        dst[f.span.clone()].copy_from_slice(&xc[src..src + f.span.len()]);
                    }
                    dst[f.span.end..].fill(0.0);
                    zero_edges(dst, g, f.rows, g.valid_cols(s));
                    continue;
                }
                for oh in 0..g.oh {
                    let d = &mut dst[oh * g.ow..(oh + 1) * g.ow];
                    let ih = (oh * g.stride + r).wrapping_sub(g.pad);
                    if ih >= g.h {
                        d.fill(0.0);
                        continue;
                    }
                    let xr = &xc[ih * g.w..(ih + 1) * g.w];
                    if g.stride == 1 {
                        let (lo, hi) = g.valid_cols(s);
                        d[..lo].fill(0.0);
                        d[lo..hi].copy_from_slice(&xr[lo + s - g.pad..hi + s - g.pad]);
                        d[hi..].fill(0.0);
                    } else {
                        for (ow, v) in d.iter_mut().enumerate() {
                            let iw = (ow * g.stride + s).wrapping_sub(g.pad);
                            *v = if iw < g.w { xr[iw] } else { 0.0 };
                        }
                    }
                }
            }
        }
    }
}

/// Folds `col` (C·R·S, OH·OW; row stride `col_ld`) back into one image `dx` (C, H, W),
/// adding overlaps. `dx` may be uninitialised: it is zeroed first. `col` is scratch: in
/// `Flat` rows the wrapped columns are zeroed in place.
fn col2im(col: &mut [f32], g: &Geometry, dx: &mut [MaybeUninit<f32>]) {
    let (ohw, ld) = (g.ohw(), g.col_ld());
    let dx = zeroed(dx);
    for c in 0..g.c {
        let xc = &mut dx[c * g.h * g.w..(c + 1) * g.h * g.w];
        for r in 0..g.r {
            for s in 0..g.s {
                let row = (c * g.r + r) * g.s + s;
                let src = &mut col[row * ld..row * ld + ohw];
                if let Some(f) = g.flat(r, s) {
                    // The wrapped columns add zero (they are not part of the sum).
                    zero_edges(src, g, f.rows, g.valid_cols(s));
                    if f.span.is_empty() {
                        continue;
                    }
                    let at = (f.span.start as isize + f.shift) as usize;
                    let xs = &mut xc[at..at + f.span.len()];
                    for (a, b) in xs.iter_mut().zip(&src[f.span]) {
                        *a += b;
                    }
                    continue;
                }
                let src = &*src;
                for oh in 0..g.oh {
                    let ih = (oh * g.stride + r).wrapping_sub(g.pad);
                    if ih >= g.h {
                        continue;
                    }
                    let d = &src[oh * g.ow..(oh + 1) * g.ow];
                    let xr = &mut xc[ih * g.w..(ih + 1) * g.w];
                    if g.stride == 1 {
                        let (lo, hi) = g.valid_cols(s);
                        let xs = &mut xr[lo + s - g.pad..hi + s - g.pad];
                        for (a, b) in xs.iter_mut().zip(&d[lo..hi]) {
                            *a += b;
                        }
                    } else {
                        for (ow, v) in d.iter().enumerate() {
                            let iw = (ow * g.stride + s).wrapping_sub(g.pad);
                            if iw < g.w {
                                xr[iw] += v;
                            }
                        }
                    }
                }
            }
        }
    }
}

thread_local! {
    /// Per-thread column buffers, kept across calls and steps: every element is written
    /// before it is read (im2col writes whole rows, gemm overwrites), so they are never
    /// zero-filled again.
    static SCRATCH: std::cell::RefCell<(Vec<f32>, Vec<f32>)> =
        const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// Runs `f` with this thread's two scratch buffers of `len` elements each.
fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32], &mut [f32]) -> R) -> R {
    SCRATCH.with(|s| {
        let mut s = s.borrow_mut();
        let (a, b) = &mut *s;
        if a.len() < len {
            a.resize(len, 0.0);
            b.resize(len, 0.0);
        }
        f(&mut a[..len], &mut b[..len])
    })
}

/// `dst (cols × rows) = srcᵀ` for a row-major `src (rows × cols)`, in blocks of 8 source
/// rows (8 lines: one L1 set's worth when the rows are 4 KiB apart) by 16 columns.
fn transpose(src: &[f32], rows: usize, cols: usize, dst: &mut [f32]) {
    const R: usize = 8;
    const C: usize = 16;
    for r0 in (0..rows).step_by(R) {
        let r1 = (r0 + R).min(rows);
        for c0 in (0..cols).step_by(C) {
            let c1 = (c0 + C).min(cols);
            for (r, row) in src[r0 * cols..r1 * cols].chunks_exact(cols).enumerate() {
                for (c, &v) in row[c0..c1].iter().enumerate() {
                    dst[(c0 + c) * rows + r0 + r] = v;
                }
            }
        }
    }
}

/// `dst (m×n, row-major, row stride `ld`) = [dst +] a (m×k) · b (k×n)`, on this thread.
#[allow(clippy::too_many_arguments)]
fn matmul(
    kernel: Microkernel,
    dst: &mut [f32],
    ld: usize,
    (m, n, k): (usize, usize, usize),
    a: Mat,
    b: Mat,
    accumulate: bool,
) {
    // SAFETY: a `&mut [f32]` is initialised `MaybeUninit<f32>` of the same layout.
    let dst = unsafe { &mut *(dst as *mut [f32] as *mut [MaybeUninit<f32>]) };
    matmul_into(kernel, dst, ld, (m, n, k), a, b, accumulate)
}

/// `matmul` into a possibly uninitialised `dst`, which is only written unless `accumulate`
/// (then it must be initialised).
fn matmul_into(
    kernel: Microkernel,
    dst: &mut [MaybeUninit<f32>],
    ld: usize,
    (m, n, k): (usize, usize, usize),
    a: Mat,
    b: Mat,
    accumulate: bool,
) {
    assert!(n <= ld && dst.len() >= (m - 1) * ld + n);
    // SAFETY: `dst` holds the m×n matrix at row stride `ld` (checked above); the callers
    // size `a` and `b` from the same geometry, m×k and k×n under their strides. `dst` is
    // read only when `accumulate`; `kernel` is the model's, chosen for this CPU.
    unsafe {
        gemm::gemm(
            kernel,
            dst.as_mut_ptr().cast::<f32>(),
            ld,
            (m, n, k),
            a,
            b,
            accumulate,
        )
    }
}

/// The forward pass on slices: `y` (N, groups·K, OH, OW) of `groups` convolutions of
/// geometry `g` side by side in the channels (`w` holds each group's weights in turn).
/// A group of an image is a contiguous block of its channels, so each (image, group) is
/// the very computation of an ungrouped convolution's image: the same bits.
pub fn forward(x: &[f32], w: &[f32], g: &Geometry, groups: usize, kernel: Microkernel) -> Vec<f32> {
    let (crs, ohw, chw) = (g.crs(), g.ohw(), g.chw());
    let (yg, wg) = (g.k * ohw, g.k * crs);
    // SAFETY: gemm writes every element of each image's output (`accumulate` false).
    unsafe {
        filled_vec(g.n * groups * yg, |y| {
            y.par_chunks_mut(groups * yg)
                .zip(x.par_chunks(groups * chw))
                .for_each(|(yi, xi)| {
                    with_scratch(crs * g.col_ld(), |col, _| {
                        for (q, yq) in yi.chunks_mut(yg).enumerate() {
                            im2col(&xi[q * chw..(q + 1) * chw], g, col);
                            let wq = &w[q * wg..(q + 1) * wg];
                            let (a, b) = (Mat::rows(wq, crs), Mat::rows(col, g.col_ld()));
                            matmul_into(kernel, yq, ohw, (g.k, ohw, crs), a, b, false);
                        }
                    })
                })
        })
    }
}

// Long: the two gradients share one pass over each chunk of images (one im2col per image
// and group), and the order of the weight gradient's sums is the bits' contract; split, the
// pass would be made twice or its order spread over functions.
/// Both gradients on slices, as one vector `[dx (N, groups·C, H, W), dW (groups·K, C, R,
/// S)]` (the backward op's single output), for `groups` convolutions of geometry `g` side
/// by side as in `forward`. Each group's weight gradient is summed over the same chunks of
/// images in the same order as an ungrouped convolution's.
pub fn backward(
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    g: &Geometry,
    groups: usize,
    kernel: Microkernel,
) -> Vec<f32> {
    let (crs, ohw, chw) = (g.crs(), g.ohw(), g.chw());
    let (yg, wg) = (g.k * ohw, g.k * crs);
    // The input gradient's convolution and each group's weights for it, where it applies.
    let flipped = transposed(g).map(|t| {
        let wts: Vec<Vec<f32>> = (0..groups)
            .map(|q| flip(&w[q * wg..(q + 1) * wg], g))
            .collect();
        (t, wts)
    });
    let ld = g.col_ld();
    let scratch = (crs * ld).max(flipped.as_ref().map_or(0, |(t, _)| t.crs() * t.col_ld()));
    // SAFETY: each image of dx is written by gemm (`accumulate` false) or zeroed and then
    // filled by col2im; dW is zeroed before the sums.
    unsafe {
        filled_vec(groups * g.grads_len(), |out| {
            let (dx, dw) = out.split_at_mut(g.n * groups * chw);
            let partials: Vec<Vec<f32>> = dx
                .par_chunks_mut(CHUNK * groups * chw)
                .zip(x.par_chunks(CHUNK * groups * chw))
                .zip(dy.par_chunks(CHUNK * groups * yg))
                .map(|((dxc, xc), dyc)| {
                    // Each group's dWᵀ (C·R·S × K): its product reads col(x) and dyᵀ in
                    // place.
                    let mut dwt = vec![0f32; groups * wg];
                    let mut dyt = vec![0f32; yg];
                    with_scratch(scratch, |col, dcol| {
                        let images = dxc
                            .chunks_mut(groups * chw)
                            .zip(xc.chunks(groups * chw))
                            .zip(dyc.chunks(groups * yg));
                        for ((dxn, xn), dyn_img) in images {
                            for q in 0..groups {
                                let xi = &xn[q * chw..(q + 1) * chw];
                                let dyi = &dyn_img[q * yg..(q + 1) * yg];
                                let dxi = &mut dxn[q * chw..(q + 1) * chw];
                                let dwq = &mut dwt[q * wg..(q + 1) * wg];
                                let wq = &w[q * wg..(q + 1) * wg];
                                im2col(xi, g, col);
                                // dWᵀ += col(x[n]) · dy[n]ᵀ: each row of col(x[n]) is read
                                // in order and dy[n]ᵀ's rows are contiguous, so neither
                                // operand is packed (dW = dy[n] · col(x[n])ᵀ would gather
                                // col's columns).
                                transpose(dyi, g.k, ohw, &mut dyt);
                                let (a, b) = (Mat::rows(col, ld), Mat::rows(&dyt, g.k));
                                matmul(kernel, dwq, g.k, (crs, g.k, ohw), a, b, true);
                                match &flipped {
                                    // dx[n] = W' · col'(dy[n])
                                    Some((t, wts)) => {
                                        im2col(dyi, t, dcol);
                                        let a = Mat::rows(&wts[q], t.crs());
                                        let b = Mat::rows(dcol, t.col_ld());
                                        let shape = (t.k, t.ohw(), t.crs());
                                        matmul_into(kernel, dxi, t.ohw(), shape, a, b, false);
                                    }
                                    // dx[n] = col2im(Wᵀ · dy[n])
                                    None => {
                                        let a = Mat::transposed(wq, crs);
                                        let b = Mat::rows(dyi, ohw);
                                        matmul(kernel, dcol, ld, (crs, ohw, g.k), a, b, false);
                                        col2im(dcol, g, dxi);
                                    }
                                }
                            }
                        }
                    });
                    dwt
                })
                .collect();
            // The chunks' dWᵀ summed in chunk order, into dW's layout, group by group.
            let dw = zeroed(dw);
            for p in partials {
                for (dwq, pq) in dw.chunks_exact_mut(wg).zip(p.chunks_exact(wg)) {
                    for (c, row) in pq.chunks_exact(g.k).enumerate() {
                        for (k, v) in row.iter().enumerate() {
                            dwq[k * crs + c] += v;
                        }
                    }
                }
            }
        })
    }
}

/// With stride 1 and a square kernel, the input gradient is itself a stride-1
/// convolution: `dx = conv(dy, W')` with padding `R - 1 - pad` and output H×W, where
/// `W'[c, k, r, s] = W[k, c, R-1-r, S-1-s]` (`flip`). It is then im2col(dy) and one gemm
/// of depth K·R·S written straight into dx, instead of a gemm of depth K (short: the
/// microkernel mostly loads and stores) into C·R·S column rows that col2im folds back.
/// The geometry of that convolution, where it applies.
fn transposed(g: &Geometry) -> Option<Geometry> {
    if g.stride != 1 || g.r != g.s || g.pad >= g.r {
        return None;
    }
    let t = Geometry::new(
        &[g.n, g.k, g.oh, g.ow],
        &[g.c, g.k, g.r, g.s],
        1,
        g.r - 1 - g.pad,
    );
    t.ok().filter(|t| t.oh == g.h && t.ow == g.w)
}

/// `W'` (C, K, R, S) of `transposed`: W with input and output channels swapped and the
/// kernel turned by 180°.
fn flip(w: &[f32], g: &Geometry) -> Vec<f32> {
    let mut out = vec![0f32; w.len()];
    for k in 0..g.k {
        for c in 0..g.c {
            for r in 0..g.r {
                for s in 0..g.s {
                    let src = ((k * g.c + c) * g.r + (g.r - 1 - r)) * g.s + (g.s - 1 - s);
                    out[((c * g.k + k) * g.r + r) * g.s + s] = w[src];
                }
            }
        }
    }
    out
}
