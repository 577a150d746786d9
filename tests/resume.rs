//! Runs survive being killed, stopped, corrupted and raced: the real `lecal` binary in
//! child processes, compared byte for byte with an uninterrupted run of the same recipes.

mod common;

use common::same;
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

/// A KD student and its ResNet14 teacher, with CutMix, so that a resumed run must restore
/// the teacher dependency, BatchNorm statistics, momentum, the learning-rate schedule and
/// the batch-mixing streams.
fn recipes(dir: &Path) {
    let r = dir.join("recipes/r");
    fs::create_dir_all(&r).unwrap();
    fs::write(
        r.join("r.table.toml"),
        "title = \"r\"\nrows = [\"KD\"]\ncolumns = [\"ResNet8\"]\n",
    )
    .unwrap();
    fs::write(
        r.join("kd.toml"),
        r#"cell = { table = "r", row = "KD", column = "ResNet8" }
dataset = "synthetic"
synthetic = { train = 160, test = 40, resolution = 8 }
schedule = { epochs = 6, milestones = [3, 5], batch = 32 }
student = "resnet8"
seeds = [0]
method = "kd"
teachers = [ { model = "resnet14", seeds = [0] } ]
augment = { kind = "cutmix" }
"#,
    )
    .unwrap();
}

fn lecal(dir: &Path, results: &str) -> Command {
    let mut c = Command::new(assert_cmd::cargo::cargo_bin("lecal"));
    c.current_dir(dir)
        .env_remove("LECAL_RESULTS")
        .env_remove("LECAL_DATA")
        .args(["--results", results, "run", "recipes/r", "--device", "cpu"]);
    c
}

fn spawn(dir: &Path, results: &str, log: &str) -> Child {
    let out = fs::File::create(dir.join(log)).unwrap();
    lecal(dir, results)
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap()
}

fn run_to_end(dir: &Path, results: &str) -> Output {
    let out = lecal(dir, results).output().unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Every result file of both runs (`common::results`).
fn results(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    common::results(dir, 2)
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig}");
}

