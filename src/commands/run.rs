//! `lecal run`: check what the selected runs need, then train them.

use super::{align_thread_pools, load_plan};
use crate::device::{self, DeviceChoice, DeviceList};
use crate::exec::{self, Ended, Progress};
use crate::plan;
use crate::store::Store;
use crate::train::CandleTrainer;
use anyhow::{bail, Context};
use std::path::{Path, PathBuf};

/// What `lecal run` was asked besides the recipes.
pub struct RunOptions {
    pub conv: crate::model::ConvChoice,
    pub cpu_kernels: crate::model::CpuKernelChoice,
    pub fusion: crate::train::FusionChoice,
    pub device: DeviceChoice,
    /// Several devices (`--devices`), instead of `device`.
    pub devices: Option<DeviceList>,
    pub scale: String,
    pub data_dir: PathBuf,
    pub jobs: Option<usize>,
    pub retry_failed: bool,
    /// A cohort's memory budget in bytes; `None`: each run alone.
    pub cohort_memory: Option<u64>,
    /// Train only these runs (`--only`).
    pub only: Option<std::collections::BTreeSet<String>>,
    /// A cluster job's step (`--job-step`): exit non-zero only when a run that other runs
    /// need did not finish.
    pub job_step: bool,
}

/// `lecal run`: trains every selected run of the recipes, teachers first.
pub fn run(
    paths: &[PathBuf],
    o: RunOptions,
    store: &Store,
) -> anyhow::Result<std::process::ExitCode> {
    align_thread_pools();
    let (set, plan) = load_plan(paths, &o.scale)?;
    execute(&set, &plan, o, store)
}

/// Checks what the selected runs of `plan` need, then trains them into `store` (`lecal
/// run` after loading the plan; `lecal verify` into its scratch folder). Call
/// `align_thread_pools` before anything starts a thread pool.
pub(super) fn execute(
    set: &crate::recipe::RecipeSet,
    plan: &plan::Plan,
    o: RunOptions,
    store: &Store,
) -> anyhow::Result<std::process::ExitCode> {
    // What will train, decided where the executor decides it.
    if let Some(only) = &o.only {
        if let Some(id) = only.iter().find(|id| plan.get(id).is_none()) {
            bail!("--only: run {id} is not in the plan of these recipes");
        }
    }
    let pending = exec::select(plan, store, o.retry_failed, o.only.as_ref()).train;
    let mut checked = std::collections::BTreeSet::new();
    let hashed = hashed_at_load(set);
    for r in &pending {
        crate::data::check_available(&r.spec.data, &o.data_dir)?;
        check_teacher_checkpoints(r, &hashed, &mut checked)?;
    }
    let devices = match &o.devices {
        Some(list) => device::open_all(list)?,
        None => vec![(String::new(), device::open(o.device)?)],
    };
    if !pending.is_empty() {
        check_writable(store)?;
    }
    let jobs = o.jobs.unwrap_or(1).clamp(1, pending.len().max(1));
    let trainers: Vec<(String, CandleTrainer)> = devices
        .into_iter()
        .map(|(name, dev)| {
            let kernels =
                crate::model::Kernels::new(o.conv, o.cpu_kernels).map_err(anyhow::Error::msg)?;
            // lecal's kernels checked on this device before anything trains with them.
            let checked = crate::model::kernels::selfcheck::checked(kernels, &dev);
            let fused = o.fusion.on(dev.is_cuda());
            let mut t =
                CandleTrainer::new(dev, checked.kernels, o.data_dir.clone()).with_fusion(fused);
            t.fallbacks = checked.fallbacks;
            Ok((name, t))
        })
        .collect::<anyhow::Result<_>>()?;
    let slots = jobs * trainers.len();
    let opts = exec::Options {
        jobs,
        retry_failed: o.retry_failed,
        cohort_memory: o.cohort_memory,
        fusion: trainers.iter().any(|(_, t)| t.fusion),
        only: o.only.clone(),
    };
    crate::interrupt::install()?;
    let named = trainers
        .iter()
        .map(|(n, t)| (n.clone(), t as &dyn crate::train::Trainer))
        .collect();
    let report = exec::execute_on(plan, store, named, Progress::new(slots), opts);
    Ok(tell(plan, &report, o.job_step))
}

