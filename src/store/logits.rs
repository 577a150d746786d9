//! `logits.safetensors`: a run's final logits on its test split and, where it holds one
//! out, its validation split, so that every calibration measure (`metrics::calibration`,
//! temperature scaling included) is computed from files, never by training again.
//!
//! Tensors, no metadata:
//!
//! ```text
//! test_logits  F16 [n, K]    test_labels  U16 [n]
//! val_logits   F16 [m, K]    val_labels   U16 [m]    (only with a validation split)
//! ```
//!
//! Each row is stored less its largest logit. Softmax, and with it every measure, is
//! unchanged by a shift; the largest logit becomes exactly 0, and the logits that decide
//! the probabilities, those near the largest, are then small numbers, where f16's absolute
//! precision is finest (one 1.5 below the largest is kept to within 2^-11), while those
//! far below it, whose error is larger, weigh e^-(distance) in the softmax. The conversion
//! rounds to nearest, ties to even (`half`); a logit below f16's range saturates at
//! −65504; a logit below the row's largest that would round to 0 is stored as −2^-24 (the
//! smallest f16 below 0), so that every stored row has the same first largest logit, the
//! prediction, as the f32 row. CIFAR-100's 10,000 × 100 test logits take 2 MB.

use crate::metrics::calibration::Scores;
use crate::metrics::Evaluation;
use anyhow::{bail, Context};
use half::f16;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::path::Path;

const TEST_LOGITS: &str = "test_logits";
const TEST_LABELS: &str = "test_labels";
const VAL_LOGITS: &str = "val_logits";
const VAL_LABELS: &str = "val_labels";

/// One split's logits as stored (row-major `labels.len() × classes`, each row less its
/// largest, at f16 precision) and its labels.
#[derive(Debug, Clone, PartialEq)]
pub struct SplitLogits {
    pub logits: Vec<f32>,
    pub labels: Vec<u16>,
    pub classes: usize,
}

impl SplitLogits {
    pub fn scores(&self) -> Scores<'_> {
        Scores::new(&self.logits, &self.labels, self.classes)
    }
}

/// A run's stored logits.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredLogits {
    pub test: SplitLogits,
    pub validation: Option<SplitLogits>,
}

/// The f16 bits of a row less its largest logit.
fn encode_row(z: &[f32], out: &mut Vec<u8>) {
    let m = z.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    for &zk in z {
        let d = (zk - m).max(-65504.0);
        let mut h = f16::from_f32(d);
        if d < 0.0 && h.to_f32() == 0.0 {
            h = f16::from_bits(0x8001);
        }
        out.extend(h.to_bits().to_le_bytes());
    }
}

fn encode_split(s: Scores) -> (Vec<u8>, Vec<u8>) {
    let mut logits = Vec::with_capacity(s.logits.len() * 2);
    if s.classes > 0 {
        for z in s.logits.chunks(s.classes) {
            encode_row(z, &mut logits);
        }
    }
    let labels = s.labels.iter().flat_map(|y| y.to_le_bytes()).collect();
    (logits, labels)
}

/// The bytes of `logits.safetensors` for a test split and an optional validation split.
pub fn encode(test: Scores, val: Option<Scores>) -> anyhow::Result<Vec<u8>> {
    let mut splits = vec![(TEST_LOGITS, TEST_LABELS, test)];
    splits.extend(val.map(|v| (VAL_LOGITS, VAL_LABELS, v)));
    let data: Vec<_> = splits
        .into_iter()
        .map(|(l, y, s)| (l, y, s.len(), s.classes, encode_split(s)))
        .collect();
    let mut views = Vec::new();
    for (l, y, n, classes, (logits, labels)) in &data {
        views.push((*l, TensorView::new(Dtype::F16, vec![*n, *classes], logits)?));
        views.push((*y, TensorView::new(Dtype::U16, vec![*n], labels)?));
    }
    Ok(safetensors::serialize(views, None)?)
}

/// The bytes of `logits.safetensors` for a run's last test and validation evaluations.
pub fn encode_evaluations(test: &Evaluation, val: Option<&Evaluation>) -> anyhow::Result<Vec<u8>> {
    let labels = |e: &Evaluation| -> Vec<u16> { e.predictions.iter().map(|p| p.label).collect() };
    let test_labels = labels(test);
    let val_labels = val.map(labels);
    let val = val
        .zip(val_labels.as_deref())
        .map(|(e, y)| Scores::new(&e.logits, y, e.classes));
    encode(Scores::new(&test.logits, &test_labels, test.classes), val)
}

/// Reads a run's `logits.safetensors`.
pub fn read_logits(path: &Path) -> anyhow::Result<StoredLogits> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    decode(&bytes).with_context(|| format!("{}", path.display()))
}

fn decode(bytes: &[u8]) -> anyhow::Result<StoredLogits> {
    let st =
        SafeTensors::deserialize(bytes).map_err(|e| anyhow::anyhow!("not safetensors: {e}"))?;
    let mut names = st.names();
    names.sort();
    let known = [TEST_LABELS, TEST_LOGITS, VAL_LABELS, VAL_LOGITS];
    if let Some(other) = names.iter().find(|n| !known.contains(n)) {
        bail!("unknown tensor {other}");
    }
    let test = split(&st, TEST_LOGITS, TEST_LABELS)?
        .ok_or_else(|| anyhow::anyhow!("no {TEST_LOGITS} and {TEST_LABELS}"))?;
    let validation = split(&st, VAL_LOGITS, VAL_LABELS)?;
    if let Some(v) = &validation {
        if v.classes != test.classes {
            bail!(
                "{VAL_LOGITS} has {} classes, {TEST_LOGITS} {}",
                v.classes,
                test.classes
            );
        }
    }
    Ok(StoredLogits { test, validation })
}

