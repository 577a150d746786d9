//! What the binary's integration tests share: a table spec, a recipe that trains in a
//! second, the command, and a results folder read back for byte-for-byte comparison.

#![allow(dead_code)] // Each test file uses some of these.

use assert_cmd::Command;
use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

pub const TABLE: &str = "title = \"h\"\nrows = [\"Vanilla\", \"KD\"]\ncolumns = [\"ResNet8\"]\n";

pub const GOOD: &str = r#"cell = { table = "h", row = "Vanilla", column = "ResNet8" }
dataset = "synthetic"
synthetic = { train = 64, test = 20, resolution = 8 }
schedule = { epochs = 2, milestones = [1], batch = 32 }
student = "resnet8"
seeds = [0]
"#;

pub fn lecal(dir: &Path) -> Command {
    let mut c = Command::cargo_bin("lecal").unwrap();
    c.current_dir(dir)
        .env_remove("LECAL_RESULTS")
        .env_remove("LECAL_DATA");
    c
}

/// Every result file of every done run in the results folder `dir`, byte for byte; epochs.csv without its two timing
/// columns. Also checks that finished runs keep no checkpoint, lock or temporary file.
pub fn results(dir: &Path, runs: usize) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for run in fs::read_dir(dir.join("runs")).unwrap() {
        let run = run.unwrap().path();
        let id = run.file_name().unwrap().to_str().unwrap().to_string();
        if !run.join("done.toml").exists() {
            continue;
        }
        let names: Vec<String> = fs::read_dir(&run)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        for n in &names {
            assert!(
                [
                    "run.toml",
                    "done.toml",
                    "epochs.csv",
                    "summary.csv",
                    "reliability.csv",
                    "predictions.csv",
                    "logits.safetensors",
                    "weights.safetensors",
                    "slurm.toml"
                ]
                .contains(&n.as_str()),
                "{id}: unexpected {n}"
            );
        }
        for f in [
            "summary.csv",
            "weights.safetensors",
            "predictions.csv",
            "reliability.csv",
            "logits.safetensors",
        ] {
            out.insert(format!("{id}/{f}"), fs::read(run.join(f)).unwrap());
        }
        let epochs: String = fs::read_to_string(run.join("epochs.csv"))
            .unwrap()
            .lines()
            .map(|l| l.rsplitn(3, ',').nth(2).unwrap().to_string() + "\n")
            .collect();
        out.insert(format!("{id}/epochs.csv"), epochs.into_bytes());
    }
    assert_eq!(out.len(), 6 * runs, "{runs} runs of six files");
    out
}

pub fn same(a: &BTreeMap<String, Vec<u8>>, b: &BTreeMap<String, Vec<u8>>) {
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (k, v) in a {
        assert!(v == &b[k], "{k} differs");
    }
}

/// The failed.toml of the one failed run in the results folder `results`.
pub fn only_failure(results: &Path) -> String {
    let failed: Vec<String> = fs::read_dir(results.join("runs"))
        .unwrap()
        .filter_map(|r| fs::read_to_string(r.unwrap().path().join("failed.toml")).ok())
        .collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    failed[0].clone()
}

/// The epochs of the checkpoints in the results folder `results`, of the runs whose
/// folder `keep` accepts.
pub fn checkpoint_epochs(results: &Path, keep: impl Fn(&Path) -> bool) -> Vec<usize> {
    fs::read_dir(results.join("runs"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|r| keep(&r.path()))
        .flat_map(|r| {
            fs::read_dir(r.path().join("checkpoint"))
                .into_iter()
                .flatten()
        })
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().into_string().ok()?;
            n.strip_prefix("epoch-")?
                .strip_suffix(".toml")?
                .parse::<usize>()
                .ok()
        })
        .collect()
}

/// `lecal --results RESULTS run RECIPES --device cpu ARGS` in `dir`, as a plain process
/// (to be spawned and killed, or run to its end).
pub fn run_command(
    dir: &Path,
    results: &str,
    recipes: &str,
    args: &[&str],
) -> std::process::Command {
    let mut c = std::process::Command::new(assert_cmd::cargo::cargo_bin("lecal"));
    c.current_dir(dir)
        .env_remove("LECAL_RESULTS")
        .env_remove("LECAL_DATA")
        .args(["--results", results, "run", recipes, "--device", "cpu"])
        .args(args);
    c
}

/// A finished process's stdout and stderr.
pub fn output_text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Runs `run_command` to its end, which must succeed; its output.
pub fn run_to_end(dir: &Path, results: &str, recipes: &str, args: &[&str]) -> String {
    let out = run_command(dir, results, recipes, args).output().unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    output_text(&out)
}

/// `recipes/<name>` in `dir`: a table `<name>` of `rows` and columns ResNet8 and ResNet14,
/// and one recipe per `(file, row, student, method)` with the lines of `setting` (data,
/// schedule, seeds, teachers).
pub fn cells(
    dir: &Path,
    name: &str,
    rows: &[&str],
    cells: &[(&str, &str, &str, &str)],
    setting: &str,
) {
    let r = dir.join("recipes").join(name);
    fs::create_dir_all(&r).unwrap();
    let quoted: Vec<String> = rows.iter().map(|r| format!("\"{r}\"")).collect();
    let table = format!(
        "title = \"{name}\"\nrows = [{}]\ncolumns = [\"ResNet8\", \"ResNet14\"]\n",
        quoted.join(", ")
    );
    fs::write(r.join(format!("{name}.table.toml")), table).unwrap();
    for (file, row, student, method) in cells {
        let column = student.replace("resnet", "ResNet");
        let text = format!(
            "cell = {{ table = \"{name}\", row = \"{row}\", column = \"{column}\" }}\n\
             student = \"{student}\"\nmethod = {method}\n{setting}"
        );
        fs::write(r.join(format!("{file}.toml")), text).unwrap();
    }
}

/// Starts `lecal run RECIPES` into `results` (in `dir`), waits until one of the runs that
/// `keep` accepts has a checkpoint, and kills the process before it finishes.
pub fn kill_after_checkpoint(dir: &Path, results: &str, recipes: &str, keep: fn(&Path) -> bool) {
    use std::time::{Duration, Instant};
    let mut child = run_command(dir, results, recipes, &[])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let at = dir.join(results);
    let t = Instant::now();
    while checkpoint_epochs(&at, keep).is_empty() && child.try_wait().unwrap().is_none() {
        assert!(t.elapsed() < Duration::from_secs(120), "no checkpoint");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "the runs finished before the kill"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Trains `recipes` in `dir` run by run (`alone`) and as cohorts (`together`), asserts
/// that the cohort log says `cohort` and that the `runs` done runs' files are the same
/// bytes; the files, and how many final weights files hold a variable named `var`.
pub fn alone_as_in_a_cohort(
    dir: &Path,
    recipes: &str,
    (cohort, runs): (&str, usize),
    var: &str,
) -> (BTreeMap<String, Vec<u8>>, usize) {
    run_to_end(dir, "alone", recipes, &["--no-cohorts"]);
    let log = run_to_end(dir, "together", recipes, &[]);
    assert!(log.contains(cohort), "{log}");
    let alone = results(&dir.join("alone"), runs);
    same(&alone, &results(&dir.join("together"), runs));
    let holding = alone
        .iter()
        .filter(|(k, v)| {
            k.ends_with("weights.safetensors")
                && String::from_utf8_lossy(&v[..v.len().min(20_000)]).contains(var)
        })
        .count();
    (alone, holding)
}
