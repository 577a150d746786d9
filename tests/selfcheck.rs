//! lecal's kernels are checked at first use on a device before any run trains with them
//! (`model::kernels::selfcheck`). A fault injected into one kernel's check, through the
//! CPU build, makes lecal fall back to candle's path for that kernel: it warns naming the
//! kernel, the run trains and finishes, and its run.toml records the fallback. Without the
//! fault nothing falls back and nothing is recorded.

mod common;

use std::fs;
use std::path::Path;

/// Trains the tiny recipe into `results` with `LECAL_FAULT_INJECT` set to `fault` (when
/// given); the output, and the run's run.toml.
fn train(dir: &Path, results: &str, fault: Option<&str>) -> (String, String) {
    let mut c = common::run_command(dir, results, "recipes/h", &[]);
    c.env_remove("LECAL_FAULT_INJECT").env_remove("LECAL_CONV");
    if let Some(f) = fault {
        c.env("LECAL_FAULT_INJECT", f);
    }
    let out = c.output().unwrap();
    let text = common::output_text(&out);
    assert!(out.status.success(), "{text}");
    let run = fs::read_dir(dir.join(results).join("runs"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    (text, fs::read_to_string(run.join("run.toml")).unwrap())
}

#[test]
fn a_kernel_that_fails_its_check_falls_back_to_candles_and_the_run_records_it() {
    let d = tempfile::tempdir().unwrap();
    let r = d.path().join("recipes/h");
    fs::create_dir_all(&r).unwrap();
    fs::write(r.join("h.table.toml"), common::TABLE).unwrap();
    fs::write(r.join("vanilla.toml"), common::GOOD).unwrap();

    let (log, record) = train(d.path(), "clean", None);
    assert!(!log.contains("disagrees"), "{log}");
    assert!(!record.contains("fallbacks"), "{record}");

    for (fault, kernel) in [("conv", "convolution"), ("matmul", "matrix product")] {
        let (log, record) = train(d.path(), fault, Some(fault));
        let warning = format!("warning: lecal's {kernel} on cpu");
        assert!(log.contains(&warning), "{warning}:\n{log}");
        assert!(log.contains("disagrees with candle's on the CPU"), "{log}");
        assert!(
            log.contains(&format!("candle's {kernel} is used instead")),
            "{log}"
        );
        let v: toml::Value = toml::from_str(&record).unwrap();
        let fallbacks = v["provenance"]["device_details"]["fallbacks"]
            .as_array()
            .unwrap_or_else(|| panic!("no fallbacks recorded:\n{record}"));
        assert_eq!(fallbacks.len(), 1, "{record}");
        let line = fallbacks[0].as_str().unwrap();
        assert!(line.contains(kernel) && line.contains("off by"), "{line}");
    }
}
