//! A table's accuracy against ECE (the paper's concept figure: better methods sit up and
//! to the left): every cell with results, one colour per row and one marker shape per
//! column; filled markers are this reproduction (mean over seeds), hollow ones the
//! paper's published values (and cited rows), joined to the reproduction of their cell
//! by a thin line.

use super::{colour, err, padded, svg, DrawResult, FONT};
use crate::report::{Cell, Table};
use plotters::element::{Drawable, PointCollection};
use plotters::prelude::*;
use plotters_backend::{BackendCoord, DrawingErrorKind};

pub(super) const WIDTH: u32 = 780;
const HEIGHT: u32 = 470;
/// Width of the legend at the right.
pub(super) const LEGEND: u32 = 220;
const LEGEND_LINE: i32 = 17;

/// One point of the scatter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Mark {
    /// Indices into the table's rows and columns.
    pub row: usize,
    pub column: usize,
    /// Percent, and ECE as a fraction.
    pub acc: f64,
    pub ece: f64,
    /// A published (or cited) value rather than this reproduction's.
    pub published: bool,
}

impl Mark {
    /// Every point of a table: done cells, cited cells, and the paper's values.
    pub fn of_table(t: &Table) -> Vec<Mark> {
        let mut marks = Vec::new();
        for (row, r) in t.rows.iter().enumerate() {
            for (column, c) in t.columns.iter().enumerate() {
                let at = |acc, ece, published| Mark {
                    row,
                    column,
                    acc,
                    ece,
                    published,
                };
                match t.get(r, c) {
                    Cell::Done(s) => marks.push(at(s.acc_mean, s.ece_mean, false)),
                    // A cited cell is the paper's (or the literature's) value itself.
                    Cell::Cited(p) => {
                        marks.push(at(p.acc, p.ece, true));
                        continue;
                    }
                    _ => {}
                }
                if let Some(p) = t.paper.get(&(r.clone(), c.clone())) {
                    marks.push(at(p.acc, p.ece, true));
                }
            }
        }
        marks
    }
}

/// The scatter of `marks` as SVG; `rows` and `columns` name the legend's entries.
pub fn scatter(
    title: &str,
    rows: &[String],
    columns: &[String],
    marks: &[Mark],
) -> anyhow::Result<String> {
    svg("accuracy-against-ECE scatter", (WIDTH, HEIGHT), |root| {
        let root = root.titled(title, (FONT, 15)).map_err(err)?;
        let (plot, legend) = root.split_horizontally(WIDTH - LEGEND);
        draw_points(&plot, marks)?;
        match marks.is_empty() {
            true => Ok(()),
            false => draw_legend(&legend, rows, columns, marks),
        }
    })
}

fn draw_points(
    area: &DrawingArea<SVGBackend, plotters::coord::Shift>,
    marks: &[Mark],
) -> DrawResult {
    let range = |f: fn(&Mark) -> f64| {
        let lo = marks.iter().map(f).reduce(f64::min);
        let hi = marks.iter().map(f).reduce(f64::max);
        lo.zip(hi)
    };
    let (x0, x1) = range(|m| m.ece).map_or((0.0, 0.2), |(lo, hi)| padded(lo, hi, 0.08, 0.01));
    let (y0, y1) = range(|m| m.acc).map_or((0.0, 100.0), |(lo, hi)| padded(lo, hi, 0.08, 1.0));
    let mut chart = ChartBuilder::on(area)
        .margin(10)
        .x_label_area_size(36)
        .y_label_area_size(52)
        .build_cartesian_2d(x0.max(0.0)..x1, y0..y1)
        .map_err(err)?;
    chart
        .configure_mesh()
        .light_line_style(TRANSPARENT)
        .bold_line_style(BLACK.mix(0.08))
        .x_labels(8)
        .y_labels(8)
        .x_label_formatter(&|x| format!("{x:.3}"))
        .y_label_formatter(&|y| format!("{y:.1}"))
        .x_desc("ECE (15 bins; lower is better)")
        .y_desc("accuracy (%; higher is better)")
        .label_style((FONT, 11))
        .axis_desc_style((FONT, 12))
        .draw()
        .map_err(err)?;
    if marks.is_empty() {
        let (w, h) = area.dim_in_pixel();
        area.draw(&Text::new(
            "no cell has results yet",
            (w as i32 / 2 - 70, h as i32 / 2),
            (FONT, 14),
        ))
        .map_err(err)?;
        return Ok(());
    }
    // Each published value joined to the reproduction of its cell, under the markers.
    let ours = |m: &Mark| {
        marks
            .iter()
            .find(|o| !o.published && (o.row, o.column) == (m.row, m.column))
    };
    chart
        .draw_series(marks.iter().filter(|m| m.published).filter_map(|m| {
            let o = ours(m)?;
            Some(PathElement::new(
                [(m.ece, m.acc), (o.ece, o.acc)],
                colour(m.row).mix(0.45).stroke_width(1),
            ))
        }))
        .map_err(err)?;
    chart
        .draw_series(
            marks
                .iter()
                .map(|m| Marker::new(m.column, (m.ece, m.acc), colour(m.row), m.published)),
        )
        .map_err(err)?;
    Ok(())
}

