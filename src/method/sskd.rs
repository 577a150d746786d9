//! SSKD's terms (Xu et al., ECCV 2020, "Knowledge Distillation Meets Self-Supervision",
//! Sec. 3.2-3.4 and eq. 1-7), as the formulas are written there and in `METHODS.md`;
//! `train::sskd` trains the teacher's head and makes the rotated batches.
//!
//! A batch holds `SSKD_VIEWS = 4` copies of each of its B images, sample by sample: row
//! `4i` the upright image `i`, rows `4i+1..4i+3` its copies at 90°, 180° and 270°. The
//! "upright" rows are `N` (B of them), the rotated ones `R` (3B, in that order).
//!
//! - Projection: `h(f) = W₂·relu(W₁·f + b₁) + b₂` on the pooled features, `d → d`.
//! - Similarity: `A[r, j] = cos(h(f_R[r]), h(f_N[j]))`, a `3B × B` matrix; the copy `r`
//!   of image `i = r / 3` belongs with column `i`.
//! - The teacher's head is trained first, the teacher frozen: `CE(A_t, r ↦ r / 3)`.
//! - Selection: a row is kept when the teacher ranks its right answer first (the label
//!   among the classes for a rotated copy's logits, column `r / 3` among the B columns of
//!   `A_t`); of the other rows the `keep` share with the best such rank is kept as well,
//!   `⌊wrong · keep⌋` of them, ties in row order.
//! - `tf = T²·KL(σ(z_t[R]/T) ‖ σ(z_s[R]/T))` over the kept rotated rows (batch mean);
//!   `ss = T²·KL(σ(A_t/T) ‖ σ(A_s/T))` over the kept rows of `A` (batch mean).
//!
//! SSKD's loss is the method's own terms on the upright rows (hard label and KD) plus
//! `tf_weight·tf + ss_weight·ss`.

use crate::model::kernels::matmul::{linear, matmul};
use crate::model::Kernels;
use crate::spec::{Sskd, SSKD_VIEWS};
use candle_core::{Result, Tensor, D};

/// The ε below which a norm is clamped in the cosine (PyTorch's `cosine_similarity`).
const COS_EPS: f64 = 1e-8;

/// The upright rows (B) and the rotated rows (3B, image by image) of a `4B × k` tensor.
pub fn split(t: &Tensor) -> Result<(Tensor, Tensor)> {
    let (rows, k) = t.dims2()?;
    let b = rows / SSKD_VIEWS;
    let t = t.reshape((b, SSKD_VIEWS, k))?;
    let upright = t.narrow(1, 0, 1)?.reshape((b, k))?;
    let rotated = t
        .narrow(1, 1, SSKD_VIEWS - 1)?
        .reshape((b * (SSKD_VIEWS - 1), k))?;
    Ok((upright, rotated))
}

/// The projection head `W₂·relu(W₁·f + b₁) + b₂` (weights `out × in`, as `Linear`).
pub fn project(f: &Tensor, head: [&Tensor; 4], k: Kernels) -> Result<Tensor> {
    let [w1, b1, w2, b2] = head;
    let hidden = linear(f, w1, Some(b1), k)?.relu()?;
    linear(&hidden, w2, Some(b2), k)
}

/// `x / max(‖x‖₂, ε)`, row by row.
fn unit_rows(x: &Tensor) -> Result<Tensor> {
    // Clamped before the root, so that a zero row has a finite gradient (the root's
    // derivative at 0 is not).
    let norm = x
        .sqr()?
        .sum_keepdim(D::Minus1)?
        .maximum(COS_EPS * COS_EPS)?
        .sqrt()?;
    x.broadcast_div(&norm)
}

/// `A[r, j] = cos(p_R[r], p_N[j])` of the projections `p` of a `4B`-row batch: `3B × B`.
pub fn similarity(p: &Tensor, k: Kernels) -> Result<Tensor> {
    let (upright, rotated) = split(p)?;
    matmul(&unit_rows(&rotated)?, &unit_rows(&upright)?.t()?, k)
}

/// The column each row of `A` belongs with: `r / 3`.
pub fn own_columns(b: usize) -> Vec<usize> {
    (0..b * (SSKD_VIEWS - 1))
        .map(|r| r / (SSKD_VIEWS - 1))
        .collect()
}

/// Each rotated copy's label: its image's, three times.
pub fn rotated_labels(labels: &[u16]) -> Vec<usize> {
    labels
        .iter()
        .flat_map(|&l| [l as usize; SSKD_VIEWS - 1])
        .collect()
}

/// The teacher head's loss: `CE(A, r ↦ r / 3)`, averaged over the 3B rows.
pub fn head_loss(p: &Tensor, k: Kernels) -> Result<Tensor> {
    let a = similarity(p, k)?;
    let b = a.dim(1)?;
    let target: Vec<u32> = own_columns(b).iter().map(|&c| c as u32).collect();
    let target = Tensor::from_vec(target, a.dim(0)?, a.device())?;
    candle_nn::loss::cross_entropy(&a, &target)
}

