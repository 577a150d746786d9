//! Every measure against numbers worked out by hand in the comments.

use super::*;
use crate::metrics::evaluate;

/// Logits whose softmax is `rows` (z_k = ln p_k; the rows sum to 1).
fn logits_of(rows: &[&[f64]]) -> Vec<f32> {
    rows.iter()
        .flat_map(|r| r.iter().map(|p| p.ln() as f32))
        .collect()
}

fn close(a: f64, b: f64, tol: f64) {
    assert!((a - b).abs() < tol, "{a} vs {b}");
}

#[test]
fn three_samples_of_three_classes_by_hand() {
    // p = (0.7, 0.25, 0.05) label 0; (0.5, 0.35, 0.15) label 1; (0.1, 0.35, 0.55) label 2.
    // No probability lies near a bin edge (multiples of 1/15), so f32 logits do not move
    // one across.
    let logits = logits_of(&[&[0.7, 0.25, 0.05], &[0.5, 0.35, 0.15], &[0.1, 0.35, 0.55]]);
    let labels = [0u16, 1, 2];
    let c = calibration(Scores::new(&logits, &labels, 3), 1.0);
    // Top label: 0.7 right (bin 10), 0.5 wrong (bin 7: class 0 is predicted), 0.55 right
    // (bin 8). One sample a bin: ECE = (0.3 + 0.5 + 0.45) / 3, MCE = 0.5.
    close(c.accuracy, 200.0 / 3.0, 1e-9);
    close(c.ece, 1.25 / 3.0, 1e-6);
    close(c.mce, 0.5, 1e-6);
    // Equal mass, 15 bins of 3 sorted samples: bin b holds [⌊3b/15⌋, ⌊3(b+1)/15⌋), so bins
    // 4, 9 and 14 hold one sample each: the same as ECE here.
    close(c.adaptive_ece, 1.25 / 3.0, 1e-6);
    // Classwise, each class over all three samples, outcome y = k:
    //   class 0: 0.7 (y=0, bin 10), 0.5 (no, bin 7), 0.1 (no, bin 1): gaps 0.3, 0.5, 0.1
    //            → (0.3 + 0.5 + 0.1) / 3 = 0.3
    //   class 1: 0.25 (no, bin 3) gap 0.25; 0.35 (y=1) and 0.35 (no) share bin 5:
    //            frequency 0.5, mean p 0.35, gap 0.15 → 0.25/3 + (2/3)·0.15 = 0.18333
    //   class 2: 0.05 (no, bin 0), 0.15 (no, bin 2), 0.55 (y=2, bin 8): gaps 0.05, 0.15,
    //            0.45 → 0.65/3 = 0.21667
    //   mean: (0.3 + 0.18333 + 0.21667) / 3 = 0.7 / 3
    close(c.classwise_ece, 0.7 / 3.0, 1e-6);
    close(
        classwise_ece(Scores::new(&logits, &labels, 3), 15),
        0.7 / 3.0,
        1e-6,
    );
    close(
        c.nll,
        -(0.7f64.ln() + 0.35f64.ln() + 0.55f64.ln()) / 3.0,
        1e-6,
    );
    // Brier: 0.09 + 0.0625 + 0.0025 = 0.155; 0.25 + 0.4225 + 0.0225 = 0.695;
    // 0.01 + 0.1225 + 0.2025 = 0.335; mean 1.185 / 3 = 0.395.
    close(c.brier, 0.395, 1e-6);
}

