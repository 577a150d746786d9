//! `lecal plan`, `status`, `table`, `report` and `models`: what the recipes ask for and
//! where the results stand.

use super::load_plan;
use crate::plan::{model_title, Plan, PlannedRun};
use crate::recipe;
use crate::report;
use crate::spec::ModelName;
use crate::store::{RunState, Store, Weights};
use anyhow::Context;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// `lecal plan`: every run the recipes expand to, its state and dependencies, its
/// cohorts, and with `estimate` what it costs.
pub fn plan(
    paths: &[PathBuf],
    scale: &str,
    estimate: Option<EstimateOptions>,
    (cohort_memory, fused): (u64, bool),
    store: &Store,
) -> anyhow::Result<()> {
    let (_, plan) = load_plan(paths, scale)?;
    print_plan(&plan, store)?;
    let all = crate::plan::cohorts(&plan);
    let cohorts = crate::plan::within_budget(&plan, all, cohort_memory, fused);
    print_cohorts(&plan, &cohorts, fused)?;
    if let Some(o) = estimate {
        super::estimate::print(&plan, &cohorts, &o)?;
    }
    Ok(())
}

/// `lecal plan --estimate`'s options.
pub struct EstimateOptions {
    pub device: String,
    pub bench: Option<PathBuf>,
}

fn print_cohorts(plan: &Plan, cohorts: &[crate::plan::Cohort], fused: bool) -> anyhow::Result<()> {
    let shared = cohorts.iter().filter(|c| c.runs.len() > 1).count();
    outln!(
        "cohorts: {} (runs that see identical batches train together, each teacher's forward \
         pass once per batch; {shared} with more than one run)",
        cohorts.len()
    );
    outln!(
        "fused groups: a cohort's students of one architecture train as one network {}",
        match fused {
            true => "(fusion on; memory counts them)",
            false => "with fusion on (--fusion on; auto fuses on CUDA)",
        }
    );
    for (i, c) in cohorts.iter().enumerate() {
        let first = plan.get(&c.runs[0]).expect("a planned run");
        let epochs: BTreeSet<usize> = c
            .runs
            .iter()
            .filter_map(|id| plan.get(id))
            .map(|r| r.spec.schedule.epochs)
            .collect();
        outln!(
            "  cohort {}: {} runs, seed {}, {} {}{}, {} distinct teachers, epochs {:?}, ≈{:.1} GiB: {}",
            i + 1,
            c.runs.len(),
            first.spec.seed,
            first.spec.data.name.as_str(),
            augment_name(&first.spec.augment),
            match first.spec.views() {
                1 => String::new(),
                v => format!(", {v} rotations per image"),
            },
            c.teachers(plan).len(),
            epochs,
            crate::plan::memory(plan, &c.runs, fused) as f64 / (1u64 << 30) as f64,
            c.runs.join(" ")
        );
        let runs: Vec<&crate::plan::PlannedRun> =
            c.runs.iter().filter_map(|id| plan.get(id)).collect();
        let groups = crate::plan::fused_groups(&runs);
        if !groups.is_empty() {
            outln!("    fused: {}", crate::plan::fused_text(&groups));
            for g in &groups {
                let ids: Vec<&str> = g.iter().map(|r| r.id.as_str()).collect();
                outln!("      {}: {}", g[0].spec.model.as_str(), ids.join(" "));
            }
        }
    }
    Ok(())
}

fn augment_name(a: &crate::spec::AugmentSpec) -> &'static str {
    use crate::spec::AugmentSpec::*;
    match a {
        None => "no augmentation",
        Mixup { .. } => "mixup",
        Cutmix { .. } => "CutMix",
        Ricap { .. } => "RICAP",
    }
}

