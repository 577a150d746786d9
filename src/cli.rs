//! The command line: clap types, converted once into typed options, and one call into
//! `commands` per subcommand.

use crate::commands::{self, BenchOptions, RunOptions, VerifyOptions};
use crate::device::DeviceChoice;
use crate::model::{ConvChoice, CpuKernelChoice};
use crate::report;
use crate::store::Store;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

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
        /// Also print runs, epochs, images and device-hours per table, run by run and as
        /// cohorts.
        #[arg(long)]
        estimate: bool,
        /// The device to estimate for: cpu (rates of BENCHMARKS.md unless --bench) or
        /// cuda (needs --bench).
        #[arg(long, default_value = "cpu")]
        device: String,
        /// `make bench`'s measurements (target/bench/lecal.csv) on the device in question.
        #[arg(long)]
        bench: Option<PathBuf>,
        /// A cohort's budget of device memory (or RAM), in GiB: cohorts estimated above it
        /// are split.
        #[arg(long, value_parser = commands::parse_gib, default_value = "16", value_name = "GIB")]
        cohort_memory: u64,
        /// Whether the cohorts' memory is estimated with their students fused: auto (on
        /// for --device cuda), on, off.
        #[arg(long, value_enum, default_value = "auto")]
        fusion: crate::train::FusionChoice,
        /// `--fusion off`.
        #[arg(long)]
        no_fusion: bool,
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
        /// Train on several devices of this machine at once: `cuda:0,cuda:1`, `cuda:all`,
        /// or `cpu,cpu` (CPU slots, each with its share of the threads). Units of work
        /// (cohorts, or runs) spread over them in dependency order; `--jobs` is then per
        /// device.
        #[arg(long, conflicts_with = "device")]
        devices: Option<crate::device::DeviceList>,
        /// Train only these runs (ids, comma-separated); their teacher runs must be done
        /// or among them.
        #[arg(long, value_delimiter = ',', value_name = "ID")]
        only: Vec<String>,
        /// The step of a cluster job (`lecal submit` writes it): exit non-zero only when a
        /// run that other runs need did not finish.
        #[arg(long, hide = true)]
        job_step: bool,
        /// Attempt again the runs that failed in an earlier invocation.
        #[arg(long)]
        retry_failed: bool,
        /// The convolution: auto or lecal (lecal's, on CUDA through cuDNN; checked at first use), candle.
        #[arg(long, value_enum, default_value = "auto", env = "LECAL_CONV")]
        conv: ConvChoice,
        /// lecal's CPU matrix-product kernel: auto (AVX2 + FMA where the CPU has both),
        /// portable (plain Rust: slower, the same bits).
        #[arg(long, value_enum, default_value = "auto", env = "LECAL_CPU_KERNELS")]
        cpu_kernels: CpuKernelChoice,
        /// Fuse a cohort's students of one architecture into one network (one grouped
        /// convolution per layer, one optimiser step): auto (on CUDA only), on, off.
        /// Either way every run's results are the same on the CPU.
        #[arg(long, value_enum, default_value = "auto", env = "LECAL_FUSION")]
        fusion: crate::train::FusionChoice,
        /// Train each member of a cohort in its own network (`--fusion off`).
        #[arg(long)]
        no_fusion: bool,
        /// Train each run alone. By default, runs that see identical batches (same data,
        /// seed, batch size, transform and augmentation) train together as a cohort: each
        /// batch is made once and each teacher's forward pass runs once for all of them.
        /// Either way every run's results are the same.
        #[arg(long)]
        no_cohorts: bool,
        /// A cohort's budget of device memory (or RAM), in GiB: cohorts estimated above it
        /// are split.
        #[arg(long, value_parser = commands::parse_gib, default_value = "16", value_name = "GIB")]
        cohort_memory: u64,
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
        /// The measures each cell shows, comma-separated. `accuracy,ece` is the table's own
        /// layout (<name>.md, .csv, .tex); any other list is written as
        /// <name>.<metrics>.md and .csv. Measures summary.csv lacks come from each run's
        /// stored logits.
        #[arg(
            long,
            value_enum,
            value_delimiter = ',',
            default_value = "accuracy,ece",
            value_name = "METRIC"
        )]
        metric: Vec<report::Metric>,
        /// Each measure after temperature scaling ("+TS"): T fitted on each run's
        /// validation split where it holds one out, otherwise two-fold cross-fitted on the
        /// test set (even and odd positions).
        #[arg(long)]
        ts: bool,
        /// The reproduction against the paper's values: Δaccuracy and ΔECE per cell with a
        /// verdict from the seeds, and the table spec's orderings (<name>.verdicts.md, .csv).
        #[arg(long, conflicts_with_all = ["metric", "ts"])]
        verdicts: bool,
    },
    /// Write a table's report into <results>/report/<name>/: one self-contained HTML page
    /// (index.html) with the table, a reliability diagram and learning curves per cell, the
    /// accuracy-against-ECE scatter, the protocol and the runs' provenance; the plots also
    /// as SVG files beside it.
    Report {
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
    /// One run: its state, numbers, files, failure, resolved spec and provenance.
    Show {
        /// A run id, a unique prefix of one (or of the hash that ends it), or a run folder.
        run: String,
    },
    /// Train a sample of the committed runs again in a scratch folder (one seed per cell)
    /// and compare them with their committed results: identical on the CPU, within a
    /// tolerance on a GPU. Exits non-zero when a run does not match.
    Verify {
        /// Recipe files or folders whose runs are in the results folder.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Verify at most this many runs (spread over the plan, or chosen by --seed).
        #[arg(long, value_parser = parse_sample, value_name = "N")]
        sample: Option<usize>,
        /// Choose the runs of a capped --sample by this seed.
        #[arg(long, requires = "sample")]
        seed: Option<u64>,
        /// The scratch results folder (new or empty; default: a new folder under
        /// target/verify/ beside the results folder, removed when every run matches).
        #[arg(long)]
        scratch: Option<PathBuf>,
        /// auto, cpu or cuda:N.
        #[arg(long, default_value = "auto")]
        device: DeviceChoice,
        /// The --scale the committed runs were trained at.
        #[arg(long, default_value = "full")]
        scale: String,
        /// Folder holding the datasets.
        #[arg(long, default_value = "data", env = "LECAL_DATA")]
        data_dir: PathBuf,
        /// The convolution: auto or lecal (lecal's, on CUDA through cuDNN; checked at first use), candle.
        #[arg(long, value_enum, default_value = "auto", env = "LECAL_CONV")]
        conv: ConvChoice,
        /// lecal's CPU matrix-product kernel: auto (AVX2 + FMA where the CPU has both),
        /// portable (plain Rust: slower, the same bits).
        #[arg(long, value_enum, default_value = "auto", env = "LECAL_CPU_KERNELS")]
        cpu_kernels: CpuKernelChoice,
        /// Fuse a cohort's students of one architecture into one network (one grouped
        /// convolution per layer, one optimiser step): auto (on CUDA only), on, off.
        /// Either way every run's results are the same on the CPU.
        #[arg(long, value_enum, default_value = "auto", env = "LECAL_FUSION")]
        fusion: crate::train::FusionChoice,
        /// Train each member of a cohort in its own network (`--fusion off`).
        #[arg(long)]
        no_fusion: bool,
    },
    /// Submit the runs that are not done to Slurm: one batch job per cohort (or run),
    /// each after its teachers' jobs; returns at once.
    Submit {
        /// Recipe files or folders.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        #[command(flatten)]
        args: commands::SubmitArgs,
    },
    /// The model zoo with parameter counts for 10 and 100 classes.
    Models,
    /// Datasets: `lecal data fetch cifar10|cifar100|stl10`, `lecal data check imagenet`.
    #[command(subcommand)]
    Data(DataCommand),
    /// lecal's side of `make parity`: identical inputs and lecal's outputs for them, for
    /// `scripts/parity.py` to recompute with PyTorch.
    #[command(hide = true)]
    Parity {
        /// Where to write them.
        dir: PathBuf,
        /// Also train this many seeds of one small setting, for PyTorch to compare with
        /// its own random draws.
        #[arg(long, default_value_t = 0)]
        seeds: u64,
    },
    /// Images per second of a training step, a teacher's forward pass and the data
    /// pipeline (`make bench` sets these beside PyTorch's).
    Bench {
        #[arg(long, default_value = "cpu")]
        device: DeviceChoice,
        /// Models whose training step (and fused students) to time.
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
        /// Parts to time: train, teacher, data, cohort (Table 1's KD, SL, En-SL and KD-SL
        /// rows at a small scale, run by run, as a cohort and fused), fused (students of
        /// each of --models on one batch, one after another and as one fused network of
        /// --fused-members, checked for identical results first), imagenet-loader (decoding
        /// and the training transform of generated JPEGs with the loader on all cores).
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "train,teacher,data,cohort,fused,imagenet-loader"
        )]
        parts: Vec<String>,
        /// Training images of each run of the cohort part (one epoch).
        #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(64..))]
        cohort_images: u32,
        /// Students per fused network in the fused part, comma-separated (e.g. 4,6).
        #[arg(long, value_delimiter = ',', default_value = "4", value_parser = clap::value_parser!(u32).range(2..=64))]
        fused_members: Vec<u32>,
        /// Generated JPEGs (about 400×350, quality 90) of the imagenet-loader part.
        #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u32).range(8..))]
        imagenet_images: u32,
        /// Where the imagenet-loader part writes them (kept: a second run reuses them).
        #[arg(long, default_value = "target/bench/imagenet")]
        imagenet_dir: PathBuf,
        /// Write the measurements as CSV here.
        #[arg(long)]
        csv: Option<PathBuf>,
        /// Instead: one training step on this device against the same step on the CPU.
        #[arg(long)]
        check: bool,
        /// The convolution: auto or lecal (lecal's, on CUDA through cuDNN; checked at first use), candle.
        #[arg(long, value_enum, default_value = "auto", env = "LECAL_CONV")]
        conv: ConvChoice,
        /// lecal's CPU matrix-product kernel: auto (AVX2 + FMA where the CPU has both),
        /// portable (plain Rust: slower, the same bits).
        #[arg(long, value_enum, default_value = "auto", env = "LECAL_CPU_KERNELS")]
        cpu_kernels: CpuKernelChoice,
    },
}