#[test]
fn adaptive_bins_hold_equal_shares_of_the_sorted_samples() {
    // Five samples, two bins, given out of order. Sorted: 0.55 right, 0.6 wrong | 0.7
    // right, 0.8 right, 0.9 wrong (bin 0 = [0, ⌊5/2⌋) = [0, 2), bin 1 = [2, 5)).
    // Bin 0: accuracy 0.5, confidence 0.575, gap 0.075, weight 2/5.
    // Bin 1: accuracy 2/3, confidence 0.8, gap 2/15, weight 3/5.
    // 0.4·0.075 + 0.6·2/15 = 0.03 + 0.08 = 0.11.
    let s = [
        (0.9, false),
        (0.6, false),
        (0.8, true),
        (0.55, true),
        (0.7, true),
    ];
    close(adaptive_ece(&s, 2), 0.11, 1e-12);
    // Ties keep sample order: (0.5 right, 0.5 wrong) | (0.5 wrong, 0.9 right): gaps 0 and
    // |0.5 − 0.7| = 0.2, each weight 1/2 → 0.1.
    let ties = [(0.5, true), (0.5, false), (0.5, false), (0.9, true)];
    close(adaptive_ece(&ties, 2), 0.1, 1e-12);
    // More bins than samples: the empty ones are skipped, each sample is a bin of its own.
    close(
        adaptive_ece(&ties, 15),
        (0.5 + 0.5 + 0.5 + 0.1) / 4.0,
        1e-12,
    );
    assert_eq!(adaptive_ece(&[], 15), 0.0);
    // The same through logits: two classes, p(class 0) = c, the label says right/wrong.
    let rows: Vec<[f64; 2]> = s.iter().map(|&(c, _)| [c, 1.0 - c]).collect();
    let refs: Vec<&[f64]> = rows.iter().map(|r| &r[..]).collect();
    let logits = logits_of(&refs);
    let labels: Vec<u16> = s.iter().map(|&(_, ok)| !ok as u16).collect();
    let top = top_label(Scores::new(&logits, &labels, 2), 1.0);
    close(adaptive_ece(&top, 2), 0.11, 1e-6);
}

#[test]
fn mce_is_the_largest_gap_of_a_non_empty_bin() {
    // Nine samples at 0.95, right (bin 14: gap 0.05), one at 0.35, right (bin 5: gap
    // 0.65). ECE weighs the second by 1/10: 0.9·0.05 + 0.1·0.65 = 0.11; MCE does not.
    let mut s = vec![(0.95, true); 9];
    s.push((0.35, true));
    close(ece(&s, 15).0, 0.11, 1e-12);
    close(mce(&s, 15), 0.65, 1e-12);
    // The example of `ece`'s test: gaps 0.4, 0.4 and 0.3.
    let s = [(0.9, true), (0.9, false), (0.6, true), (0.3, false)];
    close(mce(&s, 15), 0.4, 1e-12);
    assert_eq!(mce(&[], 15), 0.0);
}

/// Two classes, logits (a, −a) for every sample, the label 0 for `right` of `n`.
fn constant(a: f32, right: usize, n: usize) -> (Vec<f32>, Vec<u16>) {
    let logits = (0..n).flat_map(|_| [a, -a]).collect();
    let labels = (0..n).map(|i| (i >= right) as u16).collect();
    (logits, labels)
}

