//! Issue 30, class 3: no write through a planted link. Links planted in a results folder
//! where lecal writes: at a run's folder, its checkpoints' folder, its lock, a table and a
//! report's folder. A link at a file's own name is replaced by the file and its target
//! left alone; a folder that is a link is refused with an error naming it, and nothing is
//! written where it points. (`tests/fetch.rs` plants one at a partial download.)

mod common;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

/// A folder with the tiny table `h` (one run) and a folder `outside` holding `victim`.
fn setup() -> (tempfile::TempDir, String, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let r = d.path().join("recipes/h");
    fs::create_dir_all(&r).unwrap();
    fs::write(r.join("h.table.toml"), common::TABLE).unwrap();
    fs::write(r.join("vanilla.toml"), common::GOOD).unwrap();
    let outside = d.path().join("outside");
    fs::create_dir_all(&outside).unwrap();
    fs::write(outside.join("victim"), "precious").unwrap();
    // The run's id, from a run trained elsewhere.
    common::run_to_end(d.path(), "first", "recipes/h", &[]);
    let id = fs::read_dir(d.path().join("first/runs"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .find(|n| n.starts_with("synthetic-"))
        .unwrap();
    (d, id, outside)
}

fn lecal(dir: &Path, args: &[&str]) -> std::process::Output {
    common::lecal(dir)
        .args(["--results", "results"])
        .args(args)
        .output()
        .unwrap()
}

fn untouched(outside: &Path) {
    let names: Vec<_> = fs::read_dir(outside)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(names, ["victim"], "something was written outside");
    assert_eq!(
        fs::read_to_string(outside.join("victim")).unwrap(),
        "precious"
    );
}

#[test]
fn a_run_folder_or_its_checkpoints_folder_that_is_a_link_is_refused() {
    let (d, id, outside) = setup();
    let runs = d.path().join("results/runs");
    fs::create_dir_all(&runs).unwrap();
    symlink(&outside, runs.join(&id)).unwrap();
    let out = lecal(d.path(), &["run", "recipes/h"]);
    let text = common::output_text(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("symbolic link") && text.contains(&id),
        "{text}"
    );
    untouched(&outside);

    fs::remove_file(runs.join(&id)).unwrap();
    fs::create_dir_all(runs.join(&id)).unwrap();
    symlink(&outside, runs.join(&id).join("checkpoint")).unwrap();
    let out = lecal(d.path(), &["run", "recipes/h"]);
    let text = common::output_text(&out);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("symbolic link"), "{text}");
    untouched(&outside);
}

#[test]
fn links_at_a_lock_a_table_and_a_report_are_never_written_through() {
    let (d, id, outside) = setup();
    let run = d.path().join("results/runs").join(&id);
    fs::create_dir_all(&run).unwrap();
    symlink(outside.join("victim"), run.join("lock")).unwrap();
    let out = lecal(d.path(), &["run", "recipes/h"]);
    assert!(out.status.success(), "{}", common::output_text(&out));
    assert!(run.join("done.toml").exists());
    untouched(&outside);

    let tables = d.path().join("results/tables");
    fs::create_dir_all(&tables).unwrap();
    symlink(outside.join("victim"), tables.join("h.md")).unwrap();
    let out = lecal(d.path(), &["table", "h"]);
    assert!(out.status.success(), "{}", common::output_text(&out));
    assert!(fs::symlink_metadata(tables.join("h.md")).unwrap().is_file());
    assert!(fs::read_to_string(tables.join("h.md"))
        .unwrap()
        .contains("| Vanilla |"));
    untouched(&outside);

    let report = d.path().join("results/report");
    fs::create_dir_all(&report).unwrap();
    symlink(&outside, report.join("h")).unwrap();
    let out = lecal(d.path(), &["report", "h"]);
    let text = common::output_text(&out);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("symbolic link"), "{text}");
    untouched(&outside);
}
