//! The commands behind `lecal`'s subcommands: each strings the pipeline stages together
//! (recipe → plan → exec → store → report) for one subcommand. `cli.rs` only parses the
//! command line and calls one function here.

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

mod bench;
mod data;
mod estimate;
mod inspect;
mod run;
mod show;
mod submit;
mod verify;

pub use bench::{bench, BenchOptions};
pub use data::{check as data_check, fetch as data_fetch};
pub use inspect::{models, plan, report, status, table, EstimateOptions, TableView};
pub use run::{run, RunOptions};
pub use show::show;
pub use submit::{submit, SubmitArgs};
pub use verify::{verify, VerifyOptions};

use crate::plan::{self, Plan, Scale};
use crate::recipe::{self, RecipeSet};
use anyhow::bail;
use std::path::PathBuf;

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

/// GiB (a positive number, fractions allowed) in bytes.
pub fn parse_gib(s: &str) -> Result<u64, String> {
    match s.parse::<f64>() {
        Ok(g) if g.is_finite() && g > 0.0 && g < 1e9 => Ok((g * (1u64 << 30) as f64) as u64),
        _ => Err(format!(
            "`{s}` is not a memory size in GiB: a positive number"
        )),
    }
}
