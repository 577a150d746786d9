//! The portable microkernel: the definition of the product's arithmetic in plain Rust, one
//! `f32::mul_add` (an exactly rounded fused multiply-add on every target) per element and
//! depth step. Every other microkernel gives its bits.

use super::{Tile, MR, NR};

/// The widest tile a microkernel computes (the AVX-512 one's).
const WIDEST: usize = 2 * NR;

/// # Safety
/// `t` describes memory valid for its reads and writes, `nr ≤ 32` columns wide.
pub(super) unsafe fn tile(t: &Tile, nr: usize) {
    // SAFETY: passed on.
    unsafe {
        match t.rows {
            1 => rows::<1>(t, nr),
            2 => rows::<2>(t, nr),
            3 => rows::<3>(t, nr),
            4 => rows::<4>(t, nr),
            5 => rows::<5>(t, nr),
            _ => rows::<MR>(t, nr),
        }
    }
}

/// # Safety
/// As `tile`'s, with `R == t.rows`.
unsafe fn rows<const R: usize>(t: &Tile, nr: usize) {
    let mut acc = [[0f32; WIDEST]; R];
    // SAFETY: the tile's R rows of nr elements at row stride ldc, its R rows of A over
    // `depth` steps and its `depth` rows of nr elements of B are the caller's.
    unsafe {
        if !t.first {
            for (i, row) in acc.iter_mut().enumerate() {
                let c = std::slice::from_raw_parts(t.c.add(i * t.ldc), nr);
                row[..nr].copy_from_slice(c);
            }
        }
        for p in 0..t.depth {
            let b = std::slice::from_raw_parts(t.b.offset(p as isize * t.brs), nr);
            for (i, row) in acc.iter_mut().enumerate() {
                let a = *t.a.offset(i as isize * t.ars + p as isize * t.acs);
                for (c, &bv) in row.iter_mut().zip(b) {
                    *c = a.mul_add(bv, *c);
                }
            }
        }
        for (i, row) in acc.iter().enumerate() {
            std::slice::from_raw_parts_mut(t.c.add(i * t.ldc), nr).copy_from_slice(&row[..nr]);
        }
    }
}
