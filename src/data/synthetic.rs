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
//!
//! `confusion` (0 by default) makes classes confusable in a known way. Classes 2i and
//! 2i+1 are partners (vertical and horizontal stripes, checkerboard and rings, ...). A
//! share `confusion` of the images is drawn between a pair: the image blends the two
//! textures with weight s on the second one, s uniform on [0, 1], and its label is the
//! second class with probability s, the first otherwise. The true posterior of such an
//! image is (1 - s, s) over the pair, which hard labels cannot say and soft labels can;
//! a network that memorises its training labels becomes overconfident on them. Given its
//! label, an image is drawn between with probability `confusion`, and then its own
//! texture has weight √u (u uniform), which is the same joint distribution with balanced
//! classes.

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

/// The partner of `class` among `classes`, if it has one (an odd last class has none).
fn partner(class: usize, classes: usize) -> Option<usize> {
    Some(class ^ 1).filter(|&p| p < classes)
}

/// The texture frequency of `class`'s band (families repeat at higher bands).
fn band_frequency(class: usize) -> f64 {
    1.3 + 1.1 * (class / FAMILIES) as f64
}

fn render(class: usize, blend: Option<(usize, f64)>, res: usize, r: &mut Rng, out: &mut [u8]) {
    let fam = class % FAMILIES;
    let jitter = 1.0 + 0.14 * r.normal();
    let freq = band_frequency(class) * jitter;
    // The partner's texture at its own band, with the same jitter, and its weight.
    let other = blend.map(|(p, w)| (p % FAMILIES, band_frequency(p) * jitter, w));
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
            let mut tex = texture(fam, freq, u, v, phase, tilt, centre);
            if let Some((pf, pfreq, w)) = other {
                let ptex = texture(pf, pfreq, u, v, phase, tilt, centre);
                tex = (1.0 - w) * tex + w * ptex;
            }
            let t = 0.5 + 0.5 * contrast * tex;
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
            let class = order[i] as usize;
            // Drawn only when asked for, so that confusion 0 gives the bytes it always gave.
            let blend = partner(class, classes)
                .filter(|_| spec.confusion > 0.0 && r.uniform() < spec.confusion)
                .map(|p| (p, 1.0 - r.uniform().sqrt()));
            render(class, blend, res, &mut r, out);
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
            confusion: 0.0,
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

    #[test]
    fn a_blend_runs_from_the_own_texture_to_the_partner_s() {
        let draw = |class, blend| {
            let mut out = vec![0u8; 3 * 8 * 8];
            render(class, blend, 8, &mut Rng::stream(9, "t", &[3]), &mut out);
            out
        };
        // Partners share their band (0 and 1) or not (4 and 5).
        for (c, p) in [(0, 1), (4, 5)] {
            assert_eq!(partner(c, 10), Some(p));
            assert_eq!(partner(p, 10), Some(c));
            assert_eq!(draw(c, Some((p, 0.0))), draw(c, None));
            assert_eq!(draw(c, Some((p, 1.0))), draw(p, None));
            let half = draw(c, Some((p, 0.5)));
            assert!(half != draw(c, None) && half != draw(p, None));
        }
        assert_eq!(partner(8, 9), None);
    }

    #[test]
    fn confusion_changes_images_not_labels_and_zero_leaves_the_spec_as_it_was() {
        let confused = SyntheticSpec {
            confusion: 0.5,
            ..spec()
        };
        let (a, b) = (generate(&spec(), 10, 8), generate(&confused, 10, 8));
        assert_eq!(a.train.labels, b.train.labels);
        assert_ne!(a.train.images, b.train.images);
        assert!(!toml::to_string(&spec()).unwrap().contains("confusion"));
        assert!(toml::to_string(&confused)
            .unwrap()
            .contains("confusion = 0.5"));
    }
}
