//! `lecal verify PATH...`: a reviewer's cheap audit of committed results. A sample of the
//! runs behind them (one seed per cell) trains again in a scratch results folder, through
//! the machinery of `lecal run`, and each is compared with its committed files
//! (`store::compare`): identical on a device that promises bitwise repeatability, within
//! a stated tolerance elsewhere. The committed results folder is only read.
//!
//! Teachers: a sampled run's teacher runs are copied, weights included, from the results
//! folder into the scratch folder rather than trained again. A teacher whose weights are
//! not there (they are never committed) trains again in the scratch folder, and is then
//! verified as well.

use super::run::{execute, RunOptions};
use super::{align_thread_pools, load_plan};
use crate::plan::{CellPlan, Plan, PlannedRun};
use crate::recipe::CellRef;
use crate::store::compare::{self, Mode, Tolerance, Verdict};
use crate::store::{RunState, Store, Weights};
use anyhow::{bail, Context};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// What `lecal verify` was asked besides the recipes.
pub struct VerifyOptions {
    /// Verify at most this many runs.
    pub sample: Option<usize>,
    /// Choose the capped sample by this seed instead of spreading it over the plan.
    pub seed: Option<u64>,
    /// The scratch results folder (default: a new folder under `target/verify/` beside
    /// the results folder, removed when every run matches).
    pub scratch: Option<PathBuf>,
    /// How to train (device, scale, data, convolution); `only` is set here.
    pub run: RunOptions,
}

