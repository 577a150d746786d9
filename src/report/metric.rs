//! The measures a table can show in place of its standard "accuracy / ECE" cells (`lecal
//! table --metric`, `--ts`) and where each run's number comes from: summary.csv where it
//! holds the measure, the run's stored logits otherwise, and the logits for every measure
//! that temperature scaling changes. Nothing is trained again: a run without stored logits
//! is an error that names it.

use super::{mean_std, on_split, Table};
use crate::metrics::calibration::{self, Calibration, Fit};
use crate::plan::Plan;
use crate::recipe::{Split, TableSpec};
use crate::store::{self, Store};
use anyhow::Context;
use std::collections::{BTreeMap, BTreeSet};

/// A measure of a table cell (`--metric`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Metric {
    /// Top-1 accuracy (%).
    Accuracy,
    /// Top-5 accuracy (%), on the test set only.
    Top5,
    /// ECE, 15 equal-width bins.
    Ece,
    /// ECE over 15 equal-mass bins.
    AdaptiveEce,
    /// Classwise ECE, 15 bins per class.
    ClasswiseEce,
    /// Maximum calibration error over 15 bins.
    Mce,
    /// Negative log-likelihood.
    Nll,
    /// Brier score.
    Brier,
}

impl Metric {
    /// The name `--metric` takes.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Accuracy => "accuracy",
            Metric::Top5 => "top5",
            Metric::Ece => "ece",
            Metric::AdaptiveEce => "adaptive-ece",
            Metric::ClasswiseEce => "classwise-ece",
            Metric::Mce => "mce",
            Metric::Nll => "nll",
            Metric::Brier => "brier",
        }
    }

    /// The prefix of its CSV columns.
    pub fn column(self) -> String {
        self.name().replace('-', "_")
    }

    /// As the table's text names it.
    pub fn title(self) -> &'static str {
        match self {
            Metric::Accuracy => "accuracy (%)",
            Metric::Top5 => "top-5 accuracy (%)",
            Metric::Ece => "ECE (15 bins)",
            Metric::AdaptiveEce => "adaptive ECE (15 equal-mass bins)",
            Metric::ClasswiseEce => "classwise ECE (15 bins)",
            Metric::Mce => "MCE (15 bins)",
            Metric::Nll => "NLL",
            Metric::Brier => "Brier score",
        }
    }

    pub fn higher_is_better(self) -> bool {
        matches!(self, Metric::Accuracy | Metric::Top5)
    }

    /// Decimals shown in Markdown, and compared for the best of a column.
    pub fn digits(self) -> usize {
        if self.higher_is_better() {
            2
        } else {
            3
        }
    }

    /// Decimals in the CSV (those of the standard table's CSV).
    pub fn csv_digits(self) -> usize {
        if self.higher_is_better() {
            4
        } else {
            5
        }
    }

    /// Whether a temperature changes it: not the ranking of the logits, so not accuracy
    /// or top-5.
    pub fn scaled(self) -> bool {
        !self.higher_is_better()
    }

    /// Its value in a run's summary (on the table's split), where summary.csv holds it.
    fn of_summary(self, s: &store::Summary) -> Option<f64> {
        match self {
            Metric::Accuracy => Some(s.accuracy),
            Metric::Top5 => s.top5,
            Metric::Ece => Some(s.ece),
            Metric::Nll => Some(s.nll),
            Metric::Brier => Some(s.brier),
            Metric::AdaptiveEce | Metric::ClasswiseEce | Metric::Mce => None,
        }
    }

    /// Whether summary.csv holds it.
    pub fn in_summary(self) -> bool {
        !matches!(
            self,
            Metric::AdaptiveEce | Metric::ClasswiseEce | Metric::Mce
        )
    }

    fn of_calibration(self, c: &Calibration) -> Option<f64> {
        match self {
            Metric::Accuracy => Some(c.accuracy),
            Metric::Top5 => None,
            Metric::Ece => Some(c.ece),
            Metric::AdaptiveEce => Some(c.adaptive_ece),
            Metric::ClasswiseEce => Some(c.classwise_ece),
            Metric::Mce => Some(c.mce),
            Metric::Nll => Some(c.nll),
            Metric::Brier => Some(c.brier),
        }
    }
}

/// What the cells of a table show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    /// In the order asked, each once.
    pub metrics: Vec<Metric>,
    /// After temperature scaling ("+TS").
    pub ts: bool,
}

impl View {
    pub fn new(metrics: &[Metric], ts: bool) -> Self {
        let mut seen = BTreeSet::new();
        let metrics = metrics
            .iter()
            .copied()
            .filter(|m| seen.insert(*m))
            .collect();
        Self { metrics, ts }
    }

