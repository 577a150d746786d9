//! The reproduction against the paper (`lecal table --verdicts`): for each done cell with a
//! published value, Δaccuracy (percentage points) and ΔECE, each with a verdict from the
//! seeds, a count of the cells reproduced, and whether the orderings the table spec names
//! (`orderings`) hold in every column.
//!
//! The rule: a published value is reproduced when it lies within the 95% confidence
//! interval of the mean over the n done seeds, mean ± t(0.975, n − 1) · s / √n (Student's
//! t with n − 1 degrees of freedom, s the sample standard deviation), or when it is within
//! a tolerance of the mean: `ACC_TOLERANCE` percentage points of accuracy, `ECE_TOLERANCE`
//! of ECE, bounds included. With one seed there is no interval and the tolerance alone
//! decides. The tolerance keeps seeds that agree closely with each other (a narrow
//! interval) from failing a value that differs by less than the paper's own rounding and
//! seed noise; the interval keeps noisy cells (a wide one) from failing on the tolerance.

use super::{Cell, CellStats, Table};
use crate::recipe::{Measure, Ordering, PaperValue};

/// Accuracy within 1 percentage point of the paper's counts as reproduced.
pub const ACC_TOLERANCE: f64 = 1.0;
/// ECE within 0.02 of the paper's counts as reproduced.
pub const ECE_TOLERANCE: f64 = 0.02;

/// t(0.975, dof), the two-sided 95% quantile of Student's t; for dof above 30 the
/// Cornish-Fisher expansion about the normal quantile (within 2e-6 there).
pub fn t_975(dof: usize) -> f64 {
    const TABLE: [f64; 30] = [
        12.706205, 4.302653, 3.182446, 2.776445, 2.570582, 2.446912, 2.364624, 2.306004, 2.262157,
        2.228139, 2.200985, 2.178813, 2.160369, 2.144787, 2.131450, 2.119905, 2.109816, 2.100922,
        2.093024, 2.085963, 2.079614, 2.073873, 2.068658, 2.063899, 2.059539, 2.055529, 2.051831,
        2.048407, 2.045230, 2.042272,
    ];
    assert!(dof >= 1, "a t quantile needs a degree of freedom");
    if dof <= TABLE.len() {
        return TABLE[dof - 1];
    }
    let (z, v): (f64, f64) = (1.959963984540054, dof as f64);
    z + (z.powi(3) + z) / (4.0 * v)
        + (5.0 * z.powi(5) + 16.0 * z.powi(3) + 3.0 * z) / (96.0 * v * v)
        + (3.0 * z.powi(7) + 19.0 * z.powi(5) + 17.0 * z.powi(3) - 15.0 * z) / (384.0 * v.powi(3))
}

/// The 95% confidence interval of a mean of `n` values with sample std `sd`; none for a
/// single value.
pub fn interval(mean: f64, sd: Option<f64>, n: usize) -> Option<(f64, f64)> {
    let sd = sd.filter(|_| n >= 2)?;
    let half = t_975(n - 1) * sd / (n as f64).sqrt();
    Some((mean - half, mean + half))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The paper's value lies within the 95% interval.
    WithinInterval,
    /// Outside the interval (or none), but within the tolerance.
    WithinTolerance,
    NotReproduced,
}

impl Verdict {
    pub fn reproduced(self) -> bool {
        self != Verdict::NotReproduced
    }

    fn mark(self) -> &'static str {
        if self.reproduced() {
            "✓"
        } else {
            "✗"
        }
    }

    fn name(self) -> &'static str {
        match self {
            Verdict::WithinInterval => "within-interval",
            Verdict::WithinTolerance => "within-tolerance",
            Verdict::NotReproduced => "not-reproduced",
        }
    }
}

/// One measure of one cell against the paper.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Check {
    pub mean: f64,
    pub sd: Option<f64>,
    pub paper: f64,
    /// mean − paper.
    pub delta: f64,
    pub interval: Option<(f64, f64)>,
    pub verdict: Verdict,
}

/// The rule of the module's comment, for `n` seeds of mean `mean` and sample std `sd`.
pub fn check(mean: f64, sd: Option<f64>, n: usize, paper: f64, tolerance: f64) -> Check {
    let interval = interval(mean, sd, n);
    // A difference equal to the tolerance counts, though its floating-point value may
    // exceed it by a rounding error (72.28 − 71.28 is 1.0000000000000142).
    let verdict = if interval.is_some_and(|(lo, hi)| lo <= paper && paper <= hi) {
        Verdict::WithinInterval
    } else if (mean - paper).abs() <= tolerance + 1e-9 {
        Verdict::WithinTolerance
    } else {
        Verdict::NotReproduced
    };
    Check {
        mean,
        sd,
        paper,
        delta: mean - paper,
        interval,
        verdict,
    }
}

