//! Each loss on small fixed logits against values computed here in f64 from the formulas
//! of `methods.md`, not by the code under test.

use super::*;

const Z_S: [[f64; 3]; 2] = [[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]];
const Z_T1: [[f64; 3]; 2] = [[1.0, 2.0, 0.0], [0.5, -0.5, 2.5]];
const Z_T2: [[f64; 3]; 2] = [[3.0, 0.0, 0.0], [0.0, 1.0, 1.0]];
const LABELS: [u16; 2] = [0, 2];

fn softmax(z: &[f64], t: f64) -> Vec<f64> {
    let m = z.iter().cloned().fold(f64::MIN, f64::max);
    let e: Vec<f64> = z.iter().map(|v| ((v - m) / t).exp()).collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|v| v / s).collect()
}

fn ce(q: &[f64], p: &[f64]) -> f64 {
    -q.iter().zip(p).map(|(a, b)| a * b.ln()).sum::<f64>()
}

fn kl(q: &[f64], p: &[f64]) -> f64 {
    q.iter().zip(p).map(|(a, b)| a * (a / b).ln()).sum()
}

fn tensor(z: &[[f64; 3]; 2]) -> Tensor {
    let v: Vec<f32> = z.iter().flatten().map(|&x| x as f32).collect();
    Tensor::from_vec(v, (2, 3), &Device::Cpu).unwrap()
}

fn plain() -> Vec<LabelMix> {
    LABELS.iter().map(|&l| vec![(l, 1.0)]).collect()
}

fn run(m: &Method, teachers: &[&[[f64; 3]; 2]]) -> f64 {
    let ts: Vec<Tensor> = teachers.iter().map(|z| tensor(z)).collect();
    let l = loss(m, &tensor(&Z_S), &plain(), &ts, &Device::Cpu).unwrap();
    l.to_scalar::<f32>().unwrap() as f64
}

fn onehot(l: u16) -> Vec<f64> {
    (0..3)
        .map(|k| if k == l as usize { 1.0 } else { 0.0 })
        .collect()
}

fn teachers(
    combine: Combine,
    t: f64,
    hard: f64,
    tw: f64,
    kl_r: KlReduction,
    r: TeacherReduction,
) -> Method {
    Method::Teachers {
        combine,
        temperature: t,
        hard_weight: hard,
        teacher_weight: tw,
        kl_reduction: kl_r,
        teacher_reduction: r,
        epsilon: 0.0,
        sample_weight: SampleWeight::None,
        crd: None,
        sskd: None,
    }
}

/// `T²·CE(p̄, σ(z_s/T))` over the batch, `p̄` the mean of the two teachers' `σ(z_t/T)`.
fn mean_softmax_term(t: f64) -> f64 {
    let mut total = 0.0;
    for i in 0..2 {
        let (a, b) = (softmax(&Z_T1[i], t), softmax(&Z_T2[i], t));
        let mean: Vec<f64> = a.iter().zip(&b).map(|(x, y)| (x + y) / 2.0).collect();
        total += t * t * ce(&mean, &softmax(&Z_S[i], t)) / 2.0;
    }
    total
}

fn close(a: f64, b: f64) {
    assert!((a - b).abs() < 1e-5 * b.abs().max(1.0), "{a} vs {b}");
}

#[test]
fn vanilla_and_smoothing() {
    let hard: f64 = (0..2)
        .map(|i| ce(&onehot(LABELS[i]), &softmax(&Z_S[i], 1.0)))
        .sum::<f64>()
        / 2.0;
    close(run(&Method::Hard, &[]), hard);
    let q = |l: u16| -> Vec<f64> { onehot(l).iter().map(|v| 0.1 / 3.0 + 0.9 * v).collect() };
    let ls: f64 = (0..2)
        .map(|i| ce(&q(LABELS[i]), &softmax(&Z_S[i], 1.0)))
        .sum::<f64>()
        / 2.0;
    close(run(&Method::Smoothed { epsilon: 0.1 }, &[]), ls);
}

#[test]
fn sl_is_cross_entropy_to_the_teacher_softmax() {
    let m = teachers(
        Combine::MeanSoftmax,
        1.0,
        0.0,
        1.0,
        KlReduction::BatchMean,
        TeacherReduction::Mean,
    );
    let sl: f64 = (0..2)
        .map(|i| ce(&softmax(&Z_T1[i], 1.0), &softmax(&Z_S[i], 1.0)))
        .sum::<f64>()
        / 2.0;
    close(run(&m, &[&Z_T1]), sl);
}