fn print_plan(plan: &Plan, store: &Store) -> anyhow::Result<()> {
    let (mut done, mut damaged) = (0, 0);
    let mut done_epochs = 0;
    let width = plan.runs.iter().map(|r| r.id.len()).max().unwrap_or(2);
    outln!(
        "{:<width$}  {:<5} {:<28} {:<6} deps / cells",
        "id",
        "seed",
        "state",
        "epochs"
    );
    for r in &plan.runs {
        let state = store.state(&r.id);
        let epochs = r.spec.schedule.epochs;
        match state {
            RunState::Done => {
                done += 1;
                done_epochs += epochs;
            }
            RunState::Partial(k) => done_epochs += k,
            RunState::Damaged(_) => damaged += 1,
            _ => {}
        }
        let what = described(r, &state, store);
        let deps = if r.deps.is_empty() {
            "-".to_string()
        } else {
            r.deps.join(",")
        };
        outln!(
            "{:<width$}  {:<5} {:<28} {:<6} {deps} / {}",
            r.id,
            r.spec.seed,
            state.label(epochs),
            epochs,
            what.join("; ")
        );
    }
    let requested: usize = plan.cells.values().map(|c| c.runs.len()).sum();
    let teachers = plan
        .runs
        .iter()
        .filter(|r| !r.teacher_of.is_empty())
        .count();
    outln!(
        "{} cells ask for {requested} runs (one per seed); {} of the unique runs serve as teachers",
        plan.cells.len(),
        teachers
    );
    outln!(
        "total: {} runs, {} epochs ({} done), {} done, {} to train{}",
        plan.runs.len(),
        plan.total_epochs(),
        done_epochs,
        done,
        plan.runs.len() - done - damaged,
        if damaged > 0 {
            format!(", {damaged} damaged")
        } else {
            String::new()
        }
    );
    Ok(())
}

/// What `lecal plan` says of a run beside its state: its cells, whom it teaches, its
/// weights when it teaches, and why it is damaged.
fn described(r: &PlannedRun, state: &RunState, store: &Store) -> Vec<String> {
    let mut what: Vec<String> = r.cells.iter().map(|(c, _)| c.to_string()).collect();
    if !r.teacher_of.is_empty() {
        what.push(format!("teacher of {} runs", r.teacher_of.len()));
        let weights = match state {
            RunState::Done => store.run(&r.id).weights(),
            _ => Weights::Sound,
        };
        let lacking = match weights {
            Weights::Sound => None,
            Weights::Missing => Some("no weights".to_string()),
            Weights::Damaged(why) => Some(format!("damaged weights ({why})")),
        };
        if let Some(lacking) = lacking {
            what.push(match store.rebuild_failure(&r.id) {
                Some(f) => format!(
                    "{lacking}: training it again failed in epoch {} ({}); --retry-failed",
                    f.epoch, f.reason
                ),
                None => format!("{lacking}: trains again when a student needs them"),
            });
        }
    }
    if let RunState::Damaged(why) = state {
        what.push(why.clone());
    }
    what
}

fn find_table_spec(name: &str, recipes: &Path) -> anyhow::Result<PathBuf> {
    let p = Path::new(name);
    if p.is_file() {
        return Ok(p.to_path_buf());
    }
    let files = recipe::expand_paths(&[recipes.to_path_buf()])
        .with_context(|| format!("looking for table `{name}`"))?;
    let want = format!("{name}.table.toml");
    files
        .into_iter()
        .find(|f| f.file_name().and_then(|n| n.to_str()) == Some(want.as_str()))
        .with_context(|| format!("no table spec `{want}` under {}", recipes.display()))
}

/// A table's spec (found by name under `recipes`, or a spec file) and the plan of the
/// recipes beside it.
fn spec_and_plan(
    name: &str,
    recipes: &Path,
    scale: &str,
) -> anyhow::Result<(recipe::TableSpec, Plan)> {
    let spec_path = find_table_spec(name, recipes)?;
    let dir = spec_path.parent().unwrap_or(Path::new(".")).to_path_buf();
    let (set, plan) = load_plan(&[dir], scale)?;
    let spec = set
        .tables
        .values()
        .find(|t| t.path == spec_path)
        .cloned()
        .map_or_else(|| recipe::load_table(&spec_path), Ok)?;
    Ok((spec, plan))
}

