//! Fused students, the real `lecal` binary against itself: a cohort's students of one
//! architecture trained as one fused network (`--fusion on`) give byte for byte the
//! results of training each run alone (`--no-cohorts`), for a Table-1-like cohort at
//! smoke scale: plain, KD, WSL, SL, En-SL and KD-SL rows, a "+" row of more epochs with its
//! own milestones, a mixed-batch (CutMix) cohort, and two architectures. A member that
//! diverges fails alone, and a fused cohort killed with SIGKILL resumes, its members at
//! different epochs, to the same results.

mod common;

use common::{results, same};
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

/// Runs that finish: two ResNet14 teachers, two ResNet14 students, seven ResNet8
/// students on plain batches and three on CutMix batches.
const DONE: usize = 14;

/// The recipes of table `f`; with `wild`, a ResNet8 KD student whose learning rate makes
/// it diverge, in the fused group of the plain batches (which goes on fused without it).
fn recipes(dir: &Path, wild: bool) {
    let rows = [
        "Vanilla",
        "KD",
        "WSL",
        "SL",
        "En-SL",
        "KD-SL",
        "KD-SL+",
        "Aug-SL",
        "Aug-KD-SL",
        "Aug-KD-SL+",
        "Wild",
    ];
    let r = dir.join("recipes/f");
    fs::create_dir_all(&r).unwrap();
    let quoted: Vec<String> = rows.iter().map(|r| format!("\"{r}\"")).collect();
    fs::write(
        r.join("f.table.toml"),
        format!(
            "title = \"f\"\nrows = [{}]\ncolumns = [\"ResNet8\", \"ResNet14\"]\n",
            quoted.join(", ")
        ),
    )
    .unwrap();
    // Three epochs for the table's rows, four for the "+" rows (240 and 350 at full
    // scale), each with its own milestones.
    let short = "schedule = { epochs = 3, milestones = [2], batch = 32 }\n";
    let long = "schedule = { epochs = 4, milestones = [2, 3], batch = 32 }\n";
    let teachers = |seeds: &str| {
        format!(
            "teachers = [ {{ model = \"resnet14\", seeds = {seeds}, schedule = {{ epochs = 2, \
             milestones = [1], batch = 32 }} }} ]\n"
        )
    };
    let (one, two) = (teachers("[0]"), teachers("[0, 1]"));
    let cutmix = "augment = { kind = \"cutmix\" }\n";
    let mut cells: Vec<(&str, &str, &str, String)> = vec![
        ("vanilla", "Vanilla", "resnet8", short.to_string()),
        ("vanilla14", "Vanilla", "resnet14", short.to_string()),
        (
            "kd",
            "KD",
            "resnet8",
            format!("{short}method = \"kd\"\n{one}"),
        ),
        (
            "kd14",
            "KD",
            "resnet14",
            format!("{short}method = \"kd\"\n{one}"),
        ),
        (
            "wsl",
            "WSL",
            "resnet8",
            format!("{short}method = \"wsl\"\n{one}"),
        ),
        (
            "sl",
            "SL",
            "resnet8",
            format!("{short}method = \"sl\"\n{one}"),
        ),
        (
            "en-sl",
            "En-SL",
            "resnet8",
            format!("{short}method = \"en-sl\"\n{two}"),
        ),
        (
            "kd-sl",
            "KD-SL",
            "resnet8",
            format!("{short}method = \"kd-sl\"\n{two}"),
        ),
        (
            "kd-sl-plus",
            "KD-SL+",
            "resnet8",
            format!("{long}method = \"kd-sl\"\n{two}"),
        ),
        (
            "aug-sl",
            "Aug-SL",
            "resnet8",
            format!("{short}method = \"sl\"\n{one}{cutmix}"),
        ),
        (
            "aug-kd-sl",
            "Aug-KD-SL",
            "resnet8",
            format!("{short}method = \"kd-sl\"\n{two}{cutmix}"),
        ),
        (
            "aug-kd-sl-plus",
            "Aug-KD-SL+",
            "resnet8",
            format!("{long}method = \"kd-sl\"\n{two}{cutmix}"),
        ),
    ];
    if wild {
        let lr = "schedule = { epochs = 3, milestones = [2], batch = 32, lr = 1e8 }\n";
        cells.push((
            "wild",
            "Wild",
            "resnet8",
            format!("{lr}method = \"kd\"\n{one}"),
        ));
    }
    for (file, row, student, rest) in cells {
        let column = student.replace("resnet", "ResNet");
        let text = format!(
            "cell = {{ table = \"f\", row = \"{row}\", column = \"{column}\" }}\n\
             dataset = \"synthetic\"\n\
             synthetic = {{ train = 160, test = 40, resolution = 8 }}\n\
             student = \"{student}\"\nseeds = [0]\n{rest}"
        );
        fs::write(r.join(format!("{file}.toml")), text).unwrap();
    }
}

