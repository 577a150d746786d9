//! The Slurm backend (`lecal submit`): the plan's units of work (cohorts, or runs alone)
//! as batch jobs that return at once, one job per unit, each a `lecal run --only <ids>`
//! step on the same results folder.
//!
//! - Teacher before student: `--dependency=afterok:<teacher jobs>` with
//!   `--kill-on-invalid-dep=yes`, so a failed teacher cancels its students. A job fails
//!   only when a run that others need did not finish (`lecal run --job-step`).
//! - `--requeue` and `--signal=B:USR1@<margin>`: the job script forwards the signal to
//!   lecal, which stops before its next step keeping its checkpoint, then requeues the
//!   job; the requeued job resumes the runs from their checkpoints.
//! - A ledger per run (`runs/<id>/slurm.toml`): submitting again skips runs that are done
//!   or whose job is still queued or running; failed runs only with `--retry-failed`.
//! - `--time` from the cohort estimate (`plan::estimate`) with a margin, capped at the
//!   partition's limit (the job then relies on requeue and resume).

use super::sbatch::{pattern_path, sbatch_word, shell_word};
use super::scheduler::units;
use super::select::select;
use crate::plan::{estimate, Cohort, Plan, PlannedRun, Rates};
use crate::store::{now_unix, RunState, SlurmRecord, Store};
use anyhow::{bail, Context};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;

/// Job states in which a job will still train its runs.
const ACTIVE: [&str; 11] = [
    "PENDING",
    "RUNNING",
    "CONFIGURING",
    "COMPLETING",
    "SUSPENDED",
    "REQUEUED",
    "REQUEUE_HOLD",
    "REQUEUE_FED",
    "RESIZING",
    "SIGNALING",
    "STAGE_OUT",
];

/// How long before a job's time limit Slurm signals it (`--signal=B:USR1@…`): time to
/// end the step in progress and requeue.
pub const SIGNAL_MARGIN_SECONDS: u64 = 180;

/// The estimate's margin: a job's `--time` is this many times its estimated hours, plus
/// ten minutes for start-up and evaluation.
pub const TIME_MARGIN: f64 = 1.5;

/// What `lecal submit` was asked.
pub struct SubmitOptions {
    /// `#SBATCH` options of every job (partition, account, qos, GPUs, CPUs, memory, and
    /// the user's extra ones), without the leading `#SBATCH `.
    pub sbatch: Vec<String>,
    /// The user's `--time`, else each job's from `rates`.
    pub time: Option<String>,
    pub rates: Option<Rates>,
    /// The partition whose time limit caps the estimate.
    pub partition: Option<String>,
    /// `lecal run`'s arguments after `run` (recipe paths, scale, device, data folder).
    pub run_args: Vec<String>,
    /// The lecal binary, the working directory and the results folder the jobs use.
    pub lecal: PathBuf,
    pub workdir: PathBuf,
    pub results: PathBuf,
    pub retry_failed: bool,
    pub cohort_memory: Option<u64>,
    /// Whether the jobs fuse their cohorts' students (the cohorts' memory estimate).
    pub fusion: bool,
    pub dry_run: bool,
}

/// A job's state in the queue: `(state, reason)`.
pub type Queue = BTreeMap<String, (String, String)>;

/// Every job `squeue` knows (finished ones for a while too), in one call.
pub fn queue() -> anyhow::Result<Queue> {
    let out = Command::new("squeue")
        .args(["-h", "-t", "all", "-o", "%i|%T|%r"])
        .output()
        .context("cannot run squeue: is this a Slurm cluster?")?;
    if !out.status.success() {
        bail!(
            "squeue failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut p = l.trim().splitn(3, '|');
            let id = p.next()?.to_string();
            Some((
                id,
                (p.next()?.to_string(), p.next().unwrap_or("").to_string()),
            ))
        })
        .collect())
}

pub fn is_active(state: &str) -> bool {
    ACTIVE.contains(&state)
}

