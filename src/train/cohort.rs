//! Training a cohort: runs that see identical batches (`RunSpec::batch_key`), trained
//! together in one process on one device. Each batch is read, cropped, flipped and mixed
//! once; each distinct teacher's forward pass runs once on it; then every member takes its
//! own step. A run alone is a cohort of one: both go through this loop, and a member's
//! numbers are exactly those of training it alone.
//!
//! - Members may stand at different epochs (one resumed further than another): epoch `e`
//!   trains the members whose next epoch is `e`, so one that is behind catches up alone
//!   while the others wait, and from then on they train together.
//! - Members may end at different epochs (a 350-epoch "+" run with 240-epoch runs): a
//!   member is finished, and its results written, as soon as its last epoch ends; the
//!   others go on.
//! - A member's own error (a non-finite loss, a divergence, a teacher that does not load)
//!   ends that member alone. A stop signal ends every member; a results folder that cannot
//!   be written ends the member that wrote and stops the others (`CohortStopped`).
//! - With fusion on (`CandleTrainer::fusion`), the members of an epoch that share a
//!   `RunSpec::fusion_key` train it as one fused network (`fusion`), each keeping its
//!   own loss, schedule, evaluation, checkpoints and failure.

mod epoch;
mod fusion;
mod step;

use super::crd::CrdState;
use super::sskd::{HeadCache, SskdState};
use super::teachers::Teachers;
use super::{evaluate, restore, sgd, CandleTrainer, Outcome, RunSink, TeacherSource};
use crate::data::Splits;
use crate::interrupt::Interrupted;
use crate::metrics::Evaluation;
use crate::model;
use crate::spec::{Method, RunSpec};
use crate::store::{EpochRecord, WriteError};
use anyhow::{bail, Context};

/// One run of a cohort, as the trainer gets it.
pub struct Member<'a> {
    pub spec: &'a RunSpec,
    pub teachers: &'a [TeacherSource],
    pub sink: &'a mut dyn RunSink,
}

/// The error of the members a cohort stops because another member could not write its
/// results: not their failure; they keep their checkpoints and resume later.
#[derive(Debug, thiserror::Error)]
#[error("stopped with its cohort: {0}")]
pub struct CohortStopped(pub String);

/// A member in training.
pub(super) struct Student<'a> {
    /// Its place in the cohort (and in the results).
    index: usize,
    spec: &'a RunSpec,
    sink: &'a mut dyn RunSink,
    net: model::ResNet,
    varmap: candle_nn::VarMap,
    opt: sgd::Sgd,
    /// CRD's heads and memories, when its method has CRD's term.
    crd: Option<CrdState>,
    /// SSKD's heads, when its method has SSKD's terms.
    sskd: Option<SskdState>,
    /// Its teachers, as indices into the cohort's distinct teachers, in its own order.
    pub(super) teachers: Vec<usize>,
    epochs: Vec<EpochRecord>,
    /// The evaluations of its last epoch trained here.
    last: Option<(Evaluation, Option<Evaluation>)>,
    /// The training loss and accuracy of the epoch in progress.
    loss_sum: f64,
    correct: usize,
    seen: usize,
}

impl Student<'_> {
    fn next_epoch(&self) -> usize {
        self.epochs.len() + 1
    }
}

/// Why a cohort stops before its members' last epochs.
enum Stop {
    Signal(i32),
    /// Member `index` could not write its results.
    Write {
        index: usize,
        error: anyhow::Error,
    },
}

/// Each member's result, filled in as members end.
struct Ends(Vec<Option<anyhow::Result<Outcome>>>);

impl Ends {
    fn fail(&mut self, index: usize, sink: &mut dyn RunSink, e: anyhow::Error) {
        sink.failed(&e);
        self.0[index] = Some(Err(e));
    }

    fn into_results(self) -> Vec<anyhow::Result<Outcome>> {
        self.0
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(anyhow::anyhow!("the cohort ended without it"))))
            .collect()
    }
}

