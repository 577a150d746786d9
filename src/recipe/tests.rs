use super::*;
use std::fs;
use tempfile::TempDir;

pub(crate) const TABLE: &str = r#"
title = "T"
rows = ["Vanilla", "LS", "KD"]
columns = ["ResNet8", "ResNet14"]
"#;

pub(crate) const VANILLA: &str = r#"
cell = { table = "t", row = "Vanilla", column = "ResNet8" }
dataset = "synthetic"
synthetic = { train = 64, test = 32, resolution = 8 }
schedule = { epochs = 2, milestones = [1] }
student = "resnet8"
seeds = [0, 1]
method = "vanilla"
"#;

/// A folder with the table spec and the given recipe files.
pub(crate) fn folder(files: &[(&str, &str)]) -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("t.table.toml"), TABLE).unwrap();
    for (name, text) in files {
        let p = dir.path().join(name);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }
    dir
}

fn errors(files: &[(&str, &str)]) -> Vec<RecipeError> {
    let dir = folder(files);
    load(&[dir.path().to_path_buf()]).unwrap_err().0
}

fn one_error(text: &str) -> RecipeError {
    let e = errors(&[("r.toml", text)]);
    assert_eq!(e.len(), 1, "{e:?}");
    e.into_iter().next().unwrap()
}

#[test]
fn a_valid_recipe_loads_with_its_table_and_method() {
    let dir = folder(&[("a/r.toml", VANILLA)]);
    let set = load(&[dir.path().to_path_buf()]).unwrap();
    assert_eq!(set.recipes.len(), 1);
    assert_eq!(set.recipes[0].cell().row, "Vanilla");
    assert_eq!(set.recipes[0].method.label, Some(LabelSource::Hard));
    assert!(set.tables.contains_key("t"));
}

#[test]
fn a_single_recipe_file_finds_its_table_spec_above_it() {
    let dir = folder(&[("deep/er/r.toml", VANILLA)]);
    let set = load(&[dir.path().join("deep/er/r.toml")]).unwrap();
    assert_eq!(set.tables["t"].raw.rows.len(), 3);
}

#[test]
fn unknown_key_names_file_line_column_and_key() {
    let text = VANILLA.replace("seeds = [0, 1]", "seeds = [0, 1]\nlearning_rate = 0.1");
    let e = one_error(&text);
    assert!(e.path.ends_with("r.toml"));
    assert_eq!(e.at.unwrap().0, 8);
    let s = e.to_string();
    assert!(s.contains("learning_rate"), "{s}");
    assert!(s.contains("expected one of"), "{s}");
}

#[test]
fn wrong_type_names_the_key_and_what_was_expected() {
    let e = one_error(&VANILLA.replace("seeds = [0, 1]", "seeds = \"zero\""));
    let s = e.to_string();
    assert_eq!(e.key.as_deref(), Some("seeds"), "{s}");
    assert!(s.contains("invalid type"), "{s}");
    assert_eq!(e.at.unwrap().0, 7);
}

#[test]
fn unknown_model_lists_the_models() {
    let e = one_error(&VANILLA.replace("\"resnet8\"", "\"resnet9\""));
    let s = e.to_string();
    assert!(s.contains("resnet9") && s.contains("resnet110"), "{s}");
    assert_eq!(e.key.as_deref(), Some("student"));
}

#[test]
fn nonpositive_numbers_are_rejected() {
    for (from, to) in [
        ("epochs = 2", "epochs = 0"),
        ("epochs = 2", "epochs = 2, lr = -0.1"),
        ("epochs = 2", "epochs = 2, batch = 0"),
        ("train = 64", "train = 0"),
    ] {
        let e = one_error(&VANILLA.replace(from, to));
        assert!(e.to_string().contains("greater than 0"), "{e}");
    }
}

#[test]
fn empty_and_repeated_seeds_are_rejected() {
    let e = one_error(&VANILLA.replace("seeds = [0, 1]", "seeds = []"));
    assert!(e.to_string().contains("at least one seed"), "{e}");
    let e = one_error(&VANILLA.replace("seeds = [0, 1]", "seeds = [1, 1]"));
    assert!(e.to_string().contains("listed twice"), "{e}");
}

