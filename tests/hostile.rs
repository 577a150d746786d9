//! The catalogue of bad inputs: each gives a clear error naming the file and the problem,
//! a non-zero exit, and writes nothing (or, for a failing disk, loses nothing).

mod common;

use common::{lecal, GOOD, TABLE};
use std::fs;
use std::path::Path;

/// A folder with the table spec and the given files under `recipes/h/`.
fn folder(files: &[(&str, &str)]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let r = d.path().join("recipes/h");
    fs::create_dir_all(&r).unwrap();
    fs::write(r.join("h.table.toml"), TABLE).unwrap();
    for (name, text) in files {
        let p = r.join(name);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }
    d
}

/// Runs `lecal run recipes/h` (and `plan` for recipe problems) and checks the error.
fn fails(d: &Path, extra: &[&str], must_contain: &[&str]) -> String {
    let mut args = vec!["run", "recipes/h", "--device", "cpu"];
    args.extend_from_slice(extra);
    let out = lecal(d).args(&args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "exit 0 for {must_contain:?}");
    assert!(err.starts_with("error: "), "{err}");
    for m in must_contain {
        assert!(err.contains(m), "expected `{m}` in:\n{err}");
    }
    err
}

fn nothing_written(d: &Path) {
    assert!(!d.join("results").exists(), "a results folder was created");
}

/// One bad recipe each: (what, replacement of GOOD's text, expected parts of the error).
#[test]
fn bad_recipes_name_the_file_and_the_problem_and_write_nothing() {
    let cases: &[(&str, String, &[&str])] = &[
        (
            "malformed TOML",
            GOOD.replace("seeds = [0]", "seeds = [0"),
            &["bad.toml:7:1", "invalid array", "expected `]`"],
        ),
        (
            "unknown key",
            format!("{GOOD}colour = \"red\"\n"),
            &["bad.toml:7:1", "unknown field `colour`"],
        ),
        (
            "wrong type",
            GOOD.replace("seeds = [0]", "seeds = \"zero\""),
            &["bad.toml:6:", "seeds", "invalid type: string \"zero\""],
        ),
        (
            "unknown model",
            GOOD.replace("\"resnet8\"", "\"resnet9\""),
            &["bad.toml:5:", "resnet9", "resnet110"],
        ),
        (
            "unknown method",
            format!("{GOOD}method = \"mixmatch\"\n"),
            &["bad.toml:7:", "unknown method preset `mixmatch`"],
        ),
        (
            "unknown dataset",
            GOOD.replace("\"synthetic\"", "\"mnist\""),
            &["bad.toml:2:", "mnist", "cifar100"],
        ),
        (
            "zero epochs",
            GOOD.replace("epochs = 2", "epochs = 0"),
            &["bad.toml:4:", "epochs"],
        ),
        (
            "negative epochs",
            GOOD.replace("epochs = 2", "epochs = -2"),
            &["bad.toml:4:", "epochs"],
        ),
        (
            "zero batch",
            GOOD.replace("batch = 32", "batch = 0"),
            &["bad.toml:4:", "batch"],
        ),
        (
            "negative batch",
            GOOD.replace("batch = 32", "batch = -32"),
            &["bad.toml:4:", "batch"],
        ),
        (
            "zero learning rate",
            GOOD.replace("batch = 32", "batch = 32, lr = 0.0"),
            &["bad.toml:4:", "lr"],
        ),
        (
            "negative learning rate",
            GOOD.replace("batch = 32", "batch = 32, lr = -0.1"),
            &["bad.toml:4:", "lr"],
        ),
        (
            "empty seeds",
            GOOD.replace("seeds = [0]", "seeds = []"),
            &["bad.toml:6:", "seeds"],
        ),
        (
            "a cell the table does not have",
            GOOD.replace("\"Vanilla\"", "\"Mixup\""),
            &["bad.toml:1:", "Mixup"],
        ),
    ];
    for (what, text, expected) in cases {
        let d = folder(&[("bad.toml", text)]);
        let err = fails(d.path(), &[], expected);
        nothing_written(d.path());
        // `plan` reports the same problem.
        let out = lecal(d.path())
            .args(["plan", "recipes/h"])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{what}: plan accepted it");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("bad.toml"),
            "{what}: {err}"
        );
    }
}

