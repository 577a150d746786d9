//! The AVX-512 microkernel (x86-64-v4), opt-in (`--cpu-kernels avx512`): a tile's 32
//! columns as two 16-lane vectors per row, each depth step one `vfmadd` per vector with
//! the row's element of A broadcast. Lane by lane it is the portable microkernel's
//! `mul_add`, so the bits are the same as every other microkernel's.

use super::{Tile, MR};
use std::arch::x86_64::{
    __m512, _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_set1_ps, _mm512_setzero_ps, _mm512_storeu_ps,
};

/// # Safety
/// `t` describes memory valid for its reads and writes (32 columns), and the CPU has
/// AVX-512F.
pub(super) unsafe fn tile(t: &Tile) {
    // SAFETY: passed on.
    unsafe {
        match t.rows {
            1 => rows::<1>(t),
            2 => rows::<2>(t),
            3 => rows::<3>(t),
            4 => rows::<4>(t),
            5 => rows::<5>(t),
            _ => rows::<MR>(t),
        }
    }
}

/// # Safety
/// As `tile`'s, with `R == t.rows`.
#[target_feature(enable = "avx512f")]
unsafe fn rows<const R: usize>(t: &Tile) {
    // SAFETY: the tile's R rows of 32 elements at row stride ldc, its R rows of A over
    // `depth` steps and its `depth` rows of 32 elements of B are the caller's.
    unsafe {
        let mut lo: [__m512; R] = [_mm512_setzero_ps(); R];
        let mut hi: [__m512; R] = [_mm512_setzero_ps(); R];
        if !t.first {
            for i in 0..R {
                lo[i] = _mm512_loadu_ps(t.c.add(i * t.ldc));
                hi[i] = _mm512_loadu_ps(t.c.add(i * t.ldc + 16));
            }
        }
        let (mut a, mut b) = (t.a, t.b);
        for _ in 0..t.depth {
            let (b0, b1) = (_mm512_loadu_ps(b), _mm512_loadu_ps(b.add(16)));
            for i in 0..R {
                let av = _mm512_set1_ps(*a.offset(i as isize * t.ars));
                lo[i] = _mm512_fmadd_ps(av, b0, lo[i]);
                hi[i] = _mm512_fmadd_ps(av, b1, hi[i]);
            }
            a = a.offset(t.acs);
            b = b.offset(t.brs);
        }
        for i in 0..R {
            _mm512_storeu_ps(t.c.add(i * t.ldc), lo[i]);
            _mm512_storeu_ps(t.c.add(i * t.ldc + 16), hi[i]);
        }
    }
}
