//! The product against its definition, bit for bit: each element one chain of `mul_add`
//! over the depth in order, from C or from +0. Shapes cover the microkernel's edges (rows
//! not a multiple of 6, columns not a multiple of 16), depths over one block (`KC`), one
//! row, one column, and operands read in place, transposed or packed.

use super::*;
use crate::model::kernels::level::{CpuFeatures, CpuKernelChoice};
use crate::rng::Rng;

/// The definition, element by element.
fn reference(c: &mut [f32], (m, n, k): (usize, usize, usize), a: Mat, b: Mat, acc: bool) {
    for i in 0..m {
        for j in 0..n {
            let mut s = if acc { c[i * n + j] } else { 0.0 };
            for p in 0..k {
                // SAFETY: (i, p) and (p, j) lie in the test's operands.
                let (x, y) = unsafe { (*a.at(i, p), *b.at(p, j)) };
                s = x.mul_add(y, s);
            }
            c[i * n + j] = s;
        }
    }
}

/// Every microkernel this CPU runs.
fn kernels() -> Vec<Microkernel> {
    let mut v = vec![Microkernel::Portable];
    for choice in [CpuKernelChoice::Auto, CpuKernelChoice::Avx512] {
        if let Ok(k) = Microkernel::detect(choice) {
            if !v.contains(&k) {
                v.push(k);
            }
        }
    }
    v
}

fn random(len: usize, rng: &mut Rng) -> Vec<f32> {
    (0..len).map(|_| rng.normal() as f32).collect()
}

/// The operands of an m×k by k×n product, each row-major or transposed in storage.
fn operands(
    (m, n, k): (usize, usize, usize),
    (at, bt): (bool, bool),
    rng: &mut Rng,
) -> (Vec<f32>, Vec<f32>, Mat, Mat) {
    let (av, bv) = (random(m * k, rng), random(k * n, rng));
    let a = if at {
        Mat::transposed(&av, m)
    } else {
        Mat::rows(&av, k)
    };
    let b = if bt {
        Mat::transposed(&bv, k)
    } else {
        Mat::rows(&bv, n)
    };
    (av, bv, a, b)
}

#[test]
fn every_kernel_gives_the_definitions_bits() {
    let mut rng = Rng::new(290);
    let shapes = [
        (1, 1, 1),
        (6, 16, 9),
        (16, 1024, 27),
        (7, 33, 300),
        (13, 17, 600),
        (64, 100, 64),
        (1, 40, 70),
        (40, 1, 70),
        (5, 3, 0),
        (20, 576, 513),
        (6, 33, 17),
        (3, 64, 1100),
    ];
    for (s, &shape) in shapes.iter().enumerate() {
        for layout in [(false, false), (true, false), (false, true), (true, true)] {
            let (_av, _bv, a, b) = operands(shape, layout, &mut rng);
            let (m, n, _) = shape;
            let start = random(m * n, &mut rng);
            for acc in [false, true] {
                let mut want = start.clone();
                reference(&mut want, shape, a, b, acc);
                for kernel in kernels() {
                    let mut got = start.clone();
                    // SAFETY: the operands and the output are sized for the shape.
                    unsafe { gemm(kernel, got.as_mut_ptr(), n, shape, a, b, acc) };
                    let same = got
                        .iter()
                        .zip(&want)
                        .all(|(x, y)| x.to_bits() == y.to_bits());
                    assert!(
                        same,
                        "case {s} {shape:?} layout {layout:?} accumulate {acc} {kernel:?}"
                    );
                }
            }
        }
    }
}

/// The row stride of the output may exceed its columns (the convolution's column rows).
#[test]
fn writes_only_the_output_rows_columns() {
    let mut rng = Rng::new(291);
    let (m, n, k, ld) = (9, 20, 30, 37);
    let (_av, _bv, a, b) = operands((m, n, k), (false, false), &mut rng);
    let mut want = vec![0f32; m * n];
    reference(&mut want, (m, n, k), a, b, false);
    for kernel in kernels() {
        let mut got = vec![f32::NAN; m * ld];
        // SAFETY: m rows of ld elements hold the m×n output at row stride ld.
        unsafe { gemm(kernel, got.as_mut_ptr(), ld, (m, n, k), a, b, false) };
        for i in 0..m {
            let row = &got[i * ld..(i + 1) * ld];
            assert!(row[..n]
                .iter()
                .zip(&want[i * n..])
                .all(|(x, y)| x.to_bits() == y.to_bits()));
            assert!(
                row[n..].iter().all(|x| x.is_nan()),
                "{kernel:?} wrote past row {i}"
            );
        }
    }
}

#[test]
fn the_detected_kernel_is_what_the_level_promises() {
    let f = CpuFeatures::detect();
    let k = Microkernel::auto();
    if cfg!(target_arch = "x86_64") && f.avx2 && f.fma {
        assert_eq!(k, Microkernel::Avx2Fma);
    } else {
        assert_eq!(k, Microkernel::Portable);
    }
    eprintln!("microkernels compared on this CPU: {:?}", kernels());
}
