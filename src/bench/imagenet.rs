//! The `imagenet-loader` part of `lecal bench`: training-pipeline images per second on
//! generated JPEG files (decode, RandomResizedCrop 224, flip, normalise) with the loader
//! on every core; `scripts/bench_pytorch.py` times torchvision's `ImageFolder` and
//! `DataLoader` on the same files. Beside it, the JPEG decoders lecal could use, each on
//! one thread over the same files: zune-jpeg (the one the loader uses) and jpeg-decoder;
//! and the resizers: lecal's Pillow-exact one (the loader's) and fast_image_resize's
//! bilinear convolution, each on one thread over the same decoded images, with how far the
//! latter's pixels are from Pillow's.

use crate::data::imagenet::{self, synth, Loader, LoaderOptions, Transform};
use crate::rng::Rng;
use anyhow::Context;
use std::path::Path;
use std::sync::Arc;

/// Classes of the generated folder.
const CLASSES: usize = 8;
/// The loader's batch size (as the PyTorch side's).
pub const BATCH: usize = 64;

/// Writes `images` generated JPEGs (about 400×350, quality 90) into `dir/train/` unless
/// exactly that many are there already (the files are the same every time).
pub fn prepare(dir: &Path, images: usize) -> anyhow::Result<()> {
    let per_class = images.div_ceil(CLASSES);
    let have = imagenet::survey(dir).train.len();
    if have == per_class * CLASSES {
        return Ok(());
    }
    if dir.join("train").exists() {
        std::fs::remove_dir_all(dir.join("train"))
            .with_context(|| format!("clearing {}", dir.join("train").display()))?;
    }
    let l = synth::Layout {
        classes: CLASSES,
        train_per_class: per_class,
        val_per_class: 0,
        flat_val: false,
        width: 400,
        height: 350,
        quality: 90,
    };
    synth::write_folder(dir, &l)?;
    Ok(())
}

/// Times whole epochs over `dir/train` (each epoch its own crops); returns images per
/// second, epochs and seconds as `bench::time` does.
pub fn measure(dir: &Path, images: usize, min_seconds: f64) -> anyhow::Result<(f64, usize, f64)> {
    prepare(dir, images)?;
    let samples: Arc<[imagenet::Sample]> = imagenet::survey(dir).train.into();
    let order = Rng::new(0).permutation(samples.len());
    let batches: Vec<Vec<usize>> = order.chunks(BATCH).map(|c| c.to_vec()).collect();
    let mut epoch = 0;
    super::time(min_seconds, samples.len(), || {
        epoch += 1;
        let t = Transform::train(224, 0, epoch);
        for b in Loader::new(
            samples.clone(),
            batches.clone(),
            t,
            LoaderOptions::default(),
        ) {
            std::hint::black_box(b?);
        }
        Ok(())
    })
}

/// Images per second, repetitions and seconds, as `bench::time` gives them.
type Timed = (f64, usize, f64);

/// Decoding alone, one thread, over `dir/train`'s files (read into memory first): images
/// per second of each candidate decoder, as (decoder, `bench::time`'s result).
pub fn decoders(
    dir: &Path,
    images: usize,
    min_seconds: f64,
) -> anyhow::Result<Vec<(&'static str, Timed)>> {
    prepare(dir, images)?;
    let files = imagenet::survey(dir)
        .train
        .iter()
        .map(|s| std::fs::read(&s.path).with_context(|| format!("reading {}", s.path.display())))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let zune = super::time(min_seconds, files.len(), || {
        for f in &files {
            std::hint::black_box(imagenet::decode_jpeg(f)?);
        }
        Ok(())
    })?;
    let jd = super::time(min_seconds, files.len(), || {
        for f in &files {
            let mut d = jpeg_decoder::Decoder::new(f.as_slice());
            std::hint::black_box(d.decode().context("jpeg-decoder")?);
        }
        Ok(())
    })?;
    Ok(vec![("zune-jpeg", zune), ("jpeg-decoder", jd)])
}

/// Resizing alone, one thread: every image of `dir/train` (decoded first) to a shorter
/// side of 256, antialiased bilinear, as torchvision's `Resize(256)` (the evaluation
/// transform's first step). Returns (resizer, result, largest difference of a byte from
/// Pillow's, i.e. from lecal's Pillow-exact resize, over all images).
pub fn resizers(
    dir: &Path,
    images: usize,
    min_seconds: f64,
) -> anyhow::Result<Vec<(&'static str, Timed, u8)>> {
    use fast_image_resize as fir;
    prepare(dir, images)?;
    let decoded = imagenet::survey(dir)
        .train
        .iter()
        .map(|s| imagenet::load(&s.path))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let sizes: Vec<(usize, usize)> = decoded
        .iter()
        .map(|im| imagenet::resized_size(im.width, im.height, 256))
        .collect();
    let exact = |im: &imagenet::Rgb, (w, h): (usize, usize)| {
        imagenet::resize(im, (0, 0, im.width, im.height), w, h, (0, 0, w, h))
    };
    let mut resizer = fir::Resizer::new();
    let options = fir::ResizeOptions::new()
        .resize_alg(fir::ResizeAlg::Convolution(fir::FilterType::Bilinear));
    let mut fast = |im: &imagenet::Rgb, (w, h): (usize, usize)| -> anyhow::Result<Vec<u8>> {
        let src = fir::images::ImageRef::new(
            im.width as u32,
            im.height as u32,
            &im.pixels,
            fir::PixelType::U8x3,
        )?;
        let mut dst = fir::images::Image::new(w as u32, h as u32, fir::PixelType::U8x3);
        resizer.resize(&src, &mut dst, &options)?;
        Ok(dst.into_vec())
    };
    let mut worst = 0u8;
    for (im, &size) in decoded.iter().zip(&sizes) {
        let (a, b) = (exact(im, size).pixels, fast(im, size)?);
        anyhow::ensure!(a.len() == b.len(), "fast_image_resize gave another size");
        worst = worst.max(
            a.iter()
                .zip(&b)
                .map(|(x, y)| x.abs_diff(*y))
                .max()
                .unwrap_or(0),
        );
    }
    let lecal = super::time(min_seconds, decoded.len(), || {
        for (im, &size) in decoded.iter().zip(&sizes) {
            std::hint::black_box(exact(im, size));
        }
        Ok(())
    })?;
    let fir_timed = super::time(min_seconds, decoded.len(), || {
        for (im, &size) in decoded.iter().zip(&sizes) {
            std::hint::black_box(fast(im, size)?);
        }
        Ok(())
    })?;
    Ok(vec![
        ("Pillow-exact (lecal's)", lecal, 0),
        ("fast_image_resize", fir_timed, worst),
    ])
}
