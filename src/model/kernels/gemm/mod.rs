//! lecal's matrix product on the CPU, `C = [C +] A·B`, for the convolution and the linear
//! layers. Every element of C is one chain of fused multiply-adds over the depth, in
//! increasing order, starting from C's value (accumulating) or from +0:
//!
//! `c ← fma(a[i][p], b[p][j], c)` for `p = 0, 1, …, k − 1`
//!
//! Blocking, vector width and threads decide only which elements are computed together,
//! never the operations of one element, so the product is the same bits on every CPU: the
//! AVX2 + FMA microkernel (`x86.rs`), the opt-in AVX-512 one (`x86_512.rs`) and the
//! portable one (`portable.rs`: `f32::mul_add`, an exactly rounded fused multiply-add on
//! every target) agree bit for bit (`tests.rs`).
//! The `gemm` crate, used before, summed each block of the depth on its own and added the
//! blocks, with blocks sized from the detected cache sizes and vector width: its bits
//! changed with the CPU (issue 29).
//!
//! A microkernel computes an `R × NR` tile (`R ≤ 6` rows of A broadcast, `NR` columns of
//! B as vectors: 16, or 32 with AVX-512) over a block of at most `KC` depth steps, loading
//! the tile from C first except at the first step of a product that does not accumulate.
//! A is read in place through its strides; B is read in place where its columns are
//! contiguous, else packed `NR` columns at a time (zero-padded at the right edge).

mod portable;
#[cfg(target_arch = "x86_64")]
mod x86;
#[cfg(target_arch = "x86_64")]
mod x86_512;

pub use super::level::Microkernel;
use std::cell::RefCell;

/// Rows of A per microkernel call.
pub const MR: usize = 6;
/// Columns of B per microkernel call, but the AVX-512 one's (`Microkernel::nr`).
pub const NR: usize = 16;
/// The largest block of depth steps per microkernel call (its B panel stays in L1).
const KC: usize = 256;

/// A matrix view: `rows × cols` elements at `ptr + r·row_stride + c·col_stride`.
#[derive(Debug, Clone, Copy)]
pub struct Mat {
    pub ptr: *const f32,
    pub row_stride: isize,
    pub col_stride: isize,
}

// SAFETY: a `Mat` only reads, and whoever makes one keeps its memory borrowed and
// unchanged for as long as the product runs, on whichever threads.
unsafe impl Send for Mat {}
// SAFETY: as for `Send`.
unsafe impl Sync for Mat {}

impl Mat {
    /// A row-major matrix of `cols` columns.
    pub fn rows(p: &[f32], cols: usize) -> Self {
        Self {
            ptr: p.as_ptr(),
            row_stride: cols as isize,
            col_stride: 1,
        }
    }

    /// The transpose of a row-major matrix of `cols` columns.
    pub fn transposed(p: &[f32], cols: usize) -> Self {
        Self {
            ptr: p.as_ptr(),
            row_stride: 1,
            col_stride: cols as isize,
        }
    }

    fn t(self) -> Self {
        Self {
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }

    /// # Safety
    /// `(r, c)` must lie inside the matrix.
    unsafe fn at(self, r: usize, c: usize) -> *const f32 {
        // SAFETY: the caller's promise: the element is part of the matrix.
        unsafe {
            self.ptr
                .offset(r as isize * self.row_stride + c as isize * self.col_stride)
        }
    }
}

/// Where the product goes: `m × n` elements at `ptr + i·row_stride + j·col_stride`.
#[derive(Debug, Clone, Copy)]
struct Out {
    ptr: *mut f32,
    row_stride: isize,
    col_stride: isize,
}

impl Out {
    /// # Safety
    /// `(i, j)` must lie inside the output.
    unsafe fn at(self, i: usize, j: usize) -> *mut f32 {
        // SAFETY: the caller's promise.
        unsafe {
            self.ptr
                .offset(i as isize * self.row_stride + j as isize * self.col_stride)
        }
    }
}

/// One tile's work for a microkernel: `rows ≤ MR` rows of A from `a` (row stride `ars`,
/// depth stride `acs`), `depth` steps of a B panel of the kernel's `nr` contiguous columns
/// from `b` (depth stride `brs`), into the row-major tile `c` (row stride `ldc`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tile {
    pub rows: usize,
    pub depth: usize,
    pub a: *const f32,
    pub ars: isize,
    pub acs: isize,
    pub b: *const f32,
    pub brs: isize,
    pub c: *mut f32,
    pub ldc: usize,
    /// Start from +0 instead of loading the tile.
    pub first: bool,
}

impl Microkernel {
    /// The columns of its tiles.
    pub fn nr(self) -> usize {
        match self {
            Microkernel::Avx512 => 2 * NR,
            _ => NR,
        }
    }

    /// # Safety
    /// `t` describes memory valid for its reads and writes; the CPU has the microkernel's
    /// features (`Microkernel::choose` picks only those it has).
    unsafe fn run(self, t: &Tile) {
        match self {
            // SAFETY: the caller's promises, passed on.
            #[cfg(target_arch = "x86_64")]
            Microkernel::Avx2Fma => unsafe { x86::tile(t) },
            #[cfg(target_arch = "x86_64")]
            Microkernel::Avx512 => unsafe { x86_512::tile(t) },
            _ => unsafe { portable::tile(t, self.nr()) },
        }
    }
}

