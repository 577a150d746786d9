//! A finished run's `logits.safetensors` read back through the library: its predictions
//! are predictions.csv's and the measures computed from it agree with summary.csv's, so
//! the calibration suite needs no training.

mod common;

use common::{lecal, GOOD, TABLE};
use lecal::metrics::calibration::{assess, calibration};
use lecal::store::read_logits;
use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

/// The rows of a CSV file as column → value maps.
fn csv(path: &Path) -> Vec<BTreeMap<String, String>> {
    let text = fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    lines
        .map(|l| {
            header
                .iter()
                .zip(l.split(','))
                .map(|(h, v)| (h.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

fn num(row: &BTreeMap<String, String>, col: &str) -> f64 {
    row[col]
        .parse()
        .unwrap_or_else(|_| panic!("{col}: {}", row[col]))
}

#[test]
fn a_done_runs_logits_give_its_predictions_and_its_summary() {
    let d = tempfile::tempdir().unwrap();
    let r = d.path().join("recipes/h");
    fs::create_dir_all(&r).unwrap();
    fs::write(r.join("h.table.toml"), TABLE).unwrap();
    fs::write(r.join("v.toml"), format!("{GOOD}validation = 16\n")).unwrap();
    lecal(d.path())
        .args(["run", "recipes/h", "--device", "cpu"])
        .assert()
        .success();
    let runs: Vec<_> = fs::read_dir(d.path().join("results/runs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(runs.len(), 1);
    let run = &runs[0];
    let done = fs::read_to_string(run.join("done.toml")).unwrap();
    assert!(done.contains("[files.\"logits.safetensors\"]"), "{done}");
    let stored = read_logits(&run.join("logits.safetensors")).unwrap();
    let test = stored.test.scores();
    let preds = csv(&run.join("predictions.csv"));
    assert_eq!(test.len(), 20);
    assert_eq!(preds.len(), 20);
    for (i, p) in preds.iter().enumerate() {
        let z = &stored.test.logits[i * test.classes..(i + 1) * test.classes];
        // Each row is stored less its largest: the prediction's logit is 0, the first 0.
        let first_max = z.iter().position(|&v| v == 0.0).unwrap();
        assert!(z.iter().all(|&v| v <= 0.0), "row {i}: {z:?}");
        assert_eq!(first_max, num(p, "prediction") as usize, "row {i}");
        assert_eq!(stored.test.labels[i], num(p, "label") as u16, "row {i}");
        let confidence = 1.0 / z.iter().map(|&v| (v as f64).exp()).sum::<f64>();
        assert!((confidence - num(p, "confidence")).abs() < 1e-3, "row {i}");
    }
    let summary = &csv(&run.join("summary.csv"))[0];
    let c = calibration(test, 1.0);
    assert!((c.accuracy - num(summary, "accuracy")).abs() < 1e-9);
    assert!((c.nll - num(summary, "nll")).abs() < 5e-3, "{c:?}");
    assert!((c.brier - num(summary, "brier")).abs() < 5e-3, "{c:?}");
    let val = stored.validation.as_ref().expect("validation logits");
    assert_eq!((val.labels.len(), val.classes), (16, test.classes));
    let v = calibration(val.scores(), 1.0);
    assert!((v.accuracy - num(summary, "val_accuracy")).abs() < 1e-9);
    assert!((v.nll - num(summary, "val_nll")).abs() < 5e-3, "{v:?}");
    // Temperature scaling fitted on the validation logits keeps the test predictions.
    let a = assess(test, Some(val.scores()));
    let t = a.temperature.unwrap();
    assert!(t.is_finite() && t > 0.0, "{t}");
    assert_eq!(a.scaled.unwrap().accuracy, c.accuracy);
}