#[derive(Subcommand, Debug)]
pub enum DataCommand {
    /// Download a dataset's official archive, check its MD5, and unpack it into the data
    /// folder; an interrupted download resumes. Nothing to do when the data is there.
    Fetch {
        /// cifar10, cifar100 or stl10.
        name: String,
        /// The data folder.
        #[arg(long, default_value = "data", env = "LECAL_DATA")]
        dir: PathBuf,
        /// Download the archive from here instead (a mirror); `LECAL_DATA_MIRROR` gives a
        /// base address for every archive.
        #[arg(long)]
        url: Option<String>,
        /// Seconds without an answer (no response, or no data) before a try is given up;
        /// connecting waits at most 30 of them.
        #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
        timeout: u64,
        /// Tries in all; a stalled, refused or cut download is tried again after a pause
        /// (2 s, doubling), resuming where it stopped.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
        tries: u32,
    },
    /// Check a dataset's folder: classes and images per split, every image decoded;
    /// exits non-zero when anything is missing or unreadable.
    Check {
        /// imagenet.
        name: String,
        /// The dataset's folder (for imagenet the one holding train/ and val/).
        #[arg(long)]
        dir: PathBuf,
    },
}

// Long: one arm per subcommand, each only moving clap's fields into that command's
// options; splitting it would scatter the dispatch.
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
        Command::Plan {
            paths,
            scale,
            estimate,
            device,
            bench,
            cohort_memory,
            fusion,
            no_fusion,
        } => {
            let fused = crate::train::FusionChoice::from_flags(fusion, no_fusion)
                .on(device.starts_with("cuda"));
            let estimate = estimate.then_some(commands::EstimateOptions { device, bench });
            commands::plan(&paths, &scale, estimate, (cohort_memory, fused), &store)?;
        }
        Command::Run {
            paths,
            device,
            scale,
            data_dir,
            jobs,
            devices,
            only,
            job_step,
            retry_failed,
            conv,
            cpu_kernels,
            fusion,
            no_fusion,
            no_cohorts,
            cohort_memory,
        } => {
            let opts = RunOptions {
                conv,
                cpu_kernels,
                fusion: crate::train::FusionChoice::from_flags(fusion, no_fusion),
                device,
                devices,
                only: (!only.is_empty()).then(|| only.into_iter().collect()),
                job_step,
                scale,
                data_dir,
                jobs,
                retry_failed,
                cohort_memory: (!no_cohorts).then_some(cohort_memory),
            };
            return commands::run(&paths, opts, &store);
        }
        Command::Table {
            table,
            recipes,
            scale,
            metric,
            ts,
            verdicts,
        } => {
            let view = if verdicts {
                commands::TableView::Verdicts
            } else {
                commands::TableView::Cells(report::View::new(&metric, ts))
            };
            commands::table(&table, &recipes, &scale, &view, &store)?
        }
        Command::Report {
            table,
            recipes,
            scale,
        } => commands::report(&table, &recipes, &scale, &store)?,
        Command::Status { paths, scale } => {
            let paths = if paths.is_empty() {
                vec![PathBuf::from("recipes")]
            } else {
                paths
            };
            return commands::status(&paths, &scale, &store);
        }
        Command::Models => commands::models()?,
        Command::Data(DataCommand::Fetch {
            name,
            dir,
            url,
            timeout,
            tries,
        }) => {
            let wait = std::time::Duration::from_secs(timeout);
            let patience = crate::data::fetch::Patience {
                connect: wait.min(std::time::Duration::from_secs(30)),
                read: wait,
                attempts: tries,
                ..Default::default()
            };
            commands::data_fetch(&name, &dir, url.as_deref(), &patience)?
        }
        Command::Data(DataCommand::Check { name, dir }) => {
            return commands::data_check(&name, &dir)
        }
        Command::Submit { paths, args } => return commands::submit(&paths, args, &store),
        Command::Show { run } => commands::show(&run, &store)?,
        Command::Verify {
            paths,
            sample,
            seed,
            scratch,
            device,
            scale,
            data_dir,
            conv,
            cpu_kernels,
            fusion,
            no_fusion,
        } => {
            let run = RunOptions {
                conv,
                cpu_kernels,
                fusion: crate::train::FusionChoice::from_flags(fusion, no_fusion),
                device,
                devices: None,
                scale,
                data_dir,
                jobs: None,
                retry_failed: false,
                cohort_memory: Some(16 << 30),
                only: None,
                job_step: false,
            };
            let opts = VerifyOptions {
                sample,
                seed,
                scratch,
                run,
            };
            return commands::verify(&paths, opts, &store);
        }
        Command::Parity { dir, seeds } => crate::parity::dump(&dir, seeds)?,
        Command::Bench {
            device,
            models,
            baseline,
            min_seconds,
            parts,
            cohort_images,
            fused_members,
            imagenet_images,
            imagenet_dir,
            csv,
            check,
            conv,
            cpu_kernels,
        } => {
            let opts = BenchOptions {
                conv,
                cpu_kernels,
                baseline,
                min_seconds,
                parts,
                cohort_images: cohort_images as usize,
                fused_members: fused_members.iter().map(|&m| m as usize).collect(),
                imagenet_images: imagenet_images as usize,
                imagenet_dir,
                csv,
                check,
            };
            return commands::bench(device, &models, opts);
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

fn parse_sample(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("`{s}` is not a number of runs: 1 or more")),
    }
}
