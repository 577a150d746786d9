//! Fuzzing the recipe parser and planner: valid recipes, table specs and presets, mutated
//! (tokens spliced in, spans cut or repeated, bytes changed, files cut short), must load
//! and plan or fail with an error; never panic. A bounded pass runs in `make test`;
//! `make fuzz` runs a long one (`LECAL_FUZZ_CASES`).

use lecal::plan::{build, Scale};
use lecal::recipe::load;
use proptest::prelude::*;
use std::fs;

const TABLE: &str = r#"title = "f"
rows = ["Vanilla", "KD", "SL", "CRD"]
columns = ["ResNet8", "ResNet14"]
cited = ["CRD"]
note = "fuzz"
[paper.Vanilla]
ResNet8 = { acc = 50.0, ece = 0.1, acc_std = 0.5 }
"#;

const PRESET: &str = "preset = \"en-sl\"\ntemperature = 2.0\nhard_weight = 0.5\n";

const RECIPES: &[&str] = &[
    r#"cell = { table = "f", row = "Vanilla", column = "ResNet8" }
dataset = "synthetic"
synthetic = { train = 64, test = 20, resolution = 8, data_seed = 3 }
schedule = { epochs = 2, milestones = [1], batch = 32 }
student = "resnet8"
seeds = [0, 1]
"#,
    r#"cell = { table = "f", row = "KD", column = "ResNet14" }
dataset = "cifar100"
schedule = "long"
student = "resnet14"
seeds = [0]
method = { preset = "kd", temperature = 4.0, kl_reduction = "batch-mean" }
teachers = [ { model = "resnet110", seeds = [0, 1], schedule = "default" } ]
augment = { kind = "cutmix", alpha = 1.0 }
"#,
    r#"cell = { table = "f", row = "SL", column = "ResNet8" }
dataset = "cifar10"
normalize = { mean = [0.5, 0.5, 0.5], std = [0.25, 0.25, 0.25] }
schedule = { base = "default", epochs = 9, milestones = [4, 5], lr = 0.05, momentum = 0.9, weight_decay = 0.0005 }
student = "resnet8"
seeds = [2]
method = "mine"
teachers = [ { model = "resnet8", checkpoint = "t.safetensors" } ]
augment = { kind = "ricap", beta = 0.3 }
"#,
];

const TOKENS: &[&str] = &[
    "0",
    "1",
    "2",
    "0.5",
    "[0]",
    "[1, 1]",
    "[3, 2]",
    "-1",
    "1e308",
    "-0.0",
    "nan",
    "inf",
    "18446744073709551615",
    "99999999999999999999",
    "4294967296",
    "\"\"",
    "\"resnet110\"",
    "\"stl10\"",
    "\"imagenet\"",
    "\"vanilla\"",
    "\"f\"",
    "[]",
    "[[]]",
    "{}",
    "[",
    "]",
    "{",
    "}",
    "=",
    ",",
    "\"",
    "'",
    "\n",
    "#",
    "[paper]",
    "[[x]]",
    "\u{0}",
    "é",
    "\u{202e}",
    "true",
    "1979-05-27T07:32:00Z",
    "epochs",
    "milestones",
    "batch",
    "resolution",
    "train",
    "test",
    "seeds",
    "teachers",
    "preset",
    "temperature",
    "checkpoint",
    "cell",
];

/// Well-formed TOML values of the kinds recipes use, many of them out of range.
const VALUES: &[&str] = &[
    "0",
    "1",
    "2",
    "-1",
    "0.0",
    "0.5",
    "-0.1",
    "1e308",
    "1e-320",
    "nan",
    "inf",
    "-inf",
    "18446744073709551615",
    "9007199254740993",
    "\"\"",
    "\"resnet110\"",
    "\"resnet8\"",
    "\"vanilla\"",
    "\"kd\"",
    "\"long\"",
    "\"imagenet\"",
    "\"stl10\"",
    "\"synthetic\"",
    "\"mixup\"",
    "\"batch-mean\"",
    "[]",
    "[0]",
    "[0, 0]",
    "[5, 1]",
    "[1000000]",
    "[\"a\"]",
    "{}",
    "{ kind = \"cutmix\" }",
    "{ model = \"resnet8\" }",
    "true",
];

