//! `lecal bench`'s cohort line: a Table-1-shaped plan at a small scale, trained run by run,
//! as one cohort, and as one cohort with its students fused (`--fusion on`: one network
//! per architecture) in the same invocation.
//!
//! CIFAR-100 shapes (100 classes, 32×32, batch 64) on generated images; students ResNet20,
//! 32, 44, 56 and 110 in the KD, SL, En-SL and KD-SL rows (20 runs, one seed, one epoch);
//! the three ResNet110 teachers trained beforehand, not timed. Both ways train the same
//! runs with the same trainer and write nothing; the cohort's results, fused or not, are
//! checked equal to the runs' alone.

use crate::plan::{self, Plan, PlannedRun, Scale};
use crate::spec::TeacherRef;
use crate::store::checkpoint::Checkpoint;
use crate::store::EpochRecord;
use crate::train::{CandleTrainer, Member, Outcome, RunSink, TeacherSource, Trainer};
use anyhow::Context;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The three timings and what they trained.
#[derive(Debug, Clone)]
pub struct CohortBench {
    pub runs: usize,
    /// Training images each run steps on (its epochs × its training set).
    pub images_per_run: usize,
    pub alone_seconds: f64,
    pub cohort_seconds: f64,
    /// The cohort with its students of one architecture fused.
    pub fused_seconds: f64,
    /// Teacher forward passes per batch: summed over the runs alone, and in the cohort.
    pub alone_passes: usize,
    pub cohort_passes: usize,
    /// Whether every run's outcome in the cohort, fused or not, equals its outcome alone.
    pub identical: bool,
}

/// Keeps nothing but the final weights, written to `weights` when given.
struct Discard {
    weights: Option<PathBuf>,
}

impl RunSink for Discard {
    fn resume(&mut self) -> anyhow::Result<Option<Checkpoint>> {
        Ok(None)
    }

    fn epoch(&mut self, _record: &EpochRecord, _state: &[u8]) -> anyhow::Result<()> {
        Ok(())
    }

    fn finish(&mut self, weights: &[u8], _outcome: &Outcome) -> anyhow::Result<()> {
        if let Some(p) = &self.weights {
            std::fs::write(p, weights).with_context(|| format!("writing {}", p.display()))?;
        }
        Ok(())
    }
}

/// The recipes: one cell per (row, student), every row on the three ResNet110 teachers.
fn write_recipes(dir: &Path, images: usize) -> anyhow::Result<()> {
    let rows = [
        ("KD", "kd"),
        ("SL", "sl"),
        ("En-SL", "en-sl"),
        ("KD-SL", "kd-sl"),
    ];
    let students = ["resnet20", "resnet32", "resnet44", "resnet56", "resnet110"];
    std::fs::create_dir_all(dir)?;
    std::fs::write(
        dir.join("bench.table.toml"),
        "title = \"bench\"\nrows = [\"KD\", \"SL\", \"En-SL\", \"KD-SL\"]\n\
         columns = [\"ResNet20\", \"ResNet32\", \"ResNet44\", \"ResNet56\", \"ResNet110\"]\n",
    )?;
    for (row, method) in rows {
        // KD and SL use one teacher (seed 0), the ensembles all three.
        let seeds = if row.contains("-SL") {
            "[0, 1, 2]"
        } else {
            "[0]"
        };
        for s in students {
            let column = s.replace("resnet", "ResNet");
            let text = format!(
                "cell = {{ table = \"bench\", row = \"{row}\", column = \"{column}\" }}\n\
                 dataset = \"synthetic\"\n\
                 synthetic = {{ train = {images}, test = 100, resolution = 32, classes = 100 }}\n\
                 schedule = {{ epochs = 1, milestones = [], batch = 64 }}\n\
                 student = \"{s}\"\nseeds = [0]\nmethod = \"{method}\"\n\
                 teachers = [ {{ model = \"resnet110\", seeds = {seeds} }} ]\n"
            );
            std::fs::write(dir.join(format!("{method}-{s}.toml")), text)?;
        }
    }
    Ok(())
}

