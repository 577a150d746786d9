//! SSKD's parts on small batches against values computed here in f64 from the formulas.

use super::*;
use candle_core::{Device, Var};

fn t2(rows: &[Vec<f64>]) -> Tensor {
    let k = rows[0].len();
    let v: Vec<f32> = rows.iter().flatten().map(|&x| x as f32).collect();
    Tensor::from_vec(v, (rows.len(), k), &Device::Cpu).unwrap()
}

fn rows(t: &Tensor) -> Vec<Vec<f64>> {
    t.to_vec2::<f32>()
        .unwrap()
        .into_iter()
        .map(|r| r.into_iter().map(f64::from).collect())
        .collect()
}

fn close(a: f64, b: f64) {
    assert!((a - b).abs() < 1e-5 * b.abs().max(1.0), "{a} vs {b}");
}

fn cos(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let n = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-8);
    dot / (n(a) * n(b))
}

fn log_softmax(row: &[f64]) -> Vec<f64> {
    let m = row.iter().cloned().fold(f64::MIN, f64::max);
    let lse = m + row.iter().map(|x| (x - m).exp()).sum::<f64>().ln();
    row.iter().map(|x| x - lse).collect()
}

/// `T²·KL(σ(t/T) ‖ σ(s/T))` of one row.
fn kl(s: &[f64], t: &[f64], temp: f64) -> f64 {
    let sc: Vec<f64> = s.iter().map(|x| x / temp).collect();
    let tc: Vec<f64> = t.iter().map(|x| x / temp).collect();
    let (ls, lt) = (log_softmax(&sc), log_softmax(&tc));
    temp * temp
        * lt.iter()
            .zip(&ls)
            .map(|(q, p)| q.exp() * (q - p))
            .sum::<f64>()
}

/// Projections of two images and their rotated copies (rows 0 and 4 upright), one of
/// them zero.
fn projections() -> Vec<Vec<f64>> {
    vec![
        vec![1.0, 0.0],
        vec![3.0, 0.5],
        vec![0.0, -1.0],
        vec![1.0, 1.0],
        vec![0.0, 2.0],
        vec![2.0, 0.0],
        vec![0.0, 0.0],
        vec![-1.0, 3.0],
    ]
}

/// `A` of `projections()` from the formula: rotated rows 1,2,3,5,6,7 against 0 and 4.
fn similarity_f64(p: &[Vec<f64>]) -> Vec<Vec<f64>> {
    [1, 2, 3, 5, 6, 7]
        .iter()
        .map(|&r| vec![cos(&p[r], &p[0]), cos(&p[r], &p[4])])
        .collect()
}

#[test]
fn split_takes_row_4i_upright_and_the_next_three_rotated() {
    let t = t2(&(0..8).map(|r| vec![r as f64]).collect::<Vec<_>>());
    let (u, r) = split(&t).unwrap();
    assert_eq!(rows(&u), vec![vec![0.0], vec![4.0]]);
    let rotated: Vec<f64> = rows(&r).into_iter().flatten().collect();
    assert_eq!(rotated, vec![1.0, 2.0, 3.0, 5.0, 6.0, 7.0]);
    assert_eq!(rotated_labels(&[7, 2]), vec![7, 7, 7, 2, 2, 2]);
    assert_eq!(own_columns(2), vec![0, 0, 0, 1, 1, 1]);
}

#[test]
fn similarity_is_the_cosine_of_each_rotated_copy_with_each_upright_image() {
    let p = projections();
    let got = rows(&similarity(&t2(&p), Kernels::lecal()).unwrap());
    let want = similarity_f64(&p);
    assert_eq!(got.len(), 6);
    for (g, w) in got.iter().flatten().zip(want.iter().flatten()) {
        close(*g, *w);
    }
    // A zero projection has similarity 0 (the norm clamped), not NaN.
    assert_eq!(got[4], vec![0.0, 0.0]);
}

