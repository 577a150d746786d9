//! `lecal data check imagenet` through the real binary, on generated ImageNet folders:
//! validation ground truth from `val/labels.txt` and from the official devkit's archive.

mod common;

use lecal::data::imagenet::{synth, DEVKIT_ARCHIVE, LABELS_TXT};

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

#[test]
fn the_devkit_archive_labels_a_flat_val_folder() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // The fixture's five leaf classes (IDs 1-5), one training image each.
    let csv = include_str!("fixtures/devkit-meta.csv");
    for row in csv.lines().skip(1).filter(|l| l.ends_with(",0")) {
        let wnid = row.split(',').nth(1).unwrap();
        std::fs::create_dir_all(root.join("train").join(wnid)).unwrap();
        synth::write_jpeg(&root.join("train").join(wnid).join("a.JPEG"), 20, 16, 1, 90).unwrap();
    }
    std::fs::create_dir_all(root.join("val")).unwrap();
    for i in 1..=5 {
        let p = root.join("val").join(format!("ILSVRC2012_val_{i:08}.JPEG"));
        synth::write_jpeg(&p, 20, 16, 10 + i, 90).unwrap();
    }
    let gz = flate2::write::GzEncoder::new(
        std::fs::File::create(root.join(DEVKIT_ARCHIVE)).unwrap(),
        flate2::Compression::default(),
    );
    let mut tar = tar::Builder::new(gz);
    let members: [(&str, &[u8]); 2] = [
        (
            "ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt",
            b"3\n1\n5\n2\n4\n",
        ),
        (
            "ILSVRC2012_devkit_t12/data/meta.mat",
            include_bytes!("fixtures/devkit-meta.mat"),
        ),
    ];
    for (name, bytes) in members {
        let mut h = tar::Header::new_gnu();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, name, bytes).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap();
    let out = common::lecal(root)
        .args(["data", "check", "imagenet", "--dir", "."])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("val images    5 (flat, labelled by ./ILSVRC2012_devkit_t12.tar.gz)"),
        "{text}"
    );
}
