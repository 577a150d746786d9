//! Tables: gather the finished runs of each cell of a table spec, reduce them to
//! mean ± sample std over seeds, and export in the paper's layout; other measures of the
//! same cells, before or after temperature scaling (`metric`, `view`); the reproduction
//! checked against the paper's values (`verdict`); and a table's report (`page.rs`): one
//! self-contained HTML page with the table, plots of every cell (`plot/`), the protocol
//! and the runs' provenance.

mod csv;
mod html;
mod latex;
mod markdown;
pub mod metric;
mod page;
pub mod plot;
pub mod verdict;
pub mod view;

pub use self::csv::Csv;
pub use latex::Latex;
pub use markdown::Markdown;
pub use metric::{assemble_view, Metric, MetricTable, View};
pub use page::{write_report, Written, INDEX};

use crate::plan::Plan;
use crate::recipe::{CellRef, PaperValue, Split, TableSpec};
use crate::store::{self, Store};
use std::collections::BTreeMap;

/// Numbers of one cell.
#[derive(Debug, Clone, PartialEq)]
pub struct CellStats {
    /// Seeds the recipe asks for, and how many of them are done.
    pub seeds: usize,
    pub n: usize,
    pub acc_mean: f64,
    pub acc_std: Option<f64>,
    pub ece_mean: f64,
    pub ece_std: Option<f64>,
    pub nll_mean: f64,
    pub brier_mean: f64,
    /// Mean top-5 accuracy, when every run's summary has one.
    pub top5_mean: Option<f64>,
    /// Done runs without a done record: nothing vouches for their files, so the cell is
    /// marked and never best.
    pub unverified: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// No recipe gives this cell.
    Missing,
    /// A recipe exists, no seed is done yet; `failed` of them failed (shown as failed).
    Pending {
        seeds: usize,
        failed: usize,
    },
    Done(CellStats),
    /// A result quoted from the literature (a `cited` row of the table spec).
    Cited(PaperValue),
}

#[derive(Debug, Clone)]
pub struct Table {
    pub name: String,
    pub title: String,
    pub rows: Vec<String>,
    pub columns: Vec<String>,
    pub note: Option<String>,
    /// Scale of the runs, when not `full`.
    pub scale: Option<String>,
    /// The images the numbers are measured on.
    pub split: Split,
    /// Cells show top-5 accuracy beside top-1.
    pub top5: bool,
    pub cells: BTreeMap<(String, String), Cell>,
    pub paper: BTreeMap<(String, String), PaperValue>,
    /// What a reader must know of the cells' runs: each failed run (where and why) and
    /// each done run that nothing vouches for. Printed below the table.
    pub remarks: Vec<String>,
}

/// Mean and sample standard deviation (n-1); no std for a single value.
pub fn mean_std(xs: &[f64]) -> (f64, Option<f64>) {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    if xs.len() < 2 {
        return (mean, None);
    }
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, Some(var.sqrt()))
}

/// Reduces per-seed summaries to a cell.
pub fn cell_stats(seeds: usize, done: &[store::Summary]) -> Cell {
    if done.is_empty() {
        return Cell::Pending { seeds, failed: 0 };
    }
    let col = |f: fn(&store::Summary) -> f64| done.iter().map(f).collect::<Vec<_>>();
    let (acc_mean, acc_std) = mean_std(&col(|s| s.accuracy));
    let (ece_mean, ece_std) = mean_std(&col(|s| s.ece));
    Cell::Done(CellStats {
        seeds,
        n: done.len(),
        acc_mean,
        acc_std,
        ece_mean,
        ece_std,
        nll_mean: mean_std(&col(|s| s.nll)).0,
        brier_mean: mean_std(&col(|s| s.brier)).0,
        top5_mean: done
            .iter()
            .map(|s| s.top5)
            .collect::<Option<Vec<f64>>>()
            .map(|v| mean_std(&v).0),
        unverified: 0,
    })
}

