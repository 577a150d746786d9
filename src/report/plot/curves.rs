//! A cell's learning curves from its runs' `epochs.csv`: loss (left) and accuracy (right)
//! per epoch, on the training batches and on the split the table reports, each the mean
//! over the seeds with a band from the lowest to the highest seed.

use super::{colour, err, legend, padded, svg, Chart, DrawResult, FONT};
use crate::store::EpochRecord;
use plotters::prelude::*;
use std::collections::BTreeMap;

const WIDTH: u32 = 720;
const HEIGHT: u32 = 300;
/// Above this many epochs the lines carry no point markers.
const MARKED_EPOCHS: usize = 30;

/// One measure per epoch over the seeds: (epoch, mean, lowest, highest).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Curve {
    pub points: Vec<(usize, f64, f64, f64)>,
}

impl Curve {
    /// The mean and range over the seeds of `pick` at every epoch any run reached.
    fn over(runs: &[Vec<EpochRecord>], pick: impl Fn(&EpochRecord) -> Option<f64>) -> Self {
        let mut by_epoch: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
        for r in runs.iter().flatten() {
            if let Some(v) = pick(r).filter(|v| v.is_finite()) {
                by_epoch.entry(r.epoch).or_default().push(v);
            }
        }
        let points = by_epoch
            .into_iter()
            .map(|(e, vs)| {
                let mean = vs.iter().sum::<f64>() / vs.len() as f64;
                let lo = vs.iter().cloned().fold(f64::INFINITY, f64::min);
                let hi = vs.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                (e, mean, lo, hi)
            })
            .collect();
        Self { points }
    }

    fn bounds(&self) -> Option<(f64, f64)> {
        let lo = self.points.iter().map(|p| p.2).reduce(f64::min)?;
        let hi = self.points.iter().map(|p| p.3).reduce(f64::max)?;
        Some((lo, hi))
    }
}

/// The curves of a cell.
#[derive(Debug, Clone, PartialEq)]
pub struct Curves {
    pub train_loss: Curve,
    pub eval_loss: Curve,
    pub train_acc: Curve,
    pub eval_acc: Curve,
    /// "test" or "validation": the images of `eval_*`.
    pub eval_name: &'static str,
    pub runs: usize,
}

impl Curves {
    /// The curves of a cell's runs (one `epochs.csv` each); `validation` takes the
    /// evaluated curves from the held-out validation images instead of the test set.
    pub fn over_seeds(runs: &[Vec<EpochRecord>], validation: bool) -> Self {
        let (eval_loss, eval_acc) = if validation {
            (
                Curve::over(runs, |r| r.val_loss),
                Curve::over(runs, |r| r.val_acc),
            )
        } else {
            (
                Curve::over(runs, |r| Some(r.test_loss)),
                Curve::over(runs, |r| Some(r.test_acc)),
            )
        };
        Self {
            train_loss: Curve::over(runs, |r| Some(r.train_loss)),
            eval_loss,
            train_acc: Curve::over(runs, |r| Some(r.train_acc)),
            eval_acc,
            eval_name: if validation { "validation" } else { "test" },
            runs: runs.len(),
        }
    }

    /// Both panels as one SVG, `title` above them.
    pub fn svg(&self, title: &str) -> anyhow::Result<String> {
        svg("learning curves", (WIDTH, HEIGHT), |root| {
            let root = root.titled(title, (FONT, 15)).map_err(err)?;
            let (left, right) = root.split_horizontally(WIDTH / 2);
            let band = if self.runs > 1 {
                format!(", band: lowest to highest of {} seeds", self.runs)
            } else {
                String::new()
            };
            panel(
                &left,
                &format!("loss (mean{band})"),
                [
                    (&self.train_loss, "train"),
                    (&self.eval_loss, self.eval_name),
                ],
                None,
                SeriesLabelPosition::UpperRight,
            )?;
            panel(
                &right,
                "accuracy (%)",
                [(&self.train_acc, "train"), (&self.eval_acc, self.eval_name)],
                Some((0.0, 100.0)),
                SeriesLabelPosition::LowerRight,
            )
        })
    }
}

/// One panel: two curves with their bands, y clipped to `clip` when given, the legend
/// where the curves seldom are (losses fall, accuracies rise).
fn panel(
    area: &DrawingArea<SVGBackend, plotters::coord::Shift>,
    y_desc: &str,
    curves: [(&Curve, &str); 2],
    clip: Option<(f64, f64)>,
    at: SeriesLabelPosition,
) -> DrawResult {
    let bounds: Vec<(f64, f64)> = curves.iter().filter_map(|(c, _)| c.bounds()).collect();
    let lo = bounds.iter().map(|b| b.0).reduce(f64::min).unwrap_or(0.0);
    let hi = bounds.iter().map(|b| b.1).reduce(f64::max).unwrap_or(1.0);
    let (mut y0, mut y1) = padded(lo, hi, 0.05, 1e-3);
    if let Some((a, b)) = clip {
        (y0, y1) = (y0.max(a), y1.min(b));
    } else {
        // A loss is never negative: start the axis at 0 rather than below it.
        y0 = y0.max(0.0);
    }
    let last = curves
        .iter()
        .filter_map(|(c, _)| c.points.last().map(|p| p.0))
        .max()
        .unwrap_or(1);
    let (x0, x1) = (0.5, last as f64 + 0.5);
    let mut chart = ChartBuilder::on(area)
        .margin(8)
        .x_label_area_size(32)
        .y_label_area_size(48)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(err)?;
    chart
        .configure_mesh()
        .light_line_style(TRANSPARENT)
        .bold_line_style(BLACK.mix(0.08))
        .x_labels(last.min(10))
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_labels(6)
        .x_desc("epoch")
        .y_desc(y_desc)
        .label_style((FONT, 11))
        .axis_desc_style((FONT, 12))
        .draw()
        .map_err(err)?;
    for (i, (curve, name)) in curves.iter().enumerate() {
        draw_curve(&mut chart, curve, name, colour(i))?;
    }
    legend(&mut chart, at)?;
    Ok(())
}

/// A curve's band (where the seeds differ), its mean, and its points while few.
fn draw_curve<'a, 'b: 'a>(
    chart: &mut Chart<'a, 'b>,
    curve: &Curve,
    name: &str,
    c: RGBColor,
) -> DrawResult {
    let pts = &curve.points;
    if pts.iter().any(|p| p.3 > p.2) {
        let upper = pts.iter().map(|p| (p.0 as f64, p.3));
        let lower = pts.iter().rev().map(|p| (p.0 as f64, p.2));
        chart
            .draw_series(std::iter::once(Polygon::new(
                upper.chain(lower).collect::<Vec<_>>(),
                c.mix(0.18),
            )))
            .map_err(err)?;
    }
    chart
        .draw_series(LineSeries::new(
            pts.iter().map(|p| (p.0 as f64, p.1)),
            c.stroke_width(2),
        ))
        .map_err(err)?
        .label(name)
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], c.stroke_width(2)));
    if pts.len() <= MARKED_EPOCHS {
        chart
            .draw_series(
                pts.iter()
                    .map(|p| Circle::new((p.0 as f64, p.1), 2, c.filled())),
            )
            .map_err(err)?;
    }
    Ok(())
}
