//! `lecal plan --estimate`: runs, epochs, images and device-hours of a plan, trained run
//! by run and as cohorts, from images per second of each model's training step and
//! forward pass (measured by `make bench`, or the rates it states).
//!
//! Run by run, every student also runs each of its teachers' forward passes on each of
//! its batches. As cohorts, a batch is shared: each member steps on it, each distinct
//! teacher runs once. Evaluation (one forward pass of each test image per epoch) is
//! counted for every run either way.

use super::cohort::{identity, Cohort};
use super::{Plan, PlannedRun};
use crate::spec::{DataSpec, DatasetName, ModelName, TeacherRef};
use std::collections::{BTreeMap, BTreeSet};

/// Images per second of a model's training step and forward pass.
#[derive(Debug, Clone)]
pub struct Rates {
    pub train: BTreeMap<ModelName, f64>,
    pub forward: BTreeMap<ModelName, f64>,
    /// Measured training steps of fused networks: (model, members, images per second
    /// counting every member's), from `lecal bench`'s fused part; none, no fused estimate.
    pub fused: Vec<(ModelName, usize, f64)>,
    /// Where the numbers come from, printed with the estimate.
    pub source: String,
}

/// A model's cost per 32×32 image relative to ResNet20's. A CIFAR ResNet's
/// multiply-accumulates grow with its blocks per stage (41 / 70 / 98 / 126 / 253 M for
/// ResNet20 / 32 / 44 / 56 / 110); torchvision's ResNet-18/34/50 take 1.82 / 3.67 / 4.11 G
/// at 224×224, so 37 / 75 / 84 M at 32×32.
fn relative_cost(m: ModelName) -> f64 {
    match (m.cifar_depth(), m) {
        (Some(depth), _) => ((depth - 2) / 6) as f64 / 3.0,
        (None, ModelName::Resnet18) => 37.1 / 41.0,
        (None, ModelName::Resnet34) => 74.9 / 41.0,
        (None, _) => 83.9 / 41.0,
    }
}

impl Rates {
    /// From measured rates of some models: every other model is scaled from the
    /// measured one by relative cost; a forward pass is a third of a training step when
    /// not measured.
    pub fn from_measured(
        train: &[(ModelName, f64)],
        forward: &[(ModelName, f64)],
        source: String,
    ) -> anyhow::Result<Self> {
        let scaled = |measured: &[(ModelName, f64)], m: ModelName| {
            let distance = |k: ModelName| (relative_cost(k) - relative_cost(m)).abs();
            measured
                .iter()
                .min_by(|a, b| distance(a.0).total_cmp(&distance(b.0)))
                .map(|&(k, r)| r * relative_cost(k) / relative_cost(m))
        };
        let Some(_) = train.first() else {
            anyhow::bail!("no training-step rate in {source}");
        };
        let mut out = Rates {
            train: BTreeMap::new(),
            forward: BTreeMap::new(),
            fused: Vec::new(),
            source,
        };
        for m in ModelName::CIFAR.into_iter().chain(ModelName::IMAGENET) {
            let t = scaled(train, m).expect("one rate at least");
            out.train.insert(m, t);
            out.forward.insert(m, scaled(forward, m).unwrap_or(3.0 * t));
        }
        Ok(out)
    }

    /// lecal's CPU numbers of BENCHMARKS.md (2 threads, release build): ResNet20's
    /// training step at 190 img/s and a ResNet110 teacher's forward pass at 140 img/s.
    pub fn cpu_assumed() -> Self {
        Self::from_measured(
            &[(ModelName::Resnet20, 190.0)],
            &[(ModelName::Resnet110, 140.0)],
            "assumed: BENCHMARKS.md's 2-thread CPU rates (ResNet20 step 190 img/s, ResNet110 \
             forward 140 img/s), scaled by depth; `make bench` and --bench for measured ones"
                .into(),
        )
        .expect("rates given")
    }

