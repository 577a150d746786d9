//! The calibration measures beside the summary's ECE, all computed from a split's logits
//! and labels (a run's `logits.safetensors`), so that none needs the model again:
//!
//! - ECE: 15 equal-width bins of the top-label confidence (Guo et al. 2017), the same
//!   number as `metrics::evaluate`'s.
//! - Adaptive ECE: 15 equal-mass bins of the top-label confidence (the adaptive binning
//!   of Nixon et al. 2019, "Measuring Calibration in Deep Learning"; AdaECE in Mukhoti
//!   et al. 2020). The samples are sorted by confidence, ascending, ties in sample order
//!   (a stable sort), and bin b of B holds the sorted samples [⌊b·n/B⌋, ⌊(b+1)·n/B⌋): bin
//!   sizes differ by at most one, a tie may straddle two bins, and the result depends on
//!   the data alone. Bins are weighted by their size (|B_b|/n), as ECE's; with fewer
//!   samples than bins, some bins are empty and skipped.
//! - Classwise ECE (Kull et al. 2019; Nixon et al.'s SCE): for each class k, the 15
//!   equal-width bins of p_k over every sample, with the indicator y = k as the outcome;
//!   the classes' ECEs averaged. p_k = 0 falls in the first bin.
//! - MCE: the largest |accuracy − confidence| over the non-empty equal-width bins (Guo et
//!   al. 2017).
//! - NLL (from the log-softmax, so it stays finite where the label's probability
//!   underflows) and the Brier score (summed over classes, averaged over samples).
//!
//! The prediction is the first largest logit (as `metrics::evaluate`'s, which takes the
//! first largest probability): it does not depend on a temperature, so temperature scaling
//! keeps the accuracy exactly.
//!
//! Temperature scaling (Guo et al. 2017) is the post-hoc baseline: one T > 0 fitted on the
//! validation split, minimising its NLL of softmax(z/T), then applied to the test logits
//! (`assess`). A run without a validation split is scaled by two-fold cross-fitting on
//! the measured split itself (`cross_fit`, `temperature_scaled`).

use super::{bin_of, ece, ECE_BINS};

/// Temperatures outside [T_MIN, T_MAX] are not searched: a fit that ends at a bound (a
/// validation split the model gets all right, say, where the NLL falls as T → 0) gives
/// that bound.
pub const T_MIN: f64 = 0.05;
pub const T_MAX: f64 = 20.0;

/// Row-major `labels.len() × classes` logits of one split, with its labels.
#[derive(Debug, Clone, Copy)]
pub struct Scores<'a> {
    pub logits: &'a [f32],
    pub labels: &'a [u16],
    pub classes: usize,
}

impl<'a> Scores<'a> {
    pub fn new(logits: &'a [f32], labels: &'a [u16], classes: usize) -> Self {
        assert_eq!(
            logits.len(),
            labels.len() * classes,
            "logits and labels disagree"
        );
        Self {
            logits,
            labels,
            classes,
        }
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    fn row(&self, i: usize) -> &'a [f32] {
        &self.logits[i * self.classes..(i + 1) * self.classes]
    }
}

/// The measures of one split's probabilities; fractions, but accuracy in percent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Calibration {
    pub accuracy: f64,
    pub ece: f64,
    pub adaptive_ece: f64,
    pub classwise_ece: f64,
    pub mce: f64,
    pub nll: f64,
    pub brier: f64,
}

/// The test split's measures as the model gives them and, where the run holds out a
/// validation split, after temperature scaling fitted on it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Assessment {
    pub raw: Calibration,
    /// The fitted temperature (`None` without a validation split).
    pub temperature: Option<f64>,
    pub scaled: Option<Calibration>,
}

/// Softmax of `z / t` (`beta` = 1/t) into `p`, in f64; returns the log of its normaliser
/// relative to the largest logit, so that log p_k = beta·(z_k − max) − the returned value.
fn softmax(z: &[f32], beta: f64, p: &mut [f64]) -> f64 {
    let m = z.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
    let mut sum = 0.0;
    for (pk, &zk) in p.iter_mut().zip(z) {
        *pk = ((zk as f64 - m) * beta).exp();
        sum += *pk;
    }
    for pk in p.iter_mut() {
        *pk /= sum;
    }
    sum.ln()
}

