//! The matrix product of the linear layers and the methods' heads as a candle custom op:
//! on the CPU lecal's product (`gemm/`, the same bits on every CPU), candle's elsewhere.
//! candle's CPU `matmul` runs the `gemm` crate, whose bits depend on the CPU (issue 29).
//!
//! `a (…, m, k) · b (…, k, n)`, rank 2 or 3 with equal batch sizes, read in place through
//! the operands' strides (a transposed view costs no copy); both gradients are products
//! of the same op.

use super::gemm::{self, Mat, Microkernel};
use super::Kernels;
use candle_core::{CpuStorage, CustomOp2, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// `a · b` with `kernels`: lecal's product where it runs on the operands' device, else
/// candle's `matmul`.
pub fn matmul(a: &Tensor, b: &Tensor, kernels: Kernels) -> Result<Tensor> {
    let ranks = (a.rank(), b.rank());
    let f32s = a.dtype() == DType::F32 && b.dtype() == DType::F32;
    if !f32s || !kernels.lecal_matmul_on(a.device()) || !matches!(ranks, (2, 2) | (3, 3)) {
        return a.matmul(b);
    }
    a.apply_op2(b, Matmul { gemm: kernels.gemm })
}

/// `x · Wᵀ + bias` of a linear layer (`W` of shape `out × in`), for `x` of rank 2.
pub fn linear(x: &Tensor, w: &Tensor, bias: Option<&Tensor>, kernels: Kernels) -> Result<Tensor> {
    let y = matmul(x, &w.t()?, kernels)?;
    match bias {
        Some(b) => y.broadcast_add(b),
        None => Ok(y),
    }
}

struct Matmul {
    gemm: Microkernel,
}

/// Products above this many multiply-adds spread over the threads (by batch, or by
/// blocks of rows): the split decides only which thread computes an element.
const PARALLEL_FROM: usize = 1 << 18;

/// One operand's batch, rows, columns and strides from its layout.
fn operand(l: &Layout) -> Result<(usize, [usize; 2], [isize; 3])> {
    let (d, s) = (l.dims(), l.stride());
    Ok(match (d, s) {
        (&[r, c], &[sr, sc]) => (1, [r, c], [0, sr as isize, sc as isize]),
        (&[b, r, c], &[sb, sr, sc]) => (b, [r, c], [sb as isize, sr as isize, sc as isize]),
        _ => candle_core::bail!("matmul: operand of shape {d:?}"),
    })
}

impl CustomOp2 for Matmul {
    fn name(&self) -> &'static str {
        "lecal-matmul"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (batch, [m, k], sa) = operand(l1)?;
        let (batch_b, [k2, n], sb) = operand(l2)?;
        if batch != batch_b || k != k2 || l1.dims().len() != l2.dims().len() {
            candle_core::bail!("matmul: shapes {:?} and {:?}", l1.dims(), l2.dims());
        }
        let (CpuStorage::F32(a), CpuStorage::F32(b)) = (s1, s2) else {
            candle_core::bail!("matmul: operands must be f32");
        };
        // The operands' views of batch i from row r of A: inside their storages (candle's
        // layouts; i < batch, r < m).
        let (a, b) = (&a[l1.start_offset()..], &b[l2.start_offset()..]);
        let view = |p: &[f32], s: [isize; 3], i: usize, r: usize| Mat {
            // SAFETY: as said above.
            ptr: unsafe { p.as_ptr().offset(i as isize * s[0] + r as isize * s[1]) },
            row_stride: s[1],
            col_stride: s[2],
        };
        let (gemm, big) = (self.gemm, m * n * k >= PARALLEL_FROM);
        let one = |i: usize, out: &mut [f32], rows: std::ops::Range<usize>| {
            let (ma, mb) = (view(a, sa, i, rows.start), view(b, sb, i, 0));
            // SAFETY: `out` holds rows.len() × n; A and B are read inside their views;
            // the kernel is the model's, chosen for this CPU.
            unsafe { gemm::gemm(gemm, out.as_mut_ptr(), n, (rows.len(), n, k), ma, mb, false) }
        };
        let mut y = vec![0f32; batch * m * n];
        let rows_per = (gemm::MR * 8).max(m.div_ceil(rayon::current_num_threads() * 4));
        if big && batch > 1 {
            y.par_chunks_mut(m * n)
                .enumerate()
                .for_each(|(i, out)| one(i, out, 0..m));
        } else if big {
            y.par_chunks_mut(rows_per * n)
                .enumerate()
                .for_each(|(c, out)| {
                    let r0 = c * rows_per;
                    one(0, out, r0..r0 + out.len() / n)
                });
        } else {
            for (i, out) in y.chunks_mut(m * n).enumerate() {
                one(i, out, 0..m);
            }
        }
        let dims: Vec<usize> = match l1.dims() {
            [_, _] => vec![m, n],
            _ => vec![batch, m, n],
        };
        Ok((CpuStorage::F32(y), Shape::from(dims)))
    }

    fn bwd(
        &self,
        a: &Tensor,
        b: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let op = Matmul { gemm: self.gemm };
        let da = dy.apply_op2_no_bwd(&b.t()?, &op)?;
        let db = a.t()?.apply_op2_no_bwd(dy, &op)?;
        Ok((Some(da), Some(db)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::kernels::common::{random, values};
    use crate::rng::Rng;
    use candle_core::Var;

    /// Product and both gradients under Σ y·m, against candle's matmul (the same sums in
    /// another order: float32 rounding apart).
    fn check(a: &Tensor, b: &Tensor, transpose_b: bool) {
        let mut rng = Rng::new(7);
        let run = |lecal: bool| {
            let (va, vb) = (Var::from_tensor(a).unwrap(), Var::from_tensor(b).unwrap());
            let bt = if transpose_b {
                vb.as_tensor().t().unwrap()
            } else {
                vb.as_tensor().clone()
            };
            let y = if lecal {
                matmul(va.as_tensor(), &bt, Kernels::lecal()).unwrap()
            } else {
                va.as_tensor().matmul(&bt).unwrap()
            };
            (y, va, vb)
        };
        let (y, _, _) = run(true);
        let m = random(y.dims(), &mut rng);
        let mut outs = Vec::new();
        for lecal in [true, false] {
            let (y, va, vb) = run(lecal);
            let g = (&y * &m).unwrap().sum_all().unwrap().backward().unwrap();
            outs.push([
                values(&y),
                values(g.get(va.as_tensor()).unwrap()),
                values(g.get(vb.as_tensor()).unwrap()),
            ]);
        }
        for (what, (got, want)) in ["y", "da", "db"].iter().zip(outs[0].iter().zip(&outs[1])) {
            assert_eq!(got.len(), want.len());
            for (x, y) in got.iter().zip(want) {
                assert!(
                    (x - y).abs() <= 1e-4 * (1.0 + y.abs()),
                    "{what}: {x} vs {y}"
                );
            }
        }
    }

    #[test]
    fn matches_candles_matmul_with_both_gradients() {
        let mut rng = Rng::new(3);
        // A linear layer (b transposed in place), a plain product, a batched one with one
        // column (CRD's scores), and one large enough to spread over the threads.
        check(
            &random(&[64, 64], &mut rng),
            &random(&[100, 64], &mut rng),
            true,
        );
        check(
            &random(&[7, 13], &mut rng),
            &random(&[13, 5], &mut rng),
            false,
        );
        check(
            &random(&[4, 9, 6], &mut rng),
            &random(&[4, 6, 1], &mut rng),
            false,
        );
        check(
            &random(&[300, 40], &mut rng),
            &random(&[40, 70], &mut rng),
            false,
        );
        check(
            &random(&[3, 120, 40], &mut rng),
            &random(&[3, 40, 60], &mut rng),
            false,
        );
    }

    #[test]
    fn threads_do_not_change_the_bits() {
        let mut rng = Rng::new(4);
        let (a, b) = (random(&[300, 40], &mut rng), random(&[40, 70], &mut rng));
        let with = |threads| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| values(&matmul(&a, &b, Kernels::lecal()).unwrap()))
        };
        let one = with(1);
        assert!(one
            .iter()
            .zip(with(3))
            .all(|(x, y)| x.to_bits() == y.to_bits()));
    }
}