    /// Not measured by lecal: a data-centre GPU (V100 to A100 class) assumed at a
    /// ResNet20 training step of 8,000 img/s and a ResNet110 forward pass of 6,000 img/s,
    /// about what PyTorch reaches there on CIFAR. For `lecal submit` when no `make bench`
    /// CSV of the cluster's GPU is given; jobs that run longer requeue and resume.
    pub fn gpu_assumed() -> Self {
        Self::from_measured(
            &[(ModelName::Resnet20, 8000.0)],
            &[(ModelName::Resnet110, 6000.0)],
            "assumed: a data-centre GPU (ResNet20 step 8,000 img/s, ResNet110 forward 6,000 \
             img/s; not measured by lecal), scaled by depth; --bench with `make bench`'s CSV \
             from the cluster's GPU for measured ones"
                .into(),
        )
        .expect("rates given")
    }

    fn step(&self, m: ModelName, d: &DataSpec) -> f64 {
        scale(d) / self.train.get(&m).copied().unwrap_or(f64::INFINITY)
    }

    fn forward(&self, m: ModelName, d: &DataSpec) -> f64 {
        scale(d) / self.forward.get(&m).copied().unwrap_or(f64::INFINITY)
    }

    /// Seconds of a fused group of `k` students of `m` on one image of the batch (each
    /// member's step included), from the measured fused network nearest in members, then
    /// in cost, scaled per member and by relative cost; `None` without fused rates.
    fn fused_step(&self, m: ModelName, k: usize, d: &DataSpec) -> Option<f64> {
        let near = |&&(fm, fk, _): &&(ModelName, usize, f64)| {
            let cost = (relative_cost(fm) - relative_cost(m)).abs();
            (fk.abs_diff(k), (cost * 1e6) as u64)
        };
        let &(fm, _, rate) = self.fused.iter().min_by_key(near)?;
        // Seconds per member-image of the measured group, scaled to `m`.
        let per_member = relative_cost(m) / relative_cost(fm) / rate;
        Some(scale(d) * k as f64 * per_member)
    }
}

/// Cost of an image relative to a 32×32 one.
fn scale(d: &DataSpec) -> f64 {
    (d.resolution * d.resolution) as f64 / 1024.0
}

/// Training and test images of one epoch, from the one table of the datasets' split sizes
/// (which the planner reads too).
pub fn images(d: &DataSpec) -> (usize, usize) {
    let (train, test) = match (&d.synthetic, d.name) {
        (Some(s), _) => (s.train, s.test),
        (None, DatasetName::Cifar10 | DatasetName::Cifar100) => (50_000, 10_000),
        (None, DatasetName::Stl10) => (5_000, 8_000),
        (None, DatasetName::Imagenet) => (1_281_167, 50_000),
        (None, DatasetName::Synthetic) => (0, 0),
    };
    // As `data::load`: the validation set first, then the subset, then the scale's limit.
    let train = train.saturating_sub(d.validation.unwrap_or(0));
    let train = d.train_subset.map_or(train, |n| n.min(train));
    let train = d.train_limit.map_or(train, |l| l.min(train));
    let test = d.test_limit.map_or(test, |l| l.min(test));
    (train, test)
}

/// Images evaluated after each epoch: the test set and any validation split (which a
/// scale limits as the test set).
fn evaluated(d: &DataSpec) -> usize {
    let validation = d
        .validation
        .map_or(0, |v| d.test_limit.map_or(v, |l| l.min(v)));
    images(d).1 + validation
}

/// What a set of runs costs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Estimate {
    pub runs: usize,
    pub epochs: usize,
    /// Training images over every epoch of every run.
    pub images: u64,
    pub alone_hours: f64,
    pub cohort_hours: f64,
    /// As cohorts with their students fused (`plan::fused_groups`), where `Rates::fused`
    /// has measurements; else equal to `cohort_hours`.
    pub fused_hours: f64,
}

