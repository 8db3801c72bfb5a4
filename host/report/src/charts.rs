//! Charts as inline SVG, drawn by `plotters` (its SVG backend writes text as `<text>`, so a
//! chart needs no font file and no script). Each chart comes as a `<figure>` with its numbers
//! in a table beside it: what a screen reader, a printout and the browser tests read.

use plotters::prelude::*;
use serde::Serialize;

/// Width and height of a chart's drawing, px (it scales down with the page).
const SIZE: (u32, u32) = (560, 300);

/// Series colours: distinguishable, and in print.
const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// One named line or point cloud.
#[derive(Debug, Clone)]
pub struct Series {
    /// Its legend.
    pub name: String,
    /// Its points (x, y), finite values only.
    pub points: Vec<(f64, f64)>,
}

/// How the points are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Lines through marked points (values against load).
    Line,
    /// Points only (one per request).
    Scatter,
}

/// What a chart shows.
#[derive(Debug, Clone)]
pub struct Chart {
    /// A stable id (`sweep-latency`, `run-ttft`), for links and tests.
    pub id: String,
    /// The caption.
    pub title: String,
    /// The x axis.
    pub x_label: String,
    /// The y axis.
    pub y_label: String,
    /// Lines or points.
    pub style: Style,
    /// Labels of integer x positions (a sweep's loads, evenly spaced); None for a numeric axis.
    pub x_ticks: Option<Vec<String>>,
    /// The series; empty ones are left out.
    pub series: Vec<Series>,
    /// A note under the chart (how the points were thinned).
    pub note: Option<String>,
}

/// A chart ready for the page.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    /// The chart's id.
    pub id: String,
    /// The caption.
    pub title: String,
    /// The drawing.
    pub svg: String,
    /// Points drawn (markers), for the tests and the reader.
    pub points: usize,
    /// The note under it.
    pub note: Option<String>,
    /// The numbers of a line chart: head and rows (scatter charts have none).
    pub table: Option<crate::page::Table>,
}

impl Chart {
    /// Whether there is anything to draw.
    pub fn is_empty(&self) -> bool {
        self.series.iter().all(|s| s.points.is_empty())
    }

    /// Draws the chart.
    pub fn figure(&self) -> Figure {
        let series: Vec<&Series> = self
            .series
            .iter()
            .filter(|s| !s.points.is_empty())
            .collect();
        let svg = match draw(self, &series) {
            Ok(svg) => svg,
            Err(e) => format!(
                "<p class=\"chart-error\">chart not drawn: {}</p>",
                escape(&e)
            ),
        };
        Figure {
            id: self.id.clone(),
            title: self.title.clone(),
            svg,
            points: series.iter().map(|s| s.points.len()).sum(),
            note: self.note.clone(),
            table: (self.style == Style::Line).then(|| self.table(&series)),
        }
    }

    fn table(&self, series: &[&Series]) -> crate::page::Table {
        let mut xs: Vec<f64> = series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.0))
            .collect();
        xs.sort_by(f64::total_cmp);
        xs.dedup();
        let mut head = vec![self.x_label.clone()];
        head.extend(series.iter().map(|s| s.name.clone()));
        let rows = xs
            .iter()
            .map(|x| {
                let mut row = vec![self.x_text(*x)];
                row.extend(series.iter().map(|s| {
                    s.points
                        .iter()
                        .find(|p| p.0 == *x)
                        .map(|p| crate::page::number(p.1))
                        .unwrap_or_default()
                }));
                row
            })
            .collect();
        crate::page::Table { head, rows }
    }

    fn x_text(&self, x: f64) -> String {
        match &self.x_ticks {
            Some(ticks) => tick(ticks, x),
            None => crate::page::number(x),
        }
    }
}

fn tick(ticks: &[String], x: f64) -> String {
    let i = x.round();
    if (x - i).abs() > 1e-6 || i < 0.0 {
        return String::new();
    }
    ticks.get(i as usize).cloned().unwrap_or_default()
}

