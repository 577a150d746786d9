//! The executor against a fake trainer: ordering, skipping, failure isolation, and the
//! files a run leaves, in milliseconds.

use super::*;
use crate::metrics::{evaluate, Evaluation};
use crate::plan::{build, Scale};
use crate::recipe::load;
use crate::recipe::tests::{folder, VANILLA};
use crate::spec::RunSpec;
use crate::store::{self, lock, EpochRecord, RunRecord, RunState};
use crate::train::{Outcome, RunSink, TeacherSource};
use std::sync::Mutex;

/// Pretends to train: accuracy grows with the seed; fails runs whose seed is listed.
struct Fake {
    fail_seeds: Vec<u64>,
    /// The error of a failing seed, in its epoch 2.
    error: fn() -> anyhow::Error,
    trained: Mutex<Vec<String>>,
}

fn fake_eval(seed: u64) -> Evaluation {
    // Two classes, four samples; seed s makes s+1 of them right (capped).
    let right = (seed as usize + 1).min(4);
    let labels = [0u16, 0, 0, 0];
    let mut logits = Vec::new();
    for i in 0..4 {
        logits.extend(if i < right { [2.0f32, 0.0] } else { [0.0, 1.0] });
    }
    evaluate(&logits, &labels, 2)
}

impl Trainer for Fake {
    fn device(&self) -> (String, bool) {
        ("fake".into(), true)
    }

    fn train(
        &self,
        spec: &RunSpec,
        teachers: &[TeacherSource],
        sink: &mut dyn RunSink,
    ) -> anyhow::Result<Outcome> {
        self.trained.lock().unwrap().push(spec.id());
        for t in teachers {
            // A teacher's weights exist before its student starts.
            anyhow::ensure!(t.path.is_file(), "teacher {} missing", t.path.display());
        }
        let mut epochs = Vec::new();
        for epoch in 1..=spec.schedule.epochs {
            if self.fail_seeds.contains(&spec.seed) && epoch == 2 {
                return Err((self.error)());
            }
            let e = fake_eval(spec.seed);
            let r = EpochRecord {
                epoch,
                lr: spec.schedule.lr_at(epoch),
                train_loss: 1.0,
                train_acc: 50.0,
                test_loss: e.nll,
                test_acc: e.accuracy,
                ece: e.ece,
                nll: e.nll,
                brier: e.brier,
                seconds: 0.0,
                checkpoint_seconds: 0.0,
                ..Default::default()
            };
            sink.epoch(&r, b"state")?;
            epochs.push(r);
        }
        let outcome = Outcome {
            epochs,
            last: fake_eval(spec.seed),
            validation: None,
        };
        sink.finish(b"fake", &outcome)?;
        Ok(outcome)
    }
}

fn fake(fail_seeds: Vec<u64>) -> Fake {
    Fake {
        fail_seeds,
        error: || anyhow::anyhow!("the loss is NaN"),
        trained: Mutex::new(Vec::new()),
    }
}

/// A recipe folder of `files`, its plan, and a results folder where every run trained.
fn trained(files: &[(&str, &str)]) -> (tempfile::TempDir, crate::recipe::RecipeSet, Plan, Store) {
    let dir = folder(files);
    let set = load(&[dir.path().to_path_buf()]).unwrap();
    let plan = build(&set, &Scale::named("full").unwrap()).unwrap();
    let store = Store::new(dir.path().join("results"));
    let opts = Options::default();
    execute(&plan, &store, &fake(vec![]), Progress::quiet(), opts);
    (dir, set, plan, store)
}

