//! Version sizes over time as an inline SVG chart: no script, no image request, and each
//! point names its version in a tooltip.

use backup_core::Version;
use maud::{Markup, html};

use crate::format;

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 220.0;
const LEFT: f64 = 72.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 14.0;
const BOTTOM: f64 = 34.0;

/// The most points drawn: the newest ones (the page stays small whatever the history).
pub(crate) const MAX_POINTS: usize = 500;

/// The chart of `versions` (committed ones, any order): x is when each was received, y its
/// size, from zero to the largest.
pub(crate) fn sizes_chart(versions: &[&Version]) -> Markup {
    let mut points: Vec<&Version> = versions.to_vec();
    points.sort_by_key(|v| (v.created_at, v.number));
    if points.len() > MAX_POINTS {
        points.drain(..points.len() - MAX_POINTS);
    }
    let (Some(first), Some(last)) = (points.first(), points.last()) else {
        return html! { p.muted { "No versions yet: the chart appears with the first upload." } };
    };
    let t0 = first.created_at.to_datetime().timestamp_millis() as f64;
    let t1 = last.created_at.to_datetime().timestamp_millis() as f64;
    let largest = points.iter().map(|v| v.size).max().unwrap_or(0).max(1);
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let x = |v: &Version| {
        let t = v.created_at.to_datetime().timestamp_millis() as f64;
        if t1 > t0 { LEFT + (t - t0) / (t1 - t0) * plot_w } else { LEFT + plot_w / 2.0 }
    };
    let y = |size: u64| TOP + (1.0 - size as f64 / largest as f64) * plot_h;
    let line: String = points.iter().map(|v| format!("{:.1},{:.1}", x(v), y(v.size))).collect::<Vec<_>>().join(" ");
    let grid = [0, largest / 2, largest];
    html! {
        svg.chart viewBox=(format!("0 0 {WIDTH} {HEIGHT}")) role="img"
            aria-label=(format!("Sizes of the {} newest versions over time", points.len())) {
            @for g in grid {
                line x1=(LEFT) x2=(WIDTH - RIGHT) y1=(format!("{:.1}", y(g))) y2=(format!("{:.1}", y(g)))
                    stroke="#d0d7de" stroke-width="1" {}
                text x=(LEFT - 6.0) y=(format!("{:.1}", y(g) + 4.0)) text-anchor="end" font-size="11" fill="#57606a" {
                    (format::bytes(g))
                }
            }
            text x=(LEFT) y=(HEIGHT - 10.0) font-size="11" fill="#57606a" { (format::time(first.created_at)) }
            @if points.len() > 1 {
                text x=(WIDTH - RIGHT) y=(HEIGHT - 10.0) text-anchor="end" font-size="11" fill="#57606a" {
                    (format::time(last.created_at))
                }
                polyline points=(line) fill="none" stroke="#0969da" stroke-width="2" {}
            }
            @for v in &points {
                circle cx=(format!("{:.1}", x(v))) cy=(format!("{:.1}", y(v.size))) r="4" fill="#0969da" {
                    title { "version " (v.number) ": " (format::bytes(v.size)) ", " (format::time(v.created_at)) }
                }
            }
        }
    }
}
