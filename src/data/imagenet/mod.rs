//! ILSVRC2012 (ImageNet-1k) from its JPEG files: finding the images and their labels
//! (`scan.rs`; the official devkit's validation ground truth in `devkit.rs`, its
//! meta.mat read by `mat.rs`), decoding (`decode.rs`), Pillow-exact antialiased
//! bilinear resampling (`resize.rs`), torchvision's training and evaluation transforms
//! (`transform.rs`), a streaming loader that decodes batches ahead in worker threads
//! (`loader.rs`), and the folder check behind `lecal data check imagenet` (`check.rs`).
//!
//! Unlike the CIFAR datasets nothing is held in memory: a trainer scans the folder once,
//! then for each epoch hands the loader the epoch's batches of sample indices.

mod check;
mod decode;
mod devkit;
mod loader;
mod mat;
mod resize;
mod scan;
pub mod synth;
mod transform;

#[cfg(test)]
mod tests;

pub use check::{check, CheckReport};
pub use decode::{decode_jpeg, load};
pub use devkit::{synsets, Synset, DEVKIT_ARCHIVE, DEVKIT_DIR};
pub use loader::{Batch, Loader, LoaderOptions};
pub use resize::{resize, Rgb};
pub use scan::{scan, survey, ImageNet, Sample, Survey, ValLayout, KAGGLE_CSV, LABELS_TXT};
pub use transform::{centre_offset, random_crop, resized_size, Crop, Mode, Transform, MEAN, STD};