/// A run's summary with its numbers on `split`.
pub(super) fn on_split(
    s: store::Summary,
    split: Split,
    cell: &CellRef,
) -> anyhow::Result<store::Summary> {
    if split == Split::Test {
        return Ok(s);
    }
    match (s.val_accuracy, s.val_ece, s.val_nll, s.val_brier) {
        (Some(accuracy), Some(ece), Some(nll), Some(brier)) => Ok(store::Summary {
            accuracy,
            ece,
            nll,
            brier,
            // Top-5 is measured on the test set only.
            top5: None,
            ..s
        }),
        _ => anyhow::bail!(
            "the table reports the validation split, but run {} of cell {cell} holds out no \
             validation images (its recipe sets no `validation`)",
            s.id
        ),
    }
}

/// One cell from its runs: the done ones reduced, each failed or unverified run told in
/// `remarks`, each damaged one's reason added to `damaged`.
fn gather(
    cell: &CellRef,
    cp: &crate::plan::CellPlan,
    split: Split,
    store: &Store,
    remarks: &mut Vec<String>,
    damaged: &mut Vec<String>,
) -> anyhow::Result<Cell> {
    let (mut done, mut failed, mut unverified) = (Vec::new(), 0, 0);
    for (seed, id) in &cp.runs {
        let run = store.run(id);
        match run.summary() {
            Ok(Some(s)) => {
                if !run.vouched() {
                    unverified += 1;
                    remarks.push(format!(
                        "unverified: {cell} seed {seed}, run {id}: no done.toml vouches for \
                         its files"
                    ));
                }
                done.push(on_split(s, split, cell)?)
            }
            Ok(None) => {
                if let Some(f) = run.failure() {
                    failed += 1;
                    let at = format!("epoch {}", f.epoch);
                    let why = match f.reason.starts_with(&at) {
                        true => f.reason,
                        false => format!("{at}: {}", f.reason),
                    };
                    remarks.push(format!("failed: {cell} seed {seed}, run {id}: {why}"));
                }
            }
            Err(why) => damaged.push(why),
        }
    }
    let mut c = cell_stats(cp.runs.len(), &done);
    match &mut c {
        Cell::Pending { failed: f, .. } => *f = failed,
        Cell::Done(s) => s.unverified = unverified,
        _ => {}
    }
    Ok(c)
}

