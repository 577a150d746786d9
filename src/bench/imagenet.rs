//! The `imagenet-loader` part of `lecal bench`: training-pipeline images per second on
//! generated JPEG files (decode, RandomResizedCrop 224, flip, normalise) with the loader
//! on every core; `scripts/bench_pytorch.py` times torchvision's `ImageFolder` and
//! `DataLoader` on the same files. Beside it, the JPEG decoders lecal could use, each on
//! one thread over the same files: zune-jpeg (the one the loader uses) and jpeg-decoder.

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