#[test]
fn the_head_loss_is_the_cross_entropy_of_each_row_against_its_own_image() {
    let p = projections();
    let a = similarity_f64(&p);
    let want: f64 = a
        .iter()
        .enumerate()
        .map(|(r, row)| -log_softmax(row)[r / 3])
        .sum::<f64>()
        / 6.0;
    let got = head_loss(&t2(&p), Kernels::lecal())
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    close(got as f64, want);
}

#[test]
fn projection_is_two_linear_layers_with_a_relu_between() {
    let f = t2(&[vec![1.0, -2.0]]);
    let w1 = t2(&[vec![1.0, 1.0], vec![2.0, 0.5]]);
    let b1 = Tensor::new(&[0.5f32, 0.0], &Device::Cpu).unwrap();
    let w2 = t2(&[vec![1.0, 2.0], vec![-1.0, 3.0]]);
    let b2 = Tensor::new(&[0.25f32, -0.25], &Device::Cpu).unwrap();
    // hidden = relu([1 - 2 + 0.5, 2 - 1 + 0]) = [0, 1]; out = [2 + 0.25, 3 - 0.25].
    let out = project(&f, [&w1, &b1, &w2, &b2], Kernels::lecal()).unwrap();
    assert_eq!(rows(&out), vec![vec![2.25, 2.75]]);
}

#[test]
fn ranks_count_better_scores_and_earlier_ties() {
    let scores = [0.1, 0.5, 0.5, 0.2, 0.9, 0.3, 0.3, 0.8];
    assert_eq!(ranks(&scores, 4, &[2, 0]), vec![1, 0]);
    assert_eq!(ranks(&scores, 4, &[1, 2]), vec![0, 3]);
    assert_eq!(ranks(&scores, 4, &[0, 1]), vec![3, 2]);
}

#[test]
fn kept_rows_are_the_right_ones_and_the_best_share_of_the_wrong() {
    let r = [0, 2, 1, 0, 3, 1];
    assert_eq!(kept(&r, 0.0), vec![0, 3]);
    // 4 wrong: ⌊4·0.5⌋ = 2 kept, the two ranked 1.
    assert_eq!(kept(&r, 0.5), vec![0, 2, 3, 5]);
    // ⌊4·0.75⌋ = 3: then the one ranked 2.
    assert_eq!(kept(&r, 0.75), vec![0, 1, 2, 3, 5]);
    assert_eq!(kept(&r, 1.0), vec![0, 1, 2, 3, 4, 5]);
    // Ties among the wrong rows: the earlier row first.
    assert_eq!(kept(&[1, 1, 1], 0.34), vec![0]);
}

#[test]
fn the_kl_term_averages_over_the_kept_rows_only() {
    let s = vec![
        vec![1.0, 2.0, 0.5],
        vec![9.0, -9.0, 0.0],
        vec![0.0, 0.3, -1.0],
    ];
    let t = vec![
        vec![2.0, 0.0, 1.0],
        vec![-9.0, 9.0, 0.0],
        vec![1.5, -0.5, 0.2],
    ];
    let got = kl_rows_mean(&t2(&s), &t2(&t), &[0, 2], 2.0).unwrap();
    let want = (kl(&s[0], &t[0], 2.0) + kl(&s[2], &t[2], 2.0)) / 2.0;
    close(got.to_scalar::<f32>().unwrap() as f64, want);
    let none = kl_rows_mean(&t2(&s), &t2(&t), &[], 2.0).unwrap();
    assert_eq!(none.to_scalar::<f32>().unwrap(), 0.0);
}

fn cfg(tf_keep: f64, ss_keep: f64) -> Sskd {
    Sskd {
        tf_weight: 2.7,
        tf_temperature: 4.0,
        tf_keep,
        ss_weight: 10.0,
        ss_temperature: 0.5,
        ss_keep,
        head_epochs: 1,
        head_lr: 0.05,
        head_milestones: vec![],
    }
}