#[test]
fn trains_pending_runs_once_and_writes_their_files() {
    let dir = folder(&[("r.toml", VANILLA)]);
    let set = load(&[dir.path().to_path_buf()]).unwrap();
    let plan = build(&set, &Scale::named("full").unwrap()).unwrap();
    let store = Store::new(dir.path().join("results"));
    let t = fake(vec![]);
    let report = execute(&plan, &store, &t, Progress::quiet(), Options::default());
    assert_eq!(report.count(|e| *e == Ended::Trained), 2);
    let run_dir = store.run_dir(&plan.runs[0].id);
    for f in [
        store::RUN,
        store::EPOCHS,
        store::SUMMARY,
        store::RELIABILITY,
        store::PREDICTIONS,
        store::LOGITS,
    ] {
        assert!(run_dir.join(f).is_file(), "{f}");
    }
    let epochs = store::read_epochs(&run_dir.join(store::EPOCHS)).unwrap();
    assert_eq!(epochs.len(), 2);
    assert!((epochs[1].lr - 0.005).abs() < 1e-12);
    let rec: RunRecord =
        toml::from_str(&std::fs::read_to_string(run_dir.join(store::RUN)).unwrap()).unwrap();
    assert_eq!(rec.spec, plan.runs[0].spec);
    assert!(rec.provenance.wall_seconds.is_some());
    assert!(rec.provenance.bitwise_repeatable);
    let s = store::read_summary(&run_dir.join(store::SUMMARY)).unwrap();
    assert_eq!(s.accuracy, 25.0);
    // A second invocation trains nothing.
    let t2 = fake(vec![]);
    let report = execute(&plan, &store, &t2, Progress::quiet(), Options::default());
    assert!(t2.trained.lock().unwrap().is_empty());
    assert_eq!(report.count(|e| *e == Ended::AlreadyDone), 2);
}

#[test]
fn a_failed_run_is_marked_and_dependants_skipped_while_others_continue() {
    let vanilla14 = VANILLA
        .replace("\"ResNet8\"", "\"ResNet14\"")
        .replace("student = \"resnet8\"", "student = \"resnet14\"");
    let kd = VANILLA.replace("\"Vanilla\"", "\"KD\"").replace(
        "method = \"vanilla\"",
        "method = \"kd\"\nteachers = [ { model = \"resnet14\", seeds = [0] } ]",
    );
    let dir = folder(&[
        ("v14.toml", &vanilla14),
        ("kd.toml", &kd),
        ("v8.toml", VANILLA),
    ]);
    let set = load(&[dir.path().to_path_buf()]).unwrap();
    let plan = build(&set, &Scale::named("full").unwrap()).unwrap();
    let store = Store::new(dir.path().join("results"));
    // Seed 0 fails: the ResNet14 teacher (seed 0) and the ResNet8 vanilla seed 0.
    let t = fake(vec![0]);
    let report = execute(&plan, &store, &t, Progress::quiet(), Options::default());
    let teacher = plan.runs.iter().find(|r| !r.teacher_of.is_empty()).unwrap();
    assert!(matches!(report.ended[&teacher.id], Ended::Failed(_)));
    match store.state(&teacher.id) {
        RunState::Failed { epoch, reason } => {
            assert_eq!(epoch, 2);
            assert!(reason.contains("NaN"));
        }
        s => panic!("{s:?}"),
    }
    for r in plan.runs.iter().filter(|r| !r.deps.is_empty()) {
        assert!(matches!(&report.ended[&r.id], Ended::Skipped(w) if w.contains(&teacher.id)));
    }
    // Independent seed-1 runs finished.
    let ok = plan
        .runs
        .iter()
        .filter(|r| r.spec.seed == 1 && r.deps.is_empty());
    for r in ok {
        assert_eq!(report.ended[&r.id], Ended::Trained);
        assert_eq!(store.state(&r.id), RunState::Done);
    }
    // Without --retry-failed a failed run stays failed and is not attempted again.
    let t = fake(vec![]);
    let report = execute(&plan, &store, &t, Progress::quiet(), Options::default());
    assert!(matches!(&report.ended[&teacher.id], Ended::Failed(w) if w.contains("--retry-failed")));
    assert!(!t.trained.lock().unwrap().contains(&teacher.id));
    // Retrying, two at a time, clears the failure once it succeeds; teachers come first
    // (the fake trainer checks that a student's teacher weights exist).
    let t = fake(vec![]);
    let opts = Options {
        jobs: 2,
        retry_failed: true,
        ..Options::default()
    };
    let report = execute(&plan, &store, &t, Progress::quiet(), opts);
    assert!(report.failures().is_empty(), "{:?}", report.failures());
    assert_eq!(store.state(&teacher.id), RunState::Done);
    assert!(plan
        .runs
        .iter()
        .all(|r| store.state(&r.id) == RunState::Done));
}