/// The marker of a column: a circle, square, triangle, diamond, inverted triangle or plus
/// (repeated past six columns), filled or hollow, at one point. An element of its own because plotters' composed elements are
/// each of their own type, and its boxed ones only draw on a `'static` backend.
struct Marker<C> {
    at: C,
    shape: usize,
    colour: RGBColor,
    hollow: bool,
}

impl<C> Marker<C> {
    fn new(shape: usize, at: C, colour: RGBColor, hollow: bool) -> Self {
        Self {
            at,
            shape,
            colour,
            hollow,
        }
    }
}

impl<'a, C: 'a> PointCollection<'a, C> for &'a Marker<C> {
    type Point = &'a C;
    type IntoIter = std::iter::Once<&'a C>;
    fn point_iter(self) -> Self::IntoIter {
        std::iter::once(&self.at)
    }
}

impl<C, DB: DrawingBackend> Drawable<DB> for Marker<C> {
    fn draw<I: Iterator<Item = BackendCoord>>(
        &self,
        mut at: I,
        backend: &mut DB,
        _: (u32, u32),
    ) -> Result<(), DrawingErrorKind<DB::ErrorType>> {
        let Some((x, y)) = at.next() else {
            return Ok(());
        };
        let style = match self.hollow {
            true => self.colour.stroke_width(2),
            false => self.colour.filled(),
        };
        let offsets: &[(i32, i32)] = match self.shape % 6 {
            0 => return backend.draw_circle((x, y), 5, &style, !self.hollow),
            1 => return backend.draw_rect((x - 4, y - 4), (x + 4, y + 4), &style, !self.hollow),
            2 => &[(0, -6), (6, 4), (-6, 4)],
            3 => &[(0, -6), (6, 0), (0, 6), (-6, 0)],
            4 => &[(0, 6), (6, -4), (-6, -4)],
            _ => &[
                (-2, -6),
                (2, -6),
                (2, -2),
                (6, -2),
                (6, 2),
                (2, 2),
                (2, 6),
                (-2, 6),
                (-2, 2),
                (-6, 2),
                (-6, -2),
                (-2, -2),
            ],
        };
        let corners = offsets.iter().map(|(dx, dy)| (x + dx, y + dy));
        match self.hollow {
            // Closed: back to the first corner.
            true => backend.draw_path(
                corners.chain([(x + offsets[0].0, y + offsets[0].1)]),
                &style,
            ),
            false => backend.fill_polygon(corners, &style),
        }
    }
}

fn draw_legend(
    area: &DrawingArea<SVGBackend, plotters::coord::Shift>,
    rows: &[String],
    columns: &[String],
    marks: &[Mark],
) -> DrawResult {
    let grey = RGBColor(85, 87, 83);
    // (marker shape, colour, hollow, text); `None` is a half line between groups. Only
    // the rows and columns that have a point.
    let mut entries: Vec<Option<(usize, RGBColor, bool, &str)>> = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        if marks.iter().any(|m| m.row == i) {
            entries.push(Some((0, colour(i), false, r)));
        }
    }
    entries.push(None);
    for (j, c) in columns.iter().enumerate() {
        if marks.iter().any(|m| m.column == j) {
            entries.push(Some((j, grey, false, c)));
        }
    }
    entries.push(None);
    if marks.iter().any(|m| !m.published) {
        entries.push(Some((0, grey, false, "this reproduction")));
    }
    if marks.iter().any(|m| m.published) {
        entries.push(Some((0, grey, true, "the paper (or cited)")));
    }
    let font = (FONT, 12).into_font();
    let mut y = 24;
    for e in entries {
        let Some((shape, c, hollow, text)) = e else {
            y += LEGEND_LINE / 2;
            continue;
        };
        area.draw(&Marker::new(shape, (14, y), c, hollow))
            .map_err(err)?;
        area.draw(&Text::new(text.to_string(), (28, y - 7), font.clone()))
            .map_err(err)?;
        y += LEGEND_LINE;
    }
    Ok(())
}
