//! The paper's other datasets through plan → run → table at smoke scale, from files
//! generated here in their official formats.

mod common;

use common::lecal;
use std::fs;
use std::io::Write;
use std::path::Path;

const STL_PLANE: usize = 96 * 96;
const STL_IMAGE: usize = 3 * STL_PLANE;

/// Writes `stl10_binary/` with the official file sizes. The first `written` images of a
/// split hold a class-dependent pattern (column-major planes, as the official files); the
/// rest of each image file is left sparse (zeros), which the smoke scale never reads.
fn write_stl10(data: &Path, written: [usize; 2]) {
    let dir = data.join("stl10_binary");
    fs::create_dir_all(&dir).unwrap();
    for ((x, y, n), w) in [
        ("train_X.bin", "train_y.bin", 5_000),
        ("test_X.bin", "test_y.bin", 8_000),
    ]
    .into_iter()
    .zip(written)
    {
        let labels: Vec<u8> = (0..n).map(|i| (i * 7 % 10) as u8 + 1).collect();
        fs::write(dir.join(y), &labels).unwrap();
        let mut f = fs::File::create(dir.join(x)).unwrap();
        let mut img = vec![0u8; STL_IMAGE];
        for (i, &label) in labels.iter().take(w).enumerate() {
            let class = label as usize - 1;
            for (p, v) in img.iter_mut().enumerate() {
                let (c, col, row) = (p / STL_PLANE, p % STL_PLANE / 96, p % 96);
                let stripe = (row / (4 + class) + col / 8 + c) % 2;
                *v = (40 + 150 * stripe + (i * 13 + p) % 31) as u8;
            }
            f.write_all(&img).unwrap();
        }
        f.set_len((n * STL_IMAGE) as u64).unwrap();
    }
}

fn recipe(row: &str, column: &str, resolution: Option<usize>, method: &str) -> String {
    let mut r = format!(
        "cell = {{ table = \"s\", row = \"{row}\", column = \"{column}\" }}\ndataset = \"stl10\"\nschedule = {{ epochs = 1, milestones = [] }}\nstudent = \"resnet8\"\nseeds = [0]\nmethod = \"{method}\"\n"
    );
    if let Some(px) = resolution {
        r += &format!("resolution = {px}\n");
    }
    if method == "kd" {
        r += "teachers = [ { model = \"resnet8\", seeds = [0] } ]\n";
    }
    r
}

#[test]
fn stl10_smoke_runs_through_plan_run_and_table() {
    let d = tempfile::tempdir().unwrap();
    write_stl10(&d.path().join("data"), [520, 260]);
    let r = d.path().join("recipes/s");
    fs::create_dir_all(&r).unwrap();
    fs::write(
        r.join("s.table.toml"),
        "title = \"s\"\nrows = [\"Vanilla\", \"KD\"]\ncolumns = [\"32 px\", \"96 px\"]\n",
    )
    .unwrap();
    fs::write(
        r.join("v32.toml"),
        recipe("Vanilla", "32 px", Some(32), "vanilla"),
    )
    .unwrap();
    fs::write(r.join("kd32.toml"), recipe("KD", "32 px", Some(32), "kd")).unwrap();
    fs::write(
        r.join("v96.toml"),
        recipe("Vanilla", "96 px", None, "vanilla"),
    )
    .unwrap();
    let args = ["--scale", "smoke", "--data-dir", "data"];
    lecal(d.path())
        .args(["run", "recipes/s", "--device", "cpu"])
        .args(args)
        .assert()
        .success();
    let out = lecal(d.path())
        .args(["table", "s", "--scale", "smoke"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let table = String::from_utf8(out).unwrap();
    let cells = |row: &str| -> Vec<String> {
        let line = table.lines().find(|l| l.starts_with(&format!("| {row} |")));
        let line = line.unwrap_or_else(|| panic!("no row {row} in {table}"));
        line.split('|')
            .map(|c| c.trim().to_string())
            .filter(|c| !c.is_empty())
            .collect()
    };
    // Measured "accuracy / ECE" where a recipe asks for a cell, a dash where none does.
    let measured = |c: &str| {
        c.split(" / ")
            .all(|v| v.trim_matches('*').parse::<f64>().is_ok())
    };
    let (v, k) = (cells("Vanilla"), cells("KD"));
    assert!(
        measured(&v[1]) && measured(&v[2]) && measured(&k[1]),
        "{table}"
    );
    assert_eq!(k[2], "—", "{table}");
    // The spec of each run records the side it trained at and the crop padding that goes
    // with it; the runs at 32 px and 96 px are distinct.
    let mut sides = Vec::new();
    for run in fs::read_dir(d.path().join("results/runs")).unwrap() {
        let run = run.unwrap().path();
        assert!(
            run.join("done.toml").exists(),
            "{} is not done",
            run.display()
        );
        let spec = fs::read_to_string(run.join("run.toml")).unwrap();
        let side = if spec.contains("resolution = 96") {
            96
        } else {
            32
        };
        assert!(
            spec.contains(&format!("crop_padding = {}", side / 8)),
            "{spec}"
        );
        assert!(spec.contains("name = \"stl10\""), "{spec}");
        sides.push(side);
    }
    sides.sort_unstable();
    assert_eq!(
        sides,
        vec![32, 32, 96],
        "teacher and KD student at 32 px, one run at 96"
    );
}
