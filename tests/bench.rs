//! `lecal bench`, the real binary at tiny sizes: what it measures and writes, and its
//! device check. Its numbers are reported in BENCHMARKS.md, never asserted here.

mod common;

use predicates::prelude::*;
use std::fs;

/// `lecal bench` measures and writes its CSV (the fused part one row each way for each
/// group size); `--check` compares a training step on a device with the CPU (here the
/// CPU with itself: it exercises the comparison).
#[test]
fn bench_writes_its_measurements_and_check_compares_a_step() {
    let d = tempfile::tempdir().unwrap();
    common::lecal(d.path())
        .args([
            "bench",
            "--models",
            "resnet8",
            "--parts",
            "train,data,fused",
            "--fused-members",
            "2,3",
            "--min-seconds",
            "0.01",
            "--csv",
            "b.csv",
        ])
        .assert()
        .success();
    let csv = fs::read_to_string(d.path().join("b.csv")).unwrap();
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(
        rows[0],
        "what,implementation,images_per_second,iterations,seconds"
    );
    let whats: Vec<&str> = rows[1..]
        .iter()
        .map(|r| r.split(',').next().unwrap())
        .collect();
    assert_eq!(
        whats,
        [
            "train resnet8",
            "fused 2x resnet8",
            "fused 2x resnet8",
            "fused 3x resnet8",
            "fused 3x resnet8",
            "crop+flip+normalise",
            "mixup",
            "cutmix",
            "ricap",
        ]
    );
    for r in &rows[1..] {
        let ips: f64 = r.split(',').nth(2).unwrap().parse().unwrap();
        assert!(ips > 0.0, "{r}");
    }
    common::lecal(d.path())
        .args(["bench", "--parts", "gpu"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("unknown part `gpu`"));
    common::lecal(d.path())
        .args(["bench", "--device", "cpu", "--check"])
        .assert()
        .success()
        .stdout(predicate::str::contains("agree"));
}
