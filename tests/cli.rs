//! The real `lecal` binary on tiny recipe sets: training for an epoch or two on the
//! built-in data, tables, reruns, errors. No network, no GPU, no downloaded data. Bad
//! inputs are catalogued in `hostile.rs`, interruptions in `resume.rs`.

use assert_cmd::Command;
use predicates::prelude::*;
use std::fs;
use std::path::Path;

const TABLE: &str = r#"
title = "Tiny"
rows = ["Vanilla", "Label smoothing"]
columns = ["ResNet8"]
[paper.Vanilla]
ResNet8 = { acc = 50.0, ece = 0.1 }
"#;

fn recipe(row: &str, method: &str, epochs: usize) -> String {
    format!(
        r#"cell = {{ table = "tiny", row = "{row}", column = "ResNet8" }}
dataset = "synthetic"
synthetic = {{ train = 96, test = 40, resolution = 8 }}
schedule = {{ epochs = {epochs}, milestones = {milestones}, batch = 32 }}
student = "resnet8"
seeds = [0, 1]
method = "{method}"
"#,
        milestones = if epochs > 1 { "[1]" } else { "[]" }
    )
}

fn tiny(dir: &Path) {
    let r = dir.join("recipes/tiny");
    fs::create_dir_all(&r).unwrap();
    fs::write(r.join("tiny.table.toml"), TABLE).unwrap();
    fs::write(r.join("vanilla.toml"), recipe("Vanilla", "vanilla", 2)).unwrap();
    fs::write(r.join("ls.toml"), recipe("Label smoothing", "smoothing", 2)).unwrap();
}

fn lecal(dir: &Path) -> Command {
    let mut c = Command::cargo_bin("lecal").unwrap();
    c.current_dir(dir)
        .env_remove("LECAL_RESULTS")
        .env_remove("LECAL_DATA");
    c
}

#[test]
fn plan_run_table_and_rerun_trains_nothing() {
    let d = tempfile::tempdir().unwrap();
    tiny(d.path());
    lecal(d.path())
        .args(["plan", "recipes/tiny"])
        .assert()
        .success()
        .stdout(predicate::str::contains("pending"))
        .stdout(predicate::str::contains(
            "total: 4 runs, 8 epochs (0 done), 0 done, 4 to train",
        ));
    lecal(d.path())
        .args(["run", "recipes/tiny", "--device", "cpu"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "4 runs: 4 trained, 0 already done",
        ));
    lecal(d.path())
        .args(["plan", "recipes/tiny"])
        .assert()
        .success()
        .stdout(predicate::str::contains("4 done, 0 to train"));
    let runs: Vec<_> = fs::read_dir(d.path().join("results/runs"))
        .unwrap()
        .collect();
    assert_eq!(runs.len(), 4);
    for r in runs {
        let r = r.unwrap().path();
        for f in [
            "run.toml",
            "epochs.csv",
            "summary.csv",
            "reliability.csv",
            "predictions.csv",
            "weights.safetensors",
        ] {
            assert!(r.join(f).is_file(), "{} lacks {f}", r.display());
        }
        let run = fs::read_to_string(r.join("run.toml")).unwrap();
        assert!(run.contains("bitwise_repeatable = true"), "{run}");
        assert!(run.contains("candle_version = \"0."), "{run}");
        assert_eq!(
            fs::read_to_string(r.join("epochs.csv"))
                .unwrap()
                .lines()
                .count(),
            3
        );
        assert_eq!(
            fs::read_to_string(r.join("predictions.csv"))
                .unwrap()
                .lines()
                .count(),
            41
        );
    }
    // A second run trains nothing.
    lecal(d.path())
        .args(["run", "recipes/tiny", "--device", "cpu"])
        .assert()
        .success()
        .stdout(predicate::str::contains("0 trained, 4 already done"));
    lecal(d.path())
        .args(["table", "tiny"])
        .assert()
        .success()
        .stdout(predicate::str::contains("| Vanilla |"));
    let md = fs::read_to_string(d.path().join("results/tables/tiny.md")).unwrap();
    assert!(!md.contains("pending"), "{md}");
    assert!(md.contains(" ± "), "{md}");
    assert!(md.contains("## Published in the paper"), "{md}");
    let csv = fs::read_to_string(d.path().join("results/tables/tiny.csv")).unwrap();
    assert_eq!(
        csv.lines().filter(|l| l.contains(",done,2,2,")).count(),
        2,
        "{csv}"
    );
    lecal(d.path())
        .args(["status", "recipes/tiny"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "4 runs: 4 done, 0 partial, 0 failed, 0 pending",
        ));
}