/// `lecal report`: a table's report (the table, plots of every cell, protocol and
/// provenance) as one HTML page and its plots as SVG files.
pub fn report(name: &str, recipes: &Path, scale: &str, store: &Store) -> anyhow::Result<()> {
    let (spec, plan) = spec_and_plan(name, recipes, scale)?;
    let table = report::assemble(&spec, &plan, store, scale)?;
    let written = report::write_report(&table, &plan, store)?;
    for note in &written.notes {
        eprintln!("note: a plot is missing: {note}");
    }
    if let Some(index) = written.files.last() {
        outln!("wrote {} ({} files)", index.display(), written.files.len());
    }
    Ok(())
}

/// What `lecal table` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableView {
    /// The table's own layout, or other measures (`--metric`, `--ts`).
    Cells(report::View),
    /// The reproduction against the paper's values (`--verdicts`).
    Verdicts,
}

/// `lecal table`: a table from its recipes and the results, written and printed.
pub fn table(
    name: &str,
    recipes: &Path,
    scale: &str,
    view: &TableView,
    store: &Store,
) -> anyhow::Result<()> {
    let (spec, plan) = spec_and_plan(name, recipes, scale)?;
    let (written, shown) = match view {
        TableView::Cells(v) if v.is_standard() => {
            let table = report::assemble(&spec, &plan, store, scale)?;
            let md = report::Exporter::render(&report::Markdown, &table);
            (report::write(&table, store)?, md)
        }
        TableView::Cells(v) => {
            let t = report::assemble_view(&spec, &plan, store, scale, v)?;
            let md = report::view::markdown(&t);
            let files = [("md", md.clone()), ("csv", report::view::csv(&t))];
            let label = v.label();
            (
                report::write_files(&t.table, Some(&label), &files, store)?,
                md,
            )
        }
        TableView::Verdicts => {
            let table = report::assemble(&spec, &plan, store, scale)?;
            let orderings: Vec<_> = spec
                .raw
                .orderings
                .iter()
                .map(|o| o.get_ref().clone())
                .collect();
            let v = report::verdict::assess(&table, &orderings)?;
            let md = report::verdict::markdown(&v, &table);
            let files = [
                ("md", md.clone()),
                ("csv", report::verdict::csv(&v, &table)),
            ];
            (
                report::write_files(&table, Some("verdicts"), &files, store)?,
                md,
            )
        }
    };
    out!("{shown}");
    for p in written {
        eprintln!("wrote {}", p.display());
    }
    damaged_weights(&spec.name, &plan, store);
    Ok(())
}

/// Says so of each done run of table `name` whose weights are not the bytes its done
/// record vouches for: its numbers stand (the result files are vouched for apart), but
/// `status` and `run` call it damaged until the file is deleted. Only a done record makes
/// weights damaged, and the table was assembled from the runs' states already, so they
/// are not read again here.
fn damaged_weights(name: &str, plan: &Plan, store: &Store) {
    let runs = plan
        .runs
        .iter()
        .filter(|r| r.cells.iter().any(|(c, _)| c.table == name));
    for r in runs {
        if let Weights::Damaged(why) = store.run(&r.id).weights() {
            eprintln!(
                "note: run {}: {why}; its numbers, which done.toml vouches for, are in the \
                 table; delete its weights file",
                r.id
            );
        }
    }
}

/// `lecal status`: runs by state. Exits 0 when no run is damaged or failed (done,
/// partial and pending runs are progress), 1 when one is (README, "Status").
pub fn status(
    paths: &[PathBuf],
    scale: &str,
    store: &Store,
) -> anyhow::Result<std::process::ExitCode> {
    let (_, plan) = load_plan(paths, scale)?;
    let (damaged, failed) = print_status(&plan, store)?;
    if damaged > 0 {
        eprintln!(
            "error: {damaged} runs are damaged: restore their files (`git checkout`) or remove \
             their folders to train them again"
        );
    }
    if failed > 0 {
        eprintln!(
            "error: {failed} runs failed: see why with `lecal show <run>`; `lecal run \
             --retry-failed` trains them again"
        );
    }
    Ok(match damaged + failed {
        0 => std::process::ExitCode::SUCCESS,
        _ => std::process::ExitCode::FAILURE,
    })
}

