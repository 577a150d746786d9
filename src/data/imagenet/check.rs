//! `check`: everything wrong with an ImageNet folder at once, every image decoded.

use super::decode;
use super::scan::{survey, ValLayout};
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// What `lecal data check imagenet` prints.
#[derive(Debug, Clone)]
pub struct CheckReport {
    pub root: PathBuf,
    pub classes: usize,
    pub train_images: usize,
    pub val_images: usize,
    pub val_layout: ValLayout,
    /// Images that do not decode, with the reason, sorted by path.
    pub unreadable: Vec<(PathBuf, String)>,
    /// Problems of the layout: missing folders or ground truth, empty classes, val
    /// classes missing from train, files that are not images.
    pub problems: Vec<String>,
}

impl CheckReport {
    pub fn is_ok(&self) -> bool {
        self.unreadable.is_empty() && self.problems.is_empty()
    }
}

/// Surveys `root` and decodes every image in parallel (on rayon's pool).
pub fn check(root: &Path) -> CheckReport {
    let s = survey(root);
    let mut unreadable: Vec<(PathBuf, String)> = s
        .train
        .par_iter()
        .chain(s.val.par_iter())
        .filter_map(|x| match decode::load(&x.path) {
            Ok(_) => None,
            // The reason without the file name the context adds: the report names it.
            Err(e) => Some((x.path.clone(), format!("{:#}", e.root_cause()))),
        })
        .collect();
    unreadable.sort();
    CheckReport {
        root: s.root,
        classes: s.classes.len(),
        train_images: s.train.len(),
        val_images: s.val.len(),
        val_layout: s.val_layout,
        unreadable,
        problems: s.problems,
    }
}
