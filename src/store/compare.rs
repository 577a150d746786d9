//! Whether two copies of a run's results agree (`lecal verify`: the committed files
//! against the run trained again). A pure function of the files' bytes.
//!
//! Where both copies were trained on a device that promises bitwise repeatability (the
//! CPU) at the same CPU kernel level (`mode`), the copies must be identical: summary.csv,
//! reliability.csv, predictions.csv and logits.safetensors byte for byte, epochs.csv in
//! every column but its two times. Else the summary's test and validation numbers must
//! agree within a `Tolerance` and the number of epochs must be equal; the rest is not
//! compared (a GPU's sums are not repeatable, and CPUs of two levels round differently,
//! so their predictions and logits may differ in the last bits).

use super::records::{Provenance, Summary};

/// The result files of one copy of a run, as bytes (`None`: not there).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunFiles {
    pub summary: Option<Vec<u8>>,
    pub epochs: Option<Vec<u8>>,
    pub reliability: Option<Vec<u8>>,
    pub predictions: Option<Vec<u8>>,
    pub logits: Option<Vec<u8>>,
}

/// The largest differences accepted where runs are not bitwise repeatable.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerance {
    /// Accuracy, top-5 and validation accuracy, in percentage points.
    pub accuracy_pp: f64,
    /// ECE (test and validation).
    pub ece: f64,
    /// NLL (test and validation).
    pub nll: f64,
    /// Brier score (test and validation).
    pub brier: f64,
}

impl Default for Tolerance {
    fn default() -> Self {
        Self {
            accuracy_pp: 0.5,
            ece: 0.01,
            nll: 0.05,
            brier: 0.01,
        }
    }
}

/// How two copies are compared.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    /// Byte for byte (times excepted).
    Bitwise,
    Tolerance(Tolerance),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Identical,
    /// The largest differences, as text.
    WithinTolerance(String),
    /// The first difference, as text.
    Differs(String),
}

/// How the copies trained with these provenances are compared, and, where not byte for
/// byte, why not.
pub fn mode(committed: &Provenance, fresh: &Provenance) -> (Mode, Option<String>) {
    let tolerance = |why: String| (Mode::Tolerance(Tolerance::default()), Some(why));
    for (p, whose) in [
        (committed, "the committed run"),
        (fresh, "the run trained again"),
    ] {
        if !p.bitwise_repeatable {
            return tolerance(format!(
                "{whose} trained on {}, which is not bitwise repeatable",
                p.device
            ));
        }
    }
    let level = |p: &Provenance| p.device_details.kernel_level.clone();
    match (level(committed), level(fresh)) {
        (Some(c), Some(f)) if c == f => (Mode::Bitwise, None),
        (Some(c), Some(f)) => tolerance(format!(
            "the committed run was trained at CPU kernel level {c}, this machine's is {f}, \
             and CPUs of two levels round differently"
        )),
        (None, _) => tolerance(
            "the committed run does not record its CPU kernel level (it was trained before \
             lecal recorded it)"
                .into(),
        ),
        (_, None) => tolerance("the run trained again records no CPU kernel level".into()),
    }
}

/// The columns of epochs.csv that are times: never compared.
const TIMES: [&str; 2] = ["seconds", "checkpoint_seconds"];

/// Compares the `committed` copy of a run's results with the `fresh` one.
pub fn compare(committed: &RunFiles, fresh: &RunFiles, mode: Mode) -> Verdict {
    let result = match mode {
        Mode::Bitwise => bitwise(committed, fresh).map(|()| Verdict::Identical),
        Mode::Tolerance(t) => within(committed, fresh, t).map(Verdict::WithinTolerance),
    };
    result.unwrap_or_else(Verdict::Differs)
}

fn both<'a>(
    name: &str,
    committed: &'a Option<Vec<u8>>,
    fresh: &'a Option<Vec<u8>>,
) -> Result<(&'a [u8], &'a [u8]), String> {
    match (committed, fresh) {
        (Some(c), Some(f)) => Ok((c, f)),
        (None, _) => Err(format!("{name} is missing from the committed run")),
        (_, None) => Err(format!("{name} is missing from the run trained again")),
    }
}

