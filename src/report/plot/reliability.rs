//! A cell's reliability diagram, its seeds' test (or validation) images pooled: the
//! metric's own 15 equal-width confidence bins (`metrics::ece`), a bar of accuracy per
//! non-empty bin, the gap to the bin's mean confidence shaded, the diagonal of perfect
//! calibration, and below it the share of images per bin.

use super::{err, legend, svg, DrawResult, FONT};
use crate::metrics::{self, Bin, ECE_BINS};
use plotters::prelude::*;

/// The accuracy bars.
pub(super) const BAR: RGBColor = RGBColor(52, 101, 164);
/// The gap between a bar and its bin's mean confidence.
pub(super) const GAP: RGBColor = RGBColor(204, 0, 0);
/// The histogram of images per bin.
pub(super) const COUNT: RGBColor = RGBColor(136, 138, 133);

const WIDTH: u32 = 360;
const HEIGHT: u32 = 400;
/// Height of the histogram below the diagram.
const HISTOGRAM: u32 = 100;

/// The pooled bins of a cell.
#[derive(Debug, Clone, PartialEq)]
pub struct Reliability {
    pub bins: Vec<Bin>,
    /// ECE of the pooled images (not the mean of the runs' ECEs that the table shows).
    pub ece: f64,
    /// Images pooled, and the runs they come from.
    pub images: usize,
    pub runs: usize,
}

impl Reliability {
    /// Bins the (top-label confidence, correct) pairs of `runs` runs, pooled.
    pub fn pooled(samples: &[(f64, bool)], runs: usize) -> Self {
        let (ece, bins) = metrics::ece(samples, ECE_BINS);
        Self {
            bins,
            ece,
            images: samples.len(),
            runs,
        }
    }

    /// The diagram as SVG, `title` above it.
    pub fn svg(&self, title: &str) -> anyhow::Result<String> {
        svg("reliability diagram", (WIDTH, HEIGHT), |root| {
            self.draw(root, title)
        })
    }

    fn draw(
        &self,
        root: &DrawingArea<SVGBackend, plotters::coord::Shift>,
        title: &str,
    ) -> DrawResult {
        let (top, bottom) = root.split_vertically(HEIGHT - HISTOGRAM);
        let mut chart = ChartBuilder::on(&top)
            .caption(format!("{title}: ECE {:.3}", self.ece), (FONT, 15))
            .margin_left(8)
            .margin_right(16)
            .margin_top(6)
            .x_label_area_size(28)
            .y_label_area_size(44)
            .build_cartesian_2d(0f64..1f64, 0f64..1f64)
            .map_err(err)?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(6)
            .y_labels(6)
            .x_label_formatter(&|x| format!("{x:.1}"))
            .y_label_formatter(&|y| format!("{y:.1}"))
            .y_desc("accuracy")
            .label_style((FONT, 11))
            .axis_desc_style((FONT, 12))
            .draw()
            .map_err(err)?;
        let used = || self.bins.iter().filter(|b| b.count > 0);
        chart
            .draw_series(
                used().map(|b| {
                    Rectangle::new([(b.lo, 0.0), (b.hi, b.accuracy)], BAR.mix(0.85).filled())
                }),
            )
            .map_err(err)?
            .label("accuracy")
            .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], BAR.filled()));
        chart
            .draw_series(used().filter(|b| b.accuracy != b.confidence).map(|b| {
                Rectangle::new(
                    [(b.lo, b.accuracy), (b.hi, b.confidence)],
                    GAP.mix(0.3).filled(),
                )
            }))
            .map_err(err)?
            .label("gap to mean confidence")
            .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], GAP.mix(0.3).filled()));
        // Thin white edges keep neighbouring bars apart; red ones outline the gaps, which
        // lie over the bars where accuracy exceeds confidence.
        chart
            .draw_series(
                used().map(|b| {
                    Rectangle::new([(b.lo, 0.0), (b.hi, b.accuracy)], WHITE.stroke_width(1))
                }),
            )
            .map_err(err)?;
        chart
            .draw_series(used().filter(|b| b.accuracy != b.confidence).map(|b| {
                Rectangle::new(
                    [(b.lo, b.accuracy), (b.hi, b.confidence)],
                    GAP.mix(0.7).stroke_width(1),
                )
            }))
            .map_err(err)?;
        chart
            .draw_series(DashedLineSeries::new(
                [(0.0, 0.0), (1.0, 1.0)],
                4,
                4,
                BLACK.mix(0.6).stroke_width(1),
            ))
            .map_err(err)?;
        legend(&mut chart, SeriesLabelPosition::UpperLeft)?;
        self.draw_counts(&bottom)
    }

    /// The share of images in each bin, under the diagram on the same confidence axis.
    fn draw_counts(&self, area: &DrawingArea<SVGBackend, plotters::coord::Shift>) -> DrawResult {
        let n = self.images.max(1) as f64;
        let top = self
            .bins
            .iter()
            .map(|b| b.count as f64 / n)
            .fold(0.0, f64::max)
            .max(0.05);
        let mut chart = ChartBuilder::on(area)
            .margin_left(8)
            .margin_right(16)
            .margin_bottom(4)
            .x_label_area_size(30)
            .y_label_area_size(44)
            .build_cartesian_2d(0f64..1f64, 0f64..top)
            .map_err(err)?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(6)
            .y_labels(3)
            .x_label_formatter(&|x| format!("{x:.1}"))
            .y_label_formatter(&|y| format!("{:.0}%", y * 100.0))
            .x_desc(format!(
                "confidence ({} images of {} run{})",
                self.images,
                self.runs,
                if self.runs == 1 { "" } else { "s" }
            ))
            .label_style((FONT, 11))
            .axis_desc_style((FONT, 12))
            .draw()
            .map_err(err)?;
        chart
            .draw_series(
                self.bins.iter().filter(|b| b.count > 0).map(|b| {
                    Rectangle::new([(b.lo, 0.0), (b.hi, b.count as f64 / n)], COUNT.filled())
                }),
            )
            .map_err(err)?;
        Ok(())
    }
}
