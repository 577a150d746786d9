//! The ImageNet pipeline on generated JPEG folders: scanning both validation layouts,
//! the transforms' geometry, the resize against Pillow's numbers, decoding grayscale and
//! CMYK files, the loader's order and determinism, errors that name the file.

use super::*;
use std::path::Path;
use std::sync::Arc;

fn layout(classes: usize, train: usize, val: usize, flat_val: bool) -> synth::Layout {
    synth::Layout {
        classes,
        train_per_class: train,
        val_per_class: val,
        flat_val,
        width: 48,
        height: 40,
        quality: 90,
    }
}

/// The source image of `scripts/make-resize-fixture.py`.
fn fixture_source() -> Rgb {
    let (w, h) = (41, 29);
    let mut pixels = Vec::new();
    for y in 0..h {
        for x in 0..w {
            for c in 0..3 {
                pixels.push(((x * 37 + y * 91 + c * 53 + (x * y % 17) * 7) % 256) as u8);
            }
        }
    }
    Rgb {
        width: w,
        height: h,
        pixels,
    }
}

#[test]
fn resize_equals_pillow_value_for_value() {
    let src = fixture_source();
    let csv = include_str!("../../../tests/fixtures/pil_resize.csv");
    let mut cases = 0;
    for line in csv.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let n: Vec<usize> = f[..10].iter().map(|v| v.parse().unwrap()).collect();
        let want: Vec<u8> = f[10].split(' ').map(|v| v.parse().unwrap()).collect();
        let got = resize(
            &src,
            (n[0], n[1], n[2], n[3]),
            n[4],
            n[5],
            (n[6], n[7], n[8], n[9]),
        );
        assert_eq!((got.width, got.height), (n[8], n[9]));
        assert_eq!(got.pixels, want, "case {line:.40}");
        cases += 1;
    }
    assert_eq!(cases, 8);
}

#[test]
fn random_resized_crops_stay_inside_and_are_fixed_by_their_key() {
    let mut differ = 0;
    for (w, h) in [(500, 375), (333, 500), (64, 64), (37, 91)] {
        for pos in 0..200 {
            let c = random_crop(w, h, 7, 3, pos);
            assert!(c.width > 0 && c.height > 0);
            assert!(
                c.left + c.width <= w && c.top + c.height <= h,
                "{c:?} in {w}x{h}"
            );
            let frac = (c.width * c.height) as f64 / (w * h) as f64;
            // Rounding moves the area a little off [0.08, 1]; a fallback is the centre.
            assert!((0.06..=1.0).contains(&frac), "{c:?}: {frac}");
            assert_eq!(c, random_crop(w, h, 7, 3, pos));
            differ += usize::from(c != random_crop(w, h, 7, 4, pos));
        }
    }
    assert!(
        differ > 790,
        "another epoch gives other crops ({differ} of 800)"
    );
    // Flips are fair coins.
    let flips = (0..2000)
        .filter(|&p| random_crop(100, 100, 1, 1, p).flip)
        .count();
    assert!((900..1100).contains(&flips), "{flips}");
}

#[test]
fn a_crop_that_never_fits_falls_back_to_the_ratio_clamped_centre() {
    // 1000×10: every drawn box is taller than 10 px.
    let c = random_crop(1000, 10, 0, 0, 0);
    let want = (493, 0, 13, 10); // width round(10·4/3) = 13, centred
    assert_eq!((c.left, c.top, c.width, c.height), want);
    let c = random_crop(10, 1000, 0, 0, 0);
    assert_eq!((c.left, c.top, c.width, c.height), (0, 493, 10, 13));
}

#[test]
fn evaluation_geometry_follows_torchvision() {
    assert_eq!(resized_size(500, 375, 256), (341, 256));
    assert_eq!(resized_size(375, 500, 256), (256, 341));
    assert_eq!(resized_size(300, 300, 256), (256, 256));
    // round((341 - 224) / 2) = round(58.5) = 58 in Python (ties to even).
    assert_eq!(centre_offset(341, 224), 58);
    assert_eq!(centre_offset(227, 224), 2);
    assert_eq!(centre_offset(256, 224), 16);
    let t = Transform::eval(32, 36);
    let img = Rgb {
        width: 90,
        height: 60,
        pixels: synth::pixels(90, 60, 1),
    };
    let (c, flip) = t.crop(&img, 0);
    assert!(!flip);
    assert_eq!((c.width, c.height), (32, 32));
    // The same as resizing the whole image to 54×36 and cutting out the centre.
    let full = resize(&img, (0, 0, 90, 60), 54, 36, (0, 0, 54, 36));
    let centre = resize(&full, (11, 2, 32, 32), 32, 32, (0, 0, 32, 32));
    assert_eq!(c, centre);
}

