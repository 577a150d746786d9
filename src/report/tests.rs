use super::*;
use crate::recipe::{PaperValue, Split};

fn stats(seeds: usize, accs: &[f64], eces: &[f64]) -> Cell {
    let done: Vec<store::Summary> = accs
        .iter()
        .zip(eces)
        .enumerate()
        .map(|(i, (&a, &e))| store::Summary {
            id: format!("r{i}"),
            dataset: "d".into(),
            model: "m".into(),
            seed: i as u64,
            epochs: 1,
            accuracy: a,
            ece: e,
            nll: 1.0,
            brier: 0.5,
            train_accuracy: 0.0,
            ..Default::default()
        })
        .collect();
    cell_stats(seeds, &done)
}

#[test]
fn mean_and_sample_std() {
    let (m, s) = mean_std(&[70.0, 71.0, 72.0]);
    assert_eq!(m, 71.0);
    assert_eq!(s, Some(1.0)); // sample std: sqrt(2 / 2)
    assert_eq!(mean_std(&[5.0]), (5.0, None));
}

fn table() -> Table {
    let mut cells = BTreeMap::new();
    let k = |r: &str, c: &str| (r.to_string(), c.to_string());
    cells.insert(
        k("Vanilla", "A"),
        stats(3, &[70.0, 71.0, 72.0], &[0.07, 0.08, 0.09]),
    );
    cells.insert(k("LS", "A"), stats(3, &[69.0, 70.0], &[0.02, 0.03]));
    cells.insert(
        k("Vanilla", "B"),
        Cell::Pending {
            seeds: 3,
            failed: 0,
        },
    );
    cells.insert(
        k("LS", "B"),
        stats(3, &[60.0, 61.0, 62.0], &[0.05, 0.05, 0.05]),
    );
    let mut paper = BTreeMap::new();
    paper.insert(
        k("Vanilla", "A"),
        PaperValue {
            acc: 69.32,
            ece: 0.070,
            acc_std: None,
        },
    );
    Table {
        name: "t".into(),
        title: "Title".into(),
        rows: vec!["Vanilla".into(), "LS".into(), "KD".into()],
        columns: vec!["A".into(), "B".into()],
        note: None,
        scale: None,
        split: Split::Test,
        top5: false,
        cells,
        paper,
        remarks: vec![],
    }
}

#[test]
fn top5_is_shown_when_the_table_asks_for_it() {
    let mut t = table();
    let Some(Cell::Done(s)) = t.cells.get_mut(&("LS".to_string(), "B".to_string())) else {
        panic!("a done cell");
    };
    s.top5_mean = Some(88.5);
    assert!(Markdown
        .render(&t)
        .contains("| **61.00** ± 1.00 / **0.050** |"));
    assert!(Csv.render(&t).contains(",88.5000,"));
    t.top5 = true;
    let md = Markdown.render(&t);
    assert!(
        md.contains("| **61.00** ± 1.00 / 88.50 / **0.050** |"),
        "{md}"
    );
    assert!(
        md.contains("Top-1 accuracy (%) / top-5 accuracy (%) / ECE"),
        "{md}"
    );
    let tex = Latex.render(&t);
    assert!(
        tex.contains("\\textbf{61.00} $\\pm$ 1.00 / 88.50 / \\textbf{0.050}"),
        "{tex}"
    );
}

#[test]
fn best_per_column_is_highest_accuracy_and_lowest_ece() {
    let t = table();
    assert_eq!(t.best("A"), (vec![0], vec![1]));
    assert_eq!(t.best("B"), (vec![1], vec![1]));
}

#[test]
fn markdown_layout() {
    let md = Markdown.render(&table());
    let expected = "\
# Title

| Method | A | B |
|:--|:-:|:-:|
| Vanilla | **71.00** ± 1.00 / 0.080 | pending |
| LS | 69.50 ± 0.71 / **0.025** (n=2) | **61.00** ± 1.00 / **0.050** |
| KD | — | — |
";
    assert!(md.starts_with(expected), "{md}");
    assert!(md.contains("Protocol: the last epoch"), "{md}");
    assert!(md.contains("## Published in the paper"));
    assert!(md.contains("| Vanilla | 69.32 / 0.070 | — |"), "{md}");
    assert!(md.contains("| Vanilla | +1.68 / +0.010 | — |"), "{md}");
}

