//! Finding ILSVRC2012's images on disk: the classes, every training and validation image
//! with its label, and everything about the folder that is wrong.
//!
//! Layout: `<root>/train/<wnid>/*.JPEG`; the classes are the sorted wnid folder names and
//! a label is a class's index. `<root>/val/` holds either the same class folders or the
//! 50,000 images flat (`ILSVRC2012_val_00000001.JPEG`, …) with a ground-truth file naming
//! each image's wnid, one of (the first found is used):
//!
//! - `<root>/val/labels.txt`: lines `ILSVRC2012_val_00000001.JPEG n01751748`;
//! - `<root>/LOC_val_solution.csv`: Kaggle's file, `ImageId,PredictionString` rows whose
//!   first token is the wnid (`ILSVRC2012_val_00000001,n01751748 43 23 ...`);
//! - the official devkit, `<root>/ILSVRC2012_devkit_t12/` extracted or the archive
//!   `<root>/ILSVRC2012_devkit_t12.tar.gz`: its `data/ILSVRC2012_validation_ground_truth.txt`
//!   gives each image's ILSVRC2012_ID, which its `data/meta.mat` maps to the wnid
//!   (`devkit.rs`).
//!
//! Everything is listed sorted, so the same folder always gives the same indices, and
//! nothing is skipped silently: a file that is not a JPEG, an empty class, an image
//! without ground truth are problems that [`scan`] refuses and `check` reports.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// One image: its file and its class index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    pub path: PathBuf,
    pub label: u16,
}

/// How the validation images are labelled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValLayout {
    /// `val/<wnid>/*.JPEG`, as the training images.
    ClassFolders,
    /// Flat images labelled by this ground-truth file.
    Flat { ground_truth: PathBuf },
    /// Flat images and no ground-truth file (a problem).
    FlatUnlabelled,
}

/// The dataset as found, and what is wrong with the folder.
#[derive(Debug, Clone)]
pub struct Survey {
    pub root: PathBuf,
    /// The wnids, sorted; a label is an index into this.
    pub classes: Vec<String>,
    pub train: Vec<Sample>,
    pub val: Vec<Sample>,
    pub val_layout: ValLayout,
    /// One line per problem, naming the file or folder.
    pub problems: Vec<String>,
}

/// The labelled images of both splits.
#[derive(Debug, Clone)]
pub struct ImageNet {
    pub root: PathBuf,
    pub classes: Vec<String>,
    pub train: Vec<Sample>,
    pub val: Vec<Sample>,
}

/// The name of the per-folder ground-truth file inside a flat `val/`.
pub const LABELS_TXT: &str = "labels.txt";
/// Kaggle's ground-truth file in the root.
pub const KAGGLE_CSV: &str = "LOC_val_solution.csv";

fn is_jpeg(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| ["jpeg", "jpg"].contains(&e.to_ascii_lowercase().as_str()))
}

/// The entries of a folder, sorted by name.
fn entries(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut v = fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<Vec<_>>>()?;
    v.sort();
    Ok(v)
}

/// The images of one class folder; anything else in it is a problem.
fn class_images(dir: &Path, problems: &mut Vec<String>) -> Vec<PathBuf> {
    let mut out = Vec::new();
    match entries(dir) {
        Err(e) => problems.push(format!("{}: cannot list: {e}", dir.display())),
        Ok(files) => {
            for f in files {
                if f.is_file() && is_jpeg(&f) {
                    out.push(f);
                } else {
                    problems.push(format!("{}: not a JPEG image", f.display()));
                }
            }
            if out.is_empty() {
                problems.push(format!("{}: empty class folder", dir.display()));
            }
        }
    }
    out
}

/// Class folder name → images, for `train/` or a `val/` in class folders.
fn class_folders(dir: &Path, problems: &mut Vec<String>) -> BTreeMap<String, Vec<PathBuf>> {
    let mut out = BTreeMap::new();
    let list = match entries(dir) {
        Ok(l) => l,
        Err(e) => {
            problems.push(format!("{}: cannot list: {e}", dir.display()));
            return out;
        }
    };
    for d in list {
        let name = d
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        if d.is_dir() {
            out.insert(name, class_images(&d, problems));
        } else {
            problems.push(format!(
                "{}: a file where class folders are expected",
                d.display()
            ));
        }
    }
    out
}

/// Image file name → wnid from the first ground-truth file present, with its path.
fn ground_truth(root: &Path) -> anyhow::Result<Option<(PathBuf, BTreeMap<String, String>)>> {
    let txt = root.join("val").join(LABELS_TXT);
    if txt.is_file() {
        let text = fs::read_to_string(&txt)?;
        let mut map = BTreeMap::new();
        for (n, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let mut it = line.split_whitespace();
            match (it.next(), it.next(), it.next()) {
                (Some(f), Some(w), None) => map.insert(f.to_string(), w.to_string()),
                _ => anyhow::bail!(
                    "{}:{}: expected `FILENAME WNID`, found `{line}`",
                    txt.display(),
                    n + 1
                ),
            };
        }
        return Ok(Some((txt, map)));
    }
    let csv = root.join(KAGGLE_CSV);
    if csv.is_file() {
        let text = fs::read_to_string(&csv)?;
        let mut map = BTreeMap::new();
        for (n, line) in text.lines().enumerate().skip(1) {
            let wnid = line.split_once(',').and_then(|(id, p)| {
                let w = p.split_whitespace().next()?;
                Some((id, w))
            });
            let Some((id, w)) = wnid else {
                anyhow::bail!(
                    "{}:{}: expected `ImageId,PredictionString`, found `{line}`",
                    csv.display(),
                    n + 1
                );
            };
            map.insert(format!("{id}.JPEG"), w.to_string());
        }
        return Ok(Some((csv, map)));
    }
    super::devkit::ground_truth(root)
}

