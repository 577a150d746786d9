//! Issue 29: the same bits on every x86-64 CPU with AVX2 and FMA. The real `lecal` binary
//! trains a small table (a teacher; KD, KD-SL with RICAP, CRD and SSKD students) and every
//! result file is compared byte for byte:
//! - with each microkernel this CPU runs (`--cpu-kernels`: AVX2, AVX-512, portable);
//! - (`make test-cpus`, ignored otherwise: it needs QEMU's user-mode emulator) natively
//!   against the same binary on an emulated AMD EPYC-Rome, a CPU with AVX2 and FMA and
//!   without AVX-512, whatever this machine has.

mod common;

use common::{results, same};
use std::path::Path;
use std::process::Command;

/// Runs of the table: the teacher and four students.
const RUNS: usize = 5;

fn recipes(dir: &Path) {
    let crd = "{ preset = \"crd\", crd_dim = 16, crd_negatives = 48 }";
    let sskd = "{ preset = \"sskd\", sskd_head_epochs = 2, sskd_head_milestones = [1] }";
    let setting = "dataset = \"synthetic\"\n\
                   synthetic = { train = 64, test = 32, resolution = 8 }\n\
                   schedule = { epochs = 2, milestones = [1], batch = 16 }\nseeds = [0]\n\
                   teachers = [ { model = \"resnet8\", seeds = [0], schedule = { epochs = 2, \
                   milestones = [1], batch = 16 } } ]\n";
    common::cells(
        dir,
        "x",
        &["KD", "Aug-KD-SL", "CRD", "SSKD"],
        &[
            ("kd", "KD", "resnet8", "\"kd\""),
            ("crd", "CRD", "resnet8", crd),
            ("sskd", "SSKD", "resnet14", sskd),
        ],
        setting,
    );
    let aug = format!(
        "cell = {{ table = \"x\", row = \"Aug-KD-SL\", column = \"ResNet8\" }}\n\
         student = \"resnet8\"\nmethod = \"kd-sl\"\naugment = {{ kind = \"ricap\" }}\n{setting}"
    );
    std::fs::write(dir.join("recipes/x/aug-kd-sl.toml"), aug).unwrap();
}

/// `lecal run recipes/x` into `results`, through `wrapper` (an emulator and its options)
/// when given; the output.
fn run(dir: &Path, wrapper: &[&str], results: &str, args: &[&str]) -> std::process::Output {
    let lecal = env!("CARGO_BIN_EXE_lecal");
    let mut c = match wrapper {
        [] => Command::new(lecal),
        [emulator, options @ ..] => {
            let mut c = Command::new(emulator);
            c.args(options).arg(lecal);
            c
        }
    };
    c.current_dir(dir)
        .env_remove("LECAL_RESULTS")
        .env_remove("LECAL_DATA")
        .env_remove("LECAL_CPU_KERNELS")
        .args(["--results", results, "run", "recipes/x", "--device", "cpu"])
        .args(args)
        .output()
        .unwrap()
}

fn trained(dir: &Path, wrapper: &[&str], results: &str, args: &[&str]) {
    let out = run(dir, wrapper, results, args);
    assert!(out.status.success(), "{}", common::output_text(&out));
}

/// The `kernel_level` and `cpu_kernels` every run.toml of `results` records.
fn recorded(results: &Path) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = std::fs::read_dir(results.join("runs"))
        .unwrap()
        .map(|e| {
            let t = std::fs::read_to_string(e.unwrap().path().join("run.toml")).unwrap();
            let v: toml::Value = toml::from_str(&t).unwrap();
            let d = &v["provenance"]["device_details"];
            let s = |k: &str| d.get(k).and_then(|x| x.as_str()).unwrap_or("").to_string();
            (s("kernel_level"), s("cpu_kernels"))
        })
        .collect();
    out.dedup();
    out
}

#[test]
fn every_microkernel_trains_the_same_bytes() {
    let d = tempfile::tempdir().unwrap();
    recipes(d.path());
    trained(d.path(), &[], "auto", &[]);
    let auto = results(&d.path().join("auto"), RUNS);
    let mut kernels = vec!["portable"];
    // AVX-512 where this CPU has it; elsewhere asking for it is a clear error.
    let avx512 = run(d.path(), &[], "avx512", &["--cpu-kernels", "avx512"]);
    if avx512.status.success() {
        kernels.push("avx512");
    } else {
        let err = common::output_text(&avx512);
        assert!(err.contains("has no AVX-512F"), "{err}");
        assert!(!d.path().join("avx512/runs").exists(), "nothing is written");
    }
    for k in kernels {
        if k != "avx512" {
            trained(d.path(), &[], k, &["--cpu-kernels", k]);
        }
        same(&auto, &results(&d.path().join(k), RUNS));
        assert!(recorded(&d.path().join(k)).iter().all(|(_, c)| c == k));
    }
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        let level = recorded(&d.path().join("auto"));
        assert_eq!(level, [("x86-64-v3".to_string(), "avx2-fma".to_string())]);
    }
}

/// QEMU's user-mode emulator of an x86-64 CPU with AVX2 and FMA and without AVX-512
/// (`LECAL_QEMU`, default `qemu-x86_64`, with `-cpu EPYC-Rome`).
fn emulator() -> Vec<String> {
    let qemu = std::env::var("LECAL_QEMU").unwrap_or_else(|_| "qemu-x86_64".into());
    vec![qemu, "-cpu".into(), "EPYC-Rome".into()]
}

#[test]
#[ignore = "needs QEMU's user-mode emulator: make test-cpus"]
fn a_cpu_without_avx512_trains_the_same_bytes_as_this_one() {
    let d = tempfile::tempdir().unwrap();
    recipes(d.path());
    let qemu = emulator();
    let qemu: Vec<&str> = qemu.iter().map(String::as_str).collect();
    // The emulated CPU has no AVX-512, as lecal itself detects it.
    let out = run(d.path(), &qemu, "refused", &["--cpu-kernels", "avx512"]);
    assert!(!out.status.success(), "{}", common::output_text(&out));
    assert!(common::output_text(&out).contains("has no AVX-512F"));
    trained(d.path(), &qemu, "emulated", &[]);
    trained(d.path(), &[], "native", &[]);
    let level = recorded(&d.path().join("emulated"));
    assert_eq!(level, [("x86-64-v3".to_string(), "avx2-fma".to_string())]);
    same(
        &results(&d.path().join("native"), RUNS),
        &results(&d.path().join("emulated"), RUNS),
    );
}
