//! The built-in dataset: images generated procedurally from a seed, so that a fresh clone
//! runs the whole pipeline without downloading anything.
//!
//! A class is a texture family (vertical stripes, horizontal stripes, checkerboard, rings,
//! cross-hatch) at a low or a high spatial frequency: ten classes, all unchanged in kind by
//! a horizontal flip, so the training transform keeps labels true. Each image jitters the
//! frequency (the two bands overlap a little, so the Bayes error is above zero) and the
//! angle, picks a random phase, contrast, pair of colours and centre, and adds a
//! distracting disc and pixel noise. A small CNN learns it well above chance but not
//! perfectly in a few epochs. With more than ten classes the families repeat at further
//! frequency bands.

use super::{Dataset, Splits};
use crate::rng::Rng;
use crate::spec::SyntheticSpec;
use rayon::prelude::*;
use std::f64::consts::PI;

const PALETTE: [[f64; 3]; 6] = [
    [0.9, 0.2, 0.2],
    [0.2, 0.8, 0.3],
    [0.2, 0.3, 0.9],
    [0.9, 0.8, 0.2],
    [0.7, 0.3, 0.8],
    [0.3, 0.8, 0.8],
];

const FAMILIES: usize = 5;

/// Texture value in [-1, 1] of family `fam` at (u, v) in the unit square.
fn texture(fam: usize, f: f64, u: f64, v: f64, phase: f64, tilt: f64, centre: (f64, f64)) -> f64 {
    let w = 2.0 * PI * f;
    let (s, c) = tilt.sin_cos();
    // Small rotation about the image centre.
    let (x, y) = (u - 0.5, v - 0.5);
    let (ru, rv) = (x * c - y * s, x * s + y * c);
    match fam {
        0 => (w * ru + phase).sin(),
        1 => (w * rv + phase).sin(),
        2 => (w * ru + phase).sin() * (w * rv + 0.7 * phase).sin() * 1.6,
        3 => {
            let r = ((u - centre.0).powi(2) + (v - centre.1).powi(2)).sqrt();
            (w * r * 1.4 + phase).sin()
        }
        _ => 0.5 * ((w * 0.7 * (ru + rv) + phase).sin() + (w * 0.7 * (ru - rv) + phase).sin()),
    }
    .clamp(-1.0, 1.0)
}

fn render(class: usize, res: usize, r: &mut Rng, out: &mut [u8]) {
    let fam = class % FAMILIES;
    let band = class / FAMILIES;
    let freq = (1.3 + 1.1 * band as f64) * (1.0 + 0.14 * r.normal());
    let tilt = 0.12 * r.normal();
    let phase = 2.0 * PI * r.uniform();
    let centre = (0.3 + 0.4 * r.uniform(), 0.3 + 0.4 * r.uniform());
    let contrast = 0.5 + 0.5 * r.uniform();
    let ia = r.below(PALETTE.len() as u64) as usize;
    let ib = (ia + 1 + r.below(PALETTE.len() as u64 - 1) as usize) % PALETTE.len();
    let (a, b) = (PALETTE[ia], PALETTE[ib]);
    let disc = [r.uniform(), r.uniform(), 0.1 + 0.15 * r.uniform()];
    let disc_col = PALETTE[r.below(PALETTE.len() as u64) as usize];
    let n = res * res;
    for y in 0..res {
        for x in 0..res {
            let (u, v) = ((x as f64 + 0.5) / res as f64, (y as f64 + 0.5) / res as f64);
            let t = 0.5 + 0.5 * contrast * texture(fam, freq, u, v, phase, tilt, centre);
            let in_disc = (u - disc[0]).powi(2) + (v - disc[1]).powi(2) < disc[2].powi(2);
            for ch in 0..3 {
                let mut p = t * a[ch] + (1.0 - t) * b[ch];
                if in_disc {
                    p = 0.4 * p + 0.6 * disc_col[ch];
                }
                p += 0.06 * r.normal();
                out[ch * n + y * res + x] = (p.clamp(0.0, 1.0) * 255.0).round() as u8;
            }
        }
    }
}

fn split(spec: &SyntheticSpec, name: &str, n: usize, classes: usize, res: usize) -> Dataset {
    let size = 3 * res * res;
    let mut images = vec![0u8; n * size];
    // Balanced classes in a seeded order.
    let mut order: Vec<u16> = (0..n).map(|i| (i % classes) as u16).collect();
    Rng::stream(spec.data_seed, name, &[u64::MAX]).shuffle(&mut order);
    images
        .par_chunks_mut(size)
        .enumerate()
        .for_each(|(i, out)| {
            let mut r = Rng::stream(spec.data_seed, name, &[i as u64]);
            render(order[i] as usize, res, &mut r, out);
        });
    Dataset {
        images,
        labels: order,
        height: res,
        width: res,
        classes,
        files: None,
    }
}

/// Generates both splits. The same spec gives the same bytes on every machine.
pub fn generate(spec: &SyntheticSpec, classes: usize, resolution: usize) -> Splits {
    Splits {
        train: split(spec, "synthetic-train", spec.train, classes, resolution),
        test: split(spec, "synthetic-test", spec.test, classes, resolution),
        validation: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> SyntheticSpec {
        SyntheticSpec {
            train: 60,
            test: 20,
            data_seed: 5,
        }
    }

    #[test]
    fn same_seed_same_bytes_other_seed_other_bytes() {
        let a = generate(&spec(), 10, 16);
        let b = generate(&spec(), 10, 16);
        assert_eq!(a.train, b.train);
        let c = generate(
            &SyntheticSpec {
                data_seed: 6,
                ..spec()
            },
            10,
            16,
        );
        assert_ne!(a.train.images, c.train.images);
    }

    #[test]
    fn classes_are_balanced_and_train_differs_from_test() {
        let s = generate(&spec(), 10, 16);
        let mut counts = [0; 10];
        for &l in &s.train.labels {
            counts[l as usize] += 1;
        }
        assert_eq!(counts, [6; 10]);
        assert_eq!(s.train.images.len(), 60 * 3 * 16 * 16);
        assert_ne!(s.train.image(0), s.test.image(0));
    }
}