/// A done cell with a published value.
#[derive(Debug, Clone, PartialEq)]
pub struct CellVerdict {
    pub row: String,
    pub column: String,
    pub n: usize,
    pub seeds: usize,
    pub acc: Check,
    pub ece: Check,
}

fn cell_verdict(row: &str, column: &str, s: &CellStats, p: &PaperValue) -> CellVerdict {
    CellVerdict {
        row: row.to_string(),
        column: column.to_string(),
        n: s.n,
        seeds: s.seeds,
        acc: check(s.acc_mean, s.acc_std, s.n, p.acc, ACC_TOLERANCE),
        ece: check(s.ece_mean, s.ece_std, s.n, p.ece, ECE_TOLERANCE),
    }
}

/// One ordering of the spec, in the paper and in the reproduction.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderingCheck {
    pub ordering: Ordering,
    /// Columns where the paper gives both rows, and how many of them keep the order.
    pub paper: (usize, usize),
    /// Columns where both rows have results (done, or cited), and those that break the
    /// order (equal means break a strict order).
    pub compared: usize,
    pub broken: Vec<String>,
}

impl OrderingCheck {
    /// Whether the reproduction keeps the order in every column with results (and has some).
    pub fn holds(&self) -> bool {
        self.compared > 0 && self.broken.is_empty()
    }
}

fn measure_of(m: Measure, acc: f64, ece: f64) -> f64 {
    match m {
        Measure::Acc => acc,
        Measure::Ece => ece,
    }
}

fn check_ordering(t: &Table, o: &Ordering) -> OrderingCheck {
    let ours = |row: &str, col: &str| match t.get(row, col) {
        Cell::Done(s) => Some(measure_of(o.measure, s.acc_mean, s.ece_mean)),
        Cell::Cited(p) => Some(measure_of(o.measure, p.acc, p.ece)),
        _ => None,
    };
    let paper = |row: &str, col: &str| {
        let p = t.paper.get(&(row.to_string(), col.to_string()))?;
        Some(measure_of(o.measure, p.acc, p.ece))
    };
    let kept = |a: f64, b: f64| if o.below { a < b } else { a > b };
    let (mut paper_cols, mut paper_kept, mut compared) = (0, 0, 0);
    let mut broken = Vec::new();
    for col in &t.columns {
        if let (Some(a), Some(b)) = (paper(&o.first, col), paper(&o.second, col)) {
            paper_cols += 1;
            paper_kept += kept(a, b) as usize;
        }
        if let (Some(a), Some(b)) = (ours(&o.first, col), ours(&o.second, col)) {
            compared += 1;
            if !kept(a, b) {
                broken.push(col.clone());
            }
        }
    }
    OrderingCheck {
        ordering: o.clone(),
        paper: (paper_kept, paper_cols),
        compared,
        broken,
    }
}

/// A table's verdicts.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdicts {
    /// In the table's row and column order.
    pub cells: Vec<CellVerdict>,
    pub orderings: Vec<OrderingCheck>,
}

impl Verdicts {
    /// (accuracy reproduced, ECE reproduced, cells checked).
    pub fn counts(&self) -> (usize, usize, usize) {
        let acc = self.cells.iter().filter(|c| c.acc.verdict.reproduced());
        let ece = self.cells.iter().filter(|c| c.ece.verdict.reproduced());
        (acc.count(), ece.count(), self.cells.len())
    }
}

/// Checks every done cell with a published value and every ordering; a table without
/// published values has nothing to be checked against.
pub fn assess(t: &Table, orderings: &[Ordering]) -> anyhow::Result<Verdicts> {
    if t.paper.is_empty() {
        anyhow::bail!(
            "table `{}` has no published values to check the reproduction against (its spec \
             sets no `paper` values)",
            t.name
        );
    }
    let mut cells = Vec::new();
    for row in &t.rows {
        for col in &t.columns {
            if let (Cell::Done(s), Some(p)) =
                (t.get(row, col), t.paper.get(&(row.clone(), col.clone())))
            {
                cells.push(cell_verdict(row, col, s, p));
            }
        }
    }
    Ok(Verdicts {
        cells,
        orderings: orderings.iter().map(|o| check_ordering(t, o)).collect(),
    })
}

/// The rule in words, for the table's text.
pub fn rule_text() -> String {
    format!(
        "Each cell: Δaccuracy (percentage points) / ΔECE, the reproduction's mean over seeds \
         less the paper's value, ✓ reproduced or ✗ not. Reproduced: the paper's value lies \
         within the 95% confidence interval of the mean, mean ± t(0.975, n − 1) · s / √n \
         (Student's t, s the sample standard deviation of the n done seeds), or within \
         {ACC_TOLERANCE} pp of accuracy / {ECE_TOLERANCE} of ECE of the mean (bounds \
         included); with one seed, the tolerance alone."
    )
}