    /// `accuracy,ece` without scaling: the table's own layout (`report::Markdown`, top-5
    /// included where the spec asks for it), written as `<name>.md`.
    pub fn is_standard(&self) -> bool {
        !self.ts && self.metrics == [Metric::Accuracy, Metric::Ece]
    }

    /// The part of the file names that tells the view apart: `nll-brier`, `ece-ts`.
    pub fn label(&self) -> String {
        let mut s: Vec<&str> = self.metrics.iter().map(|m| m.name()).collect();
        if self.ts {
            s.push("ts");
        }
        s.join("-")
    }

    /// Whether `m` is computed from the stored logits: summary.csv lacks it, or
    /// temperature scaling changes it.
    pub fn from_logits(&self, m: Metric) -> bool {
        !m.in_summary() || (self.ts && m.scaled())
    }

    /// Whether a run's logits are read: for a measure computed from them, and with `--ts`
    /// always, for the temperature the CSV reports.
    pub fn needs_logits(&self) -> bool {
        self.ts || self.metrics.iter().any(|&m| self.from_logits(m))
    }
}

/// One run's numbers in a view, in the order of its metrics.
#[derive(Debug, Clone, PartialEq)]
struct RunNumbers {
    values: Vec<Option<f64>>,
    /// With `--ts`: where T was fitted, and T.
    scaled: Option<(Fit, f64)>,
}

/// The numbers of a run, from its summary (on the table's split) and, where the view needs
/// them, its stored logits.
fn run_numbers(
    view: &View,
    s: &store::Summary,
    split: Split,
    store: &Store,
) -> anyhow::Result<RunNumbers> {
    let (mut raw, mut scaled) = (None, None);
    if view.needs_logits() {
        let logits = store.run(&s.id).logits()?;
        let (measured, held_out) = match split {
            Split::Test => (&logits.test, logits.validation.as_ref()),
            // The validation split is measured: no split is held out of it.
            Split::Validation => (
                logits.validation.as_ref().with_context(|| {
                    format!("the logits of run {} hold no validation split", s.id)
                })?,
                None,
            ),
        };
        let m = measured.scores();
        if !view.ts && view.metrics.iter().any(|x| !x.in_summary()) {
            raw = Some(calibration::calibration(m, 1.0));
        }
        if view.ts {
            scaled = Some(calibration::temperature_scaled(
                m,
                held_out.map(|v| v.scores()),
            ));
        }
    }
    let values = view
        .metrics
        .iter()
        .map(|&m| match scaled.as_ref().filter(|_| m.scaled()) {
            Some(t) => m.of_calibration(&t.scaled),
            None if m.in_summary() => m.of_summary(s),
            None => raw.as_ref().and_then(|c| m.of_calibration(c)),
        })
        .collect();
    Ok(RunNumbers {
        values,
        scaled: scaled.map(|t| (t.fit, t.temperature)),
    })
}

/// A done cell of a view.
#[derive(Debug, Clone, PartialEq)]
pub struct ViewCell {
    pub seeds: usize,
    pub n: usize,
    /// Per metric of the view: mean and sample std over the done seeds (no std for one);
    /// none where a run lacks the measure (top-5 of a validation table).
    pub values: Vec<Option<(f64, Option<f64>)>>,
    /// With `--ts`: the mean temperature over the done seeds, and where they were fitted.
    pub temperature: Option<f64>,
    pub fits: BTreeSet<Fit>,
}

fn reduce(seeds: usize, runs: &[&RunNumbers]) -> ViewCell {
    let metrics = runs.first().map_or(0, |r| r.values.len());
    let values = (0..metrics)
        .map(|k| {
            let xs: Option<Vec<f64>> = runs.iter().map(|r| r.values[k]).collect();
            xs.map(|xs| mean_std(&xs))
        })
        .collect();
    let temps: Option<Vec<f64>> = runs.iter().map(|r| r.scaled.map(|s| s.1)).collect();
    ViewCell {
        seeds,
        n: runs.len(),
        values,
        temperature: temps.map(|t| mean_std(&t).0),
        fits: runs.iter().filter_map(|r| r.scaled.map(|s| s.0)).collect(),
    }
}

/// A table in a view: the standard table (layout, pending, missing and cited cells, note)
/// with the view's numbers for each done cell.
#[derive(Debug, Clone)]
pub struct MetricTable {
    pub table: Table,
    pub view: View,
    pub cells: BTreeMap<(String, String), ViewCell>,
}

impl MetricTable {
    /// The fits of every done cell.
    pub fn fits(&self) -> BTreeSet<Fit> {
        self.cells.values().flat_map(|c| c.fits.clone()).collect()
    }
}

