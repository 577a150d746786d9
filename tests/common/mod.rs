//! What the binary's integration tests share: a table spec, a recipe that trains in a
//! second, and the command.

use assert_cmd::Command;
use std::path::Path;

pub const TABLE: &str = "title = \"h\"\nrows = [\"Vanilla\", \"KD\"]\ncolumns = [\"ResNet8\"]\n";

pub const GOOD: &str = r#"cell = { table = "h", row = "Vanilla", column = "ResNet8" }
dataset = "synthetic"
synthetic = { train = 64, test = 20, resolution = 8 }
schedule = { epochs = 2, milestones = [1], batch = 32 }
student = "resnet8"
seeds = [0]
"#;

pub fn lecal(dir: &Path) -> Command {
    let mut c = Command::cargo_bin("lecal").unwrap();
    c.current_dir(dir)
        .env_remove("LECAL_RESULTS")
        .env_remove("LECAL_DATA");
    c
}