fn teacher_model(plan: &Plan, t: &TeacherRef, fallback: ModelName) -> ModelName {
    match t {
        TeacherRef::Run { id } => plan.get(id).map_or(fallback, |r| r.spec.model),
        TeacherRef::Checkpoint { model, .. } => *model,
    }
}

/// Seconds of one epoch of `r` alone: its steps, its teachers' forward passes, its
/// evaluations (SSKD's steps and teacher passes on each image's rotated copies).
fn alone_epoch(plan: &Plan, r: &PlannedRun, rates: &Rates) -> f64 {
    let d = &r.spec.data;
    let (train, test) = (images(d).0 * r.spec.views(), evaluated(d));
    let teachers: f64 = r
        .spec
        .teachers
        .iter()
        .map(|t| rates.forward(teacher_model(plan, t, r.spec.model), d))
        .sum();
    train as f64 * (rates.step(r.spec.model, d) + teachers)
        + test as f64 * rates.forward(r.spec.model, d)
}

/// The estimate of `ids` (runs of `plan`), as runs alone and as `cohorts` restricted to
/// them.
pub fn estimate(plan: &Plan, ids: &BTreeSet<&str>, cohorts: &[Cohort], rates: &Rates) -> Estimate {
    let mut e = Estimate::default();
    for r in plan.runs.iter().filter(|r| ids.contains(r.id.as_str())) {
        let epochs = r.spec.schedule.epochs;
        e.runs += 1;
        e.epochs += epochs;
        e.images += images(&r.spec.data).0 as u64 * epochs as u64;
        e.alone_hours += alone_epoch(plan, r, rates) * epochs as f64 / 3600.0;
        e.alone_hours += sskd_head(plan, r, rates) / 3600.0;
    }
    for c in cohorts {
        let members: Vec<&PlannedRun> = c
            .runs
            .iter()
            .filter(|id| ids.contains(id.as_str()))
            .filter_map(|id| plan.get(id))
            .collect();
        let longest = members
            .iter()
            .map(|r| r.spec.schedule.epochs)
            .max()
            .unwrap_or(0);
        for epoch in 1..=longest {
            let active: Vec<&&PlannedRun> = members
                .iter()
                .filter(|r| r.spec.schedule.epochs >= epoch)
                .collect();
            let d = &active[0].spec.data;
            let (train, test) = (images(d).0 * active[0].spec.views(), evaluated(d));
            let mut seen = BTreeSet::new();
            let mut seconds = 0.0;
            let active_runs: Vec<&PlannedRun> = active.iter().map(|r| **r).collect();
            // What fusing the epoch's groups saves over their members' steps.
            let saved: f64 = (super::cohort::fused_groups(&active_runs).iter())
                .filter_map(|g| {
                    let (m, k) = (g[0].spec.model, g.len());
                    let fused = rates.fused_step(m, k, d)?;
                    Some(train as f64 * (k as f64 * rates.step(m, d) - fused))
                })
                .sum();
            for r in &active {
                seconds += train as f64 * rates.step(r.spec.model, d)
                    + test as f64 * rates.forward(r.spec.model, d);
                for t in &r.spec.teachers {
                    if seen.insert(identity(t)) {
                        let m = teacher_model(plan, t, r.spec.model);
                        seconds += train as f64 * rates.forward(m, d);
                    }
                }
            }
            e.cohort_hours += seconds / 3600.0;
            e.fused_hours += (seconds - saved) / 3600.0;
        }
        // Members with the same teacher and head settings train their SSKD head once (as
        // `train::sskd` shares it).
        let mut heads = BTreeSet::new();
        for r in &members {
            let (Some(k), Some(t)) = (r.spec.method.sskd(), r.spec.teachers.first()) else {
                continue;
            };
            let s = &r.spec.schedule;
            let head = (k.head_epochs, k.head_lr, &k.head_milestones);
            let (m, wd, g) = (s.momentum, s.weight_decay, s.gamma);
            if heads.insert(format!("{}|{head:?}|{m} {wd} {g}", identity(t))) {
                e.cohort_hours += sskd_head(plan, r, rates) / 3600.0;
                e.fused_hours += sskd_head(plan, r, rates) / 3600.0;
            }
        }
    }
    e
}

