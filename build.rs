//! Build-time provenance, embedded with `env!`: the candle version and the SHA-256 of
//! Cargo.lock, lecal's git commit and whether its tracked files had changes when this
//! binary was built, and (with the `cuda` feature) the CUDA toolkit it was built against.
use sha2::{Digest, Sha256};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=Cargo.lock");
    let lock = std::fs::read("Cargo.lock").unwrap_or_default();
    let text = String::from_utf8_lossy(&lock);
    let version = text
        .split("[[package]]")
        .find(|p| p.contains("name = \"candle-core\""))
        .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = ")))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=LECAL_CANDLE_VERSION={version}");
    let sha: String = Sha256::digest(&lock)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    println!("cargo:rustc-env=LECAL_CARGO_LOCK_SHA256={sha}");
    git();
    cuda_toolkit();
}

fn output(cmd: &str, args: &[&str]) -> Option<String> {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

/// The commit and whether tracked files differ from it. The binary is rebuilt when its
/// sources change, and this script reruns then (the `src` folder and the manifests) and
/// when HEAD moves (a commit, a checkout): the values are those of the built sources.
/// Never the index: `git status` rewrites it, which would rebuild lecal for nothing.
fn git() {
    for p in ["src", "Cargo.toml", "build.rs", "recipes/methods"] {
        println!("cargo:rerun-if-changed={p}");
    }
    let git = |args: &[&str]| output("git", args);
    let mut watch = vec!["HEAD".to_string(), "logs/HEAD".to_string()];
    if let Some(r) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watch.push(r);
    }
    for w in watch {
        // A missing path would make cargo rerun this script on every build.
        if let Some(p) = git(&["rev-parse", "--git-path", &w]) {
            if std::path::Path::new(&p).exists() {
                println!("cargo:rerun-if-changed={p}");
            }
        }
    }
    let commit = git(&["rev-parse", "HEAD"]).filter(|c| !c.is_empty());
    let dirty = commit.is_some()
        && git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    println!(
        "cargo:rustc-env=LECAL_GIT_COMMIT={}",
        commit.as_deref().unwrap_or("unknown")
    );
    println!("cargo:rustc-env=LECAL_GIT_DIRTY={dirty}");
}

/// With the `cuda` feature: the release of the `nvcc` that compiled candle's kernels
/// (`CUDA_HOME/bin` first, as candle's build finds it), e.g. `13.0`.
fn cuda_toolkit() {
    println!("cargo:rerun-if-env-changed=CUDA_HOME");
    let mut release = String::new();
    if std::env::var_os("CARGO_FEATURE_CUDA").is_some() {
        let nvcc = std::env::var("CUDA_HOME")
            .map(|h| format!("{h}/bin/nvcc"))
            .ok()
            .filter(|p| std::path::Path::new(p).exists())
            .unwrap_or_else(|| "nvcc".into());
        release = output(&nvcc, &["--version"])
            .and_then(|v| {
                let (_, tail) = v.split_once("release ")?;
                Some(tail.split(',').next()?.trim().to_string())
            })
            .unwrap_or_default();
    }
    println!("cargo:rustc-env=LECAL_CUDA_TOOLKIT={release}");
}
