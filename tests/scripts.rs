//! The prepared GPU check (`scripts/gpu-check.sh`), which runs where no test can: its dry
//! run, on any machine, prints every step with its command and time limit and writes
//! nothing.

use std::process::Command;

#[test]
fn the_gpu_checks_dry_run_prints_its_steps_and_writes_nothing() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("out");
    let o = Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/gpu-check.sh"))
        .args(["--dry-run", "/nowhere/lecal", out.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{text}");
    for line in [
        "== 1. one training step, GPU against CPU (limit 60 s)",
        "$ /nowhere/lecal bench --device cuda:0 --check",
        "--parts train,teacher,fused --fused-members 4,6",
        "bench_pytorch.py --device cuda",
        "== 3. one real-size epoch of six fused ResNet20 students",
        "run recipes/g --device cuda:0",
        "plan",
        "--estimate --device cuda",
    ] {
        assert!(text.contains(line), "{line}:\n{text}");
    }
    // The limits fit an 8-minute slot.
    let limits: u32 = text
        .lines()
        .filter_map(|l| {
            l.split("(limit ")
                .nth(1)?
                .strip_suffix(" s)")?
                .parse::<u32>()
                .ok()
        })
        .sum();
    assert!(limits > 0 && limits <= 480, "{limits} s:\n{text}");
    assert!(!out.exists(), "a dry run writes nothing");
}
