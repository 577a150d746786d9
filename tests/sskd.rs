//! SSKD through the real `lecal` binary: SSKD students train the same alone as in a
//! cohort (where they share the teacher's head and pass), their training sees rotated
//! copies, and a run killed after a checkpoint resumes (both heads) to the same bytes.

mod common;

use common::{results, same};
use std::fs;
use std::path::Path;

/// A Vanilla ResNet8 teacher (seed 0) and three students of seed 0: SSKD (ResNet8 and
/// ResNet14), and KD (ResNet8), the teacher's head trained for 2 epochs.
fn recipes(dir: &Path) {
    let small = "{ preset = \"sskd\", sskd_head_epochs = 2, sskd_head_milestones = [1] }";
    common::cells(
        dir,
        "s",
        &["SSKD", "KD"],
        &[
            ("sskd8", "SSKD", "resnet8", small),
            ("sskd14", "SSKD", "resnet14", small),
            ("kd", "KD", "resnet8", "\"kd\""),
        ],
        "dataset = \"synthetic\"\n\
         synthetic = { train = 96, test = 40, resolution = 8 }\n\
         schedule = { epochs = 4, milestones = [3], batch = 16 }\nseeds = [0]\n\
         teachers = [ { model = \"resnet8\", seeds = [0], schedule = { epochs = 2, \
         milestones = [1], batch = 32 } } ]\n",
    );
}

fn run_to_end(dir: &Path, results: &str, args: &[&str]) -> String {
    common::run_to_end(dir, results, "recipes/s", args)
}

fn is_sskd(run: &Path) -> bool {
    fs::read_to_string(run.join("run.toml")).is_ok_and(|t| t.contains("[spec.method.sskd]"))
}

#[test]
fn sskd_students_train_the_same_alone_and_in_a_cohort() {
    let d = tempfile::tempdir().unwrap();
    recipes(d.path());
    // The SSKD students see rotated batches, the KD student plain ones: two cohorts; the
    // SSKD students keep their own projection heads beside the model.
    let (_, with_heads) = common::alone_as_in_a_cohort(
        d.path(),
        "recipes/s",
        ("cohort of 2 runs (seed 0)", 4),
        "sskd.proj_s.2.weight",
    );
    assert_eq!(with_heads, 2);
    let runs: Vec<_> = fs::read_dir(d.path().join("alone/runs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(runs.iter().filter(|r| is_sskd(r)).count(), 2);
}

#[test]
fn an_sskd_cohort_killed_after_a_checkpoint_resumes_to_identical_results() {
    let d = tempfile::tempdir().unwrap();
    recipes(d.path());
    run_to_end(d.path(), "alone", &["--no-cohorts"]);
    let reference = results(&d.path().join("alone"), 4);
    let killed = d.path().join("killed");
    common::kill_after_checkpoint(d.path(), "killed", "recipes/s", is_sskd);
    // The checkpoints carry the teacher's trained head.
    let heads = fs::read_dir(killed.join("runs"))
        .unwrap()
        .map(|r| r.unwrap().path())
        .filter(|r| is_sskd(r))
        .flat_map(|r| fs::read_dir(r.join("checkpoint")).into_iter().flatten())
        .filter_map(|e| fs::read(e.unwrap().path()).ok())
        .filter(|b| {
            String::from_utf8_lossy(&b[..b.len().min(20_000)]).contains("sskd.proj_t.0.weight")
        })
        .count();
    assert!(heads > 0, "no checkpoint holds the teacher's head");
    let last = run_to_end(d.path(), "killed", &[]);
    assert!(last.contains("resume "), "{last}");
    same(&reference, &results(&killed, 4));
}