#[test]
fn en_sl_is_sl_to_the_mean_of_the_teachers_softmax() {
    let m = teachers(
        Combine::MeanSoftmax,
        1.0,
        0.0,
        1.0,
        KlReduction::BatchMean,
        TeacherReduction::Mean,
    );
    let expect = mean_softmax_term(1.0);
    close(run(&m, &[&Z_T1, &Z_T2]), expect);
    // CE is linear in the target: EN-SL equals the mean of the two SL losses.
    close(expect, (run(&m, &[&Z_T1]) + run(&m, &[&Z_T2])) / 2.0);
}

#[test]
fn kd_element_mean_is_k_times_weaker_than_batch_mean() {
    let t = 3.0;
    let kl_batchmean: f64 = (0..2)
        .map(|i| kl(&softmax(&Z_T1[i], t), &softmax(&Z_S[i], t)))
        .sum::<f64>()
        / 2.0;
    let hard: f64 = (0..2)
        .map(|i| ce(&onehot(LABELS[i]), &softmax(&Z_S[i], 1.0)))
        .sum::<f64>()
        / 2.0;
    let paper = teachers(
        Combine::PerTeacherKl,
        t,
        1.0,
        0.1,
        KlReduction::ElementMean,
        TeacherReduction::Mean,
    );
    close(
        run(&paper, &[&Z_T1]),
        hard + 0.1 * t * t * kl_batchmean / 3.0,
    );
    let usual = teachers(
        Combine::PerTeacherKl,
        t,
        1.0,
        0.1,
        KlReduction::BatchMean,
        TeacherReduction::Mean,
    );
    close(run(&usual, &[&Z_T1]), hard + 0.1 * t * t * kl_batchmean);
    // The teacher terms alone differ by exactly K = 3.
    let only = |r| {
        teachers(
            Combine::PerTeacherKl,
            t,
            0.0,
            1.0,
            r,
            TeacherReduction::Mean,
        )
    };
    close(
        run(&only(KlReduction::BatchMean), &[&Z_T1]),
        3.0 * run(&only(KlReduction::ElementMean), &[&Z_T1]),
    );
}

#[test]
fn kd_sl_averages_or_sums_per_teacher_kl() {
    let t = 3.0;
    let per = |z: &[[f64; 3]; 2]| -> f64 {
        (0..2)
            .map(|i| t * t * kl(&softmax(&z[i], t), &softmax(&Z_S[i], t)))
            .sum::<f64>()
            / 2.0
    };
    let mean = teachers(
        Combine::PerTeacherKl,
        t,
        0.0,
        1.0,
        KlReduction::BatchMean,
        TeacherReduction::Mean,
    );
    close(run(&mean, &[&Z_T1, &Z_T2]), (per(&Z_T1) + per(&Z_T2)) / 2.0);
    let sum = teachers(
        Combine::PerTeacherKl,
        t,
        0.0,
        1.0,
        KlReduction::BatchMean,
        TeacherReduction::Sum,
    );
    close(run(&sum, &[&Z_T1, &Z_T2]), per(&Z_T1) + per(&Z_T2));
}

#[test]
fn a_method_outside_the_paper_composes_the_same_parts() {
    // EN-SL at T = 2 with a 0.5 hard-label weight.
    let m = teachers(
        Combine::MeanSoftmax,
        2.0,
        0.5,
        1.0,
        KlReduction::BatchMean,
        TeacherReduction::Mean,
    );
    let mut expect = mean_softmax_term(2.0);
    for i in 0..2 {
        expect += 0.5 * ce(&onehot(LABELS[i]), &softmax(&Z_S[i], 1.0)) / 2.0;
    }
    close(run(&m, &[&Z_T1, &Z_T2]), expect);
}

#[test]
fn epsilon_smooths_the_hard_label_term_of_a_teacher_method() {
    // LS + KD: KD whose hard-label term is label smoothing with ε = 0.2 (ε/K form).
    let kd = |epsilon| Method::Teachers {
        combine: Combine::PerTeacherKl,
        temperature: 3.0,
        hard_weight: 1.0,
        teacher_weight: 0.1,
        kl_reduction: KlReduction::ElementMean,
        teacher_reduction: TeacherReduction::Mean,
        epsilon,
        sample_weight: SampleWeight::None,
        crd: None,
        sskd: None,
    };
    let (mut hard, mut ls) = (0.0, 0.0);
    for i in 0..2 {
        let q: Vec<f64> = onehot(LABELS[i])
            .iter()
            .map(|o| 0.2 / 3.0 + 0.8 * o)
            .collect();
        hard += ce(&onehot(LABELS[i]), &softmax(&Z_S[i], 1.0)) / 2.0;
        ls += ce(&q, &softmax(&Z_S[i], 1.0)) / 2.0;
    }
    close(run(&kd(0.2), &[&Z_T1]) - run(&kd(0.0), &[&Z_T1]), ls - hard);
    assert!((ls - hard).abs() > 1e-3, "the test must tell the two apart");
}

