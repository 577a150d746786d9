//! The command line: clap types, converted once into typed options, and one function per
//! subcommand that strings the pipeline stages together.

use crate::device::{self, DeviceChoice};
use crate::exec::{self, Ended, Progress};
use crate::plan::{self, model_title, Plan, Scale};
use crate::recipe::{self, ModelName, RecipeSet};
use crate::report;
use crate::store::{RunState, Store};
use crate::train::CandleTrainer;
use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};

/// `println!` and `print!` to standard output that return a write error, such as a closed
/// pipe (`lecal plan … | head`, which `main` ends quietly), instead of panicking.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)?
    }};
}
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        write!(std::io::stdout().lock(), $($arg)*)?
    }};
}

#[derive(Debug, Parser)]
#[command(
    name = "lecal",
    version,
    about = "Regenerates the tables of \"Label Enhancement for Better Model Generalization and Calibration\" from TOML recipes"
)]
pub struct Cli {
    /// The results folder.
    #[arg(long, global = true, default_value = "results", env = "LECAL_RESULTS")]
    pub results: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show the runs that recipes expand to, their state and dependencies.
    Plan {
        /// Recipe files or folders.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// full, quick or smoke: shrink epochs and data (scaled runs get their own ids).
        #[arg(long, default_value = "full")]
        scale: String,
    },
    /// Train every pending run of the recipes, teachers first; completed runs are skipped.
    Run {
        /// Recipe files or folders.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// auto, cpu or cuda:N.
        #[arg(long, default_value = "auto")]
        device: DeviceChoice,
        /// full, quick or smoke: shrink epochs and data (scaled runs get their own ids).
        #[arg(long, default_value = "full")]
        scale: String,
        /// Folder holding the datasets (cifar-10-batches-bin/, cifar-100-binary/).
        #[arg(long, default_value = "data", env = "LECAL_DATA")]
        data_dir: PathBuf,
        /// Runs trained at once in this process, sharing its threads (default 1).
        #[arg(long, value_parser = parse_jobs)]
        jobs: Option<usize>,
        /// Attempt again the runs that failed in an earlier invocation.
        #[arg(long)]
        retry_failed: bool,
    },
    /// Assemble a table from its recipes and results into <results>/tables/<name>.md and .csv.
    Table {
        /// A table name (found as <name>.table.toml under --recipes) or a table spec file.
        table: String,
        /// Where to look for table specs by name.
        #[arg(long, default_value = "recipes")]
        recipes: PathBuf,
        /// full, quick or smoke: shrink epochs and data (scaled runs get their own ids).
        #[arg(long, default_value = "full")]
        scale: String,
    },
    /// Count and list done, partial, pending and failed runs.
    Status {
        /// Recipes whose runs to report (default: every recipe under recipes/).
        paths: Vec<PathBuf>,
        /// full, quick or smoke: shrink epochs and data (scaled runs get their own ids).
        #[arg(long, default_value = "full")]
        scale: String,
    },
    /// The model zoo with parameter counts for 10 and 100 classes.
    Models,
    /// Images per second of a training step, a teacher's forward pass and the data
    /// pipeline (`make bench` sets these beside PyTorch's).
    Bench {
        #[arg(long, default_value = "cpu")]
        device: DeviceChoice,
        /// Models whose training step to time.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "resnet20,resnet56,resnet110"
        )]
        models: Vec<String>,
        /// Also time candle's own convolution (on the CPU: ResNet20 and the teacher only).
        #[arg(long)]
        baseline: bool,
        /// Time each measurement for at least this many seconds.
        #[arg(long, default_value_t = 5.0)]
        min_seconds: f64,
        /// Parts to time: train, teacher, data.
        #[arg(long, value_delimiter = ',', default_value = "train,teacher,data")]
        parts: Vec<String>,
        /// Write the measurements as CSV here.
        #[arg(long)]
        csv: Option<PathBuf>,
        /// Instead: one training step on this device against the same step on the CPU.
        #[arg(long)]
        check: bool,
    },
}