/// One split: both tensors, or neither (`None`).
fn split(st: &SafeTensors, logits: &str, labels: &str) -> anyhow::Result<Option<SplitLogits>> {
    let (z, y) = match (st.tensor(logits), st.tensor(labels)) {
        (Ok(z), Ok(y)) => (z, y),
        (Err(_), Err(_)) => return Ok(None),
        (Ok(_), Err(_)) => bail!("{logits} without {labels}"),
        (Err(_), Ok(_)) => bail!("{labels} without {logits}"),
    };
    let (n, classes) = match (z.dtype(), z.shape()) {
        (Dtype::F16, &[n, k]) if k > 0 => (n, k),
        (d, s) => bail!("{logits} is {d:?} {s:?}, expected F16 [n, classes]"),
    };
    match (y.dtype(), y.shape()) {
        (Dtype::U16, &[m]) if m == n => {}
        (d, s) => bail!("{labels} is {d:?} {s:?}, expected U16 [{n}]"),
    }
    let logits_f32 = z
        .data()
        .chunks_exact(2)
        .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32())
        .collect();
    let labels_u16: Vec<u16> = y
        .data()
        .chunks_exact(2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]))
        .collect();
    if let Some(i) = labels_u16.iter().position(|&c| c as usize >= classes) {
        bail!(
            "{labels}[{i}] is {}, but there are {classes} classes",
            labels_u16[i]
        );
    }
    Ok(Some(SplitLogits {
        logits: logits_f32,
        labels: labels_u16,
        classes,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logits_round_trip_less_each_rows_largest_at_f16_precision() {
        // Row 0: largest 2.5 → (0, −2.5, −4.0); row 1: 1 − 1e-8 is 1 in f32, a tie with
        // class 0, both stored as 0; row 2: a logit far below f16's range saturates.
        let test = [2.5f32, 0.0, -1.5, 1.0, 1.0 - 1e-8, 0.0, 0.0, -1e6, 3.0];
        let labels = [0u16, 2, 1];
        let val = [0.3f32, 0.30001, 0.1, 0.2, 0.2, 0.1];
        let val_labels = [2u16, 0];
        let bytes = encode(
            Scores::new(&test, &labels, 3),
            Some(Scores::new(&val, &val_labels, 3)),
        )
        .unwrap();
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("logits.safetensors");
        std::fs::write(&path, &bytes).unwrap();
        let got = read_logits(&path).unwrap();
        assert_eq!(got.test.classes, 3);
        assert_eq!(got.test.labels, labels);
        let want = [0.0, -2.5, -4.0, 0.0, 0.0, -1.0, -3.0, -65504.0, 0.0];
        assert_eq!(got.test.logits, want);
        let v = got.validation.unwrap();
        assert_eq!(v.labels, val_labels);
        // 0.3 − 0.30001 ≈ −1.0e-5: in f16's subnormal range, kept to within 2^-25.
        let d = 0.3f32 - 0.30001f32;
        assert!((v.logits[0] - d).abs() <= 2f32.powi(-25), "{}", v.logits[0]);
        assert_eq!(v.logits[1], 0.0);
        assert!((v.logits[2] + 0.20001).abs() < 1e-4, "{}", v.logits[2]);
        assert_eq!(
            &v.logits[3..],
            [0.0, 0.0, -0.1f32].map(|x| f16::from_f32(x).to_f32())
        );
        // Closer to the largest than f16's smallest step: still below it.
        let row = [0.0f32, 1e-9];
        let mut out = Vec::new();
        encode_row(&row, &mut out);
        assert_eq!(out, [0x01, 0x80, 0x00, 0x00]);
        // Without a validation split.
        let bytes = encode(Scores::new(&test, &labels, 3), None).unwrap();
        assert_eq!(decode(&bytes).unwrap().validation, None);
    }

    #[test]
    fn bad_files_say_what_is_wrong_naming_the_file() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("logits.safetensors");
        let err = |bytes: &[u8]| {
            std::fs::write(&path, bytes).unwrap();
            format!("{:#}", read_logits(&path).unwrap_err())
        };
        assert!(err(b"garbage").contains("logits.safetensors: not safetensors"));
        let z = [0u8; 12];
        let y = 5u16.to_le_bytes().repeat(2);
        let bytes = safetensors::serialize(
            [
                (
                    TEST_LOGITS,
                    TensorView::new(Dtype::F16, vec![2, 3], &z).unwrap(),
                ),
                (
                    TEST_LABELS,
                    TensorView::new(Dtype::U16, vec![2], &y).unwrap(),
                ),
            ],
            None,
        )
        .unwrap();
        let e = err(&bytes);
        assert!(
            e.contains("test_labels[0] is 5, but there are 3 classes"),
            "{e}"
        );
        let bytes = safetensors::serialize(
            [(
                TEST_LOGITS,
                TensorView::new(Dtype::F16, vec![2, 3], &z).unwrap(),
            )],
            None,
        )
        .unwrap();
        assert!(err(&bytes).contains("test_logits without test_labels"));
        let bytes = safetensors::serialize(
            [
                (
                    TEST_LOGITS,
                    TensorView::new(Dtype::U16, vec![2, 3], &z).unwrap(),
                ),
                (
                    TEST_LABELS,
                    TensorView::new(Dtype::U16, vec![2], &y).unwrap(),
                ),
            ],
            None,
        )
        .unwrap();
        assert!(err(&bytes).contains("expected F16 [n, classes]"));
        std::fs::remove_file(&path).unwrap();
        let e = format!("{:#}", read_logits(&path).unwrap_err());
        assert!(
            e.starts_with("cannot read ") && e.contains("logits.safetensors"),
            "{e}"
        );
    }
}