/// Presets may build on presets; a loop among them is reported with its chain. (Teacher
/// runs cannot form a cycle: a teacher is a teacher-free Vanilla run or a checkpoint.)
#[test]
fn a_preset_cycle_is_named() {
    let d = folder(&[
        ("r.toml", &format!("{GOOD}method = \"a\"\n")),
        ("methods/a.toml", "preset = \"b\"\n"),
        ("methods/b.toml", "preset = \"a\"\n"),
    ]);
    fails(d.path(), &[], &["r.toml", "cycle: a -> b -> a"]);
    nothing_written(d.path());
}

#[test]
fn two_recipes_for_one_cell_are_an_error() {
    let d = folder(&[("a.toml", GOOD), ("b.toml", GOOD)]);
    fails(d.path(), &[], &["b.toml", "a.toml", "h/Vanilla/ResNet8"]);
    nothing_written(d.path());
}

#[test]
fn missing_and_truncated_dataset_files_give_expected_and_actual_sizes() {
    let cifar = GOOD
        .replace("dataset = \"synthetic\"", "dataset = \"cifar10\"")
        .replace(
            "synthetic = { train = 64, test = 20, resolution = 8 }\n",
            "",
        );
    let d = folder(&[("c.toml", &cifar)]);
    fails(d.path(), &[], &["cifar-10-batches-bin", "data_batch_1.bin"]);
    nothing_written(d.path());
    let b = d.path().join("data/cifar-10-batches-bin");
    fs::create_dir_all(&b).unwrap();
    for f in [
        "data_batch_1.bin",
        "data_batch_2.bin",
        "data_batch_3.bin",
        "data_batch_4.bin",
        "data_batch_5.bin",
        "test_batch.bin",
    ] {
        // One record short of 10,000.
        fs::write(b.join(f), vec![0u8; 3073 * 9_999]).unwrap();
    }
    fails(d.path(), &[], &["data_batch_1.bin", "30730000", "30726927"]);
    nothing_written(d.path());
}

