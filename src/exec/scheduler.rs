//! What runs next: a queue of the selected runs, each started when its teachers are done,
//! claimed under its lock, handed to a backend slot, and its ending recorded. A failed run
//! skips the runs that need it and nothing else; a stop signal or a write error halts the
//! invocation.

use super::backend::{Backend, Job, JobKind};
use super::select::{left_alone, select};
use super::{halt_of, lock, message, Ended, Halt, Options, Progress, Report};
use crate::interrupt;
use crate::plan::{cohorts, within_budget};
use crate::plan::{Plan, PlannedRun};
use crate::store::lock::{Acquired, Holder};
use crate::store::{RunState, Store, WriteError};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// How often a process looks again at runs that other processes are training.
const POLL: Duration = Duration::from_millis(500);

/// Runs every selected run of `plan` on `backend`'s slots, each after its teachers, in
/// units of work: cohorts (runs that see identical batches, trained together) unless
/// `opts.cohort_memory` is `None`, then each run alone.
pub(super) fn run(
    plan: &Plan,
    store: &Store,
    backend: &dyn Backend,
    mut progress: Progress,
    opts: Options,
) -> Report {
    let sel = select(plan, store, opts.retry_failed, opts.only.as_ref());
    for (id, _) in sel.left.iter().filter(|(_, e)| **e == Ended::AlreadyDone) {
        store.run(id).clear_stale_lock();
    }
    for note in &sel.notes {
        progress.line(note);
    }
    let queue = Mutex::new(Queue {
        total: sel.train.len(),
        waiting: units(plan, &sel.train, opts.cohort_memory, opts.fusion),
        elsewhere: Vec::new(),
        announced: BTreeSet::new(),
        rebuild: sel.rebuild,
        running: 0,
        started: 0,
        report: Report {
            ended: sel.left,
            halted: None,
        },
    });
    let wake = Condvar::new();
    let progress = Mutex::new(progress);
    let slot = |slot: usize| {
        let name = backend.slot_name(slot);
        while let Some(jobs) = next_unit(&queue, &wake, store, &opts, &progress, &name) {
            let runs: Vec<&PlannedRun> = jobs.iter().map(|j| j.run).collect();
            let mut results = backend.run(slot, jobs, &progress).into_iter();
            for run in runs {
                let result = results
                    .next()
                    .unwrap_or_else(|| Err(anyhow::anyhow!("the backend reported no result")));
                let ended = ended_of(plan, run, result, &queue, &progress);
                lock(&queue).report.ended.insert(run.id.clone(), ended);
            }
            lock(&queue).running -= 1;
            wake.notify_all();
        }
    };
    std::thread::scope(|s| {
        for i in 0..backend.slots().max(1) {
            s.spawn(move || slot(i));
        }
    });
    queue.into_inner().unwrap_or_else(|e| e.into_inner()).report
}

/// The units of work of the selected runs `train` (in dependency order): their cohorts
/// within a memory budget of `cohort_memory` bytes (estimated `fused` or not), or each
/// run alone.
pub(super) fn units<'a>(
    plan: &Plan,
    train: &[&'a PlannedRun],
    cohort_memory: Option<u64>,
    fused: bool,
) -> Vec<Vec<&'a PlannedRun>> {
    let Some(budget) = cohort_memory else {
        return train.iter().map(|r| vec![*r]).collect();
    };
    let selected: BTreeMap<&str, &'a PlannedRun> =
        train.iter().map(|r| (r.id.as_str(), *r)).collect();
    let cohorts = cohorts(plan)
        .into_iter()
        .map(|mut c| {
            c.runs.retain(|id| selected.contains_key(id.as_str()));
            c
        })
        .filter(|c| !c.runs.is_empty())
        .collect();
    within_budget(plan, cohorts, budget, fused)
        .into_iter()
        .map(|c| c.runs.iter().map(|id| selected[id.as_str()]).collect())
        .collect()
}