/// Waits until the run folder holds a checkpoint manifest of the given epoch or later.
fn wait_for_checkpoint(results: &Path, epoch: usize, child: &mut Child) {
    let t = Instant::now();
    loop {
        let found = common::checkpoint_epochs(results, |_| true)
            .into_iter()
            .any(|e| e >= epoch);
        if found {
            return;
        }
        assert!(child.try_wait().unwrap().is_none(), "the run ended early");
        assert!(t.elapsed() < Duration::from_secs(120), "no checkpoint");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The issue's test: SIGKILL at random moments, several times, then resume; the result
/// is byte-identical to a run that was never interrupted.
#[test]
fn a_run_killed_at_random_moments_resumes_to_identical_results() {
    let d = tempfile::tempdir().unwrap();
    recipes(d.path());
    let t = Instant::now();
    run_to_end(d.path(), "reference");
    let reference_secs = t.elapsed().as_secs_f64();
    let reference = results(&d.path().join("reference"));

    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut rng = lecal::rng::Rng::new(seed);
    let mut landed = Vec::new();
    for k in 0..8 {
        let mut child = spawn(d.path(), "killed", &format!("attempt-{k}.log"));
        // Anywhere in the first third of a whole run: start-up, training, evaluation,
        // checkpoint and result writes.
        let after = reference_secs * (0.02 + 0.3 * rng.uniform());
        std::thread::sleep(Duration::from_secs_f64(after));
        if child.try_wait().unwrap().is_some() {
            break; // finished before the kill
        }
        child.kill().unwrap();
        child.wait().unwrap();
        landed.push(format!("{after:.2}s"));
    }
    eprintln!(
        "kill seed {seed}: {} kills landed (after {}); the whole run takes {reference_secs:.1}s",
        landed.len(),
        landed.join(", ")
    );
    assert!(landed.len() >= 3, "only {} kills landed", landed.len());
    let logs: String = (0..landed.len())
        .map(|k| fs::read_to_string(d.path().join(format!("attempt-{k}.log"))).unwrap())
        .collect();
    let last = run_to_end(d.path(), "killed");
    let resumes = (logs + &text(&last)).matches("resume ").count();
    assert!(resumes >= 1, "no attempt resumed from a checkpoint");
    same(&reference, &results(&d.path().join("killed")));
}

/// SIGTERM (and SIGINT, SIGUSR1 alike): no further step, the checkpoint stays, exit
/// 128+15 with a message on how to resume; no failure is recorded. Then the newest
/// checkpoint is corrupted: the resume falls back to the one before and still ends
/// identical.
#[test]
fn sigterm_keeps_the_checkpoint_and_a_corrupt_one_falls_back() {
    let d = tempfile::tempdir().unwrap();
    recipes(d.path());
    run_to_end(d.path(), "reference");
    let reference = results(&d.path().join("reference"));

    let stopped = d.path().join("stopped");
    let mut child = spawn(d.path(), "stopped", "term.log");
    wait_for_checkpoint(&stopped, 2, &mut child);
    signal(&child, "-TERM");
    let status = child.wait().unwrap();
    let log = fs::read_to_string(d.path().join("term.log")).unwrap();
    assert_eq!(status.code(), Some(143), "{log}");
    assert!(log.contains("stopped by SIGTERM"), "{log}");
    assert!(
        log.contains("run the same command again to resume"),
        "{log}"
    );
    let runs: Vec<PathBuf> = fs::read_dir(stopped.join("runs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    for r in &runs {
        assert!(!r.join("failed.toml").exists(), "a stop is not a failure");
        assert!(!r.join("lock").exists(), "the lock is released");
    }
    // Corrupt the newest checkpoint of the run that was stopped.
    let partial = runs
        .iter()
        .find(|r| !r.join("summary.csv").exists())
        .expect("a partial run");
    let mut manifests: Vec<PathBuf> = fs::read_dir(partial.join("checkpoint"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    manifests.sort();
    if manifests.len() == 2 {
        let newest = manifests.last().unwrap();
        let mut bytes = fs::read(newest).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x40;
        fs::write(newest, bytes).unwrap();
    }
    let out = run_to_end(d.path(), "stopped");
    let log = text(&out);
    if manifests.len() == 2 {
        assert!(log.contains("does not match its SHA-256 checksum"), "{log}");
    }
    assert!(log.contains("resume "), "{log}");
    same(&reference, &results(&stopped));
}

/// Three processes on one results folder: every run is trained exactly once, all of
/// them finish, and the results equal a single process's.
#[test]
fn concurrent_processes_train_each_run_once() {
    let d = tempfile::tempdir().unwrap();
    recipes(d.path());
    // A second cell gives the processes independent runs to share out.
    let kd = fs::read_to_string(d.path().join("recipes/r/kd.toml")).unwrap();
    fs::write(
        d.path().join("recipes/r/kd.toml"),
        kd.replace("seeds = [0]\nmethod", "seeds = [0, 1]\nmethod"),
    )
    .unwrap();
    let mut children: Vec<Child> = (0..3)
        .map(|k| spawn(d.path(), "shared", &format!("p{k}.log")))
        .collect();
    let mut trained = 0;
    let mut logs = String::new();
    for (k, c) in children.iter_mut().enumerate() {
        let status = c.wait().unwrap();
        let log = fs::read_to_string(d.path().join(format!("p{k}.log"))).unwrap();
        assert!(status.success(), "{log}");
        let n: usize = log
            .lines()
            .find_map(|l| l.strip_prefix("3 runs: ")?.split(' ').next()?.parse().ok())
            .unwrap_or_else(|| panic!("no summary line in {log}"));
        trained += n;
        logs += &log;
    }
    assert_eq!(trained, 3, "each run trained exactly once:\n{logs}");
    assert!(
        !logs.contains("resume "),
        "no run was taken from another:\n{logs}"
    );
    let shared = d.path().join("shared");
    for r in fs::read_dir(shared.join("runs")).unwrap() {
        let r = r.unwrap().path();
        assert!(r.join("summary.csv").is_file());
        assert!(!r.join("lock").exists());
    }
    let out = run_to_end(d.path(), "alone");
    assert!(text(&out).contains("3 runs: 3 trained"));
    let files = |p: &str| -> BTreeMap<String, Vec<u8>> {
        let mut m = BTreeMap::new();
        for r in fs::read_dir(d.path().join(p).join("runs")).unwrap() {
            let r = r.unwrap().path();
            for f in ["summary.csv", "weights.safetensors", "predictions.csv"] {
                m.insert(
                    format!("{}/{f}", r.file_name().unwrap().to_str().unwrap()),
                    fs::read(r.join(f)).unwrap(),
                );
            }
        }
        m
    };
    same(&files("alone"), &files("shared"));
}

/// A process killed while training leaves its lock file; the next process sees that the
/// holder is gone, takes the lock over, says so, and resumes.
#[test]
fn a_stale_lock_of_a_killed_process_is_taken_over() {
    let d = tempfile::tempdir().unwrap();
    recipes(d.path());
    let results = d.path().join("results");
    let mut child = spawn(d.path(), "results", "killed.log");
    wait_for_checkpoint(&results, 1, &mut child);
    child.kill().unwrap();
    child.wait().unwrap();
    let pid = child.id();
    let locks: Vec<String> = fs::read_dir(results.join("runs"))
        .unwrap()
        .filter_map(|r| fs::read_to_string(r.unwrap().path().join("lock")).ok())
        .collect();
    assert_eq!(locks.len(), 1, "the killed process left its lock file");
    assert!(locks[0].contains(&format!("pid = {pid}")), "{}", locks[0]);
    let out = run_to_end(d.path(), "results");
    let log = text(&out);
    assert!(
        log.contains(&format!(
            "taking over the lock left by pid {pid} on {}",
            lecal::store::lock::hostname()
        )),
        "{log}"
    );
    assert!(log.contains("resume "), "{log}");
}

/// SIGINT (Ctrl-C) and SIGUSR1 (Slurm's `--signal` warning) stop a run as SIGTERM does,
/// each with its own exit status.
#[test]
fn sigint_and_sigusr1_stop_cleanly_too() {
    for (sig, name, code) in [("-INT", "SIGINT", 130), ("-USR1", "SIGUSR1", 138)] {
        let d = tempfile::tempdir().unwrap();
        recipes(d.path());
        let results = d.path().join("results");
        let mut child = spawn(d.path(), "results", "log");
        wait_for_checkpoint(&results, 1, &mut child);
        signal(&child, sig);
        let status = child.wait().unwrap();
        let log = fs::read_to_string(d.path().join("log")).unwrap();
        assert_eq!(status.code(), Some(code), "{log}");
        assert!(log.contains(&format!("stopped by {name}")), "{log}");
        let out = run_to_end(d.path(), "results");
        assert!(text(&out).contains("resume "), "{}", text(&out));
    }
}
