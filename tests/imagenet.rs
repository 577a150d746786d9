//! `lecal data check imagenet` through the real binary, on generated ImageNet folders.

mod common;

use lecal::data::imagenet::{synth, LABELS_TXT};

fn folder(dir: &std::path::Path) {
    let l = synth::Layout {
        classes: 3,
        train_per_class: 2,
        val_per_class: 2,
        flat_val: true,
        width: 40,
        height: 32,
        quality: 90,
    };
    synth::write_folder(dir, &l).unwrap();
}

#[test]
fn a_good_folder_passes_the_check() {
    let dir = tempfile::tempdir().unwrap();
    folder(dir.path());
    let out = common::lecal(dir.path())
        .args(["data", "check", "imagenet", "--dir", "."])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("classes       3"), "{text}");
    assert!(text.contains("train images  6"), "{text}");
    assert!(
        text.contains("val images    6 (flat, labelled by"),
        "{text}"
    );
}

#[test]
fn a_truncated_image_and_missing_ground_truth_fail_the_check_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    folder(dir.path());
    let bad = dir.path().join("train/n01000002/n01000002_1.JPEG");
    let bytes = std::fs::read(&bad).unwrap();
    std::fs::write(&bad, &bytes[..bytes.len() * 2 / 3]).unwrap();
    std::fs::remove_file(dir.path().join("val").join(LABELS_TXT)).unwrap();
    let out = common::lecal(dir.path())
        .args(["data", "check", "imagenet", "--dir", "."])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("unreadable images: 1"), "{text}");
    assert!(text.contains("n01000002_1.JPEG: truncated"), "{text}");
    assert!(
        text.contains("no ground truth: provide") && text.contains("LOC_val_solution.csv"),
        "{text}"
    );
    // Another dataset name is refused.
    common::lecal(dir.path())
        .args(["data", "check", "cifar10", "--dir", "."])
        .assert()
        .failure();
}