impl CandleTrainer {
    /// Trains `members` together to their last epochs: one result per member, in order.
    pub(super) fn cohort(&self, mut members: Vec<Member>) -> Vec<anyhow::Result<Outcome>> {
        let mut ends = Ends((0..members.len()).map(|_| None).collect());
        let Some(first) = members.first().map(|m| m.spec) else {
            return Vec::new();
        };
        let splits = match members
            .iter()
            .find(|m| m.spec.batch_key() != first.batch_key())
        {
            Some(m) => Err(anyhow::anyhow!(
                "run {} does not see the same batches as run {}: they cannot train as a \
                 cohort",
                m.spec.id(),
                first.id()
            )),
            None => self.data(first),
        };
        let splits = match splits {
            Ok(s) => s,
            Err(e) => {
                let why = format!("{e:#}");
                for (i, m) in members.iter_mut().enumerate() {
                    ends.fail(i, m.sink, anyhow::anyhow!("{why}"));
                }
                return ends.into_results();
            }
        };
        let teachers = Teachers::load(self, &members, splits.train.classes);
        let mut students = Vec::new();
        let mut heads = HeadCache::new();
        for (index, m) in members.into_iter().enumerate() {
            let Member {
                spec,
                teachers: ts,
                sink,
            } = m;
            match self.student(spec, ts, &mut *sink, (&teachers, &mut heads), &splits) {
                Ok((net, varmap, opt, (crd, sskd), epochs)) => students.push(Student {
                    index,
                    spec,
                    sink,
                    net,
                    varmap,
                    opt,
                    crd,
                    sskd,
                    teachers: ts.iter().map(|t| teachers.index_of(t)).collect(),
                    epochs,
                    last: None,
                    loss_sum: 0.0,
                    correct: 0,
                    seen: 0,
                }),
                Err(e) => ends.fail(index, sink, e),
            }
        }
        // Members resumed after their last epoch's checkpoint finish at once.
        let mut stop = self.finish_done(&mut students, &splits, &mut ends).err();
        while stop.is_none() {
            let Some(epoch) = students.iter().map(Student::next_epoch).min() else {
                break;
            };
            let (mut now, later): (Vec<_>, Vec<_>) =
                students.into_iter().partition(|s| s.next_epoch() == epoch);
            stop = self
                .epoch(epoch, &mut now, &teachers, &splits, &mut ends)
                .err();
            students = now.into_iter().chain(later).collect();
            students.sort_by_key(|s| s.index);
            if stop.is_none() {
                stop = self.finish_done(&mut students, &splits, &mut ends).err();
            }
        }
        if let Some(stop) = stop {
            stop_all(stop, students, &mut ends);
        }
        ends.into_results()
    }

    /// A member's model and optimiser, from its checkpoint when it has one.
    #[allow(clippy::type_complexity)]
    fn student(
        &self,
        spec: &RunSpec,
        ts: &[TeacherSource],
        sink: &mut dyn RunSink,
        (teachers, heads): (&Teachers, &mut HeadCache),
        splits: &Splits,
    ) -> anyhow::Result<(
        model::ResNet,
        candle_nn::VarMap,
        sgd::Sgd,
        (Option<CrdState>, Option<SskdState>),
        Vec<EpochRecord>,
    )> {
        let classes = spec.data.classes;
        if splits.train.classes != classes {
            bail!(
                "dataset has {} classes, the run expects {classes}",
                splits.train.classes
            );
        }
        for t in ts {
            if let Err(why) = &teachers.nets[teachers.index_of(t)] {
                bail!("{why}");
            }
        }
        let (net, varmap) =
            model::build_trainable(spec.model, classes, spec.seed, self.kernels, &self.device)?;
        let mut crd = match (&spec.method, ts) {
            (Method::Teachers { crd: Some(c), .. }, [t]) => {
                let dims = (model::feature_dim(spec.model), model::feature_dim(t.model));
                let labels = &splits.train.labels;
                let dev = &self.device;
                Some(CrdState::new(
                    *c, spec.seed, &varmap, dims, labels, classes, dev,
                )?)
            }
            (Method::Teachers { crd: Some(_), .. }, _) => bail!("CRD needs exactly one teacher"),
            _ => None,
        };
        let mut sskd = SskdState::for_run(spec, ts, &varmap, &self.device)?;
        let s = &spec.schedule;
        let mut opt = sgd::Sgd::new(model::trainable_vars(&varmap), s.momentum, s.weight_decay);
        let mut epochs = Vec::new();
        if let Some(ck) = sink.resume()? {
            let mut tensors = candle_core::safetensors::load_buffer(&ck.state, &self.device)?;
            let at = || format!("resuming from the checkpoint of epoch {}", ck.epoch);
            if let Some(c) = &mut crd {
                c.restore(&mut tensors).with_context(at)?;
            }
            if let Some(k) = &mut sskd {
                k.restore(&mut tensors, &self.device).with_context(at)?;
            }
            restore(&varmap, &mut opt, tensors).with_context(at)?;
            epochs = ck.epochs;
        } else if let (Some(k), [t]) = (&mut sskd, ts) {
            let i = teachers.index_of(t);
            let net = teachers.nets[i]
                .as_ref()
                .map_err(|why| anyhow::anyhow!("{why}"))?;
            let teacher = (net, i, model::feature_dim(t.model));
            let (train, tf) = (&splits.train, &spec.transform);
            let s = &spec.schedule;
            let on = (self.kernels, &self.device);
            k.train_head(teacher, train, tf, s, spec.seed, heads, sink, on)?;
        }
        Ok((net, varmap, opt, (crd, sskd), epochs))
    }

