//! Issue 30, class 1: `lecal submit` hands Slurm what it was given, and nothing else.
//! Without a cluster: a stand-in `sbatch` on PATH records its arguments, a results folder
//! whose path needs quoting (blanks, `$(…)`, a quote, `%`) round-trips through the job
//! script (run by bash, it trains its run there) and through the dry run's `submit.sh`;
//! every bad value is refused before anything is written. `tests/slurm.rs` does the same
//! with real sbatch.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

/// A folder with the tiny recipe set and a `bin/sbatch` that appends its arguments, one
/// per line, then `--`, to `argv.log`, and prints a job id.
fn setup() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let r = d.path().join("recipes/h");
    fs::create_dir_all(&r).unwrap();
    fs::write(r.join("h.table.toml"), common::TABLE).unwrap();
    fs::write(r.join("vanilla.toml"), common::GOOD).unwrap();
    let bin = d.path().join("bin");
    fs::create_dir_all(&bin).unwrap();
    let log = d.path().join("argv.log");
    let script = format!(
        "#!/bin/bash\nfor a in \"$@\"; do printf '%s\\n' \"$a\" >> '{}'; done\n\
         echo -- >> '{}'\necho 4242\n",
        log.display(),
        log.display()
    );
    fs::write(bin.join("sbatch"), script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(bin.join("sbatch"), fs::Permissions::from_mode(0o755)).unwrap();
    d
}

/// A results folder whose path a shell or Slurm would misread unquoted.
fn awkward(d: &Path) -> PathBuf {
    d.join("res ults $(touch pwned) it's 100%")
}

fn path_with_bin(d: &Path) -> String {
    format!(
        "{}:{}",
        d.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// `lecal submit` of CPU jobs (`--time 10`, `--device cpu` unless `extra` gives them).
fn submit(d: &Path, results: &Path, extra: &[&str]) -> std::process::Output {
    let mut c = common::lecal(d);
    c.env("PATH", path_with_bin(d))
        .args([
            "--results",
            results.to_str().unwrap(),
            "submit",
            "recipes/h",
        ])
        .args(["--gpus-per-job", "0"]);
    for (k, v) in [("--time", "10"), ("--device", "cpu")] {
        if !extra.contains(&k) {
            c.args([k, v]);
        }
    }
    c.args(extra).output().unwrap()
}

/// The invocations the stand-in sbatch recorded.
fn invocations(d: &Path) -> Vec<Vec<String>> {
    let log = fs::read_to_string(d.join("argv.log")).unwrap_or_default();
    log.split("--\n")
        .filter(|s| !s.is_empty())
        .map(|s| s.lines().map(String::from).collect())
        .collect()
}

/// Every file under `d` named `pwned`: proof that some `$(…)` ran.
fn pwned(d: &Path) -> bool {
    fn walk(p: &Path) -> bool {
        fs::read_dir(p).into_iter().flatten().flatten().any(|e| {
            let p = e.path();
            p.file_name().is_some_and(|n| n == "pwned") || (p.is_dir() && walk(&p))
        })
    }
    walk(d) || Path::new("pwned").exists()
}

#[test]
fn an_awkward_results_folder_and_quoted_options_round_trip_to_sbatch_and_bash() {
    let d = setup();
    let res = awkward(d.path());
    let out = submit(
        d.path(),
        &res,
        &[
            "--extra-sbatch",
            "--comment='a b # c' --nice=10",
            "--partition",
            "cpu",
            "--fusion",
            "on",
        ],
    );
    assert!(out.status.success(), "{}", common::output_text(&out));
    let calls = invocations(d.path());
    assert_eq!(calls.len(), 1, "{calls:?}");
    let script = res
        .join("slurm")
        .join(calls[0].last().unwrap().rsplit('/').next().unwrap());
    assert_eq!(calls[0], ["--parsable", script.to_str().unwrap()]);
    let text = fs::read_to_string(&script).unwrap();
    // Each option one #SBATCH line, quoted where sbatch would split it or read a comment.
    assert!(text.contains("#SBATCH \"--comment=a b # c\"\n"), "{text}");
    assert!(text.contains("#SBATCH --nice=10\n"), "{text}");
    assert!(text.contains("#SBATCH --partition=cpu\n"), "{text}");
    // The job's step trains as asked (`--fusion` passes on when it is not `auto`).
    assert!(text.contains(" --fusion=on "), "{text}");
    let output = format!("--output={}/slurm/%x-%j.out", res.display()).replace("100%/", "100%%/");
    assert!(text.contains(&output), "{text}");
    // Run by bash (as the job would be), the script trains its run in that folder.
    let ran = std::process::Command::new("bash")
        .arg(&script)
        .current_dir(d.path())
        .output()
        .unwrap();
    assert!(ran.status.success(), "{}", common::output_text(&ran));
    let done = fs::read_dir(res.join("runs")).unwrap().flatten();
    assert_eq!(
        done.filter(|r| r.path().join("done.toml").exists()).count(),
        1
    );
    assert!(!pwned(d.path()), "a $(…) in the path ran");
}

#[test]
fn the_dry_runs_submit_sh_hands_sbatch_the_script_as_one_word() {
    let d = setup();
    let res = awkward(d.path());
    let out = submit(d.path(), &res, &["--dry-run"]);
    assert!(out.status.success(), "{}", common::output_text(&out));
    assert!(
        invocations(d.path()).is_empty(),
        "a dry run submits nothing"
    );
    let ran = std::process::Command::new("bash")
        .arg(res.join("slurm/submit.sh"))
        .env("PATH", path_with_bin(d.path()))
        .current_dir(d.path())
        .output()
        .unwrap();
    assert!(ran.status.success(), "{}", common::output_text(&ran));
    let calls = invocations(d.path());
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0][0], "--parsable");
    let script = Path::new(&calls[0][1]);
    assert!(script.starts_with(&res) && script.exists(), "{calls:?}");
    assert!(!pwned(d.path()), "a $(…) in the path ran");
}

#[test]
fn bad_values_are_refused_before_anything_is_written() {
    let d = setup();
    let res = d.path().join("results");
    for (args, says) in [
        (vec!["--partition", "gpu\necho pwned"], "control character"),
        (vec!["--account", "a b"], "not a Slurm name"),
        (vec!["--mem", "16G\n#SBATCH --x"], "not a memory size"),
        (vec!["--time", "garbage"], "not a time limit"),
        (vec!["--device", "tpu"], "unknown device `tpu`"),
        (vec!["--cpus-per-job", "0"], "0 is not in 1.."),
        (vec!["--extra-sbatch", "--comment='open"], "not closed"),
        (
            vec!["--extra-sbatch", "constraint=a100"],
            "not an sbatch option",
        ),
        (vec!["--extra-sbatch", "--a\n--b"], "control character"),
    ] {
        let out = submit(d.path(), &res, &args);
        let text = common::output_text(&out);
        assert!(!out.status.success(), "{args:?} was accepted: {text}");
        assert!(text.contains(says), "{args:?}: {text}");
        assert!(!res.join("slurm").exists(), "{args:?} wrote job scripts");
    }
    assert!(invocations(d.path()).is_empty());
    assert!(!pwned(d.path()));
}
