//! `lecal report` through the real binary: a tiny trained table's page with its plots
//! inlined, the SVG files beside it, nothing fetched from elsewhere, the same bytes when
//! written again; and a table with nothing done, which still renders.

mod common;

use std::fs;
use std::path::Path;

const TABLE: &str = r#"
title = "Tiny <report>"
rows = ["Vanilla", "Label smoothing", "Aug-SL+"]
columns = ["ResNet8"]
note = "Two epochs on the built-in data."
[paper.Vanilla]
ResNet8 = { acc = 50.0, ece = 0.1 }
"#;

fn recipe(row: &str, method: &str, seeds: &str) -> String {
    format!(
        r#"cell = {{ table = "tiny", row = "{row}", column = "ResNet8" }}
dataset = "synthetic"
synthetic = {{ train = 96, test = 40, resolution = 8 }}
schedule = {{ epochs = 2, milestones = [1], batch = 32 }}
student = "resnet8"
seeds = {seeds}
method = "{method}"
"#
    )
}

fn ok(out: std::process::Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    text
}

#[test]
fn a_trained_table_gets_a_self_contained_report() {
    let d = tempfile::tempdir().unwrap();
    let r = d.path().join("recipes/tiny");
    fs::create_dir_all(&r).unwrap();
    fs::write(r.join("tiny.table.toml"), TABLE).unwrap();
    fs::write(
        r.join("vanilla.toml"),
        recipe("Vanilla", "vanilla", "[0, 1]"),
    )
    .unwrap();
    fs::write(
        r.join("ls.toml"),
        recipe("Label smoothing", "smoothing", "[0]"),
    )
    .unwrap();
    ok(common::lecal(d.path())
        .args(["run", "recipes/tiny", "--device", "cpu"])
        .output()
        .unwrap());
    // A row whose recipe is there but not trained: pending.
    fs::write(r.join("later.toml"), recipe("Aug-SL+", "vanilla", "[7]")).unwrap();
    let said = ok(common::lecal(d.path())
        .args(["report", "tiny"])
        .output()
        .unwrap());
    let dir = d.path().join("results/report/tiny");
    assert!(
        said.contains("wrote results/report/tiny/index.html"),
        "{said}"
    );
    let page = fs::read_to_string(dir.join("index.html")).unwrap();
    assert!(page.starts_with("<!DOCTYPE html>"), "{page}");
    // The table's rows and the title, escaped.
    for text in [
        "<h1>Tiny &lt;report&gt;</h1>",
        "<tr><th>Vanilla</th>",
        "<tr><th>Label smoothing</th>",
        "<tr><th>Aug-SL+</th><td class=\"pending\"><a href=\"#cell-3-1\">pending</a></td>",
        "Published in the paper",
        "Two epochs on the built-in data.",
        "Protocol: the last epoch of each run",
        "Pending: 0 of 1 seed done.",
        "2 of 2 seeds done (seeds 0, 1).",
    ] {
        assert!(page.contains(text), "no `{text}` in:\n{page}");
    }
    // Three cells' worth of plots inlined (two with runs, two plots each) and the scatter.
    assert_eq!(page.matches("<svg").count(), 2 * 2 + 1, "{page}");
    // Self-contained: no address, no script, no stylesheet or image from elsewhere.
    assert!(!page.contains("http"), "the page names an address:\n{page}");
    for tag in ["<script", "<link", "<img", "src="] {
        assert!(!page.contains(tag), "{tag} in the page");
    }
    // Every done run's provenance, by id.
    let runs: Vec<String> = fs::read_dir(d.path().join("results/runs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(runs.len(), 3);
    for id in &runs {
        assert!(page.contains(&format!("<code>{id}</code>")), "no run {id}");
    }
    assert!(page.contains("lecal: 0."), "{page}");
    // The plots beside the page, as standalone SVG files.
    for f in [
        "scatter.svg",
        "r1c1-vanilla-resnet8-reliability.svg",
        "r1c1-vanilla-resnet8-curves.svg",
        "r2c1-label-smoothing-resnet8-reliability.svg",
        "r2c1-label-smoothing-resnet8-curves.svg",
    ] {
        let svg = fs::read_to_string(dir.join(f)).unwrap();
        assert!(
            svg.starts_with("<svg") && svg.contains("xmlns="),
            "{f}: {svg}"
        );
        assert!(
            page.contains(&format!("href=\"{f}\"")),
            "the page names no {f}"
        );
    }
    assert_eq!(fs::read_dir(&dir).unwrap().count(), 6);
    // Written again: the same bytes.
    let before: Vec<(String, Vec<u8>)> = files(&dir);
    ok(common::lecal(d.path())
        .args(["report", "tiny"])
        .output()
        .unwrap());
    assert!(before == files(&dir), "a second report differs");
    // The Markdown table links to the report.
    ok(common::lecal(d.path())
        .args(["table", "tiny"])
        .output()
        .unwrap());
    let md = fs::read_to_string(d.path().join("results/tables/tiny.md")).unwrap();
    assert!(
        md.ends_with(
            "\nPlots, protocol and provenance: [report/tiny/index.html](../report/tiny/index.html) \
             (`lecal report tiny`).\n"
        ),
        "{md}"
    );
}

fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            (p.display().to_string(), fs::read(&p).unwrap())
        })
        .collect();
    out.sort();
    out
}