/// `lecal verify`: trains a sample of the committed runs again and compares them; the
/// exit status is non-zero unless every sampled run matches.
pub fn verify(paths: &[PathBuf], o: VerifyOptions, store: &Store) -> anyhow::Result<ExitCode> {
    align_thread_pools();
    let (set, plan) = load_plan(paths, &o.run.scale)?;
    let states: BTreeMap<&str, RunState> = plan
        .runs
        .iter()
        .map(|r| (r.id.as_str(), store.state(&r.id)))
        .collect();
    let order: Vec<&str> = plan.runs.iter().map(|r| r.id.as_str()).collect();
    let (picked, without) = sample(&order, &plan.cells, &states, o.sample, o.seed);
    for cell in &without {
        outln!("note: cell {cell}: no run is done in the results folder; nothing to verify");
    }
    if picked.is_empty() {
        bail!(
            "nothing to verify: no run of these recipes is done in {}",
            store.root.display()
        );
    }
    let (root, temporary) = scratch_folder(o.scratch.as_deref(), store)?;
    let scratch = Store::new(&root);
    outln!(
        "verifying {} runs: training them again in {}",
        picked.len(),
        root.display()
    );
    let teachers = provide_teachers(&plan, store, &scratch, &picked);
    for n in &teachers.notes {
        outln!("{n}");
    }
    // The plan of the scratch folder: the sampled runs that can train, the teachers that
    // train again and the teachers copied (done there). Runs that fail or stop are found
    // below: they are not done in the scratch folder.
    let trains = |id: &str| {
        (picked.contains(&id) && !teachers.blocked.contains_key(id))
            || teachers.retrain.contains(id)
    };
    let sub = Plan {
        runs: plan
            .runs
            .iter()
            .filter(|r| trains(&r.id) || teachers.copied.contains(&r.id))
            .cloned()
            .collect(),
        cells: plan.cells.clone(),
    };
    if sub.runs.iter().any(|r| trains(&r.id)) {
        let code = execute(&set, &sub, o.run, &scratch)?;
        // Stopped by a signal: nothing to judge (`execute` said so).
        if crate::interrupt::requested().is_some() {
            return Ok(code);
        }
    }
    let checked: Vec<&PlannedRun> = plan
        .runs
        .iter()
        .filter(|r| picked.contains(&r.id.as_str()) || teachers.retrain.contains(&r.id))
        .collect();
    let bad = report(&checked, store, &scratch, &teachers)?;
    if bad > 0 {
        eprintln!(
            "error: {bad} of {} runs do not match their committed results; the runs trained \
             again are in {}",
            checked.len(),
            root.display()
        );
        return Ok(ExitCode::FAILURE);
    }
    if temporary {
        let _ = std::fs::remove_dir_all(&root);
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints each checked run's verdict and the counts; returns how many do not match.
fn report(
    checked: &[&PlannedRun],
    store: &Store,
    scratch: &Store,
    teachers: &Teachers,
) -> anyhow::Result<usize> {
    let mut bad = 0;
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    outln!();
    for r in checked {
        let (word, detail) = match teachers.blocked.get(&r.id) {
            Some(why) => ("NOT VERIFIED", why.clone()),
            None => judge(store, scratch, r),
        };
        *counts.entry(word).or_default() += 1;
        if !matches!(word, "identical" | "within tolerance") {
            bad += 1;
        }
        let sep = if detail.is_empty() { "" } else { ": " };
        outln!("{word:<17} {}  {}{sep}{detail}", r.id, what(r));
    }
    let counts: Vec<String> = counts.iter().map(|(w, n)| format!("{n} {w}")).collect();
    outln!("\n{} runs verified: {}", checked.len(), counts.join(", "));
    Ok(bad)
}

/// One run per cell, the lowest seed whose committed run is done (or damaged: it is
/// trained again and reported), each run once, in plan order (`order`, the plan's run
/// ids); then at most `cap` of them: spread evenly over that order, or with `seed` the
/// first by SHA-256 of the seed and the id. Also the cells that have no such run.
fn sample<'a>(
    order: &[&'a str],
    cells: &BTreeMap<CellRef, CellPlan>,
    states: &BTreeMap<&str, RunState>,
    cap: Option<usize>,
    seed: Option<u64>,
) -> (Vec<&'a str>, Vec<String>) {
    let committed =
        |id: &str| matches!(states.get(id), Some(RunState::Done | RunState::Damaged(_)));
    let mut ids = BTreeSet::new();
    let mut without = Vec::new();
    for (cell, c) in cells {
        let lowest = c
            .runs
            .iter()
            .filter(|(_, id)| committed(id))
            .min_by_key(|(s, _)| *s);
        match lowest {
            Some((_, id)) => {
                ids.insert(id.as_str());
            }
            None => without.push(cell.to_string()),
        }
    }
    let mut picked: Vec<&'a str> = order
        .iter()
        .copied()
        .filter(|id| ids.contains(id))
        .collect();
    if let Some(n) = cap.filter(|&n| n < picked.len()) {
        let keep: BTreeSet<&str> = match seed {
            None => (0..n).map(|i| picked[i * picked.len() / n]).collect(),
            Some(s) => {
                let mut ranked = picked.clone();
                ranked.sort_by_cached_key(|id| {
                    crate::hash::sha256_hex(format!("{s}:{id}").as_bytes())
                });
                ranked.into_iter().take(n).collect()
            }
        };
        picked.retain(|id| keep.contains(id));
    }
    (picked, without)
}

/// The scratch results folder, and whether it is a default one (removed when every run
/// matches). It must be new or empty and outside the results folder.
fn scratch_folder(given: Option<&Path>, store: &Store) -> anyhow::Result<(PathBuf, bool)> {
    let (root, temporary) = match given {
        Some(p) => (p.to_path_buf(), false),
        None => {
            let beside = store.root.parent().unwrap_or(Path::new(""));
            let stamp = format!("{}-{}", crate::store::now_unix(), std::process::id());
            (beside.join("target/verify").join(stamp), true)
        }
    };
    if root.exists() && std::fs::read_dir(&root).map_or(true, |mut d| d.next().is_some()) {
        bail!(
            "the scratch folder {} is not empty: give a new or empty folder (--scratch)",
            root.display()
        );
    }
    std::fs::create_dir_all(&root)
        .with_context(|| format!("cannot create the scratch folder {}", root.display()))?;
    let inside = match (root.canonicalize(), store.root.canonicalize()) {
        (Ok(s), Ok(r)) => s.starts_with(&r),
        _ => false,
    };
    if inside {
        let _ = std::fs::remove_dir(&root);
        bail!(
            "the scratch folder {} is inside the results folder {}: verify never writes there",
            root.display(),
            store.root.display()
        );
    }
    Ok((root, temporary))
}

/// The teachers of the sampled runs, made ready in the scratch folder.
#[derive(Debug, Default)]
struct Teachers {
    /// Teacher runs that train again in the scratch folder (their weights are not in the
    /// results folder); they are verified too.
    retrain: BTreeSet<String>,
    /// Teacher runs copied from the results folder.
    copied: BTreeSet<String>,
    /// Sampled runs that cannot be trained again, and why.
    blocked: BTreeMap<String, String>,
    notes: Vec<String>,
}

fn provide_teachers(plan: &Plan, store: &Store, scratch: &Store, picked: &[&str]) -> Teachers {
    let mut t = Teachers::default();
    for id in picked {
        if let Err(why) = provide(plan, store, scratch, picked, id, &mut t) {
            t.blocked.insert(id.to_string(), why);
        }
    }
    t
}

/// Makes the teacher runs of run `id` ready: copied when done with their weights, else
/// trained again (their own teachers made ready first).
fn provide(
    plan: &Plan,
    store: &Store,
    scratch: &Store,
    picked: &[&str],
    id: &str,
    t: &mut Teachers,
) -> Result<(), String> {
    let Some(run) = plan.get(id) else {
        return Ok(());
    };
    for d in &run.deps {
        if t.copied.contains(d) || t.retrain.contains(d) {
            continue;
        }
        // A sampled teacher trains again anyway.
        if picked.contains(&d.as_str()) {
            provide(plan, store, scratch, picked, d, t)?;
            continue;
        }
        match store.state(d) {
            RunState::Done => match store.run(d).weights() {
                Weights::Sound => {
                    store
                        .run(d)
                        .copy_done_to(&scratch.run(d))
                        .map_err(|e| format!("teacher run {d} cannot be copied: {e:#}"))?;
                    t.copied.insert(d.clone());
                }
                w => {
                    provide(plan, store, scratch, picked, d, t)?;
                    let why = match w {
                        Weights::Damaged(why) => format!("are damaged ({why})"),
                        _ => "are not in the results folder (never committed)".into(),
                    };
                    t.notes.push(format!(
                        "teacher run {d}: its weights {why}; it trains again in the scratch \
                         folder and is verified too"
                    ));
                    t.retrain.insert(d.clone());
                }
            },
            other => {
                let epochs = plan.get(d).map_or(0, |r| r.spec.schedule.epochs);
                return Err(format!(
                    "its teacher run {d} is {} in the results folder",
                    other.label(epochs)
                ));
            }
        }
    }
    Ok(())
}

/// The verdict on run `r`: a word and what it rests on.
fn judge(store: &Store, scratch: &Store, r: &PlannedRun) -> (&'static str, String) {
    let (committed, fresh) = (store.run(&r.id), scratch.run(&r.id));
    let state = fresh.state();
    if state != RunState::Done {
        let why = match (&state, fresh.failure()) {
            (_, Some(f)) => format!("failed in epoch {}: {}", f.epoch, f.reason),
            (s, None) => s.label(r.spec.schedule.epochs),
        };
        return (
            "NOT VERIFIED",
            format!("training it again did not finish ({why})"),
        );
    }
    let (mode, why) = match (committed.record(), fresh.record()) {
        (Some(c), Some(f)) => compare::mode(&c.provenance, &f.provenance),
        _ => (
            Mode::Tolerance(Tolerance::default()),
            Some("a copy has no run.toml".into()),
        ),
    };
    let why = why.unwrap_or_default();
    let verdict = compare::compare(&committed.result_files(), &fresh.result_files(), mode);
    // The weights are not committed, but where they are they must be the done record's.
    let damage = match (committed.state(), committed.weights()) {
        (RunState::Damaged(why), _) | (_, Weights::Damaged(why)) => Some(why),
        _ => None,
    };
    if let Some(why) = damage {
        let found = match verdict {
            Verdict::Differs(d) => format!("trained again, {d}"),
            _ => "trained again, its files match".into(),
        };
        return ("DAMAGED", format!("{why}; {found}"));
    }
    match verdict {
        Verdict::Identical => ("identical", String::new()),
        Verdict::WithinTolerance(d) => {
            let t = Tolerance::default();
            let d = format!(
                "{d} ({why}: accuracy ±{} pp, ECE ±{}, NLL ±{}, Brier ±{})",
                t.accuracy_pp, t.ece, t.nll, t.brier
            );
            ("within tolerance", d)
        }
        Verdict::Differs(d) if why.is_empty() => ("DIFFERS", d),
        Verdict::Differs(d) => ("DIFFERS", format!("{d} (compared within tolerance: {why})")),
    }
}

/// The cells a run reports into, or the runs it teaches.
fn what(r: &PlannedRun) -> String {
    if r.cells.is_empty() {
        return format!("teacher of {}", r.teacher_of.join(", "));
    }
    let cells: Vec<String> = r
        .cells
        .iter()
        .map(|(c, s)| format!("{c} seed {s}"))
        .collect();
    cells.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_seed_per_cell_the_lowest_done_and_capped_deterministically() {
        let mut cells = BTreeMap::new();
        for c in 0..4 {
            let cell = CellRef {
                table: "t".into(),
                row: format!("r{c}"),
                column: "c".into(),
            };
            let runs = (0..3).map(|s| (s, format!("run-{c}-{s}"))).collect();
            let recipe = "x.toml".into();
            cells.insert(cell, CellPlan { recipe, runs });
        }
        // Plan order: the runs in reverse.
        let ids: Vec<String> = cells
            .values()
            .flat_map(|c| c.runs.iter().map(|(_, id)| id.clone()))
            .rev()
            .collect();
        let order: Vec<&str> = ids.iter().map(String::as_str).collect();
        let mut states: BTreeMap<&str, RunState> =
            order.iter().map(|id| (*id, RunState::Done)).collect();
        states.insert("run-0-0", RunState::Pending);
        states.insert("run-1-0", RunState::Damaged("x".into()));
        for id in ["run-3-0", "run-3-1", "run-3-2"] {
            states.insert(id, RunState::Partial(1));
        }
        let (picked, without) = sample(&order, &cells, &states, None, None);
        assert_eq!(picked, ["run-2-0", "run-1-0", "run-0-1"]);
        assert_eq!(without, ["t/r3/c"]);
        // Capped: spread evenly over the plan's order.
        let (two, _) = sample(&order, &cells, &states, Some(2), None);
        assert_eq!(two, ["run-2-0", "run-1-0"]);
        // Seeded: deterministic, and a subset in plan order.
        let (a, _) = sample(&order, &cells, &states, Some(2), Some(7));
        assert_eq!(a, sample(&order, &cells, &states, Some(2), Some(7)).0);
        assert_eq!(a.len(), 2);
        assert!(a.iter().all(|id| picked.contains(id)));
        let (all, _) = sample(&order, &cells, &states, Some(10), Some(7));
        assert_eq!(all, picked);
    }
}
