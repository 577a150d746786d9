//! `lecal submit` on a real single-node Slurm cluster (`make test-slurm` starts one with
//! `scripts/slurm-local.sh`, runs these, and stops it): jobs with dependencies, a failed
//! teacher cancelling its students, a requeued job resuming, submitting twice.

mod common;

use common::{results, same};
use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn lecal(dir: &Path, results: &Path) -> assert_cmd::Command {
    let mut c = common::lecal(dir);
    c.args(["--results", results.to_str().unwrap()]);
    c
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `lecal submit` of CPU jobs of one CPU each.
fn submit(dir: &Path, results: &Path, recipes: &str) -> String {
    submit_with(dir, results, recipes, &[])
}

fn submit_with(dir: &Path, results: &Path, recipes: &str, extra: &[&str]) -> String {
    let out = lecal(dir, results)
        .args([
            "submit",
            recipes,
            "--gpus-per-job",
            "0",
            "--cpus-per-job",
            "1",
        ])
        .args(["--device", "cpu"])
        .args(extra)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    text(&out)
}

/// The job ids of the ledgers in `results`.
fn jobs(results: &Path) -> BTreeSet<String> {
    fs::read_dir(results.join("runs"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|r| fs::read_to_string(r.path().join("slurm.toml")).ok())
        .filter_map(|t| {
            let v: toml::Value = toml::from_str(&t).ok()?;
            Some(v.get("job_id")?.as_str()?.to_string())
        })
        .collect()
}

/// Each job's state, from `squeue`.
fn states(ids: &BTreeSet<String>) -> Vec<(String, String)> {
    let out = Command::new("squeue")
        .args(["-h", "-t", "all", "-o", "%i %T"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(' '))
        .filter(|(i, _)| ids.contains(*i))
        .map(|(i, s)| (i.to_string(), s.trim().to_string()))
        .collect()
}

/// Waits until every job of `results` has ended; their final states.
fn wait_for_jobs(results: &Path, minutes: u64) -> Vec<(String, String)> {
    let ids = jobs(results);
    assert!(!ids.is_empty(), "no job submitted");
    let t = Instant::now();
    loop {
        let s = states(&ids);
        let ended = [
            "COMPLETED",
            "FAILED",
            "CANCELLED",
            "TIMEOUT",
            "OUT_OF_MEMORY",
        ];
        if s.len() == ids.len() && s.iter().all(|(_, st)| ended.contains(&st.as_str())) {
            return s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60 * minutes),
            "jobs still running after {minutes} min: {s:?}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The issue's test: the demo through Slurm (at smoke scale, to keep it short) equals the
/// committed table, `results/tables/demo.smoke.md`, byte for byte, and submitting again
/// submits nothing.
#[test]
#[ignore = "needs a Slurm cluster: make test-slurm"]
fn the_demo_through_slurm_gives_the_committed_table() {
    let d = tempfile::tempdir().unwrap();
    let res = d.path().join("results");
    let smoke = ["--scale", "smoke"];
    let first = submit_with(&root(), &res, "recipes/demo", &smoke);
    // Per seed: the ResNet14 teacher, the students without a teacher, with one, with RICAP.
    assert!(first.contains("12 jobs submitted"), "{first}");
    assert!(first.contains("--dependency=afterok:"), "{first}");
    let again = submit_with(&root(), &res, "recipes/demo", &smoke);
    assert!(again.contains("nothing to submit"), "{again}");
    let end = wait_for_jobs(&res, 20);
    assert!(end.iter().all(|(_, s)| s == "COMPLETED"), "{end:?}");
    let out = lecal(&root(), &res)
        .args(["table", "demo", "--scale", "smoke"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let got = fs::read(res.join("tables/demo.smoke.md")).unwrap();
    assert!(got == fs::read(root().join("results/tables/demo.smoke.md")).unwrap());
    let again = submit_with(&root(), &res, "recipes/demo", &smoke);
    assert!(again.contains("nothing to submit"), "{again}");
}

fn recipe(dir: &Path, name: &str, body: &str) {
    let r = dir.join("recipes/s");
    fs::create_dir_all(&r).unwrap();
    fs::write(
        r.join("s.table.toml"),
        "title = \"s\"\nrows = [\"Vanilla\", \"KD\"]\ncolumns = [\"ResNet8\"]\n",
    )
    .unwrap();
    fs::write(r.join(format!("{name}.toml")), body).unwrap();
}

/// A teacher that diverges fails its job; Slurm cancels the student's job, the student
/// never trains, and `lecal status` says why.
#[test]
#[ignore = "needs a Slurm cluster: make test-slurm"]
fn a_failed_teacher_cancels_its_students() {
    let d = tempfile::tempdir().unwrap();
    recipe(
        d.path(),
        "kd",
        r#"cell = { table = "s", row = "KD", column = "ResNet8" }
dataset = "synthetic"
synthetic = { train = 64, test = 20, resolution = 8 }
schedule = { epochs = 2, milestones = [1], batch = 32 }
student = "resnet8"
seeds = [0]
method = "kd"
teachers = [ { model = "resnet14", seeds = [0], schedule = { epochs = 2, milestones = [1], batch = 32, lr = 1e8 } } ]
"#,
    );
    let res = d.path().join("results");
    let out = submit(d.path(), &res, "recipes/s");
    assert!(out.contains("2 jobs submitted"), "{out}");
    let end = wait_for_jobs(&res, 10);
    let mut st: Vec<&str> = end.iter().map(|(_, s)| s.as_str()).collect();
    st.sort_unstable();
    assert_eq!(st, ["CANCELLED", "FAILED"], "{end:?}");
    let status = lecal(d.path(), &res)
        .args(["status", "recipes/s"])
        .output()
        .unwrap();
    let s = text(&status);
    assert!(s.contains("1 failed, 1 pending"), "{s}");
    assert!(
        s.contains("did not run, its teacher run synthetic-resnet14-"),
        "{s}"
    );
    // The student never started: its folder holds its ledger only.
    let student = fs::read_dir(res.join("runs"))
        .unwrap()
        .flatten()
        .find(|r| r.file_name().to_string_lossy().contains("resnet8"))
        .unwrap();
    let files: Vec<String> = fs::read_dir(student.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files, ["slurm.toml"]);
}

/// A job requeued mid-training (`scontrol requeue`, as pre-emption does) runs again and
/// resumes from its checkpoint; then the signal Slurm sends before a time limit (USR1 to
/// the batch shell) stops lecal, which requeues the job, which resumes again. It ends
/// with the files of an uninterrupted run.
#[test]
#[ignore = "needs a Slurm cluster: make test-slurm"]
fn a_requeued_job_resumes_to_identical_results() {
    let d = tempfile::tempdir().unwrap();
    recipe(
        d.path(),
        "vanilla",
        r#"cell = { table = "s", row = "Vanilla", column = "ResNet8" }
dataset = "synthetic"
synthetic = { train = 600, test = 100, resolution = 8 }
schedule = { epochs = 10, milestones = [5, 8], batch = 32 }
student = "resnet8"
seeds = [0]
augment = { kind = "cutmix" }
"#,
    );
    let reference = d.path().join("reference");
    let out = lecal(d.path(), &reference)
        .args(["run", "recipes/s", "--device", "cpu"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let res = d.path().join("results");
    submit(d.path(), &res, "recipes/s");
    let job = jobs(&res).into_iter().next().unwrap();
    let wait_for_checkpoint = |epoch: usize| {
        let t = Instant::now();
        let name = format!("checkpoint/epoch-{epoch:06}.toml");
        let found = || {
            fs::read_dir(res.join("runs"))
                .into_iter()
                .flatten()
                .flatten()
                .any(|r| r.path().join(&name).is_file())
        };
        while !found() {
            assert!(
                t.elapsed() < Duration::from_secs(300),
                "no checkpoint {epoch}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    // Pre-empted after the second epoch.
    wait_for_checkpoint(2);
    let rq = Command::new("scontrol")
        .args(["requeue", &job])
        .output()
        .unwrap();
    assert!(rq.status.success(), "{}", text(&rq));
    // Near its time limit after the fifth.
    wait_for_checkpoint(5);
    let sig = Command::new("scancel")
        .args(["--batch", "--signal=USR1", &job])
        .output()
        .unwrap();
    assert!(sig.status.success(), "{}", text(&sig));
    let end = wait_for_jobs(&res, 10);
    assert_eq!(end, [(job.clone(), "COMPLETED".to_string())]);
    let log: String = fs::read_dir(res.join("slurm"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".out"))
        .map(|e| fs::read_to_string(e.path()).unwrap())
        .collect();
    assert!(log.contains("stopped by SIGUSR1"), "{log}");
    assert_eq!(log.matches("resume ").count(), 2, "two resumes:\n{log}");
    same(&results(&reference, 1), &results(&res, 1));
}

/// A job whose estimate exceeds the partition's time limit gets the limit, and relies on
/// requeue and resume (said when submitting).
#[test]
#[ignore = "needs a Slurm cluster: make test-slurm"]
fn a_job_longer_than_the_partition_limit_gets_the_limit() {
    let d = tempfile::tempdir().unwrap();
    let res = d.path().join("results");
    let out = lecal(&root(), &res)
        .args([
            "submit",
            "recipes/cifar100",
            "--dry-run",
            "--partition",
            "short",
        ])
        .args(["--gpus-per-job", "0"])
        .output()
        .unwrap();
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    let jobs: Vec<&str> = t
        .lines()
        .filter(|l| l.starts_with("would submit"))
        .collect();
    assert_eq!(jobs.len(), 12, "{t}");
    assert!(jobs.iter().all(|l| l.contains("--time=0-00:30:00")), "{t}");
    assert!(t.contains("above the partition's limit 0-00:30:00"), "{t}");
}

/// Issue 30: a results folder whose path needs quoting (blanks, `$(…)`, a quote, `%`) and
/// an option with a quoted blank and a `#` reach real sbatch as written: the job
/// completes in that folder, Slurm shows the comment whole, its output file is there.
#[test]
#[ignore = "needs a Slurm cluster: make test-slurm"]
fn awkward_paths_and_quoted_options_reach_slurm_as_written() {
    let d = tempfile::tempdir().unwrap();
    recipe(
        d.path(),
        "vanilla",
        r#"cell = { table = "s", row = "Vanilla", column = "ResNet8" }
dataset = "synthetic"
synthetic = { train = 64, test = 20, resolution = 8 }
schedule = { epochs = 1, milestones = [], batch = 32 }
student = "resnet8"
seeds = [0]
"#,
    );
    let res = d.path().join("res ults $(touch pwned) it's 100%");
    let comment = ["--extra-sbatch", "--comment='a b # c'"];
    submit_with(d.path(), &res, "recipes/s", &comment);
    let ended = wait_for_jobs(&res, 5);
    assert!(ended.iter().all(|(_, s)| s == "COMPLETED"), "{ended:?}");
    let job = jobs(&res).into_iter().next().unwrap();
    let shown = Command::new("scontrol")
        .args(["show", "job", &job])
        .output()
        .unwrap();
    let shown = text(&shown);
    assert!(shown.contains("Comment=a b # c"), "{shown}");
    let outs: Vec<String> = fs::read_dir(res.join("slurm"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(&format!("-{job}.out")))
        .collect();
    assert_eq!(outs.len(), 1, "{shown}");
    let runs = fs::read_dir(res.join("runs")).unwrap().flatten();
    assert_eq!(
        runs.filter(|r| r.path().join("done.toml").exists()).count(),
        1
    );
    assert!(!d.path().join("pwned").exists() && !res.join("pwned").exists());
}
