//! Label-enhancement methods: the targets a student is trained towards and the loss.
//!
//! Implemented: `hard` (Vanilla, cross-entropy to the one-hot label) and `smoothed`
//! (label smoothing, `q = ε/K + (1-ε)·onehot(y)`, the ε/K form of `methods.md`).

use crate::plan::Method;
use candle_core::{Device, Result, Tensor, D};

/// Row-major `B×K` target distribution of a hard or smoothed label.
pub fn label_targets(labels: &[u16], classes: usize, epsilon: f64) -> Vec<f32> {
    let off = (epsilon / classes as f64) as f32;
    let on = (1.0 - epsilon + epsilon / classes as f64) as f32;
    let mut t = vec![off; labels.len() * classes];
    for (i, &l) in labels.iter().enumerate() {
        t[i * classes + l as usize] = on;
    }
    t
}

/// `CE(q, σ(z)) = -Σ_k q_k log σ(z)_k`, averaged over the batch.
pub fn soft_cross_entropy(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let logp = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    (targets * logp)?.sum(D::Minus1)?.mean_all()?.neg()
}

/// The training loss of a batch under `method`.
pub fn loss(method: &Method, logits: &Tensor, labels: &[u16], device: &Device) -> Result<Tensor> {
    let classes = logits.dim(D::Minus1)?;
    let epsilon = match method {
        Method::Hard => 0.0,
        Method::Smoothed { epsilon } => *epsilon,
        Method::Teachers { .. } => candle_core::bail!(
            "label = \"teachers\" is not implemented yet in this version of lecal"
        ),
    };
    let t = label_targets(labels, classes, epsilon);
    let targets = Tensor::from_vec(t, (labels.len(), classes), device)?;
    soft_cross_entropy(logits, &targets)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ce_by_hand(z: &[f64], q: &[f64]) -> f64 {
        let m = z.iter().cloned().fold(f64::MIN, f64::max);
        let lse = m + z.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
        -z.iter().zip(q).map(|(zi, qi)| qi * (zi - lse)).sum::<f64>()
    }

    #[test]
    fn vanilla_and_smoothing_match_hand_computation() {
        let z = [[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]];
        let labels = [0u16, 1];
        let logits = Tensor::new(&[[2.0f32, 0.5, -1.0], [0.1, 0.2, 3.0]], &Device::Cpu).unwrap();
        let hard = loss(&Method::Hard, &logits, &labels, &Device::Cpu).unwrap();
        let expect = (ce_by_hand(&z[0], &[1., 0., 0.]) + ce_by_hand(&z[1], &[0., 1., 0.])) / 2.0;
        assert!((hard.to_scalar::<f32>().unwrap() as f64 - expect).abs() < 1e-5);
        let ls = loss(
            &Method::Smoothed { epsilon: 0.1 },
            &logits,
            &labels,
            &Device::Cpu,
        )
        .unwrap();
        // ε/K form: 0.1/3 off the label, 0.9 + 0.1/3 on it.
        let (off, on) = (0.1 / 3.0, 0.9 + 0.1 / 3.0);
        let expect =
            (ce_by_hand(&z[0], &[on, off, off]) + ce_by_hand(&z[1], &[off, on, off])) / 2.0;
        assert!((ls.to_scalar::<f32>().unwrap() as f64 - expect).abs() < 1e-5);
    }

    #[test]
    fn smoothed_targets_sum_to_one() {
        let t = label_targets(&[2, 0], 4, 0.1);
        assert!((t[..4].iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!((t[2] - 0.925).abs() < 1e-6 && (t[0] - 0.025).abs() < 1e-6);
    }
}