#[test]
fn same_seed_gives_identical_weights_and_numbers() {
    let d = tempfile::tempdir().unwrap();
    tiny(d.path());
    fs::remove_file(d.path().join("recipes/tiny/ls.toml")).unwrap();
    fs::write(
        d.path().join("recipes/tiny/vanilla.toml"),
        recipe("Vanilla", "vanilla", 1).replace("seeds = [0, 1]", "seeds = [3]"),
    )
    .unwrap();
    for out in ["a", "b"] {
        lecal(d.path())
            .args(["--results", out, "run", "recipes/tiny", "--device", "cpu"])
            .assert()
            .success();
    }
    let id = fs::read_dir(d.path().join("a/runs"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .file_name();
    let read =
        |o: &str, f: &str| fs::read(d.path().join(o).join("runs").join(&id).join(f)).unwrap();
    assert_eq!(
        read("a", "weights.safetensors"),
        read("b", "weights.safetensors")
    );
    assert_eq!(read("a", "predictions.csv"), read("b", "predictions.csv"));
    assert_eq!(read("a", "reliability.csv"), read("b", "reliability.csv"));
}

#[test]
fn a_held_out_validation_split_is_evaluated_every_epoch_and_can_make_the_table() {
    let d = tempfile::tempdir().unwrap();
    tiny(d.path());
    let r = d.path().join("recipes/tiny");
    let one_seed = |t: String| t.replace("seeds = [0, 1]", "seeds = [0]");
    fs::write(
        r.join("vanilla.toml"),
        one_seed(recipe("Vanilla", "vanilla", 2)) + "validation = 24\n",
    )
    .unwrap();
    fs::write(
        r.join("ls.toml"),
        one_seed(recipe("Label smoothing", "smoothing", 1)),
    )
    .unwrap();
    lecal(d.path())
        .args(["run", "recipes/tiny", "--device", "cpu"])
        .assert()
        .success();
    let summaries: Vec<String> = fs::read_dir(d.path().join("results/runs"))
        .unwrap()
        .map(|e| fs::read_to_string(e.unwrap().path().join("summary.csv")).unwrap())
        .collect();
    let header = summaries[0].lines().next().unwrap().to_string();
    assert!(
        header.ends_with("val_accuracy,val_ece,val_nll,val_brier,top5"),
        "{header}"
    );
    // The run with a validation set fills those columns; the other leaves them empty.
    let val = header.split(',').position(|c| c == "val_accuracy").unwrap();
    let filled = |s: &String| {
        !s.lines()
            .nth(1)
            .unwrap()
            .split(',')
            .nth(val)
            .unwrap()
            .is_empty()
    };
    assert_eq!(
        summaries.iter().filter(|s| filled(s)).count(),
        1,
        "{summaries:?}"
    );
    let with_val = fs::read_dir(d.path().join("results/runs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| filled(&fs::read_to_string(p.join("summary.csv")).unwrap()))
        .unwrap();
    let epochs = fs::read_to_string(with_val.join("epochs.csv")).unwrap();
    let cols: Vec<&str> = epochs.lines().next().unwrap().split(',').collect();
    let at = cols.iter().position(|c| *c == "val_acc").unwrap();
    let val_acc: Vec<&str> = epochs
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(at).unwrap())
        .collect();
    assert_eq!(val_acc.len(), 2);
    assert!(val_acc.iter().all(|v| v.parse::<f64>().is_ok()), "{epochs}");
    // A table on the validation split: the label-smoothing run has none to report.
    // (The paper's numbers are on the test set: a validation table carries none.)
    fs::write(
        r.join("tiny.table.toml"),
        "title = \"Tiny\"\nsplit = \"validation\"\nrows = [\"Vanilla\", \"Label smoothing\"]\ncolumns = [\"ResNet8\"]\n",
    )
    .unwrap();
    lecal(d.path())
        .args(["table", "tiny"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("holds out no validation images"));
    fs::remove_file(r.join("ls.toml")).unwrap();
    lecal(d.path()).args(["table", "tiny"]).assert().success();
    let md = fs::read_to_string(d.path().join("results/tables/tiny.md")).unwrap();
    assert!(md.contains("validation images held out"), "{md}");
    // Too many held out: a recipe error.
    fs::write(
        r.join("vanilla.toml"),
        recipe("Vanilla", "vanilla", 2) + "validation = 95\n",
    )
    .unwrap();
    lecal(d.path())
        .args(["plan", "recipes/tiny"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("key `validation`"));
}

#[test]
fn an_invalid_recipe_set_fails_naming_the_file_and_writes_nothing() {
    let d = tempfile::tempdir().unwrap();
    tiny(d.path());
    fs::write(
        d.path().join("recipes/tiny/ls.toml"),
        recipe("Label smoothing", "smoothing", 2)
            .replace("seeds = [0, 1]", "seeds = [0, 1]\nbatch_size = 3"),
    )
    .unwrap();
    lecal(d.path())
        .args(["run", "recipes/tiny", "--device", "cpu"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("ls.toml:7:1"))
        .stderr(predicate::str::contains("batch_size"))
        .stderr(predicate::str::contains("nothing was written"));
    assert!(!d.path().join("results").exists());
}

#[test]
fn an_unknown_model_is_a_clear_error() {
    let d = tempfile::tempdir().unwrap();
    tiny(d.path());
    fs::write(
        d.path().join("recipes/tiny/ls.toml"),
        recipe("Label smoothing", "smoothing", 2).replace("\"resnet8\"", "\"resnet101\""),
    )
    .unwrap();
    lecal(d.path())
        .args(["plan", "recipes/tiny"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("ls.toml"))
        .stderr(predicate::str::contains("resnet101"))
        .stderr(predicate::str::contains("resnet50"));
}

#[test]
fn cifar_without_data_says_what_to_download() {
    let d = tempfile::tempdir().unwrap();
    let r = d.path().join("recipes/c");
    fs::create_dir_all(&r).unwrap();
    fs::write(
        r.join("c.table.toml"),
        "title = \"c\"\nrows = [\"Vanilla\"]\ncolumns = [\"ResNet8\"]\n",
    )
    .unwrap();
    fs::write(
        r.join("v.toml"),
        "cell = { table = \"c\", row = \"Vanilla\", column = \"ResNet8\" }\ndataset = \"cifar100\"\nstudent = \"resnet8\"\nseeds = [0]\n",
    )
    .unwrap();
    lecal(d.path())
        .args([
            "run",
            "recipes/c",
            "--device",
            "cpu",
            "--scale",
            "smoke",
            "--data-dir",
            "nowhere",
        ])
        .assert()
        .failure()
        .stderr(predicate::str::contains("CIFAR-100 data not found"))
        .stderr(predicate::str::contains("cifar-100-binary.tar.gz"));
    // Stopped before training: nothing was attempted or written.
    assert!(!d.path().join("results").exists());
    lecal(d.path())
        .args(["status", "recipes/c", "--scale", "smoke"])
        .assert()
        .success()
        .stdout(predicate::str::contains("1 pending"));
}

#[test]
fn models_lists_the_parameter_counts_of_methods_md() {
    let d = tempfile::tempdir().unwrap();
    lecal(d.path())
        .arg("models")
        .assert()
        .success()
        .stdout(predicate::str::contains("278,324"))
        .stdout(predicate::str::contains("472,756"))
        .stdout(predicate::str::contains("667,188"))
        .stdout(predicate::str::contains("861,620"))
        .stdout(predicate::str::contains("1,736,564"))
        // torchvision's published counts at 1000 classes.
        .stdout(predicate::str::contains("11,689,512"))
        .stdout(predicate::str::contains("21,797,672"))
        .stdout(predicate::str::contains("25,557,032"));
}

#[test]
fn a_closed_pipe_ends_output_quietly() {
    // `lecal models | head -0`, deterministically: the pipe's reader is gone before lecal
    // writes, so every write fails with a broken pipe.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for args in [&["models"][..], &["plan", "recipes/cifar100"]] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = std::process::Command::new(assert_cmd::cargo::cargo_bin("lecal"))
            .current_dir(root)
            .args(args)
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {:?} {stderr}", out.status);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

#[test]
fn the_committed_cifar100_recipes_plan_198_runs_with_vanilla_resnet110_as_teachers() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let d = tempfile::tempdir().unwrap();
    let out = lecal(root)
        .args(["--results"])
        .arg(d.path())
        .args(["plan", "recipes/cifar100"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let out = String::from_utf8(out).unwrap();
    // Table 1: 12 rows x 5 students x 3 seeds; Table 2's paper rows and the teachers add
    // no run, its CRD, CRD+KD, SSKD and WSL rows 2 students x 3 seeds of 240 epochs each.
    assert!(
        out.contains("total: 204 runs, 53910 epochs (0 done), 0 done, 204 to train"),
        "{out}"
    );
    assert!(out.contains("78 cells ask for 234 runs"), "{out}");
    for row in ["CRD [5]", "CRD+KD [5]", "SSKD [4]", "WSL [6]"] {
        let runs = out
            .lines()
            .filter(|l| l.contains(&format!("cifar100-comparison/{row}/")))
            .count();
        assert_eq!(runs, 6, "{row}: {out}");
    }
    assert_eq!(
        out.lines()
            .filter(|l| l.contains("cifar100/Vanilla/"))
            .count(),
        15
    );
    let teachers: Vec<&str> = out.lines().filter(|l| l.contains("teacher of")).collect();
    assert_eq!(teachers.len(), 3, "{out}");
    assert!(teachers
        .iter()
        .all(|l| l.contains("cifar100/Vanilla/ResNet110")));
}

/// Every method of the paper, plus one outside it written as recipe files only, trains
/// end to end; teachers are the Vanilla row's runs.
#[test]
fn every_method_trains_end_to_end_with_teachers_from_the_vanilla_row() {
    let d = tempfile::tempdir().unwrap();
    let r = d.path().join("recipes/m");
    fs::create_dir_all(r.join("methods")).unwrap();
    let rows = [
        ("Vanilla", "\"vanilla\"", "", "[0, 1]"),
        ("LS", "\"smoothing\"", "", "[0]"),
        ("KD", "\"kd\"", "teachers = [ { model = \"resnet8\", seeds = [0] } ]", "[0]"),
        ("SL", "\"sl\"", "teachers = [ { model = \"resnet8\", seeds = [0] } ]", "[0]"),
        ("EN-SL", "\"en-sl\"", "teachers = [ { model = \"resnet8\", seeds = [0, 1] } ]", "[0]"),
        ("KD-SL", "\"kd-sl\"", "teachers = [ { model = \"resnet8\", seeds = [0, 1] } ]", "[0]"),
        ("Aug-SL", "\"sl\"", "teachers = [ { model = \"resnet8\", seeds = [0] } ]\naugment = { kind = \"ricap\" }", "[0]"),
        ("Aug-KD-SL", "\"kd-sl\"", "teachers = [ { model = \"resnet8\", seeds = [0, 1] } ]\naugment = { kind = \"cutmix\" }", "[0]"),
        ("Mixup", "\"vanilla\"", "augment = { kind = \"mixup\", alpha = 1.0 }", "[0]"),
        ("CutMix", "\"vanilla\"", "augment = { kind = \"cutmix\" }", "[0]"),
        ("RICAP", "\"vanilla\"", "augment = { kind = \"ricap\", beta = 0.3 }", "[0]"),
        ("EN-SL T2", "\"en-sl-t2\"", "teachers = [ { model = \"resnet8\", seeds = [0, 1] } ]", "[0]"),
        ("KD batchmean", "{ preset = \"kd\", kl_reduction = \"batch-mean\" }", "teachers = [ { model = \"resnet8\", seeds = [0] } ]", "[0]"),
        ("WSL", "\"wsl\"", "teachers = [ { model = \"resnet8\", seeds = [0] } ]", "[0]"),
    ];
    let names: Vec<String> = rows.iter().map(|r| format!("\"{}\"", r.0)).collect();
    fs::write(
        r.join("m.table.toml"),
        format!(
            "title = \"m\"\nrows = [{}]\ncolumns = [\"ResNet8\"]\n",
            names.join(", ")
        ),
    )
    .unwrap();
    // A new method, by recipe files alone: EN-SL at T = 2 with a 0.5 hard-label weight.
    fs::write(
        r.join("methods/en-sl-t2.toml"),
        "preset = \"en-sl\"\ntemperature = 2.0\nhard_weight = 0.5\n",
    )
    .unwrap();
    for (i, (row, method, extra, seeds)) in rows.iter().enumerate() {
        let text = format!(
            r#"cell = {{ table = "m", row = "{row}", column = "ResNet8" }}
dataset = "synthetic"
synthetic = {{ train = 64, test = 32, resolution = 8 }}
schedule = {{ epochs = 1, milestones = [], batch = 32 }}
student = "resnet8"
seeds = {seeds}
method = {method}
{extra}
"#
        );
        fs::write(r.join(format!("r{i:02}.toml")), text).unwrap();
    }
    let plan = lecal(d.path())
        .args(["plan", "recipes/m"])
        .assert()
        .success();
    let out = String::from_utf8(plan.get_output().stdout.clone()).unwrap();
    // 2 vanilla runs double as teachers; 13 other students.
    assert!(out.contains("total: 15 runs, 15 epochs"), "{out}");
    assert_eq!(
        out.lines().filter(|l| l.contains("teacher of")).count(),
        2,
        "{out}"
    );
    lecal(d.path())
        .args(["run", "recipes/m", "--device", "cpu"])
        .assert()
        .success()
        .stdout(predicate::str::contains("15 runs: 15 trained"));
    lecal(d.path()).args(["table", "m"]).assert().success();
    let md = fs::read_to_string(d.path().join("results/tables/m.md")).unwrap();
    assert!(!md.contains("pending") && !md.contains("| — |"), "{md}");
    // The new method's parameters are in its run's resolved spec.
    let runs = d.path().join("results/runs");
    let specs: Vec<String> = fs::read_dir(&runs)
        .unwrap()
        .map(|e| fs::read_to_string(e.unwrap().path().join("run.toml")).unwrap())
        .collect();
    let t2 = specs
        .iter()
        .filter(|s| s.contains("temperature = 2.0") && s.contains("hard_weight = 0.5"))
        .count();
    assert_eq!(t2, 1);
    let ricap = specs
        .iter()
        .filter(|s| s.contains("kind = \"ricap\""))
        .count();
    assert_eq!(ricap, 2);
    let wsl = specs
        .iter()
        .filter(|s| s.contains("sample_weight = \"wsl\""))
        .count();
    assert_eq!(wsl, 1);
}

/// `lecal submit --dry-run` needs no cluster: Table 1's nine cohorts as jobs, every job
/// that trains students after the teachers' jobs, each with a time limit; the scripts are
/// plain sbatch files and nothing is submitted.
#[test]
fn submit_dry_run_writes_jobs_with_afterok_on_the_teachers() {
    let d = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let results = d.path().join("results");
    let out = lecal(root)
        .args(["--results", results.to_str().unwrap()])
        .args([
            "submit",
            "recipes/cifar100",
            "--dry-run",
            "--partition",
            "gpu",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let jobs: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("would submit job"))
        .collect();
    assert_eq!(jobs.len(), 12, "{text}");
    assert!(jobs.iter().all(|l| l.contains("--time=")));
    let after = jobs
        .iter()
        .filter(|l| l.contains("--dependency=afterok:$j1:$j2:$j3"));
    assert_eq!(
        after.count(),
        6,
        "the six student cohorts wait for the three teachers"
    );
    // SSKD's students (rotated batches, cohorts of their own) wait for their one teacher.
    let sskd = jobs
        .iter()
        .filter(|l| l.contains("(2 runs") && l.contains("--dependency=afterok:$j1 "));
    assert_eq!(sskd.count(), 3, "{text}");
    let submit = fs::read_to_string(results.join("slurm/submit.sh")).unwrap();
    assert_eq!(submit.matches("sbatch --parsable").count(), 12);
    let script = fs::read_dir(results.join("slurm"))
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().contains("-and-29.sh"))
        .unwrap();
    let s = fs::read_to_string(script.path()).unwrap();
    for want in [
        "#SBATCH --requeue",
        "#SBATCH --signal=B:USR1@",
        "#SBATCH --partition=gpu",
        "#SBATCH --gpus=1",
        "--job-step",
        "scontrol requeue",
    ] {
        assert!(s.contains(want), "{want} not in\n{s}");
    }
    assert_eq!(s.matches("--only=").count(), 1);
    assert!(!results.join("runs").exists(), "a dry run writes no ledger");
}
