//! Files a recipe names outside the recipe set: external teacher checkpoints. They are
//! found and hashed when the recipes are loaded, so that the planner reads no file.

use super::Recipe;
use std::path::{Path, PathBuf};

/// A teacher checkpoint as found when its recipe was loaded.
#[derive(Debug, Clone, PartialEq)]
pub struct ExternalFile {
    /// The path as written, joined to the recipe's folder when relative, and canonical
    /// where the file exists.
    pub path: PathBuf,
    /// The SHA-256 of its bytes in hex, or why they could not be read; `None` when the
    /// recipe pins `sha256` (then the file is not needed to plan).
    pub sha256: Option<Result<String, String>>,
}

/// Every checkpoint that `recipe`'s teachers name, keyed by the path as written.
pub(super) fn resolve(recipe: &Recipe) -> Vec<(String, ExternalFile)> {
    let dir = recipe.path.parent().unwrap_or(Path::new("."));
    recipe
        .raw
        .teachers
        .get_ref()
        .iter()
        .filter_map(|t| {
            let written = t.checkpoint.as_ref()?;
            let joined = dir.join(written);
            let path = std::fs::canonicalize(&joined).unwrap_or(joined);
            let sha256 = t
                .sha256
                .is_none()
                .then(|| crate::hash::file_sha256(&path).map_err(|e| e.to_string()));
            Some((written.clone(), ExternalFile { path, sha256 }))
        })
        .collect()
}
