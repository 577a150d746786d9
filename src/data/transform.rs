//! Turning images into normalised `f32` batches: the training transform (random crop with
//! zero padding, random horizontal flip) and the test transform (normalise only).
//!
//! Each image's crop and flip come from its own random stream keyed by (seed, epoch,
//! position in the epoch), so batches are identical however rayon schedules the work.

use super::Dataset;
use crate::rng::Rng;
use crate::spec::Transform;
use rayon::prelude::*;

/// Per-channel lookup from byte value to normalised float.
fn table(t: &Transform) -> [[f32; 256]; 3] {
    let mut lut = [[0f32; 256]; 3];
    for (c, row) in lut.iter_mut().enumerate() {
        for (v, x) in row.iter_mut().enumerate() {
            *x = ((v as f64 / 255.0 - t.mean[c]) / t.std[c]) as f32;
        }
    }
    lut
}

/// Where an output pixel reads from: crop offset (in padded coordinates) and flip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    pub dx: usize,
    pub dy: usize,
    pub flip: bool,
}

impl Placement {
    pub fn draw(t: &Transform, seed: u64, epoch: usize, position: usize) -> Self {
        let mut r = Rng::stream(seed, "crop-flip", &[epoch as u64, position as u64]);
        let crop = Self::crop(t, &mut r);
        Self {
            flip: t.flip && r.below(2) == 1,
            ..crop
        }
    }

    /// A random crop's offsets drawn from `r` (x, then y), without a flip.
    fn crop(t: &Transform, r: &mut Rng) -> Self {
        let range = 2 * t.crop_padding as u64 + 1;
        let dx = r.below(range) as usize;
        let dy = r.below(range) as usize;
        Self {
            dx,
            dy,
            flip: false,
        }
    }

    pub fn identity(t: &Transform) -> Self {
        Self {
            dx: t.crop_padding,
            dy: t.crop_padding,
            flip: false,
        }
    }
}

/// Writes one transformed image into `out` (3×H×W floats). Pixels taken from the padding
/// are zero bytes (black) before normalisation, as torchvision's `RandomCrop(padding=p)`.
pub fn place(
    img: &[u8],
    h: usize,
    w: usize,
    pad: usize,
    p: Placement,
    lut: &[[f32; 256]; 3],
    out: &mut [f32],
) {
    for c in 0..3 {
        let plane = &img[c * h * w..(c + 1) * h * w];
        let dst = &mut out[c * h * w..(c + 1) * h * w];
        for y in 0..h {
            let sy = (y + p.dy) as isize - pad as isize;
            for x in 0..w {
                let xo = if p.flip { w - 1 - x } else { x };
                let sx = (xo + p.dx) as isize - pad as isize;
                let v = if sy >= 0 && (sy as usize) < h && sx >= 0 && (sx as usize) < w {
                    plane[sy as usize * w + sx as usize]
                } else {
                    0
                };
                dst[y * w + x] = lut[c][v as usize];
            }
        }
    }
}

/// A training batch: `indices` are dataset rows, `first_position` the position of the
/// first of them in the epoch's order.
pub fn train_batch(
    ds: &Dataset,
    indices: &[usize],
    t: &Transform,
    seed: u64,
    epoch: usize,
    first_position: usize,
) -> Vec<f32> {
    let lut = table(t);
    let n = ds.image_size();
    let mut out = vec![0f32; indices.len() * n];
    out.par_chunks_mut(n)
        .zip(indices.par_iter())
        .enumerate()
        .for_each(|(k, (o, &i))| {
            let p = Placement::draw(t, seed, epoch, first_position + k);
            place(ds.image(i), ds.height, ds.width, t.crop_padding, p, &lut, o);
        });
    out
}

