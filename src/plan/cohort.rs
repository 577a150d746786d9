//! Cohorts: runs whose training batches are identical, so that each batch can be read and
//! augmented once and each distinct teacher's forward pass run once for all of them.
//!
//! A run's batches depend only on its data (dataset, subset, held-out split), seed, batch
//! size, transform and batch augmentation: the order, crops, flips and mixes are keyed by
//! (seed, epoch, position), never by the model or the method. Runs that agree on those
//! and do not depend on each other (a student waits for its teachers) form a cohort.
//!
//! Epoch counts may differ: a "+" run of 350 epochs shares the batches of its first 240
//! epochs with the 240-epoch runs of its seed (the learning rate is the run's own and
//! does not change its batches), so it stays in their cohort, which trains on alone once
//! they are done. That keeps Table 1's long rows in the cohorts of their seed, where most
//! of their teacher passes are shared.
//!
//! A cohort is an execution choice, not part of a run: it never enters a run id.

use super::{Plan, PlannedRun};
use crate::spec::{ModelName, TeacherRef};
use std::collections::BTreeMap;

/// Runs that see the same batches.
#[derive(Debug, Clone, PartialEq)]
pub struct Cohort {
    /// Member run ids, in plan order.
    pub runs: Vec<String>,
    /// How deep in the teacher graph its members are (0: they need no teacher run).
    pub level: usize,
}

impl Cohort {
    /// The distinct teachers its members use, by identity (run id or checkpoint SHA-256).
    pub fn teachers<'a>(&self, plan: &'a Plan) -> Vec<&'a TeacherRef> {
        let mut out: Vec<&TeacherRef> = self
            .runs
            .iter()
            .filter_map(|id| plan.get(id))
            .flat_map(|r| &r.spec.teachers)
            .collect();
        out.sort_by_key(|t| identity(t));
        out.dedup_by_key(|t| identity(t));
        out
    }
}

/// What makes a teacher the same teacher: its run, or its checkpoint's bytes.
pub fn identity(t: &TeacherRef) -> &str {
    match t {
        TeacherRef::Run { id } => id,
        TeacherRef::Checkpoint { sha256, .. } => sha256,
    }
}

/// The cohorts of a plan, in the order of their first member.
pub fn cohorts(plan: &Plan) -> Vec<Cohort> {
    // The plan is in dependency order, so a run's teachers have their level already.
    let mut level: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &plan.runs {
        let l = r
            .deps
            .iter()
            .filter_map(|d| level.get(d.as_str()))
            .map(|l| l + 1)
            .max()
            .unwrap_or(0);
        level.insert(&r.id, l);
    }
    let mut groups: Vec<Cohort> = Vec::new();
    let mut index: BTreeMap<(String, usize), usize> = BTreeMap::new();
    for r in &plan.runs {
        let l = level[r.id.as_str()];
        let i = *index.entry((r.spec.batch_key(), l)).or_insert_with(|| {
            groups.push(Cohort {
                runs: Vec::new(),
                level: l,
            });
            groups.len() - 1
        });
        groups[i].runs.push(r.id.clone());
    }
    groups
}

/// The parameters of a model with `classes` outputs: for a CIFAR ResNet counted from its
/// layers (`model::resnet`, with a 1×1 projection where the width changes), for the ImageNet
/// ResNets their published counts with a `classes`-way classifier.
pub fn parameters(model: ModelName, classes: usize) -> u64 {
    let Some(depth) = model.cifar_depth() else {
        let (body, features) = match model {
            ModelName::Resnet18 => (11_176_512, 512),
            ModelName::Resnet34 => (21_284_672, 512),
            _ => (23_508_032, 2048),
        };
        return body + (features as u64 + 1) * classes as u64;
    };
    let n = (depth as u64 - 2) / 6;
    let conv = |cin: u64, cout: u64| 9 * cin * cout;
    let bn = |c: u64| 2 * c;
    let mut total = conv(3, 16) + bn(16);
    let mut cin = 16;
    for w in [16, 32, 64] {
        for _ in 0..n {
            total += conv(cin, w) + bn(w) + conv(w, w) + bn(w);
            if cin != w {
                // The projection shortcut: a 1×1 convolution and its batch norm.
                total += cin * w + bn(w);
            }
            cin = w;
        }
    }
    total + (64 + 1) * classes as u64
}

/// Floats one image keeps for the backward pass of a training step: every layer's output
/// (convolution, batch norm, activation) and its gradient, four per output element. A
/// CIFAR ResNet's outputs per image are `(16 + 56n)·r²` at resolution `r`. For torchvision's
/// ResNets the count is calibrated instead to PyTorch's training memory of ResNet-50 at
/// 224×224, about 90 MB an image (some 22 GiB at batch 256), i.e. 5.6 M "outputs" of four
/// floats; ResNet-18 and -34 take 0.4 and 0.6 of it.
fn activations(model: ModelName, resolution: usize) -> u64 {
    let r2 = (resolution * resolution) as u64;
    let outputs = match model.cifar_depth() {
        Some(depth) => (16 + 56 * (depth as u64 - 2) / 6) * r2,
        None => {
            let relative = match model {
                ModelName::Resnet18 => 0.4,
                ModelName::Resnet34 => 0.6,
                _ => 1.0,
            };
            (5.6e6 * relative * r2 as f64 / (224.0 * 224.0)) as u64
        }
    };
    4 * outputs
}

/// The members of `runs` that train as one fused network when fusion is on: each set
/// of two or more with one `RunSpec::fusion_key`, in the order of `runs`.
pub fn fused_groups<'a>(runs: &[&'a PlannedRun]) -> Vec<Vec<&'a PlannedRun>> {
    crate::spec::RunSpec::fused_sets(runs.iter().map(|&r| (&r.spec, r)))
}