fn draw(chart: &Chart, series: &[&Series]) -> Result<String, String> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let (xr, yr) = ranges(chart, series);
        let mut ctx = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(64)
            .build_cartesian_2d(xr, yr)
            .map_err(|e| e.to_string())?;
        let ticks = chart.x_ticks.clone();
        let x_fmt = move |x: &f64| match &ticks {
            Some(t) => tick(t, *x),
            None => short(*x),
        };
        let mut mesh = ctx.configure_mesh();
        mesh.x_desc(chart.x_label.as_str())
            .y_desc(chart.y_label.as_str())
            .x_label_formatter(&x_fmt)
            .y_label_formatter(&|y| short(*y))
            .label_style(("sans-serif", 13))
            .axis_desc_style(("sans-serif", 13))
            .bold_line_style(RGBColor(225, 228, 232))
            .light_line_style(TRANSPARENT);
        if let Some(t) = &chart.x_ticks {
            mesh.x_labels(t.len().max(2));
        }
        mesh.draw().map_err(|e| e.to_string())?;
        for (i, s) in series.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            let points = s.points.iter().copied();
            match chart.style {
                Style::Line => {
                    ctx.draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
                        .map_err(|e| e.to_string())?
                        .label(s.name.as_str())
                        .legend(move |(x, y)| {
                            PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
                        });
                    ctx.draw_series(points.map(|p| Circle::new(p, 3, color.filled())))
                        .map_err(|e| e.to_string())?;
                }
                Style::Scatter => {
                    ctx.draw_series(points.map(|p| Circle::new(p, 2, color.mix(0.55).filled())))
                        .map_err(|e| e.to_string())?
                        .label(s.name.as_str())
                        .legend(move |(x, y)| Circle::new((x + 8, y), 3, color.filled()));
                }
            }
        }
        if series.len() > 1 {
            ctx.configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .label_font(("sans-serif", 12))
                .background_style(WHITE.mix(0.85))
                .border_style(RGBColor(200, 200, 200))
                .draw()
                .map_err(|e| e.to_string())?;
        }
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(compact(&out))
}

/// The drawing without the attributes plotters repeats on every marker at their default
/// values: a third of a scatter chart's bytes.
fn compact(svg: &str) -> String {
    svg.replace(" opacity=\"1\"", "")
        .replace(" stroke=\"none\" stroke-width=\"1\"", " stroke=\"none\"")
}

/// The axes' ranges: y from 0 (every metric here is a size, a time or a rate) to a little
/// above the largest value.
fn ranges(chart: &Chart, series: &[&Series]) -> (std::ops::Range<f64>, std::ops::Range<f64>) {
    let all = || series.iter().flat_map(|s| s.points.iter());
    let (mut x0, mut x1) = all().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
        (a.min(p.0), b.max(p.0))
    });
    let y1 = all().fold(0.0f64, |m, p| m.max(p.1));
    if chart.x_ticks.is_some() {
        x0 = -0.3;
        x1 = (chart.x_ticks.as_ref().map_or(1, Vec::len) as f64 - 1.0).max(0.0) + 0.3;
    } else if !(x0.is_finite() && x1 > x0) {
        let c = if x0.is_finite() { x0 } else { 0.0 };
        x0 = c - 0.5;
        x1 = c + 0.5;
    } else {
        // Points at the ends stay off the axes.
        let pad = (x1 - x0) * 0.02;
        x0 -= pad;
        x1 += pad;
    }
    // Room above the lines for the legend.
    let headroom = if series.len() > 1 { 1.35 } else { 1.12 };
    let y1 = if y1 > 0.0 { y1 * headroom } else { 1.0 };
    (x0..x1, 0.0..y1)
}

/// An axis label: few digits, SI suffix for large values.
fn short(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if a >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart(style: Style, points: Vec<(f64, f64)>) -> Chart {
        Chart {
            id: "t".into(),
            title: "T".into(),
            x_label: "concurrency".into(),
            y_label: "ms".into(),
            style,
            x_ticks: Some(vec!["1".into(), "8".into(), "64".into()]),
            series: vec![Series {
                name: "avg".into(),
                points,
            }],
            note: None,
        }
    }

    #[test]
    fn a_line_chart_is_svg_with_one_marker_per_point_and_its_numbers_in_a_table() {
        let f = chart(Style::Line, vec![(0.0, 1.5), (1.0, 2.25), (2.0, 40.0)]).figure();
        assert!(
            f.svg.starts_with("<svg"),
            "{}",
            &f.svg[..80.min(f.svg.len())]
        );
        assert_eq!(f.svg.matches("<circle").count(), 3);
        assert_eq!(f.points, 3);
        let t = f.table.expect("a line chart has a table");
        assert_eq!(t.head, ["concurrency", "avg"]);
        assert_eq!(t.rows[1], ["8", "2.25"]);
        let labels: Vec<&str> = f
            .svg
            .split("<text")
            .skip(1)
            .filter_map(|t| t.split('\n').nth(1))
            .collect();
        assert!(
            labels.ends_with(&["1", "8", "64"]),
            "tick labels are the loads: {labels:?}"
        );
        assert!(labels.contains(&"40"), "round axis labels: {labels:?}");
    }

    #[test]
    fn an_empty_or_flat_chart_still_draws() {
        let c = chart(Style::Scatter, vec![]);
        assert!(c.is_empty());
        let f = chart(Style::Scatter, vec![(0.0, 0.0)]).figure();
        assert!(f.svg.starts_with("<svg") && f.table.is_none());
    }
}