/// The first largest logit.
fn argmax(z: &[f32]) -> usize {
    let mut best = 0;
    for (k, &zk) in z.iter().enumerate() {
        if zk > z[best] {
            best = k;
        }
    }
    best
}

/// The top-label (confidence, correct) pairs of `s` at temperature 1/`beta`.
pub fn top_label(s: Scores, beta: f64) -> Vec<(f64, bool)> {
    let mut p = vec![0f64; s.classes];
    (0..s.len())
        .map(|i| {
            let z = s.row(i);
            softmax(z, beta, &mut p);
            let k = argmax(z);
            (p[k], k == s.labels[i] as usize)
        })
        .collect()
}

/// ECE over equal-mass bins of (confidence, correct) pairs; see the module's comment for
/// how the samples are split.
pub fn adaptive_ece(samples: &[(f64, bool)], bins: usize) -> f64 {
    let n = samples.len();
    let mut sorted = samples.to_vec();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut total = 0.0;
    for b in 0..bins {
        let bin = &sorted[b * n / bins..(b + 1) * n / bins];
        if bin.is_empty() {
            continue;
        }
        let k = bin.len() as f64;
        let acc = bin.iter().filter(|s| s.1).count() as f64 / k;
        let conf = bin.iter().map(|s| s.0).sum::<f64>() / k;
        total += k / n as f64 * (acc - conf).abs();
    }
    total
}

/// The largest gap over the non-empty equal-width bins of (confidence, correct) pairs.
pub fn mce(samples: &[(f64, bool)], bins: usize) -> f64 {
    ece(samples, bins)
        .1
        .iter()
        .filter(|b| b.count > 0)
        .map(|b| (b.accuracy - b.confidence).abs())
        .fold(0.0, f64::max)
}

/// Per-class equal-width bins, filled one sample at a time (no n × classes table).
struct Classwise {
    bins: usize,
    /// Per (class, bin): samples, samples of that class, and their summed p_k.
    count: Vec<usize>,
    hits: Vec<usize>,
    mass: Vec<f64>,
}

impl Classwise {
    fn new(classes: usize, bins: usize) -> Self {
        Self {
            bins,
            count: vec![0; classes * bins],
            hits: vec![0; classes * bins],
            mass: vec![0.0; classes * bins],
        }
    }

    fn add(&mut self, p: &[f64], label: usize) {
        for (k, &pk) in p.iter().enumerate() {
            let at = k * self.bins + bin_of(pk, self.bins);
            self.count[at] += 1;
            self.hits[at] += (k == label) as usize;
            self.mass[at] += pk;
        }
    }

    /// The classes' ECEs, averaged.
    fn ece(&self, n: usize) -> f64 {
        let classes = self.count.len() / self.bins;
        let mut total = 0.0;
        for at in 0..self.count.len() {
            if self.count[at] > 0 {
                let c = self.count[at] as f64;
                total += c / n as f64 * (self.hits[at] as f64 / c - self.mass[at] / c).abs();
            }
        }
        total / classes.max(1) as f64
    }
}

/// Classwise ECE of `s` with `bins` equal-width bins per class.
pub fn classwise_ece(s: Scores, bins: usize) -> f64 {
    let mut acc = Classwise::new(s.classes, bins);
    let mut p = vec![0f64; s.classes];
    for i in 0..s.len() {
        softmax(s.row(i), 1.0, &mut p);
        acc.add(&p, s.labels[i] as usize);
    }
    acc.ece(s.len().max(1))
}

/// Every measure of `s` at temperature `t` (1 for the model's own probabilities), with 15
/// bins where there are bins.
pub fn calibration(s: Scores, t: f64) -> Calibration {
    let beta = 1.0 / t;
    calibration_at(s, |_| beta)
}