fn bitwise(c: &RunFiles, f: &RunFiles) -> Result<(), String> {
    let (cs, fs) = both("summary.csv", &c.summary, &f.summary)?;
    csv_rows("summary.csv", cs, fs, &[])?;
    let (ce, fe) = both("epochs.csv", &c.epochs, &f.epochs)?;
    csv_rows("epochs.csv", ce, fe, &TIMES)?;
    for (name, cf, ff) in [
        ("predictions.csv", &c.predictions, &f.predictions),
        ("reliability.csv", &c.reliability, &f.reliability),
    ] {
        let (a, b) = both(name, cf, ff)?;
        lines(name, a, b)?;
    }
    // A run done before runs kept their logits has none to compare.
    if c.logits.is_some() {
        let (a, b) = both("logits.safetensors", &c.logits, &f.logits)?;
        if let Some(at) = a.iter().zip(b).position(|(x, y)| x != y) {
            return Err(format!("logits.safetensors differs from byte {at} on"));
        }
        if a.len() != b.len() {
            return Err(format!(
                "logits.safetensors has {} bytes, the run trained again {}",
                a.len(),
                b.len()
            ));
        }
    }
    Ok(())
}

/// The first line where two text files differ.
fn lines(name: &str, a: &[u8], b: &[u8]) -> Result<(), String> {
    if a == b {
        return Ok(());
    }
    let (a, b) = (String::from_utf8_lossy(a), String::from_utf8_lossy(b));
    let (mut la, mut lb) = (a.lines(), b.lines());
    for n in 1.. {
        match (la.next(), lb.next()) {
            (Some(x), Some(y)) if x == y => {}
            (None, None) => break,
            (x, y) => {
                return Err(format!(
                    "{name} line {n}: committed `{}`, trained again `{}`",
                    x.unwrap_or("(end of file)"),
                    y.unwrap_or("(end of file)")
                ))
            }
        }
    }
    Err(format!("{name} differs in its line endings"))
}

/// Header and rows of a CSV file, as text.
fn table(name: &str, bytes: &[u8]) -> Result<(Vec<String>, Vec<Vec<String>>), String> {
    let mut r = csv::Reader::from_reader(bytes);
    let bad = |e: csv::Error| format!("{name} cannot be read: {e}");
    let header: Vec<String> = r.headers().map_err(bad)?.iter().map(String::from).collect();
    let rows = r
        .records()
        .map(|rec| rec.map(|rec| rec.iter().map(String::from).collect()))
        .collect::<Result<_, _>>()
        .map_err(bad)?;
    Ok((header, rows))
}

/// Compares two CSV files cell by cell, as text, naming the first cell that differs.
/// Columns in `skip` are not compared; a column the committed file lacks (written before
/// the column existed) neither. Rows are named by their first column (the epoch).
fn csv_rows(name: &str, a: &[u8], b: &[u8], skip: &[&str]) -> Result<(), String> {
    let (ha, ra) = table(name, a)?;
    let (hb, rb) = table(name, b)?;
    if ra.len() != rb.len() {
        return Err(format!(
            "{name} has {} rows, the run trained again {}",
            ra.len(),
            rb.len()
        ));
    }
    for (row_a, row_b) in ra.iter().zip(&rb) {
        for (i, col) in ha.iter().enumerate() {
            if skip.contains(&col.as_str()) {
                continue;
            }
            let Some(j) = hb.iter().position(|h| h == col) else {
                return Err(format!("{name}: the run trained again has no column {col}"));
            };
            let (x, y) = (row_a.get(i), row_b.get(j));
            if x != y {
                let row = match (ha.first(), row_a.first()) {
                    (Some(h), Some(v)) if ra.len() > 1 => format!(" {h} {v}"),
                    _ => String::new(),
                };
                return Err(format!(
                    "{name}{row} {col}: committed {}, trained again {}",
                    x.map_or("(none)", String::as_str),
                    y.map_or("(none)", String::as_str)
                ));
            }
        }
    }
    Ok(())
}

fn summary(name: &str, bytes: &[u8]) -> Result<Summary, String> {
    csv::Reader::from_reader(bytes)
        .deserialize::<Summary>()
        .next()
        .ok_or_else(|| format!("{name} has no row"))?
        .map_err(|e| format!("{name} cannot be read: {e}"))
}