/// The sorted images of both splits with their labels, and every problem found.
pub fn survey(root: &Path) -> Survey {
    let mut problems = Vec::new();
    let (train_dir, val_dir) = (root.join("train"), root.join("val"));
    let train = if train_dir.is_dir() {
        class_folders(&train_dir, &mut problems)
    } else {
        problems.push(format!("{} is missing", train_dir.display()));
        BTreeMap::new()
    };
    let classes: Vec<String> = train.keys().cloned().collect();
    let index: BTreeMap<&str, u16> = (0..classes.len())
        .map(|i| (classes[i].as_str(), i as u16))
        .collect();
    let train_samples = train
        .values()
        .enumerate()
        .flat_map(|(i, v)| {
            v.iter().map(move |p| Sample {
                path: p.clone(),
                label: i as u16,
            })
        })
        .collect();
    let mut val = Vec::new();
    let mut layout = ValLayout::ClassFolders;
    if !val_dir.is_dir() {
        problems.push(format!("{} is missing", val_dir.display()));
    } else if entries(&val_dir).is_ok_and(|l| l.iter().any(|p| p.is_dir())) {
        for (wnid, images) in class_folders(&val_dir, &mut problems) {
            match index.get(wnid.as_str()) {
                Some(&label) => val.extend(images.into_iter().map(|path| Sample { path, label })),
                None => problems.push(format!(
                    "{}: class `{wnid}` of val is not among the training classes",
                    val_dir.join(&wnid).display()
                )),
            }
        }
    } else {
        layout = flat_val(root, &index, &mut val, &mut problems);
    }
    if classes.len() > usize::from(u16::MAX) {
        problems.push(format!(
            "{} classes: more than labels can hold",
            classes.len()
        ));
    }
    Survey {
        root: root.to_path_buf(),
        classes,
        train: train_samples,
        val,
        val_layout: layout,
        problems,
    }
}

/// The flat `val/` folder labelled by its ground-truth file.
fn flat_val(
    root: &Path,
    index: &BTreeMap<&str, u16>,
    val: &mut Vec<Sample>,
    problems: &mut Vec<String>,
) -> ValLayout {
    let dir = root.join("val");
    let gt = match ground_truth(root) {
        Ok(g) => g,
        Err(e) => {
            problems.push(format!("{e:#}"));
            return ValLayout::FlatUnlabelled;
        }
    };
    let Some((gt_path, map)) = gt else {
        problems.push(format!(
            "{} holds images without class folders and no ground truth: provide {} (lines \
             `ILSVRC2012_val_00000001.JPEG n01751748`), or in {} Kaggle's {}, ILSVRC2012's \
             devkit {} or its extracted folder {}/",
            dir.display(),
            dir.join(LABELS_TXT).display(),
            root.display(),
            KAGGLE_CSV,
            super::DEVKIT_ARCHIVE,
            super::DEVKIT_DIR,
        ));
        return ValLayout::FlatUnlabelled;
    };
    let mut seen = BTreeSet::new();
    for f in entries(&dir).unwrap_or_default() {
        let name = f
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        if f == gt_path {
            continue;
        }
        if !is_jpeg(&f) {
            problems.push(format!("{}: not a JPEG image", f.display()));
            continue;
        }
        seen.insert(name.clone());
        match map.get(&name).map(|w| (w, index.get(w.as_str()))) {
            Some((_, Some(&label))) => val.push(Sample { path: f, label }),
            Some((w, None)) => problems.push(format!(
                "{}: class `{w}` ({}) is not among the training classes",
                f.display(),
                gt_path.display()
            )),
            None => problems.push(format!(
                "{}: no ground truth in {}",
                f.display(),
                gt_path.display()
            )),
        }
    }
    let missing: Vec<&String> = map.keys().filter(|k| !seen.contains(*k)).collect();
    if let Some(first) = missing.first() {
        problems.push(format!(
            "{} names {} images missing from {} (first: {first})",
            gt_path.display(),
            missing.len(),
            dir.display()
        ));
    }
    ValLayout::Flat {
        ground_truth: gt_path,
    }
}

/// The labelled images under `root`; an error listing the problems when the folder is
/// not a complete ImageNet layout (`lecal data check imagenet` reports them all).
pub fn scan(root: &Path) -> anyhow::Result<ImageNet> {
    let s = survey(root);
    if !s.problems.is_empty() {
        let shown: Vec<&str> = s.problems.iter().take(10).map(|p| p.as_str()).collect();
        anyhow::bail!(
            "{}: {} problem(s) with the ImageNet folder (`lecal data check imagenet --dir {}` \
             lists them all):\n  {}",
            root.display(),
            s.problems.len(),
            root.display(),
            shown.join("\n  ")
        );
    }
    Ok(ImageNet {
        root: s.root,
        classes: s.classes,
        train: s.train,
        val: s.val,
    })
}
