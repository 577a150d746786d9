//! A table in a view of other measures (`lecal table --metric`, `--ts`), as Markdown and
//! CSV: each cell the view's measures as "mean ± std" joined by " / ", the best of each
//! measure per column in bold, and under the table where each number comes from and how
//! the temperatures were fitted.

use super::markdown::{self, header};
use super::metric::{Metric, MetricTable, ViewCell};
use super::Cell;
use crate::metrics::calibration::Fit;
use crate::recipe::{PaperValue, Split};

/// What a cited row gives a measure: the paper publishes accuracy and ECE, the latter
/// without temperature scaling.
fn cited(p: &PaperValue, m: Metric, ts: bool) -> Option<f64> {
    match m {
        Metric::Accuracy => Some(p.acc),
        Metric::Ece if !ts => Some(p.ece),
        _ => None,
    }
}

/// A value as printed, for comparing with the best of its column.
fn printed(x: f64, m: Metric) -> i64 {
    (x * 10f64.powi(m.digits() as i32)).round() as i64
}

fn view_cell<'a>(t: &'a MetricTable, row: &str, col: &str) -> Option<&'a ViewCell> {
    t.cells.get(&(row.to_string(), col.to_string()))
}

/// The value of the `k`th measure of a cell (mean over seeds; a cited row's published one).
fn value(t: &MetricTable, row: &str, col: &str, k: usize) -> Option<f64> {
    match t.table.get(row, col) {
        Cell::Done(_) => view_cell(t, row, col)?.values[k].map(|v| v.0),
        Cell::Cited(p) => cited(p, t.view.metrics[k], t.view.ts),
        _ => None,
    }
}

/// Per measure, the best printed value of a column (highest accuracy, lowest otherwise).
fn best(t: &MetricTable, col: &str) -> Vec<Option<i64>> {
    (0..t.view.metrics.len())
        .map(|k| {
            let m = t.view.metrics[k];
            let values = t
                .table
                .rows
                .iter()
                .filter_map(|r| value(t, r, col, k))
                .map(|x| printed(x, m));
            if m.higher_is_better() {
                values.max()
            } else {
                values.min()
            }
        })
        .collect()
}

fn number(x: f64, m: Metric, best: Option<i64>) -> String {
    let s = format!("{x:.*}", m.digits());
    if Some(printed(x, m)) == best {
        format!("**{s}**")
    } else {
        s
    }
}

fn cell_text(t: &MetricTable, row: &str, col: &str, best: &[Option<i64>]) -> String {
    let metrics = &t.view.metrics;
    match t.table.get(row, col) {
        Cell::Missing => "—".into(),
        Cell::Pending { .. } => "pending".into(),
        Cell::Cited(p) => {
            let parts: Vec<Option<String>> = (0..metrics.len())
                .map(|k| cited(p, metrics[k], t.view.ts).map(|x| number(x, metrics[k], best[k])))
                .collect();
            if parts.iter().all(Option::is_none) {
                return "—".into();
            }
            let parts: Vec<String> = parts.into_iter().map(|p| p.unwrap_or("—".into())).collect();
            format!("{} (cited)", parts.join(" / "))
        }
        Cell::Done(_) => {
            let Some(c) = view_cell(t, row, col) else {
                return "—".into();
            };
            let parts: Vec<String> = (0..metrics.len())
                .map(|k| match c.values[k] {
                    Some((mean, sd)) => {
                        let mut s = number(mean, metrics[k], best[k]);
                        if let Some(sd) = sd {
                            s.push_str(&format!(" ± {sd:.*}", metrics[k].digits()));
                        }
                        s
                    }
                    None => "—".into(),
                })
                .collect();
            let n = if c.n != c.seeds {
                format!(" (n={})", c.n)
            } else {
                String::new()
            };
            format!("{}{n}", parts.join(" / "))
        }
    }
}

fn on(split: Split) -> &'static str {
    match split {
        Split::Test => "the test set",
        Split::Validation => "the held-out validation set",
    }
}

