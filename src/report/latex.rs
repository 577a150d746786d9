//! The paper's layout as a LaTeX `booktabs` table, to paste into a paper: "acc ± std /
//! ECE" per cell, best per column in bold, the protocol as a comment.

use super::{Cell, Exporter, Table};

pub struct Latex;

/// Text safe in LaTeX: its special characters escaped, ± and Greek letters as math, a
/// control character (a newline, or two: a paragraph break inside the tabular) a space.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            c if c.is_control() => out.push(' '),
            '\\' => out.push_str("\\textbackslash{}"),
            '&' | '%' | '$' | '#' | '_' | '{' | '}' => {
                out.push('\\');
                out.push(c);
            }
            '~' => out.push_str("\\textasciitilde{}"),
            '^' => out.push_str("\\textasciicircum{}"),
            '±' => out.push_str("$\\pm$"),
            'α' => out.push_str("$\\alpha$"),
            'β' => out.push_str("$\\beta$"),
            'ε' => out.push_str("$\\varepsilon$"),
            '×' => out.push_str("$\\times$"),
            '−' => out.push('-'),
            _ => out.push(c),
        }
    }
    out
}

/// Text for a `%` comment line: a newline would end the comment and make the rest live
/// LaTeX, so every control character becomes a space.
pub fn comment(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn cell_text(c: &Cell, bold_acc: bool, bold_ece: bool, top5: bool) -> String {
    let b = |s: String, bold: bool| if bold { format!("\\textbf{{{s}}}") } else { s };
    let acc_ece = |acc: f64, sd: Option<f64>, ece: f64| {
        let mut a = b(format!("{acc:.2}"), bold_acc);
        if let Some(sd) = sd {
            a = format!("{a} $\\pm$ {sd:.2}");
        }
        format!("{a} / {}", b(format!("{ece:.3}"), bold_ece))
    };
    match c {
        Cell::Missing => "--".into(),
        Cell::Pending { failed: 0, .. } => "pending".into(),
        Cell::Pending { .. } => "failed".into(),
        Cell::Cited(p) => format!("{} (cited)", acc_ece(p.acc, p.acc_std, p.ece)),
        Cell::Done(s) => {
            let mut n = if s.n != s.seeds {
                format!(" ($n={}$)", s.n)
            } else {
                String::new()
            };
            if s.unverified > 0 {
                n.push_str(" (unverified)");
            }
            let text = acc_ece(s.acc_mean, s.acc_std, s.ece_mean);
            match s.top5_mean.filter(|_| top5) {
                // "top-1 / top-5 / ECE".
                Some(t5) => {
                    let (a, e) = text.rsplit_once(" / ").expect("acc / ece");
                    format!("{a} / {t5:.2} / {e}{n}")
                }
                None => format!("{text}{n}"),
            }
        }
    }
}

impl Exporter for Latex {
    fn extension(&self) -> &'static str {
        "tex"
    }

    fn render(&self, t: &Table) -> String {
        let mut s = format!(
            "% {}\n% Written by lecal (`lecal table {}`); needs \\usepackage{{booktabs}}.\n",
            comment(&t.title),
            comment(&t.name)
        );
        for line in t
            .protocol_text()
            .lines()
            .chain(t.remarks.iter().map(String::as_str))
        {
            s.push_str(&format!("% {}\n", comment(line)));
        }
        s.push_str("\\begin{table}[t]\n\\centering\n");
        s.push_str(&format!("\\caption{{{}}}\n", escape(&t.title)));
        s.push_str(&format!("\\label{{tab:{}}}\n", escape(&t.name)));
        s.push_str(&format!(
            "\\begin{{tabular}}{{l{}}}\n\\toprule\n",
            "c".repeat(t.columns.len())
        ));
        let head: Vec<String> = t.columns.iter().map(|c| escape(c)).collect();
        s.push_str(&format!("Method & {} \\\\\n\\midrule\n", head.join(" & ")));
        let best: Vec<_> = t.columns.iter().map(|c| t.best(c)).collect();
        for (i, row) in t.rows.iter().enumerate() {
            let cells: Vec<String> = t
                .columns
                .iter()
                .enumerate()
                .map(|(j, col)| {
                    let (ba, be) = &best[j];
                    cell_text(t.get(row, col), ba.contains(&i), be.contains(&i), t.top5)
                })
                .collect();
            s.push_str(&format!("{} & {} \\\\\n", escape(row), cells.join(" & ")));
        }
        s.push_str("\\bottomrule\n\\end{tabular}\n\\end{table}\n");
        s
    }
}
