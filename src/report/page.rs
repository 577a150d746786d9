//! A table's report: reads what each cell's done runs stored (predictions or logits,
//! epochs, provenance), draws the plots, and writes the folder the store keeps for it:
//!
//! ```text
//! <results>/report/<table>/index.html                 the page, every plot inlined
//! <results>/report/<table>/scatter.svg                accuracy against ECE
//! <results>/report/<table>/r<i>c<j>-<row>-<column>-reliability.svg, -curves.svg
//! ```
//!
//! The page needs nothing beside it; the SVG files are there for use elsewhere. Plots
//! that a report no longer has are removed, so the folder holds one report.

use super::html::{self, CellPart, Figure, RunLine};
use super::plot::{self, Curves, Mark, Reliability};
use super::Table;
use crate::metrics::calibration;
use crate::plan::Plan;
use crate::recipe::Split;
use crate::store::{self, RunDir, Store};
use std::path::PathBuf;

/// The page's file name in the report's folder.
pub const INDEX: &str = "index.html";

/// What `write_report` wrote, and the plots it could not draw (a run's file missing or
/// unreadable), each naming the file.
#[derive(Debug, Default)]
pub struct Written {
    pub files: Vec<PathBuf>,
    pub notes: Vec<String>,
}

/// `Aug-KD-SL+` → `aug-kd-sl-plus`: a row or column name in a file name.
fn slug(s: &str) -> String {
    let mut out = String::new();
    for ch in s.replace('+', "-plus").chars() {
        if ch.is_ascii_alphanumeric() {
            out.push(ch.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_string()
}

/// The (top-label confidence, correct) pairs of a run on `split`: the test set's from
/// `predictions.csv` (the numbers the summary was computed from), the validation set's
/// from the stored logits.
fn samples(run: &RunDir, split: Split) -> anyhow::Result<Vec<(f64, bool)>> {
    match split {
        Split::Test => Ok(run
            .predictions()?
            .iter()
            .map(|p| (p.confidence, p.prediction == p.label))
            .collect()),
        Split::Validation => {
            let logits = run.logits()?;
            let val = logits
                .validation
                .ok_or_else(|| anyhow::anyhow!("run {} stored no validation logits", run.id()))?;
            Ok(calibration::top_label(val.scores(), 1.0))
        }
    }
}

/// A cell's two plots from its done runs, each as (SVG, file name) or why it is missing.
fn cell_figures(t: &Table, p: &CellPart, runs: &[RunDir], notes: &mut Vec<String>) -> Vec<Figure> {
    let (row, column) = (&t.rows[p.row], &t.columns[p.column]);
    let stem = format!(
        "r{}c{}-{}-{}",
        p.row + 1,
        p.column + 1,
        slug(row),
        slug(column)
    );
    let title = format!("{row} · {column}");
    let mut failed = |why: anyhow::Error| {
        let why = format!("{why:#}");
        notes.push(format!("{title}: {why}"));
        Err(why)
    };
    let mut pooled = Vec::new();
    let mut epochs = Vec::new();
    let mut trouble = None;
    for r in runs {
        match samples(r, t.split) {
            Ok(s) => pooled.extend(s),
            Err(e) => trouble = Some(e),
        }
    }
    let reliability = match trouble {
        Some(e) => failed(e),
        None => Reliability::pooled(&pooled, runs.len())
            .svg(&title)
            .map(|svg| (svg, format!("{stem}-reliability.svg")))
            .or_else(&mut failed),
    };
    let mut trouble = None;
    for r in runs {
        match r.epochs() {
            Ok(e) => epochs.push(e),
            Err(e) => trouble = Some(e),
        }
    }
    let curves = match trouble {
        Some(e) => failed(e),
        None => Curves::over_seeds(&epochs, t.split == Split::Validation)
            .svg(&title)
            .map(|svg| (svg, format!("{stem}-curves.svg")))
            .or_else(&mut failed),
    };
    vec![reliability, curves]
}

/// Writes the report of table `t` (assembled from `plan` and `store`) into the store's
/// folder for it; returns the files written and the plots it could not draw.
pub fn write_report(t: &Table, plan: &Plan, store: &Store) -> anyhow::Result<Written> {
    let mut written = Written::default();
    let mut parts = Vec::new();
    for (cell, cp) in plan.cells.iter().filter(|(c, _)| c.table == t.name) {
        let (Some(row), Some(column)) = (
            t.rows.iter().position(|r| *r == cell.row),
            t.columns.iter().position(|c| *c == cell.column),
        ) else {
            continue;
        };
        // Done runs: those with a sound summary, as the table counts them.
        let done: Vec<(u64, RunDir)> = cp
            .runs
            .iter()
            .filter(|(_, id)| matches!(store.summary(id), Ok(Some(_))))
            .map(|(seed, id)| (*seed, store.run(id)))
            .collect();
        let mut part = CellPart {
            row,
            column,
            seeds: cp.runs.len(),
            runs: done
                .iter()
                .map(|(seed, r)| RunLine {
                    seed: *seed,
                    id: r.id().to_string(),
                    provenance: r.record().map(|rec| rec.provenance),
                })
                .collect(),
            figures: Vec::new(),
        };
        if !done.is_empty() {
            let dirs: Vec<RunDir> = done.into_iter().map(|(_, r)| r).collect();
            part.figures = cell_figures(t, &part, &dirs, &mut written.notes);
        }
        parts.push(part);
    }
    // The table's order, row by row.
    parts.sort_by_key(|p| (p.row, p.column));
    let scatter_title = format!("{}: accuracy against ECE", t.stem());
    let scatter: Figure = plot::scatter(&scatter_title, &t.rows, &t.columns, &Mark::of_table(t))
        .map(|svg| (svg, "scatter.svg".to_string()))
        .map_err(|e| {
            written.notes.push(format!("{e:#}"));
            format!("{e:#}")
        });
    let page = html::page(t, &scatter, &parts);
    let dir = store.report_dir(&t.stem());
    let figures = std::iter::once(&scatter).chain(parts.iter().flat_map(|p| &p.figures));
    let mut names = Vec::new();
    for (svg, name) in figures.flatten() {
        let p = dir.join(name);
        store::write_atomic(&p, svg.as_bytes())?;
        names.push(name.clone());
        written.files.push(p);
    }
    let index = dir.join(INDEX);
    store::write_atomic(&index, page.as_bytes())?;
    written.files.push(index);
    remove_stale_plots(&dir, &names);
    Ok(written)
}

/// Removes the SVG files of an earlier report that this one did not write.
fn remove_stale_plots(dir: &std::path::Path, keep: &[String]) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if name.ends_with(".svg") && !keep.contains(&name) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}
