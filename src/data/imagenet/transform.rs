//! The per-image transforms of ImageNet training and evaluation, as torchvision computes
//! them on PIL images: `RandomResizedCrop(size)` + `RandomHorizontalFlip()` for training,
//! `Resize(resize)` + `CenterCrop(size)` for evaluation, then `ToTensor()` and
//! `Normalize(mean, std)`, written as channel-first `f32` into the caller's buffer.
//!
//! Every random draw of an image comes from its own stream keyed by (seed, epoch,
//! position in the epoch), so an image's crop and flip do not depend on which thread
//! transforms it or in what order.

use super::resize::{resize, Rgb};
use crate::rng::Rng;

/// ImageNet's per-channel mean and standard deviation (of pixel values in [0, 1]).
pub const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Which transform, and for training the key of the random streams.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    /// RandomResizedCrop(size, scale=(0.08, 1), ratio=(3/4, 4/3)) and a flip with p = 0.5.
    Train { seed: u64, epoch: u64 },
    /// Resize the shorter side to `resize`, then the centre `size × size`.
    Eval,
}

/// What turns a decoded image into a normalised `3 × size × size` tensor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Transform {
    pub mode: Mode,
    /// The output's side (224 on ImageNet).
    pub size: usize,
    /// The shorter side before the centre crop of evaluation (256 on ImageNet).
    pub resize: usize,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

/// Where a training crop comes from: the source box and whether it is mirrored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Crop {
    pub left: usize,
    pub top: usize,
    pub width: usize,
    pub height: usize,
    pub flip: bool,
}

/// Python's `round` (ties to even), which torchvision's geometry uses.
fn round(x: f64) -> usize {
    x.round_ties_even() as usize
}

/// torchvision's `RandomResizedCrop.get_params` with scale (0.08, 1) and ratio
/// (3/4, 4/3), then the flip, drawn from the image's own stream.
pub fn random_crop(width: usize, height: usize, seed: u64, epoch: u64, position: u64) -> Crop {
    let mut r = Rng::stream(seed, "imagenet-crop", &[epoch, position]);
    let (min_ratio, max_ratio) = (3.0f64 / 4.0, 4.0f64 / 3.0);
    let (log_lo, log_hi) = (min_ratio.ln(), max_ratio.ln());
    let area = (width * height) as f64;
    let mut found = None;
    for _ in 0..10 {
        let target = area * (0.08 + (1.0 - 0.08) * r.uniform());
        let ratio = (log_lo + (log_hi - log_lo) * r.uniform()).exp();
        let w = round((target * ratio).sqrt());
        let h = round((target / ratio).sqrt());
        if 0 < w && w <= width && 0 < h && h <= height {
            let top = r.below((height - h + 1) as u64) as usize;
            let left = r.below((width - w + 1) as u64) as usize;
            found = Some((left, top, w, h));
            break;
        }
    }
    let (left, top, w, h) = found.unwrap_or_else(|| {
        // The centre crop of the image's shape clamped to the ratio range.
        let in_ratio = width as f64 / height as f64;
        let (w, h) = if in_ratio < min_ratio {
            (width, round(width as f64 / min_ratio))
        } else if in_ratio > max_ratio {
            (round(height as f64 * max_ratio), height)
        } else {
            (width, height)
        };
        ((width - w) / 2, (height - h) / 2, w, h)
    });
    Crop {
        left,
        top,
        width: w,
        height: h,
        flip: r.uniform() < 0.5,
    }
}

/// torchvision's `Resize(resize)` output size: the shorter side becomes `resize`, the
/// longer is scaled and truncated.
pub fn resized_size(width: usize, height: usize, resize: usize) -> (usize, usize) {
    if width <= height {
        (
            resize,
            (resize as f64 * height as f64 / width as f64) as usize,
        )
    } else {
        (
            (resize as f64 * width as f64 / height as f64) as usize,
            resize,
        )
    }
}

/// torchvision's `CenterCrop` offset: `round((length - size) / 2)`, ties to even.
pub fn centre_offset(length: usize, size: usize) -> usize {
    round((length - size) as f64 / 2.0)
}

impl Transform {
    /// The training transform with ImageNet's normalisation.
    pub fn train(size: usize, seed: u64, epoch: u64) -> Self {
        Self {
            mode: Mode::Train { seed, epoch },
            size,
            resize: size,
            mean: MEAN,
            std: STD,
        }
    }

    /// The evaluation transform with ImageNet's normalisation.
    pub fn eval(size: usize, resize: usize) -> Self {
        assert!(
            resize >= size,
            "evaluation resizes to {resize}, below the crop {size}"
        );
        Self {
            mode: Mode::Eval,
            size,
            resize,
            mean: MEAN,
            std: STD,
        }
    }

    /// Floats per output image.
    pub fn image_len(&self) -> usize {
        3 * self.size * self.size
    }

    /// The `size × size` RGB bytes the image at `position` of the epoch becomes, and
    /// whether they are to be mirrored.
    pub fn crop(&self, img: &Rgb, position: u64) -> (Rgb, bool) {
        let s = self.size;
        match self.mode {
            Mode::Train { seed, epoch } => {
                let c = random_crop(img.width, img.height, seed, epoch, position);
                let region = (c.left, c.top, c.width, c.height);
                (resize(img, region, s, s, (0, 0, s, s)), c.flip)
            }
            Mode::Eval => {
                let (w, h) = resized_size(img.width, img.height, self.resize);
                let window = (centre_offset(w, s), centre_offset(h, s), s, s);
                let full = (0, 0, img.width, img.height);
                (resize(img, full, w, h, window), false)
            }
        }
    }

    /// Transforms `img` (at `position` of the epoch) into `out`, `3 × size × size` floats.
    pub fn apply(&self, img: &Rgb, position: u64, out: &mut [f32]) {
        let (c, flip) = self.crop(img, position);
        self.normalise(&c, flip, out);
    }

    /// `ToTensor` and `Normalize` of `img` (mirrored when `flip`) into `out`.
    pub fn normalise(&self, img: &Rgb, flip: bool, out: &mut [f32]) {
        let (w, h) = (img.width, img.height);
        assert_eq!(out.len(), 3 * w * h, "output buffer of the wrong size");
        let mut lut = [[0f32; 256]; 3];
        for (c, row) in lut.iter_mut().enumerate() {
            for (v, x) in row.iter_mut().enumerate() {
                *x = (v as f32 / 255.0 - self.mean[c]) / self.std[c];
            }
        }
        let (r, rest) = out.split_at_mut(w * h);
        let (g, b) = rest.split_at_mut(w * h);
        for y in 0..h {
            let line = &img.pixels[y * w * 3..(y + 1) * w * 3];
            for x in 0..w {
                let sx = if flip { w - 1 - x } else { x };
                let p = &line[sx * 3..sx * 3 + 3];
                let o = y * w + x;
                r[o] = lut[0][p[0] as usize];
                g[o] = lut[1][p[1] as usize];
                b[o] = lut[2][p[2] as usize];
            }
        }
    }
}