fn run(dir: &Path, results: &str, args: &[&str]) -> std::process::Output {
    common::run_command(dir, results, "recipes/f", args)
        .env_remove("LECAL_FUSION")
        .output()
        .unwrap()
}

/// The test: every member of the fused groups ends with the bytes of training it
/// alone (epochs.csv but its timing columns, summary, predictions, logits, reliability,
/// weights), and the member that diverges fails alone, with the same failure.
#[test]
fn fused_students_train_bit_identical_to_each_run_alone() {
    let d = tempfile::tempdir().unwrap();
    recipes(d.path(), true);
    let alone = run(d.path(), "alone", &["--no-cohorts"]);
    let fused = run(d.path(), "fused", &["--fusion", "on"]);
    let (alone_log, log) = (common::output_text(&alone), common::output_text(&fused));
    for (o, l) in [(&alone, &alone_log), (&fused, &log)] {
        assert_eq!(o.status.code(), Some(1), "the wild run fails:\n{l}");
        assert!(l.contains("15 runs: 14 trained"), "{l}");
    }
    assert!(!alone_log.contains("fused"), "{alone_log}");
    // The teacher of seed 0 fuses with the ResNet14 student that needs no teacher; then
    // the students of the plain batches (seven ResNet8 with the wild one; the ResNet14
    // trains alone) and of the CutMix batches.
    for group in [
        "cohort of 3 runs (seed 0): one stream of batches, each teacher once per batch; \
         fused: 2 × resnet14",
        "fused: 7 × resnet8",
        "fused: 3 × resnet8",
    ] {
        assert!(log.contains(group), "{group}:\n{log}");
    }
    assert!(
        log.contains("failed in epoch 1; the rest of its cohort goes on"),
        "{log}"
    );
    same(
        &results(&d.path().join("alone"), DONE),
        &results(&d.path().join("fused"), DONE),
    );
    let failure = |p: &str| common::only_failure(&d.path().join(p));
    // It fails inside a step of its first epoch, leaving the fused group mid-epoch.
    let why = failure("fused");
    assert!(
        why.contains("epoch 1, batch") && why.contains("loss"),
        "{why}"
    );
    assert_eq!(failure("alone"), why);
}

/// Whether `run` is the KD, KD-SL or KD-SL+ student of the plain batches (four runs).
fn plain_student(run: &Path) -> bool {
    fs::read_to_string(run.join("run.toml")).is_ok_and(|t| t.contains("\"f/KD"))
}

/// SIGKILL inside a fused cohort once its students have checkpoints of epoch 2; one
/// member's newest checkpoint is then deleted, so that the cohort resumes with its members
/// at different epochs (that one catches up alone, then fuses with the others again), and
/// every run ends with the bytes of training it alone.
#[test]
fn a_fused_cohort_killed_with_sigkill_resumes_at_mixed_epochs_to_identical_results() {
    let d = tempfile::tempdir().unwrap();
    recipes(d.path(), false);
    let out = run(d.path(), "alone", &["--no-cohorts"]);
    assert!(out.status.success(), "{}", common::output_text(&out));
    let reference = results(&d.path().join("alone"), DONE);
    let killed = d.path().join("killed");
    let mut child = common::run_command(d.path(), "killed", "recipes/f", &["--fusion", "on"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t = Instant::now();
    let at_two = |p: &Path| common::checkpoint_epochs(&killed, |r| r == p).contains(&2);
    let students = || -> Vec<std::path::PathBuf> {
        (fs::read_dir(killed.join("runs"))
            .into_iter()
            .flatten()
            .flatten())
        .map(|e| e.path())
        .filter(|p| plain_student(p))
        .collect()
    };
    while !(students().len() == 4 && students().iter().all(|p| at_two(p))) {
        assert!(
            child.try_wait().unwrap().is_none(),
            "finished before the kill"
        );
        assert!(t.elapsed() < Duration::from_secs(120), "no checkpoints");
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // The ResNet8 KD student (three epochs) back to epoch 1.
    let kd = (students().into_iter())
        .find(|p| fs::read_to_string(p.join("run.toml")).is_ok_and(|t| t.contains("f/KD/ResNet8")))
        .expect("the KD student");
    for ext in ["toml", "safetensors"] {
        let f = kd.join(format!("checkpoint/epoch-000002.{ext}"));
        if f.exists() {
            fs::remove_file(f).unwrap();
        }
    }
    let resumed = run(d.path(), "killed", &["--fusion", "on"]);
    let log = common::output_text(&resumed);
    assert!(resumed.status.success(), "{log}");
    let kd_id = kd.file_name().unwrap().to_str().unwrap();
    for line in [
        format!("resume {kd_id} after epoch 1 of 3"),
        "after epoch 2 of 4".into(),
    ] {
        assert!(log.contains(&line), "{line}:\n{log}");
    }
    same(&reference, &results(&killed, DONE));
}