/// Builds a table's view from its spec, the plan of its recipes and the results folder.
pub fn assemble_view(
    spec: &TableSpec,
    plan: &Plan,
    store: &Store,
    scale: &str,
    view: &View,
) -> anyhow::Result<MetricTable> {
    let table = super::assemble(spec, plan, store, scale)?;
    let ours: Vec<_> = plan
        .cells
        .iter()
        .filter(|(c, _)| c.table == spec.name)
        .collect();
    // A run is read once, however many cells it reports into.
    let mut numbers: BTreeMap<String, RunNumbers> = BTreeMap::new();
    let mut failed: BTreeMap<String, String> = BTreeMap::new();
    for (cell, cp) in &ours {
        for (_, id) in &cp.runs {
            // `assemble` has read every summary: one that is not there is a run not done.
            let Ok(Some(s)) = store.summary(id) else {
                continue;
            };
            if numbers.contains_key(id) || failed.contains_key(id) {
                continue;
            }
            let s = on_split(s, spec.raw.split, cell)?;
            match run_numbers(view, &s, spec.raw.split, store) {
                Ok(n) => {
                    numbers.insert(id.clone(), n);
                }
                Err(e) => {
                    failed.insert(id.clone(), format!("{e:#}"));
                }
            }
        }
    }
    if !failed.is_empty() {
        let what = match view.metrics.iter().find(|m| !m.in_summary()) {
            Some(m) if !view.ts => format!("`--metric {}`", m.name()),
            _ => "temperature scaling (`--ts`)".to_string(),
        };
        anyhow::bail!(
            "table `{}`: {what} is computed from each run's stored logits \
             (logits.safetensors), which {} of its runs cannot give; no flag trains a done \
             run again: remove such a run's folder and `lecal run` trains it again, its \
             logits included:\n  {}",
            spec.name,
            failed.len(),
            failed.into_values().collect::<Vec<_>>().join("\n  ")
        );
    }
    let mut cells = BTreeMap::new();
    for (cell, cp) in &ours {
        let done: Vec<&RunNumbers> = cp
            .runs
            .iter()
            .filter_map(|(_, id)| numbers.get(id))
            .collect();
        if !done.is_empty() {
            let key = (cell.row.clone(), cell.column.clone());
            cells.insert(key, reduce(cp.runs.len(), &done));
        }
    }
    Ok(MetricTable {
        table,
        view: view.clone(),
        cells,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ValueEnum;

    #[test]
    fn metric_names_are_the_command_lines() {
        for m in Metric::value_variants() {
            let pv = m.to_possible_value().unwrap();
            assert_eq!(pv.get_name(), m.name());
        }
        assert_eq!(Metric::AdaptiveEce.column(), "adaptive_ece");
    }

    #[test]
    fn views_are_told_apart_and_need_logits_only_where_the_summary_cannot_serve() {
        let v = View::new(&[Metric::Accuracy, Metric::Ece, Metric::Accuracy], false);
        assert!(v.is_standard());
        assert!(!v.needs_logits());
        let v = View::new(&[Metric::Nll, Metric::Brier], false);
        assert_eq!((v.label(), v.needs_logits()), ("nll-brier".into(), false));
        let v = View::new(&[Metric::Mce], false);
        assert!(v.needs_logits());
        let v = View::new(&[Metric::Accuracy, Metric::Ece], true);
        assert!(!v.is_standard());
        assert_eq!(
            (v.label(), v.needs_logits()),
            ("accuracy-ece-ts".into(), true)
        );
        // Scaling keeps the ranking: accuracy and top-5 after it are the summary's, though
        // T is still fitted, for the CSV.
        let v = View::new(&[Metric::Accuracy, Metric::Top5], true);
        assert!(!v.from_logits(Metric::Accuracy) && !v.from_logits(Metric::Top5));
        assert!(v.needs_logits());
    }

    #[test]
    fn a_cell_reduces_its_runs_per_metric() {
        let run = |a: f64, t5: Option<f64>, t: f64, fit| RunNumbers {
            values: vec![Some(a), t5],
            scaled: Some((fit, t)),
        };
        let runs = [
            run(70.0, Some(90.0), 1.5, Fit::CrossFit),
            run(72.0, None, 2.5, Fit::Validation),
        ];
        let c = reduce(3, &runs.iter().collect::<Vec<_>>());
        assert_eq!((c.seeds, c.n), (3, 2));
        assert_eq!(c.values[0], Some((71.0, Some(2f64.sqrt()))));
        assert_eq!(c.values[1], None);
        assert_eq!(c.temperature, Some(2.0));
        assert_eq!(c.fits.len(), 2);
    }
}