/// A stop signal or a results folder that cannot be written stops the invocation: the run
/// in progress is stopped, not failed, and no further run starts.
#[test]
fn a_stop_or_a_write_error_halts_without_marking_failures() {
    let cases: [(fn() -> anyhow::Error, Halt); 2] = [
        (|| Interrupted { signal: 15 }.into(), Halt::Signal(15)),
        (
            || {
                let io = std::io::Error::other("No space left on device");
                anyhow::Error::from(WriteError::new(std::path::Path::new("x"), io))
                    .context("writing the epoch's results")
            },
            Halt::Storage(
                "writing the epoch's results: cannot write x: No space left on device".into(),
            ),
        ),
    ];
    for (error, halt) in cases {
        let dir = folder(&[("r.toml", VANILLA)]);
        let set = load(&[dir.path().to_path_buf()]).unwrap();
        let plan = build(&set, &Scale::named("full").unwrap()).unwrap();
        let store = Store::new(dir.path().join("results"));
        // Both seeds would stop; the first one stops the invocation.
        let t = Fake {
            error,
            ..fake(vec![0, 1])
        };
        let report = execute(&plan, &store, &t, Progress::quiet(), Options::default());
        assert_eq!(report.halted, Some(halt));
        assert_eq!(t.trained.lock().unwrap().len(), 1, "no run after the stop");
        let first = &t.trained.lock().unwrap()[0];
        assert!(matches!(report.ended[first], Ended::Stopped(_)));
        assert_eq!(report.ended.len(), 1, "the other run was not started");
        assert!(report.failures().is_empty());
        // The epoch before the stop is kept; nothing says failed; the lock is gone.
        assert_eq!(store.state(first), RunState::Partial(1));
        assert!(!store.run_dir(first).join(store::FAILED).exists());
        assert!(!store.run_dir(first).join(lock::LOCK).exists());
    }
}

#[test]
fn failure_messages_leave_out_candle_backtraces() {
    let inner = candle_core::Error::Msg("NaN loss".into());
    let e = candle_core::Error::WithBacktrace {
        inner: Box::new(inner),
        backtrace: Box::new(std::backtrace::Backtrace::force_capture()),
    };
    let e = anyhow::Error::from(e).context("epoch 3");
    assert!(
        format!("{e:#}").lines().count() > 2,
        "the test needs a backtrace"
    );
    assert_eq!(super::message(&e), "epoch 3: NaN loss");
    // Other multi-line messages keep their text, on one line.
    let e = anyhow::anyhow!("first\n  second");
    assert_eq!(super::message(&e), "first second");
}

