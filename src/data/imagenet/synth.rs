//! Generated JPEG files in ImageNet's layout, for tests and `lecal bench`: smooth colour
//! waves with noise, so that files are about the size and texture of photographs of the
//! same dimensions and decode at a realistic cost.

use crate::rng::Rng;
use anyhow::Context;
use jpeg_encoder::{ColorType, Encoder};
use std::path::{Path, PathBuf};

/// The RGB pixels of generated image `key`, `width × height`.
pub fn pixels(width: usize, height: usize, key: u64) -> Vec<u8> {
    let mut r = Rng::stream(0, "imagenet-synth", &[key]);
    let mut wave = || {
        (
            64.0 + 128.0 * r.uniform(),
            0.02 + 0.1 * r.uniform(),
            0.02 + 0.1 * r.uniform(),
            6.3 * r.uniform(),
        )
    };
    let waves = [wave(), wave(), wave()];
    let mut out = Vec::with_capacity(width * height * 3);
    for y in 0..height {
        for x in 0..width {
            for &(base, fx, fy, phase) in &waves {
                let v = base + 60.0 * (fx * x as f64 + fy * y as f64 + phase).sin();
                let noise = (r.below(25) as f64) - 12.0;
                out.push((v + noise).clamp(0.0, 255.0) as u8);
            }
        }
    }
    out
}

/// Writes generated image `key` as a JPEG of the given quality.
pub fn write_jpeg(
    path: &Path,
    width: usize,
    height: usize,
    key: u64,
    quality: u8,
) -> anyhow::Result<()> {
    let data = pixels(width, height, key);
    let e =
        Encoder::new_file(path, quality).with_context(|| format!("creating {}", path.display()))?;
    e.encode(&data, width as u16, height as u16, ColorType::Rgb)
        .with_context(|| format!("writing {}", path.display()))
}

/// The shape of a generated folder.
#[derive(Debug, Clone)]
pub struct Layout {
    pub classes: usize,
    pub train_per_class: usize,
    pub val_per_class: usize,
    /// Validation images flat with `val/labels.txt`, or in class folders.
    pub flat_val: bool,
    pub width: usize,
    pub height: usize,
    pub quality: u8,
}

/// The wnid of generated class `c`.
pub fn wnid(c: usize) -> String {
    format!("n{:08}", 1_000_000 + c)
}

/// Writes an ImageNet folder under `root`; returns every file written, training images
/// first. Sizes vary a little around `width × height`, as ImageNet's do.
pub fn write_folder(root: &Path, l: &Layout) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut key = 0u64;
    let size = |key: u64| {
        let mut r = Rng::stream(0, "imagenet-synth-size", &[key]);
        (
            l.width - l.width / 8 + r.below((l.width / 4 + 1) as u64) as usize,
            l.height - l.height / 8 + r.below((l.height / 4 + 1) as u64) as usize,
        )
    };
    let mut labels = String::new();
    for c in 0..l.classes {
        let dir = root.join("train").join(wnid(c));
        std::fs::create_dir_all(&dir)?;
        for i in 0..l.train_per_class {
            let p = dir.join(format!("{}_{i}.JPEG", wnid(c)));
            let (w, h) = size(key);
            write_jpeg(&p, w, h, key, l.quality)?;
            key += 1;
            files.push(p);
        }
    }
    let mut n = 0;
    for c in 0..l.classes {
        let dir = if l.flat_val {
            root.join("val")
        } else {
            root.join("val").join(wnid(c))
        };
        std::fs::create_dir_all(&dir)?;
        for _ in 0..l.val_per_class {
            n += 1;
            let name = format!("ILSVRC2012_val_{n:08}.JPEG");
            let (w, h) = size(key);
            write_jpeg(&dir.join(&name), w, h, key, l.quality)?;
            key += 1;
            labels += &format!("{name} {}\n", wnid(c));
            files.push(dir.join(name));
        }
    }
    if l.flat_val {
        std::fs::write(root.join("val").join(super::LABELS_TXT), labels)?;
    }
    Ok(files)
}
