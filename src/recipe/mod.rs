//! Recipes: the TOML files that describe the paper's table cells, table specs and method
//! presets. This module reads and validates them without touching the results folder;
//! the planner (`plan`) turns them into runs.
//!
//! Files are told apart by name: `*.table.toml` is a table spec, a file in a folder named
//! `methods` is a method preset, any other `.toml` is a cell recipe. A recipe finds its
//! table spec and its method presets in its own folder or any folder above it (presets in
//! `methods/` there); the presets committed in `recipes/methods/` are also built in.

mod error;
mod files;
pub mod types;

pub use error::{line_col, RecipeError, RecipeErrors};
pub use files::ExternalFile;
pub use types::*;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The built-in method presets: the committed files of `recipes/methods/`.
const BUILTIN_PRESETS: &[(&str, &str)] = &[
    (
        "vanilla",
        include_str!("../../recipes/methods/vanilla.toml"),
    ),
    (
        "smoothing",
        include_str!("../../recipes/methods/smoothing.toml"),
    ),
    ("kd", include_str!("../../recipes/methods/kd.toml")),
    ("sl", include_str!("../../recipes/methods/sl.toml")),
    ("en-sl", include_str!("../../recipes/methods/en-sl.toml")),
    ("kd-sl", include_str!("../../recipes/methods/kd-sl.toml")),
    ("wsl", include_str!("../../recipes/methods/wsl.toml")),
    ("crd", include_str!("../../recipes/methods/crd.toml")),
    ("crd-kd", include_str!("../../recipes/methods/crd-kd.toml")),
    ("sskd", include_str!("../../recipes/methods/sskd.toml")),
];

/// One cell recipe with its source (kept for error positions).
#[derive(Debug, Clone)]
pub struct Recipe {
    pub path: PathBuf,
    pub source: String,
    pub raw: RawRecipe,
    /// The method after presets and inline overrides are merged.
    pub method: MethodFields,
    /// The teacher checkpoints it names (by the path as written), found and hashed.
    pub checkpoints: BTreeMap<String, ExternalFile>,
}

impl Recipe {
    pub fn cell(&self) -> &CellRef {
        self.raw.cell.get_ref()
    }

    /// An error located at a span of this recipe.
    pub fn error(
        &self,
        span: std::ops::Range<usize>,
        key: &str,
        message: impl Into<String>,
    ) -> RecipeError {
        RecipeError::at_span(&self.path, &self.source, span, Some(key), message)
    }
}

#[derive(Debug, Clone)]
pub struct TableSpec {
    pub name: String,
    pub path: PathBuf,
    pub raw: RawTableSpec,
}

/// Everything read from the paths given on the command line.
#[derive(Debug, Clone, Default)]
pub struct RecipeSet {
    pub recipes: Vec<Recipe>,
    pub tables: BTreeMap<String, TableSpec>,
}

enum Kind {
    Recipe,
    Table,
    Preset,
}

fn kind_of(path: &Path) -> Kind {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if name.ends_with(".table.toml") {
        Kind::Table
    } else if path.parent().and_then(|p| p.file_name()) == Some("methods".as_ref()) {
        Kind::Preset
    } else {
        Kind::Recipe
    }
}