#[test]
fn csv_has_one_row_per_cell() {
    let c = Csv.render(&table());
    let lines: Vec<&str> = c.lines().collect();
    assert_eq!(lines.len(), 1 + 6);
    assert!(lines[0].starts_with("table,row,column,status,n,seeds,acc_mean"));
    assert_eq!(
        lines[1],
        "t,Vanilla,A,done,3,3,71.0000,1.0000,0.08000,0.01000,1.00000,0.50000,,69.32,,0.070"
    );
    assert!(lines[2].starts_with("t,Vanilla,B,pending,0,3,"));
    assert!(lines[3].starts_with("t,LS,A,partial,2,3,69.5000"));
    assert!(lines[5].starts_with("t,KD,A,missing,0,0"));
}

#[test]
fn issue_12_a_validation_table_does_not_claim_the_test_set() {
    let mut t = table();
    assert!(t.protocol_text().contains("on the test set"));
    t.split = Split::Validation;
    let p = t.protocol_text();
    assert!(p.contains("on the held-out validation set"), "{p}");
    assert!(!p.contains("test set"), "{p}");
}

#[test]
fn latex_booktabs_layout_with_escapes() {
    let mut t = table();
    t.title = "KD (α=0.1) & 50% of 1_000 images".into();
    let tex = Latex.render(&t);
    let expected = "\
\\begin{table}[t]
\\centering
\\caption{KD ($\\alpha$=0.1) \\& 50\\% of 1\\_000 images}
\\label{tab:t}
\\begin{tabular}{lcc}
\\toprule
Method & A & B \\\\
\\midrule
Vanilla & \\textbf{71.00} $\\pm$ 1.00 / 0.080 & pending \\\\
LS & 69.50 $\\pm$ 0.71 / \\textbf{0.025} ($n=2$) & \\textbf{61.00} $\\pm$ 1.00 / \\textbf{0.050} \\\\
KD & -- & -- \\\\
\\bottomrule
\\end{tabular}
\\end{table}
";
    assert!(tex.ends_with(expected), "{tex}");
    // The protocol goes along as comments; every other line is LaTeX.
    let comments: Vec<&str> = tex.lines().take_while(|l| l.starts_with('%')).collect();
    assert_eq!(comments.len(), 3, "{tex}");
    assert!(comments[2].contains("Protocol: the last epoch"), "{tex}");
    assert_eq!(
        latex::escape("a\\b~c^d#e"),
        "a\\textbackslash{}b\\textasciitilde{}c\\textasciicircum{}d\\#e"
    );
}

/// `table()` in a view of NLL and MCE after temperature scaling, cross-fitted, with a
/// cited row.
fn view_table() -> MetricTable {
    use crate::metrics::calibration::Fit;
    use metric::ViewCell;
    let mut t = table();
    let k = |r: &str, c: &str| (r.to_string(), c.to_string());
    t.cells
        .insert(k("KD", "A"), Cell::Cited(t.paper[&k("Vanilla", "A")]));
    let cell = |n, nll: (f64, Option<f64>), mce: (f64, Option<f64>), t: f64| ViewCell {
        seeds: 3,
        n,
        values: vec![Some(nll), Some(mce)],
        temperature: Some(t),
        fits: [Fit::CrossFit].into(),
    };
    let mut cells = BTreeMap::new();
    cells.insert(
        k("Vanilla", "A"),
        cell(3, (1.2345, Some(0.01)), (0.2, Some(0.05)), 1.5),
    );
    cells.insert(k("LS", "A"), cell(2, (1.1, Some(0.02)), (0.25, None), 0.9));
    cells.insert(
        k("LS", "B"),
        cell(3, (2.0, Some(0.0)), (0.3, Some(0.1)), 1.25),
    );
    MetricTable {
        table: t,
        view: View::new(&[Metric::Nll, Metric::Mce], true),
        cells,
    }
}