#[test]
fn a_teacher_without_its_weights_trains_again_for_its_students_keeping_its_files() {
    let vanilla14 = VANILLA
        .replace("\"ResNet8\"", "\"ResNet14\"")
        .replace("student = \"resnet8\"", "student = \"resnet14\"")
        .replace("seeds = [0, 1]", "seeds = [0]");
    let kd = VANILLA.replace("\"Vanilla\"", "\"KD\"").replace(
        "method = \"vanilla\"",
        "method = \"kd\"\nteachers = [ { model = \"resnet14\", seeds = [0] } ]",
    );
    let (_dir, _, plan, store) = trained(&[("v14.toml", &vanilla14), ("kd.toml", &kd)]);
    let teacher = plan.runs.iter().find(|r| !r.teacher_of.is_empty()).unwrap();
    let student = plan.runs.iter().find(|r| !r.deps.is_empty()).unwrap();
    let home = store.run_dir(&teacher.id);
    let files = |d: &std::path::Path| {
        [
            store::RUN,
            store::EPOCHS,
            store::SUMMARY,
            store::PREDICTIONS,
        ]
        .map(|f| std::fs::read(d.join(f)).unwrap())
    };
    let committed = files(&home);
    // A fresh clone: CSV and TOML files, no weights. Only done students: nothing to do.
    std::fs::remove_file(home.join(store::WEIGHTS)).unwrap();
    let t = fake(vec![]);
    execute(&plan, &store, &t, Progress::quiet(), Options::default());
    assert!(t.trained.lock().unwrap().is_empty());
    // A student to train: its teacher trains again first, in its own folder.
    std::fs::remove_dir_all(store.run_dir(&student.id)).unwrap();
    let t = fake(vec![]);
    let report = execute(&plan, &store, &t, Progress::quiet(), Options::default());
    assert_eq!(
        *t.trained.lock().unwrap(),
        [teacher.id.clone(), student.id.clone()]
    );
    assert_eq!(report.count(|e| *e == Ended::Trained), 2);
    assert!(store.has_weights(&teacher.id));
    assert!(!home.join(store::REBUILD).exists());
    assert_eq!(store.state(&teacher.id), RunState::Done);
    assert_eq!(store.state(&student.id), RunState::Done);
    // run.toml keeps its first times: the committed files are byte for byte as they were.
    assert!(
        files(&home) == committed,
        "the teacher's committed files changed"
    );
    // A rebuild that fails is a failure like any other: not attempted again without
    // --retry-failed, and the committed files still stand.
    std::fs::remove_file(home.join(store::WEIGHTS)).unwrap();
    std::fs::remove_dir_all(store.run_dir(&student.id)).unwrap();
    let opts = Options::default();
    let report = execute(&plan, &store, &fake(vec![0]), Progress::quiet(), opts);
    assert!(matches!(report.ended[&teacher.id], Ended::Failed(_)));
    assert!(store.rebuild_failure(&teacher.id).is_some());
    assert!(files(&home) == committed);
    let t = fake(vec![]);
    let report = execute(&plan, &store, &t, Progress::quiet(), Options::default());
    assert!(t.trained.lock().unwrap().is_empty());
    assert!(matches!(report.ended[&teacher.id], Ended::Failed(_)));
    let retry = Options {
        retry_failed: true,
        ..Options::default()
    };
    let t = fake(vec![]);
    execute(&plan, &store, &t, Progress::quiet(), retry);
    assert_eq!(t.trained.lock().unwrap().len(), 2);
    assert!(store.has_weights(&teacher.id) && store.rebuild_failure(&teacher.id).is_none());
}

#[test]
fn an_unreadable_summary_is_damaged_left_alone_and_named_by_the_table() {
    let (_dir, set, plan, store) = trained(&[("r.toml", VANILLA)]);
    // A merge conflict in one summary, another run's summary in the other.
    let (a, b) = (&plan.runs[0].id, &plan.runs[1].id);
    let sa = store.run_dir(a).join(store::SUMMARY);
    std::fs::write(&sa, "<<<<<<< HEAD\n").unwrap();
    let record = std::fs::read(store.run_dir(a).join(store::RUN)).unwrap();
    let sb = store.run_dir(b).join(store::SUMMARY);
    let text = std::fs::read_to_string(&sb).unwrap();
    std::fs::write(&sb, text.replace(b.as_str(), a.as_str())).unwrap();
    assert!(matches!(store.state(a), RunState::Damaged(_)));
    assert!(matches!(store.state(b), RunState::Damaged(w) if w.contains("summary of run")));
    let t = fake(vec![]);
    let report = execute(&plan, &store, &t, Progress::quiet(), Options::default());
    assert!(
        t.trained.lock().unwrap().is_empty(),
        "nothing is trained over it"
    );
    assert_eq!(report.count(|e| matches!(e, Ended::Skipped(_))), 2);
    assert_eq!(std::fs::read(&sa).unwrap(), b"<<<<<<< HEAD\n");
    assert_eq!(
        std::fs::read(store.run_dir(a).join(store::RUN)).unwrap(),
        record
    );
    let spec = set.tables.values().next().unwrap();
    let e = crate::report::assemble(spec, &plan, &store, "full").unwrap_err();
    let e = format!("{e:#}");
    assert!(e.contains(a.as_str()) && e.contains(b.as_str()), "{e}");
}