#[test]
fn a_teacher_checkpoint_of_the_wrong_architecture_is_refused_before_training() {
    let d = folder(&[("v.toml", GOOD)]);
    // Train a ResNet8, then offer its weights as a ResNet14 teacher.
    lecal(d.path())
        .args(["--results", "../r8", "run", "recipes/h", "--device", "cpu"])
        .assert()
        .success();
    let w = fs::read_dir(d.path().join("../r8/runs"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
        .join("weights.safetensors");
    fs::copy(&w, d.path().join("recipes/h/teacher.safetensors")).unwrap();
    fs::remove_dir_all(d.path().join("../r8")).unwrap();
    let kd = GOOD.replace("\"Vanilla\"", "\"KD\"")
        + "method = \"kd\"\nteachers = [ { model = \"resnet14\", checkpoint = \"teacher.safetensors\" } ]\n";
    fs::write(d.path().join("recipes/h/kd.toml"), kd).unwrap();
    fails(
        d.path(),
        &[],
        &[
            "recipes/h/teacher.safetensors",
            "no tensor `layer1.1.bn1.bias`",
            "resnet14",
            "the teacher of",
        ],
    );
    nothing_written(d.path());
    // Declared as the model it is, but pinned to other bytes: refused before training.
    let kd = d.path().join("recipes/h/kd.toml");
    let right = fs::read_to_string(&kd)
        .unwrap()
        .replace("resnet14", "resnet8");
    let zeros = "0".repeat(64);
    let pinned = right.replace(
        "checkpoint = \"teacher.safetensors\"",
        &format!("checkpoint = \"teacher.safetensors\", sha256 = \"{zeros}\""),
    );
    fs::write(&kd, &pinned).unwrap();
    fails(d.path(), &[], &["its SHA-256 is", &zeros, "the teacher of"]);
    nothing_written(d.path());
    // Declared as the model it is, the same checkpoint teaches.
    fs::write(&kd, &right).unwrap();
    lecal(d.path())
        .args(["run", "recipes/h/kd.toml", "--device", "cpu"])
        .assert()
        .success();
}

#[test]
fn a_results_folder_that_cannot_be_written_is_refused_before_training() {
    let d = folder(&[("v.toml", GOOD)]);
    // A results path below a plain file cannot be created, even by root.
    fs::write(d.path().join("file"), "").unwrap();
    fails(
        d.path(),
        &["--results", "file/results"],
        &["results folder file/results is not writable"],
    );
    // A results "folder" that is a plain file: every command says so.
    for cmd in [
        &["plan", "recipes/h"][..],
        &["status", "recipes/h"],
        &["run", "recipes/h"],
    ] {
        lecal(d.path())
            .args(["--results", "file"])
            .args(cmd)
            .assert()
            .failure()
            .stderr(predicates::str::contains(
                "the results folder `file` is a file, not a folder",
            ));
    }
    // A read-only folder (which root may still write to: then there is nothing to test).
    let ro = d.path().join("ro");
    fs::create_dir(&ro).unwrap();
    let mut perm = fs::metadata(&ro).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o555);
    fs::set_permissions(&ro, perm).unwrap();
    if fs::write(ro.join("probe"), "").is_err() {
        lecal(d.path())
            .args(["--results", "ro", "run", "recipes/h", "--device", "cpu"])
            .assert()
            .failure()
            .stderr(predicates::str::contains(
                "results folder ro is not writable",
            ));
        assert_eq!(fs::read_dir(&ro).unwrap().count(), 0);
    } else {
        eprintln!("running as root: the read-only case cannot fail here");
    }
}

/// A disk that fills up mid-run, simulated by a file-size limit (writes past it fail with
/// EFBIG): the invocation stops with the file it could not write, leaves no temporary or
/// half-written file and marks nothing failed; with space again, the same command
/// finishes the run.
#[test]
fn a_write_error_mid_run_stops_cleanly_and_loses_nothing() {
    let d = folder(&[("v.toml", GOOD)]);
    let bin = assert_cmd::cargo::cargo_bin("lecal");
    // run.toml and epochs.csv fit in 16 KiB; a checkpoint of a ResNet-8 does not.
    let out = std::process::Command::new("bash")
        .current_dir(d.path())
        .arg("-c")
        .arg(format!(
            "trap '' XFSZ; ulimit -f 16; exec '{}' run recipes/h --device cpu",
            bin.display()
        ))
        .env_remove("LECAL_RESULTS")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("cannot write") && err.contains("epoch-000001.safetensors"),
        "{err}"
    );
    assert!(err.contains("File too large"), "{err}");
    let run = fs::read_dir(d.path().join("results/runs"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut names = Vec::new();
    let mut stack = vec![run.clone()];
    while let Some(p) = stack.pop() {
        for e in fs::read_dir(&p).unwrap() {
            let e = e.unwrap();
            if e.path().is_dir() {
                stack.push(e.path());
            }
            names.push(e.file_name().into_string().unwrap());
        }
    }
    names.sort();
    assert!(
        !names.iter().any(|n| n.contains(".tmp.")),
        "temporary files left: {names:?}"
    );
    assert!(!names.contains(&"failed.toml".to_string()), "{names:?}");
    assert!(!names.contains(&"summary.csv".to_string()), "{names:?}");
    lecal(d.path())
        .args(["run", "recipes/h", "--device", "cpu"])
        .assert()
        .success()
        .stdout(predicates::str::contains("1 runs: 1 trained"));
    assert!(run.join("summary.csv").is_file());
}
