//! One epoch of a cohort: the shared batches, every member's step on each (a fused
//! group's members in one pass), then each member's evaluation and checkpoint.

use super::super::teachers::Teachers;
use super::super::{argmax_rows, checkpoint_state, diverged, evaluate, CandleTrainer};
use super::fusion::{self, Group};
use super::step::{step, Batch, Stepped, TeacherOutputs};
use super::{Ends, Stop, Student};
use crate::data::{self, mix, Splits};
use crate::rng::Rng;
use crate::store::{EpochRecord, WriteError};
use anyhow::{bail, Context};
use candle_core::Tensor;
use std::collections::HashMap;
use std::time::Instant;

impl CandleTrainer {
    // Long: one epoch of the cohort in one place: the order of the random streams, the
    // shared batch, each member's step, its evaluation and its checkpoint is the training
    // semantics, reviewed top to bottom against PyTorch's loop.
    /// Trains epoch `epoch` of `students` (all at that epoch) on shared batches, then
    /// evaluates and checkpoints each. Members that fail leave `students`.
    pub(super) fn epoch(
        &self,
        epoch: usize,
        students: &mut Vec<Student>,
        teachers: &Teachers,
        splits: &Splits,
        ends: &mut Ends,
    ) -> Result<(), Stop> {
        let dev = &self.device;
        let Some(lead) = students.first().map(|s| s.spec) else {
            return Ok(());
        };
        let (train, seed, batch) = (&splits.train, lead.seed, lead.schedule.batch);
        let (h, w, classes) = (train.height, train.width, lead.data.classes);
        let started = Instant::now();
        for s in students.iter_mut() {
            (s.loss_sum, s.correct, s.seen) = (0.0, 0, 0);
        }
        let order = Rng::stream(seed, "order", &[epoch as u64]).permutation(train.len());
        // A last batch of one image is dropped: BatchNorm needs two.
        let batches: Vec<&[usize]> = order.chunks(batch).filter(|b| b.len() >= 2).collect();
        // Made ahead of the steps when the images are decoded from files.
        let mut made = match data::batches::train(
            train,
            &batches,
            &lead.transform,
            (seed, epoch),
            batch,
            lead.views(),
        ) {
            Ok(m) => m,
            Err(e) => {
                for s in students.drain(..) {
                    ends.fail(s.index, s.sink, anyhow::anyhow!("epoch {epoch}: {e:#}"));
                }
                return Ok(());
            }
        };
        let mut groups = self.fuse(students, ends);
        for (bi, idx) in batches.iter().enumerate() {
            if let Some(signal) = students.iter().find_map(|s| s.sink.stop_requested()) {
                return Err(Stop::Signal(signal));
            }
            if students.is_empty() {
                return Ok(());
            }
            let mut xb = match made.next() {
                Some(Ok(xb)) => xb,
                // Unreadable data is every member's own failure, not a halt.
                Some(Err(e)) => {
                    let why = format!("epoch {epoch}, batch {}: {e:#}", bi + 1);
                    for s in students.drain(..) {
                        ends.fail(s.index, s.sink, anyhow::anyhow!("{why}"));
                    }
                    return Ok(());
                }
                None => unreachable!("one made batch per batch of the epoch"),
            };
            let labels: Vec<u16> = idx.iter().map(|&i| train.labels[i]).collect();
            // Every member and every teacher see the same mixed batch.
            let mut mix_rng = Rng::stream(seed, "mix", &[epoch as u64, bi as u64]);
            let mixed = mix::mix(&lead.augment, &mut xb, &labels, h, w, &mut mix_rng);
            let traced = students.iter().any(|s| s.sink.wants_batches()).then(|| {
                let t = crate::method::mixed_targets(&mixed.labels, classes, 0.0);
                (xb.clone(), t)
            });
            let x = match Tensor::from_vec(xb, (idx.len() * lead.views(), 3, h, w), dev) {
                Ok(x) => x,
                Err(e) => {
                    let why = format!("epoch {epoch}, batch {}: {e:#}", bi + 1);
                    for s in students.drain(..) {
                        ends.fail(s.index, s.sink, anyhow::anyhow!("{why}"));
                    }
                    return Ok(());
                }
            };
            let outputs = teachers.outputs(students, &x);
            let batch = Batch {
                x: &x,
                mixes: &mixed.labels,
                samples: idx,
                labels: &train.labels,
                at: (epoch, bi),
            };
            let results = self.steps(students, &mut groups, &batch, &outputs);
            let mut failed = Vec::new();
            for (s, r) in students.iter_mut().zip(results) {
                match r {
                    Ok((lv, lg)) => {
                        if let Some((x, t)) = &traced {
                            s.sink.batch(epoch, bi, x, t, lv);
                        }
                        s.correct += argmax_rows(&lg, classes)
                            .zip(&labels)
                            .filter(|(p, &l)| *p == l as usize)
                            .count();
                        s.loss_sum += lv * idx.len() as f64;
                        s.seen += idx.len();
                        s.sink.progress(epoch, bi + 1, batches.len());
                    }
                    Err(e) => {
                        let e = e.context(format!("epoch {epoch}, batch {}", bi + 1));
                        failed.push((s.index, e));
                    }
                }
            }
            self.leave(students, &mut groups, failed, ends);
        }
        for g in groups {
            if let Err(e) = g.unfuse(students) {
                fail(students, &g.members, &format!("{e:#}"), ends);
            }
        }
        let mut i = 0;
        while i < students.len() {
            match self.end_epoch(&mut students[i], epoch, started, splits) {
                Ok(()) => i += 1,
                Err(e) if WriteError::in_chain(&e) => {
                    return Err(Stop::Write {
                        index: students[i].index,
                        error: e,
                    })
                }
                Err(e) => {
                    let s = students.remove(i);
                    ends.fail(s.index, s.sink, e);
                }
            }
        }
        Ok(())
    }

