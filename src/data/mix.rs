//! Batch augmentations of `methods.md`, applied to the normalised batch, every batch:
//! mixup (Zhang et al. 2018), CutMix (Yun et al. 2019) and RICAP (Takahashi et al. 2019).
//!
//! Each returns, per sample, the labels it is made of and their weights (summing to 1).
//! Without a teacher those weights are the training target; with teachers the student
//! and every teacher see the same mixed images, and the weights serve only a hard-label
//! term (`hard_weight` above 0).

use crate::rng::Rng;
use crate::spec::AugmentSpec;

/// Labels and weights of one mixed sample.
pub type LabelMix = Vec<(u16, f64)>;

/// A rectangle `x0..x1`, `y0..y1` in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    pub x0: usize,
    pub y0: usize,
    pub x1: usize,
    pub y1: usize,
}

impl Rect {
    pub fn area(&self) -> usize {
        (self.x1 - self.x0) * (self.y1 - self.y0)
    }
}

/// What a mixing step did, for the loss and for tests.
#[derive(Debug, Clone, PartialEq)]
pub struct Mixed {
    pub labels: Vec<LabelMix>,
    /// CutMix: the pasted box. RICAP: the four patches (source offset, destination rect).
    pub boxes: Vec<((usize, usize), Rect)>,
}

// Long: one match over the augmentations, each arm the paper's formula for its kind.
/// Mixes `x` (`b×3×h×w`, in place). `labels` are the batch's hard labels.
pub fn mix(
    aug: &AugmentSpec,
    x: &mut [f32],
    labels: &[u16],
    h: usize,
    w: usize,
    rng: &mut Rng,
) -> Mixed {
    let b = labels.len();
    let plain = || Mixed {
        labels: labels.iter().map(|&y| vec![(y, 1.0)]).collect(),
        boxes: Vec::new(),
    };
    match *aug {
        AugmentSpec::None => plain(),
        AugmentSpec::Mixup { alpha } => {
            let lam = rng.beta(alpha, alpha);
            let perm = rng.permutation(b);
            let src = x.to_vec();
            let n = 3 * h * w;
            for (i, &j) in perm.iter().enumerate() {
                let (a, o) = (&src[i * n..(i + 1) * n], &src[j * n..(j + 1) * n]);
                for (d, (p, q)) in x[i * n..(i + 1) * n].iter_mut().zip(a.iter().zip(o)) {
                    *d = (lam * *p as f64 + (1.0 - lam) * *q as f64) as f32;
                }
            }
            Mixed {
                labels: pair_labels(labels, &perm, lam),
                boxes: Vec::new(),
            }
        }
        AugmentSpec::Cutmix { alpha } => {
            let lam = rng.beta(alpha, alpha);
            let perm = rng.permutation(b);
            let r = (1.0 - lam).sqrt();
            let (cw, ch) = (
                (w as f64 * r).floor() as usize,
                (h as f64 * r).floor() as usize,
            );
            let (cx, cy) = (rng.below(w as u64) as usize, rng.below(h as u64) as usize);
            let rect = Rect {
                x0: cx.saturating_sub(cw / 2),
                y0: cy.saturating_sub(ch / 2),
                x1: (cx + cw / 2).min(w),
                y1: (cy + ch / 2).min(h),
            };
            let src = x.to_vec();
            for (i, &j) in perm.iter().enumerate() {
                copy_patch(&src, j, x, i, h, w, (rect.x0, rect.y0), rect);
            }
            let lam = 1.0 - rect.area() as f64 / (w * h) as f64;
            Mixed {
                labels: pair_labels(labels, &perm, lam),
                boxes: vec![((rect.x0, rect.y0), rect)],
            }
        }
        AugmentSpec::Ricap { beta } => {
            let pw = ((w as f64) * rng.beta(beta, beta)).round() as usize;
            let ph = ((h as f64) * rng.beta(beta, beta)).round() as usize;
            let sizes = [(pw, ph), (w - pw, ph), (pw, h - ph), (w - pw, h - ph)];
            let corners = [(0, 0), (pw, 0), (0, ph), (pw, ph)];
            let src = x.to_vec();
            let mut mixes: Vec<LabelMix> = vec![Vec::with_capacity(4); b];
            let mut boxes = Vec::new();
            for k in 0..4 {
                let (sw, sh) = sizes[k];
                let perm = rng.permutation(b);
                // One offset inside the source images, shared across the batch.
                let ox = rng.below((w - sw + 1) as u64) as usize;
                let oy = rng.below((h - sh + 1) as u64) as usize;
                let dst = Rect {
                    x0: corners[k].0,
                    y0: corners[k].1,
                    x1: corners[k].0 + sw,
                    y1: corners[k].1 + sh,
                };
                let weight = (sw * sh) as f64 / (w * h) as f64;
                for (i, &j) in perm.iter().enumerate() {
                    if dst.area() > 0 {
                        copy_patch(&src, j, x, i, h, w, (ox, oy), dst);
                    }
                    mixes[i].push((labels[j], weight));
                }
                boxes.push(((ox, oy), dst));
            }
            Mixed {
                labels: mixes,
                boxes,
            }
        }
    }
}

/// Sample i is λ of its own label and 1-λ of the label of sample `perm[i]`.
fn pair_labels(labels: &[u16], perm: &[usize], lam: f64) -> Vec<LabelMix> {
    perm.iter()
        .enumerate()
        .map(|(i, &j)| vec![(labels[i], lam), (labels[j], 1.0 - lam)])
        .collect()
}