#[test]
fn temperature_scaling_finds_the_analytic_temperature() {
    // Every sample predicts class 0 with probability σ(2a/T), and a fraction q is right:
    // the NLL −q·ln σ(2a/T) − (1−q)·ln(1 − σ(2a/T)) is least at σ(2a/T) = q, that is at
    // T = 2a / logit(q).
    // Overconfident: a = 2, q = 3/4, logit(q) = ln 3: T = 4 / ln 3 = 3.6410.
    let (z, y) = constant(2.0, 3, 4);
    let t = fit_temperature(Scores::new(&z, &y, 2));
    close(t, 4.0 / 3f64.ln(), 1e-6);
    // Underconfident: a = 0.25, q = 9/10, logit(q) = ln 9: T = 0.5 / ln 9 = 0.2276.
    let (z, y) = constant(0.25, 9, 10);
    let t = fit_temperature(Scores::new(&z, &y, 2));
    close(t, 0.5 / 9f64.ln(), 1e-6);
    // After scaling, every confidence is q and the accuracy is q: one bin, no gap. The NLL
    // is the binary entropy of q; the Brier score 2q(1−q) (each sample's two squared
    // errors are equal).
    let (z, y) = constant(2.0, 3, 4);
    let a = assess(Scores::new(&z, &y, 2), Some(Scores::new(&z, &y, 2)));
    let s = a.scaled.unwrap();
    // Before: confidence σ(4) = 0.982014 against accuracy 0.75.
    let sigma4 = 1.0 / (1.0 + (-4f64).exp());
    close(a.raw.ece, sigma4 - 0.75, 1e-6);
    close(a.raw.mce, sigma4 - 0.75, 1e-6);
    close(s.ece, 0.0, 1e-6);
    close(s.mce, 0.0, 1e-6);
    // Four samples in 15 equal-mass bins: a bin each, so the adaptive ECE is the mean
    // |correct − q|: (3·0.25 + 0.75) / 4 = 2q(1−q) = 0.375 (before: (3(1 − σ(4)) + σ(4)) / 4).
    close(s.adaptive_ece, 0.375, 1e-6);
    close(
        a.raw.adaptive_ece,
        (3.0 * (1.0 - sigma4) + sigma4) / 4.0,
        1e-6,
    );
    close(s.nll, -(0.75 * 0.75f64.ln() + 0.25 * 0.25f64.ln()), 1e-9);
    close(s.brier, 2.0 * 0.75 * 0.25, 1e-6);
    assert_eq!(s.accuracy, a.raw.accuracy);
}

#[test]
fn temperature_scaling_stops_at_its_bounds_and_leaves_flat_logits_alone() {
    // All right with a margin: the NLL falls as T → 0, down to the bound.
    let (z, y) = constant(1.0, 4, 4);
    assert_eq!(fit_temperature(Scores::new(&z, &y, 2)), T_MIN);
    // All wrong: the NLL falls as T grows (towards ln 2 as the probabilities even out).
    let (z, y) = constant(1.0, 0, 4);
    assert_eq!(fit_temperature(Scores::new(&z, &y, 2)), T_MAX);
    // Equal logits: T changes nothing.
    let (z, y) = constant(0.0, 2, 4);
    assert_eq!(fit_temperature(Scores::new(&z, &y, 2)), 1.0);
}

/// Deterministic logits of `n` samples of `classes` classes, with labels that agree with
/// the largest logit about half the time.
fn pseudo_random(n: usize, classes: usize) -> (Vec<f32>, Vec<u16>) {
    let mut state = 12345u64;
    let mut next = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as f64 / (1u64 << 31) as f64
    };
    let logits: Vec<f32> = (0..n * classes)
        .map(|_| (6.0 * next() - 3.0) as f32)
        .collect();
    let labels = (0..n)
        .map(|i| {
            if next() < 0.5 {
                argmax(&logits[i * classes..(i + 1) * classes]) as u16
            } else {
                (next() * classes as f64) as u16 % classes as u16
            }
        })
        .collect();
    (logits, labels)
}

#[test]
fn the_suite_agrees_with_the_summary_metrics_and_scaling_keeps_the_predictions() {
    let (z, y) = pseudo_random(300, 7);
    let s = Scores::new(&z, &y, 7);
    let c = calibration(s, 1.0);
    let e = evaluate(&z, &y, 7);
    assert_eq!(c.accuracy, e.accuracy);
    close(c.ece, e.ece, 1e-12);
    close(c.nll, e.nll, 1e-9);
    close(c.brier, e.brier, 1e-12);
    assert!(c.mce >= c.ece);
    for t in [0.1, 0.5, 2.0, 10.0] {
        assert_eq!(calibration(s, t).accuracy, c.accuracy, "T = {t}");
    }
    // Fitted on the split itself, the NLL is no worse than at T = 1 (which the fit could
    // have chosen), and the derivative vanishes there.
    let (val_z, val_y) = pseudo_random(200, 7);
    let val = Scores::new(&val_z, &val_y, 7);
    let t = fit_temperature(val);
    assert!(t > T_MIN && t < T_MAX, "{t}");
    close(nll_derivatives(val, 1.0 / t).1, 0.0, 1e-9);
    let at = |t: f64| calibration(val, t).nll;
    assert!(at(t) <= at(1.0) && at(t) <= at(t * 1.001) && at(t) <= at(t / 1.001));
    let a = assess(s, Some(val));
    assert_eq!(a.temperature, Some(t));
    assert_eq!(a.scaled, Some(calibration(s, t)));
    assert_eq!(a.raw, c);
    let a = assess(s, None);
    assert_eq!((a.temperature, a.scaled), (None, None));
}

