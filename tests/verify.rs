//! `lecal verify`, `lecal show` and the provenance of run.toml, through the real binary
//! on a tiny table with a teacher-based cell (built-in synthetic data, seconds).

mod common;

use common::lecal;
use predicates::prelude::*;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

const TABLE: &str = "title = \"h\"\nrows = [\"Vanilla\", \"KD\"]\ncolumns = [\"ResNet8\"]\n";

fn recipe(row: &str, extra: &str) -> String {
    format!(
        r#"cell = {{ table = "h", row = "{row}", column = "ResNet8" }}
dataset = "synthetic"
synthetic = {{ train = 64, test = 20, resolution = 8 }}
schedule = {{ epochs = 2, milestones = [1], batch = 32 }}
student = "resnet8"
seeds = [0, 1]
{extra}
"#
    )
}

/// Vanilla seeds 0 and 1; KD seeds 0 and 1 taught by Vanilla seed 1, so that verifying
/// one seed per cell copies a teacher that is not itself verified. Trained.
fn trained(dir: &Path) {
    let r = dir.join("recipes/h");
    fs::create_dir_all(&r).unwrap();
    fs::write(r.join("h.table.toml"), TABLE).unwrap();
    fs::write(r.join("vanilla.toml"), recipe("Vanilla", "")).unwrap();
    let kd = "method = \"kd\"\nteachers = [ { model = \"resnet8\", seeds = [1] } ]";
    fs::write(r.join("kd.toml"), recipe("KD", kd)).unwrap();
    lecal(dir)
        .args(["run", "recipes/h", "--device", "cpu"])
        .assert()
        .success()
        .stdout(predicate::str::contains("4 runs: 4 trained"));
}

/// The folder of the run that reports into `cell` (as run.toml's provenance names it).
fn run_of(dir: &Path, cell: &str) -> PathBuf {
    fs::read_dir(dir.join("results/runs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            fs::read_to_string(p.join("run.toml"))
                .unwrap()
                .contains(&format!("\"{cell}\""))
        })
        .unwrap_or_else(|| panic!("no run of {cell}"))
}

fn id_of(run: &Path) -> String {
    run.file_name().unwrap().to_str().unwrap().to_string()
}

/// Every file under `dir`, byte for byte.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.insert(p.clone(), fs::read(&p).unwrap());
            }
        }
    }
    out
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Rewrites `file` of `run` with `edit` and its entry in done.toml to match, as a careful
/// hand edit would: the run stays done, and only training it again tells.
fn edit_vouched(run: &Path, file: &str, edit: impl Fn(&str) -> String) {
    let text = edit(&fs::read_to_string(run.join(file)).unwrap());
    fs::write(run.join(file), &text).unwrap();
    let mut done: toml::Table =
        toml::from_str(&fs::read_to_string(run.join("done.toml")).unwrap()).unwrap();
    let mut entry = done["files"][file].as_table().unwrap().clone();
    entry.insert("bytes".into(), (text.len() as i64).into());
    entry.insert("sha256".into(), sha256(text.as_bytes()).into());
    done["files"]
        .as_table_mut()
        .unwrap()
        .insert(file.into(), entry.into());
    fs::write(run.join("done.toml"), toml::to_string(&done).unwrap()).unwrap();
}

/// Replaces the value of `column` in the CSV row whose first field is `first` (`None`:
/// the only row).
fn set_csv(text: &str, first: Option<&str>, column: &str, value: &str) -> String {
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let col = lines[0].split(',').position(|h| h == column).unwrap();
    for l in lines.iter_mut().skip(1) {
        let mut f: Vec<String> = l.split(',').map(String::from).collect();
        if first.is_none_or(|x| f[0] == x) {
            f[col] = value.into();
            *l = f.join(",");
        }
    }
    lines.join("\n") + "\n"
}