/// Fused groups as `3 × resnet20, 2 × resnet56`.
pub fn fused_text(groups: &[Vec<&PlannedRun>]) -> String {
    (groups.iter())
        .map(|g| format!("{} × {}", g.len(), g[0].spec.model.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Bytes of device memory a cohort needs, estimated as: every member's weights, momentum,
/// gradients and evaluation copy (four copies of its parameters); every distinct
/// teacher's weights; the largest training step on a batch (the members step one after
/// another, so only one step's activations are alive; with `fused`, a fused group's step
/// holds all its members' activations, and its network three more copies of their
/// parameters: weights, gradients, momentum); and the batch itself. Estimated in f32,
/// the dtype lecal trains in.
pub fn memory(plan: &Plan, runs: &[String], fused: bool) -> u64 {
    let members: Vec<&PlannedRun> = runs.iter().filter_map(|id| plan.get(id)).collect();
    let Some(first) = members.first() else {
        return 0;
    };
    let classes = first.spec.data.classes;
    let resolution = first.spec.data.resolution;
    // SSKD's batches hold each image's rotated copies.
    let batch = (first.spec.schedule.batch * first.spec.views()) as u64;
    let resident: u64 = members
        .iter()
        .map(|r| 4 * parameters(r.spec.model, classes))
        .sum();
    let cohort = Cohort {
        runs: runs.to_vec(),
        level: 0,
    };
    let teachers: u64 = cohort
        .teachers(plan)
        .into_iter()
        .filter_map(|t| match t {
            TeacherRef::Run { id } => plan.get(id).map(|r| r.spec.model),
            TeacherRef::Checkpoint { model, .. } => Some(*model),
        })
        .map(|m| parameters(m, classes))
        .sum();
    let alone = members
        .iter()
        .map(|r| activations(r.spec.model, resolution))
        .max()
        .unwrap_or(0);
    let groups = match fused {
        true => fused_groups(&members),
        false => Vec::new(),
    };
    let group_step = (groups.iter())
        .map(|g| {
            g.iter()
                .map(|r| activations(r.spec.model, resolution))
                .sum::<u64>()
        })
        .max()
        .unwrap_or(0);
    let fused_copies: u64 = (groups.iter().flatten())
        .map(|r| 3 * parameters(r.spec.model, classes))
        .sum();
    let step = alone.max(group_step) * batch;
    let images = batch * 3 * (resolution * resolution) as u64;
    4 * (resident + fused_copies + teachers + step + images)
}

/// `cohorts` with each one whose `memory` (`fused` or not) exceeds `budget` bytes split,
/// in plan order, into consecutive parts that fit (a run alone is always a part of its
/// own).
pub fn within_budget(plan: &Plan, cohorts: Vec<Cohort>, budget: u64, fused: bool) -> Vec<Cohort> {
    let mut out = Vec::new();
    for c in cohorts {
        let mut part: Vec<String> = Vec::new();
        for id in c.runs {
            part.push(id);
            if part.len() > 1 && memory(plan, &part, fused) > budget {
                let id = part.pop().expect("just pushed");
                out.push(Cohort {
                    runs: std::mem::replace(&mut part, vec![id]),
                    level: c.level,
                });
            }
        }
        out.push(Cohort {
            runs: part,
            level: c.level,
        });
    }
    out
}

#[cfg(test)]
mod fusion_tests {
    use super::*;
    use crate::plan::build;
    use crate::recipe::load;
    use crate::spec::ModelName;

    /// Table 1 on CIFAR-100: each cohort's fused groups hold one architecture, never a
    /// CRD or SSKD run, and a cohort fused needs more memory than one stepped member by
    /// member, within the default budget.
    #[test]
    fn table_1_cohorts_fuse_by_architecture_and_fused_memory_is_counted() {
        let set = load(&[std::path::PathBuf::from("recipes/cifar100/table1")]).unwrap();
        let p = build(&set, &crate::plan::tests::full()).unwrap();
        let mut fused_runs = 0;
        for c in cohorts(&p) {
            let runs: Vec<&PlannedRun> = c.runs.iter().filter_map(|id| p.get(id)).collect();
            let groups = fused_groups(&runs);
            for g in &groups {
                assert!(g.len() > 1);
                assert!(g.iter().all(|r| r.spec.model == g[0].spec.model));
                assert!(g
                    .iter()
                    .all(|r| r.spec.batch_key() == g[0].spec.batch_key()));
                let text = |r: &&PlannedRun| toml::to_string(&r.spec.method).unwrap();
                assert!(g
                    .iter()
                    .map(text)
                    .all(|m| !m.contains("crd") && !m.contains("sskd")));
                fused_runs += g.len();
            }
            let (alone, fused) = (memory(&p, &c.runs, false), memory(&p, &c.runs, true));
            assert_eq!(groups.is_empty(), alone == fused, "{alone} {fused}");
            assert!(alone <= fused && fused < 16 << 30, "{fused}");
        }
        // Most of Table 1's students fuse: every row but CRD and SSKD.
        assert!(
            fused_runs > p.runs.len() / 2,
            "{fused_runs} of {}",
            p.runs.len()
        );
        let first = (p.runs.iter())
            .find(|r| r.spec.model == ModelName::Resnet20 && r.spec.fusion_key().is_some())
            .unwrap();
        let r20: Vec<&PlannedRun> = (p.runs.iter())
            .filter(|r| r.spec.fusion_key() == first.spec.fusion_key())
            .take(2)
            .collect();
        assert_eq!(fused_text(&fused_groups(&r20)), "2 × resnet20");
    }
}
