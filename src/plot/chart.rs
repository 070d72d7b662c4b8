//! Line charts: named series of (x, y) points on linear or logarithmic
//! axes, with a title, axis labels and a legend; loss curves are one.

use std::ops::Range;
use std::path::Path;

use plotters::coord::ranged1d::{AsRangedCoord, Ranged, ValueFormatter};
use plotters::prelude::*;

use super::{Area, DrawResult, format_number, render_png, text};
use crate::train::Record;
use crate::{Error, Result};

/// Series colours: matplotlib's `tab10`, which stay apart for most colour
/// vision.
const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

/// Series with at most this many points also mark each point, so that
/// sparse series (and single evaluations) stay visible.
const MARKED_POINTS: usize = 40;

/// Series with more points than this are drawn one pixel wide.
const DENSE_POINTS: usize = 300;

/// A line chart, built step by step and saved as a PNG.
///
/// Points that cannot be drawn (NaN, infinite, or not positive on a
/// logarithmic axis) break the line rather than failing the plot: a
/// diverged run's curve stops where the loss stopped being finite. A
/// logarithmic axis whose range holds no power of ten (3.9 to 4.2) is drawn
/// linear: plotters ticks log axes at powers of ten, and over so short a
/// range the two scales look alike.
///
/// ```no_run
/// use zeroformer::plot::LineChart;
/// LineChart::new("Validation accuracy")
///     .x_label("step")
///     .y_label("accuracy")
///     .log_x(true)
///     .series("val", [(10.0, 0.1), (100.0, 0.2), (1000.0, 0.99)])
///     .save("accuracy.png")?;
/// # Ok::<(), zeroformer::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct LineChart {
    title: String,
    x_label: String,
    y_label: String,
    log_x: bool,
    log_y: bool,
    size: (u32, u32),
    series: Vec<(String, Vec<(f64, f64)>)>,
}

impl LineChart {
    /// An empty 800x500 chart titled `title`, with linear axes.
    pub fn new(title: &str) -> LineChart {
        LineChart {
            title: title.to_string(),
            x_label: String::new(),
            y_label: String::new(),
            log_x: false,
            log_y: false,
            size: (800, 500),
            series: Vec::new(),
        }
    }

    /// Replaces the title.
    pub fn title(mut self, title: &str) -> LineChart {
        self.title = title.to_string();
        self
    }

    /// Labels the x axis.
    pub fn x_label(mut self, label: &str) -> LineChart {
        self.x_label = label.to_string();
        self
    }

    /// Labels the y axis.
    pub fn y_label(mut self, label: &str) -> LineChart {
        self.y_label = label.to_string();
        self
    }

    /// A logarithmic x axis.
    pub fn log_x(mut self, log: bool) -> LineChart {
        self.log_x = log;
        self
    }

    /// A logarithmic y axis.
    pub fn log_y(mut self, log: bool) -> LineChart {
        self.log_y = log;
        self
    }

    /// The image's width and height in pixels (800x500 unless set).
    pub fn size(mut self, width: u32, height: u32) -> LineChart {
        self.size = (width, height);
        self
    }

    /// Adds a series, drawn in the next colour and named in the legend.
    pub fn series(mut self, name: &str, points: impl IntoIterator<Item = (f64, f64)>) -> LineChart {
        self.series
            .push((name.to_string(), points.into_iter().collect()));
        self
    }

    /// The series' names, in drawing order.
    pub fn series_names(&self) -> impl Iterator<Item = &str> {
        self.series.iter().map(|(name, _)| name.as_str())
    }