fn sources(plan: &Plan, run: &PlannedRun, weights: &Path) -> Vec<TeacherSource> {
    run.spec
        .teachers
        .iter()
        .filter_map(|t| match t {
            TeacherRef::Run { id } => Some(TeacherSource {
                model: plan.get(id)?.spec.model,
                path: weights.join(format!("{id}.safetensors")),
            }),
            TeacherRef::Checkpoint { .. } => None,
        })
        .collect()
}

/// Trains the plan's teachers (not timed), then its students run by run and as a
/// cohort, `images` training images each.
pub fn run(trainer: &CandleTrainer, images: usize) -> anyhow::Result<CohortBench> {
    let dir = std::env::temp_dir().join(format!("lecal-bench-cohort-{}", std::process::id()));
    let result = measure(trainer, images, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn measure(trainer: &CandleTrainer, images: usize, dir: &Path) -> anyhow::Result<CohortBench> {
    write_recipes(&dir.join("recipes"), images)?;
    let set = crate::recipe::load(&[dir.join("recipes")]).map_err(|e| anyhow::anyhow!("{e}"))?;
    let plan = plan::build(&set, &Scale::named("full").map_err(anyhow::Error::msg)?)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let (teachers, students): (Vec<&PlannedRun>, Vec<&PlannedRun>) =
        plan.runs.iter().partition(|r| r.cells.is_empty());
    eprintln!(
        "  cohort: training the {} teachers first (not timed)",
        teachers.len()
    );
    for t in &teachers {
        let path = dir.join(format!("{}.safetensors", t.id));
        let mut sink = Discard {
            weights: Some(path),
        };
        trainer.train(&t.spec, &[], &mut sink)?;
    }
    let sources: Vec<Vec<TeacherSource>> =
        students.iter().map(|r| sources(&plan, r, dir)).collect();
    let started = Instant::now();
    let mut alone = Vec::new();
    for (r, ts) in students.iter().zip(&sources) {
        let mut sink = Discard { weights: None };
        alone.push(trainer.train(&r.spec, ts, &mut sink)?);
    }
    let alone_seconds = started.elapsed().as_secs_f64();
    let (cohort_seconds, together) = as_cohort(trainer, &students, &sources)?;
    let fusing = CandleTrainer::new(
        trainer.device.clone(),
        trainer.kernels,
        trainer.data_dir.clone(),
    )
    .with_fusion(true);
    let (fused_seconds, fused) = as_cohort(&fusing, &students, &sources)?;
    let same = |a: &Outcome, b: &Outcome| {
        let rows = |o: &Outcome| {
            o.epochs
                .iter()
                .map(|e| (e.train_loss.to_bits(), e.nll.to_bits(), e.ece.to_bits()))
                .collect::<Vec<_>>()
        };
        rows(a) == rows(b) && a.last == b.last
    };
    let mut distinct: Vec<&TeacherSource> = sources.iter().flatten().collect();
    distinct.sort_by_key(|s| &s.path);
    distinct.dedup();
    Ok(CohortBench {
        runs: students.len(),
        images_per_run: images,
        alone_seconds,
        cohort_seconds,
        fused_seconds,
        alone_passes: sources.iter().map(Vec::len).sum(),
        cohort_passes: distinct.len(),
        identical: alone.iter().zip(&together).all(|(a, b)| same(a, b))
            && alone.iter().zip(&fused).all(|(a, b)| same(a, b)),
    })
}

/// `students` trained as one cohort by `trainer`: the seconds it took and the outcomes.
fn as_cohort(
    trainer: &CandleTrainer,
    students: &[&PlannedRun],
    sources: &[Vec<TeacherSource>],
) -> anyhow::Result<(f64, Vec<Outcome>)> {
    let mut sinks: Vec<Discard> = students.iter().map(|_| Discard { weights: None }).collect();
    let members = (students.iter().zip(sources).zip(sinks.iter_mut()))
        .map(|((r, ts), sink)| Member {
            spec: &r.spec,
            teachers: ts,
            sink,
        })
        .collect();
    let started = Instant::now();
    let together = trainer.train_cohort(members);
    let seconds = started.elapsed().as_secs_f64();
    Ok((
        seconds,
        together.into_iter().collect::<anyhow::Result<_>>()?,
    ))
}
