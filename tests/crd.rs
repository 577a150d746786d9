//! CRD and CRD+KD through the real `lecal` binary: a CRD student trains the same alone as
//! in a cohort with other students of its teacher, and a run killed after a checkpoint
//! resumes (heads, memories and their constants) to the same bytes.

mod common;

use common::{results, same};
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A Vanilla ResNet8 teacher (seed 0) and three students of seed 0: CRD (ResNet8), CRD+KD
/// (ResNet14) and KD (ResNet8), with CRD's memory and negatives shrunk to the data.
fn recipes(dir: &Path) {
    let r = dir.join("recipes/k");
    fs::create_dir_all(&r).unwrap();
    fs::write(
        r.join("k.table.toml"),
        "title = \"k\"\nrows = [\"CRD\", \"CRD+KD\", \"KD\"]\ncolumns = [\"ResNet8\", \"ResNet14\"]\n",
    )
    .unwrap();
    let small = "crd_dim = 16, crd_negatives = 48";
    for (name, row, student, method) in [
        (
            "crd",
            "CRD",
            "resnet8",
            format!("{{ preset = \"crd\", {small} }}"),
        ),
        (
            "crd-kd",
            "CRD+KD",
            "resnet14",
            format!("{{ preset = \"crd-kd\", {small} }}"),
        ),
        ("kd", "KD", "resnet8", "\"kd\"".to_string()),
    ] {
        let column = student.replace("resnet", "ResNet");
        let text = format!(
            "cell = {{ table = \"k\", row = \"{row}\", column = \"{column}\" }}\n\
             dataset = \"synthetic\"\n\
             synthetic = {{ train = 160, test = 40, resolution = 8 }}\n\
             schedule = {{ epochs = 5, milestones = [3], batch = 32 }}\n\
             student = \"{student}\"\nseeds = [0]\nmethod = {method}\n\
             teachers = [ {{ model = \"resnet8\", seeds = [0], schedule = {{ epochs = 2, \
             milestones = [1], batch = 32 }} }} ]\n"
        );
        fs::write(r.join(format!("{name}.toml")), text).unwrap();
    }
}

fn lecal(dir: &Path, results: &str, args: &[&str]) -> Command {
    common::run_command(dir, results, "recipes/k", args)
}

fn run_to_end(dir: &Path, results: &str, args: &[&str]) -> String {
    common::run_to_end(dir, results, "recipes/k", args)
}

#[test]
fn crd_students_train_the_same_alone_and_in_a_cohort() {
    let d = tempfile::tempdir().unwrap();
    recipes(d.path());
    run_to_end(d.path(), "alone", &["--no-cohorts"]);
    let log = run_to_end(d.path(), "together", &[]);
    assert!(log.contains("cohort of 3 runs (seed 0)"), "{log}");
    let alone = results(&d.path().join("alone"), 4);
    same(&alone, &results(&d.path().join("together"), 4));
    // The CRD students keep their trained heads beside the model.
    let with_heads = alone
        .iter()
        .filter(|(k, v)| {
            k.ends_with("weights.safetensors")
                && String::from_utf8_lossy(&v[..v.len().min(20_000)]).contains("crd.embed_t.weight")
        })
        .count();
    assert_eq!(with_heads, 2);
    // CRD's term is in the training loss: the CRD and KD students of ResNet8 differ.
    let specs: Vec<String> = fs::read_dir(d.path().join("alone/runs"))
        .unwrap()
        .map(|e| fs::read_to_string(e.unwrap().path().join("run.toml")).unwrap())
        .collect();
    assert_eq!(
        specs
            .iter()
            .filter(|s| s.contains("[spec.method.crd]"))
            .count(),
        2
    );
}

/// Whether a CRD run has a checkpoint of `epoch` or later.
fn crd_checkpoint(results: &Path, epoch: usize) -> bool {
    let crd = |run: &Path| {
        fs::read_to_string(run.join("run.toml")).is_ok_and(|t| t.contains("[spec.method.crd]"))
    };
    common::checkpoint_epochs(results, crd)
        .into_iter()
        .any(|e| e >= epoch)
}

#[test]
fn a_crd_cohort_killed_after_a_checkpoint_resumes_to_identical_results() {
    let d = tempfile::tempdir().unwrap();
    recipes(d.path());
    run_to_end(d.path(), "alone", &["--no-cohorts"]);
    let reference = results(&d.path().join("alone"), 4);
    let killed = d.path().join("killed");
    let mut child = lecal(d.path(), "killed", &[])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while !crd_checkpoint(&killed, 1) && child.try_wait().unwrap().is_none() {
        assert!(t.elapsed() < Duration::from_secs(120), "no CRD checkpoint");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "the runs finished before the kill"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let last = run_to_end(d.path(), "killed", &[]);
    assert!(last.contains("resume "), "{last}");
    same(&reference, &results(&killed, 4));
}
