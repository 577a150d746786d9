//! A CRD student's own state (`method::crd` has the formula): its two embedding heads,
//! trained with the student by the same SGD (variables `crd.embed_s.*` and `crd.embed_t.*`
//! of its variable map, so they are checkpointed and restored as the model is), and the
//! two memories of one embedding per training image with their normalising constants,
//! checkpointed as `crd.memory_s`, `crd.memory_t` and `crd.z`.
//!
//! Negatives are drawn, with replacement, among the training images of other classes (as
//! the CRD code's CIFAR sampler) from `Rng::stream(seed, "crd-negatives", [epoch, batch])`:
//! the same draws alone or in a cohort, and after a resume.

use super::linear_vars;
use crate::method::crd;
use crate::model::Kernels;
use crate::rng::Rng;
use crate::spec::Crd;
use anyhow::{bail, Context};
use candle_core::{Device, Tensor, Var};
use candle_nn::VarMap;
use std::collections::HashMap;

const MEMORY_S: &str = "crd.memory_s";
const MEMORY_T: &str = "crd.memory_t";
const Z: &str = "crd.z";

pub struct CrdState {
    cfg: Crd,
    seed: u64,
    heads: [(Var, Var); 2],
    memory_s: Tensor,
    memory_t: Tensor,
    /// `Z_s` and `Z_t`, fixed at the first batch of the run.
    z: Option<(f64, f64)>,
    /// The training images' indices sorted by class, and each class's first position and
    /// count in that order.
    by_class: Vec<usize>,
    start: Vec<usize>,
    count: Vec<usize>,
    /// The batch's samples and embeddings, for the memory update after the step.
    pending: Option<(Tensor, Tensor, Tensor)>,
}

impl CrdState {
    /// Adds the heads to `varmap` (before its optimiser is made) and fills the memories.
    pub fn new(
        cfg: Crd,
        seed: u64,
        varmap: &VarMap,
        dims: (usize, usize),
        labels: &[u16],
        classes: usize,
        dev: &Device,
    ) -> anyhow::Result<Self> {
        let mut r = Rng::stream(seed, "crd-init", &[]);
        let heads = [
            linear_vars(varmap, "crd.embed_s", (dims.0, cfg.dim), &mut r, dev)?,
            linear_vars(varmap, "crd.embed_t", (dims.1, cfg.dim), &mut r, dev)?,
        ];
        // The CRD code's memory: uniform in ±1/√(dim/3), not normalised.
        let stdv = 1.0 / (cfg.dim as f64 / 3.0).sqrt();
        let n = labels.len();
        let mut memory = || -> anyhow::Result<Tensor> {
            let v: Vec<f32> = (0..n * cfg.dim)
                .map(|_| ((2.0 * r.uniform() - 1.0) * stdv) as f32)
                .collect();
            Ok(Tensor::from_vec(v, (n, cfg.dim), dev)?)
        };
        let (memory_s, memory_t) = (memory()?, memory()?);
        let mut by_class: Vec<usize> = (0..n).collect();
        by_class.sort_by_key(|&i| labels[i]);
        let mut count = vec![0; classes];
        for &l in labels {
            count[l as usize] += 1;
        }
        let start = count
            .iter()
            .scan(0, |s, c| {
                let here = *s;
                *s += c;
                Some(here)
            })
            .collect();
        if count.contains(&n) {
            bail!("CRD draws its negatives from other classes, and the training set has one");
        }
        Ok(Self {
            cfg,
            seed,
            heads,
            memory_s,
            memory_t,
            z: None,
            by_class,
            start,
            count,
            pending: None,
        })
    }