    /// Writes the chart to `path` as a PNG.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        save_panels(std::slice::from_ref(self), path)
    }

    fn visible(&self, (x, y): (f64, f64)) -> bool {
        x.is_finite() && y.is_finite() && (!self.log_x || x > 0.0) && (!self.log_y || y > 0.0)
    }

    /// The axes' ranges: the visible points' extent, widened when empty or
    /// flat, with a margin above and below the curves.
    fn ranges(&self) -> (Range<f64>, Range<f64>) {
        let points = || {
            self.series
                .iter()
                .flat_map(|(_, p)| p.iter().copied())
                .filter(|&p| self.visible(p))
        };
        let extent = |values: Vec<f64>, log: bool| {
            let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            match (values.is_empty(), log) {
                (true, false) => (0.0, 1.0),
                (true, true) => (1.0, 10.0),
                (false, true) if lo == hi => (lo / 2.0, hi * 2.0),
                (false, false) if lo == hi => {
                    (lo - 0.5 * lo.abs().max(1.0), hi + 0.5 * hi.abs().max(1.0))
                }
                _ => (lo, hi),
            }
        };
        let (x0, x1) = extent(points().map(|p| p.0).collect(), self.log_x);
        let (y0, y1) = extent(points().map(|p| p.1).collect(), self.log_y);
        let (y0, y1) = if self.log_y {
            let pad = (y1 / y0).powf(0.05);
            (y0 / pad, y1 * pad)
        } else {
            let pad = 0.05 * (y1 - y0);
            (y0 - pad, y1 + pad)
        };
        (x0..x1, y0..y1)
    }

    /// The corner of the plot where the legend hides the fewest points.
    fn emptiest_corner(&self) -> SeriesLabelPosition {
        let (x, y) = self.ranges();
        let scale = |v: f64, r: &Range<f64>, log: bool| match log {
            true => (v.ln() - r.start.ln()) / (r.end.ln() - r.start.ln()),
            false => (v - r.start) / (r.end - r.start),
        };
        let points: Vec<(f64, f64)> = self
            .series
            .iter()
            .flat_map(|(_, p)| p.iter().copied())
            .filter(|&p| self.visible(p))
            .map(|(px, py)| (scale(px, &x, self.log_x), scale(py, &y, self.log_y)))
            .collect();
        let corners = [
            (SeriesLabelPosition::UpperRight, true, true),
            (SeriesLabelPosition::LowerRight, true, false),
            (SeriesLabelPosition::UpperLeft, false, true),
            (SeriesLabelPosition::LowerLeft, false, false),
        ];
        let hidden = |right: bool, upper: bool| {
            let near = |v: f64, high: bool| if high { v > 0.7 } else { v < 0.3 };
            points
                .iter()
                .filter(|&&(px, py)| near(px, right) && near(py, upper))
                .count()
        };
        corners
            .into_iter()
            .min_by_key(|&(_, right, upper)| hidden(right, upper))
            .map_or(SeriesLabelPosition::UpperRight, |(corner, _, _)| corner)
    }

    /// Draws the chart into `area`. A logarithmic axis whose range holds
    /// no power of ten is drawn linear: plotters ticks a log axis from
    /// powers of ten, so it would have no tick at all, and over less than a
    /// decade the two scales look alike.
    fn draw(&self, area: &Area<'_>) -> DrawResult {
        let (x, y) = self.ranges();
        let holds_power_of_ten = |r: &Range<f64>| r.end >= 10f64.powf(r.start.log10().ceil());
        let ticks_x = Ticks::of(&x, self.log_x && holds_power_of_ten(&x));
        let ticks_y = Ticks::of(&y, self.log_y && holds_power_of_ten(&y));
        match (ticks_x.log, ticks_y.log) {
            (false, false) => self.draw_on(area, (x, ticks_x), (y, ticks_y)),
            (true, false) => self.draw_on(area, (x.log_scale(), ticks_x), (y, ticks_y)),
            (false, true) => self.draw_on(area, (x, ticks_x), (y.log_scale(), ticks_y)),
            (true, true) => self.draw_on(area, (x.log_scale(), ticks_x), (y.log_scale(), ticks_y)),
        }
    }

    fn draw_on<X, Y>(&self, area: &Area<'_>, (x, tx): (X, Ticks), (y, ty): (Y, Ticks)) -> DrawResult
    where
        X: AsRangedCoord<Value = f64>,
        Y: AsRangedCoord<Value = f64>,
        X::CoordDescType: Ranged<ValueType = f64> + ValueFormatter<f64>,
        Y::CoordDescType: Ranged<ValueType = f64> + ValueFormatter<f64>,
    {
        let mut chart = ChartBuilder::on(area)
            .caption(&self.title, text(22.0))
            .margin(12)
            .x_label_area_size(45)
            .y_label_area_size(65)
            .build_cartesian_2d(x, y)?;
        chart
            .configure_mesh()
            .x_desc(&self.x_label)
            .y_desc(&self.y_label)
            .x_label_formatter(&|v| tx.label(*v))
            .y_label_formatter(&|v| ty.label(*v))
            .label_style(text(14.0))
            .axis_desc_style(text(16.0))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()?;
        for (i, (name, points)) in self.series.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            let mut segments: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
            for &p in points {
                match segments.last_mut() {
                    Some(segment) if self.visible(p) => segment.push(p),
                    Some(segment) if segment.is_empty() => {}
                    _ => segments.push(Vec::new()),
                }
            }
            // Dense series (every step of a run) are drawn thin and light,
            // so that sparser ones stay visible over them.
            let style = match points.len() > DENSE_POINTS {
                true => color.mix(0.6).stroke_width(1),
                false => color.stroke_width(2),
            };
            let mut labelled = false;
            for segment in segments.iter().filter(|s| !s.is_empty()) {
                let drawn = chart.draw_series(LineSeries::new(segment.iter().copied(), style))?;
                if !labelled && !name.is_empty() {
                    drawn
                        .label(name.as_str())
                        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
                    labelled = true;
                }
                if points.len() <= MARKED_POINTS {
                    chart
                        .draw_series(segment.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
                }
            }
        }
        if self.series.iter().any(|(name, _)| !name.is_empty()) {
            chart
                .configure_series_labels()
                .label_font(text(15.0))
                .background_style(WHITE.mix(0.85))
                .border_style(RGBColor(180, 180, 180))
                .position(self.emptiest_corner())
                .draw()?;
        }
        Ok(())
    }
}