#[test]
fn cells_must_exist_in_the_table_and_be_unique() {
    let e = one_error(&VANILLA.replace("\"Vanilla\"", "\"Mystery\""));
    assert!(e.to_string().contains("row `Mystery`"), "{e}");
    let e = errors(&[("a.toml", VANILLA), ("b.toml", VANILLA)]);
    assert_eq!(e.len(), 1);
    assert!(e[0].to_string().contains("already given by"), "{}", e[0]);
    let e = one_error(&VANILLA.replace("table = \"t\"", "table = \"nope\""));
    assert!(e.to_string().contains("nope.table.toml"), "{e}");
}

#[test]
fn synthetic_options_only_with_the_synthetic_dataset() {
    let e = one_error(&VANILLA.replace("dataset = \"synthetic\"", "dataset = \"cifar10\""));
    assert!(e.to_string().contains("dataset is `cifar10`"), "{e}");
}

#[test]
fn presets_merge_with_inline_overrides_and_local_presets_win() {
    let text = VANILLA.replace(
        "method = \"vanilla\"",
        "method = { preset = \"smoothing\", epsilon = 0.2 }",
    );
    let dir = folder(&[("r.toml", &text)]);
    let set = load(&[dir.path().to_path_buf()]).unwrap();
    assert_eq!(set.recipes[0].method.label, Some(LabelSource::Smoothed));
    assert_eq!(set.recipes[0].method.epsilon.map(|e| e.0), Some(0.2));
    // A preset beside the recipes shadows the built-in one and may build on another.
    let dir = folder(&[
        (
            "r.toml",
            VANILLA.replace("\"vanilla\"", "\"mine\"").as_str(),
        ),
        (
            "methods/mine.toml",
            "preset = \"smoothing\"\nepsilon = 0.3\n",
        ),
    ]);
    let set = load(&[dir.path().to_path_buf()]).unwrap();
    assert_eq!(set.recipes[0].method.epsilon.map(|e| e.0), Some(0.3));
    assert_eq!(set.recipes[0].method.label, Some(LabelSource::Smoothed));
}

#[test]
fn unknown_preset_and_preset_cycles_are_errors() {
    let e = one_error(&VANILLA.replace("\"vanilla\"", "\"nonesuch\""));
    assert!(
        e.to_string().contains("unknown method preset `nonesuch`"),
        "{e}"
    );
    let dir = folder(&[
        ("r.toml", VANILLA.replace("\"vanilla\"", "\"a\"").as_str()),
        ("methods/a.toml", "preset = \"b\"\n"),
        ("methods/b.toml", "preset = \"a\"\n"),
    ]);
    let e = load(&[dir.path().join("r.toml")]).unwrap_err().0;
    assert!(e[0].to_string().contains("cycle: a -> b -> a"), "{}", e[0]);
}

#[test]
fn every_problem_of_a_set_is_reported() {
    let e = errors(&[
        ("a.toml", &VANILLA.replace("seeds = [0, 1]", "seeds = []")),
        ("b.toml", "not toml ="),
        (
            "c.toml",
            &VANILLA
                .replace("\"ResNet8\"", "\"ResNet14\"")
                .replace("resnet8", "resnet1"),
        ),
    ]);
    assert_eq!(e.len(), 3, "{e:?}");
    let text = RecipeErrors(e).to_string();
    assert!(text.contains("3 problems"), "{text}");
    assert!(text.contains("a.toml") && text.contains("b.toml") && text.contains("c.toml"));
}

#[test]
fn table_specs_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.table.toml");
    fs::write(
        &p,
        "title = \"x\"\nrows = [\"a\", \"a\"]\ncolumns = [\"c\"]\n",
    )
    .unwrap();
    let e = load_table(&p).unwrap_err();
    assert!(e.to_string().contains("listed twice"), "{e}");
    assert_eq!(e.at, Some((2, 1)), "{e}");
    fs::write(
        &p,
        "title = \"x\"\nrows = [\"a\"]\ncolumns = [\"c\"]\nprotocol = \"best\"\n",
    )
    .unwrap();
    let e = load_table(&p).unwrap_err();
    assert!(e.to_string().contains("unknown protocol `best`"), "{e}");
    assert_eq!(e.at.unwrap().0, 4);
    fs::write(&p, "title = \"x\"\nrows = [\"a\"]\ncolumns = [\"c\"]\n[paper.a]\nd = { acc = 1.0, ece = 0.1 }\n").unwrap();
    let e = load_table(&p).unwrap_err();
    assert!(e.to_string().contains("column `d`"), "{e}");
    assert_eq!(e.at, Some((5, 1)), "{e}");
    // Names inside values and comments are not where a key is written.
    let spec = "title = \"rows of the paper\"\n# rows = [\"x\"]\nrows = [\"a\", \"a\"]\ncolumns = [\"c\"]\n";
    fs::write(&p, spec).unwrap();
    assert_eq!(load_table(&p).unwrap_err().at, Some((3, 1)));
}

