//! The verdict rule on intervals worked out by hand, and a table's verdicts and orderings.

use super::*;
use crate::recipe::Split;
use std::collections::BTreeMap;

fn close(a: f64, b: f64, tol: f64) {
    assert!((a - b).abs() < tol, "{a} vs {b}");
}

#[test]
fn student_t_quantiles() {
    close(t_975(1), 12.706205, 1e-6);
    close(t_975(2), 4.302653, 1e-6);
    close(t_975(30), 2.042272, 1e-6);
    // Past the table, the expansion: t(0.975, 31) = 2.039513, t(0.975, 120) = 1.979930.
    close(t_975(31), 2.039513, 2e-6);
    close(t_975(120), 1.979930, 2e-6);
    assert!(t_975(100_000) > 1.95996 && t_975(100_000) < 1.96);
}

#[test]
fn three_seeds_give_a_t_interval() {
    // 70, 71, 72: mean 71, s = 1, t(0.975, 2) = 4.303: 71 ± 4.302653 / √3 = 71 ± 2.484138.
    let (m, sd) = crate::report::mean_std(&[70.0, 71.0, 72.0]);
    let (lo, hi) = interval(m, sd, 3).unwrap();
    close(lo, 71.0 - 2.484138, 1e-6);
    close(hi, 71.0 + 2.484138, 1e-6);
    // Inside the interval, though 2.4 pp away: reproduced.
    let c = check(m, sd, 3, 73.4, ACC_TOLERANCE);
    assert_eq!(c.verdict, Verdict::WithinInterval);
    close(c.delta, -2.4, 1e-9);
    // Outside it and beyond 1 pp: not.
    assert_eq!(
        check(m, sd, 3, 73.5, ACC_TOLERANCE).verdict,
        Verdict::NotReproduced
    );
    assert_eq!(
        check(m, sd, 3, 68.5, ACC_TOLERANCE).verdict,
        Verdict::NotReproduced
    );
    // Seeds that agree closely: a narrow interval (71 ± 0.248), and the tolerance decides.
    let c = check(71.0, Some(0.1), 3, 71.9, ACC_TOLERANCE);
    assert_eq!(c.verdict, Verdict::WithinTolerance);
    assert_eq!(
        check(71.0, Some(0.1), 3, 72.1, ACC_TOLERANCE).verdict,
        Verdict::NotReproduced
    );
    // ECE: 0.07, 0.08, 0.09: 0.08 ± 0.024841; 0.104 inside; 0.105 outside and 0.025 away.
    let (m, sd) = crate::report::mean_std(&[0.07, 0.08, 0.09]);
    assert_eq!(
        check(m, sd, 3, 0.104, ECE_TOLERANCE).verdict,
        Verdict::WithinInterval
    );
    assert_eq!(
        check(m, sd, 3, 0.105, ECE_TOLERANCE).verdict,
        Verdict::NotReproduced
    );
    assert_eq!(
        check(m, sd, 3, 0.099, ECE_TOLERANCE).verdict,
        Verdict::WithinInterval
    );
}

#[test]
fn one_seed_has_no_interval_and_the_tolerance_decides_bounds_included() {
    assert_eq!(interval(71.28, None, 1), None);
    // 72.28 − 71.28 is 1.0000000000000142 in floating point: still 1 pp.
    let c = check(71.28, None, 1, 72.28, ACC_TOLERANCE);
    assert_eq!((c.interval, c.verdict), (None, Verdict::WithinTolerance));
    assert_eq!(
        check(71.28, None, 1, 72.3, ACC_TOLERANCE).verdict,
        Verdict::NotReproduced
    );
    assert_eq!(
        check(0.05, None, 1, 0.07, ECE_TOLERANCE).verdict,
        Verdict::WithinTolerance
    );
    assert_eq!(
        check(0.05, None, 1, 0.071, ECE_TOLERANCE).verdict,
        Verdict::NotReproduced
    );
}

fn done(n: usize, acc: (f64, Option<f64>), ece: (f64, Option<f64>)) -> Cell {
    Cell::Done(CellStats {
        seeds: 3,
        n,
        acc_mean: acc.0,
        acc_std: acc.1,
        ece_mean: ece.0,
        ece_std: ece.1,
        nll_mean: 1.0,
        brier_mean: 0.5,
        top5_mean: None,
        unverified: 0,
    })
}

fn paper(acc: f64, ece: f64) -> PaperValue {
    PaperValue {
        acc,
        ece,
        acc_std: None,
    }
}

