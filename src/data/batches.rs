//! An epoch's batches and an evaluation's, whatever holds the images: made on demand from
//! the bytes in memory, or decoded from files ahead of the trainer by worker threads
//! (`imagenet::Loader`). Either way a batch depends only on the dataset, the transform,
//! the seed, the epoch and the images' positions, never on threads or timing.

use super::imagenet::{self, Loader, LoaderOptions};
use super::{transform, Dataset};
use crate::spec::Transform;

/// Batches of normalised `3 × H × W` images, in order; an unreadable image is an error
/// naming its file.
pub type Batches<'a> = Box<dyn Iterator<Item = anyhow::Result<Vec<f32>>> + 'a>;

/// The training batches `batches` (rows of `ds`, `batch` a full batch's size) of `epoch`;
/// with `views` of `SSKD_VIEWS`, each image's rotated copies after it
/// (`transform::rotated_batch`).
pub fn train<'a>(
    ds: &'a Dataset,
    batches: &[&'a [usize]],
    t: &'a Transform,
    (seed, epoch): (u64, usize),
    batch: usize,
    views: usize,
) -> anyhow::Result<Batches<'a>> {
    if views != 1 && ds.height != ds.width {
        anyhow::bail!(
            "rotated copies need square images; these are {}×{}",
            ds.height,
            ds.width
        );
    }
    let Some(files) = &ds.files else {
        // Owned, so that the batches outlive the caller's list of them.
        let memory: Vec<&'a [usize]> = batches.to_vec();
        let memory = memory.into_iter().enumerate();
        return Ok(Box::new(memory.map(move |(bi, idx)| {
            let first = bi * batch;
            Ok(match views {
                1 => transform::train_batch(ds, idx, t, seed, epoch, first),
                _ => transform::rotated_batch(ds, idx, t, seed, epoch, first),
            })
        })));
    };
    if views != 1 {
        anyhow::bail!("rotated copies are made of images held in memory, not read from files");
    }
    let crop = resized_crop(t)?;
    let it = imagenet::Transform::train(crop.size, seed, epoch as u64);
    let rows = batches.iter().map(|b| b.to_vec()).collect();
    Ok(from_files(files, rows, it, t))
}

/// The images of `ds` in order, `size` at a time, under the evaluation transform.
pub fn eval<'a>(ds: &'a Dataset, t: &'a Transform, size: usize) -> anyhow::Result<Batches<'a>> {
    let starts = (0..ds.len()).step_by(size.max(1));
    let Some(files) = &ds.files else {
        return Ok(Box::new(starts.map(move |s| {
            Ok(transform::test_batch(ds, s, (s + size).min(ds.len()), t))
        })));
    };
    let crop = resized_crop(t)?;
    let it = imagenet::Transform::eval(crop.size, crop.resize);
    let rows = starts
        .map(|s| (s..(s + size).min(ds.len())).collect())
        .collect();
    Ok(from_files(files, rows, it, t))
}

/// The batches `rows` of `files`, decoded ahead by the loader under `it` with the run's
/// normalisation.
fn from_files<'a>(
    files: &std::sync::Arc<[imagenet::Sample]>,
    rows: Vec<Vec<usize>>,
    mut it: imagenet::Transform,
    t: &Transform,
) -> Batches<'a> {
    (it.mean, it.std) = (t.mean.map(|v| v as f32), t.std.map(|v| v as f32));
    let loader = Loader::new(files.clone(), rows, it, LoaderOptions::default());
    Box::new(loader.map(|b| b.map(|b| b.images)))
}

/// The crop of a dataset read from files; its scale and ratio ranges are torchvision's,
/// which the loader implements.
fn resized_crop(t: &Transform) -> anyhow::Result<&crate::spec::ResizedCrop> {
    let crop = t.resized_crop.as_ref().ok_or_else(|| {
        anyhow::anyhow!("images read from files need a resized crop in the run's transform")
    })?;
    let standard = crate::spec::ResizedCrop::imagenet(crop.size);
    anyhow::ensure!(
        crop.scale == standard.scale && crop.ratio == standard.ratio,
        "only torchvision's RandomResizedCrop ranges (scale {:?}, ratio {:?}) are implemented",
        standard.scale,
        standard.ratio
    );
    Ok(crop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotated_copies_of_images_that_are_not_square_are_an_error() {
        let ds = Dataset {
            images: vec![0; 2 * 3 * 4 * 6],
            labels: vec![0, 1],
            height: 4,
            width: 6,
            classes: 2,
            files: None,
        };
        let t = Transform {
            crop_padding: 0,
            flip: false,
            mean: [0.0; 3],
            std: [1.0; 3],
            resized_crop: None,
        };
        let rows = [0usize, 1];
        let e = train(&ds, &[&rows], &t, (0, 1), 2, crate::spec::SSKD_VIEWS)
            .err()
            .expect("an error");
        assert!(
            e.to_string().contains("square images; these are 4×6"),
            "{e}"
        );
        assert!(train(&ds, &[&rows], &t, (0, 1), 2, 1).is_ok());
    }
}
