//! The report's HTML: one self-contained page (inline CSS, inline SVG, no script, no
//! font, no address outside the page) from a table and the parts `page.rs` prepared.
//! A pure function of its inputs, so the same results give the same bytes.

use super::markdown::cell_text;
use super::{Cell, Table};
use std::fmt::Write as _;

/// A plot: its SVG (inlined) and the file it is also written to, beside the page; or why
/// there is none.
pub(super) type Figure = Result<(String, String), String>;

/// What the page shows of one run: its seed and id, and its provenance when its
/// `run.toml` could be read.
pub(super) struct RunLine {
    pub seed: u64,
    pub id: String,
    pub provenance: Option<crate::store::Provenance>,
}

/// What the page shows of one cell with a recipe.
pub(super) struct CellPart {
    pub row: usize,
    pub column: usize,
    /// Seeds the recipe lists; the done runs among them.
    pub seeds: usize,
    pub runs: Vec<RunLine>,
    /// Reliability diagram and learning curves (empty while no run is done).
    pub figures: Vec<Figure>,
}

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;\
margin:2em auto;max-width:1180px;padding:0 1em;color:#222;line-height:1.45}\
h1{font-size:1.5em}h2{margin-top:2em;border-bottom:1px solid #ddd}h3{margin-bottom:.3em}\
table{border-collapse:collapse;margin:1em 0;font-size:.92em}\
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:center}\
th:first-child,td:first-child{text-align:left}thead th{background:#f3f3f3}\
td.pending{color:#999}td a{color:inherit;text-decoration:none}td a:hover{text-decoration:underline}\
figure{display:inline-block;margin:.5em 1em .5em 0;vertical-align:top}\
svg{max-width:100%;height:auto}figcaption{font-size:.85em;color:#555}\
code{background:#f5f5f5;padding:0 .2em}.note{color:#555}\
table.prov{font-size:.82em}table.prov td{text-align:left}";

/// Escapes text for HTML content and attribute values.
pub(super) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(ch),
        }
    }
    out
}

/// Markdown's `**bold**` in a cell's text as `<strong>`; the rest escaped.
fn strong(md: &str) -> String {
    escape(md)
        .split("**")
        .enumerate()
        .map(|(i, part)| match i {
            0 => part.to_string(),
            i if i % 2 == 1 => format!("<strong>{part}"),
            _ => format!("</strong>{part}"),
        })
        .collect()
}

/// The anchor of a cell's section.
pub(super) fn anchor(row: usize, column: usize) -> String {
    format!("cell-{}-{}", row + 1, column + 1)
}

/// A table of the rows × columns, each cell's HTML from `cell`.
fn grid(t: &Table, cell: impl Fn(usize, usize) -> String) -> String {
    let mut s = String::from("<table>\n<thead><tr><th>Method</th>");
    for c in &t.columns {
        let _ = write!(s, "<th>{}</th>", escape(c));
    }
    s.push_str("</tr></thead>\n<tbody>\n");
    for (i, r) in t.rows.iter().enumerate() {
        let _ = write!(s, "<tr><th>{}</th>", escape(r));
        for j in 0..t.columns.len() {
            s.push_str(&cell(i, j));
        }
        s.push_str("</tr>\n");
    }
    s.push_str("</tbody>\n</table>\n");
    s
}

/// The table as the Markdown export shows it; each cell with a section links to it.
fn main_table(t: &Table, parts: &[CellPart]) -> String {
    let best: Vec<_> = t.columns.iter().map(|c| t.best(c)).collect();
    grid(t, |i, j| {
        let c = t.get(&t.rows[i], &t.columns[j]);
        let (ba, be) = &best[j];
        let text = strong(&cell_text(c, ba.contains(&i), be.contains(&i), t.top5));
        let class = match c {
            Cell::Pending { .. } | Cell::Missing => " class=\"pending\"",
            _ => "",
        };
        match parts.iter().any(|p| (p.row, p.column) == (i, j)) {
            true => format!("<td{class}><a href=\"#{}\">{text}</a></td>", anchor(i, j)),
            false => format!("<td{class}>{text}</td>"),
        }
    })
}

/// The paper's values and the reproduction's difference from them, as in the Markdown.
fn paper_tables(t: &Table) -> String {
    let paper = |i: usize, j: usize| t.paper.get(&(t.rows[i].clone(), t.columns[j].clone()));
    let mut s = String::from("<h3>Published in the paper</h3>\n");
    s.push_str(&grid(t, |i, j| match paper(i, j) {
        Some(p) => match p.acc_std {
            Some(sd) => format!("<td>{:.2} ± {sd:.2} / {:.3}</td>", p.acc, p.ece),
            None => format!("<td>{:.2} / {:.3}</td>", p.acc, p.ece),
        },
        None => "<td class=\"pending\">—</td>".into(),
    }));
    s.push_str("<h3>Reproduction − paper</h3>\n");
    s.push_str(&grid(t, |i, j| {
        match (t.get(&t.rows[i], &t.columns[j]), paper(i, j)) {
            (Cell::Done(c), Some(p)) => format!(
                "<td>{:+.2} / {:+.3}</td>",
                c.acc_mean - p.acc,
                c.ece_mean - p.ece
            ),
            (Cell::Pending { .. }, Some(_)) => "<td class=\"pending\">pending</td>".into(),
            _ => "<td class=\"pending\">—</td>".into(),
        }
    }));
    s
}

fn figure(f: &Figure) -> String {
    match f {
        // Inline SVG needs no namespace declaration; without it the page names no address.
        Ok((svg, file)) => format!(
            "<figure>\n{}\n<figcaption>Also as <a href=\"{file}\">{file}</a>.</figcaption>\n</figure>\n",
            svg.replacen(" xmlns=\"http://www.w3.org/2000/svg\"", "", 1).trim_end(),
            file = escape(file)
        ),
        Err(why) => format!("<p class=\"note\">No plot: {}</p>\n", escape(why)),
    }
}

/// "2 h 05 min", "3 min 12 s", "42.0 s".
fn duration(s: f64) -> String {
    let whole = s.round() as u64;
    match whole {
        0..60 => format!("{s:.1} s"),
        60..3600 => format!("{} min {:02} s", whole / 60, whole % 60),
        _ => format!("{} h {:02} min", whole / 3600, whole % 3600 / 60),
    }
}

/// A commit as `<code>` of its first 12 digits (with `-dirty` when so), the whole in its
/// title.
fn commit(c: &str) -> String {
    let short: String = c.chars().take(12).collect();
    let short = match c.ends_with("-dirty") && c.len() > 12 {
        true => format!("{short}…-dirty"),
        false => short,
    };
    format!("<code title=\"{}\">{}</code>", escape(c), escape(&short))
}

/// The commit a run was built from, `-dirty` appended when its tree had changes (records
/// from before `git_dirty` existed carry the suffix in the commit itself).
fn commit_of(p: &crate::store::Provenance) -> String {
    match p.git_dirty && !p.git_commit.ends_with("-dirty") {
        true => format!("{}-dirty", p.git_commit),
        false => p.git_commit.clone(),
    }
}

/// One field of a provenance record, as text.
type Pick = fn(&crate::store::Provenance) -> String;

/// "a (3 runs), b (1 run)" of the values `pick` takes over `runs`.
fn tally<'a>(runs: impl Iterator<Item = &'a crate::store::Provenance>, pick: Pick) -> String {
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for p in runs {
        *counts.entry(pick(p)).or_default() += 1;
    }
    counts
        .iter()
        .map(|(v, n)| format!("{} ({n} run{})", escape(v), if *n == 1 { "" } else { "s" }))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every done run's provenance: a summary over all, then a line per run, by cell.
fn provenance(t: &Table, parts: &[CellPart]) -> String {
    let all: Vec<&crate::store::Provenance> = parts
        .iter()
        .flat_map(|p| &p.runs)
        .filter_map(|r| r.provenance.as_ref())
        .collect();
    let runs: usize = parts.iter().map(|p| p.runs.len()).sum();
    if runs == 0 {
        return "<p>No run of this table is done yet.</p>\n".into();
    }
    let mut s = format!(
        "<p>From the <code>run.toml</code> of each of the {runs} done runs ({} with a \
         readable record).</p>\n<ul>\n",
        all.len()
    );
    let items: [(&str, Pick); 5] = [
        ("lecal", |p| p.lecal_version.clone()),
        ("candle", |p| p.candle_version.clone()),
        ("git commit", commit_of),
        ("device", |p| p.device.clone()),
        ("host", |p| p.host.clone()),
    ];
    for (name, pick) in items {
        let _ = writeln!(s, "<li>{name}: {}</li>", tally(all.iter().copied(), pick));
    }
    let wall: f64 = all.iter().filter_map(|p| p.wall_seconds).sum();
    let _ = writeln!(
        s,
        "<li>training time, summed: {}</li>\n</ul>",
        duration(wall)
    );
    s.push_str(
        "<table class=\"prov\">\n<thead><tr><th>cell</th><th>seed</th><th>run</th><th>lecal</th>\
         <th>commit</th><th>device</th><th>host</th><th>time</th></tr></thead>\n<tbody>\n",
    );
    for p in parts {
        let cell = format!("{} · {}", t.rows[p.row], t.columns[p.column]);
        for r in &p.runs {
            let _ = write!(
                s,
                "<tr><td><a href=\"#{}\">{}</a></td><td>{}</td><td><code>{}</code></td>",
                anchor(p.row, p.column),
                escape(&cell),
                r.seed,
                escape(&r.id)
            );
            match &r.provenance {
                Some(v) => {
                    let mut time = v.wall_seconds.map_or("—".into(), duration);
                    if !v.resumed_after.is_empty() {
                        let after: Vec<String> =
                            v.resumed_after.iter().map(|e| e.to_string()).collect();
                        time.push_str(&format!(" (resumed after epoch {})", after.join(", ")));
                    }
                    let _ = writeln!(
                        s,
                        "<td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                        escape(&v.lecal_version),
                        commit(&commit_of(v)),
                        escape(&v.device),
                        escape(&v.host),
                        escape(&time)
                    );
                }
                None => s.push_str("<td colspan=\"5\">no readable run.toml</td></tr>\n"),
            }
        }
    }
    s.push_str("</tbody>\n</table>\n");
    s
}

/// A cell's section: its state, and its plots when a run is done.
fn cell_section(t: &Table, p: &CellPart) -> String {
    let (row, column) = (&t.rows[p.row], &t.columns[p.column]);
    let mut s = format!(
        "<section id=\"{}\">\n<h3>{} · {}</h3>\n",
        anchor(p.row, p.column),
        escape(row),
        escape(column)
    );
    let plural = |n: usize| if n == 1 { "" } else { "s" };
    if p.runs.is_empty() {
        let _ = writeln!(
            s,
            "<p>Pending: 0 of {} seed{} done.</p>",
            p.seeds,
            plural(p.seeds)
        );
    } else {
        let seeds: Vec<String> = p.runs.iter().map(|r| r.seed.to_string()).collect();
        let _ = writeln!(
            s,
            "<p>{} of {} seed{} done (seed{} {}).</p>",
            p.runs.len(),
            p.seeds,
            plural(p.seeds),
            plural(p.runs.len()),
            seeds.join(", ")
        );
    }
    for f in &p.figures {
        s.push_str(&figure(f));
    }
    s.push_str("</section>\n");
    s
}

/// The whole page.
pub(super) fn page(t: &Table, scatter: &Figure, parts: &[CellPart]) -> String {
    let title = escape(&t.title);
    let mut s = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>{title}</h1>\n"
    );
    let scale = t.scale.as_ref().map_or(String::new(), |sc| {
        format!(", scale <code>{}</code>", escape(sc))
    });
    let _ = writeln!(
        s,
        "<p class=\"note\">Table <code>{}</code>{scale}; written by <code>{}</code> from the \
         results folder. Contents: <a href=\"#table\">table</a> · \
         <a href=\"#scatter\">accuracy against ECE</a> · <a href=\"#cells\">cells</a> · \
         <a href=\"#provenance\">provenance</a>.</p>",
        escape(&t.name),
        escape(&t.report_command())
    );
    s.push_str("<h2 id=\"table\">Table</h2>\n");
    s.push_str(&main_table(t, parts));
    if !t.remarks.is_empty() {
        s.push_str("<ul>\n");
        for r in &t.remarks {
            let _ = writeln!(s, "<li>{}</li>", escape(r));
        }
        s.push_str("</ul>\n");
    }
    let _ = writeln!(s, "<p>{}</p>", escape(&t.protocol_text()));
    if let Some(note) = &t.note {
        let _ = writeln!(s, "<p class=\"note\">{}</p>", escape(note.trim()));
    }
    if !t.paper.is_empty() {
        s.push_str(&paper_tables(t));
    }
    s.push_str("<h2 id=\"scatter\">Accuracy against ECE</h2>\n");
    s.push_str(if t.paper.is_empty() {
        "<p>Each cell with results, the mean over its seeds. Up and to the left is better: \
         more accurate and better calibrated.</p>\n"
    } else {
        "<p>Each cell with results, the mean over its seeds (filled), and the paper's value \
         (hollow), joined to the reproduction of its cell. Up and to the left is better: \
         more accurate and better calibrated.</p>\n"
    });
    if !t.cells.values().any(|c| matches!(c, Cell::Done(_))) {
        s.push_str("<p class=\"note\">No cell has results yet.</p>\n");
    }
    s.push_str(&figure(scatter));
    s.push_str("<h2 id=\"cells\">Cells</h2>\n");
    s.push_str(
        "<p>Reliability diagrams pool the images of a cell's done seeds into the 15 \
         equal-width confidence bins of the ECE; the ECE in their titles is that of the \
         pooled images, not the mean over seeds that the table shows. Learning curves show \
         the mean over seeds and the range from the lowest to the highest.</p>\n",
    );
    if parts.is_empty() {
        s.push_str("<p>No recipe gives a cell of this table.</p>\n");
    }
    for p in parts {
        s.push_str(&cell_section(t, p));
    }
    s.push_str("<h2 id=\"provenance\">Provenance</h2>\n");
    s.push_str(&provenance(t, parts));
    s.push_str("</body>\n</html>\n");
    s
}