/// Every measure of `s`, sample i at inverse temperature `beta(i)`: the pooled measures of
/// samples scaled by different temperatures (`cross_fit`).
fn calibration_at(s: Scores, beta: impl Fn(usize) -> f64) -> Calibration {
    let n = s.len();
    let nf = n.max(1) as f64;
    let mut p = vec![0f64; s.classes];
    let mut classwise = Classwise::new(s.classes, ECE_BINS);
    let mut top = Vec::with_capacity(n);
    let (mut nll, mut brier) = (0.0, 0.0);
    for i in 0..n {
        let z = s.row(i);
        let y = s.labels[i] as usize;
        let beta = beta(i);
        let log_norm = softmax(z, beta, &mut p);
        let m = z.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
        nll += log_norm - (z[y] as f64 - m) * beta;
        brier += p
            .iter()
            .enumerate()
            .map(|(k, &pk)| (pk - (k == y) as u8 as f64).powi(2))
            .sum::<f64>();
        let k = argmax(z);
        top.push((p[k], k == y));
        classwise.add(&p, y);
    }
    Calibration {
        accuracy: 100.0 * top.iter().filter(|s| s.1).count() as f64 / nf,
        ece: ece(&top, ECE_BINS).0,
        adaptive_ece: adaptive_ece(&top, ECE_BINS),
        classwise_ece: classwise.ece(n.max(1)),
        mce: mce(&top, ECE_BINS),
        nll: nll / nf,
        brier: brier / nf,
    }
}

/// The mean NLL of `s` at inverse temperature `beta` and its first two derivatives in
/// `beta`: with E and Var under softmax(beta·z), NLL' = mean(E[z] − z_y) and
/// NLL'' = mean(Var[z]) ≥ 0, so the NLL is convex in beta.
fn nll_derivatives(s: Scores, beta: f64) -> (f64, f64, f64) {
    let mut p = vec![0f64; s.classes];
    let (mut f, mut d1, mut d2) = (0.0, 0.0, 0.0);
    for i in 0..s.len() {
        let z = s.row(i);
        let m = z.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
        let log_norm = softmax(z, beta, &mut p);
        let zy = s.labels[i] as usize;
        // Shifted by the largest logit: the mean and variance are those of z, less m.
        let (mut mean, mut sq) = (0.0, 0.0);
        for (&pk, &zk) in p.iter().zip(z) {
            let d = zk as f64 - m;
            mean += pk * d;
            sq += pk * d * d;
        }
        f += log_norm - (z[zy] as f64 - m) * beta;
        d1 += mean - (z[zy] as f64 - m);
        d2 += sq - mean * mean;
    }
    let n = s.len().max(1) as f64;
    (f / n, d1 / n, d2.max(0.0) / n)
}

/// The temperature T in [T_MIN, T_MAX] that minimises the mean NLL of softmax(z/T) on
/// `val` (Guo et al. 2017).
///
/// The NLL is convex in beta = 1/T, so its minimum is where NLL'(beta) = 0, a root of a
/// nondecreasing function: Newton's method on beta, kept inside a bracket [lo, hi] with
/// NLL'(lo) < 0 < NLL'(hi) that every step narrows, bisecting wherever a Newton step would
/// leave it (or the curvature vanishes). It stops when a step or the bracket is below
/// 1e-12 relative to beta (T to well within 1e-6). A derivative that does not change
/// sign over the bracket puts the minimum at a bound; one that is zero at both (every
/// row's logits equal, so T changes nothing) gives T = 1.
pub fn fit_temperature(val: Scores) -> f64 {
    let (mut lo, mut hi) = (1.0 / T_MAX, 1.0 / T_MIN);
    let (d_lo, d_hi) = (nll_derivatives(val, lo).1, nll_derivatives(val, hi).1);
    if d_lo >= 0.0 && d_hi <= 0.0 {
        return 1.0;
    }
    if d_lo >= 0.0 {
        return T_MAX;
    }
    if d_hi <= 0.0 {
        return T_MIN;
    }
    let mut beta = 1.0;
    for _ in 0..200 {
        let (_, d1, d2) = nll_derivatives(val, beta);
        if d1 == 0.0 {
            break;
        }
        if d1 < 0.0 {
            lo = beta;
        } else {
            hi = beta;
        }
        let newton = beta - d1 / d2;
        let next = if d2 > 0.0 && newton > lo && newton < hi {
            newton
        } else {
            0.5 * (lo + hi)
        };
        let step = (next - beta).abs();
        beta = next;
        if step <= 1e-12 * beta || hi - lo <= 1e-12 * beta {
            break;
        }
    }
    1.0 / beta
}