#[test]
fn verify_finds_the_runs_identical_then_names_a_tampered_run() {
    let d = tempfile::tempdir().unwrap();
    trained(d.path());
    let student = run_of(d.path(), "h/KD/ResNet8 seed 0");
    let (sid, vanilla) = (
        id_of(&student),
        id_of(&run_of(d.path(), "h/Vanilla/ResNet8 seed 0")),
    );
    let before = snapshot(&d.path().join("results"));
    let out = lecal(d.path())
        .args(["verify", "recipes/h", "--device", "cpu"])
        .assert()
        .success()
        .stdout(predicate::str::contains("2 runs verified: 2 identical"))
        .get_output()
        .stdout
        .clone();
    let out = String::from_utf8(out).unwrap();
    for id in [&sid, &vanilla] {
        assert!(
            out.lines()
                .any(|l| l.starts_with("identical") && l.contains(id.as_str())),
            "{out}"
        );
    }
    // The results folder is only read; the default scratch folder is gone.
    assert!(snapshot(&d.path().join("results")) == before);
    let scratch = d.path().join("target/verify");
    assert_eq!(fs::read_dir(&scratch).unwrap().count(), 0, "{out}");

    // A number changed in the student's summary.csv and epochs.csv: its done record no
    // longer vouches for them, and training it again shows what changed.
    let summary = fs::read_to_string(student.join("summary.csv")).unwrap();
    let epochs = fs::read_to_string(student.join("epochs.csv")).unwrap();
    fs::write(
        student.join("summary.csv"),
        set_csv(&summary, None, "accuracy", "99.0"),
    )
    .unwrap();
    fs::write(
        student.join("epochs.csv"),
        set_csv(&epochs, Some("2"), "test_acc", "99.0"),
    )
    .unwrap();
    let out = lecal(d.path())
        .args(["verify", "recipes/h", "--device", "cpu"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("1 of 2 runs do not match"))
        .get_output()
        .stdout
        .clone();
    let out = String::from_utf8(out).unwrap();
    let line = out.lines().find(|l| l.starts_with("DAMAGED")).unwrap();
    assert!(line.contains(sid.as_str()), "{out}");
    assert!(line.contains("done.toml"), "{line}");
    assert!(
        line.contains("summary.csv accuracy: committed 99.0, trained again"),
        "{line}"
    );
    // The runs trained again are kept for a look.
    assert_eq!(fs::read_dir(&scratch).unwrap().count(), 1);

    // The same change with the done record rewritten to vouch for it: the run reads as
    // done, and only training it again tells. An epoch's number is named by its epoch.
    fs::write(student.join("summary.csv"), &summary).unwrap();
    edit_vouched(&student, "epochs.csv", |t| {
        set_csv(t, Some("1"), "test_acc", "99.0")
    });
    lecal(d.path())
        .args(["status", "recipes/h"])
        .assert()
        .success();
    lecal(d.path())
        .args(["verify", "recipes/h", "--device", "cpu"])
        .assert()
        .failure()
        .stdout(predicate::str::contains(format!("DIFFERS           {sid}")))
        .stdout(predicate::str::contains(
            "epochs.csv epoch 1 test_acc: committed 99.0",
        ));

    // Times alone differ: still identical.
    fs::write(student.join("epochs.csv"), &epochs).unwrap();
    edit_vouched(&student, "epochs.csv", |t| {
        set_csv(t, None, "seconds", "123.5")
    });
    lecal(d.path())
        .args(["verify", "recipes/h", "--device", "cpu"])
        .assert()
        .success()
        .stdout(predicate::str::contains("2 runs verified: 2 identical"));
}

/// Issue 29: a committed run of another CPU kernel level (aarch64), or one that records
/// none (trained before lecal recorded it), is compared within the tolerances, and the
/// line says why; at this machine's level it is compared byte for byte.
#[test]
fn runs_of_another_cpu_kernel_level_are_compared_within_tolerance_saying_why() {
    let d = tempfile::tempdir().unwrap();
    trained(d.path());
    let student = run_of(d.path(), "h/KD/ResNet8 seed 0");
    let vanilla = run_of(d.path(), "h/Vanilla/ResNet8 seed 0");
    let level = |t: &str| {
        t.lines()
            .find_map(|l| l.strip_prefix("kernel_level = "))
            .map(|v| v.trim_matches('"').to_string())
            .unwrap()
    };
    let here = level(&fs::read_to_string(student.join("run.toml")).unwrap());
    edit_vouched(&student, "run.toml", |t| {
        t.replace(
            &format!("kernel_level = \"{here}\""),
            "kernel_level = \"aarch64\"",
        )
    });
    edit_vouched(&vanilla, "run.toml", |t| {
        t.lines()
            .filter(|l| !l.starts_with("kernel_level"))
            .map(|l| format!("{l}\n"))
            .collect()
    });
    let out = lecal(d.path())
        .args(["verify", "recipes/h", "--device", "cpu"])
        .assert()
        .success()
        .stdout(predicate::str::contains("2 within tolerance"))
        .get_output()
        .stdout
        .clone();
    let out = String::from_utf8(out).unwrap();
    let line = |id: &str| {
        out.lines()
            .find(|l| l.contains(id) && !l.starts_with(['[', ' ']))
            .unwrap_or_else(|| panic!("{out}"))
            .to_string()
    };
    let kd = line(&id_of(&student));
    assert!(kd.starts_with("within tolerance"), "{kd}");
    let why = format!("trained at CPU kernel level aarch64, this machine's is {here}");
    assert!(kd.contains(&why), "{kd}");
    let old = line(&id_of(&vanilla));
    assert!(old.starts_with("within tolerance"), "{old}");
    assert!(
        old.contains("does not record its CPU kernel level"),
        "{old}"
    );
}

#[test]
fn verify_trains_a_teacher_without_its_weights_again_and_verifies_it_too() {
    let d = tempfile::tempdir().unwrap();
    trained(d.path());
    let teacher = run_of(d.path(), "h/Vanilla/ResNet8 seed 1");
    fs::remove_file(teacher.join("weights.safetensors")).unwrap();
    let scratch = d.path().join("scratch");
    lecal(d.path())
        .args([
            "verify",
            "recipes/h",
            "--device",
            "cpu",
            "--scratch",
            "scratch",
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "its weights are not in the results folder",
        ))
        .stdout(predicate::str::contains("3 runs verified: 3 identical"));
    // A scratch folder given is kept, and must be new or empty.
    assert!(scratch
        .join("runs")
        .join(id_of(&teacher))
        .join("weights.safetensors")
        .is_file());
    assert!(!teacher.join("weights.safetensors").exists());
    lecal(d.path())
        .args([
            "verify",
            "recipes/h",
            "--device",
            "cpu",
            "--scratch",
            "scratch",
        ])
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "the scratch folder scratch is not empty",
        ));
    lecal(d.path())
        .args([
            "verify",
            "recipes/h",
            "--device",
            "cpu",
            "--scratch",
            "results/x",
        ])
        .assert()
        .failure()
        .stderr(predicate::str::contains("inside the results folder"));
    assert!(!d.path().join("results/x").exists());
    // --sample 1: the first of the plan's order, the Vanilla run of seed 0.
    let vanilla = id_of(&run_of(d.path(), "h/Vanilla/ResNet8 seed 0"));
    lecal(d.path())
        .args(["verify", "recipes/h", "--device", "cpu", "--sample", "1"])
        .assert()
        .success()
        .stdout(predicate::str::contains(format!(
            "identical         {vanilla}"
        )))
        .stdout(predicate::str::contains("1 runs verified: 1 identical"));
}

