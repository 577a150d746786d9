//! The paper's layout in Markdown: "acc ± std / ECE" per cell, best per column in bold;
//! last, a link to the table's report. The link is always there, whether or not the
//! report has been written yet: the table is a function of the results alone, so `lecal
//! table` gives the same bytes before and after `lecal report` (committed tables are
//! compared byte for byte), and the line names the command that writes the report.

use super::{Cell, Exporter, Table};

pub struct Markdown;

/// Recipe text (a title, row, column) as Markdown that shows it and does nothing else: a
/// control character (a newline would end a table row) becomes a space; `|` would start a
/// table cell, `<` and `>` raw HTML, `[` and `]` a link or image, `*`, `_` and `` ` ``
/// emphasis or code: each is escaped, as is the backslash.
pub fn text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            c if c.is_control() => out.push(' '),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\\' | '|' | '[' | ']' | '*' | '_' | '`' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// A table's note (a paragraph): `text`, but its `code spans` kept as code, where
/// nothing is markup; a backtick without its pair is escaped.
pub fn note(s: &str) -> String {
    let parts: Vec<&str> = s.trim().split('`').collect();
    let closed = parts.len() % 2 == 1;
    let mut out = String::new();
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        if i % 2 == 1 && (closed || !last) {
            let code: String = part
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
            out.push_str(&format!("`{code}`"));
        } else {
            if i % 2 == 1 {
                out.push_str("\\`");
            }
            out.push_str(&text(part));
        }
    }
    out
}

pub(super) fn cell_text(c: &Cell, bold_acc: bool, bold_ece: bool, top5: bool) -> String {
    let b = |s: String, bold: bool| if bold { format!("**{s}**") } else { s };
    match c {
        Cell::Missing => "—".into(),
        Cell::Pending { failed: 0, .. } => "pending".into(),
        Cell::Pending { .. } => "failed".into(),
        Cell::Cited(p) => {
            let mut acc = b(format!("{:.2}", p.acc), bold_acc);
            if let Some(sd) = p.acc_std {
                acc = format!("{acc} ± {sd:.2}");
            }
            format!("{acc} / {} (cited)", b(format!("{:.3}", p.ece), bold_ece))
        }
        Cell::Done(s) => {
            let mut acc = format!("{:.2}", s.acc_mean);
            if bold_acc {
                acc = format!("**{acc}**");
            }
            if let Some(sd) = s.acc_std {
                acc = format!("{acc} ± {sd:.2}");
            }
            if let Some(t5) = s.top5_mean.filter(|_| top5) {
                acc = format!("{acc} / {t5:.2}");
            }
            let mut ece = format!("{:.3}", s.ece_mean);
            if bold_ece {
                ece = format!("**{ece}**");
            }
            let n = if s.n != s.seeds {
                format!(" (n={})", s.n)
            } else {
                String::new()
            };
            let unverified = if s.unverified > 0 {
                " (unverified)"
            } else {
                ""
            };
            format!("{acc} / {ece}{n}{unverified}")
        }
    }
}

pub(super) fn header(t: &Table, first: &str) -> String {
    let mut s = format!("| {first} |");
    for c in &t.columns {
        s.push_str(&format!(" {} |", text(c)));
    }
    s.push_str("\n|:--|");
    for _ in &t.columns {
        s.push_str(":-:|");
    }
    s.push('\n');
    s
}

impl Exporter for Markdown {
    fn extension(&self) -> &'static str {
        "md"
    }

    fn render(&self, t: &Table) -> String {
        let mut s = format!("# {}\n\n", text(&t.title));
        s.push_str(&header(t, "Method"));
        let best: Vec<_> = t.columns.iter().map(|c| t.best(c)).collect();
        for (i, row) in t.rows.iter().enumerate() {
            s.push_str(&format!("| {} |", text(row)));
            for (j, col) in t.columns.iter().enumerate() {
                let (ba, be) = &best[j];
                let text = cell_text(t.get(row, col), ba.contains(&i), be.contains(&i), t.top5);
                s.push_str(&format!(" {text} |"));
            }
            s.push('\n');
        }
        s.push('\n');
        for r in &t.remarks {
            s.push_str(&format!("- {}\n", text(r)));
        }
        if !t.remarks.is_empty() {
            s.push('\n');
        }
        s.push_str(&t.protocol_text());
        s.push('\n');
        if let Some(n) = &t.note {
            s.push_str(&format!("\n{}\n", note(n)));
        }
        if !t.paper.is_empty() {
            s.push_str("\n## Published in the paper\n\n");
            s.push_str(&header(t, "Method"));
            for row in &t.rows {
                s.push_str(&format!("| {} |", text(row)));
                for col in &t.columns {
                    let text = match t.paper.get(&(row.clone(), col.clone())) {
                        Some(p) => match p.acc_std {
                            Some(sd) => format!("{:.2} ± {sd:.2} / {:.3}", p.acc, p.ece),
                            None => format!("{:.2} / {:.3}", p.acc, p.ece),
                        },
                        None => "—".into(),
                    };
                    s.push_str(&format!(" {text} |"));
                }
                s.push('\n');
            }
            s.push_str("\n## Reproduction − paper\n\n");
            s.push_str(&header(t, "Method"));
            for row in &t.rows {
                s.push_str(&format!("| {} |", text(row)));
                for col in &t.columns {
                    let p = t.paper.get(&(row.clone(), col.clone()));
                    let text = match (t.get(row, col), p) {
                        (Cell::Done(c), Some(p)) => {
                            format!("{:+.2} / {:+.3}", c.acc_mean - p.acc, c.ece_mean - p.ece)
                        }
                        (Cell::Pending { .. }, Some(_)) => "pending".into(),
                        _ => "—".into(),
                    };
                    s.push_str(&format!(" {text} |"));
                }
                s.push('\n');
            }
        }
        let stem = t.stem();
        s.push_str(&format!(
            "\nPlots, protocol and provenance: [report/{stem}/{index}](../report/{stem}/{index}) \
             (`{}`).\n",
            t.report_command(),
            index = super::INDEX
        ));
        s
    }
}
