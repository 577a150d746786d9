//! The report's plots, as SVG text: a cell's reliability diagram (`reliability.rs`), its
//! learning curves (`curves.rs`), and a table's accuracy-against-ECE scatter
//! (`scatter.rs`). Each is a pure function of numbers already read from the results
//! folder, drawn with plotters' SVG backend, so the same numbers give the same bytes.
//!
//! plotters is built without its font features: SVG text is left to the browser, and
//! plotters only estimates text extents for its layout, so drawing needs no system fonts.

mod curves;
mod reliability;
mod scatter;

pub use curves::{Curve, Curves};
pub use reliability::Reliability;
pub use scatter::{scatter, Mark};

use plotters::prelude::*;

/// Colours of the rows of a table (and of the curves), in order; repeated past the end.
const PALETTE: [RGBColor; 12] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
    RGBColor(57, 59, 121),
    RGBColor(173, 73, 74),
];

pub(super) fn colour(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// The font every plot's text asks the browser for.
const FONT: &str = "sans-serif";

/// Draws into a `width × height` SVG and returns its text. plotters reports drawing
/// errors with the backend's error type; they become one message naming the plot.
fn svg(
    what: &str,
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<SVGBackend, plotters::coord::Shift>) -> DrawResult,
) -> anyhow::Result<String> {
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, size).into_drawing_area();
        root.fill(&WHITE)
            .map_err(|e| anyhow::anyhow!("cannot draw the {what}: {e}"))?;
        draw(&root).map_err(|e| anyhow::anyhow!("cannot draw the {what}: {e}"))?;
        root.present()
            .map_err(|e| anyhow::anyhow!("cannot draw the {what}: {e}"))?;
    }
    Ok(text)
}

/// What a plot's drawing closure returns: plotters' errors as text (their types name the
/// backend, which the callers need not know).
type DrawResult = Result<(), String>;

/// Turns any displayable plotters error into a `DrawResult` error.
fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// A chart on linear axes, as every plot here draws.
type Chart<'a, 'b> = ChartContext<
    'a,
    SVGBackend<'b>,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

/// The legend of a chart's labelled series, in a box at `at`.
fn legend<'a, 'b: 'a>(chart: &mut Chart<'a, 'b>, at: SeriesLabelPosition) -> DrawResult {
    chart
        .configure_series_labels()
        .position(at)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .label_font((FONT, 11))
        .draw()
        .map_err(err)
}

/// `lo..hi` widened by `pad` of its span on each side, and to at least `min_span`, so that
/// points do not sit on the frame and a single value still has an axis.
fn padded(lo: f64, hi: f64, pad: f64, min_span: f64) -> (f64, f64) {
    let (mut lo, mut hi) = (lo, hi);
    if hi - lo < min_span {
        let mid = (lo + hi) / 2.0;
        lo = mid - min_span / 2.0;
        hi = mid + min_span / 2.0;
    }
    let d = (hi - lo) * pad;
    (lo - d, hi + d)
}

#[cfg(test)]
mod tests;