/// Logits of two images of 3 classes and their copies, labels [2, 0]: the teacher ranks
/// the label of rotated rows 1 (row 2) and 4 (row 6) below first.
fn logits() -> (Vec<Vec<f64>>, Vec<Vec<f64>>) {
    let s = (0..8)
        .map(|r| vec![0.1 * r as f64, -0.2 * r as f64, 0.3])
        .collect();
    let t = vec![
        vec![0.0, 0.0, 3.0],
        vec![0.0, 1.0, 2.0],
        vec![2.0, 0.0, 1.0],
        vec![0.0, 0.0, 1.0],
        vec![3.0, 0.0, 0.0],
        vec![1.0, 0.0, 0.0],
        vec![0.0, 1.0, 0.0],
        vec![4.0, 1.0, 0.0],
    ];
    (s, t)
}

#[test]
fn terms_add_the_weighted_kd_of_kept_rotated_rows_and_of_kept_similarity_rows() {
    let (s, t) = logits();
    let p_t = projections();
    let p_s: Vec<Vec<f64>> = p_t.iter().map(|r| vec![r[1] + 0.5, r[0] - 0.25]).collect();
    let (a_s, a_t) = (similarity_f64(&p_s), similarity_f64(&p_t));
    let rot = [1, 2, 3, 5, 6, 7];
    let tf = |kept: &[usize]| {
        kept.iter()
            .map(|&i| kl(&s[rot[i]], &t[rot[i]], 4.0))
            .sum::<f64>()
            / kept.len() as f64
    };
    let ss = |kept: &[usize]| {
        kept.iter().map(|&i| kl(&a_s[i], &a_t[i], 0.5)).sum::<f64>() / kept.len() as f64
    };
    let labels = [2, 0];
    // The teacher's A: copy 3 (2, 0) is nearer image 0 than its own image 1, and copy 4
    // (zero) ties, the earlier column first: both wrong.
    let right_ss = vec![0, 1, 2, 5];
    for (keep, tf_rows, ss_rows) in [
        (1.0, vec![0, 1, 2, 3, 4, 5], (0..6).collect::<Vec<_>>()),
        (0.0, vec![0, 2, 3, 5], right_ss.clone()),
    ] {
        let got = terms(
            &cfg(keep, keep),
            (&t2(&s), &t2(&p_s)),
            (&t2(&t), &t2(&p_t)),
            &labels,
            Kernels::lecal(),
        )
        .unwrap();
        let want = 2.7 * tf(&tf_rows) + 10.0 * ss(&ss_rows);
        close(got.to_scalar::<f32>().unwrap() as f64, want);
    }
}

#[test]
fn only_the_student_gets_a_gradient() {
    let (s, t) = logits();
    let p = projections();
    let (s, ps) = (
        Var::from_tensor(&t2(&s)).unwrap(),
        Var::from_tensor(&t2(&p)).unwrap(),
    );
    let (t, pt) = (
        Var::from_tensor(&t2(&t)).unwrap(),
        Var::from_tensor(&t2(&p)).unwrap(),
    );
    let loss = terms(
        &cfg(1.0, 1.0),
        (s.as_tensor(), &(ps.as_tensor() * 2.0).unwrap()),
        (t.as_tensor(), pt.as_tensor()),
        &[2, 0],
        Kernels::lecal(),
    )
    .unwrap();
    let g = loss.backward().unwrap();
    for v in [&s, &ps] {
        let grad = g.get(v.as_tensor()).expect("a gradient");
        // Finite, though a projection row is zero.
        let all: Vec<f32> = grad.flatten_all().unwrap().to_vec1().unwrap();
        assert!(all.iter().all(|x| x.is_finite()), "{all:?}");
    }
    assert!(g.get(t.as_tensor()).is_none() && g.get(pt.as_tensor()).is_none());
}
