//! CRD's contrastive objective (Tian et al., ICLR 2020, "Contrastive Representation
//! Distillation", Sec. 3.4: the NCE form of eq. 10 with a memory of embeddings), as the
//! formulas are written there and in `METHODS.md`; `train::crd` keeps the memory.
//!
//! For a batch of B samples with student embedding `v_s` and teacher embedding `v_t`
//! (`normalise(W·f + b)` of the pooled features), each sample's row of `index` holds its
//! own index (the positive) and K negatives. The scores of the student's embedding are
//! taken against the teacher's memory and the other way round:
//!
//! `P_s[i, j] = exp(m_t[index[i, j]] · v_s[i] / τ) / Z_s` (and `P_t` alike), `Z` fixed at
//! the first batch to `mean(exp(·)) · N`, and each is scored by NCE with noise
//! `P_n = 1/N`:
//!
//! `L = -(1/B) Σ_i [ log(P[i,0] / (P[i,0] + K·P_n + ε)) + Σ_{j≥1} log(K·P_n / (P[i,j] + K·P_n + ε)) ]`
//!
//! with `ε = 1e-7`; CRD's term is `L(P_s) + L(P_t)`.

use crate::model::kernels::matmul::{linear, matmul};
use crate::model::Kernels;
use candle_core::{Result, Tensor, D};

/// The ε of the NCE fractions.
const EPS: f64 = 1e-7;

/// `x / ‖x‖₂`, row by row.
pub fn normalize_rows(x: &Tensor) -> Result<Tensor> {
    let norm = x.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?;
    x.broadcast_div(&norm)
}

/// An embedding head: `normalise(f·Wᵀ + b)`, `W` of shape `dim × features`.
pub fn embed(features: &Tensor, weight: &Tensor, bias: &Tensor, k: Kernels) -> Result<Tensor> {
    normalize_rows(&linear(features, weight, Some(bias), k)?)
}

/// `exp(m[index[i, j]] · v[i] / τ)`: each sample's memory rows scored against its
/// embedding, `B × (K+1)`. The memory carries no gradient.
pub fn scores(
    memory: &Tensor,
    index: &Tensor,
    v: &Tensor,
    temperature: f64,
    k: Kernels,
) -> Result<Tensor> {
    let (b, k1) = index.dims2()?;
    let d = v.dim(1)?;
    let rows = memory
        .detach()
        .index_select(&index.flatten_all()?, 0)?
        .reshape((b, k1, d))?;
    (matmul(&rows, &v.unsqueeze(2)?, k)?.squeeze(2)? / temperature)?.exp()
}

/// The normalising constant fixed at the first batch: `mean(scores) · N`.
pub fn normalizer(scores: &Tensor, n_data: usize) -> Result<f64> {
    Ok(scores.mean_all()?.to_scalar::<f32>()? as f64 * n_data as f64)
}

/// The NCE loss of `scores / z` (column 0 the positives) with `n_data` training samples.
pub fn nce_loss(scores: &Tensor, z: f64, n_data: usize) -> Result<Tensor> {
    let (b, k1) = scores.dims2()?;
    let noise = (k1 - 1) as f64 / n_data as f64; // K·P_n
    let p = (scores / z)?;
    let pos = p.narrow(1, 0, 1)?;
    let neg = p.narrow(1, 1, k1 - 1)?;
    let log_d1 = (pos.log()? - (&pos + (noise + EPS))?.log()?)?;
    let log_d0 = ((&neg + (noise + EPS))?.log()?.neg()? + noise.ln())?;
    ((log_d1.sum_all()? + log_d0.sum_all()?)? / b as f64)?.neg()
}

/// CRD's term `L(P_s) + L(P_t)` of a batch: `v_s` scored against the teacher's memory,
/// `v_t` against the student's, with the constants `z` (`Z_s`, `Z_t`) or, at the run's
/// first batch, those of this batch. The term and the constants used; `k` runs the
/// products.
pub fn term(
    (v_s, v_t): (&Tensor, &Tensor),
    (memory_s, memory_t): (&Tensor, &Tensor),
    index: &Tensor,
    temperature: f64,
    z: Option<(f64, f64)>,
    k: Kernels,
) -> Result<(Tensor, (f64, f64))> {
    let n = memory_s.dim(0)?;
    let out_s = scores(memory_t, index, v_s, temperature, k)?;
    let out_t = scores(memory_s, index, v_t, temperature, k)?;
    let (z_s, z_t) = match z {
        Some(z) => z,
        None => (normalizer(&out_s, n)?, normalizer(&out_t, n)?),
    };
    let l = (nce_loss(&out_s, z_s, n)? + nce_loss(&out_t, z_t, n)?)?;
    Ok((l, (z_s, z_t)))
}

/// The memory after a step: the rows of `samples` become
/// `normalise(momentum·m + (1 - momentum)·v)`; samples are distinct.
pub fn update_memory(
    memory: &Tensor,
    samples: &Tensor,
    v: &Tensor,
    momentum: f64,
) -> Result<Tensor> {
    let old = memory.index_select(samples, 0)?;
    let new = normalize_rows(&((&old * momentum)? + (v.detach() * (1.0 - momentum))?)?)?;
    memory.index_add(samples, &(new - old)?, 0)
}

#[cfg(test)]
mod tests;