/// Says how the invocation went (runs trained, failed, stopped, and why) and gives the
/// exit status.
fn tell(plan: &plan::Plan, report: &exec::Report, job_step: bool) -> std::process::ExitCode {
    let trained = report.count(|e| *e == Ended::Trained);
    let already = report.count(|e| *e == Ended::AlreadyDone);
    let stopped = report.stopped();
    let failures = report.failures();
    let line = format!(
        "{} runs: {trained} trained, {already} already done, {} failed or skipped, {} stopped, {} not started",
        plan.runs.len(),
        failures.len(),
        stopped.len(),
        plan.runs.len() - report.ended.len(),
    );
    // Not `outln!`: a closed pipe must not hide the failures below or the exit status.
    let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), (line + "\n").as_bytes());
    if !failures.is_empty() {
        eprintln!("error: {} runs did not finish:", failures.len());
        for (id, e) in &failures {
            let from = plan
                .get(id)
                .map_or_else(String::new, |r| plan.recipes_of(r));
            match e {
                Ended::Failed(why) => eprintln!("  {id} ({from}): failed: {why}"),
                Ended::Skipped(why) => eprintln!("  {id}: skipped: {why}"),
                _ => {}
            }
        }
    }
    for (id, why) in &stopped {
        eprintln!("  {id}: {why}");
    }
    match &report.halted {
        Some(exec::Halt::Signal(sig)) => {
            eprintln!(
                "stopped by {}: finished epochs are kept; run the same command again to resume",
                crate::interrupt::signal_name(*sig)
            );
            return std::process::ExitCode::from((128 + sig) as u8);
        }
        Some(exec::Halt::Storage(why)) => {
            eprintln!("error: stopped, the results folder cannot be written: {why}");
            eprintln!("finished epochs are kept; free space or fix permissions, then run the same command again to resume");
            return std::process::ExitCode::FAILURE;
        }
        None => {}
    }
    // A cluster job's status is what its dependants wait on (`afterok`): it fails only
    // when a run they need did not finish; other failures stay in their runs' records.
    let needed = |id: &String| plan.get(id).is_some_and(|r| !r.teacher_of.is_empty());
    if failures.iter().any(|(id, _)| !job_step || needed(id)) {
        std::process::ExitCode::FAILURE
    } else {
        std::process::ExitCode::SUCCESS
    }
}

/// Fails unless a file can be created in the results folder, before anything is trained.
/// The probe is named by process: processes starting together on one folder must not
/// remove each other's.
fn check_writable(store: &Store) -> anyhow::Result<()> {
    // In a folder of its own, as a run's files are (`runs/` itself may be a link).
    let folder = store
        .runs_dir()
        .join(format!(".lecal-write-test.{}", std::process::id()));
    crate::store::write_atomic(&folder.join("probe"), b"")
        .and_then(|_| std::fs::remove_dir_all(&folder).map_err(Into::into))
        .with_context(|| {
            format!(
                "the results folder {} is not writable",
                store.root.display()
            )
        })
}

/// Checks external teacher checkpoints against their declared models before training.
/// Checkpoints the recipe loader hashed a moment ago: they need no second read for their
/// SHA-256; pinned ones (`sha256` in the recipe) are checked against their pin.
fn hashed_at_load(set: &crate::recipe::RecipeSet) -> std::collections::BTreeSet<String> {
    set.recipes
        .iter()
        .flat_map(|r| r.checkpoints.values())
        .filter(|f| matches!(f.sha256, Some(Ok(_))))
        .map(|f| f.path.to_string_lossy().into_owned())
        .collect()
}

fn check_teacher_checkpoints(
    r: &plan::PlannedRun,
    hashed: &std::collections::BTreeSet<String>,
    checked: &mut std::collections::BTreeSet<String>,
) -> anyhow::Result<()> {
    for t in &r.spec.teachers {
        if let crate::spec::TeacherRef::Checkpoint {
            model,
            path,
            sha256,
        } = t
        {
            if checked.insert(path.clone()) {
                let p = Path::new(path);
                let cells: Vec<String> = r.cells.iter().map(|(c, _)| c.to_string()).collect();
                let user = || format!("the teacher of {} ({})", cells.join(", "), r.id);
                if !hashed.contains(path) {
                    let found = crate::hash::file_sha256(p)
                        .with_context(|| format!("cannot read {}", p.display()))
                        .with_context(user)?;
                    if &found != sha256 {
                        bail!(
                            "{}: its SHA-256 is {found}, the recipe's `sha256` is {sha256} ({})",
                            p.display(),
                            user()
                        );
                    }
                }
                let tensors = crate::model::checkpoint::read(p).with_context(user)?;
                crate::model::checkpoint::check(&tensors, *model, r.spec.data.classes, p)
                    .with_context(user)?;
            }
        }
    }
    Ok(())
}
