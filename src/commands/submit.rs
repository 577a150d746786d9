//! `lecal submit`: the plan as Slurm batch jobs (`exec::slurm`), submitted or, with
//! `--dry-run`, written and printed.

use super::load_plan;
use crate::exec::sbatch;
use crate::exec::slurm::{self, SubmitOptions};
use crate::plan::Rates;
use crate::store::Store;
use anyhow::Context;
use std::path::PathBuf;

/// What `lecal submit` was asked besides the recipes.
#[derive(Debug, clap::Args)]
pub struct SubmitArgs {
    /// full, quick or smoke: shrink epochs and data (scaled runs get their own ids).
    #[arg(long, default_value = "full")]
    pub scale: String,
    /// The device each job trains on: cuda:0 (the job's GPU), cpu or auto.
    #[arg(long, default_value = "auto", value_parser = sbatch::device)]
    pub device: String,
    /// Folder holding the datasets, as the jobs see it.
    #[arg(long, default_value = "data", env = "LECAL_DATA")]
    pub data_dir: PathBuf,
    #[arg(long, value_parser = sbatch::name)]
    pub partition: Option<String>,
    #[arg(long, value_parser = sbatch::name)]
    pub account: Option<String>,
    #[arg(long, value_parser = sbatch::name)]
    pub qos: Option<String>,
    /// Every job's time limit (Slurm's format); by default each job's own, from the
    /// estimate of its runs with a margin, capped at the partition's limit.
    #[arg(long, value_parser = sbatch::time)]
    pub time: Option<String>,
    /// GPUs of each job (0: CPU jobs).
    #[arg(long, default_value_t = 1)]
    pub gpus_per_job: u32,
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub cpus_per_job: Option<u32>,
    /// Memory of each job (Slurm's format, e.g. 16G).
    #[arg(long, value_parser = sbatch::mem)]
    pub mem: Option<String>,
    /// More sbatch options for every job, e.g. '--constraint=a100 --nice=10' (split into
    /// words as a shell would: '--comment="a b"' is one option).
    #[arg(long, allow_hyphen_values = true, value_parser = sbatch::options)]
    pub extra_sbatch: Vec<Vec<String>>,
    /// `make bench`'s CSV from the cluster's device, for the time estimates.
    #[arg(long)]
    pub bench: Option<PathBuf>,
    /// Submit runs that failed earlier again.
    #[arg(long)]
    pub retry_failed: bool,
    /// Fuse a cohort's students of one architecture in each job: auto (on in GPU jobs),
    /// on, off.
    #[arg(long, value_enum, default_value = "auto")]
    pub fusion: crate::train::FusionChoice,
    /// `--fusion off`.
    #[arg(long)]
    pub no_fusion: bool,
    /// One job per run instead of one per cohort.
    #[arg(long)]
    pub no_cohorts: bool,
    /// A cohort's memory budget in GiB; bigger cohorts are split.
    #[arg(long, value_parser = super::parse_gib, default_value = "16", value_name = "GIB")]
    pub cohort_memory: u64,
    /// Write the job scripts and print their sbatch lines; submit nothing.
    #[arg(long)]
    pub dry_run: bool,
}

fn absolute(p: &std::path::Path) -> anyhow::Result<PathBuf> {
    Ok(std::env::current_dir()?.join(p))
}

/// `lecal submit`: one batch job per unit of work that trains, teachers' jobs first.
pub fn submit(
    paths: &[PathBuf],
    a: SubmitArgs,
    store: &Store,
) -> anyhow::Result<std::process::ExitCode> {
    let (_, plan) = load_plan(paths, &a.scale)?;
    let rates = match (&a.bench, a.gpus_per_job) {
        (Some(p), _) => super::estimate::measured(p)?,
        (None, 0) => Rates::cpu_assumed(),
        (None, _) => Rates::gpu_assumed(),
    };
    if a.time.is_none() {
        outln!(
            "time limits from the estimate ({}), ×{} + 10 min",
            rates.source,
            slurm::TIME_MARGIN
        );
    }
    let rates = Some(rates);
    let mut run_args: Vec<String> = paths
        .iter()
        .map(|p| absolute(p).map(|p| p.display().to_string()))
        .collect::<anyhow::Result<_>>()?;
    run_args.extend([
        format!("--scale={}", a.scale),
        format!("--device={}", a.device),
        format!("--data-dir={}", absolute(&a.data_dir)?.display()),
    ]);
    let fusion = crate::train::FusionChoice::from_flags(a.fusion, a.no_fusion);
    if fusion != crate::train::FusionChoice::Auto {
        run_args.push(format!("--fusion={}", fusion.as_str()));
    }
    let o = SubmitOptions {
        sbatch: sbatch_options(&a),
        time: a.time,
        rates,
        partition: a.partition,
        run_args,
        lecal: std::env::current_exe().context("cannot find the lecal binary")?,
        workdir: std::env::current_dir()?,
        results: absolute(&store.root)?,
        retry_failed: a.retry_failed,
        cohort_memory: (!a.no_cohorts).then_some(a.cohort_memory),
        fusion: fusion
            .on(a.device.starts_with("cuda") || (a.device == "auto" && a.gpus_per_job > 0)),
        dry_run: a.dry_run,
    };
    let report = slurm::submit(&plan, store, &o)?;
    tell(&report, a.dry_run, &o.results)?;
    Ok(std::process::ExitCode::SUCCESS)
}

/// Every job's `#SBATCH` options.
fn sbatch_options(a: &SubmitArgs) -> Vec<String> {
    let mut sbatch = Vec::new();
    let mut opt = |k: &str, v: &Option<String>| {
        if let Some(v) = v {
            sbatch.push(format!("--{k}={v}"));
        }
    };
    opt("partition", &a.partition);
    opt("account", &a.account);
    opt("qos", &a.qos);
    opt("mem", &a.mem);
    opt("cpus-per-task", &a.cpus_per_job.map(|c| c.to_string()));
    if a.gpus_per_job > 0 {
        sbatch.push(format!("--gpus={}", a.gpus_per_job));
    }
    sbatch.extend(a.extra_sbatch.iter().flatten().cloned());
    sbatch
}

/// Says what was submitted (or would be) and what was left alone.
fn tell(
    report: &slurm::SubmitReport,
    dry_run: bool,
    results: &std::path::Path,
) -> anyhow::Result<()> {
    for n in &report.notes {
        outln!("{n}");
    }
    for j in &report.jobs {
        let after = if j.after.is_empty() {
            String::new()
        } else {
            format!(
                " --dependency=afterok:{} --kill-on-invalid-dep=yes",
                j.after.join(":")
            )
        };
        let what = if dry_run { "would submit" } else { "submitted" };
        outln!(
            "{what} job {} ({} runs, --time={}){after}: sbatch {}",
            j.job,
            j.runs.len(),
            j.time,
            j.script.display()
        );
    }
    let dir = results.join("slurm");
    match (dry_run, report.jobs.len()) {
        (true, _) => outln!(
            "dry run: nothing submitted; the job scripts and {} are in {}",
            "submit.sh (their sbatch lines)",
            dir.display()
        ),
        (false, 0) => outln!("nothing to submit"),
        (false, n) => outln!(
            "{n} jobs submitted; `lecal status` follows them, their output is in {}",
            dir.display()
        ),
    }
    Ok(())
}
