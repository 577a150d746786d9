use super::*;
use crate::store::EpochRecord;

/// The `<tag …/>` elements of an SVG whose text contains `has`, each as its attributes.
fn elements(svg: &str, tag: &str, has: &str) -> Vec<std::collections::BTreeMap<String, String>> {
    svg.split('<')
        .filter(|e| e.starts_with(&format!("{tag} ")) && e.contains(has))
        .map(|e| {
            e.split('"')
                .collect::<Vec<_>>()
                .chunks(2)
                .filter(|kv| kv.len() == 2)
                .map(|kv| {
                    let key = kv[0].trim().trim_start_matches(tag).trim();
                    (key.trim_end_matches('=').to_string(), kv[1].to_string())
                })
                .collect()
        })
        .collect()
}

fn num(e: &std::collections::BTreeMap<String, String>, k: &str) -> i32 {
    e[k].parse().unwrap()
}

fn hex(c: plotters::style::RGBColor) -> String {
    format!("fill=\"#{:02X}{:02X}{:02X}\"", c.0, c.1, c.2)
}

/// Three non-empty bins: (14/15, 1] all right, (7/15, 8/15] half right, (4/15, 5/15] wrong.
fn samples() -> Vec<(f64, bool)> {
    vec![
        (0.95, true),
        (0.97, true),
        (0.5, true),
        (0.5, false),
        (0.3, false),
    ]
}

#[test]
fn a_reliability_diagram_has_a_bar_per_non_empty_bin_at_its_accuracy() {
    let r = Reliability::pooled(&samples(), 2);
    assert_eq!(r.images, 5);
    assert_eq!(r.bins.iter().filter(|b| b.count > 0).count(), 3);
    let svg = r.svg("Vanilla · ResNet8").unwrap();
    assert!(svg.starts_with("<svg"), "{svg}");
    assert!(
        svg.contains(&format!("Vanilla · ResNet8: ECE {:.3}", r.ece)),
        "{svg}"
    );
    assert!(svg.contains("5 images of 2 runs"), "{svg}");
    // One bar per non-empty bin, and the legend's swatch.
    let bars = elements(&svg, "rect", &hex(reliability::BAR));
    assert_eq!(bars.len(), 3 + 1, "{svg}");
    let bars = &bars[..3];
    // Drawn in bin order: bin 4 (accuracy 0), bin 7 (0.5), bin 14 (1.0).
    let x = |i: usize| num(&bars[i], "x");
    let w = |i: usize| num(&bars[i], "width");
    let h = |i: usize| num(&bars[i], "height");
    assert!(h(0) <= 1, "an accuracy of 0 has no height: {:?}", bars[0]);
    assert!((h(2) - 2 * h(1)).abs() <= 2, "{bars:?}");
    for i in 0..3 {
        assert!((w(i) - w(0)).abs() <= 1, "bins have one width: {bars:?}");
    }
    assert!(
        (x(2) - x(1) - 7 * w(0)).abs() <= 7,
        "bins 7 apart: {bars:?}"
    );
    // The bottom of every bar is the same line.
    let bottom = |i: usize| num(&bars[i], "y") + h(i);
    assert_eq!(bottom(1), bottom(2));
    // The gap of the half-right bin (confidence 0.5 = accuracy) is none; bins 4 and 14
    // have one each.
    assert_eq!(
        elements(&svg, "rect", &hex(reliability::GAP)).len(),
        2 + 1,
        "{svg}"
    );
    assert_eq!(
        elements(&svg, "rect", "stroke=\"#CC0000\"").len(),
        2,
        "{svg}"
    );
    // The counts below: a bar per non-empty bin.
    assert_eq!(elements(&svg, "rect", &hex(reliability::COUNT)).len(), 3);
}

#[test]
fn plots_are_the_same_bytes_every_time() {
    let r = Reliability::pooled(&samples(), 1);
    assert_eq!(r.svg("t").unwrap(), r.svg("t").unwrap());
    let c = Curves::over_seeds(&runs(), false);
    assert_eq!(c.svg("t").unwrap(), c.svg("t").unwrap());
    let marks = three_marks();
    let rows = ["a".to_string(), "b".into(), "c".into()];
    let cols = ["X".to_string()];
    assert_eq!(
        scatter("t", &rows, &cols, &marks).unwrap(),
        scatter("t", &rows, &cols, &marks).unwrap()
    );
}

fn epoch(epoch: usize, train_loss: f64, test_acc: f64) -> EpochRecord {
    EpochRecord {
        epoch,
        train_loss,
        train_acc: 50.0,
        test_loss: 1.0,
        test_acc,
        seconds: epoch as f64 * 1.7,
        ..Default::default()
    }
}

fn runs() -> Vec<Vec<EpochRecord>> {
    vec![
        vec![
            epoch(1, 2.0, 30.0),
            epoch(2, 1.0, 40.0),
            epoch(3, 0.5, 50.0),
        ],
        vec![
            epoch(1, 3.0, 34.0),
            epoch(2, 2.0, 44.0),
            epoch(3, 1.5, 54.0),
        ],
    ]
}

