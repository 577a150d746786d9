//! The devkit's ground truth: SciPy-written meta.mat files (`scripts/make-devkit-fixture.py`)
//! read as written, hand-built MAT-files for what SciPy never writes (small elements,
//! doubles stored as integers, UTF-16 chars), every truncation and byte flip of the
//! fixtures an error and never a panic, and flat validation folders labelled through an
//! extracted devkit and through its archive.

use super::*;
use crate::data::imagenet::{scan, survey, synth, ValLayout};
use flate2::write::{GzEncoder, ZlibEncoder};
use std::io::Write;

const COMPRESSED: &[u8] = include_bytes!("../../../tests/fixtures/devkit-meta.mat");
const UNCOMPRESSED: &[u8] = include_bytes!("../../../tests/fixtures/devkit-meta-uncompressed.mat");
const EXPECTED: &str = include_str!("../../../tests/fixtures/devkit-meta.csv");

/// The synsets the script wrote, in its order.
fn expected() -> Vec<Synset> {
    EXPECTED
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            Synset {
                id: f[0].parse().unwrap(),
                wnid: f[1].to_string(),
                num_children: f[2].parse().unwrap(),
            }
        })
        .collect()
}

#[test]
fn both_fixtures_read_as_the_script_wrote_them() {
    let want = expected();
    assert_eq!(want.len(), 6);
    assert!(want.iter().any(|s| s.num_children > 0), "a non-leaf synset");
    for bytes in [COMPRESSED, UNCOMPRESSED] {
        assert_eq!(synsets("meta.mat", bytes).unwrap(), want);
    }
    // The orientations differ (1×N, N×1), and the other fields read as written: the
    // variable before `synsets` is a cell, `children` a row of IDs, a gloss not ASCII.
    for (bytes, dims) in [(COMPRESSED, [1, 6]), (UNCOMPRESSED, [6, 1])] {
        let vars = read_mat(bytes).unwrap();
        assert_eq!(vars[0].name, "notes");
        let Value::Cell(notes) = &vars[0].value else {
            panic!("{:?}", vars[0])
        };
        assert_eq!(notes[1].value, Value::Numeric(vec![1.0, 2.0, 3.0]));
        assert_eq!(vars[1].dims, dims);
        let Value::Struct { fields, elements } = &vars[1].value else {
            panic!("{:?}", vars[1])
        };
        let field = |k: usize, f: &str| &elements[k][fields.iter().position(|x| x == f).unwrap()];
        assert_eq!(
            field(5, "children").value,
            Value::Numeric(vec![2.0, 3.0, 4.0, 5.0])
        );
        assert_eq!(field(0, "children").dims, [1, 0]);
        let gloss = Value::Char("a canine (café, naïve: not ASCII)".into());
        assert_eq!(field(5, "gloss").value, gloss);
        assert_eq!(
            field(0, "num_train_images").value,
            Value::Numeric(vec![1300.0])
        );
    }
}

/// A data element in the full format, padded to 8 bytes.
fn el(ty: u32, data: &[u8]) -> Vec<u8> {
    let mut v = [ty.to_le_bytes(), (data.len() as u32).to_le_bytes()].concat();
    v.extend(data);
    v.resize(v.len().div_ceil(8) * 8, 0);
    v
}

/// A data element in the small format: type and size in one word, data in the next.
fn small(ty: u32, data: &[u8]) -> Vec<u8> {
    let mut v = (((data.len() as u32) << 16) | ty).to_le_bytes().to_vec();
    v.extend(data);
    v.resize(8, 0);
    v
}

fn array(class: u8, dims: &[i32], name: &str, parts: &[Vec<u8>]) -> Vec<u8> {
    let dims: Vec<u8> = dims.iter().flat_map(|d| d.to_le_bytes()).collect();
    let mut body = el(6, &[class, 0, 0, 0, 0, 0, 0, 0]);
    body.extend(el(5, &dims));
    body.extend(el(1, name.as_bytes()));
    body.extend(parts.concat());
    el(14, &body)
}