#[test]
fn normalising_maps_bytes_and_flips_mirror_rows() {
    let img = Rgb {
        width: 3,
        height: 2,
        pixels: (0..18).map(|v| v * 10).collect(),
    };
    let mut t = Transform::eval(3, 3);
    t.mean = [0.0; 3];
    t.std = [1.0 / 255.0; 3]; // normalised value = byte value
    let (mut plain, mut flipped) = (vec![0f32; 18], vec![0f32; 18]);
    t.normalise(&img, false, &mut plain);
    t.normalise(&img, true, &mut flipped);
    for c in 0..3 {
        for y in 0..2 {
            for x in 0..3 {
                let byte = img.pixels[(y * 3 + x) * 3 + c] as f32;
                assert!((plain[c * 6 + y * 3 + x] - byte).abs() < 1e-3);
                assert_eq!(flipped[c * 6 + y * 3 + x], plain[c * 6 + y * 3 + 2 - x]);
            }
        }
    }
    // ImageNet's constants: byte 0 of the red channel.
    let mut out = vec![0f32; 18];
    Transform::eval(3, 3).normalise(&img, false, &mut out);
    assert!((out[0] - (-0.485 / 0.229)).abs() < 1e-6);
}

#[test]
fn grayscale_and_cmyk_jpegs_decode_to_rgb() {
    use jpeg_encoder::{ColorType, Encoder};
    let (w, h) = (24u16, 16u16);
    let gray: Vec<u8> = (0..w as usize * h as usize)
        .map(|i| (i % 200) as u8 + 20)
        .collect();
    let mut bytes = Vec::new();
    Encoder::new(&mut bytes, 100)
        .encode(&gray, w, h, ColorType::Luma)
        .unwrap();
    let img = decode_jpeg(&bytes).unwrap();
    assert_eq!((img.width, img.height), (24, 16));
    for (i, p) in img.pixels.chunks(3).enumerate() {
        assert!(p[0] == p[1] && p[1] == p[2], "grey pixel {i}: {p:?}");
        assert!((i32::from(p[0]) - i32::from(gray[i])).abs() <= 3, "{i}");
    }
    // Pure cyan in CMYK (C = 255, others 0) is RGB (0, 255, 255).
    let cmyk: Vec<u8> = (0..w as usize * h as usize)
        .flat_map(|_| [255, 0, 0, 0])
        .collect();
    let mut bytes = Vec::new();
    Encoder::new(&mut bytes, 100)
        .encode(&cmyk, w, h, ColorType::Cmyk)
        .unwrap();
    let img = decode_jpeg(&bytes).unwrap();
    assert_eq!(img.pixels.len(), 24 * 16 * 3);
    for p in img.pixels.chunks(3) {
        assert!(p[0] < 8 && p[1] > 247 && p[2] > 247, "{p:?}");
    }
}

#[test]
fn truncated_and_foreign_files_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a.JPEG");
    synth::write_jpeg(&p, 60, 50, 3, 90).unwrap();
    assert!(load(&p).is_ok());
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    let e = format!("{:#}", load(&p).unwrap_err());
    assert!(e.contains("a.JPEG") && e.contains("truncated"), "{e}");
    std::fs::write(&p, b"not an image at all").unwrap();
    let e = format!("{:#}", load(&p).unwrap_err());
    assert!(e.contains("a.JPEG"), "{e}");
}

#[test]
fn bytes_after_the_image_are_fine_and_a_thumbnail_does_not_hide_a_cut() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("b.JPEG");
    synth::write_jpeg(&p, 60, 50, 4, 90).unwrap();
    let good = std::fs::read(&p).unwrap();
    let want = load(&p).unwrap();
    // Trailing bytes after the end-of-image marker, as some cameras write.
    std::fs::write(&p, [&good[..], &[0u8; 300][..]].concat()).unwrap();
    assert_eq!(load(&p).unwrap(), want);
    // An APP1 segment holding a thumbnail's markers (its own scan and end of image) in
    // front of the image: a cut in the image's scan is still found.
    let thumb = [0xFF, 0xD8, 0xFF, 0xDA, 0x00, 0x02, 1, 2, 3, 0xFF, 0xD9];
    let mut app1 = vec![0xFF, 0xE1];
    app1.extend(((thumb.len() + 2) as u16).to_be_bytes());
    app1.extend(thumb);
    let with_thumb = [&good[..2], &app1[..], &good[2..]].concat();
    std::fs::write(&p, &with_thumb).unwrap();
    assert_eq!(load(&p).unwrap(), want);
    std::fs::write(&p, &with_thumb[..with_thumb.len() - 40]).unwrap();
    let e = format!("{:#}", load(&p).unwrap_err());
    assert!(e.contains("b.JPEG") && e.contains("truncated"), "{e}");
}