/// Expands files and folders into the sorted list of `.toml` files below them.
pub fn expand_paths(paths: &[PathBuf]) -> Result<Vec<PathBuf>, RecipeErrors> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for p in paths {
        if p.is_dir() {
            walk(p, &mut out, &mut errors, &mut Vec::new());
        } else if p.is_file() {
            out.push(p.clone());
        } else {
            errors.push(RecipeError::file(p, "no such file or folder"));
        }
    }
    if !errors.is_empty() {
        return Err(RecipeErrors(errors));
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// `ancestors`: the canonical paths of the folders being walked above `dir`, so that a
/// link back to one of them is reported as a loop instead of being read again and again.
fn walk(
    dir: &Path,
    out: &mut Vec<PathBuf>,
    errors: &mut Vec<RecipeError>,
    ancestors: &mut Vec<PathBuf>,
) {
    let real = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    if ancestors.contains(&real) {
        let why = format!(
            "a symbolic link loop: this folder is {}, which is being read already",
            real.display()
        );
        return errors.push(RecipeError::file(dir, why));
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => return errors.push(RecipeError::file(dir, format!("cannot read folder: {e}"))),
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    // A run's folder (a results folder kept among the recipes) holds no recipes: a
    // `run.toml` in `runs/<id>/`, or beside the files only a run has.
    let has = |f: &str| dir.join(f).exists();
    let in_runs = dir
        .parent()
        .and_then(|p| p.file_name())
        .is_some_and(|n| n == "runs");
    let markers = [
        "epochs.csv",
        "summary.csv",
        "failed.toml",
        "lock",
        "checkpoint",
    ];
    if has("run.toml") && (in_runs || markers.iter().any(|f| has(f))) {
        return;
    }
    ancestors.push(real);
    for p in paths {
        if p.is_dir() {
            walk(&p, out, errors, ancestors);
        } else if p.extension() == Some("toml".as_ref()) {
            out.push(p);
        }
    }
    ancestors.pop();
}

fn read(path: &Path) -> Result<String, RecipeError> {
    std::fs::read_to_string(path).map_err(|e| RecipeError::file(path, format!("cannot read: {e}")))
}

/// Reads and validates every recipe and table spec below `paths`. Returns every problem
/// found, not only the first.
pub fn load(paths: &[PathBuf]) -> Result<RecipeSet, RecipeErrors> {
    let files = expand_paths(paths)?;
    let mut errors = Vec::new();
    let mut set = RecipeSet::default();
    let mut recipes = Vec::new();
    for path in &files {
        match kind_of(path) {
            Kind::Table => match load_table(path) {
                Ok(t) => {
                    set.tables.insert(t.name.clone(), t);
                }
                Err(e) => errors.push(e),
            },
            // Presets are read when a recipe names them, so that a broken preset is
            // reported where it is used, and checked here when given explicitly.
            Kind::Preset => {
                if let Err(e) = read(path).and_then(|s| parse_preset(path, &s)) {
                    errors.push(e)
                }
            }
            Kind::Recipe => match read(path) {
                Ok(source) => match toml::from_str::<RawRecipe>(&source) {
                    Ok(raw) => recipes.push((path.clone(), source, raw)),
                    Err(e) => errors.push(RecipeError::from_toml(path, &source, &e)),
                },
                Err(e) => errors.push(e),
            },
        }
    }
    for (path, source, raw) in recipes {
        match check_recipe(&path, &source, raw, &mut set.tables) {
            Ok(mut r) => {
                r.checkpoints = files::resolve(&r).into_iter().collect();
                set.recipes.push(r)
            }
            Err(mut es) => errors.append(&mut es),
        }
    }
    check_duplicate_cells(&set.recipes, &mut errors);
    // A table spec or preset inside the given folders is read for itself and again for
    // each recipe that uses it: report each problem once.
    let mut seen = std::collections::BTreeSet::new();
    errors.retain(|e| seen.insert(e.to_string()));
    // Table layout order (table, row, column): plans and runs follow the table.
    let pos = |r: &Recipe| {
        let c = r.cell();
        let t = set.tables.get(&c.table);
        let idx = |list: Option<&Vec<String>>, x: &String| {
            list.and_then(|l| l.iter().position(|y| y == x))
                .unwrap_or(usize::MAX)
        };
        (
            c.table.clone(),
            idx(t.map(|t| &t.raw.rows), &c.row),
            idx(t.map(|t| &t.raw.columns), &c.column),
            r.path.clone(),
        )
    };
    set.recipes.sort_by_cached_key(pos);
    if errors.is_empty() {
        Ok(set)
    } else {
        Err(RecipeErrors(errors))
    }
}

/// Reads a table spec file.
pub fn load_table(path: &Path) -> Result<TableSpec, RecipeError> {
    let source = read(path)?;
    let raw: RawTableSpec =
        toml::from_str(&source).map_err(|e| RecipeError::from_toml(path, &source, &e))?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(".table.toml"))
        .unwrap_or_default()
        .to_string();
    if raw.protocol.get_ref() != "last-epoch" {
        return Err(RecipeError::at_span(
            path,
            &source,
            raw.protocol.span(),
            Some("protocol"),
            format!(
                "unknown protocol `{}`, expected `last-epoch` (the paper's: the last epoch's numbers, mean ± sample std over seeds)",
                raw.protocol.get_ref()
            ),
        ));
    }
    for (what, list) in [("rows", &raw.rows), ("columns", &raw.columns)] {
        let mut seen = std::collections::BTreeSet::new();
        if let Some(dup) = list.iter().find(|x| !seen.insert(x.as_str())) {
            let msg = format!("`{dup}` is listed twice");
            return Err(RecipeError::at_key(path, &source, what, msg));
        }
    }
    if raw.split == Split::Validation {
        for (key, used) in [
            ("paper", !raw.paper.is_empty()),
            ("cited", !raw.cited.is_empty()),
            ("orderings", !raw.orderings.is_empty()),
        ] {
            if used {
                let msg = "the paper's numbers are on the test set; a table of the validation \
                           split cannot set them beside its own";
                return Err(RecipeError::at_key(path, &source, key, msg));
            }
        }
    }
    if let Some(row) = raw.cited.iter().find(|r| !raw.rows.contains(r)) {
        let msg = format!("row `{row}` is not in `rows`");
        return Err(RecipeError::at_key(path, &source, "cited", msg));
    }
    for (row, cols) in &raw.paper {
        if !raw.rows.contains(row) {
            let (key, msg) = (
                format!("paper.{row}"),
                format!("row `{row}` is not in `rows`"),
            );
            return Err(RecipeError::at_key(path, &source, &key, msg));
        }
        if let Some(col) = cols.keys().find(|c| !raw.columns.contains(c)) {
            let key = format!("paper.{row}.{col}");
            let msg = format!("column `{col}` is not in `columns`");
            return Err(RecipeError::at_key(path, &source, &key, msg));
        }
    }
    check_orderings(path, &source, &raw)?;
    Ok(TableSpec {
        name,
        path: path.to_path_buf(),
        raw,
    })
}

/// Each ordering compares two different rows of the table.
fn check_orderings(path: &Path, source: &str, raw: &RawTableSpec) -> Result<(), RecipeError> {
    for o in &raw.orderings {
        let ord = o.get_ref();
        let unknown = [&ord.first, &ord.second]
            .into_iter()
            .find(|r| !raw.rows.contains(r));
        let msg = match unknown {
            Some(row) => format!("row `{row}` is not in `rows`"),
            None if ord.first == ord.second => format!("`{}` is compared with itself", ord.first),
            None => continue,
        };
        return Err(RecipeError::at_span(
            path,
            source,
            o.span(),
            Some("orderings"),
            msg,
        ));
    }
    Ok(())
}

fn parse_preset(path: &Path, source: &str) -> Result<MethodFields, RecipeError> {
    toml::from_str(source).map_err(|e| RecipeError::from_toml(path, source, &e))
}

/// The folder itself and every folder above it.
fn ancestors(path: &Path) -> impl Iterator<Item = &Path> {
    path.parent().into_iter().flat_map(|p| p.ancestors())
}

/// Finds a method preset by name: `methods/<name>.toml` beside the recipe or above it,
/// then the built-in presets. Returns the preset and where it came from.
fn find_preset(recipe: &Path, name: &str) -> Option<Result<(MethodFields, PathBuf), RecipeError>> {
    for dir in ancestors(recipe) {
        let p = dir.join("methods").join(format!("{name}.toml"));
        if p.is_file() {
            return Some(read(&p).and_then(|s| parse_preset(&p, &s)).map(|m| (m, p)));
        }
    }
    let (_, text) = BUILTIN_PRESETS.iter().find(|(n, _)| *n == name)?;
    let p = PathBuf::from(format!("<built-in>/methods/{name}.toml"));
    Some(parse_preset(&p, text).map(|m| (m, p)))
}

fn find_table(recipe: &Path, name: &str) -> Option<PathBuf> {
    ancestors(recipe)
        .map(|dir| dir.join(format!("{name}.table.toml")))
        .find(|p| p.is_file())
}

/// Merges presets (following `preset = ...` chains) under the inline fields.
fn resolve_method(
    recipe: &Recipe,
    choice: Option<&toml::Spanned<MethodChoice>>,
) -> Result<MethodFields, RecipeError> {
    let (mut fields, span) = match choice {
        Some(c) => (c.get_ref().0.clone(), c.span()),
        None => (
            MethodFields {
                preset: Some("vanilla".into()),
                ..Default::default()
            },
            0..0,
        ),
    };
    let mut chain: Vec<String> = Vec::new();
    while let Some(name) = fields.preset.take() {
        if chain.contains(&name) {
            chain.push(name);
            return Err(recipe.error(
                span,
                "method",
                format!("method presets form a cycle: {}", chain.join(" -> ")),
            ));
        }
        let (base, _) = match find_preset(&recipe.path, &name) {
            Some(r) => r?,
            None => {
                let builtin: Vec<&str> = BUILTIN_PRESETS.iter().map(|(n, _)| *n).collect();
                return Err(recipe.error(
                    span,
                    "method",
                    format!(
                        "unknown method preset `{name}`: no methods/{name}.toml beside the recipe or above it, and no built-in preset of that name (built in: {})",
                        builtin.join(", ")
                    ),
                ));
            }
        };
        chain.push(name);
        fields = merge(base, fields);
    }
    Ok(fields)
}

/// `over` wins wherever it sets a field.
fn merge(base: MethodFields, over: MethodFields) -> MethodFields {
    MethodFields {
        preset: base.preset,
        description: over.description.or(base.description),
        label: over.label.or(base.label),
        epsilon: over.epsilon.or(base.epsilon),
        combine: over.combine.or(base.combine),
        temperature: over.temperature.or(base.temperature),
        hard_weight: over.hard_weight.or(base.hard_weight),
        teacher_weight: over.teacher_weight.or(base.teacher_weight),
        kl_reduction: over.kl_reduction.or(base.kl_reduction),
        teacher_reduction: over.teacher_reduction.or(base.teacher_reduction),
        sample_weight: over.sample_weight.or(base.sample_weight),
        crd_weight: over.crd_weight.or(base.crd_weight),
        crd_dim: over.crd_dim.or(base.crd_dim),
        crd_negatives: over.crd_negatives.or(base.crd_negatives),
        crd_temperature: over.crd_temperature.or(base.crd_temperature),
        crd_momentum: over.crd_momentum.or(base.crd_momentum),
        sskd_tf_weight: over.sskd_tf_weight.or(base.sskd_tf_weight),
        sskd_ss_weight: over.sskd_ss_weight.or(base.sskd_ss_weight),
        sskd_tf_temperature: over.sskd_tf_temperature.or(base.sskd_tf_temperature),
        sskd_ss_temperature: over.sskd_ss_temperature.or(base.sskd_ss_temperature),
        sskd_tf_keep: over.sskd_tf_keep.or(base.sskd_tf_keep),
        sskd_ss_keep: over.sskd_ss_keep.or(base.sskd_ss_keep),
        sskd_head_epochs: over.sskd_head_epochs.or(base.sskd_head_epochs),
        sskd_head_lr: over.sskd_head_lr.or(base.sskd_head_lr),
        sskd_head_milestones: over.sskd_head_milestones.or(base.sskd_head_milestones),
    }
}

// Long: every check of a recipe pushes to one list, so that a user sees all of a
// recipe's problems at once; split, each part would thread that list through.
fn check_recipe(
    path: &Path,
    source: &str,
    raw: RawRecipe,
    tables: &mut BTreeMap<String, TableSpec>,
) -> Result<Recipe, Vec<RecipeError>> {
    let mut recipe = Recipe {
        path: path.to_path_buf(),
        source: source.to_string(),
        raw,
        method: MethodFields::default(),
        checkpoints: BTreeMap::new(),
    };
    let mut errors = Vec::new();
    let raw = &recipe.raw;
    let cell = raw.cell.get_ref();
    if !tables.contains_key(&cell.table) {
        match find_table(path, &cell.table) {
            Some(p) => match load_table(&p) {
                Ok(t) => {
                    tables.insert(t.name.clone(), t);
                }
                Err(e) => errors.push(e),
            },
            None => errors.push(recipe.error(
                raw.cell.span(),
                "cell.table",
                format!(
                    "no table spec `{}.table.toml` in the recipe's folder or above it",
                    cell.table
                ),
            )),
        }
    }
    if let Some(t) = tables.get(&cell.table) {
        if t.raw.cited.contains(&cell.row) {
            errors.push(recipe.error(
                raw.cell.span(),
                "cell.row",
                format!(
                    "row `{}` of table `{}` is cited from the literature, not trained",
                    cell.row, cell.table
                ),
            ));
        }
        if !t.raw.rows.contains(&cell.row) {
            errors.push(recipe.error(
                raw.cell.span(),
                "cell.row",
                format!(
                    "row `{}` is not a row of table `{}`, expected one of: {}",
                    cell.row,
                    cell.table,
                    t.raw.rows.join(", ")
                ),
            ));
        }
        if !t.raw.columns.contains(&cell.column) {
            errors.push(recipe.error(
                raw.cell.span(),
                "cell.column",
                format!(
                    "column `{}` is not a column of table `{}`, expected one of: {}",
                    cell.column,
                    cell.table,
                    t.raw.columns.join(", ")
                ),
            ));
        }
    }
    let seeds = raw.seeds.get_ref();
    if seeds.is_empty() {
        errors.push(recipe.error(raw.seeds.span(), "seeds", "expected at least one seed"));
    }
    let mut sorted = seeds.clone();
    sorted.sort_unstable();
    if sorted.windows(2).any(|w| w[0] == w[1]) {
        errors.push(recipe.error(raw.seeds.span(), "seeds", "a seed is listed twice"));
    }
    if let Some(s) = &raw.synthetic {
        if *raw.dataset.get_ref() != DatasetName::Synthetic {
            errors.push(recipe.error(
                s.span(),
                "synthetic",
                format!(
                    "options of the synthetic dataset given, but dataset is `{}`",
                    raw.dataset.get_ref().as_str()
                ),
            ));
        }
    }
    for t in recipe.raw.teachers.get_ref() {
        let Some(seeds) = &t.seeds else { continue };
        let mut sorted = seeds.clone();
        sorted.sort_unstable();
        sorted.dedup();
        let why = if seeds.is_empty() {
            "expected at least one teacher seed"
        } else if sorted.len() < seeds.len() {
            // The same run would count twice in the ensemble.
            "a teacher seed is listed twice"
        } else {
            continue;
        };
        errors.push(recipe.error(recipe.raw.teachers.span(), "teachers.seeds", why));
    }
    match resolve_method(&recipe, recipe.raw.method.as_ref()) {
        Ok(m) => recipe.method = m,
        Err(e) => errors.push(e),
    }
    if errors.is_empty() {
        Ok(recipe)
    } else {
        Err(errors)
    }
}

fn check_duplicate_cells(recipes: &[Recipe], errors: &mut Vec<RecipeError>) {
    let mut seen: BTreeMap<&CellRef, &Recipe> = BTreeMap::new();
    for r in recipes {
        if let Some(first) = seen.insert(r.cell(), r) {
            errors.push(r.error(
                r.raw.cell.span(),
                "cell",
                format!(
                    "cell {} is already given by {}",
                    r.cell(),
                    first.path.display()
                ),
            ));
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
