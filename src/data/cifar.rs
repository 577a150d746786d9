//! Readers for the official binary CIFAR-10 and CIFAR-100 files.
//!
//! CIFAR-10 (`cifar-10-batches-bin/`): `data_batch_1.bin` … `data_batch_5.bin` and
//! `test_batch.bin`, records of 1 label byte + 3072 image bytes (R, G, B planes of 32×32).
//! CIFAR-100 (`cifar-100-binary/`): `train.bin` and `test.bin`, records of a coarse label
//! byte, a fine label byte and 3072 image bytes; lecal uses the fine (100-class) label.

use super::{Dataset, Splits};
use anyhow::{bail, Context};
use std::path::{Path, PathBuf};

pub const IMAGE_BYTES: usize = 3 * 32 * 32;

/// A file name and its official number of records.
pub type FileSpec = (&'static str, usize);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    Cifar10,
    Cifar100,
}

impl Variant {
    pub fn folder(self) -> &'static str {
        match self {
            Self::Cifar10 => "cifar-10-batches-bin",
            Self::Cifar100 => "cifar-100-binary",
        }
    }

    /// Bytes before the image in each record, and which of them is the label.
    fn label_bytes(self) -> (usize, usize) {
        match self {
            Self::Cifar10 => (1, 0),
            Self::Cifar100 => (2, 1),
        }
    }

    pub fn record_bytes(self) -> usize {
        self.label_bytes().0 + IMAGE_BYTES
    }

    pub fn classes(self) -> usize {
        match self {
            Self::Cifar10 => 10,
            Self::Cifar100 => 100,
        }
    }

    /// Files of the training and the test split with their official number of records.
    pub fn files(self) -> (Vec<FileSpec>, Vec<FileSpec>) {
        match self {
            Self::Cifar10 => (
                vec![
                    ("data_batch_1.bin", 10_000),
                    ("data_batch_2.bin", 10_000),
                    ("data_batch_3.bin", 10_000),
                    ("data_batch_4.bin", 10_000),
                    ("data_batch_5.bin", 10_000),
                ],
                vec![("test_batch.bin", 10_000)],
            ),
            Self::Cifar100 => (vec![("train.bin", 50_000)], vec![("test.bin", 10_000)]),
        }
    }

    fn download_hint(self) -> &'static str {
        match self {
            Self::Cifar10 => "`lecal data fetch cifar10 --dir <data folder>` downloads and unpacks it (or download cifar-10-binary.tar.gz, the \"CIFAR-10 binary version\", from https://www.cs.toronto.edu/~kriz/cifar.html and unpack it there, so that the folder holds cifar-10-batches-bin/)",
            Self::Cifar100 => "`lecal data fetch cifar100 --dir <data folder>` downloads and unpacks it (or download cifar-100-binary.tar.gz, the \"CIFAR-100 binary version\", from https://www.cs.toronto.edu/~kriz/cifar.html and unpack it there, so that the folder holds cifar-100-binary/)",
        }
    }
}

/// Reads the records of one file. `expected` is the official record count, checked
/// against the file's size.
pub fn read_file(
    path: &Path,
    variant: Variant,
    expected: Option<usize>,
) -> anyhow::Result<Dataset> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let rec = variant.record_bytes();
    if let Some(n) = expected {
        if bytes.len() != n * rec {
            bail!(
                "{}: expected {} bytes ({n} records of {rec} bytes), found {} bytes; the file is truncated or not a {} binary file: {}",
                path.display(),
                n * rec,
                bytes.len(),
                variant.folder(),
                variant.download_hint()
            );
        }
    } else if bytes.is_empty() || bytes.len() % rec != 0 {
        bail!(
            "{}: {} bytes is not a whole number of {rec}-byte records",
            path.display(),
            bytes.len()
        );
    }
    let (skip, label_at) = variant.label_bytes();
    let n = bytes.len() / rec;
    let mut images = Vec::with_capacity(n * IMAGE_BYTES);
    let mut labels = Vec::with_capacity(n);
    for (i, r) in bytes.chunks_exact(rec).enumerate() {
        let label = r[label_at] as usize;
        if label >= variant.classes() {
            bail!(
                "{}: record {i} has label {label}, expected 0 to {}",
                path.display(),
                variant.classes() - 1
            );
        }
        labels.push(label as u16);
        images.extend_from_slice(&r[skip..]);
    }
    Ok(Dataset {
        images,
        labels,
        height: 32,
        width: 32,
        classes: variant.classes(),
        files: None,
    })
}

fn concat(parts: Vec<Dataset>) -> Dataset {
    let mut it = parts.into_iter();
    let mut first = it.next().expect("at least one file per split");
    for d in it {
        first.images.extend(d.images);
        first.labels.extend(d.labels);
    }
    first
}