/// Runs a parsed command line; the returned code is the process exit status.
pub fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    let store = Store::new(&cli.results);
    if store.root.exists() && !store.root.is_dir() {
        anyhow::bail!(
            "the results folder `{}` is a file, not a folder (--results, LECAL_RESULTS)",
            store.root.display()
        );
    }
    match cli.command {
        Command::Plan { paths, scale } => {
            let (_, plan) = load_plan(&paths, &scale)?;
            print_plan(&plan, &store)?;
        }
        Command::Run {
            paths,
            device,
            scale,
            data_dir,
            jobs,
            retry_failed,
        } => {
            let opts = RunOptions {
                device,
                scale,
                data_dir,
                jobs,
                retry_failed,
            };
            return run_cmd(&paths, opts, &store);
        }
        Command::Table {
            table,
            recipes,
            scale,
        } => table_cmd(&table, &recipes, &scale, &store)?,
        Command::Status { paths, scale } => {
            let paths = if paths.is_empty() {
                vec![PathBuf::from("recipes")]
            } else {
                paths
            };
            let (_, plan) = load_plan(&paths, &scale)?;
            print_status(&plan, &store)?;
        }
        Command::Models => print_models()?,
        Command::Bench {
            device,
            models,
            baseline,
            min_seconds,
            parts,
            csv,
            check,
        } => {
            let opts = BenchOptions {
                baseline,
                min_seconds,
                parts,
                csv,
                check,
            };
            return bench_cmd(device, &models, opts);
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

fn parse_jobs(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("`{s}` is not a number of runs at once: 1 or more")),
    }
}

fn parse_scale(s: &str) -> anyhow::Result<Scale> {
    Scale::named(s).map_err(|e| anyhow::anyhow!("--scale: {e}"))
}

