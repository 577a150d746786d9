//! Several devices of one machine (`lecal run --devices`), scheduled on CPU "devices"
//! where no GPU exists: the demo's table at smoke scale equals the committed one,
//! `results/tables/demo.smoke.md`, trained on one device (`lecal run recipes/demo
//! --scale smoke` and `lecal table demo --scale smoke`).

mod common;

use std::fs;

#[test]
fn the_demo_on_two_cpu_slots_gives_the_committed_smoke_table() {
    let d = tempfile::tempdir().unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let results = d.path().join("results");
    let out = common::lecal(root)
        .args(["--results", results.to_str().unwrap()])
        .args([
            "run",
            "recipes/demo",
            "--devices",
            "cpu,cpu",
            "--scale",
            "smoke",
        ])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{log}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Both slots trained units.
    for slot in ["on cpu (slot 1)", "on cpu (slot 2)"] {
        assert!(log.contains(slot), "no unit {slot}:\n{log}");
    }
    let out = common::lecal(root)
        .args(["--results", results.to_str().unwrap(), "table", "demo"])
        .args(["--scale", "smoke"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let got = fs::read(results.join("tables/demo.smoke.md")).unwrap();
    let committed = fs::read(root.join("results/tables/demo.smoke.md")).unwrap();
    assert!(
        got == committed,
        "the table differs from results/tables/demo.smoke.md:\n{}",
        String::from_utf8_lossy(&got)
    );
}

#[test]
fn device_lists_are_checked() {
    let d = tempfile::tempdir().unwrap();
    for (args, says) in [
        (
            vec!["--devices", "auto"],
            "`auto` cannot be one of --devices",
        ),
        (vec!["--devices", "cpu,gpu"], "unknown device `gpu`"),
        (
            vec!["--devices", "cpu", "--device", "cpu"],
            "cannot be used with",
        ),
    ] {
        let out = common::lecal(d.path())
            .args(["run", "recipes"])
            .args(&args)
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
    }
}
