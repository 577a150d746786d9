//! Cohorts, the real `lecal` binary against itself: runs that see identical batches and
//! train together give byte for byte the results of training each alone (`--no-cohorts`),
//! one member's failure leaves the others alone, and a cohort killed with SIGKILL resumes
//! to the same results.

mod common;

use common::{results, same};
use std::fs;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Five students of one seed with different models, methods, teacher sets and epoch
/// counts (KD-SL+ trains a fourth epoch alone), all with CutMix, on two ResNet14 teachers;
/// with `wild`, a sixth student whose learning rate makes it diverge.
fn recipes(dir: &Path, wild: bool) {
    let r = dir.join("recipes/c");
    fs::create_dir_all(&r).unwrap();
    fs::write(
        r.join("c.table.toml"),
        "title = \"c\"\nrows = [\"Vanilla\", \"KD\", \"SL\", \"En-SL\", \"KD-SL+\", \"Wild\"]\n\
         columns = [\"ResNet8\", \"ResNet14\"]\n",
    )
    .unwrap();
    let cell = |row: &str, student: &str, rest: &str| {
        let column = student.replace("resnet", "ResNet");
        format!(
            "cell = {{ table = \"c\", row = \"{row}\", column = \"{column}\" }}\n\
             dataset = \"synthetic\"\n\
             synthetic = {{ train = 160, test = 40, resolution = 8 }}\n\
             student = \"{student}\"\nseeds = [0]\naugment = {{ kind = \"cutmix\" }}\n{rest}"
        )
    };
    let schedule = "schedule = { epochs = 3, milestones = [2], batch = 32 }\n";
    let teachers = |seeds: &str| {
        format!(
            "teachers = [ {{ model = \"resnet14\", seeds = {seeds}, schedule = {{ epochs = 2, \
             milestones = [1], batch = 32 }} }} ]\n"
        )
    };
    let mut files = vec![
        ("vanilla", cell("Vanilla", "resnet8", schedule)),
        (
            "kd",
            cell(
                "KD",
                "resnet8",
                &format!("{schedule}method = \"kd\"\n{}", teachers("[0]")),
            ),
        ),
        (
            "sl",
            cell(
                "SL",
                "resnet14",
                &format!("{schedule}method = \"sl\"\n{}", teachers("[0]")),
            ),
        ),
        (
            "en-sl",
            cell(
                "En-SL",
                "resnet8",
                &format!("{schedule}method = \"en-sl\"\n{}", teachers("[0, 1]")),
            ),
        ),
        (
            "kd-sl-plus",
            cell(
                "KD-SL+",
                "resnet8",
                &format!(
                    "schedule = {{ epochs = 4, milestones = [2, 3], batch = 32 }}\n\
                     method = \"kd-sl\"\n{}",
                    teachers("[0, 1]")
                ),
            ),
        ),
    ];
    if wild {
        let lr = "schedule = { epochs = 3, milestones = [2], batch = 32, lr = 1e8 }\n";
        files.push(("wild", cell("Wild", "resnet8", lr)));
    }
    for (name, text) in files {
        fs::write(r.join(format!("{name}.toml")), text).unwrap();
    }
}

fn lecal(dir: &Path, results: &str, args: &[&str]) -> Command {
    common::run_command(dir, results, "recipes/c", args)
}

fn text(o: &Output) -> String {
    common::output_text(o)
}

fn run_to_end(dir: &Path, results: &str, args: &[&str]) -> String {
    common::run_to_end(dir, results, "recipes/c", args)
}