fn ordering_text(o: &Ordering) -> String {
    let m = match o.measure {
        Measure::Acc => "Accuracy",
        Measure::Ece => "ECE",
    };
    let op = if o.below { "<" } else { ">" };
    let (first, second) = (
        super::markdown::text(&o.first),
        super::markdown::text(&o.second),
    );
    format!("{m}: {first} {op} {second}")
}

pub fn markdown(v: &Verdicts, t: &Table) -> String {
    let mut s = format!(
        "# {}: the reproduction against the paper\n\n",
        super::markdown::text(&t.title)
    );
    s.push_str(&super::markdown::header(t, "Method"));
    for row in &t.rows {
        s.push_str(&format!("| {} |", super::markdown::text(row)));
        for col in &t.columns {
            let found = v.cells.iter().find(|c| &c.row == row && &c.column == col);
            let text = match (found, t.get(row, col)) {
                (Some(c), _) => {
                    let n = if c.n != c.seeds {
                        format!(" (n={})", c.n)
                    } else {
                        String::new()
                    };
                    format!(
                        "{:+.2} {} / {:+.3} {}{n}",
                        c.acc.delta,
                        c.acc.verdict.mark(),
                        c.ece.delta,
                        c.ece.verdict.mark()
                    )
                }
                (None, Cell::Cited(_)) => "cited".into(),
                (None, Cell::Pending { .. })
                    if t.paper.contains_key(&(row.clone(), col.clone())) =>
                {
                    "pending".into()
                }
                _ => "—".into(),
            };
            s.push_str(&format!(" {text} |"));
        }
        s.push('\n');
    }
    let (acc, ece, n) = v.counts();
    s.push_str(&format!(
        "\n{}\n\n{acc} of {n} cells reproduced (accuracy), {ece} of {n} (ECE).\n",
        rule_text()
    ));
    if let Some(sc) = &t.scale {
        s.push_str(&format!(
            "\nScale `{sc}`: shrunk runs for a smoke check, not comparable with the paper.\n"
        ));
    }
    if !v.orderings.is_empty() {
        s.push_str(&orderings_markdown(&v.orderings));
    }
    s
}

fn orderings_markdown(os: &[OrderingCheck]) -> String {
    let mut s = String::from(
        "\n## Orderings of the paper\n\n\
         | Ordering | Paper | This reproduction |\n|:--|:-:|:-:|\n",
    );
    for o in os {
        let ours = if o.compared == 0 {
            "no results yet".to_string()
        } else if o.holds() {
            format!("holds ({0} of {0} columns)", o.compared)
        } else {
            format!(
                "fails in {} ({} of {} columns)",
                o.broken
                    .iter()
                    .map(|c| super::markdown::text(c))
                    .collect::<Vec<_>>()
                    .join(", "),
                o.compared - o.broken.len(),
                o.compared
            )
        };
        s.push_str(&format!(
            "| {} | {} of {} columns | {ours} |\n",
            ordering_text(&o.ordering),
            o.paper.0,
            o.paper.1
        ));
    }
    let with = os.iter().filter(|o| o.compared > 0).count();
    let holding = os.iter().filter(|o| o.holds()).count();
    s.push_str(&format!(
        "\nAn ordering holds when the reproduction's means (a cited row's published value) \
         keep it in every column where both rows have results. {holding} of {with} orderings \
         with results hold; {} await results.\n",
        os.len() - with
    ));
    s
}

pub fn csv(v: &Verdicts, t: &Table) -> String {
    let mut w = ::csv::Writer::from_writer(Vec::new());
    let mut head: Vec<String> = ["table", "row", "column", "n", "seeds"]
        .map(String::from)
        .to_vec();
    for m in ["acc", "ece"] {
        for f in [
            "mean", "std", "paper", "delta", "ci_low", "ci_high", "verdict",
        ] {
            head.push(format!("{m}_{f}"));
        }
    }
    w.write_record(&head).expect("in-memory CSV");
    let opt = |x: Option<f64>, d: usize| x.map_or(String::new(), |v| format!("{v:.d$}"));
    for c in &v.cells {
        let mut rec = vec![
            t.name.clone(),
            c.row.clone(),
            c.column.clone(),
            c.n.to_string(),
            c.seeds.to_string(),
        ];
        for (k, d) in [(&c.acc, 4), (&c.ece, 5)] {
            rec.extend([
                format!("{:.d$}", k.mean),
                opt(k.sd, d),
                format!("{:.d$}", k.paper),
                format!("{:+.d$}", k.delta),
                opt(k.interval.map(|i| i.0), d),
                opt(k.interval.map(|i| i.1), d),
                k.verdict.name().to_string(),
            ]);
        }
        w.write_record(&rec).expect("in-memory CSV");
    }
    String::from_utf8(w.into_inner().expect("in-memory CSV")).expect("UTF-8")
}

#[cfg(test)]
mod tests;
