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
use crate::spec::TeacherRef;
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

/// What a run's batches depend on, as text.
fn batch_key(r: &PlannedRun) -> String {
    let s = &r.spec;
    format!(
        "{}|seed {}|batch {}|{}|{}",
        toml::to_string(&s.data).unwrap_or_default(),
        s.seed,
        s.schedule.batch,
        toml::to_string(&s.transform).unwrap_or_default(),
        toml::to_string(&s.augment).unwrap_or_default(),
    )
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
        let i = *index.entry((batch_key(r), l)).or_insert_with(|| {
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
