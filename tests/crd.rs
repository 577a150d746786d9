//! CRD and CRD+KD through the real `lecal` binary: a CRD student trains the same alone as
//! in a cohort with other students of its teacher, and a run killed after a checkpoint
//! resumes (heads, memories and their constants) to the same bytes.

mod common;

use common::{results, same};
use std::fs;
use std::path::Path;

/// A Vanilla ResNet8 teacher (seed 0) and three students of seed 0: CRD (ResNet8), CRD+KD
/// (ResNet14) and KD (ResNet8), with CRD's memory and negatives shrunk to the data.
fn recipes(dir: &Path) {
    let crd = "{ preset = \"crd\", crd_dim = 16, crd_negatives = 48 }";
    let crd_kd = "{ preset = \"crd-kd\", crd_dim = 16, crd_negatives = 48 }";
    common::cells(
        dir,
        "k",
        &["CRD", "CRD+KD", "KD"],
        &[
            ("crd", "CRD", "resnet8", crd),
            ("crd-kd", "CRD+KD", "resnet14", crd_kd),
            ("kd", "KD", "resnet8", "\"kd\""),
        ],
        "dataset = \"synthetic\"\n\
         synthetic = { train = 160, test = 40, resolution = 8 }\n\
         schedule = { epochs = 5, milestones = [3], batch = 32 }\nseeds = [0]\n\
         teachers = [ { model = \"resnet8\", seeds = [0], schedule = { epochs = 2, \
         milestones = [1], batch = 32 } } ]\n",
    );
}

fn run_to_end(dir: &Path, results: &str, args: &[&str]) -> String {
    common::run_to_end(dir, results, "recipes/k", args)
}

fn is_crd(run: &Path) -> bool {
    fs::read_to_string(run.join("run.toml")).is_ok_and(|t| t.contains("[spec.method.crd]"))
}

#[test]
fn crd_students_train_the_same_alone_and_in_a_cohort() {
    let d = tempfile::tempdir().unwrap();
    recipes(d.path());
    // The CRD students keep their trained heads beside the model.
    let (_, with_heads) = common::alone_as_in_a_cohort(
        d.path(),
        "recipes/k",
        ("cohort of 3 runs (seed 0)", 4),
        "crd.embed_t.weight",
    );
    assert_eq!(with_heads, 2);
    // CRD's term is in the training loss: the CRD and KD students of ResNet8 differ.
    let runs = fs::read_dir(d.path().join("alone/runs")).unwrap();
    assert_eq!(
        runs.filter(|e| is_crd(&e.as_ref().unwrap().path())).count(),
        2
    );
}

#[test]
fn a_crd_cohort_killed_after_a_checkpoint_resumes_to_identical_results() {
    let d = tempfile::tempdir().unwrap();
    recipes(d.path());
    run_to_end(d.path(), "alone", &["--no-cohorts"]);
    let reference = results(&d.path().join("alone"), 4);
    common::kill_after_checkpoint(d.path(), "killed", "recipes/k", is_crd);
    let last = run_to_end(d.path(), "killed", &[]);
    assert!(last.contains("resume "), "{last}");
    same(&reference, &results(&d.path().join("killed"), 4));
}
