//! The demo's picture (SVG through plotters) and its data (CSV).

use std::path::Path;

use plotters::prelude::*;

/// One tick of the demo, as plotted and written to CSV.
#[derive(Clone, Debug)]
pub struct Point {
    /// Seconds since the load started.
    pub t: f64,
    /// Phase of the scenario.
    pub phase: &'static str,
    /// Load offered by the simulator (req/s).
    pub offered: f64,
    /// Total request rate Shoal read from Prometheus (`status.autoscaler.requestRate.current`).
    pub observed: Option<f64>,
    /// The Deployment's `spec.replicas`: what the autoscaler wrote.
    pub desired: i64,
    /// The Deployment's ready replicas.
    pub ready: i64,
    /// The image of the Deployment's pod template.
    pub image: String,
    /// The canary's weight while one is in flight.
    pub canary_weight: Option<i64>,
}

/// Writes the series as CSV: one line per tick.
pub fn write_csv(path: &Path, points: &[Point], target: f64) -> std::io::Result<()> {
    let mut out = String::from(
        "t_seconds,phase,offered_rps,observed_rps,desired_replicas,ready_replicas,capacity_rps,image,canary_weight\n",
    );
    for p in points {
        out.push_str(&format!(
            "{:.1},{},{:.1},{},{},{},{:.1},{},{}\n",
            p.t,
            p.phase,
            p.offered,
            p.observed.map(|v| format!("{v:.1}")).unwrap_or_default(),
            p.desired.max(0),
            p.ready.max(0),
            p.ready.max(0) as f64 * target,
            p.image,
            p.canary_weight.map(|w| w.to_string()).unwrap_or_default()
        ));
    }
    std::fs::write(path, out)
}

/// Points of a step line through `(t, value)`: the value holds until the next sample.
fn steps(points: &[Point], value: impl Fn(&Point) -> f64) -> Vec<(f64, f64)> {
    let mut line = Vec::with_capacity(points.len() * 2);
    for (i, p) in points.iter().enumerate() {
        if i > 0 {
            line.push((p.t, value(&points[i - 1])));
        }
        line.push((p.t, value(p)));
    }
    line
}

/// Draws offered load, observed rate and capacity (top) and replicas (bottom) over time, with
/// the phases marked.
pub fn draw_svg(
    path: &Path,
    points: &[Point],
    target: f64,
    max_replicas: i64,
) -> anyhow::Result<()> {
    let t_max = points.last().map_or(1.0, |p| p.t).max(1.0);
    let rps_max = points
        .iter()
        .flat_map(|p| {
            [
                p.offered,
                p.observed.unwrap_or(0.0),
                p.ready as f64 * target,
            ]
        })
        .fold(target, f64::max)
        * 1.15;
    let phases: Vec<(f64, &'static str)> = points
        .iter()
        .enumerate()
        .filter(|(i, p)| *i == 0 || points[i - 1].phase != p.phase)
        .map(|(_, p)| (p.t, p.phase))
        .collect();

    let root = SVGBackend::new(path, (1280, 820)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(
        "Shoal: request-rate autoscaling, then rollouts and rollbacks",
        ("sans-serif", 28),
    )?;
    let (top, bottom) = root.split_vertically(470);

    let mut chart = ChartBuilder::on(&top)
        .margin(12)
        .caption("Load and capacity (req/s)", ("sans-serif", 21))
        .x_label_area_size(32)
        .y_label_area_size(56)
        .build_cartesian_2d(0f64..t_max, 0f64..rps_max)?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc("req/s")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .label_style(("sans-serif", 15))
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    for (i, (t, name)) in phases.iter().enumerate() {
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(*t, 0.0), (*t, rps_max)],
            BLACK.mix(0.25),
        )))?;
        // Staggered, so that short phases' names do not overlap.
        let y = rps_max * if i % 2 == 0 { 0.97 } else { 0.92 };
        chart.draw_series(std::iter::once(Text::new(
            name.to_string(),
            (*t + t_max / 300.0, y),
            ("sans-serif", 16).into_font().color(&BLACK.mix(0.75)),
        )))?;
    }
    let capacity = RGBColor(46, 139, 87);
    chart
        .draw_series(LineSeries::new(
            steps(points, |p| p.ready.max(0) as f64 * target),
            capacity.stroke_width(3),
        ))?
        .label(format!("capacity: ready replicas x {target} req/s"))
        .legend(move |(x, y)| {
            PathElement::new(vec![(x, y), (x + 20, y)], capacity.stroke_width(3))
        });
    chart
        .draw_series(LineSeries::new(
            points.iter().map(|p| (p.t, p.offered)),
            BLUE.stroke_width(2),
        ))?
        .label("offered load")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE.stroke_width(2)));
    let observed = RGBColor(230, 140, 0);
    chart
        .draw_series(DashedLineSeries::new(
            points.iter().filter_map(|p| p.observed.map(|v| (p.t, v))),
            6,
            4,
            observed.stroke_width(2),
        ))?
        .label("request rate Shoal read from Prometheus")
        .legend(move |(x, y)| {
            PathElement::new(vec![(x, y), (x + 20, y)], observed.stroke_width(2))
        });
    chart
        .configure_series_labels()
        // Top left, under the phase names: the load only ramps up there later.
        .position(SeriesLabelPosition::Coordinate(12, 58))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .label_font(("sans-serif", 16))
        .draw()?;

    let top_replicas = points
        .iter()
        .map(|p| p.desired.max(p.ready))
        .max()
        .unwrap_or(1)
        .max(max_replicas.min(12))
        + 1;
    let mut chart = ChartBuilder::on(&bottom)
        .margin(12)
        .caption("Replicas", ("sans-serif", 21))
        .x_label_area_size(32)
        .y_label_area_size(56)
        .build_cartesian_2d(0f64..t_max, 0f64..top_replicas as f64)?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc("replicas")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .label_style(("sans-serif", 15))
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    for (t, _) in &phases {
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(*t, 0.0), (*t, top_replicas as f64)],
            BLACK.mix(0.25),
        )))?;
    }
    chart
        .draw_series(LineSeries::new(
            steps(points, |p| p.desired.max(0) as f64),
            RED.stroke_width(3),
        ))?
        .label("desired (Deployment spec.replicas, written by Shoal)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED.stroke_width(3)));
    chart
        .draw_series(DashedLineSeries::new(
            steps(points, |p| p.ready.max(0) as f64),
            6,
            4,
            capacity.stroke_width(2),
        ))?
        .label("ready")
        .legend(move |(x, y)| {
            PathElement::new(vec![(x, y), (x + 20, y)], capacity.stroke_width(2))
        });
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .label_font(("sans-serif", 16))
        .draw()?;
    root.present()?;
    Ok(())
}