#[test]
fn cross_fitting_measures_each_half_at_the_other_halfs_temperature() {
    // Eight samples of two classes, interleaved: the even positions have logits (1, −1)
    // (margin 2), the odd ones (0.5, −0.5) (margin 1); in each half three of four are
    // right (class 0), the last one (positions 6 and 7) wrong.
    let z: Vec<f32> = (0..8)
        .flat_map(|i| if i % 2 == 0 { [1.0, -1.0] } else { [0.5, -0.5] })
        .collect();
    let y = [0u16, 0, 0, 0, 0, 0, 1, 1];
    let s = Scores::new(&z, &y, 2);
    // Each half alone: σ(margin/T) = 3/4 at T = margin / ln 3 (as in
    // `temperature_scaling_finds_the_analytic_temperature`).
    let c = cross_fit(s);
    let ln3 = 3f64.ln();
    close(c.temperatures[0], 2.0 / ln3, 1e-6);
    close(c.temperatures[1], 1.0 / ln3, 1e-6);
    close(c.temperature(), 1.5 / ln3, 1e-6);
    // Swapped: the even samples at T = 1/ln 3 have confidence σ(2 ln 3) = 9/10; the odd
    // ones at T = 2/ln 3 have σ(ln 3 / 2) = √3 / (1 + √3) = 0.633975.
    let odd = 3f64.sqrt() / (1.0 + 3f64.sqrt());
    // Pooled: 0.9 (bin 13) and 0.634 (bin 9) hold four samples each, three right:
    // ECE = ½·|0.75 − 0.9| + ½·|0.75 − 0.633975| = 0.075 + 0.0580127 = 0.1330127.
    let m = c.scaled;
    close(m.accuracy, 75.0, 1e-9);
    close(m.ece, 0.5 * 0.15 + 0.5 * (0.75 - odd), 1e-6);
    close(m.ece, 0.1330127, 1e-6);
    close(m.mce, 0.15, 1e-6);
    // NLL: (3·(−ln 0.9) − ln 0.1 + 3·(−ln 0.634) − ln 0.366) / 8.
    let nll = (-3.0 * 0.9f64.ln() - 0.1f64.ln() - 3.0 * odd.ln() - (1.0 - odd).ln()) / 8.0;
    close(m.nll, nll, 1e-6);
    // Brier: a right sample at confidence c scores 2(1 − c)², a wrong one 2c².
    let brier =
        (3.0 * 2.0 * 0.01 + 2.0 * 0.81 + 3.0 * 2.0 * (1.0 - odd).powi(2) + 2.0 * odd * odd) / 8.0;
    close(m.brier, brier, 1e-6);
    // The policy: a held-out split is fitted on and applied; without one, cross-fitting.
    let t = temperature_scaled(s, None);
    assert_eq!(
        (t.fit, t.temperature, t.scaled),
        (Fit::CrossFit, c.temperature(), m)
    );
    let (vz, vy) = constant(2.0, 3, 4);
    let t = temperature_scaled(s, Some(Scores::new(&vz, &vy, 2)));
    close(t.temperature, 4.0 / ln3, 1e-6);
    assert_eq!(t.fit, Fit::Validation);
    assert_eq!(t.scaled, calibration(s, t.temperature));
    // A split of one sample: the odd fold is empty and fits T = 1.
    let one = cross_fit(Scores::new(&z[..2], &y[..1], 2));
    assert_eq!(one.temperatures, [T_MIN, 1.0]);
    assert_eq!(
        one.scaled,
        calibration(Scores::new(&z[..2], &y[..1], 2), 1.0)
    );
}