#[derive(Debug, Clone)]
enum Mutation {
    /// Put `TOKENS[t]` at a position, replacing `len` bytes.
    Splice {
        at: usize,
        len: usize,
        t: usize,
    },
    Cut {
        at: usize,
        len: usize,
    },
    Repeat {
        at: usize,
        len: usize,
    },
    Byte {
        at: usize,
        value: u8,
    },
    Truncate {
        at: usize,
    },
    /// Replace the value after the `nth` `= ` (up to the next `,`, `}` or newline) with
    /// `VALUES[t]`: mostly well-formed TOML with odd values, to reach validation.
    Value {
        nth: usize,
        t: usize,
    },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let at = any::<usize>();
    prop_oneof![
        4 => (at, 0..8usize, 0..TOKENS.len()).prop_map(|(at, len, t)| Mutation::Splice { at, len, t }),
        1 => (at, 1..40usize).prop_map(|(at, len)| Mutation::Cut { at, len }),
        1 => (at, 1..40usize).prop_map(|(at, len)| Mutation::Repeat { at, len }),
        2 => (at, any::<u8>()).prop_map(|(at, value)| Mutation::Byte { at, value }),
        1 => at.prop_map(|at| Mutation::Truncate { at }),
        6 => (any::<usize>(), 0..VALUES.len()).prop_map(|(nth, t)| Mutation::Value { nth, t }),
    ]
}

fn apply(text: &str, ms: &[Mutation]) -> Vec<u8> {
    let mut b = text.as_bytes().to_vec();
    for m in ms {
        let n = b.len().max(1);
        match *m {
            Mutation::Splice { at, len, t } => {
                let at = at % n;
                let end = (at + len).min(b.len());
                b.splice(at.min(b.len())..end, TOKENS[t].bytes());
            }
            Mutation::Cut { at, len } => {
                let at = (at % n).min(b.len());
                let end = (at + len).min(b.len());
                b.drain(at..end);
            }
            Mutation::Repeat { at, len } => {
                let at = (at % n).min(b.len());
                let end = (at + len).min(b.len());
                let piece = b[at..end].to_vec();
                b.splice(at..at, piece);
            }
            Mutation::Byte { at, value } => {
                if !b.is_empty() {
                    let i = at % b.len();
                    b[i] = value;
                }
            }
            Mutation::Truncate { at } => b.truncate(at % n),
            Mutation::Value { nth, t } => {
                let starts: Vec<usize> = b
                    .windows(2)
                    .enumerate()
                    .filter(|(_, w)| w == b"= ")
                    .map(|(i, _)| i + 2)
                    .collect();
                if starts.is_empty() {
                    continue;
                }
                let at = starts[nth % starts.len()];
                let end = b[at..]
                    .iter()
                    .position(|c| matches!(c, b',' | b'}' | b'\n'))
                    .map_or(b.len(), |p| at + p);
                b.splice(at..end, VALUES[t].bytes());
            }
        }
    }
    b
}

fn cases() -> u32 {
    std::env::var("LECAL_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(400)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Mutates one file of a valid set (a recipe, the table spec or a preset) and loads
    /// and plans the set at every scale: an error is fine, a panic is not.
    #[test]
    fn mutated_recipe_sets_never_panic(
        which in 0..RECIPES.len() + 2,
        ms in proptest::collection::vec(mutation(), 1..3),
    ) {
        let d = tempfile::tempdir().unwrap();
        let r = d.path().join("f");
        fs::create_dir_all(r.join("methods")).unwrap();
        fs::write(r.join("t.safetensors"), b"weights").unwrap();
        let mut files: Vec<(String, &str)> = vec![
            ("f.table.toml".into(), TABLE),
            ("methods/mine.toml".into(), PRESET),
        ];
        for (i, text) in RECIPES.iter().enumerate() {
            files.push((format!("r{i}.toml"), text));
        }
        let target = (which + 2) % files.len();
        for (i, (name, text)) in files.iter().enumerate() {
            let bytes = if i == target { apply(text, &ms) } else { text.as_bytes().to_vec() };
            fs::write(r.join(name), bytes).unwrap();
        }
        if let Ok(set) = load(std::slice::from_ref(&r)) {
            for scale in ["full", "quick", "smoke"] {
                if let Ok(plan) = build(&set, &Scale::named(scale).unwrap()) {
                    let _ = plan.total_epochs();
                }
            }
        }
    }
}

/// The unmutated corpus is valid, so mutations start from sets that load.
#[test]
fn the_fuzz_corpus_loads_and_plans() {
    let d = tempfile::tempdir().unwrap();
    let r = d.path().join("f");
    fs::create_dir_all(r.join("methods")).unwrap();
    fs::write(r.join("f.table.toml"), TABLE).unwrap();
    fs::write(r.join("methods/mine.toml"), PRESET).unwrap();
    // The checkpoint teacher's file: planning reads its bytes, not its tensors.
    fs::write(r.join("t.safetensors"), b"weights").unwrap();
    for (i, text) in RECIPES.iter().enumerate() {
        fs::write(r.join(format!("r{i}.toml")), text).unwrap();
    }
    let set = load(&[r]).unwrap_or_else(|e| panic!("{e}"));
    let plan = build(&set, &Scale::named("full").unwrap()).unwrap_or_else(|e| panic!("{e}"));
    assert!(plan.runs.len() >= 6, "{}", plan.runs.len());
}