/// The test: every member of a cohort (and every teacher) ends bit-identical to
/// training it alone: epochs.csv (but its two timing columns), summary.csv, predictions,
/// reliability and weights. The member that diverges fails the same way in both, and the
/// others finish.
#[test]
fn a_cohort_trains_each_member_bit_identical_to_training_it_alone() {
    let d = tempfile::tempdir().unwrap();
    recipes(d.path(), true);
    let alone = lecal(d.path(), "alone", &["--no-cohorts"])
        .output()
        .unwrap();
    let together = lecal(d.path(), "together", &[]).output().unwrap();
    let (alone_log, log) = (text(&alone), text(&together));
    for (o, l) in [(&alone, &alone_log), (&together, &log)] {
        assert_eq!(o.status.code(), Some(1), "the wild run fails:\n{l}");
        assert!(l.contains("8 runs: 7 trained"), "{l}");
    }
    assert!(!alone_log.contains("cohort of"), "{alone_log}");
    // Vanilla and Wild need no teacher: they train together first. The teachers (no
    // CutMix, seeds 0 and 1) train alone, then the four students with teachers together.
    assert!(log.contains("cohort of 2 runs (seed 0)"), "{log}");
    assert!(log.contains("cohort of 4 runs (seed 0)"), "{log}");
    assert!(
        log.contains("failed in epoch 1; the rest of its cohort goes on"),
        "{log}"
    );
    same(
        &results(&d.path().join("alone"), 7),
        &results(&d.path().join("together"), 7),
    );
    let failure = |p: &str| common::only_failure(&d.path().join(p));
    assert!(failure("together").contains("diverged") || failure("together").contains("loss"));
    assert_eq!(failure("alone"), failure("together"));
}

/// Whether a member of the four-run cohort (the KD and KD-SL+ rows, which start only once
/// both teachers are done) has a checkpoint of `epoch` or later.
fn student_checkpoint(results: &Path, epoch: usize) -> bool {
    let member =
        |run: &Path| fs::read_to_string(run.join("run.toml")).is_ok_and(|t| t.contains("c/KD"));
    common::checkpoint_epochs(results, member)
        .into_iter()
        .any(|e| e >= epoch)
}

/// SIGKILL inside a cohort, at random moments after its members' first checkpoints:
/// every member resumes from its checkpoint and ends identical to training it alone.
#[test]
fn a_cohort_killed_with_sigkill_resumes_to_identical_results() {
    let d = tempfile::tempdir().unwrap();
    recipes(d.path(), false);
    run_to_end(d.path(), "alone", &["--no-cohorts"]);
    let reference = results(&d.path().join("alone"), 7);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut rng = lecal::rng::Rng::new(seed);
    let killed = d.path().join("killed");
    let mut kills = 0;
    for _ in 0..2 {
        let log = fs::File::create(d.path().join(format!("attempt-{kills}.log"))).unwrap();
        let mut child = lecal(d.path(), "killed", &[])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let t = Instant::now();
        let next = 1 + kills;
        while !student_checkpoint(&killed, next) && child.try_wait().unwrap().is_none() {
            assert!(
                t.elapsed() < Duration::from_secs(120),
                "no student checkpoint"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_secs_f64(0.3 * rng.uniform()));
        if child.try_wait().unwrap().is_some() {
            break;
        }
        child.kill().unwrap();
        child.wait().unwrap();
        kills += 1;
    }
    eprintln!("kill seed {seed}: {kills} kills inside the cohort");
    assert!(kills >= 1, "the cohort finished before any kill");
    let last = run_to_end(d.path(), "killed", &[]);
    assert!(last.contains("resume "), "{last}");
    same(&reference, &results(&killed, 7));
}

/// Two processes with cohorts on one results folder: locks give each run to one of them,
/// and the results equal training alone.
#[test]
fn two_processes_share_cohorts_out_under_locks() {
    let d = tempfile::tempdir().unwrap();
    recipes(d.path(), false);
    run_to_end(d.path(), "alone", &["--no-cohorts"]);
    let children: Vec<_> = (0..2)
        .map(|_| {
            lecal(d.path(), "shared", &[])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut trained = 0;
    for c in children {
        let out = c.wait_with_output().unwrap();
        let log = text(&out);
        assert!(out.status.success(), "{log}");
        trained += log
            .lines()
            .find_map(|l| l.strip_prefix("7 runs: ")?.split(' ').next()?.parse().ok())
            .unwrap_or(0usize);
    }
    assert_eq!(trained, 7, "each run trained exactly once");
    same(
        &results(&d.path().join("alone"), 7),
        &results(&d.path().join("shared"), 7),
    );
}
