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

/// Trains the recipes in `recipes/<name>` at smoke scale on the data in `data/`, and
/// returns the Markdown of table `name`.
fn smoke_table(dir: &Path, name: &str) -> String {
    lecal(dir)
        .args(["run", &format!("recipes/{name}"), "--device", "cpu"])
        .args(["--scale", "smoke", "--data-dir", "data"])
        .assert()
        .success();
    let out = lecal(dir)
        .args(["table", name, "--scale", "smoke"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    String::from_utf8(out).unwrap()
}

/// The cells of `row` in a Markdown table, its title first.
fn cells(table: &str, row: &str) -> Vec<String> {
    let line = table.lines().find(|l| l.starts_with(&format!("| {row} |")));
    let line = line.unwrap_or_else(|| panic!("no row {row} in {table}"));
    line.split('|')
        .map(|c| c.trim().to_string())
        .filter(|c| !c.is_empty())
        .collect()
}

/// The numbers of a cell ("acc / ECE" or "top-1 / top-5 / ECE"), bold marks removed;
/// `None` when the cell holds anything else.
fn numbers(cell: &str) -> Option<Vec<f64>> {
    cell.split(" / ")
        .map(|v| v.trim_matches('*').parse().ok())
        .collect()
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
    let table = smoke_table(d.path(), "s");
    // Measured "accuracy / ECE" where a recipe asks for a cell, a dash where none does.
    let (v, k) = (cells(&table, "Vanilla"), cells(&table, "KD"));
    for c in [&v[1], &v[2], &k[1]] {
        assert_eq!(numbers(c).map(|n| n.len()), Some(2), "{table}");
    }
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

#[test]
fn imagenet_smoke_runs_through_plan_run_and_table_with_top5() {
    use lecal::data::imagenet::synth;
    let d = tempfile::tempdir().unwrap();
    // ImageNet's 1000 classes, one small JPEG each for training and for validation (flat,
    // labelled by val/labels.txt); smoke scale reads the first 512 and 256 of them.
    let layout = synth::Layout {
        classes: 1000,
        train_per_class: 1,
        val_per_class: 1,
        flat_val: true,
        width: 48,
        height: 40,
        quality: 85,
    };
    synth::write_folder(&d.path().join("data/imagenet"), &layout).unwrap();
    let r = d.path().join("recipes/i");
    fs::create_dir_all(&r).unwrap();
    fs::write(
        r.join("i.table.toml"),
        "title = \"i\"\nrows = [\"Vanilla\", \"SL\"]\ncolumns = [\"ResNet18\"]\ntop5 = true\n",
    )
    .unwrap();
    let cell = |row: &str, method: &str| {
        format!(
            "cell = {{ table = \"i\", row = \"{row}\", column = \"ResNet18\" }}\ndataset = \"imagenet\"\nresolution = 16\nschedule = {{ base = \"imagenet\", epochs = 1, milestones = [], batch = 64 }}\nstudent = \"resnet18\"\nseeds = [0]\nmethod = \"{method}\"\n"
        )
    };
    fs::write(r.join("v.toml"), cell("Vanilla", "vanilla")).unwrap();
    let sl = cell("SL", "sl") + "teachers = [ { model = \"resnet18\", seeds = [0] } ]\n";
    fs::write(r.join("sl.toml"), sl).unwrap();
    let table = smoke_table(d.path(), "i");
    assert!(
        table.contains("Top-1 accuracy (%) / top-5 accuracy (%) / ECE"),
        "{table}"
    );
    for row in ["Vanilla", "SL"] {
        let n = numbers(&cells(&table, row)[1]).unwrap_or_default();
        assert_eq!(n.len(), 3, "top-1 / top-5 / ECE: {table}");
        assert!(n[1] >= n[0], "top-5 is at least top-1: {table}");
    }
    for run in fs::read_dir(d.path().join("results/runs")).unwrap() {
        let run = run.unwrap().path();
        let spec = fs::read_to_string(run.join("run.toml")).unwrap();
        assert!(spec.contains("[spec.transform.resized_crop]"), "{spec}");
        assert!(spec.contains("size = 16"), "{spec}");
        let summary = fs::read_to_string(run.join("summary.csv")).unwrap();
        assert!(
            summary.lines().next().unwrap().ends_with(",top5"),
            "{summary}"
        );
    }
}

#[test]
fn imagenet_without_its_folder_says_where_to_get_it() {
    let d = tempfile::tempdir().unwrap();
    let r = d.path().join("recipes/i");
    fs::create_dir_all(&r).unwrap();
    fs::write(
        r.join("i.table.toml"),
        "title = \"i\"\nrows = [\"Vanilla\"]\ncolumns = [\"ResNet18\"]\n",
    )
    .unwrap();
    fs::write(
        r.join("v.toml"),
        "cell = { table = \"i\", row = \"Vanilla\", column = \"ResNet18\" }\ndataset = \"imagenet\"\nstudent = \"resnet18\"\nseeds = [0]\n",
    )
    .unwrap();
    lecal(d.path())
        .args([
            "run",
            "recipes/i",
            "--device",
            "cpu",
            "--data-dir",
            "nowhere",
        ])
        .assert()
        .failure()
        .stderr(predicates::str::contains("ImageNet data not found"))
        .stderr(predicates::str::contains("lecal data check imagenet"));
    assert!(!d.path().join("results").exists());
}