#[test]
fn a_validation_table_carries_no_test_set_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.table.toml");
    let spec = "title = \"x\"\nsplit = \"validation\"\nrows = [\"a\"]\ncolumns = [\"c\"]\n";
    fs::write(&p, spec).unwrap();
    assert!(load_table(&p).is_ok());
    fs::write(
        &p,
        format!("{spec}[paper.a]\nc = {{ acc = 1.0, ece = 0.1 }}\n"),
    )
    .unwrap();
    let e = load_table(&p).unwrap_err();
    assert!(e.to_string().contains("key `paper`"), "{e}");
    assert_eq!(e.at, Some((5, 2)), "{e}");
}

#[test]
fn a_broken_table_spec_inside_the_recipe_folder_is_reported_once() {
    let e = errors(&[
        ("r.toml", VANILLA),
        (
            "t.table.toml",
            "title = \"T\"\nrows = [\"Vanilla\"]\ncolumns = [\"ResNet8\"]\ncited = [\"Nope\"]\n",
        ),
    ]);
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].at, Some((4, 1)), "{}", e[0]);
}

#[test]
fn missing_path_is_an_error() {
    let e = load(&[PathBuf::from("/nonexistent/recipes")]).unwrap_err();
    assert!(e.to_string().contains("no such file or folder"), "{e}");
}

#[test]
fn a_results_folder_among_the_recipes_is_not_read_as_recipes() {
    let dir = folder(&[
        ("r.toml", VANILLA),
        ("res/runs/x/run.toml", "id = \"x\"\n"),
        ("res/runs/x/failed.toml", "epoch = 1\n"),
        ("res/runs/y/run.toml", "id = \"y\"\n"),
        ("res/runs/y/summary.csv", "id\ny\n"),
        // A run in its first epoch: run.toml alone.
        ("res/runs/z/run.toml", "id = \"z\"\n"),
    ]);
    let set = load(&[dir.path().to_path_buf()]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(set.recipes.len(), 1);
    // A recipe that happens to be called run.toml still counts.
    let dir = folder(&[("run.toml", VANILLA)]);
    assert_eq!(load(&[dir.path().to_path_buf()]).unwrap().recipes.len(), 1);
}

#[test]
fn orderings_name_rows_of_the_table_a_comparison_and_a_measure() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.table.toml");
    let head = "title = \"x\"\nrows = [\"a\", \"b\"]\ncolumns = [\"c\"]\n";
    fs::write(
        &p,
        format!(
            "{head}orderings = [[\"a\", \"<\", \"b\", \"ece\"], [\"b\", \">\", \"a\", \"acc\"]]\n"
        ),
    )
    .unwrap();
    let t = load_table(&p).unwrap();
    let o: Vec<&Ordering> = t.raw.orderings.iter().map(|o| o.get_ref()).collect();
    assert_eq!((o[0].below, o[0].measure), (true, Measure::Ece));
    assert_eq!(
        (&*o[1].first, o[1].below, o[1].measure),
        ("b", false, Measure::Acc)
    );
    for (bad, says) in [
        (
            "[[\"a\", \"<\", \"z\", \"ece\"]]",
            "row `z` is not in `rows`",
        ),
        (
            "[[\"a\", \"<\", \"a\", \"ece\"]]",
            "`a` is compared with itself",
        ),
        (
            "[[\"a\", \"<=\", \"b\", \"ece\"]]",
            "unknown comparison `<=`",
        ),
        ("[[\"a\", \"<\", \"b\", \"nll\"]]", "unknown measure `nll`"),
        ("[[\"a\", \"<\", \"b\"]]", "4"),
    ] {
        fs::write(&p, format!("{head}orderings = {bad}\n")).unwrap();
        let e = load_table(&p).unwrap_err();
        assert!(e.to_string().contains(says), "{bad}: {e}");
        assert_eq!(e.at.map(|a| a.0), Some(4), "{bad}: {e}");
    }
}