#[test]
fn a_png_named_jpeg_is_read_by_its_content() {
    use zune_core::bit_depth::BitDepth;
    use zune_core::colorspace::ColorSpace;
    use zune_core::options::EncoderOptions;
    let (w, h) = (7usize, 5usize);
    let rgba: Vec<u8> = (0..w * h * 4).map(|i| (i * 37 % 251) as u8).collect();
    let mut bytes = Vec::new();
    let options = EncoderOptions::new(w, h, ColorSpace::RGBA, BitDepth::Eight);
    zune_png::PngEncoder::new(&rgba, options)
        .encode(&mut bytes)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("n02105855_2933.JPEG");
    std::fs::write(&p, &bytes).unwrap();
    let img = load(&p).unwrap();
    assert_eq!((img.width, img.height), (w, h));
    let rgb: Vec<u8> = rgba.chunks(4).flat_map(|p| [p[0], p[1], p[2]]).collect();
    assert_eq!(img.pixels, rgb, "alpha dropped, colours kept");
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    let e = format!("{:#}", load(&p).unwrap_err());
    assert!(
        e.contains("n02105855_2933.JPEG") && e.contains("PNG"),
        "{e}"
    );
}

fn labels_of(s: &[Sample], root: &Path) -> Vec<(String, u16)> {
    s.iter()
        .map(|x| {
            let rel = x.path.strip_prefix(root).unwrap();
            (rel.to_string_lossy().to_string(), x.label)
        })
        .collect()
}

#[test]
fn scanning_finds_sorted_classes_and_both_validation_layouts() {
    for flat in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        synth::write_folder(dir.path(), &layout(3, 2, 2, flat)).unwrap();
        let d = scan(dir.path()).unwrap();
        assert_eq!(d.classes, (0..3).map(synth::wnid).collect::<Vec<_>>());
        let train = labels_of(&d.train, dir.path());
        assert_eq!(train.len(), 6);
        assert_eq!(train[0], ("train/n01000000/n01000000_0.JPEG".into(), 0));
        assert_eq!(train[5].1, 2);
        let val = labels_of(&d.val, dir.path());
        assert_eq!(
            val.iter().map(|v| v.1).collect::<Vec<_>>(),
            [0, 0, 1, 1, 2, 2]
        );
        assert!(
            val[2].0.ends_with("ILSVRC2012_val_00000003.JPEG"),
            "{val:?}"
        );
    }
}

#[test]
fn kaggle_ground_truth_labels_a_flat_val_folder() {
    let dir = tempfile::tempdir().unwrap();
    synth::write_folder(dir.path(), &layout(2, 1, 2, true)).unwrap();
    std::fs::remove_file(dir.path().join("val").join(LABELS_TXT)).unwrap();
    let e = format!("{:#}", scan(dir.path()).unwrap_err());
    assert!(e.contains(LABELS_TXT) && e.contains(KAGGLE_CSV), "{e}");
    // Kaggle's rows are in no particular order; the first token is the class.
    let csv = "ImageId,PredictionString\n\
        ILSVRC2012_val_00000003,n01000001 1 2 3 4 n01000001 5 6 7 8\n\
        ILSVRC2012_val_00000001,n01000000 1 2 3 4\n\
        ILSVRC2012_val_00000004,n01000001 1 2 3 4\n\
        ILSVRC2012_val_00000002,n01000000 1 2 3 4\n";
    std::fs::write(dir.path().join(KAGGLE_CSV), csv).unwrap();
    let d = scan(dir.path()).unwrap();
    assert_eq!(
        d.val.iter().map(|s| s.label).collect::<Vec<_>>(),
        [0, 0, 1, 1]
    );
}

#[test]
fn the_survey_names_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    synth::write_folder(root, &layout(2, 2, 1, false)).unwrap();
    std::fs::create_dir_all(root.join("train/n09999999")).unwrap();
    std::fs::create_dir_all(root.join("val/n08888888")).unwrap();
    std::fs::write(root.join("val/n08888888/x.JPEG"), b"").unwrap();
    std::fs::write(root.join("train/n01000000/notes.txt"), b"").unwrap();
    let s = survey(root);
    let all = s.problems.join("\n");
    assert!(all.contains("n09999999: empty class folder"), "{all}");
    assert!(
        all.contains("class `n08888888` of val is not among"),
        "{all}"
    );
    assert!(all.contains("notes.txt: not a JPEG image"), "{all}");
    assert_eq!(s.problems.len(), 3, "{all}");
    assert!(scan(root).is_err());
}