/// The test split's measures, and with a validation split the temperature fitted on it
/// and the test measures at that temperature.
pub fn assess(test: Scores, val: Option<Scores>) -> Assessment {
    let temperature = val.filter(|v| !v.is_empty()).map(fit_temperature);
    Assessment {
        raw: calibration(test, 1.0),
        temperature,
        scaled: temperature.map(|t| calibration(test, t)),
    }
}

/// Temperature scaling cross-fitted on a split that no held-out split accompanies (Ashukha
/// et al. 2020, "Pitfalls of in-domain uncertainty estimation and ensembling in deep
/// learning": "test-time cross-validation"), so that no sample is measured at a
/// temperature fitted on itself.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CrossFit {
    /// T fitted on the even positions (0, 2, 4, …) and T fitted on the odd ones.
    pub temperatures: [f64; 2],
    /// The measures of the whole split, pooled: each sample at the temperature fitted on
    /// the other half.
    pub scaled: Calibration,
}

impl CrossFit {
    /// The two temperatures' mean.
    pub fn temperature(&self) -> f64 {
        0.5 * (self.temperatures[0] + self.temperatures[1])
    }
}

/// Two folds by position, even and odd: a fixed rule that depends on nothing but the
/// order of the split, and one that keeps both halves alike where a split is stored
/// sorted by class (ImageNet's validation folders), which halves by first and second
/// half would not. T is fitted on each fold (`fit_temperature`) and applied to the
/// other; the measures are then computed once on the pooled n samples rather than
/// averaged over the two halves: binned measures (ECE and its kin) are not averages of
/// per-half values, and pooling keeps the bins as full as the unscaled measures', so
/// the two compare like for like. A fold with no sample (a split of one) fits T = 1.
pub fn cross_fit(s: Scores) -> CrossFit {
    let fit = |parity: usize| {
        let at = (parity..s.len()).step_by(2);
        let logits: Vec<f32> = at.clone().flat_map(|i| s.row(i).iter().copied()).collect();
        let labels: Vec<u16> = at.map(|i| s.labels[i]).collect();
        fit_temperature(Scores::new(&logits, &labels, s.classes))
    };
    let temperatures = [fit(0), fit(1)];
    let beta = [1.0 / temperatures[0], 1.0 / temperatures[1]];
    CrossFit {
        temperatures,
        scaled: calibration_at(s, |i| beta[1 - i % 2]),
    }
}

/// Where a temperature was fitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fit {
    /// On the run's held-out validation split, applied to the measured split.
    Validation,
    /// Two-fold on the measured split itself (`cross_fit`).
    CrossFit,
}

/// A split's measures after temperature scaling.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scaled {
    pub fit: Fit,
    /// The fitted temperature (with `Fit::CrossFit`, the mean of the two).
    pub temperature: f64,
    pub scaled: Calibration,
}

/// `measured` after temperature scaling: T fitted on `held_out` where there is one (a
/// split apart from the measured one), cross-fitted on `measured` itself otherwise.
pub fn temperature_scaled(measured: Scores, held_out: Option<Scores>) -> Scaled {
    match held_out.filter(|v| !v.is_empty()) {
        Some(v) => {
            let t = fit_temperature(v);
            Scaled {
                fit: Fit::Validation,
                temperature: t,
                scaled: calibration(measured, t),
            }
        }
        None => {
            let c = cross_fit(measured);
            Scaled {
                fit: Fit::CrossFit,
                temperature: c.temperature(),
                scaled: c.scaled,
            }
        }
    }
}

#[cfg(test)]
mod tests;
