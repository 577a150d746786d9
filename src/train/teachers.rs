//! A cohort's distinct teachers, each loaded once, and their forward pass on a batch.

use super::cohort::{Member, Student};
use super::{CandleTrainer, TeacherSource};
use crate::model;
use anyhow::Context;
use candle_core::Tensor;

/// A teacher's features and logits on a batch, or why it has none.
pub(super) type TeacherOutput = Result<(Tensor, Tensor), String>;

/// The cohort's distinct teachers (by weights file), each loaded once.
pub(super) struct Teachers {
    pub sources: Vec<TeacherSource>,
    pub nets: Vec<Result<model::ResNet, String>>,
}

impl Teachers {
    pub fn load(t: &CandleTrainer, members: &[Member], classes: usize) -> Self {
        let mut sources: Vec<TeacherSource> = Vec::new();
        for s in members.iter().flat_map(|m| m.teachers) {
            if !sources.contains(s) {
                sources.push(s.clone());
            }
        }
        let nets = sources
            .iter()
            .map(|s| {
                model::checkpoint::load_teacher(&s.path, s.model, classes, t.kernels, &t.device)
                    .with_context(|| format!("loading teacher {}", s.path.display()))
                    .map_err(|e| format!("{e:#}"))
            })
            .collect();
        Self { sources, nets }
    }

    pub fn index_of(&self, s: &TeacherSource) -> usize {
        self.sources
            .iter()
            .position(|x| x == s)
            .expect("every member's teacher is loaded")
    }

    /// The pooled features and logits of the teachers that `students` use on `x` (eval
    /// mode, no graph).
    pub fn outputs(&self, students: &[Student], x: &Tensor) -> Vec<Option<TeacherOutput>> {
        (0..self.sources.len())
            .map(|i| {
                let used = students.iter().any(|s| s.teachers.contains(&i));
                used.then(|| match &self.nets[i] {
                    Ok(net) => net.features_t(x, false).map_err(|e| format!("{e:#}")),
                    Err(why) => Err(why.clone()),
                })
            })
            .collect()
    }
}