thread_local! {
    /// Per-thread packed B panels and an edge tile, kept across calls.
    static PANEL: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// `dst (m × n, row-major, row stride ld) = [dst +] a (m × k) · b (k × n)` on this thread.
///
/// # Safety
/// `a` and `b` must be valid for reads of `m × k` and `k × n` elements under their strides,
/// and `dst` for writes of `m` rows of `n` at row stride `ld` (and reads where
/// `accumulate`; it may be uninitialised otherwise); `kernel` must be supported by the CPU.
#[allow(clippy::too_many_arguments)]
pub unsafe fn gemm(
    kernel: Microkernel,
    dst: *mut f32,
    ld: usize,
    (m, n, k): (usize, usize, usize),
    a: Mat,
    b: Mat,
    accumulate: bool,
) {
    let out = Out {
        ptr: dst,
        row_stride: ld as isize,
        col_stride: 1,
    };
    // A product of one column computes as its transpose, one row of n: a vector of B's
    // rows against A's, 16 elements of C a call instead of one (`fma` is commutative, so
    // every element's operations are unchanged).
    // SAFETY: the caller's promises, passed on (the transposed views cover the same
    // elements).
    unsafe {
        if n == 1 && m > 1 {
            let out_t = Out {
                row_stride: out.col_stride,
                col_stride: out.row_stride,
                ..out
            };
            product(kernel, out_t, (1, m, k), b.t(), a.t(), accumulate)
        } else {
            product(kernel, out, (m, n, k), a, b, accumulate)
        }
    }
}

/// # Safety
/// As `gemm`'s, with `out` in place of `dst` and `ld`.
unsafe fn product(
    kernel: Microkernel,
    out: Out,
    (m, n, k): (usize, usize, usize),
    a: Mat,
    b: Mat,
    accumulate: bool,
) {
    if k == 0 {
        if !accumulate {
            for_each(m, n, |i, j| {
                // SAFETY: (i, j) is an element of the output.
                unsafe { *out.at(i, j) = 0.0 }
            });
        }
        return;
    }
    // Equal blocks of at most KC steps: the split changes no element's operations.
    let kc = k.div_ceil(k.div_ceil(KC));
    let nr = kernel.nr();
    PANEL.with(|panel| {
        let mut panel = panel.borrow_mut();
        let need = kc * nr + MR * nr;
        if panel.len() < need {
            panel.resize(need, 0.0);
        }
        let (packed, edge) = panel.split_at_mut(kc * nr);
        for p0 in (0..k).step_by(kc) {
            let depth = kc.min(k - p0);
            for j0 in (0..n).step_by(nr) {
                let cols = nr.min(n - j0);
                // SAFETY: (p0, j0) lies in B; the panel holds depth × nr elements.
                let (bp, brs) = unsafe {
                    if cols == nr && b.col_stride == 1 {
                        (b.at(p0, j0), b.row_stride)
                    } else {
                        pack(b, (p0, depth), (j0, cols), nr, packed);
                        (packed.as_ptr(), nr as isize)
                    }
                };
                for i0 in (0..m).step_by(MR) {
                    let t = Tile {
                        rows: MR.min(m - i0),
                        depth,
                        // SAFETY: (i0, p0) lies in A.
                        a: unsafe { a.at(i0, p0) },
                        ars: a.row_stride,
                        acs: a.col_stride,
                        b: bp,
                        brs,
                        c: std::ptr::null_mut(),
                        ldc: 0,
                        first: p0 == 0 && !accumulate,
                    };
                    // SAFETY: the tile's rows × cols elements from (i0, j0) lie in the
                    // output; the edge tile holds MR × nr.
                    unsafe { tile(kernel, t, out, (i0, j0, cols), edge) };
                }
            }
        }
    })
}

/// Runs `t` into the output's `t.rows × cols` elements from `(i, j)`: in place where they
/// are a full row-major tile, else through the `edge` tile.
///
/// # Safety
/// The elements lie in the output; `edge` holds `MR × kernel.nr()`; `t` as `Microkernel::run`
/// asks but for `c` and `ldc`, set here.
unsafe fn tile(
    kernel: Microkernel,
    mut t: Tile,
    out: Out,
    (i, j, cols): (usize, usize, usize),
    edge: &mut [f32],
) {
    let nr = kernel.nr();
    // SAFETY: the caller's promises.
    unsafe {
        if cols == nr && out.col_stride == 1 {
            (t.c, t.ldc) = (out.at(i, j), out.row_stride as usize);
            return kernel.run(&t);
        }
        (t.c, t.ldc) = (edge.as_mut_ptr(), nr);
        if !t.first {
            for_each(t.rows, cols, |r, c| {
                edge[r * nr + c] = *out.at(i + r, j + c)
            });
        }
        kernel.run(&t);
        for_each(t.rows, cols, |r, c| {
            *out.at(i + r, j + c) = edge[r * nr + c]
        });
    }
}

fn for_each(rows: usize, cols: usize, mut f: impl FnMut(usize, usize)) {
    for i in 0..rows {
        for j in 0..cols {
            f(i, j)
        }
    }
}

/// Packs `depth` rows from `p0` of B's columns `j0 .. j0 + cols` into `nr`-wide rows of
/// `dst`, zeroing the columns past `cols`.
///
/// # Safety
/// The block must lie in B.
unsafe fn pack(
    b: Mat,
    (p0, depth): (usize, usize),
    (j0, cols): (usize, usize),
    nr: usize,
    dst: &mut [f32],
) {
    let dst = &mut dst[..depth * nr];
    if cols < nr {
        dst.fill(0.0);
    }
    // Column by column: B's columns are what is contiguous where it is packed at all.
    for j in 0..cols {
        for p in 0..depth {
            // SAFETY: the caller's promise.
            dst[p * nr + j] = unsafe { *b.at(p0 + p, j0 + j) };
        }
    }
}

#[cfg(test)]
mod tests;
