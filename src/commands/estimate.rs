//! `lecal plan --estimate`: the rates of the device in question (a `make bench` CSV, or
//! the CPU rates of BENCHMARKS.md), then the estimate per table and in total.

use crate::plan::{estimate, Cohort, Plan, Rates};
use crate::spec::ModelName;
use anyhow::{bail, Context};
use std::collections::BTreeSet;
use std::path::Path;

use super::EstimateOptions;

/// Rates of lecal's own rows of a `make bench` CSV (`train <model>`, `teacher <model>`).
pub(super) fn measured(path: &Path) -> anyhow::Result<Rates> {
    #[derive(serde::Deserialize)]
    struct Row {
        what: String,
        implementation: String,
        images_per_second: f64,
    }
    let mut r =
        csv::Reader::from_path(path).with_context(|| format!("cannot read {}", path.display()))?;
    let (mut train, mut forward, mut fused) = (Vec::new(), Vec::new(), Vec::new());
    for row in r.deserialize::<Row>() {
        let row = row.with_context(|| format!("{}: not a `lecal bench` CSV", path.display()))?;
        if row.implementation == "fused" {
            // `fused <K>x <model>`: K students as one network, every member's images.
            let what: Vec<&str> = row.what.split(' ').collect();
            let k = what.get(1).and_then(|k| k.strip_suffix('x')?.parse().ok());
            let m = ModelName::CIFAR
                .into_iter()
                .find(|m| what.get(2) == Some(&m.as_str()));
            if let (["fused", _, _], Some(k), Some(m)) = (what.as_slice(), k, m) {
                fused.push((m, k, row.images_per_second));
            }
            continue;
        }
        if !row.implementation.starts_with("lecal") || row.implementation.contains("candle") {
            continue;
        }
        let Some((part, model)) = row.what.split_once(' ') else {
            continue;
        };
        let Some(m) = ModelName::CIFAR.into_iter().find(|m| m.as_str() == model) else {
            continue;
        };
        match part {
            "train" => train.push((m, row.images_per_second)),
            "teacher" => forward.push((m, row.images_per_second)),
            _ => {}
        }
    }
    let mut rates =
        Rates::from_measured(&train, &forward, format!("measured: {}", path.display()))?;
    rates.fused = fused;
    Ok(rates)
}

pub fn print(plan: &Plan, cohorts: &[Cohort], o: &EstimateOptions) -> anyhow::Result<()> {
    let rates = match (&o.bench, o.device.as_str()) {
        (Some(p), _) => measured(p)?,
        (None, "cpu") => Rates::cpu_assumed(),
        (None, d) => bail!(
            "--estimate for `{d}` needs its measured rates: run `make bench` on that machine \
             (e.g. BENCH_DEVICE=cuda:0 LECAL=target/cuda/release/lecal) and pass --bench \
             target/bench/lecal.csv"
        ),
    };
    outln!("estimate for {} ({})", o.device, rates.source);
    let fused = !rates.fused.is_empty();
    outln!(
        "{:<28} {:>6} {:>9} {:>12} {:>13} {:>13} {:>7}{}",
        "table",
        "runs",
        "epochs",
        "images (M)",
        "alone (h)",
        "cohorts (h)",
        "ratio",
        if fused { "    fused (h)" } else { "" }
    );
    let tables: BTreeSet<&str> = plan.cells.keys().map(|c| c.table.as_str()).collect();
    let all: BTreeSet<&str> = plan.runs.iter().map(|r| r.id.as_str()).collect();
    let rows = tables
        .iter()
        .map(|t| (*t, plan.runs_of_table(t)))
        .chain([("total (each run once)", all)]);
    for (name, ids) in rows {
        let e = estimate(plan, &ids, cohorts, &rates);
        let fused_column = match fused {
            true => format!(" {:>12.1}", e.fused_hours),
            false => String::new(),
        };
        outln!(
            "{:<28} {:>6} {:>9} {:>12.1} {:>13.1} {:>13.1} {:>7.2}{fused_column}",
            name,
            e.runs,
            e.epochs,
            e.images as f64 / 1e6,
            e.alone_hours,
            e.cohort_hours,
            e.cohort_hours / e.alone_hours
        );
    }
    Ok(())
}