/// Seconds of an SSKD run's teacher head: its epochs of the teacher's forward pass on the
/// rotated copies (the head's own step is negligible beside it).
fn sskd_head(plan: &Plan, r: &PlannedRun, rates: &Rates) -> f64 {
    let (Some(k), Some(t)) = (r.spec.method.sskd(), r.spec.teachers.first()) else {
        return 0.0;
    };
    let d = &r.spec.data;
    let m = teacher_model(plan, t, r.spec.model);
    (k.head_epochs * images(d).0 * r.spec.views()) as f64 * rates.forward(m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::tests::{full, resnet8_rates, set};
    use crate::plan::{build, cohorts};
    use crate::recipe::tests::VANILLA;

    #[test]
    fn a_subset_trains_fewer_images_and_a_validation_split_is_evaluated_too() {
        let text = VANILLA.replace(
            "seeds = [0, 1]",
            "seeds = [0]\nvalidation = 16\ntrain_subset = 20",
        );
        let (_d, s) = set(&[("r.toml", &text)]);
        let p = build(&s, &full()).unwrap();
        let rates = resnet8_rates();
        let all: BTreeSet<&str> = p.runs.iter().map(|r| r.id.as_str()).collect();
        let e = estimate(&p, &all, &cohorts(&p), &rates);
        // 8×8 images cost 1/16 of 32×32: 20 training images (of the 48 left after the
        // hold-out) are 1.25 units; 32 test and 16 validation images evaluated, 3 units.
        let seconds = 2.0 * (1.25 / 100.0 + 3.0 / 300.0);
        assert_eq!((e.runs, e.epochs, e.images), (1, 2, 2 * 20));
        assert!((e.alone_hours * 3600.0 - seconds).abs() < 1e-12, "{e:?}");
        assert!((e.cohort_hours * 3600.0 - seconds).abs() < 1e-12, "{e:?}");
        assert_eq!(
            e.fused_hours, e.cohort_hours,
            "no fused rates, no fused estimate"
        );
    }

    /// Two ResNet8 students of one seed (vanilla, label smoothing) fuse: with a fused
    /// group of two measured at 300 img/s (both members' images), each epoch's two steps
    /// of 64 8×8 images cost 2·4/300 s instead of 2·4/100 s; evaluation is the same.
    #[test]
    fn a_fused_group_is_estimated_from_the_fused_rate() {
        let one = VANILLA.replace("seeds = [0, 1]", "seeds = [0]");
        let ls = one
            .replace("row = \"Vanilla\"", "row = \"LS\"")
            .replace("\"vanilla\"", "\"smoothing\"");
        let (_d, s) = set(&[("v.toml", &one), ("ls.toml", &ls)]);
        let p = build(&s, &full()).unwrap();
        let all: BTreeSet<&str> = p.runs.iter().map(|r| r.id.as_str()).collect();
        let mut rates = resnet8_rates();
        let unfused = estimate(&p, &all, &cohorts(&p), &rates);
        rates.fused = vec![(ModelName::Resnet8, 2, 300.0)];
        let e = estimate(&p, &all, &cohorts(&p), &rates);
        assert_eq!(e.cohort_hours, unfused.cohort_hours);
        // 64 images at 8×8 are 4 units of 32×32; two epochs.
        let saved = 2.0 * (2.0 * 4.0 / 100.0 - 2.0 * 4.0 / 300.0);
        let got = (e.cohort_hours - e.fused_hours) * 3600.0;
        assert!((got - saved).abs() < 1e-9, "{got} vs {saved}");
    }
}