fn table() -> Table {
    let k = |r: &str, c: &str| (r.to_string(), c.to_string());
    let mut cells = BTreeMap::new();
    cells.insert(
        k("Vanilla", "A"),
        done(3, (71.0, Some(1.0)), (0.08, Some(0.01))),
    );
    cells.insert(k("Vanilla", "B"), done(1, (60.0, None), (0.05, None)));
    cells.insert(
        k("LS", "A"),
        done(3, (70.0, Some(0.1)), (0.02, Some(0.001))),
    );
    cells.insert(
        k("LS", "B"),
        Cell::Pending {
            seeds: 3,
            failed: 0,
        },
    );
    cells.insert(k("CRD", "A"), Cell::Cited(paper(74.0, 0.1)));
    let mut p = BTreeMap::new();
    p.insert(k("Vanilla", "A"), paper(73.4, 0.15)); // acc in the interval; ECE not
    p.insert(k("Vanilla", "B"), paper(62.0, 0.06)); // acc 2 pp off; ECE within 0.02
    p.insert(k("LS", "A"), paper(70.5, 0.03)); // both within the tolerance
    p.insert(k("LS", "B"), paper(61.0, 0.04));
    p.insert(k("CRD", "A"), paper(74.0, 0.1));
    Table {
        name: "t".into(),
        title: "T".into(),
        rows: vec!["Vanilla".into(), "LS".into(), "CRD".into()],
        columns: vec!["A".into(), "B".into()],
        note: None,
        scale: None,
        split: Split::Test,
        top5: false,
        cells,
        paper: p,
        remarks: vec![],
    }
}

fn ordering(first: &str, below: bool, second: &str, measure: Measure) -> Ordering {
    Ordering {
        first: first.into(),
        below,
        second: second.into(),
        measure,
    }
}

#[test]
fn a_tables_verdicts_counts_and_orderings() {
    let t = table();
    let orderings = [
        ordering("LS", true, "Vanilla", Measure::Ece),
        ordering("LS", false, "Vanilla", Measure::Acc),
        ordering("CRD", false, "Vanilla", Measure::Acc),
    ];
    let v = assess(&t, &orderings).unwrap();
    // Done cells with a published value, in row and column order; the cited one is not.
    let at: Vec<(&str, &str)> = v.cells.iter().map(|c| (&*c.row, &*c.column)).collect();
    assert_eq!(at, [("Vanilla", "A"), ("Vanilla", "B"), ("LS", "A")]);
    let verdicts: Vec<(Verdict, Verdict)> = v
        .cells
        .iter()
        .map(|c| (c.acc.verdict, c.ece.verdict))
        .collect();
    assert_eq!(
        verdicts,
        [
            (Verdict::WithinInterval, Verdict::NotReproduced),
            (Verdict::NotReproduced, Verdict::WithinTolerance),
            (Verdict::WithinTolerance, Verdict::WithinTolerance),
        ]
    );
    assert_eq!(v.counts(), (2, 2, 3));
    // LS's ECE below Vanilla's: the paper in both columns (0.03 < 0.15, 0.04 < 0.06); the
    // reproduction has both rows in A only, and keeps it.
    let o = &v.orderings;
    assert_eq!((o[0].paper, o[0].compared, o[0].holds()), ((2, 2), 1, true));
    // LS's accuracy above Vanilla's: the paper says so in neither column, nor do we (70 < 71).
    assert_eq!(
        (o[1].paper, o[1].broken.clone()),
        ((0, 2), vec!["A".to_string()])
    );
    // A cited row takes part with its published value: 74 > 71.
    assert!(o[2].holds());
    let md = markdown(&v, &t);
    assert!(
        md.contains("| Vanilla | -2.40 ✓ / -0.070 ✗ | -2.00 ✗ / -0.010 ✓ (n=1) |"),
        "{md}"
    );
    assert!(md.contains("| LS | -0.50 ✓ / -0.010 ✓ | pending |"), "{md}");
    assert!(md.contains("| CRD | cited | — |"), "{md}");
    assert!(
        md.contains("2 of 3 cells reproduced (accuracy), 2 of 3 (ECE)."),
        "{md}"
    );
    assert!(md.contains("within 1 pp of accuracy / 0.02 of ECE"), "{md}");
    assert!(
        md.contains("| ECE: LS < Vanilla | 2 of 2 columns | holds (1 of 1 columns) |"),
        "{md}"
    );
    assert!(
        md.contains("| Accuracy: LS > Vanilla | 0 of 2 columns | fails in A (0 of 1 columns) |"),
        "{md}"
    );
    assert!(
        md.contains("2 of 3 orderings with results hold; 0 await results."),
        "{md}"
    );
    let csv = csv(&v, &t);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 4, "{csv}");
    assert!(lines[0].starts_with("table,row,column,n,seeds,acc_mean,acc_std,acc_paper,"));
    assert_eq!(
        lines[1],
        "t,Vanilla,A,3,3,71.0000,1.0000,73.4000,-2.4000,68.5159,73.4841,within-interval,\
         0.08000,0.01000,0.15000,-0.07000,0.05516,0.10484,not-reproduced"
    );
    assert!(lines[2].contains(",,,not-reproduced,"), "{csv}");
}

#[test]
fn a_table_without_published_values_has_no_verdicts() {
    let mut t = table();
    t.paper.clear();
    let e = assess(&t, &[]).unwrap_err().to_string();
    assert!(e.contains("table `t` has no published values"), "{e}");
}
