//! Charts drawn on the server as inline SVG from the rolling history: no
//! JavaScript library, nothing to download, readable without scripts.

use crate::history::Chart;
use maud::{html, Markup, PreEscaped};
use std::fmt::Write;

const W: f64 = 560.0;
const H: f64 = 140.0;
const PAD_LEFT: f64 = 56.0;
const PAD_BOTTOM: f64 = 18.0;

/// The value of field `i` of each point: a count, or a rate per second.
fn values(chart: &Chart, i: usize, per_second: bool) -> Vec<Option<f64>> {
    let secs = chart.interval.as_secs_f64().max(1e-9);
    chart
        .points
        .iter()
        .enumerate()
        .map(|(n, p)| {
            let p = (*p)?;
            if per_second {
                // The first sample has no previous one to count from.
                (n > 0).then(|| f64::from(p[i]) / secs)
            } else {
                Some(f64::from(p[i]))
            }
        })
        .collect()
}

/// At most `n` points: the average of each run of consecutive ones (a run
/// with no value stays a gap), so an hour of samples fits a small drawing.
fn downsample(values: &[Option<f64>], n: usize) -> Vec<Option<f64>> {
    if values.len() <= n {
        return values.to_vec();
    }
    let per = values.len().div_ceil(n);
    values
        .chunks(per)
        .map(|run| {
            let present: Vec<f64> = run.iter().flatten().copied().collect();
            (!present.is_empty()).then(|| present.iter().sum::<f64>() / present.len() as f64)
        })
        .collect()
}

/// A polyline path for `values` in a `w`×`h` box, broken at gaps.
fn path(values: &[Option<f64>], max: f64, x0: f64, w: f64, h: f64) -> String {
    let n = values.len().max(2) - 1;
    let mut d = String::new();
    let mut pen_down = false;
    for (i, v) in values.iter().enumerate() {
        match v {
            None => pen_down = false,
            Some(v) => {
                let x = x0 + w * i as f64 / n as f64;
                let y = h - (v / max) * (h - 2.0) - 1.0;
                let _ = write!(d, "{}{x:.1},{y:.1} ", if pen_down { 'L' } else { 'M' });
                pen_down = true;
            }
        }
    }
    d
}

fn short(v: f64) -> String {
    if v >= 1e9 {
        format!("{:.1}G", v / 1e9)
    } else if v >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if v >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if v >= 10.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// A tiny line for a table cell: field `i` over the history.
pub fn sparkline(chart: &Chart, i: usize) -> Markup {
    let v = downsample(&values(chart, i, false), 120);
    let tail = &v[..];
    let max = tail.iter().flatten().copied().fold(0.0, f64::max);
    if tail.iter().flatten().count() < 2 {
        return html! { span.nodata { "–" } };
    }
    let d = path(tail, max.max(1.0), 0.0, 120.0, 22.0);
    html! {
        svg.spark width="120" height="22" viewBox="0 0 120 22" role="img"
            aria-label=(format!("max {}", short(max))) {
            path d=(d) {}
        }
    }
}

/// A labelled chart of one or more fields; `per_second` turns counts into rates.
pub fn chart(chart: &Chart, title: &str, series: &[(usize, &str)], per_second: bool) -> Markup {
    let lines: Vec<(Vec<Option<f64>>, &str)> = series
        .iter()
        .map(|(i, label)| (values(chart, *i, per_second), *label))
        .collect();
    let enough = lines.iter().any(|(v, _)| v.iter().flatten().count() >= 2);
    let span = chart
        .times
        .first()
        .zip(chart.times.last())
        .map(|(a, b)| b - a)
        .unwrap_or(0);
    // Captions give the latest sample; the lines are drawn from averages.
    let last: Vec<String> = lines
        .iter()
        .map(|(v, label)| {
            let now = v.iter().rev().flatten().next().copied();
            format!("{label} {}", now.map_or("–".into(), short))
        })
        .collect();
    let drawn: Vec<Vec<Option<f64>>> = lines.iter().map(|(v, _)| downsample(v, 250)).collect();
    let max = drawn
        .iter()
        .flat_map(|v| v.iter().flatten().copied())
        .fold(0.0, f64::max);
    let top = max.max(1.0);
    let plot_w = W - PAD_LEFT - 4.0;
    let plot_h = H - PAD_BOTTOM;
    let mut svg = String::new();
    if enough {
        let _ = write!(
            svg,
            r#"<line class="axis" x1="{PAD_LEFT}" y1="{plot_h}" x2="{W}" y2="{plot_h}"/><line class="grid" x1="{PAD_LEFT}" y1="1" x2="{W}" y2="1"/><text class="tick" x="{}" y="10" text-anchor="end">{}</text><text class="tick" x="{}" y="{plot_h}" text-anchor="end">0</text><text class="tick" x="{PAD_LEFT}" y="{H}">-{}</text><text class="tick" x="{W}" y="{H}" text-anchor="end">now</text>"#,
            PAD_LEFT - 4.0,
            short(top),
            PAD_LEFT - 4.0,
            crate::views::ago(span),
        );
        for (n, v) in drawn.iter().enumerate() {
            let _ = write!(
                svg,
                r#"<path class="line s{n}" d="{}"/>"#,
                path(v, top, PAD_LEFT, plot_w, plot_h)
            );
        }
    }
    html! {
        figure.chart {
            figcaption {
                (title)
                @for (n, l) in last.iter().enumerate() { " " span class={ "key s" (n) } { (l) } }
            }
            @if enough {
                svg width=(W) height=(H) viewBox={ "0 0 " (W) " " (H) } role="img" aria-label=(title) {
                    (PreEscaped(svg))
                }
            } @else {
                p.nodata { "Collecting history: the chart fills in as nsqadmin samples the cluster." }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downsampling_averages_runs_and_keeps_gaps() {
        let v = [Some(1.0), Some(3.0), None, None, Some(5.0), None];
        assert_eq!(downsample(&v, 3), vec![Some(2.0), None, Some(5.0)]);
        assert_eq!(downsample(&v, 10), v.to_vec());
        assert_eq!(downsample(&[Some(1.0); 1000], 250).len(), 250);
    }
}