/// The job that still trains a run, if its ledger names one that is queued or running.
fn active_job(store: &Store, id: &str, q: &Queue) -> Option<String> {
    let job = store.run(id).slurm()?.job_id;
    q.get(&job).filter(|(s, _)| is_active(s)).map(|_| job)
}

/// What the queue says about a run that is not done and was submitted: its job's state
/// (and reason), and for a job that ended without training it, the teacher that failed.
pub fn job_note(store: &Store, run: &PlannedRun, q: &Queue) -> Option<String> {
    let job = store.run(&run.id).slurm()?.job_id;
    let state = match q.get(&job) {
        Some((s, r)) if r.is_empty() || r == "None" => s.clone(),
        Some((s, r)) => format!("{s}, {r}"),
        None => "no longer in the queue".into(),
    };
    let failed_teacher = run
        .deps
        .iter()
        .find(|d| matches!(store.state(d), RunState::Failed { .. }));
    let active = q.get(&job).is_some_and(|(s, _)| is_active(s));
    let why = match failed_teacher {
        Some(d) if !active => format!(": did not run, its teacher run {d} failed"),
        _ => String::new(),
    };
    Some(format!("Slurm job {job}: {state}{why}"))
}

/// A job to submit: its runs, the jobs it waits for, its script.
#[derive(Debug)]
pub struct Submitted {
    pub name: String,
    pub runs: Vec<String>,
    pub after: Vec<String>,
    pub time: String,
    pub script: PathBuf,
    /// The job id, or in a dry run the shell variable that will hold it.
    pub job: String,
}

/// What a submission did.
#[derive(Debug, Default)]
pub struct SubmitReport {
    pub jobs: Vec<Submitted>,
    /// Runs left as they are, and why (done, queued as job N, failed…).
    pub notes: Vec<String>,
}

// Long: the submission in one place: which runs, their units, the dependency of each
// job on the jobs of its teachers, the script, sbatch and the ledger, in that order.
/// Submits (or with `dry_run` writes and prints) one job per unit of work that trains.
pub fn submit(plan: &Plan, store: &Store, o: &SubmitOptions) -> anyhow::Result<SubmitReport> {
    let sel = select(plan, store, o.retry_failed, None);
    let mut report = SubmitReport::default();
    let ledgers = sel.train.iter().any(|r| store.run(&r.id).slurm().is_some());
    let q = match (ledgers, o.dry_run) {
        (false, _) => Queue::new(),
        (true, false) => queue()?,
        (true, true) => queue().unwrap_or_default(),
    };
    let mut job_of: BTreeMap<String, String> = BTreeMap::new();
    let mut todo = Vec::new();
    for r in &sel.train {
        match active_job(store, &r.id, &q) {
            Some(job) => {
                report
                    .notes
                    .push(format!("{}: queued or running as job {job}", r.id));
                job_of.insert(r.id.clone(), job);
            }
            None => todo.push(*r),
        }
    }
    let limit = o.partition.as_deref().and_then(partition_limit_minutes);
    let dir = o.results.join("slurm");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut shell = vec!["#!/bin/bash".to_string(), "set -euo pipefail".to_string()];
    for unit in units(plan, &todo, o.cohort_memory, o.fusion) {
        let mut after = BTreeSet::new();
        let mut blocked = None;
        for d in unit.iter().flat_map(|r| &r.deps) {
            if let Some(j) = job_of.get(d) {
                after.insert(j.clone());
            } else if store.state(d) != RunState::Done {
                blocked = Some(d.clone());
            }
        }
        if let Some(d) = blocked {
            for r in &unit {
                report.notes.push(format!(
                    "{}: not submitted: teacher run {d} is neither done nor queued \
                     (failed earlier? `--retry-failed` submits it again)",
                    r.id
                ));
            }
            continue;
        }
        let n = report.jobs.len() + 1;
        let name = match unit.len() {
            1 => format!("lecal-{}", unit[0].id),
            k => format!("lecal-{}-and-{}", unit[0].id, k - 1),
        };
        let time = job_time(plan, &unit, o, limit, &mut report.notes)?;
        let script = dir.join(format!("{name}.sh"));
        crate::store::write_atomic(&script, job_script(&name, &unit, &time, o)?.as_bytes())?;
        let mut args = vec!["--parsable".to_string()];
        if !after.is_empty() {
            let ids: Vec<String> = after.iter().cloned().collect();
            args.push(format!("--dependency=afterok:{}", ids.join(":")));
            args.push("--kill-on-invalid-dep=yes".into());
        }
        let job = if o.dry_run {
            let var = format!("j{n}");
            let script = shell_word(&script.display().to_string());
            let line = format!("{var}=$(sbatch {} {script})", args.join(" "));
            shell.push(line);
            format!("${var}")
        } else {
            let id = sbatch(&args, &script)?;
            let rec = SlurmRecord {
                job_id: id.clone(),
                submitted_unix: now_unix(),
                script: script.display().to_string(),
                runs: unit.iter().map(|r| r.id.clone()).collect(),
            };
            for r in &unit {
                store.run(&r.id).write_slurm(&rec)?;
            }
            id
        };
        for r in &unit {
            job_of.insert(r.id.clone(), job.clone());
        }
        report.jobs.push(Submitted {
            name,
            runs: unit.iter().map(|r| r.id.clone()).collect(),
            after: after.into_iter().collect(),
            time,
            script,
            job,
        });
    }
    if o.dry_run {
        let path = dir.join("submit.sh");
        crate::store::write_atomic(&path, (shell.join("\n") + "\n").as_bytes())?;
    }
    Ok(report)
}