#[test]
fn a_view_shows_its_measures_with_the_best_in_bold_and_says_how_t_was_fitted() {
    use crate::metrics::calibration::Fit;
    let mt = view_table();
    let md = view::markdown(&mt);
    let expected = "\
# Title

| Method | A | B |
|:--|:-:|:-:|
| Vanilla | 1.234 ± 0.010 / **0.200** ± 0.050 | pending |
| LS | **1.100** ± 0.020 / 0.250 (n=2) | **2.000** ± 0.000 / **0.300** ± 0.100 |
| KD | — | — |
";
    assert!(md.starts_with(expected), "{md}");
    assert!(
        md.contains("NLL / MCE (15 bins) on the test set, after temperature scaling."),
        "{md}"
    );
    assert!(
        md.contains("NLL and MCE (15 bins) from each run's stored logits"),
        "{md}"
    );
    assert!(
        md.contains("no run holds out a validation split, so each run's T is cross-fitted on the test set as Ashukha et al. (2020) do"),
        "{md}"
    );
    assert!(!md.contains("Published in the paper"), "{md}");
    let csv = view::csv(&mt);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "table,row,column,status,n,seeds,nll_mean,nll_std,mce_mean,mce_std,t_mean,ts_fit"
    );
    assert_eq!(
        lines[1],
        "t,Vanilla,A,done,3,3,1.23450,0.01000,0.20000,0.05000,1.5000,cross-fit"
    );
    assert_eq!(lines[2], "t,Vanilla,B,pending,0,3,,,,,,");
    assert_eq!(lines[5], "t,KD,A,cited,0,0,,,,,,");
    // Accuracy and ECE of a cited row are the paper's; after scaling, its ECE is unknown.
    let mut mt = mt;
    mt.view = View::new(&[Metric::Accuracy, Metric::Ece], true);
    for c in mt.cells.values_mut() {
        c.values = vec![Some((71.0, None)), Some((0.05, None))];
        c.fits = [Fit::Validation].into();
    }
    let md = view::markdown(&mt);
    assert!(md.contains("| KD | 69.32 / — (cited) | — |"), "{md}");
    assert!(
        md.contains("one T per run, fitted on its held-out validation split"),
        "{md}"
    );
    mt.view = View::new(&[Metric::Accuracy, Metric::Ece], false);
    assert!(view::markdown(&mt).contains("| KD | 69.32 / 0.070 (cited) | — |"));
}

#[test]
fn the_reports_page_is_the_table_with_links_to_its_cells_and_no_outside_address() {
    use super::html::{self, CellPart, RunLine};
    let mut t = table();
    t.title = "Title <&>".into();
    let provenance = crate::store::Provenance {
        lecal_version: "0.1.0".into(),
        candle_version: "0.11.1".into(),
        git_commit: "0123456789abcdef0123".into(),
        git_dirty: true,
        device: "cpu".into(),
        bitwise_repeatable: true,
        cells: vec![],
        started_unix: 0,
        finished_unix: None,
        wall_seconds: Some(125.0),
        resumed_after: vec![3],
        host: "h1".into(),
        ..Default::default()
    };
    let svg = "<svg width=\"1\" height=\"1\" viewBox=\"0 0 1 1\" xmlns=\"http://www.w3.org/2000/svg\">\n</svg>\n";
    let parts = [
        CellPart {
            row: 0,
            column: 0,
            seeds: 3,
            runs: vec![RunLine {
                seed: 0,
                id: "d-m-abc".into(),
                provenance: Some(provenance),
            }],
            figures: vec![
                Ok((svg.to_string(), "r1c1-vanilla-a-reliability.svg".into())),
                Err("cannot read x/predictions.csv".into()),
            ],
        },
        CellPart {
            row: 0,
            column: 1,
            seeds: 3,
            runs: vec![],
            figures: vec![],
        },
    ];
    let page = html::page(&t, &Ok((svg.to_string(), "scatter.svg".into())), &parts);
    for text in [
        "<title>Title &lt;&amp;&gt;</title>",
        "<td><a href=\"#cell-1-1\"><strong>71.00</strong> ± 1.00 / 0.080</a></td>",
        "<td class=\"pending\"><a href=\"#cell-1-2\">pending</a></td>",
        "<td>69.50 ± 0.71 / <strong>0.025</strong> (n=2)</td>",
        "<td class=\"pending\">—</td>",
        "<section id=\"cell-1-1\">",
        "1 of 3 seeds done (seed 0).",
        "Pending: 0 of 3 seeds done.",
        "No plot: cannot read x/predictions.csv",
        "href=\"r1c1-vanilla-a-reliability.svg\"",
        "<code title=\"0123456789abcdef0123-dirty\">0123456789ab…-dirty</code>",
        "<td>2 min 05 s (resumed after epoch 3)</td>",
        "host: h1 (1 run)",
        "Reproduction − paper",
    ] {
        assert!(page.contains(text), "no `{text}` in:\n{page}");
    }
    assert!(!page.contains("http"), "{page}");
    assert_eq!(page.matches("<svg").count(), 2);
}