/// Checks that every file is present with its official size, without reading it: a
/// message says what is missing and what to download.
pub fn check(data_dir: &Path, variant: Variant) -> anyhow::Result<()> {
    let dir = data_dir.join(variant.folder());
    let (train, test) = variant.files();
    let missing: Vec<PathBuf> = train
        .iter()
        .chain(&test)
        .map(|(f, _)| dir.join(f))
        .filter(|p| !p.is_file())
        .collect();
    if !missing.is_empty() {
        bail!(
            "{} data not found: missing {}; {} (the data folder is {}, set by --data-dir or LECAL_DATA)",
            match variant {
                Variant::Cifar10 => "CIFAR-10",
                Variant::Cifar100 => "CIFAR-100",
            },
            missing
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            variant.download_hint(),
            data_dir.display()
        );
    }
    for (f, n) in train.iter().chain(&test) {
        let p = dir.join(f);
        let len = std::fs::metadata(&p)
            .with_context(|| format!("cannot read {}", p.display()))?
            .len() as usize;
        let want = n * variant.record_bytes();
        if len != want {
            bail!(
                "{}: expected {want} bytes ({n} records of {} bytes), found {len} bytes; the file is truncated or not a {} binary file: {}",
                p.display(),
                variant.record_bytes(),
                variant.folder(),
                variant.download_hint()
            );
        }
    }
    Ok(())
}

/// Loads both splits from `data_dir/<folder>/`, with a message saying what to download
/// when files are missing.
pub fn load(data_dir: &Path, variant: Variant) -> anyhow::Result<Splits> {
    check(data_dir, variant)?;
    let dir = data_dir.join(variant.folder());
    let (train, test) = variant.files();
    let read = |files: &[(&str, usize)]| -> anyhow::Result<Dataset> {
        let parts = files
            .iter()
            .map(|(f, n)| read_file(&dir.join(f), variant, Some(*n)))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(concat(parts))
    };
    Ok(Splits {
        train: read(&train)?,
        test: read(&test)?,
        validation: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes `n` records in the official layout: label bytes then R, G, B planes.
    fn write_records(path: &Path, variant: Variant, labels: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, &l) in labels.iter().enumerate() {
            if variant == Variant::Cifar100 {
                out.push(l / 5); // coarse label
            }
            out.push(l);
            out.extend((0..IMAGE_BYTES).map(|p| ((p + 7 * i) % 251) as u8));
        }
        std::fs::write(path, &out).unwrap();
        out
    }

    #[test]
    fn cifar10_records_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("b.bin");
        write_records(&p, Variant::Cifar10, &[3, 9, 0]);
        let d = read_file(&p, Variant::Cifar10, Some(3)).unwrap();
        assert_eq!(d.labels, vec![3, 9, 0]);
        assert_eq!(d.len(), 3);
        // Pixel (channel 1, row 2, column 5) of image 1 sits at plane offset 1024 + 2·32 + 5.
        let off = 1024 + 2 * 32 + 5;
        assert_eq!(d.image(1)[off], ((off + 7) % 251) as u8);
    }

    #[test]
    fn cifar100_uses_the_fine_label() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("train.bin");
        write_records(&p, Variant::Cifar100, &[99, 42]);
        let d = read_file(&p, Variant::Cifar100, None).unwrap();
        assert_eq!(d.labels, vec![99, 42]);
        assert_eq!(d.classes, 100);
        assert_eq!(d.image(0)[0], 0);
    }

    #[test]
    fn wrong_size_names_expected_and_actual_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("test.bin");
        let bytes = write_records(&p, Variant::Cifar100, &[1, 2]);
        std::fs::write(&p, &bytes[..bytes.len() - 10]).unwrap();
        let e = read_file(&p, Variant::Cifar100, Some(2))
            .unwrap_err()
            .to_string();
        assert!(e.contains("expected 6148 bytes"), "{e}");
        assert!(e.contains("found 6138 bytes"), "{e}");
    }

    #[test]
    fn missing_files_say_what_to_download() {
        let dir = tempfile::tempdir().unwrap();
        let e = load(dir.path(), Variant::Cifar100).unwrap_err().to_string();
        assert!(e.contains("CIFAR-100 data not found"), "{e}");
        assert!(e.contains("cifar-100-binary.tar.gz"), "{e}");
        assert!(e.contains("train.bin"), "{e}");
    }

    #[test]
    fn check_accepts_official_sizes_and_names_a_truncated_file() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("cifar-100-binary");
        std::fs::create_dir_all(&d).unwrap();
        // Sparse files of the official sizes: checking reads only their length.
        for (f, n) in [("train.bin", 50_000u64), ("test.bin", 10_000)] {
            let file = std::fs::File::create(d.join(f)).unwrap();
            file.set_len(n * 3074).unwrap();
        }
        check(dir.path(), Variant::Cifar100).unwrap();
        std::fs::File::options()
            .write(true)
            .open(d.join("test.bin"))
            .unwrap()
            .set_len(10_000 * 3074 - 1)
            .unwrap();
        let e = check(dir.path(), Variant::Cifar100)
            .unwrap_err()
            .to_string();
        assert!(e.contains("test.bin: expected 30740000 bytes"), "{e}");
        assert!(e.contains("found 30739999 bytes"), "{e}");
    }

    #[test]
    fn out_of_range_label_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("b.bin");
        write_records(&p, Variant::Cifar10, &[10]);
        let e = read_file(&p, Variant::Cifar10, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("label 10"), "{e}");
    }
}