/// An image of 3 planes `side × side` mirrored left to right when `flip`, then turned
/// `quarters` quarter-turns counterclockwise (numpy's `rot90` on an `H × W × C` array).
fn turned(img: &[u8], side: usize, flip: bool, quarters: usize) -> Vec<u8> {
    let mut out: Vec<u8> = if flip {
        img.chunks(side)
            .flat_map(|row| row.iter().rev())
            .copied()
            .collect()
    } else {
        img.to_vec()
    };
    for _ in 0..quarters % 4 {
        let src = out.clone();
        for (dst, plane) in out.chunks_mut(side * side).zip(src.chunks(side * side)) {
            for i in 0..side {
                for j in 0..side {
                    dst[i * side + j] = plane[j * side + (side - 1 - i)];
                }
            }
        }
    }
    out
}

/// SSKD's training batch (of square images: `batches::train` checks): each image four
/// times, sample by sample (`4·indices.len()` images). The upright copy is the image of
/// `train_batch` (the same crop and flip); the copies at 90°, 180° and 270° are that flip
/// turned, each cropped on its own, with the crop drawn from
/// `(seed, "rotation-crop", [epoch, position, quarter])`, as SSKD's data pipeline flips
/// once and crops each rotated copy.
pub fn rotated_batch(
    ds: &Dataset,
    indices: &[usize],
    t: &Transform,
    seed: u64,
    epoch: usize,
    first_position: usize,
) -> Vec<f32> {
    let (lut, n, side) = (table(t), ds.image_size(), ds.height);
    let views = crate::spec::SSKD_VIEWS;
    let mut out = vec![0f32; indices.len() * views * n];
    out.par_chunks_mut(views * n)
        .zip(indices.par_iter())
        .enumerate()
        .for_each(|(k, (o, &i))| {
            let position = first_position + k;
            let p = Placement::draw(t, seed, epoch, position);
            let img = ds.image(i);
            place(img, side, side, t.crop_padding, p, &lut, &mut o[..n]);
            for (q, view) in o.chunks_mut(n).enumerate().skip(1) {
                let keys = [epoch as u64, position as u64, q as u64];
                let crop = Placement::crop(t, &mut Rng::stream(seed, "rotation-crop", &keys));
                let img = turned(img, side, p.flip, q);
                place(&img, side, side, t.crop_padding, crop, &lut, view);
            }
        });
    out
}