    /// A member's epoch after its last step: the evaluation, the divergence check, the
    /// checkpoint and the row.
    fn end_epoch(
        &self,
        s: &mut Student,
        epoch: usize,
        started: Instant,
        splits: &Splits,
    ) -> anyhow::Result<()> {
        let dev = &self.device;
        let eval = evaluate(s.spec, self.kernels, &s.varmap, &splits.test, dev)?;
        let val_eval = splits
            .validation
            .as_ref()
            .map(|v| evaluate(s.spec, self.kernels, &s.varmap, v, dev))
            .transpose()?;
        let rec = EpochRecord {
            epoch,
            lr: s.spec.schedule.lr_at(epoch),
            train_loss: s.loss_sum / s.seen as f64,
            train_acc: 100.0 * s.correct as f64 / s.seen as f64,
            test_loss: eval.nll,
            test_acc: eval.accuracy,
            ece: eval.ece,
            nll: eval.nll,
            brier: eval.brier,
            seconds: started.elapsed().as_secs_f64(),
            checkpoint_seconds: 0.0,
            val_loss: val_eval.as_ref().map(|e| e.nll),
            val_acc: val_eval.as_ref().map(|e| e.accuracy),
            val_ece: val_eval.as_ref().map(|e| e.ece),
        };
        if let Some(what) = diverged(&rec, &s.varmap)? {
            bail!("epoch {epoch}: the run diverged: {what}");
        }
        let mut state = checkpoint_state(&s.varmap, &s.opt);
        if let Some(c) = &s.crd {
            state.extend(c.state()?);
        }
        if let Some(k) = &s.sskd {
            state.extend(k.state());
        }
        let state = safetensors::serialize(state, None)?;
        s.sink
            .epoch(&rec, &state)
            .context("writing the epoch's results")?;
        s.epochs.push(rec);
        s.last = Some((eval, val_eval));
        Ok(())
    }

    /// Every member's step on the batch: each fused group's members in one pass, the
    /// others one by one. The results in `students` order.
    fn steps(
        &self,
        students: &mut [Student],
        groups: &mut [Group],
        b: &Batch,
        outputs: &TeacherOutputs,
    ) -> Vec<Stepped> {
        let mut fused: HashMap<usize, Stepped> = HashMap::new();
        for g in groups.iter_mut() {
            match g.step(students, b, outputs, &self.device) {
                Ok(results) => fused.extend(g.members.iter().copied().zip(results)),
                Err(e) => {
                    let why = format!("{e:#}");
                    for &i in &g.members {
                        fused.insert(i, Err(anyhow::anyhow!("{why}")));
                    }
                }
            }
        }
        let on = (self.kernels, &self.device);
        (students.iter_mut())
            .map(|s| match fused.remove(&s.index) {
                Some(r) => r,
                None => step(s, b, outputs, on),
            })
            .collect()
    }

    /// The fused groups of an epoch's members, when this trainer fuses. The members of a
    /// group that cannot be made fail.
    fn fuse(&self, students: &mut Vec<Student>, ends: &mut Ends) -> Vec<Group> {
        if !self.fusion {
            return Vec::new();
        }
        let mut groups = Vec::new();
        for members in fusion::fusable(students) {
            match Group::new(students, members.clone(), self.kernels, &self.device) {
                Ok(g) => groups.push(g),
                Err(e) => fail(students, &members, &format!("fusing: {e:#}"), ends),
            }
        }
        groups
    }

    /// Members that failed in a step leave the epoch. A group that held one goes back
    /// into its members' own models, and those that remain are fused again (one alone
    /// trains on by itself).
    fn leave(
        &self,
        students: &mut Vec<Student>,
        groups: &mut Vec<Group>,
        failed: Vec<(usize, anyhow::Error)>,
        ends: &mut Ends,
    ) {
        if failed.is_empty() {
            return;
        }
        let gone: Vec<usize> = failed.iter().map(|f| f.0).collect();
        let (hit, kept): (Vec<Group>, Vec<Group>) =
            (groups.drain(..)).partition(|g| g.members.iter().any(|i| gone.contains(i)));
        *groups = kept;
        let mut rest = Vec::new();
        for g in hit {
            let left: Vec<usize> = g
                .members
                .iter()
                .copied()
                .filter(|i| !gone.contains(i))
                .collect();
            match g.unfuse(students) {
                Ok(()) => rest.push(left),
                Err(e) => fail(students, &left, &format!("{e:#}"), ends),
            }
        }
        for (index, e) in failed {
            if let Some(at) = students.iter().position(|s| s.index == index) {
                let s = students.remove(at);
                ends.fail(s.index, s.sink, e);
            }
        }
        for members in rest.into_iter().filter(|m| m.len() > 1) {
            match Group::new(students, members.clone(), self.kernels, &self.device) {
                Ok(g) => groups.push(g),
                Err(e) => fail(students, &members, &format!("fusing: {e:#}"), ends),
            }
        }
    }
}

/// Ends the members `members` (those still in `students`) with the error `why`.
fn fail(students: &mut Vec<Student>, members: &[usize], why: &str, ends: &mut Ends) {
    let mut i = 0;
    while i < students.len() {
        if members.contains(&students[i].index) {
            let s = students.remove(i);
            ends.fail(s.index, s.sink, anyhow::anyhow!("{why}"));
        } else {
            i += 1;
        }
    }
}