#[test]
fn show_prints_a_done_runs_spec_provenance_and_numbers() {
    let d = tempfile::tempdir().unwrap();
    trained(d.path());
    let run = run_of(d.path(), "h/KD/ResNet8 seed 0");
    let id = id_of(&run);
    let summary = fs::read_to_string(run.join("summary.csv")).unwrap();
    let acc: f64 = set_csv_value(&summary, "accuracy").parse().unwrap();
    for arg in [
        id.clone(),
        id[..id.len() - 4].to_string(),
        format!("results/runs/{id}"),
    ] {
        lecal(d.path())
            .args(["show", &arg])
            .assert()
            .success()
            .stdout(predicate::str::contains(format!("run {id}\n")))
            .stdout(predicate::str::contains("state: done"))
            .stdout(predicate::str::contains("cells: h/KD/ResNet8 seed 0"))
            .stdout(predicate::str::contains(format!(
                "test: accuracy {acc:.2} %"
            )))
            .stdout(predicate::str::contains("weights.safetensors"))
            .stdout(predicate::str::contains("[spec]\ntrainer_version"))
            .stdout(predicate::str::contains("kl_reduction"))
            .stdout(predicate::str::contains("[provenance]"))
            .stdout(predicate::str::contains("cargo_lock_sha256 = "))
            .stdout(predicate::str::contains("git_commit = "))
            .stdout(predicate::str::contains("threads = "));
    }
    // Only the hash's start.
    let hash = id.rsplit('-').next().unwrap();
    lecal(d.path())
        .args(["show", &hash[..6]])
        .assert()
        .success()
        .stdout(predicate::str::contains(format!("run {id}")));
    lecal(d.path())
        .args(["show", "synthetic-"])
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "is ambiguous in results/runs: 4 runs match",
        ));
    lecal(d.path())
        .args(["show", "cifar10-"])
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "no run `cifar10-` in results/runs",
        ));
    // A failed run: its failure record.
    fs::write(
        run.join("failed.toml"),
        "epoch = 2\nreason = \"the loss is not finite\"\n",
    )
    .unwrap();
    fs::remove_file(run.join("done.toml")).unwrap();
    fs::remove_file(run.join("summary.csv")).unwrap();
    lecal(d.path())
        .args(["show", &id])
        .assert()
        .success()
        .stdout(predicate::str::contains("state: failed in epoch 2"))
        .stdout(predicate::str::contains(
            "failure: epoch 2: the loss is not finite",
        ));
}