    /// Finishes the members that have trained their last epoch: their final weights and
    /// outcome go to their sinks, and they leave `students`.
    fn finish_done(
        &self,
        students: &mut Vec<Student>,
        splits: &Splits,
        ends: &mut Ends,
    ) -> Result<(), Stop> {
        let mut i = 0;
        while i < students.len() {
            if students[i].epochs.len() < students[i].spec.schedule.epochs {
                i += 1;
                continue;
            }
            let mut s = students.remove(i);
            match self.outcome(&mut s, splits) {
                Ok(o) => ends.0[s.index] = Some(Ok(o)),
                Err(e) if WriteError::in_chain(&e) => {
                    students.insert(i, s);
                    let index = students[i].index;
                    return Err(Stop::Write { index, error: e });
                }
                Err(e) => ends.fail(s.index, s.sink, e),
            }
        }
        Ok(())
    }

    fn outcome(&self, s: &mut Student, splits: &Splits) -> anyhow::Result<Outcome> {
        let (last, validation) = match s.last.take() {
            Some(e) => e,
            // Resumed after the last epoch's checkpoint: its evaluation again, which
            // gives the same numbers.
            None => {
                let dev = &self.device;
                let eval = |d| evaluate(s.spec, self.kernels, &s.varmap, d, dev);
                (
                    eval(&splits.test)?,
                    splits.validation.as_ref().map(eval).transpose()?,
                )
            }
        };
        let outcome = Outcome {
            epochs: s.epochs.clone(),
            last,
            validation,
        };
        let weights = safetensors::serialize(model::snapshot(&s.varmap), None)?;
        s.sink.finish(&weights, &outcome)?;
        Ok(outcome)
    }
}

/// Ends every member still training: by the signal; or, after a write error, the member
/// that could not write by its error and the others as stopped with it.
fn stop_all(stop: Stop, students: Vec<Student>, ends: &mut Ends) {
    let (writer, why) = match stop {
        Stop::Signal(signal) => (None, Err(signal)),
        Stop::Write { index, error } => {
            let who = students
                .iter()
                .find(|s| s.index == index)
                .map(|s| s.spec.id())
                .unwrap_or_default();
            let text = format!("run {who} could not write its results: {error:#}");
            ends.0[index] = Some(Err(error));
            (Some(index), Ok(text))
        }
    };
    for s in students.into_iter().filter(|s| Some(s.index) != writer) {
        let e = match &why {
            Err(signal) => anyhow::Error::new(Interrupted { signal: *signal }),
            Ok(text) => anyhow::Error::new(CohortStopped(text.clone())),
        };
        ends.fail(s.index, s.sink, e);
    }
}
