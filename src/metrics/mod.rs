//! Test-set metrics of `methods.md`: top-1 accuracy (%), ECE with 15 equal-width bins
//! (Guo et al. 2017, a sample falls in bin m when lo < confidence ≤ hi, reported as a
//! fraction), NLL, the Brier score (summed over classes, averaged over samples), and the
//! per-bin numbers for reliability diagrams. The other calibration measures, and
//! temperature scaling, are in `calibration`, computed from the logits an `Evaluation`
//! keeps.

pub mod calibration;

pub const ECE_BINS: usize = 15;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bin {
    pub lo: f64,
    pub hi: f64,
    pub count: usize,
    /// Fraction correct and mean confidence of the bin's samples (0 when empty).
    pub accuracy: f64,
    pub confidence: f64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prediction {
    pub label: u16,
    pub prediction: u16,
    pub confidence: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub n: usize,
    /// Percent.
    pub accuracy: f64,
    /// Percent of images whose label is among the five highest logits (ties broken
    /// towards the lower class, as for the top-1 prediction); 100 with five classes or fewer.
    pub top5: f64,
    pub ece: f64,
    pub nll: f64,
    pub brier: f64,
    pub bins: Vec<Bin>,
    pub predictions: Vec<Prediction>,
    /// The row-major `n × classes` logits evaluated, for the run's stored logits (every
    /// measure of `calibration` is computed again from them).
    pub logits: Vec<f32>,
    pub classes: usize,
}

/// The bin of a confidence in (0, 1]: bin m holds (m/M, (m+1)/M].
pub fn bin_of(confidence: f64, bins: usize) -> usize {
    let mut m = ((confidence * bins as f64).ceil() as usize).clamp(1, bins) - 1;
    // Guard the boundaries against rounding in the product.
    while m > 0 && confidence <= m as f64 / bins as f64 {
        m -= 1;
    }
    while m + 1 < bins && confidence > (m + 1) as f64 / bins as f64 {
        m += 1;
    }
    m
}

/// ECE and bins from (confidence, correct) pairs.
pub fn ece(samples: &[(f64, bool)], bins: usize) -> (f64, Vec<Bin>) {
    let mut count = vec![0usize; bins];
    let mut correct = vec![0usize; bins];
    let mut conf = vec![0f64; bins];
    for &(c, ok) in samples {
        let m = bin_of(c, bins);
        count[m] += 1;
        correct[m] += ok as usize;
        conf[m] += c;
    }
    let n = samples.len().max(1) as f64;
    let mut total = 0.0;
    let out = (0..bins)
        .map(|m| {
            let (acc, cf) = if count[m] > 0 {
                let k = count[m] as f64;
                (correct[m] as f64 / k, conf[m] / k)
            } else {
                (0.0, 0.0)
            };
            if count[m] > 0 {
                total += count[m] as f64 / n * (acc - cf).abs();
            }
            Bin {
                lo: m as f64 / bins as f64,
                hi: (m + 1) as f64 / bins as f64,
                count: count[m],
                accuracy: acc,
                confidence: cf,
            }
        })
        .collect();
    (total, out)
}

/// Metrics of row-major `n×classes` logits against labels.
pub fn evaluate(logits: &[f32], labels: &[u16], classes: usize) -> Evaluation {
    let n = labels.len();
    assert_eq!(logits.len(), n * classes, "logits and labels disagree");
    let mut nll = 0.0;
    let mut brier = 0.0;
    let mut correct = 0usize;
    let mut top5 = 0usize;
    let mut predictions = Vec::with_capacity(n);
    let mut samples = Vec::with_capacity(n);
    let mut p = vec![0f64; classes];
    for (i, &y) in labels.iter().enumerate() {
        let z = &logits[i * classes..(i + 1) * classes];
        let m = z.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
        let mut sum = 0.0;
        for (pk, &zk) in p.iter_mut().zip(z) {
            *pk = (zk as f64 - m).exp();
            sum += *pk;
        }
        let (mut best, mut best_p) = (0usize, -1.0);
        for (k, pk) in p.iter_mut().enumerate() {
            *pk /= sum;
            if *pk > best_p {
                best = k;
                best_p = *pk;
            }
        }
        let y = y as usize;
        nll -= p[y].max(f64::MIN_POSITIVE).ln();
        brier += p
            .iter()
            .enumerate()
            .map(|(k, &pk)| (pk - (k == y) as u8 as f64).powi(2))
            .sum::<f64>();
        correct += (best == y) as usize;
        // The label's rank: classes ahead of it by logit, or equal and listed first.
        let rank = z
            .iter()
            .enumerate()
            .filter(|&(k, &zk)| zk > z[y] || (zk == z[y] && k < y))
            .count();
        top5 += (rank < 5) as usize;
        samples.push((best_p, best == y));
        predictions.push(Prediction {
            label: y as u16,
            prediction: best as u16,
            confidence: best_p,
        });
    }
    let (ece, bins) = ece(&samples, ECE_BINS);
    let nf = n.max(1) as f64;
    Evaluation {
        n,
        accuracy: 100.0 * correct as f64 / nf,
        top5: 100.0 * top5 as f64 / nf,
        ece,
        nll: nll / nf,
        brier: brier / nf,
        bins,
        predictions,
        logits: logits.to_vec(),
        classes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_are_left_open_right_closed() {
        assert_eq!(bin_of(1.0, 15), 14);
        assert_eq!(bin_of(1.0 / 15.0, 15), 0);
        assert_eq!(bin_of(1.0 / 15.0 + 1e-12, 15), 1);
        assert_eq!(bin_of(0.5, 15), 7); // 7/15 < 0.5 ≤ 8/15
        assert_eq!(bin_of(0.2, 15), 2); // 2/15 < 0.2 ≤ 3/15
        assert_eq!(bin_of(1e-9, 15), 0);
    }

    #[test]
    fn ece_on_a_hand_computed_example() {
        // Bin (0.8667, 0.9333]: 0.9 right, 0.9 wrong → acc 0.5, conf 0.9, gap 0.4.
        // Bin (0.5333, 0.6]: 0.6 right → gap 0.4. Bin (0.2667, 0.3333]: 0.3 wrong → gap 0.3.
        let s = [(0.9, true), (0.9, false), (0.6, true), (0.3, false)];
        let (e, bins) = ece(&s, 15);
        let expect = 0.5 * 0.4 + 0.25 * 0.4 + 0.25 * 0.3;
        assert!((e - expect).abs() < 1e-12, "{e} vs {expect}");
        assert_eq!(bins.iter().map(|b| b.count).sum::<usize>(), 4);
        assert_eq!(bins[13].count, 2);
        assert!((bins[13].accuracy - 0.5).abs() < 1e-12);
        assert_eq!(bins[8].count, 1); // 0.6 is the upper edge of bin 8
        assert_eq!(bins[4].count, 1);
    }

    #[test]
    fn evaluate_computes_accuracy_nll_and_brier() {
        // Two classes. Sample 0: logits (ln 3, 0) → p = (0.75, 0.25), label 0, correct.
        // Sample 1: logits (0, 0) → p = (0.5, 0.5), argmax 0 (first), label 1, wrong.
        let logits = [3f32.ln(), 0.0, 0.0, 0.0];
        let e = evaluate(&logits, &[0, 1], 2);
        assert!((e.accuracy - 50.0).abs() < 1e-9);
        let nll = (-(0.75f64).ln() - (0.5f64).ln()) / 2.0;
        assert!((e.nll - nll).abs() < 1e-6, "{}", e.nll);
        let brier = ((0.25f64.powi(2) + 0.25f64.powi(2)) + (0.25 + 0.25)) / 2.0;
        assert!((e.brier - brier).abs() < 1e-6, "{}", e.brier);
        // ECE: 0.75 right (gap 0.25), 0.5 wrong (gap 0.5), each weight 1/2.
        assert!((e.ece - 0.375).abs() < 1e-6, "{}", e.ece);
        assert_eq!(e.predictions[1].prediction, 0);
    }

    #[test]
    fn top5_counts_labels_among_the_five_highest_logits() {
        // Seven classes; the label's logit is 2nd, 5th, 6th and (tied with class 0) 1st.
        let rows: [[f32; 7]; 4] = [
            [0.0, 5.0, 4.0, 1.0, 1.5, 0.5, 0.2],
            [7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0],
            [7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0],
            [3.0, 3.0, 1.0, 0.0, 0.0, 0.0, 0.0],
        ];
        let logits: Vec<f32> = rows.iter().flatten().copied().collect();
        let e = evaluate(&logits, &[2, 4, 5, 1], 7);
        // Ranks 1, 4, 5 and 1 (class 0 comes first in a tie): three within the top five.
        assert_eq!(e.top5, 75.0);
        assert_eq!(e.accuracy, 0.0);
        let e = evaluate(&logits[..14], &[1, 0], 7);
        assert_eq!((e.accuracy, e.top5), (100.0, 100.0));
    }
}