    /// Each sample's positive (itself) and negatives, `B × (K+1)`.
    fn index(
        &self,
        samples: &[usize],
        labels: &[u16],
        epoch: usize,
        batch: usize,
        dev: &Device,
    ) -> anyhow::Result<Tensor> {
        let mut r = Rng::stream(self.seed, "crd-negatives", &[epoch as u64, batch as u64]);
        let k = self.cfg.negatives;
        let n = self.by_class.len();
        let mut idx = Vec::with_capacity(samples.len() * (k + 1));
        for &i in samples {
            let c = labels[i] as usize;
            let (start, count) = (self.start[c], self.count[c]);
            idx.push(i as u32);
            for _ in 0..k {
                let j = r.below((n - count) as u64) as usize;
                let j = if j < start { j } else { j + count };
                idx.push(self.by_class[j] as u32);
            }
        }
        Ok(Tensor::from_vec(idx, (samples.len(), k + 1), dev)?)
    }

    /// β·(L(P_s) + L(P_t)) of a batch: `f_s` the student's features (with gradient),
    /// `f_t` the teacher's, `samples` the batch's training-set indices.
    pub fn loss(
        &mut self,
        f_s: &Tensor,
        f_t: &Tensor,
        samples: &[usize],
        labels: &[u16],
        (epoch, batch): (usize, usize),
        k: Kernels,
    ) -> anyhow::Result<Tensor> {
        let dev = f_s.device();
        let index = self.index(samples, labels, epoch, batch, dev)?;
        let [(ws, bs), (wt, bt)] = &self.heads;
        let v_s = crd::embed(f_s, ws.as_tensor(), bs.as_tensor(), k)?;
        let v_t = crd::embed(&f_t.detach(), wt.as_tensor(), bt.as_tensor(), k)?;
        let memories = (&self.memory_s, &self.memory_t);
        let t = self.cfg.temperature;
        let (l, z) = crd::term((&v_s, &v_t), memories, &index, t, self.z, k)?;
        self.z = Some(z);
        let ids: Vec<u32> = samples.iter().map(|&i| i as u32).collect();
        let ids = Tensor::from_vec(ids, samples.len(), dev)?;
        self.pending = Some((ids, v_s.detach(), v_t.detach()));
        Ok((l * self.cfg.weight)?)
    }

    /// After the step: the batch's memory rows move towards its embeddings.
    pub fn update_memory(&mut self) -> anyhow::Result<()> {
        if let Some((ids, v_s, v_t)) = self.pending.take() {
            let m = self.cfg.momentum;
            self.memory_s = crd::update_memory(&self.memory_s, &ids, &v_s, m)?;
            self.memory_t = crd::update_memory(&self.memory_t, &ids, &v_t, m)?;
        }
        Ok(())
    }

    /// The memories and constants, for the checkpoint.
    pub fn state(&self) -> anyhow::Result<Vec<(String, Tensor)>> {
        let mut out = vec![
            (MEMORY_S.to_string(), self.memory_s.clone()),
            (MEMORY_T.to_string(), self.memory_t.clone()),
        ];
        if let Some((a, b)) = self.z {
            let z = Tensor::from_vec(vec![a, b], 2, &Device::Cpu)?;
            out.push((Z.to_string(), z));
        }
        Ok(out)
    }

    /// Takes the memories and constants out of a checkpoint's tensors.
    pub fn restore(&mut self, tensors: &mut HashMap<String, Tensor>) -> anyhow::Result<()> {
        for (name, memory) in [
            (MEMORY_S, &mut self.memory_s),
            (MEMORY_T, &mut self.memory_t),
        ] {
            let t = tensors
                .remove(name)
                .with_context(|| format!("no `{name}` in the checkpoint"))?;
            if t.dims() != memory.dims() {
                bail!(
                    "`{name}` has shape {:?}, the run's memory {:?}",
                    t.dims(),
                    memory.dims()
                );
            }
            *memory = t.to_device(memory.device())?;
        }
        self.z = match tensors.remove(Z) {
            Some(z) => {
                let z = z.to_vec1::<f64>()?;
                Some((z[0], z[1]))
            }
            None => None,
        };
        Ok(())
    }
}