/// Where each row's right answer stands in it, best first (0: ranked first); among equal
/// scores, the earlier column first.
pub fn ranks(scores: &[f32], cols: usize, right: &[usize]) -> Vec<usize> {
    scores
        .chunks(cols)
        .zip(right)
        .map(|(row, &c)| {
            let v = row[c];
            row.iter()
                .enumerate()
                .filter(|&(j, &x)| x > v || (x == v && j < c))
                .count()
        })
        .collect()
}

/// The rows kept: every row ranked right, and `⌊wrong · keep⌋` of the others, those
/// ranked best first (ties in row order); in row order.
pub fn kept(ranks: &[usize], keep: f64) -> Vec<u32> {
    let mut order: Vec<usize> = (0..ranks.len()).collect();
    order.sort_by_key(|&r| (ranks[r], r));
    let wrong = ranks.iter().filter(|&&r| r > 0).count();
    let n = ranks.len() - wrong + (wrong as f64 * keep).floor() as usize;
    let mut rows: Vec<u32> = order[..n].iter().map(|&r| r as u32).collect();
    rows.sort_unstable();
    rows
}

/// `T²·KL(σ(t/T) ‖ σ(s/T))` summed over the rows `rows` and divided by their number (0
/// when none is kept); the teacher's side carries no gradient.
pub fn kl_rows_mean(s: &Tensor, t: &Tensor, rows: &[u32], temp: f64) -> Result<Tensor> {
    if rows.is_empty() {
        return Tensor::zeros((), s.dtype(), s.device());
    }
    let idx = Tensor::from_slice(rows, rows.len(), s.device())?;
    let s = (s.index_select(&idx, 0)? / temp)?;
    let t = (t.detach().index_select(&idx, 0)? / temp)?;
    let logp_s = candle_nn::ops::log_softmax(&s, D::Minus1)?;
    let logp_t = candle_nn::ops::log_softmax(&t, D::Minus1)?;
    let kl = (logp_t.exp()? * (logp_t - logp_s)?)?.sum_all()?;
    kl * (temp * temp / rows.len() as f64)
}

/// The rows each term keeps, from the teacher's outputs: `(tf rows, ss rows)`.
pub fn selection(
    cfg: &Sskd,
    t_logits: &Tensor,
    t_sim: &Tensor,
    labels: &[u16],
) -> Result<(Vec<u32>, Vec<u32>)> {
    let (_, t_rot) = split(t_logits)?;
    let classes = t_rot.dim(1)?;
    let scores = t_rot.flatten_all()?.to_vec1::<f32>()?;
    let tf = kept(
        &ranks(&scores, classes, &rotated_labels(labels)),
        cfg.tf_keep,
    );
    let b = labels.len();
    let sim = t_sim.flatten_all()?.to_vec1::<f32>()?;
    let ss = kept(&ranks(&sim, b, &own_columns(b)), cfg.ss_keep);
    Ok((tf, ss))
}

/// SSKD's two terms of a batch, weighted: `tf_weight·tf + ss_weight·ss`. `s_logits`,
/// `s_proj` the student's logits and projections of the `4B` rows (with gradient),
/// `t_logits`, `t_proj` the teacher's; `labels` the B images' labels.
pub fn terms(
    cfg: &Sskd,
    (s_logits, s_proj): (&Tensor, &Tensor),
    (t_logits, t_proj): (&Tensor, &Tensor),
    labels: &[u16],
    k: Kernels,
) -> Result<Tensor> {
    let t_sim = similarity(&t_proj.detach(), k)?;
    let (tf_rows, ss_rows) = selection(cfg, t_logits, &t_sim, labels)?;
    let (_, s_rot) = split(s_logits)?;
    let (_, t_rot) = split(t_logits)?;
    let tf = kl_rows_mean(&s_rot, &t_rot, &tf_rows, cfg.tf_temperature)?;
    let ss = kl_rows_mean(
        &similarity(s_proj, k)?,
        &t_sim,
        &ss_rows,
        cfg.ss_temperature,
    )?;
    (tf * cfg.tf_weight)? + (ss * cfg.ss_weight)?
}

/// The upright rows of a `4B`-row tensor, as the method's own terms take them.
pub fn upright(t: &Tensor) -> Result<Tensor> {
    split(t).map(|(u, _)| u)
}

/// SSKD's loss of a batch and its upright logits: `method`'s own terms (`method::loss`:
/// hard label and KD) on the upright rows, plus `terms`. `s_logits`, `s_proj` the
/// student's logits and projections of the `4B` rows, `t_logits`, `t_proj` the
/// teacher's; `mixes` and `labels` the B images'.
pub fn loss(
    method: &crate::spec::Method,
    cfg: &Sskd,
    (s_logits, s_proj): (&Tensor, &Tensor),
    (t_logits, t_proj): (&Tensor, &Tensor),
    (mixes, labels): (&[crate::data::mix::LabelMix], &[u16]),
    k: Kernels,
) -> Result<(Tensor, Tensor)> {
    let upright_s = upright(s_logits)?;
    let teacher = [upright(t_logits)?];
    let own = super::loss(method, &upright_s, mixes, &teacher, s_logits.device())?;
    let extra = terms(cfg, (s_logits, s_proj), (t_logits, t_proj), labels, k)?;
    Ok(((own + extra)?, upright_s))
}

#[cfg(test)]
mod tests;
