//! SSKD's part of `lecal parity`: random logits, features and heads of B = 6 images (24
//! rows), SSKD's loss as training composes it (`method::sskd::loss`) with the preset's
//! settings and with half the wrong rows kept, and the teacher head's loss.

use super::{random, save};
use crate::method::sskd;
use crate::model::Kernels;
use crate::rng::Rng;
use crate::spec::{Method, SSKD_VIEWS};
use anyhow::Context;
use candle_core::{Device, Tensor, Var};
use std::collections::HashMap;

const B: usize = 6;
const CLASSES: usize = 10;
/// The student's and the teacher's feature widths.
const DIMS: (usize, usize) = (12, 16);

const HEAD: [&str; 4] = ["w1", "b1", "w2", "b2"];

fn head(
    prefix: &str,
    d: usize,
    rng: &mut Rng,
    t: &mut HashMap<String, Tensor>,
) -> anyhow::Result<()> {
    for (name, shape) in HEAD.iter().zip([vec![d, d], vec![d], vec![d, d], vec![d]]) {
        t.insert(format!("{prefix}_{name}"), random(&shape, rng, 0.4)?);
    }
    Ok(())
}

fn vars(t: &HashMap<String, Tensor>, names: &[String]) -> anyhow::Result<Vec<Var>> {
    Ok(names
        .iter()
        .map(|n| Var::from_tensor(&t[n]))
        .collect::<candle_core::Result<_>>()?)
}

/// Random logits, features and heads of the student and the teacher, and the labels.
fn inputs() -> anyhow::Result<(HashMap<String, Tensor>, Vec<u16>)> {
    let rows = B * SSKD_VIEWS;
    let mut rng = Rng::new(41);
    let mut t: HashMap<String, Tensor> = HashMap::new();
    t.insert("s_logits".into(), random(&[rows, CLASSES], &mut rng, 2.0)?);
    t.insert("t_logits".into(), random(&[rows, CLASSES], &mut rng, 2.0)?);
    t.insert(
        "f_s".into(),
        random(&[rows, DIMS.0], &mut rng, 1.0)?.relu()?,
    );
    t.insert(
        "f_t".into(),
        random(&[rows, DIMS.1], &mut rng, 1.0)?.relu()?,
    );
    head("s", DIMS.0, &mut rng, &mut t)?;
    head("t", DIMS.1, &mut rng, &mut t)?;
    let labels: Vec<u16> = (0..B).map(|_| rng.below(CLASSES as u64) as u16).collect();
    Ok((t, labels))
}

pub fn dump(dir: &std::path::Path, method: &Method) -> anyhow::Result<()> {
    let paper = method
        .sskd()
        .context("the sskd preset has SSKD's terms")?
        .clone();
    let (t, labels) = inputs()?;
    let k = Kernels::lecal();
    let mixes: Vec<_> = labels.iter().map(|&l| vec![(l, 1.0)]).collect();
    let student: Vec<String> = ["s_logits", "f_s"]
        .iter()
        .map(|s| s.to_string())
        .chain(HEAD.iter().map(|h| format!("s_{h}")))
        .collect();
    let t_head: Vec<String> = HEAD.iter().map(|h| format!("t_{h}")).collect();
    let t_head_tensors: Vec<&Tensor> = t_head.iter().map(|n| &t[n]).collect();
    let p_t = sskd::project(&t["f_t"], [0, 1, 2, 3].map(|i| t_head_tensors[i]), k)?;
    let mut half = paper.clone();
    (half.tf_keep, half.ss_keep) = (0.5, 0.5);
    let mut out = HashMap::new();
    for (case, cfg) in [("paper", &paper), ("half", &half)] {
        let v = vars(&t, &student)?;
        let h = [2, 3, 4, 5].map(|i| v[i].as_tensor());
        let p_s = sskd::project(v[1].as_tensor(), h, k)?;
        let s = (v[0].as_tensor(), &p_s);
        let m = (mixes.as_slice(), labels.as_slice());
        let (loss, _) = sskd::loss(method, cfg, s, (&t["t_logits"], &p_t), m, k)?;
        let grads = loss.backward()?;
        for (name, var) in student.iter().zip(&v) {
            let g = grads.get(var.as_tensor()).context("no gradient")?;
            out.insert(format!("{case}.grad_{name}"), g.clone());
        }
        let (tf, ss) = sskd::selection(cfg, &t["t_logits"], &sskd::similarity(&p_t, k)?, &labels)?;
        for (name, rows) in [("tf_rows", tf), ("ss_rows", ss)] {
            out.insert(
                format!("{case}.{name}"),
                Tensor::new(rows.as_slice(), &Device::Cpu)?,
            );
        }
        let consts = [cfg.tf_keep, cfg.ss_keep].map(|x| x as f32);
        out.insert(format!("{case}.keep"), Tensor::new(&consts, &Device::Cpu)?);
        out.insert(format!("{case}.loss"), loss);
    }
    teacher_head(&t, &t_head, &mut out)?;
    let Method::Teachers {
        hard_weight,
        teacher_weight,
        temperature,
        ..
    } = method
    else {
        anyhow::bail!("the sskd preset has teachers");
    };
    let c = [
        *hard_weight,
        *teacher_weight,
        *temperature,
        paper.tf_weight,
        paper.tf_temperature,
        paper.ss_weight,
        paper.ss_temperature,
    ];
    out.insert(
        "consts".into(),
        Tensor::new(&c.map(|x| x as f32), &Device::Cpu)?,
    );
    let l: Vec<u32> = labels.iter().map(|&l| l as u32).collect();
    out.insert("labels".into(), Tensor::new(l.as_slice(), &Device::Cpu)?);
    out.extend(t);
    save(&out, &dir.join("sskd.safetensors"))
}

/// The teacher head's loss on the teacher's features, and its gradients.
fn teacher_head(
    t: &HashMap<String, Tensor>,
    t_head: &[String],
    out: &mut HashMap<String, Tensor>,
) -> anyhow::Result<()> {
    let v = vars(t, t_head)?;
    let k = Kernels::lecal();
    let p = sskd::project(&t["f_t"], [0, 1, 2, 3].map(|i| v[i].as_tensor()), k)?;
    let head_loss = sskd::head_loss(&p, k)?;
    let grads = head_loss.backward()?;
    for (name, var) in t_head.iter().zip(&v) {
        let g = grads.get(var.as_tensor()).context("no gradient")?;
        out.insert(format!("head.grad_{name}"), g.clone());
    }
    out.insert("head.loss".into(), head_loss);
    Ok(())
}
