//! One row per cell with every number, for plots and further analysis.

use super::{Cell, Exporter, Table};

pub struct Csv;

fn opt(x: Option<f64>, digits: usize) -> String {
    x.map_or(String::new(), |v| format!("{v:.digits$}"))
}

impl Exporter for Csv {
    fn extension(&self) -> &'static str {
        "csv"
    }

    fn render(&self, t: &Table) -> String {
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record([
            "table",
            "row",
            "column",
            "status",
            "n",
            "seeds",
            "acc_mean",
            "acc_std",
            "ece_mean",
            "ece_std",
            "nll_mean",
            "brier_mean",
            "top5_mean",
            "paper_acc",
            "paper_acc_std",
            "paper_ece",
        ])
        .expect("in-memory CSV");
        for row in &t.rows {
            for col in &t.columns {
                let p = t.paper.get(&(row.clone(), col.clone()));
                let (status, n, seeds, nums) = match t.get(row, col) {
                    Cell::Missing => ("missing", 0, 0, vec![String::new(); 7]),
                    Cell::Pending { seeds, failed } => {
                        let state = if *failed > 0 { "failed" } else { "pending" };
                        (state, 0, *seeds, vec![String::new(); 7])
                    }
                    Cell::Cited(_) => ("cited", 0, 0, vec![String::new(); 7]),
                    Cell::Done(s) => (
                        match (s.n == s.seeds, s.unverified > 0) {
                            (_, true) => "unverified",
                            (true, false) => "done",
                            (false, false) => "partial",
                        },
                        s.n,
                        s.seeds,
                        vec![
                            format!("{:.4}", s.acc_mean),
                            opt(s.acc_std, 4),
                            format!("{:.5}", s.ece_mean),
                            opt(s.ece_std, 5),
                            format!("{:.5}", s.nll_mean),
                            format!("{:.5}", s.brier_mean),
                            opt(s.top5_mean, 4),
                        ],
                    ),
                };
                let mut rec = vec![
                    t.name.clone(),
                    row.clone(),
                    col.clone(),
                    status.to_string(),
                    n.to_string(),
                    seeds.to_string(),
                ];
                rec.extend(nums);
                rec.push(opt(p.map(|p| p.acc), 2));
                rec.push(opt(p.and_then(|p| p.acc_std), 2));
                rec.push(opt(p.map(|p| p.ece), 3));
                w.write_record(&rec).expect("in-memory CSV");
            }
        }
        String::from_utf8(w.into_inner().expect("in-memory CSV")).expect("UTF-8")
    }
}