fn header(text: &str, endian: &[u8; 2]) -> Vec<u8> {
    let mut h = format!("{text:<116}").into_bytes();
    h.extend([0u8; 8]);
    h.extend([0x00, 0x01]);
    h.extend(endian);
    h
}

/// `synsets` as MATLAB writes it: doubles in the smallest integer type that holds them,
/// small elements, chars as UTF-16 units; three fields padded to 32-byte names.
fn hand_built() -> Vec<u8> {
    let double = |data: Vec<u8>| array(6, &[1, 1], "", &[data]);
    let chars = |s: &str| {
        let units: Vec<u8> = s.encode_utf16().flat_map(|u| u.to_le_bytes()).collect();
        array(4, &[1, s.len() as i32], "", &[el(4, &units)])
    };
    let names: Vec<u8> = ["ILSVRC2012_ID", "WNID", "num_children"]
        .iter()
        .flat_map(|n| format!("{n:\0<32}").into_bytes())
        .collect();
    let mut parts = vec![small(5, &32i32.to_le_bytes()), el(1, &names)];
    parts.extend([
        double(small(2, &[7])),
        chars("n01440764"),
        double(small(4, &0u16.to_le_bytes())),
        double(small(4, &1001u16.to_le_bytes())),
        chars("n01439121"),
        double(el(5, &3i32.to_le_bytes())),
    ]);
    let mut file = header("MATLAB 5.0 MAT-file, hand-built", b"IM");
    file.extend(array(2, &[2, 1], "synsets", &parts));
    file
}

#[test]
fn small_elements_narrow_types_and_utf16_chars_read_as_matlab_writes_them() {
    let want = vec![
        Synset {
            id: 7,
            wnid: "n01440764".into(),
            num_children: 0,
        },
        Synset {
            id: 1001,
            wnid: "n01439121".into(),
            num_children: 3,
        },
    ];
    let plain = hand_built();
    assert_eq!(synsets("m", &plain).unwrap(), want);
    // The same variable zlib-compressed.
    let mut z = ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(&plain[128..]).unwrap();
    let z = z.finish().unwrap();
    let mut packed = plain[..128].to_vec();
    packed.extend([15u32.to_le_bytes(), (z.len() as u32).to_le_bytes()].concat());
    packed.extend(z);
    assert_eq!(synsets("m", &packed).unwrap(), want);
    // A 2×3 char array is stored column by column.
    let mut file = header("MATLAB 5.0 MAT-file", b"IM");
    file.extend(array(4, &[2, 3], "c", &[el(16, b"adbecf")]));
    assert_eq!(
        read_mat(&file).unwrap()[0].value,
        Value::Char("abc\ndef".into())
    );
}

#[test]
fn other_formats_and_damaged_files_are_errors_naming_the_file() {
    let err = |bytes: &[u8]| format!("{:#}", synsets("data/meta.mat", bytes).unwrap_err());
    let mut big = UNCOMPRESSED.to_vec();
    big[126..128].copy_from_slice(b"MI");
    assert!(
        err(&big).starts_with("data/meta.mat: a big-endian MAT-file"),
        "{}",
        err(&big)
    );
    let e = err(&header("MATLAB 7.3 MAT-file, HDF5", b"IM"));
    assert!(e.contains("7.3 (HDF5)"), "{e}");
    assert!(err(b"hello").contains("not a MAT-file"));
    let e = err(&header("MATLAB 5.0 MAT-file", b"IM"));
    assert_eq!(e, "data/meta.mat: no variable `synsets`");
    // An inner length that disagrees with the array's dimensions: the error says where.
    let mut bad = hand_built();
    let units: Vec<u8> = "n01439121"
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    let at = bad.windows(units.len()).position(|w| w == units).unwrap();
    bad[at - 4] = 16;
    let e = err(&bad);
    let want = "data/meta.mat: the variable at byte 128: `synsets`: element 2, field `WNID`: \
                16 bytes of char data (type 4) for 9 characters";
    assert_eq!(e, want);
    // Every cut of both files, whatever it cuts through.
    for bytes in [COMPRESSED, UNCOMPRESSED, &hand_built()[..]] {
        for n in 0..bytes.len() {
            let e = err(&bytes[..n]);
            assert!(e.starts_with("data/meta.mat: "), "{n}: {e}");
        }
    }
    let e = err(&UNCOMPRESSED[..UNCOMPRESSED.len() - 100]);
    assert!(e.contains("truncated"), "{e}");
    let e = err(&COMPRESSED[..COMPRESSED.len() - 100]);
    assert!(e.contains("truncated"), "{e}");
    // Any byte changed: an error or a reading, never a panic.
    for bytes in [COMPRESSED, UNCOMPRESSED, &hand_built()[..]] {
        for i in 0..bytes.len() {
            for v in [0x00, 0xFF, 0x7F, bytes[i] ^ 0x01, bytes[i] ^ 0x80] {
                let mut b = bytes.to_vec();
                b[i] = v;
                if let Err(e) = synsets("m", &b) {
                    assert!(format!("{e:#}").starts_with("m: "));
                }
            }
        }
    }
}