#[test]
fn the_loader_yields_batches_in_order_identical_for_any_number_of_workers() {
    let dir = tempfile::tempdir().unwrap();
    synth::write_folder(dir.path(), &layout(3, 7, 1, false)).unwrap();
    let d = scan(dir.path()).unwrap();
    let samples: Arc<[Sample]> = d.train.into();
    let order = crate::rng::Rng::new(5).permutation(samples.len());
    let batches: Vec<Vec<usize>> = order.chunks(5).map(|c| c.to_vec()).collect();
    let t = Transform::train(32, 9, 2);
    let run = |workers, ahead| {
        let o = LoaderOptions { workers, ahead };
        Loader::new(samples.clone(), batches.clone(), t, o)
            .collect::<anyhow::Result<Vec<Batch>>>()
            .unwrap()
    };
    let one = run(1, 1);
    assert_eq!(one.len(), 5);
    assert_eq!(one[4].labels.len(), 1);
    assert_eq!(run(3, 2), one);
    assert_eq!(run(4, 4), one);
    // Each image equals its transform at its position in the epoch.
    let mut pos = 0;
    for (b, idx) in one.iter().zip(&batches) {
        assert_eq!(b.images.len(), idx.len() * t.image_len());
        for (k, &i) in idx.iter().enumerate() {
            assert_eq!(b.labels[k], samples[i].label);
            let mut want = vec![0f32; t.image_len()];
            t.apply(&load(&samples[i].path).unwrap(), pos, &mut want);
            assert_eq!(&b.images[k * want.len()..(k + 1) * want.len()], &want[..]);
            pos += 1;
        }
    }
    // Another epoch, other crops; evaluation, none.
    assert_ne!(
        Loader::new(
            samples.clone(),
            batches.clone(),
            Transform::train(32, 9, 3),
            LoaderOptions {
                workers: 2,
                ahead: 2
            }
        )
        .next()
        .unwrap()
        .unwrap(),
        one[0]
    );
    // Dropping a loader mid-epoch stops its workers (the test would hang otherwise).
    let mut l = Loader::new(
        samples,
        batches,
        Transform::eval(32, 36),
        LoaderOptions {
            workers: 3,
            ahead: 1,
        },
    );
    assert!(l.next().unwrap().is_ok());
    drop(l);
}

#[test]
fn a_corrupt_image_is_an_error_naming_it_after_the_batches_before_it() {
    let dir = tempfile::tempdir().unwrap();
    synth::write_folder(dir.path(), &layout(2, 6, 1, false)).unwrap();
    let d = scan(dir.path()).unwrap();
    let bad = d.train[9].path.clone();
    std::fs::write(&bad, b"\xFF\xD8garbage").unwrap();
    let samples: Arc<[Sample]> = d.train.into();
    let batches: Vec<Vec<usize>> = (0..12)
        .collect::<Vec<_>>()
        .chunks(4)
        .map(|c| c.to_vec())
        .collect();
    for workers in [1, 3] {
        let o = LoaderOptions { workers, ahead: 2 };
        let got: Vec<_> =
            Loader::new(samples.clone(), batches.clone(), Transform::eval(32, 36), o).collect();
        assert_eq!(got.len(), 3, "two batches, then the error, then nothing");
        assert!(got[0].is_ok() && got[1].is_ok());
        let e = format!("{:#}", got[2].as_ref().unwrap_err());
        assert!(e.contains(&bad.display().to_string()), "{e}");
    }
}

#[test]
fn check_reports_unreadable_images_and_missing_ground_truth() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    synth::write_folder(root, &layout(2, 3, 2, true)).unwrap();
    let r = check(root);
    assert!(r.is_ok(), "{r:?}");
    assert_eq!((r.classes, r.train_images, r.val_images), (2, 6, 4));
    let bad = root.join("train/n01000001/n01000001_1.JPEG");
    let bytes = std::fs::read(&bad).unwrap();
    std::fs::write(&bad, &bytes[..bytes.len() - 100]).unwrap();
    std::fs::remove_file(root.join("val").join(LABELS_TXT)).unwrap();
    let r = check(root);
    assert!(!r.is_ok());
    assert_eq!(r.unreadable.len(), 1);
    assert_eq!(r.unreadable[0].0, bad);
    assert_eq!(r.val_layout, ValLayout::FlatUnlabelled);
    assert!(
        r.problems.iter().any(|p| p.contains("no ground truth")),
        "{:?}",
        r.problems
    );
}
