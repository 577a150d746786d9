//! Forged and truncated runs (issue 30, class 4) and the states a reader is told
//! (class 6): a run edited after it was done, its done record hashed again, never passes;
//! a run without its done record is marked unverified; damaged weights are damage in
//! every command; a failed run is "failed" in its table cell, with why below the table;
//! `status` exits non-zero with failed runs.

mod common;

use common::{lecal, GOOD, TABLE};
use std::fs;
use std::path::{Path, PathBuf};

/// A folder with the table spec and `r.toml` under `recipes/h/`, trained.
fn trained(recipe: &str) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let r = d.path().join("recipes/h");
    fs::create_dir_all(&r).unwrap();
    fs::write(r.join("h.table.toml"), TABLE).unwrap();
    fs::write(r.join("r.toml"), recipe).unwrap();
    let o = lecal(d.path())
        .args(["run", "recipes/h", "--device", "cpu"])
        .output()
        .unwrap();
    let _ = o; // A recipe that fails is trained too; the tests look at the results.
    d
}

struct Out {
    ok: bool,
    all: String,
}

fn run(d: &Path, args: &[&str]) -> Out {
    let o = lecal(d).args(args).output().unwrap();
    Out {
        ok: o.status.success(),
        all: format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    }
}

fn run_dir(d: &Path) -> PathBuf {
    let dirs: Vec<PathBuf> = fs::read_dir(d.join("results/runs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs[0].clone()
}

/// Every command that reads results says `why` of the run, and none passes it.
fn refused_everywhere(d: &Path, why: &str) {
    let s = run(d, &["status", "recipes/h"]);
    assert!(
        !s.ok && s.all.contains("1 damaged") && s.all.contains(why),
        "{}",
        s.all
    );
    let r = run(d, &["run", "recipes/h", "--device", "cpu"]);
    assert!(!r.ok && r.all.contains(why), "{}", r.all);
    let t = run(d, &["table", "h", "--recipes", "recipes"]);
    assert!(!t.ok && t.all.contains(why), "{}", t.all);
    let v = run(d, &["verify", "recipes/h", "--device", "cpu"]);
    assert!(
        !v.ok && v.all.contains("DAMAGED") && v.all.contains(why),
        "{}",
        v.all
    );
    assert!(!v.all.contains("identical"), "{}", v.all);
}

#[test]
fn a_spec_edited_after_the_run_with_its_done_record_hashed_again_is_damaged() {
    let d = trained(GOOD);
    let dir = run_dir(d.path());
    let rec = fs::read_to_string(dir.join("run.toml")).unwrap();
    assert!(rec.contains("lr = 0.05\n"), "{rec}");
    fs::write(
        dir.join("run.toml"),
        rec.replace("lr = 0.05\n", "lr = 0.777\n"),
    )
    .unwrap();
    let done = dir.join("done.toml");
    let mut record: toml::Table = toml::from_str(&fs::read_to_string(&done).unwrap()).unwrap();
    let entry = record["files"]["run.toml"].clone();
    let mut entry = entry.as_table().unwrap().clone();
    let sha = lecal::hash::file_sha256(&dir.join("run.toml")).unwrap();
    let bytes = fs::metadata(dir.join("run.toml")).unwrap().len() as i64;
    entry.insert("sha256".into(), sha.into());
    entry.insert("bytes".into(), bytes.into());
    record["files"]
        .as_table_mut()
        .unwrap()
        .insert("run.toml".into(), entry.into());
    fs::write(&done, toml::to_string(&record).unwrap()).unwrap();
    refused_everywhere(d.path(), "its spec hashes to run id");
}

#[test]
fn truncated_weights_of_a_run_that_teaches_nothing_are_damage_in_every_command() {
    let d = trained(GOOD);
    let w = run_dir(d.path()).join("weights.safetensors");
    let bytes = fs::read(&w).unwrap();
    fs::write(&w, &bytes[..bytes.len() / 2]).unwrap();
    let why = "weights.safetensors has";
    let s = run(d.path(), &["status", "recipes/h"]);
    assert!(!s.ok && s.all.contains(why), "{}", s.all);
    let r = run(d.path(), &["run", "recipes/h", "--device", "cpu"]);
    assert!(!r.ok && r.all.contains(why), "{}", r.all);
    assert!(r.all.contains("its numbers stand"), "{}", r.all);
    let t = run(d.path(), &["table", "h", "--recipes", "recipes"]);
    let noted = t.all.contains(why) && t.all.contains("delete its weights file");
    assert!(t.ok && noted, "{}", t.all);
    let v = run(d.path(), &["verify", "recipes/h", "--device", "cpu"]);
    assert!(
        !v.ok && v.all.contains("DAMAGED") && v.all.contains(why),
        "{}",
        v.all
    );
    // Missing weights are not damage (they are never committed).
    fs::remove_file(&w).unwrap();
    assert!(run(d.path(), &["status", "recipes/h"]).ok);
    assert!(run(d.path(), &["run", "recipes/h", "--device", "cpu"]).ok);
}

#[test]
fn a_run_without_its_done_record_is_unverified_in_status_and_table_and_never_best() {
    let d = trained(GOOD);
    let dir = run_dir(d.path());
    fs::remove_file(dir.join("done.toml")).unwrap();
    let summary = fs::read_to_string(dir.join("summary.csv")).unwrap();
    let mut lines: Vec<String> = summary.lines().map(String::from).collect();
    let header: Vec<&str> = lines[0].split(',').collect();
    let at = header.iter().position(|h| *h == "accuracy").unwrap();
    let mut row: Vec<String> = lines[1].split(',').map(String::from).collect();
    row[at] = "99.5".into();
    lines[1] = row.join(",");
    fs::write(dir.join("summary.csv"), lines.join("\n") + "\n").unwrap();
    let s = run(d.path(), &["status", "recipes/h"]);
    assert!(s.all.contains("unverified: no done.toml"), "{}", s.all);
    let t = run(d.path(), &["table", "h", "--recipes", "recipes"]);
    assert!(t.ok, "{}", t.all);
    let md = fs::read_to_string(d.path().join("results/tables/h.md")).unwrap();
    assert!(md.contains("| Vanilla | 99.50 / "), "{md}");
    assert!(md.contains("(unverified)") && !md.contains("**"), "{md}");
    assert!(
        md.contains("- unverified: h/Vanilla/ResNet8 seed 0"),
        "{md}"
    );
    let csv = fs::read_to_string(d.path().join("results/tables/h.csv")).unwrap();
    assert!(csv.contains(",unverified,"), "{csv}");
    let tex = fs::read_to_string(d.path().join("results/tables/h.tex")).unwrap();
    assert!(
        tex.contains("(unverified)") && !tex.contains("\\textbf"),
        "{tex}"
    );
}

#[test]
fn a_failed_run_is_failed_in_its_cell_with_why_below_and_status_exits_non_zero() {
    let d = trained(&GOOD.replace(
        "epochs = 2, milestones = [1], batch = 32 }",
        "epochs = 2, milestones = [1], batch = 32, lr = 1e8 }",
    ));
    let s = run(d.path(), &["status", "recipes/h"]);
    assert!(!s.ok && s.all.contains("1 failed"), "{}", s.all);
    assert!(s.all.contains("--retry-failed"), "{}", s.all);
    let t = run(d.path(), &["table", "h", "--recipes", "recipes"]);
    assert!(t.ok, "{}", t.all);
    let md = fs::read_to_string(d.path().join("results/tables/h.md")).unwrap();
    assert!(md.contains("| Vanilla | failed |"), "{md}");
    assert!(
        md.contains("- failed: h/Vanilla/ResNet8 seed 0, run "),
        "{md}"
    );
    assert!(md.contains(": epoch 1: the run diverged"), "{md}");
    let csv = fs::read_to_string(d.path().join("results/tables/h.csv")).unwrap();
    assert!(csv.contains("h,Vanilla,ResNet8,failed,"), "{csv}");
    let tex = fs::read_to_string(d.path().join("results/tables/h.tex")).unwrap();
    assert!(tex.contains("Vanilla & failed"), "{tex}");
    assert!(tex.contains("% failed: h/Vanilla/ResNet8 seed 0"), "{tex}");
    let r = run(d.path(), &["report", "h", "--recipes", "recipes"]);
    assert!(r.ok, "{}", r.all);
    let html = fs::read_to_string(d.path().join("results/report/h/index.html")).unwrap();
    assert!(
        html.contains("<li>failed: h/Vanilla/ResNet8 seed 0"),
        "{html}"
    );
}

#[test]
fn a_run_folder_replaced_by_a_file_is_named_by_every_command() {
    let d = trained(GOOD);
    let dir = run_dir(d.path());
    let id = dir.file_name().unwrap().to_str().unwrap().to_string();
    fs::remove_dir_all(&dir).unwrap();
    fs::write(&dir, "not a folder").unwrap();
    let why = "is not a folder (a file took the run folder's place)";
    let s = run(d.path(), &["status", "recipes/h"]);
    assert!(
        !s.ok && s.all.contains("1 damaged") && s.all.contains(why),
        "{}",
        s.all
    );
    let p = run(d.path(), &["plan", "recipes/h"]);
    assert!(
        p.all.contains("damaged") && p.all.contains(why),
        "{}",
        p.all
    );
    let sh = run(d.path(), &["show", &id]);
    assert!(!sh.ok && sh.all.contains(why), "{}", sh.all);
    let r = run(d.path(), &["run", "recipes/h", "--device", "cpu"]);
    assert!(!r.ok && r.all.contains(why), "{}", r.all);
    assert!(!r.all.contains("free space"), "{}", r.all);
    assert_eq!(fs::read_to_string(&dir).unwrap(), "not a folder");
}

#[test]
fn show_refuses_a_folder_that_is_no_run_folder() {
    let d = trained(GOOD);
    let sh = run(d.path(), &["show", "/etc"]);
    assert!(
        !sh.ok && sh.all.contains("/etc is not a run folder"),
        "{}",
        sh.all
    );
    // A folder named like a run, holding nothing a run writes.
    let fake = d.path().join("synthetic-resnet8-0123456789ab");
    fs::create_dir(&fake).unwrap();
    let sh = run(d.path(), &["show", fake.to_str().unwrap()]);
    assert!(
        !sh.ok && sh.all.contains("holds none of the files"),
        "{}",
        sh.all
    );
    // The real one still shows.
    let real = run_dir(d.path());
    let sh = run(d.path(), &["show", real.to_str().unwrap()]);
    assert!(sh.ok && sh.all.contains("state: done"), "{}", sh.all);
}
