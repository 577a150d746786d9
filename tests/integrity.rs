//! Nothing wrong passes as done (issue 13): each test pins one way a wrong result or an
//! out-of-range recipe once got through, through the real binary.

mod common;

use common::{lecal, GOOD, TABLE};
use std::fs;
use std::path::{Path, PathBuf};

/// A folder with the table spec and `r.toml` under `recipes/h/`.
fn folder(recipe: &str) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let r = d.path().join("recipes/h");
    fs::create_dir_all(&r).unwrap();
    fs::write(r.join("h.table.toml"), TABLE).unwrap();
    fs::write(r.join("r.toml"), recipe).unwrap();
    d
}

struct Out {
    ok: bool,
    stdout: String,
    stderr: String,
}

fn run(d: &Path, args: &[&str]) -> Out {
    let o = lecal(d).args(args).output().unwrap();
    Out {
        ok: o.status.success(),
        stdout: String::from_utf8_lossy(&o.stdout).into(),
        stderr: String::from_utf8_lossy(&o.stderr).into(),
    }
}

/// The only run folder of the results.
fn run_dir(d: &Path) -> PathBuf {
    let mut dirs: Vec<PathBuf> = fs::read_dir(d.join("results/runs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs.pop().unwrap()
}

/// `plan` fails naming the recipe file and every expected part, and nothing is written.
fn recipe_error(recipe: &str, expected: &[&str]) {
    let d = folder(recipe);
    for cmd in ["plan", "run"] {
        let o = run(
            d.path(),
            &[cmd, "recipes/h", "--device", "cpu"][..if cmd == "plan" { 2 } else { 4 }],
        );
        assert!(!o.ok, "`{cmd}` exit 0 for {expected:?}");
        assert!(o.stderr.contains("r.toml"), "{}", o.stderr);
        for e in expected {
            assert!(o.stderr.contains(e), "expected `{e}` in:\n{}", o.stderr);
        }
    }
    assert!(
        !d.path().join("results").exists(),
        "a results folder was written"
    );
}

#[test]
fn a_diverged_run_fails_in_its_epoch_and_is_never_done() {
    // One epoch at lr 1e8: the loss stays finite, the test Brier score does not (before
    // the check, this run was written as done with `brier = NaN`).
    let d = folder(&GOOD.replace(
        "epochs = 2, milestones = [1], batch = 32 }",
        "epochs = 1, milestones = [], batch = 32, lr = 1e8 }",
    ));
    let o = run(d.path(), &["run", "recipes/h", "--device", "cpu"]);
    assert!(!o.ok, "a diverged run exited 0:\n{}{}", o.stdout, o.stderr);
    assert!(o.stderr.contains("diverged"), "{}", o.stderr);
    let dir = run_dir(d.path());
    assert!(
        !dir.join("summary.csv").exists(),
        "a diverged run wrote a summary"
    );
    let failed = fs::read_to_string(dir.join("failed.toml")).unwrap();
    assert!(failed.contains("the run diverged"), "{failed}");
    assert!(failed.contains("epoch = 1"), "{failed}");
    let s = run(d.path(), &["status", "recipes/h"]);
    assert!(
        s.stdout.contains("1 failed") && s.stdout.contains("diverged"),
        "{}",
        s.stdout
    );
}

#[test]
fn an_infinite_learning_rate_is_a_recipe_error() {
    recipe_error(
        &GOOD.replace("batch = 32 }", "batch = 32, lr = inf }"),
        &["expected a finite number greater than 0, found inf"],
    );
}

#[test]
fn epochs_are_bounded_and_never_wrap_a_total() {
    recipe_error(
        &GOOD.replace("epochs = 2", "epochs = 9223372036854775807"),
        &["expected a number from 1 to 1000000000"],
    );
    recipe_error(
        &GOOD.replace("epochs = 2", "epochs = 200000"),
        &["epochs must be at most 100000, found 200000"],
    );
}

#[test]
fn a_teacher_seed_listed_twice_is_an_error() {
    let kd = GOOD.replace("\"Vanilla\"", "\"KD\"").replace(
        "seeds = [0]\n",
        "seeds = [0]\nmethod = \"kd\"\nteachers = [{ model = \"resnet8\", seeds = [0, 0] }]\n",
    );
    recipe_error(&kd, &["teachers.seeds", "a teacher seed is listed twice"]);
}

/// Trains GOOD, then damages its summary with `damage`: every command names the file,
/// `status` fails, `run` trains nothing over it, `table` does not report it.
fn damaged_summary_is_reported_by_every_command(damage: impl Fn(&Path), why: &str) {
    let d = folder(GOOD);
    assert!(run(d.path(), &["run", "recipes/h", "--device", "cpu"]).ok);
    let summary = run_dir(d.path()).join("summary.csv");
    damage(&summary);
    let s = run(d.path(), &["status", "recipes/h"]);
    assert!(!s.ok, "status exit 0 with a damaged run");
    assert!(
        s.stdout.contains("1 damaged") && s.stdout.contains(why),
        "{}",
        s.stdout
    );
    let p = run(d.path(), &["plan", "recipes/h"]);
    assert!(
        p.stdout.contains("damaged") && p.stdout.contains(why),
        "{}",
        p.stdout
    );
    let r = run(d.path(), &["run", "recipes/h", "--device", "cpu"]);
    assert!(!r.ok && r.stderr.contains(why), "{}{}", r.stdout, r.stderr);
    assert!(!r.stderr.contains("free space"), "{}", r.stderr);
    let t = run(d.path(), &["table", "h", "--recipes", "recipes"]);
    assert!(
        t.stderr.contains("summary.csv") || t.stdout.contains("summary.csv"),
        "{}{}",
        t.stdout,
        t.stderr
    );
    assert!(
        !t.stdout.contains("**"),
        "a damaged run was shown as a result:\n{}",
        t.stdout
    );
}

#[test]
fn a_summary_with_a_nan_accuracy_is_damaged_not_done() {
    damaged_summary_is_reported_by_every_command(
        |p| {
            let text = fs::read_to_string(p).unwrap();
            let mut lines: Vec<String> = text.lines().map(String::from).collect();
            let mut cols: Vec<String> = lines[1].split(',').map(String::from).collect();
            cols[5] = "NaN".into(); // accuracy
            lines[1] = cols.join(",");
            fs::write(p, lines.join("\n") + "\n").unwrap();
        },
        "accuracy is NaN",
    );
}

#[test]
fn a_summary_that_is_a_folder_is_damaged_not_partial() {
    damaged_summary_is_reported_by_every_command(
        |p| {
            fs::remove_file(p).unwrap();
            fs::create_dir(p).unwrap();
        },
        "is not a file",
    );
}

#[test]
fn a_symlink_loop_in_the_recipes_is_named_once() {
    let d = folder(GOOD);
    std::os::unix::fs::symlink("..", d.path().join("recipes/h/back")).unwrap();
    let o = run(d.path(), &["plan", "recipes/h"]);
    assert!(!o.ok);
    assert!(o.stderr.contains("symbolic link loop"), "{}", o.stderr);
    assert!(o.stderr.contains("recipes/h/back"), "{}", o.stderr);
    assert!(!o.stderr.contains("already given"), "{}", o.stderr);
}

fn kd_recipe() -> String {
    GOOD.replace("\"Vanilla\"", "\"KD\"").replace(
        "seeds = [0]\n",
        "seeds = [0]\nmethod = \"kd\"\nteachers = [{ model = \"resnet8\", seeds = [1] }]\n",
    )
}

/// The folder of the run whose `run.toml` names `what` among its cells, or no cell.
fn find_run(d: &Path, teacher: bool) -> PathBuf {
    fs::read_dir(d.join("results/runs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            let rec = fs::read_to_string(p.join("run.toml")).unwrap();
            rec.contains("cells = []") == teacher
        })
        .unwrap()
}

#[test]
fn truncated_teacher_weights_are_rebuilt_like_missing_ones() {
    let d = folder(&kd_recipe());
    assert!(run(d.path(), &["run", "recipes/h", "--device", "cpu"]).ok);
    let teacher = find_run(d.path(), true);
    let student = find_run(d.path(), false);
    let committed: Vec<Vec<u8>> = ["run.toml", "epochs.csv", "summary.csv", "done.toml"]
        .iter()
        .map(|f| fs::read(teacher.join(f)).unwrap())
        .collect();
    let weights = teacher.join("weights.safetensors");
    let whole = fs::read(&weights).unwrap();
    fs::write(&weights, &whole[..whole.len() / 2]).unwrap();
    fs::remove_dir_all(&student).unwrap();
    let p = run(d.path(), &["plan", "recipes/h"]);
    assert!(p.stdout.contains("damaged weights"), "{}", p.stdout);
    let r = run(d.path(), &["run", "recipes/h", "--device", "cpu"]);
    assert!(r.ok, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("its weights are damaged"), "{}", r.stdout);
    assert_eq!(
        fs::read(&weights).unwrap(),
        whole,
        "the rebuilt weights differ"
    );
    for (f, bytes) in ["run.toml", "epochs.csv", "summary.csv", "done.toml"]
        .iter()
        .zip(&committed)
    {
        assert_eq!(
            &fs::read(teacher.join(f)).unwrap(),
            bytes,
            "{f} was rewritten"
        );
    }
    assert!(student.join("done.toml").is_file());
}

#[test]
fn a_changed_or_deleted_file_of_a_done_run_makes_it_damaged() {
    type Damage = fn(&Path);
    let cases: &[(&str, Damage, &str)] = &[
        (
            "run.toml",
            |p| fs::remove_file(p).unwrap(),
            "run.toml is missing",
        ),
        (
            "epochs.csv",
            |p| {
                let mut t = fs::read(p).unwrap();
                t.push(b'\n');
                fs::write(p, t).unwrap();
            },
            "epochs.csv has",
        ),
        (
            "predictions.csv",
            |p| {
                let mut t = fs::read(p).unwrap();
                let i = t.len() - 2;
                t[i] = if t[i] == b'0' { b'1' } else { b'0' };
                fs::write(p, t).unwrap();
            },
            "predictions.csv does not match its SHA-256",
        ),
    ];
    for (file, damage, why) in cases {
        let d = folder(GOOD);
        assert!(run(d.path(), &["run", "recipes/h", "--device", "cpu"]).ok);
        damage(&run_dir(d.path()).join(file));
        let s = run(d.path(), &["status", "recipes/h"]);
        assert!(!s.ok && s.stdout.contains(why), "{file}: {}", s.stdout);
        let r = run(d.path(), &["run", "recipes/h", "--device", "cpu"]);
        assert!(!r.ok && r.stderr.contains(why), "{file}: {}", r.stderr);
        let t = run(d.path(), &["table", "h", "--recipes", "recipes"]);
        assert!(
            t.stderr.contains(why) || t.stdout.contains(why),
            "{file}: {}",
            t.stderr
        );
    }
}

#[test]
fn damaged_weights_of_a_run_that_teaches_nothing_are_noticed() {
    let d = folder(GOOD);
    assert!(run(d.path(), &["run", "recipes/h", "--device", "cpu"]).ok);
    let w = run_dir(d.path()).join("weights.safetensors");
    let bytes = fs::read(&w).unwrap();
    fs::write(&w, &bytes[..100]).unwrap();
    let s = run(d.path(), &["status", "recipes/h"]);
    assert!(!s.ok, "status exit 0");
    assert!(
        s.stdout.contains("weights.safetensors has 100 bytes"),
        "{}",
        s.stdout
    );
    // Missing weights are not damage: they are never committed.
    fs::remove_file(&w).unwrap();
    assert!(run(d.path(), &["status", "recipes/h"]).ok);
}

#[test]
fn training_errors_name_the_recipe_file() {
    let d = folder(&GOOD.replace(
        "epochs = 2, milestones = [1], batch = 32 }",
        "epochs = 1, milestones = [], batch = 32, lr = 1e8 }",
    ));
    let o = run(d.path(), &["run", "recipes/h", "--device", "cpu"]);
    assert!(!o.ok);
    let failed = o.stderr.lines().find(|l| l.contains("failed:")).unwrap();
    assert!(failed.contains("recipes/h/r.toml"), "{}", o.stderr);
    assert!(o.stdout.contains("recipes/h/r.toml"), "{}", o.stdout);
}