/// Five leaf classes, one training image each, and six flat validation images; returns
/// their ground truth (IDs 1, 4, 2, 5, 3, 1), which the caller puts in a devkit.
fn flat_folder(root: &Path) -> String {
    for s in expected().iter().filter(|s| s.num_children == 0) {
        let dir = root.join("train").join(&s.wnid);
        std::fs::create_dir_all(&dir).unwrap();
        synth::write_jpeg(&dir.join("a.JPEG"), 16, 12, u64::from(s.id), 80).unwrap();
    }
    std::fs::create_dir_all(root.join("val")).unwrap();
    for i in 1..=6 {
        let p = root.join("val").join(format!("ILSVRC2012_val_{i:08}.JPEG"));
        synth::write_jpeg(&p, 16, 12, 100 + i, 80).unwrap();
    }
    "1\n4\n2\n5\n3\n1\n".into()
}

/// The labels of IDs 1, 4, 2, 5, 3, 1: each wnid's place among the sorted wnids.
fn want_labels() -> Vec<u16> {
    let leaves: Vec<Synset> = expected()
        .into_iter()
        .filter(|s| s.num_children == 0)
        .collect();
    let mut sorted: Vec<&str> = leaves.iter().map(|s| s.wnid.as_str()).collect();
    sorted.sort();
    let label = |id: u32| {
        let w = &leaves.iter().find(|s| s.id == id).unwrap().wnid;
        sorted.iter().position(|x| x == w).unwrap() as u16
    };
    let v: Vec<u16> = [1, 4, 2, 5, 3, 1].into_iter().map(label).collect();
    assert_ne!(v, [0, 3, 1, 4, 2, 0], "ID order is not wnid order");
    v
}

fn write_devkit(root: &Path, gt: &str, meta: &[u8]) -> PathBuf {
    let data = root.join(DEVKIT_DIR).join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join(GROUND_TRUTH), gt).unwrap();
    std::fs::write(data.join(META), meta).unwrap();
    data.join(GROUND_TRUTH)
}

/// The devkit archive with `members` (name, bytes) after a README.
fn write_archive(root: &Path, members: &[(&str, &[u8])]) -> PathBuf {
    let path = root.join(DEVKIT_ARCHIVE);
    let gz = GzEncoder::new(std::fs::File::create(&path).unwrap(), Default::default());
    let mut tar = tar::Builder::new(gz);
    let readme: (&str, &[u8]) = ("ILSVRC2012_devkit_t12/readme.txt", b"devkit");
    for (name, bytes) in std::iter::once(&readme).chain(members) {
        let mut h = tar::Header::new_gnu();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, name, *bytes).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap();
    path
}

fn val_labels(root: &Path) -> Vec<u16> {
    scan(root).unwrap().val.iter().map(|s| s.label).collect()
}

#[test]
fn an_extracted_devkit_labels_a_flat_val_folder() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let gt = flat_folder(root);
    let e = format!("{:#}", scan(root).unwrap_err());
    assert!(e.contains(DEVKIT_ARCHIVE) && e.contains(DEVKIT_DIR), "{e}");
    let txt = write_devkit(root, &gt, COMPRESSED);
    assert_eq!(val_labels(root), want_labels());
    assert_eq!(
        survey(root).val_layout,
        ValLayout::Flat { ground_truth: txt }
    );
    // The extracted folder comes before the archive, whatever is in that.
    std::fs::write(root.join(DEVKIT_ARCHIVE), b"not an archive").unwrap();
    assert_eq!(val_labels(root), want_labels());
}

