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

/// An SVG chart of `points` (oldest first) with the normal range `low..high` shaded.
pub fn svg(
    title: &str,
    unit: &str,
    points: &[Point],
    low: Option<f64>,
    high: Option<f64>,
) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg class="trend" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{} trend" xmlns="http://www.w3.org/2000/svg">"#,
        escape(title)
    );
    if points.is_empty() {
        let _ = write!(
            out,
            r#"<text x="{PAD}" y="{}">No {} recorded yet</text></svg>"#,
            HEIGHT / 2.0,
            escape(title)
        );
        return out;
    }
    let (min, max) = value_bounds(points, low, high);
    let (first, last) = (
        points[0].at.timestamp() as f64,
        points[points.len() - 1].at.timestamp() as f64,
    );
    let span = (last - first).max(1.0);
    let x = |t: DateTime<Utc>| PAD + (t.timestamp() as f64 - first) / span * (WIDTH - 2.0 * PAD);
    let y = |v: f64| HEIGHT - PAD - (v - min) / (max - min) * (HEIGHT - 2.0 * PAD);
    if let (Some(lo), Some(hi)) = (low, high) {
        let _ = write!(
            out,
            r##"<rect x="{PAD}" y="{:.1}" width="{:.1}" height="{:.1}" fill="#d9f2e1"><title>normal {lo}–{hi} {}</title></rect>"##,
            y(hi),
            WIDTH - 2.0 * PAD,
            (y(lo) - y(hi)).max(0.0),
            escape(unit)
        );
    }
    let _ = write!(
        out,
        r##"<text x="4" y="{:.1}" font-size="11">{max:.0}</text><text x="4" y="{:.1}" font-size="11">{min:.0}</text>"##,
        PAD,
        HEIGHT - PAD
    );
    let path: Vec<String> = points
        .iter()
        .map(|p| format!("{:.1},{:.1}", x(p.at), y(p.value)))
        .collect();
    let _ = write!(
        out,
        r##"<polyline fill="none" stroke="#0b5cad" stroke-width="2" points="{}"/>"##,
        path.join(" ")
    );
    for p in points {
        let abnormal = low.is_some_and(|l| p.value < l) || high.is_some_and(|h| p.value > h);
        let colour = if abnormal { "#b00020" } else { "#0b5cad" };
        let _ = write!(
            out,
            r#"<circle cx="{:.1}" cy="{:.1}" r="4" fill="{colour}"><title>{} {} {}</title></circle>"#,
            x(p.at),
            y(p.value),
            p.value,
            escape(unit),
            p.at.format("%Y-%m-%d %H:%M")
        );
    }
    out.push_str("</svg>");
    out
}

/// The value axis: the data and the normal range, with a margin.
fn value_bounds(points: &[Point], low: Option<f64>, high: Option<f64>) -> (f64, f64) {
    let values = points.iter().map(|p| p.value).chain(low).chain(high);
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
        assert!(chart.contains("normal 60–100 /min"));
    }

    #[test]
    fn no_points_says_so() {
        assert!(
            svg("Heart rate", "/min", &[], Some(60.0), Some(100.0))
                .contains("No Heart rate recorded yet")
        );
    }
}