#[test]
fn learning_curves_are_the_mean_and_range_over_seeds() {
    let c = Curves::over_seeds(&runs(), false);
    assert_eq!(c.runs, 2);
    assert_eq!(
        c.train_loss.points,
        vec![(1, 2.5, 2.0, 3.0), (2, 1.5, 1.0, 2.0), (3, 1.0, 0.5, 1.5)]
    );
    assert_eq!(c.eval_acc.points[2], (3, 52.0, 50.0, 54.0));
    // The validation curves of runs that hold out no images are empty, not zeros.
    let v = Curves::over_seeds(&runs(), true);
    assert!(v.eval_loss.points.is_empty() && v.eval_name == "validation");
    let svg = c.svg("Vanilla · ResNet8").unwrap();
    // A band where the seeds differ: train loss and test accuracy; none for the train
    // accuracy and test loss, equal over the seeds.
    assert_eq!(elements(&svg, "polygon", "").len(), 2, "{svg}");
    for text in [
        "train",
        "test",
        "epoch",
        "accuracy (%)",
        "lowest to highest of 2 seeds",
    ] {
        assert!(svg.contains(text), "no `{text}`:\n{svg}");
    }
    // One seed: no band.
    let one = Curves::over_seeds(&runs()[..1], false).svg("t").unwrap();
    assert!(elements(&one, "polygon", "").is_empty(), "{one}");
}

fn three_marks() -> Vec<Mark> {
    let m = |row, ece, acc| Mark {
        row,
        column: 0,
        acc,
        ece,
        published: false,
    };
    // c lies half-way between a and b.
    vec![m(0, 0.02, 70.0), m(1, 0.08, 60.0), m(2, 0.05, 65.0)]
}

#[test]
fn the_scatter_places_each_cell_by_its_ece_and_accuracy() {
    let rows = ["a".to_string(), "b".into(), "c".into()];
    let cols = ["X".to_string()];
    let mut marks = three_marks();
    marks.push(Mark {
        published: true,
        acc: 72.0,
        ece: 0.03,
        ..marks[0]
    });
    let svg = scatter("t", &rows, &cols, &marks).unwrap();
    // The plot's markers, left of the legend.
    let at = |row: usize, filled: bool| -> Vec<(i32, i32)> {
        let look = if filled {
            hex(colour(row))
        } else {
            format!(
                "stroke=\"#{:02X}{:02X}{:02X}\"",
                colour(row).0,
                colour(row).1,
                colour(row).2
            )
        };
        elements(&svg, "circle", &look)
            .iter()
            .filter(|e| !filled || e["fill"] != "none")
            .filter(|e| filled || e["fill"] == "none")
            .map(|e| (num(e, "cx"), num(e, "cy")))
            .filter(|p| p.0 < (scatter::WIDTH - scatter::LEGEND) as i32)
            .collect()
    };
    let (a, b, c) = (at(0, true), at(1, true), at(2, true));
    assert_eq!((a.len(), b.len(), c.len()), (1, 1, 1), "{svg}");
    let (a, b, c) = (a[0], b[0], c[0]);
    // Lower ECE is left, higher accuracy is up (smaller y).
    assert!(a.0 < b.0 && a.1 < b.1, "{a:?} {b:?}");
    assert!((c.0 - (a.0 + b.0) / 2).abs() <= 1, "{a:?} {b:?} {c:?}");
    assert!((c.1 - (a.1 + b.1) / 2).abs() <= 1, "{a:?} {b:?} {c:?}");
    // The paper's value of row a: hollow, above a and left of b, joined to a by a line.
    let p = at(0, false);
    assert_eq!(p.len(), 1, "{svg}");
    assert!(p[0].1 < a.1 && p[0].0 > a.0 && p[0].0 < b.0, "{p:?} {a:?}");
    let joins = elements(
        &svg,
        "polyline",
        &format!(
            "stroke=\"#{:02X}{:02X}{:02X}\"",
            colour(0).0,
            colour(0).1,
            colour(0).2
        ),
    );
    assert_eq!(joins.len(), 1, "{svg}");
    assert_eq!(
        joins[0]["points"],
        format!("{},{} {},{} ", p[0].0, p[0].1, a.0, a.1)
    );
    for name in ["a", "b", "c", "X", "the paper (or cited)", "ECE (15 bins"] {
        assert!(
            svg.contains(&format!(">\n{name}")),
            "no legend `{name}`:\n{svg}"
        );
    }
}

#[test]
fn a_scatter_without_results_says_so() {
    let svg = scatter("t", &["a".into()], &["X".into()], &[]).unwrap();
    assert!(svg.contains("no cell has results yet"), "{svg}");
    assert!(elements(&svg, "circle", "").is_empty(), "{svg}");
}