/// Waits for the next unit whose runs are ready, and claims them; `None` when nothing is
/// left for this slot (all ended, or the invocation halted).
fn next_unit<'a>(
    queue: &Mutex<Queue<'a>>,
    wake: &Condvar,
    store: &Store,
    opts: &Options,
    progress: &Mutex<Progress>,
    slot: &Option<String>,
) -> Option<Vec<Job<'a>>> {
    let mut q = lock(queue);
    loop {
        if let Some(sig) = interrupt::requested() {
            q.halt(Halt::Signal(sig));
        }
        if q.report.halted.is_some() {
            wake.notify_all();
            return None;
        }
        if let Some(unit) = q.next_ready(progress) {
            if let Some(jobs) = q.claim(unit, store, opts, progress) {
                q.announce(&jobs, progress, slot, opts.fusion);
                return Some(jobs);
            }
            wake.notify_all();
            continue;
        }
        if q.waiting.is_empty() && q.elsewhere.is_empty() {
            wake.notify_all();
            return None;
        }
        if q.running == 0 && q.elsewhere.is_empty() {
            // Nothing can become ready (cannot happen with a dependency-ordered plan).
            let left: Vec<&PlannedRun> = q.waiting.drain(..).flatten().collect();
            for r in left {
                let why = "its teachers are not in the plan".to_string();
                q.report.ended.insert(r.id.clone(), Ended::Skipped(why));
            }
            wake.notify_all();
            return None;
        }
        q = wake
            .wait_timeout(q, POLL)
            .unwrap_or_else(|e| e.into_inner())
            .0;
        // Look again at the runs other processes hold.
        let back: Vec<_> = q.elsewhere.drain(..).map(|r| vec![r]).collect();
        q.waiting.splice(0..0, back);
    }
}

/// How a run ended, from the result its backend gave: an error that halts the invocation
/// (a signal, a write error) stops the run without failing it.
fn ended_of(
    plan: &Plan,
    run: &PlannedRun,
    result: anyhow::Result<()>,
    queue: &Mutex<Queue>,
    progress: &Mutex<Progress>,
) -> Ended {
    let Err(e) = result else {
        return Ended::Trained;
    };
    let reason = message(&e);
    match halt_of(&e) {
        Some(halt) => {
            if matches!(halt, Halt::Storage(_)) {
                lock(progress).line(&format!("error: run {} stopped: {reason}", run.id));
            }
            lock(queue).halt(halt);
            Ended::Stopped(reason)
        }
        None => {
            lock(progress).line(&format!(
                "error: run {} ({}) failed: {reason}",
                run.id,
                plan.recipes_of(run)
            ));
            Ended::Failed(reason)
        }
    }
}

/// Which runs are waiting, running and finished while slots take them.
struct Queue<'a> {
    total: usize,
    /// Units of work not started yet, in dependency order.
    waiting: Vec<Vec<&'a PlannedRun>>,
    /// Runs another process holds the lock of; looked at again every `POLL`.
    elsewhere: Vec<&'a PlannedRun>,
    /// Runs already reported as trained elsewhere (said once).
    announced: BTreeSet<String>,
    /// Done teacher runs without their weights, trained again for students that train.
    rebuild: BTreeSet<String>,
    /// Units in progress.
    running: usize,
    /// Runs started.
    started: usize,
    report: Report,
}