/// Issue 30, class 2: recipe text (title, rows, columns, note, the orderings' rows)
/// holding a newline, `|`, raw HTML, a link and TeX commands shows as text in every
/// Markdown and LaTeX export: no extra column or row, no HTML, no link, no live command.
#[test]
fn recipe_text_is_escaped_in_every_markdown_and_latex_export() {
    let mut t = table();
    let evil_row = "Van|illa\n| x | y |\n<script>alert(1)</script> [l](http://e) **b**";
    t.title = "T\n\\input{/etc/passwd}\r\\immediate\\write18{touch pwned}".into();
    t.columns = vec!["A|<i>".into(), "B\n".into()];
    let rename = |k: &(String, String)| {
        let row = if k.0 == "Vanilla" {
            evil_row.to_string()
        } else {
            k.0.clone()
        };
        let col = if k.1 == "A" { "A|<i>" } else { "B\n" };
        (row, col.to_string())
    };
    t.cells = t
        .cells
        .iter()
        .map(|(k, v)| (rename(k), v.clone()))
        .collect();
    t.paper = t.paper.iter().map(|(k, v)| (rename(k), *v)).collect();
    t.rows[0] = evil_row.into();
    t.note = Some("ok `code | here`\n<img src=x onerror=alert(1)> [x](y) `open".into());
    let metrics = [Metric::Accuracy, Metric::Ece];
    let view = metric::MetricTable {
        table: t.clone(),
        view: metric::View::new(&metrics, false),
        cells: BTreeMap::new(),
    };
    let ordering = crate::recipe::Ordering {
        first: evil_row.into(),
        below: false,
        second: "LS".into(),
        measure: crate::recipe::Measure::Acc,
    };
    let verdicts = verdict::assess(&t, &[ordering]).unwrap();
    for md in [
        Markdown.render(&t),
        view::markdown(&view),
        verdict::markdown(&verdicts, &t),
    ] {
        // Each Markdown table's lines have its header's number of unescaped `|`.
        let cells = |l: &str| l.replace("\\|", "").matches('|').count();
        let mut header = None;
        for l in md.lines() {
            match (l.starts_with('|'), header) {
                (false, _) => header = None,
                (true, None) => header = Some(cells(l)),
                (true, Some(n)) => assert_eq!(cells(l), n, "{l}\n{md}"),
            }
        }
        assert!(md.contains(&format!("| Method | {} |", markdown::text("A|<i>"))));
        let unescaped = md.replace("\\]", "");
        for bad in ["<script", "<img", "<i>", "](http", "](y)", "\n| x | y |"] {
            assert!(!unescaped.contains(bad), "{bad} in\n{md}");
        }
        assert!(md.starts_with("# T \\\\input"), "{md}");
    }
    let tex = Latex.render(&t);
    let body: Vec<&str> = tex.lines().skip_while(|l| l.starts_with('%')).collect();
    assert_eq!(body[0], "\\begin{table}[t]", "{tex}");
    assert_eq!(
        tex.lines().filter(|l| l.starts_with('%')).count(),
        3,
        "{tex}"
    );
    for live in ["\\input", "\\immediate", "\\write18"] {
        let outside_comments = body.join("\n");
        assert!(!outside_comments.contains(live), "{live} in\n{tex}");
    }
    assert!(tex.contains("Van|illa | x | y |"), "{tex}");
}