/// A test batch of rows `start..end`: normalisation only.
pub fn test_batch(ds: &Dataset, start: usize, end: usize, t: &Transform) -> Vec<f32> {
    let lut = table(t);
    let n = ds.image_size();
    let mut out = vec![0f32; (end - start) * n];
    out.par_chunks_mut(n).enumerate().for_each(|(k, o)| {
        let img = ds.image(start + k);
        for (c, (dst, src)) in o.chunks_mut(n / 3).zip(img.chunks(n / 3)).enumerate() {
            for (d, &s) in dst.iter_mut().zip(src) {
                *d = lut[c][s as usize];
            }
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tf(pad: usize, flip: bool) -> Transform {
        Transform {
            crop_padding: pad,
            flip,
            mean: [0.0; 3],
            std: [1.0 / 255.0; 3], // normalised value = byte value
            resized_crop: None,
        }
    }

    fn ds(n: usize, h: usize, w: usize) -> Dataset {
        Dataset {
            images: (0..n * 3 * h * w).map(|i| (i % 200 + 1) as u8).collect(),
            labels: vec![0; n],
            height: h,
            width: w,
            classes: 2,
            files: None,
        }
    }

    #[test]
    fn identity_placement_equals_test_transform() {
        let d = ds(2, 5, 4);
        let t = tf(2, true);
        let lut = table(&t);
        let mut out = vec![0f32; d.image_size()];
        place(d.image(1), 5, 4, 2, Placement::identity(&t), &lut, &mut out);
        assert_eq!(out, test_batch(&d, 1, 2, &t));
        assert_eq!(out[0], d.image(1)[0] as f32);
    }

    #[test]
    fn flip_mirrors_rows() {
        let d = ds(1, 3, 4);
        let t = tf(0, true);
        let lut = table(&t);
        let mut out = vec![0f32; d.image_size()];
        let p = Placement {
            dx: 0,
            dy: 0,
            flip: true,
        };
        place(d.image(0), 3, 4, 0, p, &lut, &mut out);
        for c in 0..3 {
            for y in 0..3 {
                for x in 0..4 {
                    assert_eq!(
                        out[c * 12 + y * 4 + x],
                        d.image(0)[c * 12 + y * 4 + 3 - x] as f32
                    );
                }
            }
        }
    }

    #[test]
    fn crop_shifts_content_and_pads_with_zero_bytes() {
        let d = ds(1, 4, 4);
        let t = tf(2, false);
        let lut = table(&t);
        let mut out = vec![0f32; d.image_size()];
        // dx = dy = 0 in padded coordinates: the image moves 2 px right and down.
        let p = Placement {
            dx: 0,
            dy: 0,
            flip: false,
        };
        place(d.image(0), 4, 4, 2, p, &lut, &mut out);
        assert_eq!(out[0], 0.0);
        assert_eq!(out[4 + 1], 0.0);
        assert_eq!(out[2 * 4 + 2], d.image(0)[0] as f32);
        assert_eq!(out[3 * 4 + 3], d.image(0)[4 + 1] as f32);
    }

    #[test]
    fn every_crop_keeps_a_window_of_the_image() {
        let d = ds(8, 6, 6);
        let t = tf(2, true);
        let batch = train_batch(&d, &[0, 1, 2, 3, 4, 5, 6, 7], &t, 3, 1, 0);
        let n = d.image_size();
        for k in 0..8 {
            let p = Placement::draw(&t, 3, 1, k);
            assert!(p.dx <= 4 && p.dy <= 4);
            // Count of non-padding pixels equals the overlap of the window and the image.
            let ov = |o: usize| 6 - (o as isize - 2).unsigned_abs();
            let expect = 3 * ov(p.dx) * ov(p.dy);
            let got = batch[k * n..(k + 1) * n]
                .iter()
                .filter(|&&v| v != 0.0)
                .count();
            assert_eq!(got, expect, "image {k} {p:?}");
        }
        // Same seed, epoch and positions: same batch; another epoch: another batch.
        assert_eq!(
            batch,
            train_batch(&d, &[0, 1, 2, 3, 4, 5, 6, 7], &t, 3, 1, 0)
        );
        assert_ne!(
            batch,
            train_batch(&d, &[0, 1, 2, 3, 4, 5, 6, 7], &t, 3, 2, 0)
        );
    }

    #[test]
    fn rotated_copies_are_the_upright_image_turned_counterclockwise() {
        // One 3×3 image, bytes 0..27; no padding, so every crop is the whole image.
        let ds = Dataset {
            images: (0..27).collect(),
            labels: vec![0],
            height: 3,
            width: 3,
            classes: 1,
            files: None,
        };
        let t = tf(0, false);
        let b = rotated_batch(&ds, &[0], &t, 7, 1, 0);
        assert_eq!(b.len(), 4 * 27);
        assert_eq!(b[..27], train_batch(&ds, &[0], &t, 7, 1, 0)[..]);
        // numpy: rot90([[0,1,2],[3,4,5],[6,7,8]]) = [[2,5,8],[1,4,7],[0,3,6]].
        let quarter: Vec<f32> = [2, 5, 8, 1, 4, 7, 0, 3, 6].map(|v| v as f32).to_vec();
        assert_eq!(b[27..36], quarter[..]);
        assert_eq!(b[54..63], [8, 7, 6, 5, 4, 3, 2, 1, 0].map(|v| v as f32));
        assert_eq!(b[81..90], [6, 3, 0, 7, 4, 1, 8, 5, 2].map(|v| v as f32));
        // The second plane turns with the first.
        assert_eq!(b[36], 9.0 + 2.0);
    }
}