#[test]
fn mixed_labels_train_on_their_weighted_cross_entropy() {
    let mixes: Vec<LabelMix> = vec![vec![(0, 0.7), (1, 0.3)], vec![(2, 0.25), (0, 0.75)]];
    let l = loss(&Method::Hard, &tensor(&Z_S), &mixes, &[], &Device::Cpu).unwrap();
    let mut expect = 0.0;
    for (i, m) in mixes.iter().enumerate() {
        for &(y, w) in m {
            expect += w * ce(&onehot(y), &softmax(&Z_S[i], 1.0)) / 2.0;
        }
    }
    close(l.to_scalar::<f32>().unwrap() as f64, expect);
}

#[test]
fn smoothed_targets_sum_to_one() {
    let t = label_targets(&[2, 0], 4, 0.1);
    assert!((t[..4].iter().sum::<f32>() - 1.0).abs() < 1e-6);
    assert!((t[2] - 0.925).abs() < 1e-6 && (t[0] - 0.025).abs() < 1e-6);
}

/// WSL: `CE(y) + α·T²·Σ_i w_i·KL_i / B`, `w_i = 1 - exp(-CE_s,i / CE_t,i)` at T = 1.
fn wsl(t: f64, alpha: f64) -> Method {
    Method::Teachers {
        combine: Combine::PerTeacherKl,
        temperature: t,
        hard_weight: 1.0,
        teacher_weight: alpha,
        kl_reduction: KlReduction::BatchMean,
        teacher_reduction: TeacherReduction::Mean,
        epsilon: 0.0,
        sample_weight: SampleWeight::Wsl,
        crd: None,
        sskd: None,
    }
}

#[test]
fn wsl_weighs_each_sample_by_the_students_loss_against_the_teachers() {
    let (t, alpha) = (4.0, 2.25);
    let mut expect = 0.0;
    let mut weights = Vec::new();
    for i in 0..2 {
        let y = onehot(LABELS[i]);
        let ce_s = ce(&y, &softmax(&Z_S[i], 1.0));
        let ce_t = ce(&y, &softmax(&Z_T1[i], 1.0));
        let w = 1.0 - (-ce_s / (ce_t + 1e-7)).exp();
        weights.push(w);
        let kl_i = kl(&softmax(&Z_T1[i], t), &softmax(&Z_S[i], t));
        expect += ce_s / 2.0 + alpha * t * t * w * kl_i / 2.0;
    }
    // Sample 0: the teacher gets the label wrong (CE_t ≈ 1.4 against CE_s ≈ 0.24), so it
    // is distilled much less than sample 1, where both are right and the ratio nears 1.
    assert!(weights[0] < 0.2 && weights[1] > 0.4, "{weights:?}");
    close(run(&wsl(t, alpha), &[&Z_T1]), expect);
}

#[test]
fn wsl_weights_carry_no_gradient() {
    // d/dz of the loss must be that of CE + α T² w·KL with w held constant.
    let (t, alpha) = (4.0, 2.25);
    let z = candle_core::Var::from_tensor(&tensor(&Z_S)).unwrap();
    let teacher = [tensor(&Z_T1)];
    let l = loss(
        &wsl(t, alpha),
        z.as_tensor(),
        &plain(),
        &teacher,
        &Device::Cpu,
    )
    .unwrap();
    let grad = l
        .backward()
        .unwrap()
        .get(z.as_tensor())
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    for i in 0..2 {
        let y = onehot(LABELS[i]);
        let (ps, pt) = (softmax(&Z_S[i], 1.0), softmax(&Z_T1[i], 1.0));
        let w = 1.0 - (-ce(&y, &ps) / (ce(&y, &pt) + 1e-7)).exp();
        let (ps_t, pt_t) = (softmax(&Z_S[i], t), softmax(&Z_T1[i], t));
        for k in 0..3 {
            // ∂CE/∂z = p - y; ∂(T² KL(p_t^T ‖ p_s^T))/∂z = T (p_s^T - p_t^T).
            let g = (ps[k] - y[k]) / 2.0 + alpha * w * t * (ps_t[k] - pt_t[k]) / 2.0;
            close(grad[i][k] as f64, g);
        }
    }
}
