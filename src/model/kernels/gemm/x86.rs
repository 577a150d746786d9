//! The AVX2 + FMA microkernel (x86-64-v3): a tile's 16 columns as two 8-lane vectors per
//! row, each depth step one `vfmadd` per vector with the row's element of A broadcast.
//! Lane by lane it is the portable microkernel's `mul_add`, so the bits are the same.

use super::{Tile, MR};
use std::arch::x86_64::{
    __m256, _mm256_fmadd_ps, _mm256_loadu_ps, _mm256_set1_ps, _mm256_setzero_ps, _mm256_storeu_ps,
};

/// # Safety
/// `t` describes memory valid for its reads and writes, and the CPU has AVX2 and FMA.
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
#[target_feature(enable = "avx2,fma")]
unsafe fn rows<const R: usize>(t: &Tile) {
    // SAFETY: the tile's R rows of 16 elements at row stride ldc, its R rows of A over
    // `depth` steps and its `depth` rows of 16 elements of B are the caller's.
    unsafe {
        let mut lo: [__m256; R] = [_mm256_setzero_ps(); R];
        let mut hi: [__m256; R] = [_mm256_setzero_ps(); R];
        if !t.first {
            for i in 0..R {
                lo[i] = _mm256_loadu_ps(t.c.add(i * t.ldc));
                hi[i] = _mm256_loadu_ps(t.c.add(i * t.ldc + 8));
            }
        }
        let (mut a, mut b) = (t.a, t.b);
        for _ in 0..t.depth {
            let (b0, b1) = (_mm256_loadu_ps(b), _mm256_loadu_ps(b.add(8)));
            for i in 0..R {
                let av = _mm256_set1_ps(*a.offset(i as isize * t.ars));
                lo[i] = _mm256_fmadd_ps(av, b0, lo[i]);
                hi[i] = _mm256_fmadd_ps(av, b1, hi[i]);
            }
            a = a.offset(t.acs);
            b = b.offset(t.brs);
        }
        for i in 0..R {
            _mm256_storeu_ps(t.c.add(i * t.ldc), lo[i]);
            _mm256_storeu_ps(t.c.add(i * t.ldc + 8), hi[i]);
        }
    }
}