/// A cohort is the scheduler's unit: its members start together once all their teachers
/// are done; a member whose teacher failed is skipped and the rest of its cohort trains;
/// every member's lock is released.
#[test]
fn a_cohort_member_whose_teacher_failed_is_skipped_and_the_rest_trains() {
    let student = |row: &str, method: &str, seeds: &str| {
        VANILLA
            .replace("\"Vanilla\"", &format!("\"{row}\""))
            .replace("seeds = [0, 1]", "seeds = [0]")
            .replace(
                "method = \"vanilla\"",
                &format!(
                    "method = \"{method}\"\nteachers = [ {{ model = \"resnet14\", seeds = {seeds} }} ]"
                ),
            )
    };
    let dir = folder(&[
        ("kd.toml", &student("KD", "kd", "[0]")),
        ("en.toml", &student("LS", "en-sl", "[0, 1]")),
    ]);
    let set = load(&[dir.path().to_path_buf()]).unwrap();
    let plan = build(&set, &Scale::named("full").unwrap()).unwrap();
    let store = Store::new(dir.path().join("results"));
    let students: Vec<&crate::plan::PlannedRun> =
        plan.runs.iter().filter(|r| !r.deps.is_empty()).collect();
    assert_eq!(students.len(), 2);
    let units = super::scheduler::units(
        &plan,
        &plan.runs.iter().collect::<Vec<_>>(),
        Some(1 << 40),
        false,
    );
    assert!(units
        .iter()
        .any(|u| u.len() == 2 && u.iter().all(|r| !r.deps.is_empty())));
    // The teacher of seed 1 fails: En-SL (teachers 0 and 1) is skipped, KD trains.
    let report = execute(
        &plan,
        &store,
        &fake(vec![1]),
        Progress::quiet(),
        Options::default(),
    );
    let (kd, en) = if students[0].deps.len() == 1 {
        (students[0], students[1])
    } else {
        (students[1], students[0])
    };
    assert_eq!(report.ended[&kd.id], Ended::Trained);
    assert!(matches!(&report.ended[&en.id], Ended::Skipped(_)));
    for r in &plan.runs {
        assert!(!store.run_dir(&r.id).join(lock::LOCK).exists(), "{}", r.id);
    }
    // Without cohorts, units are single runs.
    let alone = super::scheduler::units(&plan, &plan.runs.iter().collect::<Vec<_>>(), None, false);
    assert_eq!(alone.len(), plan.runs.len());
}

/// A process killed between a run's done record and its lock's release leaves a lock file
/// in a done run's folder; the next invocation removes it (nobody holds it).
#[test]
fn a_stale_lock_in_a_done_run_is_removed() {
    let (_dir, _set, plan, store) = trained(&[("r.toml", VANILLA)]);
    let id = &plan.runs[0].id;
    let path = store.run_dir(id).join(lock::LOCK);
    std::fs::write(&path, "pid = 4194303\nhost = \"gone\"\nstarted_unix = 0\n").unwrap();
    let t = fake(vec![]);
    execute(&plan, &store, &t, Progress::quiet(), Options::default());
    assert!(t.trained.lock().unwrap().is_empty());
    assert!(!path.exists());
    assert_eq!(store.state(id), RunState::Done);
}
