//! Fused groups: a cohort's members of one architecture that train an epoch as one
//! network (`CifarResNet::fused`, horizontal fusion). A group is made from its members'
//! own models and optimisers when their epoch starts, and its weights, batch-norm
//! statistics and momentum go back into theirs when the epoch ends (or when a member
//! leaves it): evaluation, the divergence check, checkpoints and weights files are each
//! member's own, and nothing fused is ever written. Which runs may fuse is
//! `RunSpec::fusion_key`.
//!
//! Each member keeps its method and loss (on its own head's logits, against its own
//! teachers), its learning rate, momentum and weight decay (`FusedSgd`), and its failure:
//! a member whose loss is not finite leaves its step's backward pass, fails, and the
//! others are fused again without it.

use super::super::sgd::{FusedSgd, Hyper};
use super::step::{finite, teachers_of, Batch, Stepped, TeacherOutputs};
use super::Student;
use crate::model::{self, CifarResNet};
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use std::collections::HashMap;

/// Members training as one network.
pub(super) struct Group {
    /// The members by their place in the cohort (`Student::index`), in fused order.
    pub members: Vec<usize>,
    net: CifarResNet,
    varmap: VarMap,
    opt: FusedSgd,
}

/// The sets of `students` that can fuse (`RunSpec::fusion_key`), two or more each, by
/// `Student::index`, in cohort order.
pub(super) fn fusable(students: &[Student]) -> Vec<Vec<usize>> {
    crate::spec::RunSpec::fused_sets(students.iter().map(|s| (s.spec, s.index)))
}

fn find<'a, 'b>(students: &'a [Student<'b>], index: usize) -> Option<&'a Student<'b>> {
    students.iter().find(|s| s.index == index)
}

impl Group {
    /// The group of the students with indices `members`, from their models and
    /// optimisers as they stand.
    pub fn new(
        students: &[Student],
        members: Vec<usize>,
        kernels: model::Kernels,
        dev: &Device,
    ) -> anyhow::Result<Self> {
        let of: Vec<&Student> = members
            .iter()
            .map(|&i| find(students, i).expect("a member of the group"))
            .collect();
        let spec = of[0].spec;
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, dev);
        let (classes, k) = (spec.data.classes, of.len());
        let net = CifarResNet::fused(spec.model, classes, k, kernels, vb)?;
        let own: Vec<&VarMap> = of.iter().map(|s| &s.varmap).collect();
        model::fused::fuse(&varmap, &own)?;
        let hyper = |s: &Student| Hyper {
            momentum: s.spec.schedule.momentum,
            weight_decay: s.spec.schedule.weight_decay,
        };
        let mut opt = FusedSgd::new(
            model::trainable_vars(&varmap),
            of.iter().map(|s| hyper(s)).collect(),
        );
        for (i, s) in of.iter().enumerate() {
            opt.set_member_buffers(i, s.opt.buffers());
        }
        Ok(Self {
            members,
            net,
            varmap,
            opt,
        })
    }

    /// Puts each member's weights, batch-norm statistics and momentum back into its own
    /// model and optimiser (members no longer in `students` are skipped).
    pub fn unfuse(&self, students: &mut [Student]) -> anyhow::Result<()> {
        let k = self.members.len();
        for (i, &index) in self.members.iter().enumerate() {
            let Some(s) = students.iter_mut().find(|s| s.index == index) else {
                continue;
            };
            let weights = model::fused::member_tensors(&self.varmap, i, k)?;
            model::load_into(&s.varmap, &weights)?;
            let mut momentum: HashMap<String, Tensor> =
                self.opt.member_buffers(i).into_iter().collect();
            s.opt.restore(|n| momentum.remove(n))?;
        }
        Ok(())
    }

    /// The group's step on the batch: one forward pass, each member's loss on its own
    /// logits, one backward pass over the members whose loss is finite and one update.
    /// Each member's loss and logits (or its own error), in `members` order; an error of
    /// the whole step is every member's.
    pub fn step(
        &mut self,
        students: &[Student],
        b: &Batch,
        outputs: &TeacherOutputs,
        dev: &Device,
    ) -> anyhow::Result<Vec<Stepped>> {
        let (_, logits) = self.net.member_logits(b.x, true)?;
        let of: Vec<&Student> = (self.members.iter())
            .map(|&i| find(students, i).expect("a member of the group"))
            .collect();
        let mut total: Option<Tensor> = None;
        let mut losses = Vec::with_capacity(of.len());
        for (s, out) in of.iter().zip(&logits) {
            let loss = teachers_of(s, outputs).and_then(|t| {
                let t: Vec<Tensor> = t.into_iter().map(|o| o.1).collect();
                Ok(crate::method::loss(&s.spec.method, out, b.mixes, &t, dev)?)
            });
            let lv = loss.and_then(|l| Ok((finite(&l)?, l)));
            losses.push(match lv {
                Ok((lv, l)) => {
                    total = Some(match total {
                        None => l,
                        Some(t) => (t + l)?,
                    });
                    Ok(lv)
                }
                Err(e) => Err(e),
            });
        }
        if let Some(total) = total {
            let lrs: Vec<f64> = of.iter().map(|s| s.spec.schedule.lr_at(b.at.0)).collect();
            self.opt.step(&total.backward()?, &lrs)?;
        }
        let values = |out: &Tensor| -> anyhow::Result<Vec<f32>> {
            Ok(out.detach().flatten_all()?.to_vec1()?)
        };
        Ok((losses.into_iter().zip(&logits))
            .map(|(lv, out)| lv.and_then(|lv| Ok((lv, values(out)?))))
            .collect())
    }
}