fn set_csv_value(text: &str, column: &str) -> String {
    let mut lines = text.lines();
    let col = lines
        .next()
        .unwrap()
        .split(',')
        .position(|h| h == column)
        .unwrap();
    lines
        .next()
        .unwrap()
        .split(',')
        .nth(col)
        .unwrap()
        .to_string()
}

#[test]
fn a_finished_runs_provenance_has_its_build_machine_and_seed() {
    let d = tempfile::tempdir().unwrap();
    trained(d.path());
    let run = run_of(d.path(), "h/KD/ResNet8 seed 1");
    let rec: toml::Table =
        toml::from_str(&fs::read_to_string(run.join("run.toml")).unwrap()).unwrap();
    let p = rec["provenance"].as_table().unwrap();
    let lock = fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.lock")).unwrap();
    assert_eq!(
        p["cargo_lock_sha256"].as_str(),
        Some(sha256(&lock).as_str())
    );
    let commit = p["git_commit"].as_str().unwrap();
    assert!(
        commit == "unknown" || (commit.len() == 40 && !commit.contains("dirty")),
        "{commit}"
    );
    assert!(p["git_dirty"].is_bool());
    assert_eq!(p["seed"].as_integer(), Some(1));
    assert_eq!(rec["spec"]["seed"].as_integer(), Some(1));
    assert!(p["threads"].as_integer().unwrap() >= 1);
    assert!(p["wall_seconds"].as_float().unwrap() > 0.0);
    assert!(!p["host"].as_str().unwrap().is_empty());
    assert_eq!(
        p["device"].as_str().map(|d| d.starts_with("cpu")),
        Some(true)
    );
    // On the CPU: its kernel level and lecal's microkernel, no CUDA versions.
    let details = p
        .get("device_details")
        .and_then(|t| t.as_table())
        .cloned()
        .unwrap_or_default();
    let cpu = ["name", "kernel_level", "cpu_kernels"];
    assert!(
        details.keys().all(|k| cpu.contains(&k.as_str())),
        "{details:?}"
    );
    let level = details["kernel_level"].as_str().unwrap();
    assert!(
        ["x86-64-v3", "x86-64", std::env::consts::ARCH].contains(&level),
        "{level}"
    );
    let kernels = details["cpu_kernels"].as_str().unwrap();
    assert!(["avx2-fma", "portable"].contains(&kernels), "{kernels}");
}
