//! `lecal data fetch`: a dataset's official archive into the data folder, checked;
//! `lecal data check`: what is wrong with a dataset's folder.

use crate::data::{self, fetch};
use std::path::Path;

/// The files a dataset's folder must hold after extraction, beyond what its loader checks.
fn present(name: &str, dir: &Path) -> anyhow::Result<()> {
    use data::cifar::{check, Variant};
    match name {
        "cifar10" => check(dir, Variant::Cifar10),
        "cifar100" => check(dir, Variant::Cifar100),
        _ => data::stl10::check(dir),
    }
}

/// `lecal data fetch NAME`: nothing when the data is there; else the archive (from `url`,
/// or `LECAL_DATA_MIRROR`, or the official address), checked and extracted.
pub fn fetch(
    name: &str,
    dir: &Path,
    url: Option<&str>,
    patience: &fetch::Patience,
) -> anyhow::Result<()> {
    let a = fetch::archive(name)?;
    if present(name, dir).is_ok() {
        outln!("{name}: already in {}", dir.join(a.folder).display());
        return Ok(());
    }
    let mirror = std::env::var("LECAL_DATA_MIRROR").ok();
    let src = fetch::Source::of(a, url, mirror.as_deref());
    outln!("{name}: downloading {}", src.url);
    let bar = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let folder = fetch::fetch(&src, dir, bar, patience)?;
    present(name, dir)?;
    outln!(
        "{name}: checked (MD5 {}) and unpacked into {}",
        a.md5,
        folder.display()
    );
    Ok(())
}

/// `lecal data check imagenet --dir DIR`: the report, and failure when anything is wrong.
pub fn check(name: &str, dir: &Path) -> anyhow::Result<std::process::ExitCode> {
    use data::imagenet::ValLayout;
    anyhow::ensure!(
        name == "imagenet",
        "`lecal data check` knows imagenet, not `{name}`"
    );
    anyhow::ensure!(dir.is_dir(), "{} is not a folder (--dir)", dir.display());
    let r = data::imagenet::check(dir);
    outln!("{}:", r.root.display());
    outln!("  classes       {}", r.classes);
    outln!("  train images  {}", r.train_images);
    let layout = match &r.val_layout {
        ValLayout::ClassFolders => "in class folders".to_string(),
        ValLayout::Flat { ground_truth } => format!("flat, labelled by {}", ground_truth.display()),
        ValLayout::FlatUnlabelled => "flat, without ground truth".to_string(),
    };
    outln!("  val images    {} ({layout})", r.val_images);
    if !r.unreadable.is_empty() {
        outln!("  unreadable images: {}", r.unreadable.len());
        for (p, why) in &r.unreadable {
            outln!("    {}: {why}", p.display());
        }
    }
    if !r.problems.is_empty() {
        outln!("  problems: {}", r.problems.len());
        for p in &r.problems {
            outln!("    {p}");
        }
    }
    if r.is_ok() {
        outln!("  ok");
        Ok(std::process::ExitCode::SUCCESS)
    } else {
        Ok(std::process::ExitCode::FAILURE)
    }
}