/// Recipes → validated set → plan, failing with every recipe problem at once.
pub fn load_plan(paths: &[PathBuf], scale: &str) -> anyhow::Result<(RecipeSet, Plan)> {
    let scale = parse_scale(scale)?;
    let set = recipe::load(paths)?;
    if set.recipes.is_empty() {
        bail!(
            "no recipes found in {}",
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let plan = plan::build(&set, &scale)?;
    Ok((set, plan))
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
        let mut what: Vec<String> = r.cells.iter().map(|(c, _)| c.to_string()).collect();
        if !r.teacher_of.is_empty() {
            what.push(format!("teacher of {} runs", r.teacher_of.len()));
            if state == RunState::Done && !store.has_weights(&r.id) {
                what.push(match store.rebuild_failure(&r.id) {
                    Some(f) => format!(
                        "no weights: training it again failed in epoch {} ({}); --retry-failed",
                        f.epoch, f.reason
                    ),
                    None => "no weights: trains again when a student needs them".into(),
                });
            }
        }
        if let RunState::Damaged(why) = &state {
            what.push(why.clone());
        }
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

struct RunOptions {
    device: DeviceChoice,
    scale: String,
    data_dir: PathBuf,
    jobs: Option<usize>,
    retry_failed: bool,
}

fn run_cmd(
    paths: &[PathBuf],
    o: RunOptions,
    store: &Store,
) -> anyhow::Result<std::process::ExitCode> {
    align_thread_pools();
    let (_, plan) = load_plan(paths, &o.scale)?;
    let pending: Vec<_> = plan
        .runs
        .iter()
        .filter(|r| !matches!(store.state(&r.id), RunState::Done | RunState::Damaged(_)))
        .collect();
    let mut checked = std::collections::BTreeSet::new();
    for r in &pending {
        crate::data::check_available(&r.spec.data, &o.data_dir)?;
        check_teacher_checkpoints(r, &mut checked)?;
    }
    let dev = device::open(o.device)?;
    if !pending.is_empty() {
        check_writable(store)?;
    }
    let jobs = o.jobs.unwrap_or(1).clamp(1, pending.len().max(1));
    let trainer = CandleTrainer::new(dev, o.data_dir);
    let opts = exec::Options {
        jobs,
        retry_failed: o.retry_failed,
    };
    crate::interrupt::install()?;
    let report = exec::execute(&plan, store, &trainer, Progress::new(jobs), opts);
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
            match e {
                Ended::Failed(why) => eprintln!("  {id}: failed: {why}"),
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
            return Ok(std::process::ExitCode::from((128 + sig) as u8));
        }
        Some(exec::Halt::Storage(why)) => {
            eprintln!("error: stopped, the results folder cannot be written: {why}");
            eprintln!("finished epochs are kept; free space or fix permissions, then run the same command again to resume");
            return Ok(std::process::ExitCode::FAILURE);
        }
        None => {}
    }
    if failures.is_empty() {
        Ok(std::process::ExitCode::SUCCESS)
    } else {
        Ok(std::process::ExitCode::FAILURE)
    }
}

/// candle sizes its pool by physical cores and rayon by logical ones; when they differ,
/// threads spin (measured: 4.4 s of 10 s in the kernel). One number for both, read when
/// the pools start, which is after this.
///
/// candle's element-wise pool also spins 25,000 rounds after each operation before it
/// sleeps, on the cores that lecal's kernels (rayon) need next. Without the spin
/// (`CANDLE_BARRIER_POOL_SPIN_LIMIT=0`, unless set) a ResNet20 step took 618-642 CPU-ms
/// instead of 661-702, and ResNet8 steps and teacher passes were as fast or faster.
fn align_thread_pools() {
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        std::env::set_var("RAYON_NUM_THREADS", cores.to_string());
    }
    if std::env::var_os("CANDLE_BARRIER_POOL_SPIN_LIMIT").is_none() {
        std::env::set_var("CANDLE_BARRIER_POOL_SPIN_LIMIT", "0");
    }
}

/// Fails unless a file can be created in the results folder, before anything is trained.
/// The probe is named by process: processes starting together on one folder must not
/// remove each other's.
fn check_writable(store: &Store) -> anyhow::Result<()> {
    let probe = store
        .runs_dir()
        .join(format!(".lecal-write-test.{}", std::process::id()));
    crate::store::write_atomic(&probe, b"")
        .and_then(|_| std::fs::remove_file(&probe).map_err(Into::into))
        .with_context(|| {
            format!(
                "the results folder {} is not writable",
                store.root.display()
            )
        })
}

/// Checks external teacher checkpoints against their declared models before training.
fn check_teacher_checkpoints(
    r: &plan::PlannedRun,
    checked: &mut std::collections::BTreeSet<String>,
) -> anyhow::Result<()> {
    for t in &r.spec.teachers {
        if let plan::TeacherRef::Checkpoint {
            model,
            path,
            sha256,
        } = t
        {
            if checked.insert(path.clone()) {
                let p = Path::new(path);
                let cells: Vec<String> = r.cells.iter().map(|(c, _)| c.to_string()).collect();
                let user = || format!("the teacher of {} ({})", cells.join(", "), r.id);
                let found = crate::store::checkpoint::file_sha256(p)
                    .with_context(|| format!("cannot read {}", p.display()))
                    .with_context(user)?;
                if &found != sha256 {
                    bail!(
                        "{}: its SHA-256 is {found}, the recipe's `sha256` is {sha256} ({})",
                        p.display(),
                        user()
                    );
                }
                let tensors = crate::model::checkpoint::read(p).with_context(user)?;
                crate::model::checkpoint::check(&tensors, *model, r.spec.data.classes, p)
                    .with_context(user)?;
            }
        }
    }
    Ok(())
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

fn table_cmd(name: &str, recipes: &Path, scale: &str, store: &Store) -> anyhow::Result<()> {
    let spec_path = find_table_spec(name, recipes)?;
    let dir = spec_path.parent().unwrap_or(Path::new(".")).to_path_buf();
    let (set, plan) = load_plan(&[dir], scale)?;
    let spec = set
        .tables
        .values()
        .find(|t| t.path == spec_path)
        .cloned()
        .map_or_else(|| recipe::load_table(&spec_path), Ok)?;
    let table = report::assemble(&spec, &plan, store, scale)?;
    let written = report::write(&table, store)?;
    out!("{}", report::Exporter::render(&report::Markdown, &table));
    for p in written {
        eprintln!("wrote {}", p.display());
    }
    Ok(())
}

fn print_status(plan: &Plan, store: &Store) -> anyhow::Result<()> {
    let mut groups: [(&str, Vec<String>); 5] = [
        ("done", vec![]),
        ("partial", vec![]),
        ("failed", vec![]),
        ("pending", vec![]),
        ("damaged", vec![]),
    ];
    for r in &plan.runs {
        let st = store.state(&r.id);
        let (k, text) = match &st {
            RunState::Done => (0, r.id.clone()),
            RunState::Partial(_) => (
                1,
                format!("{} ({})", r.id, st.label(r.spec.schedule.epochs)),
            ),
            RunState::Failed { epoch, reason } => {
                (2, format!("{} (epoch {epoch}: {reason})", r.id))
            }
            RunState::Pending => (3, r.id.clone()),
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
    for (name, ids) in &groups {
        // Long lists of finished runs say nothing the count does not.
        if ids.is_empty() || (*name == "done" && ids.len() > 50) {
            continue;
        }
        outln!("{name}:");
        for id in ids {
            outln!("  {id}");
        }
    }
    Ok(())
}

struct BenchOptions {
    baseline: bool,
    min_seconds: f64,
    parts: Vec<String>,
    csv: Option<PathBuf>,
    check: bool,
}

fn bench_cmd(
    device: DeviceChoice,
    models: &[String],
    o: BenchOptions,
) -> anyhow::Result<std::process::ExitCode> {
    let BenchOptions {
        baseline,
        min_seconds,
        parts,
        csv,
        check,
    } = o;
    if let Some(p) = parts
        .iter()
        .find(|p| !["train", "teacher", "data"].contains(&p.as_str()))
    {
        bail!("--parts: unknown part `{p}`, expected train, teacher or data");
    }
    align_thread_pools();
    if check && std::env::var_os("NVIDIA_TF32_OVERRIDE").is_none() {
        // The check compares arithmetic, not TF32's 10-bit mantissa: cuDNN and cuBLAS
        // read this before their first call.
        std::env::set_var("NVIDIA_TF32_OVERRIDE", "0");
    }
    let dev = device::open(device)?;
    if check {
        use crate::model::conv::{self, ConvImpl};
        // With cuDNN compiled in, both convolutions a GPU run can use are checked.
        let impls: &[(ConvImpl, &str)] = if cfg!(feature = "cudnn") && dev.is_cuda() {
            &[
                (ConvImpl::Lecal, "lecal's convolution (cuDNN)"),
                (ConvImpl::Candle, "candle's convolution"),
            ]
        } else {
            &[(conv::conv_impl(), "the default convolution")]
        };
        let mut ok = true;
        for &(imp, name) in impls {
            conv::set_conv(imp);
            let (loss, weights) = crate::bench::check_device(&dev)?;
            let agree = loss < 1e-3 && weights < 1e-3;
            ok &= agree;
            outln!(
                "one ResNet20 training step on {} with {name}, against the CPU: loss differs by {loss:.2e}, updated weights by at most {weights:.2e}: {}",
                device::describe(&dev),
                if agree {
                    "agree (tolerance 1e-3)"
                } else {
                    "DISAGREE (tolerance 1e-3)"
                }
            );
        }
        return Ok(if ok {
            std::process::ExitCode::SUCCESS
        } else {
            std::process::ExitCode::FAILURE
        });
    }
    let models = models
        .iter()
        .map(|m| {
            ModelName::CIFAR
                .into_iter()
                .find(|x| x.as_str() == m)
                .with_context(|| format!("--models: unknown model `{m}`"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    eprintln!(
        "lecal {} (candle {}), {}, batch {}:",
        env!("CARGO_PKG_VERSION"),
        env!("LECAL_CANDLE_VERSION"),
        device::describe(&dev),
        crate::bench::BATCH
    );
    let opts = crate::bench::Options {
        device: dev,
        models,
        baseline,
        min_seconds,
        parts,
    };
    let measures = crate::bench::run(&opts)?;
    if let Some(p) = csv {
        crate::store::write_csv(&p, &measures)?;
    }
    Ok(std::process::ExitCode::SUCCESS)
}

fn print_models() -> anyhow::Result<()> {
    outln!(
        "{:<10} {:>6} {:>14} {:>15}",
        "model",
        "depth",
        "params (K=10)",
        "params (K=100)"
    );
    for m in ModelName::CIFAR {
        let count = |k| crate::model::parameters_of(m, k);
        outln!(
            "{:<10} {:>6} {:>14} {:>15}",
            model_title(m),
            m.cifar_depth().unwrap_or(0),
            group(count(10)?),
            group(count(100)?)
        );
    }
    outln!("CIFAR ResNets with 1x1-convolution shortcuts; ImageNet ResNet-18/34/50 are not implemented yet.");
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