#[test]
fn the_devkit_archive_labels_a_flat_val_folder_read_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let gt = flat_folder(root);
    let members = [
        ("ILSVRC2012_devkit_t12/data/meta.mat", UNCOMPRESSED),
        (
            "ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt",
            gt.as_bytes(),
        ),
    ];
    let archive = write_archive(root, &members);
    assert_eq!(val_labels(root), want_labels());
    let layout = ValLayout::Flat {
        ground_truth: archive.clone(),
    };
    assert_eq!(survey(root).val_layout, layout);
    assert!(!root.join(DEVKIT_DIR).exists(), "nothing unpacked");
    // Without meta.mat, or cut short: errors naming the archive.
    write_archive(root, &members[1..]);
    let e = format!("{:#}", scan(root).unwrap_err());
    assert!(
        e.contains(&format!(
            "{}: no ILSVRC2012_devkit_t12/data/meta.mat",
            archive.display()
        )),
        "{e}"
    );
    write_archive(root, &members);
    let bytes = std::fs::read(&archive).unwrap();
    std::fs::write(&archive, &bytes[..bytes.len() / 2]).unwrap();
    let e = format!("{:#}", scan(root).unwrap_err());
    assert!(e.contains(&format!("{}: ", archive.display())), "{e}");
    // A damaged meta.mat in it is named as the archive's member.
    let cut = [(members[0].0, &UNCOMPRESSED[..1000]), members[1]];
    write_archive(root, &cut);
    let e = format!("{:#}", scan(root).unwrap_err());
    let name = format!(
        "{}: ILSVRC2012_devkit_t12/data/meta.mat: the variable at byte ",
        archive.display()
    );
    assert!(e.contains(&name) && e.contains("truncated"), "{e}");
}

#[test]
fn bad_lines_unknown_ids_and_a_cut_meta_mat_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    flat_folder(root);
    let problem = |gt: &str, meta: &[u8]| {
        write_devkit(root, gt, meta);
        survey(root).problems.join("\n")
    };
    let txt = root.join(DEVKIT_DIR).join("data").join(GROUND_TRUTH);
    let meta = root.join(DEVKIT_DIR).join("data").join(META);
    let p = problem("1\n4\nx2\n5\n3\n1\n", COMPRESSED);
    let want = format!(
        "{}:3: expected an ILSVRC2012_ID (1 to 1000), found `x2`",
        txt.display()
    );
    assert!(p.contains(&want), "{p}");
    let p = problem("1\n4\n2\n5\n999\n1\n", COMPRESSED);
    let want = format!(
        "{}:5: ILSVRC2012_ID 999 is not in {}",
        txt.display(),
        meta.display()
    );
    assert!(p.contains(&want), "{p}");
    let p = problem("1\n4\n2\n5\n1001\n1\n", COMPRESSED);
    assert!(
        p.contains(":5: ILSVRC2012_ID 1001 is n02084071") && p.contains("not a class"),
        "{p}"
    );
    let p = problem("1\n4\n2\n5\n3\n1\n", &COMPRESSED[..500]);
    // The cut is in the second variable (`notes` is first).
    let want = format!("{}: the variable at byte 257: truncated", meta.display());
    assert!(p.starts_with(&want), "{p}");
    // One line more than there are images: the seventh is missing.
    let p = problem("1\n4\n2\n5\n3\n1\n2\n", UNCOMPRESSED);
    let want = format!("{} names 1 images missing", txt.display());
    assert!(
        p.contains(&want) && p.contains("ILSVRC2012_val_00000007.JPEG"),
        "{p}"
    );
    // CRLF line ends and a trailing blank line are fine.
    let p = problem("1\r\n4\r\n2\r\n5\r\n3\r\n1\r\n\r\n", UNCOMPRESSED);
    assert_eq!(p, "");
    assert_eq!(val_labels(root), want_labels());
}
