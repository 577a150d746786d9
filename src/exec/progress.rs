//! Progress display: a bar per epoch on a terminal, plain lines otherwise (logs, CI,
//! Slurm output files).

use crate::metrics::Evaluation;
use crate::plan::PlannedRun;
use crate::store::EpochRecord;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;

pub struct Progress {
    bar: Option<ProgressBar>,
    /// Draw a bar (one run at a time on a terminal).
    bars: bool,
    /// Name the run on each epoch line (several runs at a time).
    tag: bool,
    quiet: bool,
}

impl Progress {
    /// Bars on a terminal when one run trains at a time; plain lines otherwise.
    pub fn new(jobs: usize) -> Self {
        Self {
            bar: None,
            bars: jobs <= 1 && std::io::stdout().is_terminal(),
            tag: jobs > 1,
            quiet: false,
        }
    }

    /// Prints nothing (tests of the executor).
    pub fn quiet() -> Self {
        Self {
            bar: None,
            bars: false,
            tag: false,
            quiet: true,
        }
    }

    pub fn line(&mut self, s: &str) {
        if self.quiet {
            return;
        }
        match &self.bar {
            Some(b) => b.println(s),
            // A closed pipe (`lecal run … | head`) must not stop the training.
            None => {
                use std::io::Write as _;
                let _ = writeln!(std::io::stdout().lock(), "{s}");
            }
        }
    }

    /// A run starts; `on` names its device when there are several (` on cuda:1`).
    pub fn start_run(&mut self, i: usize, n: usize, run: &PlannedRun, on: &str) {
        let cells: Vec<String> = run
            .cells
            .iter()
            .map(|(c, s)| format!("{c} seed {s}"))
            .collect();
        let role = if run.cells.is_empty() {
            "teacher".to_string()
        } else {
            cells.join(", ")
        };
        self.line(&format!(
            "[{i}/{n}] {} ({role}): {} epochs{on}",
            run.id, run.spec.schedule.epochs
        ));
    }

    pub fn batch(&mut self, epoch: usize, epochs: usize, done: usize, total: usize) {
        if self.quiet || !self.bars {
            return;
        }
        let bar = self.bar.get_or_insert_with(|| {
            let b = ProgressBar::new(total as u64);
            b.set_style(
                ProgressStyle::with_template(
                    "  epoch {msg} [{bar:30}] {pos}/{len} batches {per_sec} eta {eta}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            b
        });
        bar.set_length(total as u64);
        bar.set_message(format!("{epoch}/{epochs}"));
        bar.set_position(done as u64);
    }

    /// An epoch's line; `name` names the run even when one unit trains at a time (a
    /// cohort's members share the display).
    pub fn epoch(&mut self, id: &str, r: &EpochRecord, epochs: usize, name: bool) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
        let who = if self.tag || name {
            format!("{id} ")
        } else {
            String::new()
        };
        self.line(&format!(
            "  {who}epoch {}/{epochs}  lr {:.4}  train loss {:.4} acc {:.2}%  test acc {:.2}% ece {:.4} nll {:.4}  ({:.1} s)",
            r.epoch, r.lr, r.train_loss, r.train_acc, r.test_acc, r.ece, r.nll, r.seconds
        ));
    }

    pub fn end_run(&mut self, run: &PlannedRun, e: &Evaluation, wall: f64) {
        self.line(&format!(
            "  done {}: acc {:.2}% ece {:.4} in {:.1} s",
            run.id, e.accuracy, e.ece, wall
        ));
    }
}

impl Default for Progress {
    fn default() -> Self {
        Self::new(1)
    }
}
