//! `lecal table --metric`, `--ts` and `--verdicts` on small real runs: the numbers are the
//! runs' stored logits' and summaries', the standard table is untouched, and a run without
//! stored logits is named in the error.

mod common;

use common::{lecal, GOOD};
use lecal::metrics::calibration::{calibration, cross_fit, fit_temperature};
use lecal::report::mean_std;
use lecal::report::verdict::{check, ACC_TOLERANCE, ECE_TOLERANCE};
use lecal::store::read_logits;
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

const TABLE: &str =
    "title = \"h\"\nrows = [\"Vanilla\", \"KD\"]\ncolumns = [\"ResNet8\", \"Held out\"]\n";

/// Vanilla ResNet8 with seeds 0 and 1 (no validation split) in column ResNet8, and seed 0
/// holding out 16 validation images in column "Held out"; trained.
fn trained(dir: &Path) {
    let r = dir.join("recipes/h");
    fs::create_dir_all(&r).unwrap();
    fs::write(r.join("h.table.toml"), TABLE).unwrap();
    fs::write(
        r.join("v.toml"),
        GOOD.replace("seeds = [0]", "seeds = [0, 1]"),
    )
    .unwrap();
    let held_out = GOOD.replace("column = \"ResNet8\"", "column = \"Held out\"");
    fs::write(r.join("w.toml"), format!("{held_out}validation = 16\n")).unwrap();
    lecal(dir)
        .args(["run", "recipes/h", "--device", "cpu"])
        .assert()
        .success();
}

/// The run folders, by whether they hold out a validation split.
fn runs(dir: &Path) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let mut all: Vec<PathBuf> = fs::read_dir(dir.join("results/runs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    all.sort();
    assert_eq!(all.len(), 3);
    all.into_iter().partition(|r| {
        read_logits(&r.join("logits.safetensors"))
            .unwrap()
            .validation
            .is_none()
    })
}

/// One summary.csv column of a run.
fn summary(run: &Path, col: &str) -> f64 {
    let text = fs::read_to_string(run.join("summary.csv")).unwrap();
    let mut lines = text.lines();
    let head: Vec<&str> = lines.next().unwrap().split(',').collect();
    let row: Vec<&str> = lines.next().unwrap().split(',').collect();
    row[head.iter().position(|h| *h == col).unwrap()]
        .parse()
        .unwrap()
}

/// The rows of a table CSV as column → value maps, keyed by "row/column".
fn table_csv(path: &Path) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut r = csv::Reader::from_path(path).unwrap();
    let head: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
    r.records()
        .map(|rec| {
            let rec = rec.unwrap();
            let m: BTreeMap<String, String> = head
                .iter()
                .cloned()
                .zip(rec.iter().map(String::from))
                .collect();
            (format!("{}/{}", m["row"], m["column"]), m)
        })
        .collect()
}

fn num(m: &BTreeMap<String, String>, col: &str) -> f64 {
    m[col]
        .parse()
        .unwrap_or_else(|_| panic!("{col}: {:?}", m[col]))
}

fn close(a: f64, b: f64, tol: f64) {
    assert!((a - b).abs() <= tol, "{a} vs {b}");
}

