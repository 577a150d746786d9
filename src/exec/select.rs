//! Which runs of a plan train in this invocation, and why the others do not: the one
//! place that decides it. The scheduler starts from it, and `lecal run` asks it which
//! runs need their data and teacher checkpoints checked before anything trains.

use super::Ended;
use crate::plan::{Plan, PlannedRun};
use crate::store::{RunState, Store, Weights, REBUILD};
use std::collections::{BTreeMap, BTreeSet};

/// The runs of a plan sorted into those that train and those that do not.
#[derive(Debug, Default)]
pub struct Selection<'a> {
    /// Runs to train (or, for those in `rebuild`, to train again for their weights), in
    /// dependency order.
    pub train: Vec<&'a PlannedRun>,
    /// Done teacher runs without their weights (never committed) whose students train:
    /// they train again in their `rebuild/` folder.
    pub rebuild: BTreeSet<String>,
    /// Runs that do not train, and how they end.
    pub left: BTreeMap<String, Ended>,
    /// What to tell the user about the selection (rebuilds, damaged runs), in plan order.
    pub notes: Vec<String>,
}

/// Sorts the runs of `plan` by their state in `store`. With `only` (`lecal run --only`, a
/// cluster job's runs), only the runs it names may train; one whose teacher run is neither
/// done nor among them is skipped, saying so, and the others are left out.
pub fn select<'a>(
    plan: &'a Plan,
    store: &Store,
    retry_failed: bool,
    only: Option<&BTreeSet<String>>,
) -> Selection<'a> {
    let states: BTreeMap<&str, RunState> = plan
        .runs
        .iter()
        .map(|r| (r.id.as_str(), store.state(&r.id)))
        .collect();
    let trains = |s: &RunState| match s {
        RunState::Done | RunState::Damaged(_) => false,
        RunState::Failed { .. } => retry_failed,
        _ => true,
    };
    let mut sel = Selection {
        // Teachers of runs that will train, done but without their weights.
        // Each teacher once: checking weights reads (and hashes) the whole file.
        rebuild: plan
            .runs
            .iter()
            .filter(|r| trains(&states[r.id.as_str()]))
            .flat_map(|r| &r.deps)
            .collect::<BTreeSet<&String>>()
            .into_iter()
            .filter(|d| states.get(d.as_str()) == Some(&RunState::Done) && !store.has_weights(d))
            .cloned()
            .collect(),
        ..Selection::default()
    };
    for r in &plan.runs {
        let rebuild_failed = sel
            .rebuild
            .contains(&r.id)
            .then(|| rebuild_failed(store, &r.id, retry_failed))
            .flatten();
        let left = match &states[r.id.as_str()] {
            RunState::Done => match rebuild_failed {
                Some(ended) => Some(ended),
                None => {
                    let rebuild = sel.rebuild.contains(&r.id);
                    done(store, &r.id, rebuild, &mut sel.notes)
                }
            },
            RunState::Failed { epoch, reason } if !retry_failed => {
                Some(failed_earlier(*epoch, reason))
            }
            RunState::Damaged(why) => {
                sel.notes.push(format!("error: run {}: {why}", r.id));
                Some(damaged(why))
            }
            _ => None,
        };
        match left {
            Some(ended) => {
                sel.left.insert(r.id.clone(), ended);
            }
            None => sel.train.push(r),
        }
    }
    if let Some(only) = only {
        keep_only(&mut sel, &states, only);
    }
    sel
}

/// `select`'s `only`: the named runs of `sel.train`, less those whose teacher run is
/// neither done (`states`) nor named, which are skipped.
fn keep_only(sel: &mut Selection, states: &BTreeMap<&str, RunState>, only: &BTreeSet<String>) {
    sel.train.retain(|r| only.contains(&r.id));
    let named: BTreeSet<&str> = sel.train.iter().map(|r| r.id.as_str()).collect();
    for r in std::mem::take(&mut sel.train) {
        let missing = r.deps.iter().find(|d| {
            !named.contains(d.as_str()) && states.get(d.as_str()) != Some(&RunState::Done)
        });
        match missing {
            Some(d) => {
                let why = format!("teacher run {d} is not done");
                sel.left.insert(r.id.clone(), Ended::Skipped(why));
            }
            None => sel.train.push(r),
        }
    }
}

/// A done run: `None` when it trains again in its `rebuild/` folder for its weights (its
/// students need them), else already done, or skipped when its weights are damaged (its
/// numbers stand, as done.toml vouches for them, but it is damaged, as `status` says, and
/// the invocation exits non-zero).
fn done(store: &Store, id: &str, rebuild: bool, notes: &mut Vec<String>) -> Option<Ended> {
    let weights = store.run(id).weights();
    if rebuild {
        let why = match weights {
            Weights::Damaged(why) => format!("its weights are damaged ({why})"),
            _ => "its weights (never committed) are not here".to_string(),
        };
        notes.push(format!(
            "run {id}: done, but {why}; its students need them, so it trains again in \
             {id}/{REBUILD} and its files stay"
        ));
        return None;
    }
    match weights {
        Weights::Damaged(why) => {
            let why = format!(
                "done, but {why}; delete that file (its numbers stand), or `lecal run` trains \
                 it again when a student needs its weights"
            );
            notes.push(format!("error: run {id}: {why}"));
            Some(Ended::Skipped(why))
        }
        _ => Some(Ended::AlreadyDone),
    }
}

/// How a run ends when the scheduler reads its state again under its lock: `None` to
/// train it.
pub(super) fn left_alone(
    state: RunState,
    id: &str,
    rebuild: bool,
    store: &Store,
    retry_failed: bool,
) -> Option<Ended> {
    match state {
        RunState::Done if !rebuild || store.has_weights(id) => Some(Ended::AlreadyDone),
        RunState::Done => rebuild_failed(store, id, retry_failed),
        RunState::Failed { epoch, reason } if !retry_failed => Some(failed_earlier(epoch, &reason)),
        RunState::Damaged(why) => Some(damaged(&why)),
        _ => None,
    }
}

/// A run whose summary cannot be read: left alone, so that nothing committed is
/// overwritten.
fn damaged(why: &str) -> Ended {
    Ended::Skipped(format!(
        "{why}; restore the file (`git checkout`) or remove the run's folder to train it again"
    ))
}

/// A done run whose training again for its weights failed earlier: left alone without
/// `--retry-failed`, like any failed run.
fn rebuild_failed(store: &Store, id: &str, retry_failed: bool) -> Option<Ended> {
    if retry_failed {
        return None;
    }
    let f = store.rebuild_failure(id)?;
    Some(failed_earlier(f.epoch, &f.reason))
}

/// A run an earlier attempt marked failed, left alone without `--retry-failed`.
fn failed_earlier(epoch: usize, reason: &str) -> Ended {
    Ended::Failed(format!(
        "failed in epoch {epoch} earlier ({reason}); --retry-failed attempts it again"
    ))
}