/// Writes `charts` side by side, left to right, as one PNG (each at its
/// own size; the image is as tall as the tallest).
pub fn save_panels(charts: &[LineChart], path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    if charts.is_empty() {
        return Err(Error::InvalidConfig(format!(
            "plot {}: no chart to draw",
            path.display()
        )));
    }
    let width = charts.iter().map(|c| c.size.0).sum();
    let height = charts.iter().map(|c| c.size.1).max().unwrap_or(1);
    render_png(path, (width, height), |area| {
        area.fill(&WHITE)?;
        let mut left = 0;
        for chart in charts {
            let panel = area.clone().shrink((left, 0), chart.size);
            chart.draw(&panel)?;
            left += chart.size.0;
        }
        Ok(())
    })
}

/// The loss of every split in `records` against the step, one series per
/// split in order of first appearance (records without a split are
/// `train`'s). Fails when no record has a loss.
pub fn loss_chart(records: &[Record]) -> Result<LineChart> {
    let mut splits: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    for record in records {
        let Some(loss) = record.loss else { continue };
        let split = record.split.as_deref().unwrap_or("train");
        let point = (record.step as f64, loss);
        match splits.iter_mut().find(|(name, _)| name == split) {
            Some((_, points)) => points.push(point),
            None => splits.push((split.to_string(), vec![point])),
        }
    }
    if splits.is_empty() {
        return Err(Error::InvalidData(format!(
            "none of the {} metrics records has a loss: there is no curve to draw",
            records.len()
        )));
    }
    let chart = LineChart::new("Loss").x_label("step").y_label("loss");
    Ok(splits
        .into_iter()
        .fold(chart, |chart, (name, points)| chart.series(&name, points)))
}

/// Draws [`loss_chart`] to `path`: every split's loss against the step.
pub fn loss_curves(records: &[Record], path: impl AsRef<Path>) -> Result<()> {
    loss_chart(records)?.save(path)
}

/// How an axis is ticked and labelled.
#[derive(Clone, Copy)]
struct Ticks {
    /// Logarithmic.
    log: bool,
    /// Label only 1, 2 and 5 x 10^k: a logarithmic axis over more than a
    /// decade ticks every 1..9 x 10^k, too many labels to fit.
    sparse: bool,
}

impl Ticks {
    fn of(range: &Range<f64>, log: bool) -> Ticks {
        Ticks {
            log,
            sparse: log && range.end > 10.0 * range.start,
        }
    }

    fn label(&self, v: f64) -> String {
        if self.sparse && v > 0.0 {
            let mantissa = v / 10f64.powf(v.log10().floor());
            if ![1.0, 2.0, 5.0, 10.0]
                .iter()
                .any(|m| (mantissa - m).abs() < 1e-6 * m)
            {
                return String::new();
            }
        }
        format_number(v)
    }
}