/// "a, b and c".
fn listed(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => one.to_string(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

/// What the cells show and where each number comes from.
pub fn protocol_text(t: &MetricTable) -> String {
    let v = &t.view;
    let titles: Vec<&str> = v.metrics.iter().map(|m| m.title()).collect();
    let what = upper_first(&titles.join(" / "));
    let mut s = format!(
        "{what} on {}{}. Protocol: the last epoch of each run; mean ± sample standard \
         deviation over seeds, with n shown where fewer seeds finished than the recipe lists; \
         best per column in bold (highest accuracy, lowest for every other measure).",
        on(t.table.split),
        if v.ts {
            ", after temperature scaling"
        } else {
            ""
        }
    );
    let (logits, summary): (Vec<Metric>, Vec<Metric>) =
        v.metrics.iter().partition(|&&m| v.from_logits(m));
    let names = |ms: &[Metric]| listed(&ms.iter().map(|m| m.title()).collect::<Vec<_>>());
    match (logits.is_empty(), summary.is_empty()) {
        (true, _) => s.push_str(" Every number is the runs' summary.csv's."),
        (false, true) => s.push_str(&format!(
            " {} from each run's stored logits (logits.safetensors).",
            upper_first(&names(&logits))
        )),
        (false, false) => s.push_str(&format!(
            " {} from each run's stored logits (logits.safetensors), {} from its summary.csv.",
            upper_first(&names(&logits)),
            names(&summary)
        )),
    }
    if let Some(sc) = &t.table.scale {
        s.push_str(&format!(
            " Scale `{sc}`: shrunk runs for a smoke check, not comparable with the paper."
        ));
    }
    s
}

fn upper_first(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map_or(String::new(), |f| f.to_uppercase().chain(c).collect())
}

/// How the temperatures of the table were fitted.
pub fn ts_note(t: &MetricTable) -> String {
    let split = t.table.split;
    let cross = format!(
        "cross-fitted on {} as Ashukha et al. (2020) do: the images at even positions fit \
         one T (least NLL) that scales those at odd positions, and the reverse, and the \
         measures are computed on the two halves pooled",
        on(split)
    );
    let val = "fitted on its held-out validation split (least NLL; Guo et al. 2017) and \
               applied to its test logits";
    let fits = t.fits();
    let how = match (
        fits.contains(&Fit::Validation),
        fits.contains(&Fit::CrossFit),
    ) {
        (true, false) => format!("one T per run, {val}"),
        (false, true) if split == Split::Test => {
            format!("no run holds out a validation split, so each run's T is {cross}")
        }
        (false, _) if split == Split::Validation => format!("each run's T is {cross}"),
        // Both fits, or no run done yet: the rule itself.
        _ => format!("one T per run, {val} where the run holds one out, otherwise {cross}"),
    };
    format!(
        "Temperature scaling: {how}. Accuracy and top-5 are unchanged by it. The CSV gives \
         each cell's mean T (t_mean) and fit (ts_fit)."
    )
}

pub fn markdown(t: &MetricTable) -> String {
    let tb = &t.table;
    let mut s = format!("# {}\n\n", markdown::text(&tb.title));
    s.push_str(&header(tb, "Method"));
    let best: Vec<_> = tb.columns.iter().map(|c| best(t, c)).collect();
    for row in &tb.rows {
        s.push_str(&format!("| {} |", markdown::text(row)));
        for (j, col) in tb.columns.iter().enumerate() {
            s.push_str(&format!(" {} |", cell_text(t, row, col, &best[j])));
        }
        s.push('\n');
    }
    s.push('\n');
    s.push_str(&protocol_text(t));
    s.push('\n');
    if t.view.ts {
        s.push_str(&format!("\n{}\n", ts_note(t)));
    }
    if let Some(note) = &tb.note {
        s.push_str(&format!("\n{}\n", markdown::note(note)));
    }
    s
}

fn fit_name(fits: &std::collections::BTreeSet<Fit>) -> String {
    fits.iter()
        .map(|f| match f {
            Fit::Validation => "validation",
            Fit::CrossFit => "cross-fit",
        })
        .collect::<Vec<_>>()
        .join("+")
}

pub fn csv(t: &MetricTable) -> String {
    let mut w = ::csv::Writer::from_writer(Vec::new());
    let mut head: Vec<String> = ["table", "row", "column", "status", "n", "seeds"]
        .map(String::from)
        .to_vec();
    for m in &t.view.metrics {
        head.push(format!("{}_mean", m.column()));
        head.push(format!("{}_std", m.column()));
    }
    if t.view.ts {
        head.extend(["t_mean".to_string(), "ts_fit".to_string()]);
    }
    w.write_record(&head).expect("in-memory CSV");
    let width = 2 * t.view.metrics.len() + if t.view.ts { 2 } else { 0 };
    let tb = &t.table;
    for row in &tb.rows {
        for col in &tb.columns {
            let (status, n, seeds, mut nums) = match (tb.get(row, col), view_cell(t, row, col)) {
                (Cell::Done(_), Some(c)) => {
                    let status = if c.n == c.seeds { "done" } else { "partial" };
                    (status, c.n, c.seeds, numbers(t, c))
                }
                (Cell::Pending { seeds, .. }, _) => ("pending", 0, *seeds, vec![]),
                (Cell::Cited(_), _) => ("cited", 0, 0, vec![]),
                _ => ("missing", 0, 0, vec![]),
            };
            nums.resize(width, String::new());
            let mut rec = vec![
                tb.name.clone(),
                row.clone(),
                col.clone(),
                status.to_string(),
                n.to_string(),
                seeds.to_string(),
            ];
            rec.extend(nums);
            w.write_record(&rec).expect("in-memory CSV");
        }
    }
    String::from_utf8(w.into_inner().expect("in-memory CSV")).expect("UTF-8")
}

/// A done cell's CSV numbers: each measure's mean and std, then T and its fit.
fn numbers(t: &MetricTable, c: &ViewCell) -> Vec<String> {
    let mut out = Vec::new();
    for (m, v) in t.view.metrics.iter().zip(&c.values) {
        let d = m.csv_digits();
        out.push(v.map_or(String::new(), |v| format!("{:.d$}", v.0)));
        out.push(
            v.and_then(|v| v.1)
                .map_or(String::new(), |sd| format!("{sd:.d$}")),
        );
    }
    if t.view.ts {
        out.push(c.temperature.map_or(String::new(), |x| format!("{x:.4}")));
        out.push(fit_name(&c.fits));
    }
    out
}
