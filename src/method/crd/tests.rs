//! CRD's parts on a small memory against values computed here in f64 from the formulas.

use super::*;
use candle_core::Device;

const MEMORY: [[f64; 2]; 4] = [[0.6, 0.8], [1.0, 0.0], [0.0, -1.0], [-0.8, 0.6]];
const V: [[f64; 2]; 2] = [[0.8, -0.6], [0.0, 1.0]];
const INDEX: [[u32; 3]; 2] = [[0, 2, 3], [1, 3, 3]];
const TAU: f64 = 0.5;

fn t2(rows: &[[f64; 2]]) -> Tensor {
    let v: Vec<f32> = rows.iter().flatten().map(|&x| x as f32).collect();
    Tensor::from_vec(v, (rows.len(), 2), &Device::Cpu).unwrap()
}

fn index() -> Tensor {
    let v: Vec<u32> = INDEX.iter().flatten().copied().collect();
    Tensor::from_vec(v, (2, 3), &Device::Cpu).unwrap()
}

fn raw() -> Vec<Vec<f64>> {
    (0..2)
        .map(|i| {
            INDEX[i]
                .iter()
                .map(|&j| {
                    let m = MEMORY[j as usize];
                    ((m[0] * V[i][0] + m[1] * V[i][1]) / TAU).exp()
                })
                .collect()
        })
        .collect()
}

fn close(a: f64, b: f64) {
    assert!((a - b).abs() < 1e-5 * b.abs().max(1.0), "{a} vs {b}");
}

#[test]
fn scores_are_the_exponentiated_dot_products_with_the_indexed_rows() {
    let s = scores(&t2(&MEMORY), &index(), &t2(&V), TAU, Kernels::lecal()).unwrap();
    let got = s.to_vec2::<f32>().unwrap();
    for (g, e) in got.iter().zip(raw()) {
        for (a, b) in g.iter().zip(e) {
            close(*a as f64, b);
        }
    }
}

#[test]
fn nce_loss_by_hand() {
    let n = 10;
    let s = raw();
    let z = s.iter().flatten().sum::<f64>() / 6.0 * n as f64;
    let noise = 2.0 / n as f64;
    let mut expect = 0.0;
    for row in &s {
        let p: Vec<f64> = row.iter().map(|x| x / z).collect();
        expect += (p[0] / (p[0] + noise + 1e-7)).ln();
        for q in &p[1..] {
            expect += (noise / (q + noise + 1e-7)).ln();
        }
    }
    expect = -expect / 2.0;
    let st = scores(&t2(&MEMORY), &index(), &t2(&V), TAU, Kernels::lecal()).unwrap();
    let zt = normalizer(&st, n).unwrap();
    close(zt, z);
    let l = nce_loss(&st, zt, n).unwrap().to_scalar::<f32>().unwrap() as f64;
    close(l, expect);
    assert!(l > 0.0);
}

#[test]
fn the_embedding_is_a_unit_vector_of_the_linear_map() {
    let f = t2(&[[1.0, 2.0]]);
    let w = t2(&[[0.5, 0.0], [1.0, -1.0], [0.0, 2.0]]);
    let b = Tensor::from_vec(vec![0.5f32, 0.0, -1.0], 3, &Device::Cpu).unwrap();
    let e = embed(&f, &w, &b, Kernels::lecal())
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    // f·Wᵀ + b = (1, -1, 3), norm √11.
    let n = 11f64.sqrt();
    for (a, b) in e[0].iter().zip([1.0 / n, -1.0 / n, 3.0 / n]) {
        close(*a as f64, b);
    }
}

#[test]
fn the_memory_moves_towards_the_new_embeddings_of_its_samples_only() {
    let samples = Tensor::from_vec(vec![2u32, 0], 2, &Device::Cpu).unwrap();
    let m = update_memory(&t2(&MEMORY), &samples, &t2(&V), 0.5).unwrap();
    let m = m.to_vec2::<f32>().unwrap();
    let row = |old: [f64; 2], v: [f64; 2]| {
        let r = [0.5 * old[0] + 0.5 * v[0], 0.5 * old[1] + 0.5 * v[1]];
        let n = (r[0] * r[0] + r[1] * r[1]).sqrt();
        [r[0] / n, r[1] / n]
    };
    let expect = [
        row(MEMORY[0], V[1]),
        MEMORY[1],
        row(MEMORY[2], V[0]),
        MEMORY[3],
    ];
    for (g, e) in m.iter().zip(expect) {
        close(g[0] as f64, e[0]);
        close(g[1] as f64, e[1]);
    }
}
