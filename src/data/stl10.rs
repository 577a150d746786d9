//! Reader for the binary STL-10 files (Coates, Lee and Ng 2011, "An Analysis of
//! Single-Layer Networks in Unsupervised Feature Learning"): `stl10_binary/` holds
//! `train_X.bin` / `train_y.bin` (5,000 images) and `test_X.bin` / `test_y.bin` (8,000).
//! An image is 3×96×96 bytes, one channel after the other, each channel column-major (the
//! files were written from MATLAB); a label is one byte from 1 to 10. The 100,000
//! unlabelled images (`unlabeled_X.bin`) are not used.
//!
//! Images are transposed to lecal's row-major planes on reading. A run may ask for a
//! smaller side (`resolution` in the recipe: 48, 32 or 24): each k×k block is averaged
//! (area resampling, exact for these integer factors), so that the CIFAR ResNets can also
//! be trained at CIFAR's size. The paper does not say which it used.

use super::{Dataset, Splits};
use crate::spec::STL10_RESOLUTIONS;
use anyhow::{bail, Context};
use std::path::{Path, PathBuf};

pub const FOLDER: &str = "stl10_binary";
/// The side of the images in the files.
pub const SIDE: usize = 96;
const PLANE: usize = SIDE * SIDE;
const IMAGE_BYTES: usize = 3 * PLANE;
const CLASSES: usize = 10;

/// Image file, label file and official number of images of the training and test split.
const SPLITS: [(&str, &str, usize); 2] = [
    ("train_X.bin", "train_y.bin", 5_000),
    ("test_X.bin", "test_y.bin", 8_000),
];

const HINT: &str = "`lecal data fetch stl10 --dir <data folder>` downloads and unpacks it (or download stl10_binary.tar.gz from https://cs.stanford.edu/~acoates/stl10/ and unpack it there, so that the folder holds stl10_binary/)";

/// Checks that every file is there with its official size, without reading it.
pub fn check(data_dir: &Path) -> anyhow::Result<()> {
    let dir = data_dir.join(FOLDER);
    let files: Vec<(PathBuf, usize)> = SPLITS
        .iter()
        .flat_map(|&(x, y, n)| [(dir.join(x), n * IMAGE_BYTES), (dir.join(y), n)])
        .collect();
    let missing: Vec<String> = files
        .iter()
        .filter(|(p, _)| !p.is_file())
        .map(|(p, _)| p.display().to_string())
        .collect();
    if !missing.is_empty() {
        bail!(
            "STL-10 data not found: missing {}; {HINT} (the data folder is {}, set by --data-dir or LECAL_DATA)",
            missing.join(", "),
            data_dir.display()
        );
    }
    for (p, want) in &files {
        let len = std::fs::metadata(p)
            .with_context(|| format!("cannot read {}", p.display()))?
            .len() as usize;
        if len != *want {
            bail!(
                "{}: expected {want} bytes, found {len} bytes; the file is truncated or not an STL-10 binary file: {HINT}",
                p.display()
            );
        }
    }
    Ok(())
}

/// Loads both splits from `data_dir/stl10_binary/` at `resolution` pixels a side.
pub fn load(data_dir: &Path, resolution: usize) -> anyhow::Result<Splits> {
    if !STL10_RESOLUTIONS.contains(&resolution) {
        bail!("STL-10 can be trained at {STL10_RESOLUTIONS:?} pixels, not {resolution}");
    }
    check(data_dir)?;
    let dir = data_dir.join(FOLDER);
    let read =
        |(x, y, n): (&str, &str, usize)| read_split(&dir.join(x), &dir.join(y), n, resolution);
    Ok(Splits {
        train: read(SPLITS[0])?,
        test: read(SPLITS[1])?,
        validation: None,
    })
}

/// Reads `n` images and their labels, transposed to row-major and resampled to `side`.
pub fn read_split(images: &Path, labels: &Path, n: usize, side: usize) -> anyhow::Result<Dataset> {
    let x = std::fs::read(images).with_context(|| format!("cannot read {}", images.display()))?;
    let y = std::fs::read(labels).with_context(|| format!("cannot read {}", labels.display()))?;
    if x.len() != n * IMAGE_BYTES || y.len() != n {
        bail!(
            "{} and {}: expected {n} images ({} bytes) and {n} labels, found {} and {} bytes; {HINT}",
            images.display(),
            labels.display(),
            n * IMAGE_BYTES,
            x.len(),
            y.len()
        );
    }
    let mut out_labels = Vec::with_capacity(n);
    for (i, &l) in y.iter().enumerate() {
        if !(1..=CLASSES as u8).contains(&l) {
            bail!(
                "{}: image {i} has label {l}, expected 1 to {CLASSES}",
                labels.display()
            );
        }
        out_labels.push(l as u16 - 1);
    }
    let factor = SIDE / side;
    let mut out = vec![0u8; n * 3 * side * side];
    use rayon::prelude::*;
    out.par_chunks_mut(3 * side * side)
        .zip(x.par_chunks(IMAGE_BYTES))
        .for_each(|(dst, src)| row_major(src, factor, dst));
    Ok(Dataset {
        images: out,
        labels: out_labels,
        height: side,
        width: side,
        classes: CLASSES,
        files: None,
    })
}