fn stdout(dir: &Path, args: &[&str]) -> String {
    let out = lecal(dir).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn metric_views_come_from_the_stored_logits_and_leave_the_standard_table_alone() {
    let d = tempfile::tempdir().unwrap();
    trained(d.path());
    let tables = d.path().join("results/tables");
    let standard = stdout(d.path(), &["table", "h"]);
    let files: Vec<Vec<u8>> = ["md", "csv", "tex"]
        .iter()
        .map(|e| fs::read(tables.join(format!("h.{e}"))).unwrap())
        .collect();
    // `accuracy,ece` is the standard table itself.
    assert_eq!(
        stdout(d.path(), &["table", "h", "--metric", "accuracy,ece"]),
        standard
    );
    let (plain, held) = runs(d.path());

    // MCE is not in summary.csv: from the logits; NLL is: from the summary.
    let md = stdout(d.path(), &["table", "h", "--metric", "mce,nll"]);
    assert!(md.contains("MCE (15 bins) / NLL on the test set."), "{md}");
    let c = table_csv(&tables.join("h.mce-nll.csv"));
    let mce: Vec<f64> = plain
        .iter()
        .map(|r| {
            let l = read_logits(&r.join("logits.safetensors")).unwrap();
            calibration(l.test.scores(), 1.0).mce
        })
        .collect();
    let cell = &c["Vanilla/ResNet8"];
    assert_eq!((&*cell["status"], &*cell["n"]), ("done", "2"));
    close(num(cell, "mce_mean"), mean_std(&mce).0, 1e-5);
    close(num(cell, "mce_std"), mean_std(&mce).1.unwrap(), 1e-5);
    let nll: Vec<f64> = plain.iter().map(|r| summary(r, "nll")).collect();
    close(num(cell, "nll_mean"), mean_std(&nll).0, 1e-5);
    assert_eq!(c["KD/ResNet8"]["status"], "missing");
    assert!(tables.join("h.mce-nll.md").is_file());

    // After temperature scaling: cross-fitted where no validation split is held out,
    // fitted on it where one is.
    let md = stdout(
        d.path(),
        &["table", "h", "--metric", "ece,accuracy", "--ts"],
    );
    assert!(
        md.contains("ECE (15 bins) / accuracy (%) on the test set, after temperature scaling."),
        "{md}"
    );
    assert!(
        md.contains("one T per run, fitted on its held-out validation split (least NLL; Guo et al. 2017) and applied to its test logits where the run holds one out, otherwise cross-fitted on the test set"),
        "{md}"
    );
    let c = table_csv(&tables.join("h.ece-accuracy-ts.csv"));
    let folds: Vec<_> = plain
        .iter()
        .map(|r| {
            cross_fit(
                read_logits(&r.join("logits.safetensors"))
                    .unwrap()
                    .test
                    .scores(),
            )
        })
        .collect();
    let cell = &c["Vanilla/ResNet8"];
    assert_eq!(cell["ts_fit"], "cross-fit");
    let ece: Vec<f64> = folds.iter().map(|f| f.scaled.ece).collect();
    close(num(cell, "ece_mean"), mean_std(&ece).0, 1e-5);
    let t: Vec<f64> = folds.iter().map(|f| f.temperature()).collect();
    close(num(cell, "t_mean"), mean_std(&t).0, 1e-4);
    // Scaling keeps the predictions: the summary's accuracy.
    let acc: Vec<f64> = plain.iter().map(|r| summary(r, "accuracy")).collect();
    close(num(cell, "accuracy_mean"), mean_std(&acc).0, 1e-4);
    let cell = &c["Vanilla/Held out"];
    assert_eq!((&*cell["ts_fit"], &*cell["n"]), ("validation", "1"));
    let l = read_logits(&held[0].join("logits.safetensors")).unwrap();
    let t = fit_temperature(l.validation.as_ref().unwrap().scores());
    close(num(cell, "t_mean"), t, 1e-4);
    close(
        num(cell, "ece_mean"),
        calibration(l.test.scores(), t).ece,
        1e-5,
    );

    // None of it touched the standard table.
    for (e, bytes) in ["md", "csv", "tex"].iter().zip(&files) {
        assert!(
            &fs::read(tables.join(format!("h.{e}"))).unwrap() == bytes,
            "h.{e}"
        );
    }

    // A run done before runs kept their logits (a format-1 done record).
    let run = &plain[0];
    let done = run.join("done.toml");
    let mut rec: toml::Table = fs::read_to_string(&done).unwrap().parse().unwrap();
    let files = rec.get_mut("files").and_then(|f| f.as_table_mut()).unwrap();
    assert!(files.remove("logits.safetensors").is_some());
    rec.insert("format".into(), toml::Value::Integer(1));
    fs::write(&done, toml::to_string(&rec).unwrap()).unwrap();
    fs::remove_file(run.join("logits.safetensors")).unwrap();
    let id = run.file_name().unwrap().to_str().unwrap();
    for args in [vec!["--metric", "adaptive-ece"], vec!["--ts"]] {
        let out = lecal(d.path())
            .args(["table", "h"])
            .args(&args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(id), "{args:?}: {err}");
        assert!(err.contains("done before runs kept their logits"), "{err}");
        assert!(err.contains("remove such a run's folder"), "{err}");
        assert!(err.contains("which 1 of its runs cannot give"), "{err}");
    }
    // What summary.csv holds needs no logits.
    stdout(d.path(), &["table", "h", "--metric", "nll,brier,top5"]);
    assert_eq!(stdout(d.path(), &["table", "h"]), standard);
}

#[test]
fn verdicts_set_the_runs_against_the_papers_values() {
    let d = tempfile::tempdir().unwrap();
    trained(d.path());
    let (plain, _) = runs(d.path());
    let acc: Vec<f64> = plain.iter().map(|r| summary(r, "accuracy")).collect();
    let ece: Vec<f64> = plain.iter().map(|r| summary(r, "ece")).collect();
    let (am, asd) = mean_std(&acc);
    let (em, esd) = mean_std(&ece);
    // The paper's accuracy 0.5 pp above ours (within the tolerance); its ECE far off.
    let paper_acc = ((am + 0.5) * 100.0).round() / 100.0;
    let spec = format!(
        "{TABLE}orderings = [[\"KD\", \"<\", \"Vanilla\", \"ece\"]]\n\
         [paper.Vanilla]\nResNet8 = {{ acc = {paper_acc}, ece = 0.9 }}\n\
         [paper.KD]\nResNet8 = {{ acc = 60.0, ece = 0.05 }}\n"
    );
    fs::write(d.path().join("recipes/h/h.table.toml"), spec).unwrap();
    let md = stdout(d.path(), &["table", "h", "--verdicts"]);
    let a = check(am, asd, 2, paper_acc, ACC_TOLERANCE);
    let e = check(em, esd, 2, 0.9, ECE_TOLERANCE);
    assert!(a.verdict.reproduced() && !e.verdict.reproduced());
    let cell = format!("| Vanilla | {:+.2} ✓ / {:+.3} ✗ | — |", a.delta, e.delta);
    assert!(md.contains(&cell), "{cell}\n{md}");
    assert!(md.contains("| KD | — | — |"), "{md}");
    assert!(
        md.contains("1 of 1 cells reproduced (accuracy), 0 of 1 (ECE)."),
        "{md}"
    );
    assert!(
        md.contains("| ECE: KD < Vanilla | 1 of 1 columns | no results yet |"),
        "{md}"
    );
    let tables = d.path().join("results/tables");
    let c = table_csv(&tables.join("h.verdicts.csv"));
    assert_eq!(c["Vanilla/ResNet8"]["ece_verdict"], "not-reproduced");
    assert!(tables.join("h.verdicts.md").is_file());
    // Verdicts and other measures are different views.
    let out = lecal(d.path())
        .args(["table", "h", "--verdicts", "--ts"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    // The standard table of a spec with published values keeps its own layout.
    let md = stdout(d.path(), &["table", "h"]);
    assert!(md.contains("## Reproduction − paper"), "{md}");
    assert!(!md.contains("cells reproduced"), "{md}");
}