/// The summaries' numbers within `t`: the largest differences as text, or the first
/// number beyond its tolerance.
fn within(c: &RunFiles, f: &RunFiles, t: Tolerance) -> Result<String, String> {
    let (cs, fs) = both("summary.csv", &c.summary, &f.summary)?;
    let (a, b) = (summary("summary.csv", cs)?, summary("summary.csv", fs)?);
    let same = [
        ("id", a.id == b.id),
        ("dataset", a.dataset == b.dataset),
        ("model", a.model == b.model),
        ("seed", a.seed == b.seed),
        ("epochs", a.epochs == b.epochs),
    ];
    if let Some((col, _)) = same.iter().find(|(_, eq)| !eq) {
        return Err(format!("summary.csv {col} is not the same"));
    }
    // (column, committed, trained again, tolerance, unit)
    let pp = (t.accuracy_pp, " pp");
    let numbers = [
        ("accuracy", Some(a.accuracy), Some(b.accuracy), pp),
        ("top5", a.top5, b.top5, pp),
        ("ece", Some(a.ece), Some(b.ece), (t.ece, "")),
        ("nll", Some(a.nll), Some(b.nll), (t.nll, "")),
        ("brier", Some(a.brier), Some(b.brier), (t.brier, "")),
        ("val_accuracy", a.val_accuracy, b.val_accuracy, pp),
        ("val_ece", a.val_ece, b.val_ece, (t.ece, "")),
        ("val_nll", a.val_nll, b.val_nll, (t.nll, "")),
        ("val_brier", a.val_brier, b.val_brier, (t.brier, "")),
    ];
    let mut seen = Vec::new();
    for (col, x, y, (tol, unit)) in numbers {
        match (x, y) {
            // Not in the committed summary (written before the column existed).
            (None, _) => {}
            (Some(x), Some(y)) => {
                let d = (x - y).abs();
                if d.is_nan() || d > tol {
                    return Err(format!(
                        "summary.csv {col}: committed {x}, trained again {y} \
                         (|Δ| {d:.4}{unit} > {tol}{unit})"
                    ));
                }
                if matches!(col, "accuracy" | "ece") {
                    seen.push(format!("|Δ{col}| {d:.4}{unit}"));
                }
            }
            (Some(x), None) => {
                return Err(format!(
                    "summary.csv {col}: committed {x}, none in the run trained again"
                ))
            }
        }
    }
    Ok(seen.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    const EPOCHS: &str = "epoch,lr,train_loss,test_acc,ece,seconds,checkpoint_seconds\n\
                          1,0.1,2.0,30.0,0.1,1.5,0.01\n\
                          2,0.01,1.5,40.0,0.08,1.4,0.02\n";
    const SUMMARY: &str = "id,dataset,model,seed,epochs,accuracy,ece,nll,brier,train_accuracy\n\
                           r,synthetic,resnet8,0,2,40.0,0.08,1.2,0.6,45.0\n";

    fn files() -> RunFiles {
        RunFiles {
            summary: Some(SUMMARY.into()),
            epochs: Some(EPOCHS.into()),
            reliability: Some(b"bin,count\n0,3\n".to_vec()),
            predictions: Some(b"index,label,prediction\n0,1,1\n1,0,2\n".to_vec()),
            logits: Some(vec![1, 2, 3, 4]),
        }
    }

    fn provenance(device: &str, level: Option<&str>) -> Provenance {
        let mut p = Provenance {
            device: device.into(),
            bitwise_repeatable: device == "cpu",
            ..Provenance::default()
        };
        p.device_details.kernel_level = level.map(String::from);
        p
    }

    /// Issue 29: byte for byte only at the same CPU kernel level; otherwise within the
    /// tolerances, saying why.
    #[test]
    fn the_mode_follows_the_device_and_the_cpu_kernel_level() {
        let v3 = provenance("cpu", Some("x86-64-v3"));
        assert_eq!(mode(&v3, &v3), (Mode::Bitwise, None));
        let tolerance = Mode::Tolerance(Tolerance::default());
        let arm = provenance("cpu", Some("aarch64"));
        let (m, why) = mode(&v3, &arm);
        assert_eq!(m, tolerance);
        let why = why.unwrap();
        assert!(
            why.contains("x86-64-v3") && why.contains("aarch64"),
            "{why}"
        );
        let (m, why) = mode(&provenance("cpu", None), &v3);
        assert_eq!(m, tolerance);
        assert!(why.unwrap().contains("does not record"));
        let (m, why) = mode(&provenance("cuda", None), &v3);
        assert_eq!(m, tolerance);
        assert!(why
            .unwrap()
            .contains("cuda, which is not bitwise repeatable"));
    }

    #[test]
    fn identical_files_are_identical() {
        assert_eq!(
            compare(&files(), &files(), Mode::Bitwise),
            Verdict::Identical
        );
    }

    #[test]
    fn an_epoch_value_that_differs_is_named_by_epoch_and_column() {
        let mut f = files();
        f.epochs = Some(EPOCHS.replace("2,0.01,1.5,40.0", "2,0.01,1.5,40.5").into());
        let v = compare(&files(), &f, Mode::Bitwise);
        assert_eq!(
            v,
            Verdict::Differs(
                "epochs.csv epoch 2 test_acc: committed 40.0, trained again 40.5".into()
            )
        );
    }

    #[test]
    fn the_time_columns_alone_may_differ() {
        let mut f = files();
        f.epochs = Some(
            EPOCHS
                .replace("1.5,0.01\n", "9.9,0.7\n")
                .replace("1.4,0.02", "3.0,0.5")
                .into(),
        );
        assert_ne!(f.epochs, files().epochs);
        assert_eq!(compare(&files(), &f, Mode::Bitwise), Verdict::Identical);
    }

    #[test]
    fn a_summary_number_that_differs_is_named() {
        let mut f = files();
        f.summary = Some(SUMMARY.replace(",40.0,", ",39.0,").into());
        let v = compare(&files(), &f, Mode::Bitwise);
        assert_eq!(
            v,
            Verdict::Differs("summary.csv accuracy: committed 40.0, trained again 39.0".into())
        );
    }

    #[test]
    fn predictions_and_logits_must_be_identical_on_a_repeatable_device() {
        let mut f = files();
        f.predictions = Some(b"index,label,prediction\n0,1,1\n1,0,0\n".to_vec());
        assert_eq!(
            compare(&files(), &f, Mode::Bitwise),
            Verdict::Differs(
                "predictions.csv line 3: committed `1,0,2`, trained again `1,0,0`".into()
            )
        );
        let mut f = files();
        f.logits = Some(vec![1, 2, 9, 4]);
        assert!(
            matches!(compare(&files(), &f, Mode::Bitwise), Verdict::Differs(w) if w.contains("byte 2"))
        );
        // A committed run from before logits were kept: nothing to compare them with.
        let mut old = files();
        old.logits = None;
        assert_eq!(compare(&old, &f, Mode::Bitwise), Verdict::Identical);
        // A missing file is a difference.
        let mut f = files();
        f.predictions = None;
        assert!(
            matches!(compare(&files(), &f, Mode::Bitwise), Verdict::Differs(w) if w.contains("missing"))
        );
    }

    #[test]
    fn a_column_the_committed_file_lacks_is_not_compared() {
        let mut f = files();
        f.summary = Some(
            SUMMARY
                .replace("train_accuracy\n", "train_accuracy,top5\n")
                .replace("45.0\n", "45.0,90.0\n")
                .into(),
        );
        assert_eq!(compare(&files(), &f, Mode::Bitwise), Verdict::Identical);
        assert!(
            matches!(compare(&f, &files(), Mode::Bitwise), Verdict::Differs(w) if w.contains("no column top5"))
        );
    }

    #[test]
    fn without_bitwise_repeatability_the_summary_is_compared_within_the_tolerance() {
        let t = Mode::Tolerance(Tolerance::default());
        let mut f = files();
        f.summary = Some(SUMMARY.replace(",40.0,0.08,", ",40.3,0.085,").into());
        // Predictions and times differ too: not compared.
        f.predictions = Some(b"other\n".to_vec());
        assert!(
            matches!(compare(&files(), &f, t), Verdict::WithinTolerance(w) if w.contains("|Δaccuracy| 0.3000 pp")),
        );
        f.summary = Some(SUMMARY.replace(",40.0,", ",39.2,").into());
        assert!(
            matches!(compare(&files(), &f, t), Verdict::Differs(w) if w.contains("accuracy: committed 40, trained again 39.2")),
        );
        f.summary = Some(SUMMARY.replace(",0.08,", ",0.1,").into());
        assert!(
            matches!(compare(&files(), &f, t), Verdict::Differs(w) if w.starts_with("summary.csv ece")),
        );
    }
}