#[test]
fn a_table_with_nothing_done_still_renders() {
    let d = tempfile::tempdir().unwrap();
    let r = d.path().join("recipes/tiny");
    fs::create_dir_all(&r).unwrap();
    fs::write(r.join("tiny.table.toml"), TABLE).unwrap();
    fs::write(
        r.join("vanilla.toml"),
        recipe("Vanilla", "vanilla", "[0, 1]"),
    )
    .unwrap();
    ok(common::lecal(d.path())
        .args(["report", "tiny", "--scale", "smoke"])
        .output()
        .unwrap());
    let dir = d.path().join("results/report/tiny.smoke");
    let page = fs::read_to_string(dir.join("index.html")).unwrap();
    for text in [
        "<tr><th>Vanilla</th><td class=\"pending\">pending</td>",
        "<tr><th>Label smoothing</th><td class=\"pending\">—</td>",
        "Pending: 0 of 2 seeds done.",
        "No run of this table is done yet.",
        "No cell has results yet.",
        "<code>lecal report tiny --scale smoke</code>",
    ] {
        assert!(page.contains(text), "no `{text}` in:\n{page}");
    }
    // The scatter still shows the paper's value.
    assert_eq!(page.matches("<svg").count(), 1, "{page}");
    assert!(!page.contains("http"), "{page}");
    // Nothing but the page and the scatter; no results folder for runs appears.
    assert_eq!(fs::read_dir(&dir).unwrap().count(), 2);
    assert!(!d.path().join("results/runs").exists());
}

#[test]
fn a_validation_table_plots_the_validation_images() {
    let d = tempfile::tempdir().unwrap();
    let r = d.path().join("recipes/tiny");
    fs::create_dir_all(&r).unwrap();
    fs::write(
        r.join("tiny.table.toml"),
        "title = \"Tiny\"\nsplit = \"validation\"\nrows = [\"Vanilla\"]\ncolumns = [\"ResNet8\"]\n",
    )
    .unwrap();
    fs::write(
        r.join("vanilla.toml"),
        recipe("Vanilla", "vanilla", "[0]") + "validation = 16\n",
    )
    .unwrap();
    ok(common::lecal(d.path())
        .args(["run", "recipes/tiny", "--device", "cpu"])
        .output()
        .unwrap());
    ok(common::lecal(d.path())
        .args(["report", "tiny"])
        .output()
        .unwrap());
    let dir = d.path().join("results/report/tiny");
    // The 16 held-out images, not the 40 test images, from the stored validation logits.
    let reliability = fs::read_to_string(dir.join("r1c1-vanilla-resnet8-reliability.svg")).unwrap();
    assert!(reliability.contains("16 images of 1 run"), "{reliability}");
    let curves = fs::read_to_string(dir.join("r1c1-vanilla-resnet8-curves.svg")).unwrap();
    assert!(curves.contains("\nvalidation\n"), "{curves}");
    assert!(!curves.contains("\ntest\n"), "{curves}");
}
