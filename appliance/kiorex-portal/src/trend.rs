//! Vital-sign trend charts drawn on the server as SVG: the values as a line, the normal range as
//! a shaded band, abnormal points in red. No script, no chart library: it prints, and it works
//! on an old PC.

use chrono::{DateTime, Utc};
use std::fmt::Write;

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 220.0;
const PAD: f64 = 36.0;

/// One measurement.
#[derive(Debug, Clone, Copy)]
pub struct Point {
    pub at: DateTime<Utc>,
    pub value: f64,
}

/// The normal range shaded behind a series; `default` says it is Kiorex's shipped default
/// (a lab or ward sets its own later), which the chart says in words.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Band {
    pub low: f64,
    pub high: f64,
    pub default: bool,
}

/// One line on a chart: its name, its points (oldest first) and its normal range.
#[derive(Debug, Clone, Copy)]
pub struct Series<'a> {
    pub name: &'a str,
    pub points: &'a [Point],
    pub band: Option<Band>,
}

const COLOURS: [&str; 2] = ["#0b5cad", "#6a3d9a"];

/// An SVG chart of `points` (oldest first) with the normal range `low..high` shaded.
pub fn svg(
    title: &str,
    unit: &str,
    points: &[Point],
    low: Option<f64>,
    high: Option<f64>,
) -> String {
    let band = match (low, high) {
        (Some(low), Some(high)) => Some(Band {
            low,
            high,
            default: true,
        }),
        _ => None,
    };
    chart(
        title,
        unit,
        &[Series {
            name: title,
            points,
            band,
        }],
    )
}

/// An SVG chart of one or more series on one time axis (systolic and diastolic together),
/// each with its normal range shaded and its abnormal points in red.
pub fn chart(title: &str, unit: &str, series: &[Series<'_>]) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg class="trend" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{} trend" xmlns="http://www.w3.org/2000/svg">"#,
        escape(title)
    );
    let all: Vec<Point> = series
        .iter()
        .flat_map(|s| s.points.iter().copied())
        .collect();
    if all.is_empty() {
        let _ = write!(
            out,
            r#"<text x="{PAD}" y="{}">No {} recorded yet</text></svg>"#,
            HEIGHT / 2.0,
            escape(title)
        );
        return out;
    }
    let limits = series
        .iter()
        .filter_map(|s| s.band)
        .flat_map(|b| [b.low, b.high]);
    let (min, max) = value_bounds(&all, limits);
    let first = all.iter().map(|p| p.at.timestamp()).min().unwrap_or(0) as f64;
    let last = all.iter().map(|p| p.at.timestamp()).max().unwrap_or(0) as f64;
    let span = (last - first).max(1.0);
    let x = |t: DateTime<Utc>| PAD + (t.timestamp() as f64 - first) / span * (WIDTH - 2.0 * PAD);
    let y = |v: f64| HEIGHT - PAD - (v - min) / (max - min) * (HEIGHT - 2.0 * PAD);
    for s in series {
        if let Some(b) = s.band {
            let _ = write!(
                out,
                r##"<rect x="{PAD}" y="{:.1}" width="{:.1}" height="{:.1}" fill="#d9f2e1" fill-opacity="0.8"><title>{} normal {}–{} {}{}</title></rect>"##,
                y(b.high),
                WIDTH - 2.0 * PAD,
                (y(b.low) - y(b.high)).max(0.0),
                escape(s.name),
                b.low,
                b.high,
                escape(unit),
                if b.default { " (default range)" } else { "" }
            );
        }
    }
    let _ = write!(
        out,
        r##"<text x="4" y="{:.1}" font-size="11">{max:.0}</text><text x="4" y="{:.1}" font-size="11">{min:.0}</text>"##,
        PAD,
        HEIGHT - PAD
    );
    for (i, s) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let path: Vec<String> = s
            .points
            .iter()
            .map(|p| format!("{:.1},{:.1}", x(p.at), y(p.value)))
            .collect();
        let _ = write!(
            out,
            r##"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"><title>{}</title></polyline>"##,
            path.join(" "),
            escape(s.name)
        );
        for p in s.points {
            let abnormal = s.band.is_some_and(|b| p.value < b.low || p.value > b.high);
            let fill = if abnormal { "#b00020" } else { colour };
            let _ = write!(
                out,
                r#"<circle cx="{:.1}" cy="{:.1}" r="4" fill="{fill}"><title>{} {} {} {}</title></circle>"#,
                x(p.at),
                y(p.value),
                escape(s.name),
                p.value,
                escape(unit),
                p.at.format("%Y-%m-%d %H:%M")
            );
        }
    }
    out.push_str("</svg>");
    out
}

/// The value axis: the data and the normal range, with a margin.
fn value_bounds(points: &[Point], limits: impl Iterator<Item = f64>) -> (f64, f64) {
    let values = points.iter().map(|p| p.value).chain(limits);
    let (min, max) = values.fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(v), b.max(v)));
    let margin = ((max - min) * 0.1).max(1.0);
    (min - margin, max + margin)
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(hour: u32, value: f64) -> Point {
        Point {
            at: Utc.with_ymd_and_hms(2026, 11, 1, hour, 0, 0).unwrap(),
            value,
        }
    }

    #[test]
    fn the_normal_band_is_shaded_and_abnormal_points_are_red() {
        let chart = svg(
            "Heart rate",
            "/min",
            &[at(8, 72.0), at(12, 130.0), at(16, 80.0)],
            Some(60.0),
            Some(100.0),
        );
        assert!(chart.contains("<rect"), "normal range band");
        assert_eq!(chart.matches("#b00020").count(), 1, "one abnormal point");
        assert_eq!(chart.matches("<circle").count(), 3);
        assert!(chart.contains("normal 60–100 /min (default range)"));
    }

    #[test]
    fn blood_pressure_draws_two_lines_each_with_its_band() {
        let systolic = [at(8, 120.0), at(12, 165.0)];
        let diastolic = [at(8, 80.0), at(12, 85.0)];
        let band = |low, high| {
            Some(Band {
                low,
                high,
                default: false,
            })
        };
        let drawn = chart(
            "Blood pressure",
            "mm[Hg]",
            &[
                Series {
                    name: "Systolic",
                    points: &systolic,
                    band: band(90.0, 140.0),
                },
                Series {
                    name: "Diastolic",
                    points: &diastolic,
                    band: band(60.0, 90.0),
                },
            ],
        );
        assert_eq!(drawn.matches("<polyline").count(), 2);
        assert_eq!(drawn.matches("<rect").count(), 2);
        assert_eq!(drawn.matches("#b00020").count(), 1, "only systolic 165");
        assert!(drawn.contains("Diastolic normal 60–90"));
        assert!(!drawn.contains("default range"), "a configured range");
    }

    #[test]
    fn no_points_says_so() {
        assert!(
            svg("Heart rate", "/min", &[], Some(60.0), Some(100.0))
                .contains("No Heart rate recorded yet")
        );
    }
}