impl<'a> Queue<'a> {
    /// The first waiting unit whose runs' teachers are all done; runs whose teachers
    /// failed are marked skipped on the way (the rest of their unit goes on). `None` when
    /// nothing is ready now.
    fn next_ready(&mut self, progress: &Mutex<Progress>) -> Option<Vec<&'a PlannedRun>> {
        let mut i = 0;
        while i < self.waiting.len() {
            for run in std::mem::take(&mut self.waiting[i]) {
                match self.blocked_by(run) {
                    Some(dep) => {
                        let why = format!("teacher run {dep} is not done");
                        lock(progress).line(&format!("skip {}: {why}", run.id));
                        self.report
                            .ended
                            .insert(run.id.clone(), Ended::Skipped(why));
                    }
                    None => self.waiting[i].push(run),
                }
            }
            let unit = &self.waiting[i];
            if unit.is_empty() {
                self.waiting.remove(i);
                continue;
            }
            let done = |d: &String| {
                matches!(
                    self.report.ended.get(d),
                    Some(Ended::AlreadyDone | Ended::Trained)
                )
            };
            if unit.iter().all(|r| r.deps.iter().all(done)) {
                return Some(self.waiting.remove(i));
            }
            i += 1;
        }
        None
    }

    /// The first teacher of `run` that ended without being done, if any.
    fn blocked_by(&self, run: &PlannedRun) -> Option<String> {
        run.deps
            .iter()
            .find(|d| {
                matches!(
                    self.report.ended.get(*d),
                    Some(Ended::Failed(_) | Ended::Skipped(_) | Ended::Stopped(_))
                )
            })
            .cloned()
    }

    /// Claims the runs of a ready unit: the jobs and locks of those to train; `None` when
    /// none is left (all done, failed or trained by another process).
    fn claim(
        &mut self,
        unit: Vec<&'a PlannedRun>,
        store: &Store,
        opts: &Options,
        progress: &Mutex<Progress>,
    ) -> Option<Vec<Job<'a>>> {
        let mut jobs = Vec::new();
        for run in unit {
            if self.report.halted.is_some() {
                let why = "the invocation stopped before it started".to_string();
                self.report
                    .ended
                    .insert(run.id.clone(), Ended::Stopped(why));
                continue;
            }
            if let Some(job) = self.claim_run(run, store, opts, progress) {
                jobs.push(job);
            }
        }
        if jobs.is_empty() {
            return None;
        }
        self.running += 1;
        Some(jobs)
    }

    /// Says which runs start, and that they train together when there are several.
    fn announce(
        &self,
        jobs: &[Job],
        progress: &Mutex<Progress>,
        slot: &Option<String>,
        fused: bool,
    ) {
        let mut p = lock(progress);
        let on = slot
            .as_ref()
            .map_or_else(String::new, |s| format!(" on {s}"));
        if jobs.len() > 1 {
            let runs: Vec<&PlannedRun> = jobs.iter().map(|j| j.run).collect();
            let groups = match fused {
                true => crate::plan::fused_groups(&runs),
                false => Vec::new(),
            };
            let fusion = match groups.is_empty() {
                true => String::new(),
                false => format!("; fused: {}", crate::plan::fused_text(&groups)),
            };
            p.line(&format!(
                "cohort of {} runs (seed {}){on}: one stream of batches, each teacher once per \
                 batch{fusion}",
                jobs.len(),
                jobs[0].run.spec.seed
            ));
        }
        let first = self.started + 1 - jobs.len();
        for (k, job) in jobs.iter().enumerate() {
            p.start_run(first + k, self.total, job.run, &on);
        }
    }

    /// Takes the lock of a ready run and decides what to do with it: a job (holding the
    /// lock) to run it; `None` when it is done, failed or trained by another process.
    fn claim_run(
        &mut self,
        run: &'a PlannedRun,
        store: &Store,
        opts: &Options,
        progress: &Mutex<Progress>,
    ) -> Option<Job<'a>> {
        let dir = store.run(&run.id);
        let ended = match dir.try_lock() {
            Err(e) => {
                if WriteError::in_chain(&e) || e.chain().any(|c| c.is::<std::io::Error>()) {
                    self.halt(Halt::Storage(format!("{e:#}")));
                }
                Ended::Stopped(format!("{e:#}"))
            }
            Ok(Acquired::Busy(holder)) => {
                if self.announced.insert(run.id.clone()) {
                    let who = holder
                        .as_ref()
                        .map_or("another process".into(), Holder::to_string);
                    lock(progress).line(&format!("wait {}: being trained by {who}", run.id));
                }
                self.elsewhere.push(run);
                return None;
            }
            Ok(Acquired::Held { lock: l, took_over }) => {
                if let Some(h) = took_over {
                    lock(progress).line(&format!(
                        "run {}: taking over the lock left by {h}, which is no longer running",
                        run.id
                    ));
                }
                // Read again under the lock: another process may have finished it.
                let state = dir.state();
                let kind = if state == RunState::Done {
                    JobKind::Rebuild
                } else {
                    JobKind::Train
                };
                let rebuild = self.rebuild.contains(&run.id);
                match left_alone(state, &run.id, rebuild, store, opts.retry_failed) {
                    Some(ended) => ended,
                    None => {
                        self.started += 1;
                        return Some(Job { run, kind, lock: l });
                    }
                }
            }
        };
        self.report.ended.insert(run.id.clone(), ended);
        None
    }

    fn halt(&mut self, why: Halt) {
        if self.report.halted.is_none() {
            self.report.halted = Some(why);
        }
    }
}