/// Prints the runs by state; returns how many are damaged and how many failed.
fn print_status(plan: &Plan, store: &Store) -> anyhow::Result<(usize, usize)> {
    use crate::exec::slurm;
    let states: Vec<RunState> = plan.runs.iter().map(|r| store.state(&r.id)).collect();
    // Runs submitted to Slurm: their jobs' states, from one squeue call.
    let submitted = plan
        .runs
        .iter()
        .zip(&states)
        .any(|(r, st)| *st != RunState::Done && store.run(&r.id).slurm().is_some());
    let queue = match submitted.then(slurm::queue) {
        Some(Ok(q)) => Some(q),
        Some(Err(e)) => {
            eprintln!("note: runs were submitted to Slurm, but {e:#}");
            None
        }
        None => None,
    };
    let job = |r: &PlannedRun| {
        queue
            .as_ref()
            .and_then(|q| slurm::job_note(store, r, q))
            .map_or_else(String::new, |n| format!(" [{n}]"))
    };
    let mut groups: [(&str, Vec<String>); 5] = [
        ("done", vec![]),
        ("partial", vec![]),
        ("failed", vec![]),
        ("pending", vec![]),
        ("damaged", vec![]),
    ];
    for (r, st) in plan.runs.iter().zip(&states) {
        let (k, text) = match st {
            RunState::Done => match store.run(&r.id).weights() {
                Weights::Damaged(why) => (
                    4,
                    format!(
                        "{} ({why}; delete the file, or `lecal run` trains it again when a \
                         student needs it)",
                        r.id
                    ),
                ),
                _ if !store.run(&r.id).vouched() => (
                    0,
                    format!("{} (unverified: no done.toml vouches for its files)", r.id),
                ),
                _ => (0, r.id.clone()),
            },
            RunState::Partial(_) => (
                1,
                format!("{} ({}){}", r.id, st.label(r.spec.schedule.epochs), job(r)),
            ),
            RunState::Failed { epoch, reason } => {
                (2, format!("{} (epoch {epoch}: {reason}){}", r.id, job(r)))
            }
            RunState::Pending => (3, format!("{}{}", r.id, job(r))),
            RunState::Damaged(why) => (4, format!("{} ({why})", r.id)),
        };
        groups[k].1.push(text);
    }
    outln!(
        "{} runs: {}",
        plan.runs.len(),
        groups
            .iter()
            .map(|(n, v)| format!("{} {n}", v.len()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    print_groups(&groups)?;
    Ok((groups[4].1.len(), groups[2].1.len()))
}

/// Each state's runs under its name; of a long list of done runs only the unverified
/// ones.
fn print_groups(groups: &[(&str, Vec<String>)]) -> anyhow::Result<()> {
    for (name, ids) in groups {
        // Long lists of finished runs say nothing the count does not, but for the runs
        // that nothing vouches for.
        let shown: Vec<&String> = match *name == "done" && ids.len() > 50 {
            true => ids.iter().filter(|t| t.contains("(unverified")).collect(),
            false => ids.iter().collect(),
        };
        if shown.is_empty() {
            continue;
        }
        outln!("{name}:");
        for id in shown {
            outln!("  {id}");
        }
    }
    Ok(())
}

/// `lecal models`: the model zoo with parameter counts.
pub fn models() -> anyhow::Result<()> {
    outln!(
        "{:<10} {:>6} {:>14} {:>15} {:>16}",
        "model",
        "depth",
        "params (K=10)",
        "params (K=100)",
        "params (K=1000)"
    );
    for m in ModelName::CIFAR.into_iter().chain(ModelName::IMAGENET) {
        let count = |k| crate::model::parameters_of(m, k);
        outln!(
            "{:<10} {:>6} {:>14} {:>15} {:>16}",
            model_title(m),
            m.cifar_depth()
                .unwrap_or_else(|| m.as_str()["resnet".len()..].parse().unwrap_or(0)),
            group(count(10)?),
            group(count(100)?),
            group(count(1000)?)
        );
    }
    outln!("CIFAR ResNets with 1x1-convolution shortcuts; ResNet18/34/50 in torchvision's layout (7x7 stem, max-pool, 4 stages; its state-dict names, so its published .pth files load as teachers).");
    Ok(())
}

/// 278324 -> "278,324".
fn group(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}