fn sbatch(args: &[String], script: &std::path::Path) -> anyhow::Result<String> {
    let out = Command::new("sbatch")
        .args(args)
        .arg(script)
        .output()
        .context("cannot run sbatch: is this a Slurm cluster?")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let id = text.trim().split(';').next().unwrap_or("").to_string();
    if !out.status.success() || id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        bail!(
            "sbatch {} failed: {}{}",
            script.display(),
            text.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(id)
}

/// A job's `--time`: the user's, or the unit's estimated hours with the margin, capped at
/// the partition's limit.
fn job_time(
    plan: &Plan,
    unit: &[&PlannedRun],
    o: &SubmitOptions,
    limit: Option<u64>,
    notes: &mut Vec<String>,
) -> anyhow::Result<String> {
    if let Some(t) = &o.time {
        return Ok(t.clone());
    }
    let Some(rates) = &o.rates else {
        bail!("give --time, or --bench with `make bench`'s CSV from the cluster's device");
    };
    let ids: BTreeSet<&str> = unit.iter().map(|r| r.id.as_str()).collect();
    let cohort = Cohort {
        runs: unit.iter().map(|r| r.id.clone()).collect(),
        level: 0,
    };
    let hours = estimate(plan, &ids, &[cohort], rates).cohort_hours;
    let mut minutes = (hours * 60.0 * TIME_MARGIN + 10.0).ceil() as u64;
    if let Some(l) = limit.filter(|&l| minutes > l) {
        notes.push(format!(
            "{}: estimated {} with the margin, above the partition's limit {}: the job \
             runs to the limit, is signalled {SIGNAL_MARGIN_SECONDS} s before, requeues \
             itself and resumes",
            unit[0].id,
            format_minutes(minutes),
            format_minutes(l)
        ));
        minutes = l;
    }
    Ok(format_minutes(minutes))
}

/// Slurm's `D-HH:MM:00`.
pub fn format_minutes(m: u64) -> String {
    format!("{}-{:02}:{:02}:00", m / 1440, m % 1440 / 60, m % 60)
}

/// A partition's time limit in minutes (`sinfo`), `None` when unlimited or unknown.
fn partition_limit_minutes(partition: &str) -> Option<u64> {
    let out = Command::new("sinfo")
        .args(["-h", "-p", partition, "-o", "%l"])
        .output()
        .ok()?;
    parse_limit(String::from_utf8_lossy(&out.stdout).lines().next()?)
}

/// `[D-]HH:MM:SS`, `MM:SS` or `infinite` in minutes.
pub fn parse_limit(s: &str) -> Option<u64> {
    let s = s.trim();
    let (days, rest) = match s.split_once('-') {
        Some((d, r)) => (d.parse::<u64>().ok()?, r),
        None => (0, s),
    };
    let parts: Vec<u64> = rest
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let (h, m) = match parts.as_slice() {
        [h, m, _] => (*h, *m),
        [m, _] => (0, *m),
        [m] => (0, *m),
        _ => return None,
    };
    Some(days * 1440 + h * 60 + m)
}

/// The job script: `#SBATCH` options, then `lecal run --only <its runs>`, with the
/// signal forwarded and the job requeued when lecal stopped on it.
fn job_script(
    name: &str,
    unit: &[&PlannedRun],
    time: &str,
    o: &SubmitOptions,
) -> anyhow::Result<String> {
    let output = format!(
        "{}/slurm/%x-%j.out",
        pattern_path(&o.results).map_err(anyhow::Error::msg)?
    );
    let mut options = vec![
        format!("--job-name={name}"),
        format!("--output={output}"),
        "--open-mode=append".into(),
        "--requeue".into(),
        format!("--signal=B:USR1@{SIGNAL_MARGIN_SECONDS}"),
        format!("--time={time}"),
    ];
    options.extend(o.sbatch.iter().cloned());
    let mut s = vec!["#!/bin/bash".to_string()];
    s.extend(
        options
            .iter()
            .map(|x| format!("#SBATCH {}", sbatch_word(x))),
    );
    let ids: Vec<&str> = unit.iter().map(|r| r.id.as_str()).collect();
    let mut cmd = vec![
        shell_word(&o.lecal.display().to_string()),
        "--results".into(),
        shell_word(&o.results.display().to_string()),
        "run".into(),
    ];
    cmd.extend(o.run_args.iter().map(|a| shell_word(a)));
    cmd.push(format!("--only={}", ids.join(",")));
    cmd.push("--job-step".into());
    if o.retry_failed {
        cmd.push("--retry-failed".into());
    }
    match o.cohort_memory {
        None => cmd.push("--no-cohorts".into()),
        Some(b) => cmd.push(format!(
            "--cohort-memory={}",
            b as f64 / (1u64 << 30) as f64
        )),
    }
    s.push(String::new());
    s.push(format!("# lecal: {} runs: {}", ids.len(), ids.join(" ")));
    s.push(format!(
        "cd {}",
        shell_word(&o.workdir.display().to_string())
    ));
    s.push(format!("{} &", cmd.join(" ")));
    s.push(
        r#"child=$!
# Slurm signals the batch shell before the time limit: lecal stops before its next step,
# keeping its checkpoints.
trap 'kill -USR1 "$child" 2>/dev/null' USR1
rc=0
wait "$child" || rc=$?
while kill -0 "$child" 2>/dev/null; do rc=0; wait "$child" || rc=$?; done
if [ "$rc" -eq 138 ]; then
  # Stopped by SIGUSR1 (128 + 10): back into the queue, to resume from the checkpoints.
  scontrol requeue "$SLURM_JOB_ID"
fi
exit "$rc""#
            .into(),
    );
    Ok(s.join("\n") + "\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slurm_times_parse_and_print() {
        assert_eq!(parse_limit("1-02:03:04"), Some(1440 + 123));
        assert_eq!(parse_limit("30:00"), Some(30));
        assert_eq!(parse_limit("02:00:00"), Some(120));
        assert_eq!(parse_limit("infinite"), None);
        assert_eq!(format_minutes(1440 + 123), "1-02:03:00");
    }
}
