//! The Makefile finds lecal where cargo builds it: `make demo` with `CARGO_TARGET_DIR` set
//! (issue 30). The Makefile and the recipes are copied into a folder that has no
//! `target/`, so a Makefile that names `target/release/lecal` fails here. `CARGO` is a
//! script that does what `cargo build --release` would leave behind, the binary under
//! test at `$CARGO_TARGET_DIR/release/lecal`, so the test needs no second release build.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap().flatten() {
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &dest);
        } else {
            fs::copy(e.path(), dest).unwrap();
        }
    }
}

#[test]
fn make_demo_runs_the_binary_cargo_built_under_cargo_target_dir() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let d = tempfile::tempdir().unwrap();
    let repo = d.path().join("checkout");
    fs::create_dir_all(&repo).unwrap();
    fs::copy(root.join("Makefile"), repo.join("Makefile")).unwrap();
    copy_tree(&root.join("recipes"), &repo.join("recipes"));
    let cargo = d.path().join("cargo");
    fs::write(
        &cargo,
        "#!/bin/sh\n[ \"$1 $2\" = \"build --release\" ] || { echo \"unexpected: cargo $*\" >&2; exit 64; }\n\
         mkdir -p \"$CARGO_TARGET_DIR/release\" && cp \"$LECAL_UNDER_TEST\" \"$CARGO_TARGET_DIR/release/lecal\"\n",
    )
    .unwrap();
    fs::set_permissions(&cargo, fs::Permissions::from_mode(0o755)).unwrap();
    let target = d.path().join("elsewhere/build");
    let out = Command::new("make")
        .current_dir(&repo)
        .args(["demo", "DEMO_SCALE=smoke"])
        .arg(format!("CARGO={}", cargo.display()))
        .env("CARGO_TARGET_DIR", &target)
        .env("LECAL_UNDER_TEST", env!("CARGO_BIN_EXE_lecal"))
        .env_remove("LECAL_RESULTS")
        .env_remove("LECAL_DATA")
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains(&format!("{}/release/lecal run", target.display())),
        "{said}"
    );
    assert!(!repo.join("target").exists(), "{said}");
    let got = fs::read(repo.join("results/tables/demo.smoke.md")).unwrap();
    let committed = fs::read(root.join("results/tables/demo.smoke.md")).unwrap();
    assert!(got == committed, "{}", String::from_utf8_lossy(&got));
    assert!(
        repo.join("results/report/demo.smoke/index.html").exists(),
        "{said}"
    );
}