/// One image from column-major 96×96 planes to row-major planes of side 96/`factor`, each
/// output pixel the rounded mean of its `factor`×`factor` block.
fn row_major(src: &[u8], factor: usize, dst: &mut [u8]) {
    let side = SIDE / factor;
    let area = (factor * factor) as u32;
    for c in 0..3 {
        let plane = &src[c * PLANE..(c + 1) * PLANE];
        for y in 0..side {
            for x in 0..side {
                let mut sum = 0u32;
                for dy in 0..factor {
                    for dx in 0..factor {
                        let (row, col) = (y * factor + dy, x * factor + dx);
                        sum += plane[col * SIDE + row] as u32;
                    }
                }
                dst[c * side * side + y * side + x] = ((sum + area / 2) / area) as u8;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An image whose byte at (channel, row, column) is a known function of them, written
    /// column-major as the official files are.
    fn value(i: usize, c: usize, row: usize, col: usize) -> u8 {
        ((i * 31 + c * 7 + row * 3 + col * 5) % 256) as u8
    }

    fn write(dir: &Path, n: usize, labels: &[u8]) -> (PathBuf, PathBuf) {
        let mut x = vec![0u8; n * IMAGE_BYTES];
        for i in 0..n {
            for c in 0..3 {
                for row in 0..SIDE {
                    for col in 0..SIDE {
                        x[i * IMAGE_BYTES + c * PLANE + col * SIDE + row] = value(i, c, row, col);
                    }
                }
            }
        }
        let (xp, yp) = (dir.join("x.bin"), dir.join("y.bin"));
        std::fs::write(&xp, x).unwrap();
        std::fs::write(&yp, labels).unwrap();
        (xp, yp)
    }

    #[test]
    fn images_are_transposed_to_row_major_and_labels_start_at_zero() {
        let dir = tempfile::tempdir().unwrap();
        let (x, y) = write(dir.path(), 2, &[1, 10]);
        let d = read_split(&x, &y, 2, 96).unwrap();
        assert_eq!(d.labels, vec![0, 9]);
        assert_eq!((d.height, d.width, d.classes), (96, 96, 10));
        // Row 5, column 70 of channel 2 of image 1.
        assert_eq!(d.image(1)[2 * PLANE + 5 * 96 + 70], value(1, 2, 5, 70));
        assert_ne!(value(1, 2, 5, 70), value(1, 2, 70, 5));
    }

    #[test]
    fn a_smaller_side_averages_each_block() {
        let dir = tempfile::tempdir().unwrap();
        let (x, y) = write(dir.path(), 1, &[3]);
        let d = read_split(&x, &y, 1, 32).unwrap();
        assert_eq!((d.height, d.width), (32, 32));
        // Pixel (row 4, column 10) of channel 1 is the mean of rows 12..15 × columns 30..33.
        let sum: u32 = (12..15)
            .flat_map(|r| (30..33).map(move |c| value(0, 1, r, c) as u32))
            .sum();
        assert_eq!(d.image(0)[1024 + 4 * 32 + 10] as u32, (sum + 4) / 9);
    }

    #[test]
    fn bad_labels_and_sizes_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let (x, y) = write(dir.path(), 2, &[0, 4]);
        let e = read_split(&x, &y, 2, 96).unwrap_err().to_string();
        assert!(
            e.contains("y.bin: image 0 has label 0, expected 1 to 10"),
            "{e}"
        );
        let e = read_split(&x, &y, 3, 96).unwrap_err().to_string();
        assert!(e.contains("expected 3 images"), "{e}");
        let e = load(dir.path(), 96).unwrap_err().to_string();
        assert!(e.contains("STL-10 data not found"), "{e}");
        assert!(e.contains("lecal data fetch stl10"), "{e}");
    }

    #[test]
    fn check_accepts_official_sizes_and_names_a_truncated_file() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join(FOLDER);
        std::fs::create_dir_all(&d).unwrap();
        for (x, y, n) in SPLITS {
            let f = std::fs::File::create(d.join(x)).unwrap();
            f.set_len((n * IMAGE_BYTES) as u64).unwrap();
            std::fs::write(d.join(y), vec![1u8; n]).unwrap();
        }
        check(dir.path()).unwrap();
        std::fs::write(d.join("test_y.bin"), vec![1u8; 7_999]).unwrap();
        let e = check(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("test_y.bin: expected 8000 bytes, found 7999"),
            "{e}"
        );
    }
}