/// Copies the `dst`-sized window at `from` of image `j` of `src` into `dst` of image `i`.
#[allow(clippy::too_many_arguments)]
fn copy_patch(
    src: &[f32],
    j: usize,
    x: &mut [f32],
    i: usize,
    h: usize,
    w: usize,
    from: (usize, usize),
    dst: Rect,
) {
    let n = 3 * h * w;
    let pw = dst.x1 - dst.x0;
    for c in 0..3 {
        for yy in 0..(dst.y1 - dst.y0) {
            let s = j * n + c * h * w + (from.1 + yy) * w + from.0;
            let d = i * n + c * h * w + (dst.y0 + yy) * w + dst.x0;
            x[d..d + pw].copy_from_slice(&src[s..s + pw]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Image i has the value 100·i + pixel index in every channel: the source of any
    /// output pixel can be read back from its value.
    fn batch(b: usize, h: usize, w: usize) -> Vec<f32> {
        (0..b)
            .flat_map(|i| (0..3).flat_map(move |_| (0..h * w).map(move |p| (1000 * i + p) as f32)))
            .collect()
    }

    /// Mixes `batch(b, h, w)` with labels 0..b; every sample's label weights sum to 1.
    fn mixed(aug: &AugmentSpec, b: usize, h: usize, w: usize, seed: u64) -> (Vec<f32>, Mixed) {
        let labels: Vec<u16> = (0..b as u16).collect();
        let mut x = batch(b, h, w);
        let m = mix(aug, &mut x, &labels, h, w, &mut Rng::new(seed));
        for l in &m.labels {
            let s: f64 = l.iter().map(|(_, w)| w).sum();
            assert!((s - 1.0).abs() < 1e-12, "{l:?}");
        }
        (x, m)
    }

    #[test]
    fn none_keeps_the_batch() {
        let mut x = batch(3, 4, 4);
        let before = x.clone();
        let m = mix(
            &AugmentSpec::None,
            &mut x,
            &[0, 1, 2],
            4,
            4,
            &mut Rng::new(1),
        );
        assert_eq!(x, before);
        assert_eq!(m.labels[2], vec![(2, 1.0)]);
    }

    #[test]
    fn mixup_is_a_convex_combination_with_matching_weights() {
        let (b, h, w) = (6, 4, 4);
        let src = batch(b, h, w);
        let (x, m) = mixed(&AugmentSpec::Mixup { alpha: 1.0 }, b, h, w, 2);
        let n = 3 * h * w;
        for i in 0..b {
            let (ya, lam) = m.labels[i][0];
            let (yb, _) = m.labels[i][1];
            assert_eq!(ya as usize, i);
            let expect =
                lam * src[i * n + 5] as f64 + (1.0 - lam) * src[yb as usize * n + 5] as f64;
            assert!((x[i * n + 5] as f64 - expect).abs() < 1e-2);
        }
    }

    #[test]
    fn cutmix_pastes_one_box_and_recomputes_lambda_from_its_area() {
        let (b, h, w) = (5, 8, 8);
        for seed in 0..20 {
            let (x, m) = mixed(&AugmentSpec::Cutmix { alpha: 1.0 }, b, h, w, seed);
            let rect = m.boxes[0].1;
            assert!(rect.x1 <= w && rect.y1 <= h && rect.x0 <= rect.x1 && rect.y0 <= rect.y1);
            let lam = m.labels[0][0].1;
            assert!((lam - (1.0 - rect.area() as f64 / 64.0)).abs() < 1e-12);
            let n = 3 * h * w;
            for i in 0..b {
                let other = m.labels[i][1].0 as usize;
                for p in 0..h * w {
                    let (px, py) = (p % w, p / w);
                    let inside = px >= rect.x0 && px < rect.x1 && py >= rect.y0 && py < rect.y1;
                    let from = if inside { other } else { i };
                    assert_eq!(x[i * n + p], (1000 * from + p) as f32);
                }
            }
        }
    }

    #[test]
    fn ricap_tiles_four_patches_with_area_weights_even_when_some_are_empty() {
        let (b, h, w) = (4, 8, 8);
        let mut saw_empty = false;
        for seed in 0..60 {
            let (x, m) = mixed(&AugmentSpec::Ricap { beta: 0.3 }, b, h, w, seed);
            let areas: usize = m.boxes.iter().map(|(_, r)| r.area()).sum();
            assert_eq!(areas, h * w, "the patches tile the image");
            saw_empty |= m.boxes.iter().any(|(_, r)| r.area() == 0);
            let n = 3 * h * w;
            for i in 0..b {
                for (k, ((ox, oy), r)) in m.boxes.iter().enumerate() {
                    let (label, weight) = m.labels[i][k];
                    assert!((weight - r.area() as f64 / 64.0).abs() < 1e-12);
                    for py in r.y0..r.y1 {
                        for px in r.x0..r.x1 {
                            let sp = (oy + py - r.y0) * w + (ox + px - r.x0);
                            assert_eq!(x[i * n + py * w + px], (1000 * label as usize + sp) as f32);
                        }
                    }
                }
            }
        }
        assert!(
            saw_empty,
            "Beta(0.3, 0.3) gives zero-size patches in 60 batches"
        );
    }

    #[test]
    fn mixing_is_determined_by_the_seed() {
        let run = |seed| mixed(&AugmentSpec::Ricap { beta: 0.3 }, 4, 6, 6, seed);
        assert_eq!(run(9), run(9));
        assert_ne!(run(9).0, run(10).0);
    }
}