/// Builds a table from its spec, the plan of its recipes and the results folder.
pub fn assemble(
    spec: &TableSpec,
    plan: &Plan,
    store: &Store,
    scale: &str,
) -> anyhow::Result<Table> {
    let mut cells = BTreeMap::new();
    let (mut damaged, mut remarks) = (Vec::new(), Vec::new());
    for (cell, cp) in plan.cells.iter().filter(|(c, _)| c.table == spec.name) {
        let c = gather(cell, cp, spec.raw.split, store, &mut remarks, &mut damaged)?;
        cells.insert((cell.row.clone(), cell.column.clone()), c);
    }
    if !damaged.is_empty() {
        anyhow::bail!(
            "table `{}`: {} of its runs' summaries cannot be read; restore them (`git \
             checkout`) or remove those runs' folders to train them again:\n  {}",
            spec.name,
            damaged.len(),
            damaged.join("\n  ")
        );
    }
    for row in &spec.raw.cited {
        for col in &spec.raw.columns {
            if let Some(v) = spec.raw.paper.get(row).and_then(|r| r.get(col)) {
                cells.insert((row.clone(), col.clone()), Cell::Cited(*v));
            }
        }
    }
    let paper = spec
        .raw
        .paper
        .iter()
        .flat_map(|(row, cols)| {
            cols.iter()
                .map(move |(col, v)| ((row.clone(), col.clone()), *v))
        })
        .collect();
    Ok(Table {
        name: spec.name.clone(),
        title: spec.raw.title.clone(),
        rows: spec.raw.rows.clone(),
        columns: spec.raw.columns.clone(),
        note: match spec.raw.split {
            Split::Test => spec.raw.note.clone(),
            Split::Validation => Some(
                ["On the validation images held out of the training set, not the test set."]
                    .into_iter()
                    .chain(spec.raw.note.as_deref())
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
        },
        scale: (scale != "full").then(|| scale.to_string()),
        split: spec.raw.split,
        top5: spec.raw.top5,
        cells,
        paper,
        remarks,
    })
}

impl Table {
    /// The name its files take: `<name>`, or `<name>.<scale>` for a scaled table.
    pub fn stem(&self) -> String {
        match &self.scale {
            Some(s) => format!("{}.{s}", self.name),
            None => self.name.clone(),
        }
    }

    /// The `lecal report` command line that writes this table's report.
    pub fn report_command(&self) -> String {
        match &self.scale {
            Some(s) => format!("lecal report {} --scale {s}", self.name),
            None => format!("lecal report {}", self.name),
        }
    }

    pub fn get(&self, row: &str, col: &str) -> &Cell {
        self.cells
            .get(&(row.to_string(), col.to_string()))
            .unwrap_or(&Cell::Missing)
    }

    /// Row indices holding the best accuracy (highest) and the best ECE (lowest) of a
    /// column, among cells with results (cited ones included), compared as printed; ties
    /// all count.
    pub fn best(&self, col: &str) -> (Vec<usize>, Vec<usize>) {
        let round_acc = |x: f64| (x * 100.0).round() as i64;
        let round_ece = |x: f64| (x * 1000.0).round() as i64;
        let values: Vec<(usize, i64, i64)> = self
            .rows
            .iter()
            .enumerate()
            .filter_map(|(i, r)| match self.get(r, col) {
                Cell::Done(s) if s.unverified == 0 => {
                    Some((i, round_acc(s.acc_mean), round_ece(s.ece_mean)))
                }
                Cell::Cited(p) => Some((i, round_acc(p.acc), round_ece(p.ece))),
                _ => None,
            })
            .collect();
        let best_acc = values.iter().map(|v| v.1).max();
        let best_ece = values.iter().map(|v| v.2).min();
        let rows = |best: Option<i64>, pick: fn(&(usize, i64, i64)) -> i64| -> Vec<usize> {
            values
                .iter()
                .filter(|v| Some(pick(v)) == best)
                .map(|v| v.0)
                .collect()
        };
        (rows(best_acc, |v| v.1), rows(best_ece, |v| v.2))
    }

    pub fn protocol_text(&self) -> String {
        let on = match self.split {
            Split::Test => "the test set",
            Split::Validation => "the held-out validation set",
        };
        let metrics = if self.top5 {
            "Top-1 accuracy (%) / top-5 accuracy (%) / ECE (15 bins)"
        } else {
            "Accuracy (%) / ECE (15 bins)"
        };
        let mut s = format!(
            "{metrics} on {on}. Protocol: the last epoch of each run; \
             mean ± sample standard deviation over seeds, with n shown where fewer seeds finished \
             than the recipe lists; best per column in bold (highest accuracy, lowest ECE).",
        );
        if let Some(sc) = &self.scale {
            s.push_str(&format!(
                " Scale `{sc}`: shrunk runs for a smoke check, not comparable with the paper."
            ));
        }
        s
    }
}

/// An output format of a table.
pub trait Exporter {
    fn extension(&self) -> &'static str;
    fn render(&self, t: &Table) -> String;
}

/// Writes `<tables>/<name>.md`, `.csv` and `.tex`; returns their paths.
pub fn write(t: &Table, store: &Store) -> anyhow::Result<Vec<std::path::PathBuf>> {
    let exporters: [&dyn Exporter; 3] = [&Markdown, &Csv, &Latex];
    let files: Vec<(&str, String)> = exporters
        .iter()
        .map(|e| (e.extension(), e.render(t)))
        .collect();
    write_files(t, None, &files, store)
}

/// Writes each (extension, text) of `files` as `<tables>/<name>[.<scale>][.<view>].<ext>`;
/// returns their paths.
pub fn write_files(
    t: &Table,
    view: Option<&str>,
    files: &[(&str, String)],
    store: &Store,
) -> anyhow::Result<Vec<std::path::PathBuf>> {
    let stem = match view {
        Some(v) => format!("{}.{v}", t.stem()),
        None => t.stem(),
    };
    let mut out = Vec::new();
    for (ext, text) in files {
        let p = store.tables_dir().join(format!("{stem}.{ext}"));
        store::write_atomic(&p, text.as_bytes())?;
        out.push(p);
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
