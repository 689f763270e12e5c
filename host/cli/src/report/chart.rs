//! The HTML page's equity chart: an inline SVG, the only place floating point is used (pixel
//! coordinates).

use super::TradingLine;
use super::format::{escape_html, utc};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use std::fmt;
use std::fmt::Write as _;

/// Most points in the chart's polyline; longer curves are downsampled (min and max of each
/// bucket, so drawdowns and peaks survive).
pub(super) const MAX_CHART_POINTS: usize = 1_000;

const SVG_W: f64 = 800.0;
const SVG_H: f64 = 300.0;
const PLOT_LEFT: f64 = 120.0;
const PLOT_RIGHT: f64 = 780.0;
pub(super) const PLOT_TOP: f64 = 20.0;
pub(super) const PLOT_BOTTOM: f64 = 260.0;

/// One readable equity sample: time, exact value, and the text it came from (labels show the
/// text, so a decimal is never re-rendered).
struct Sample<'a> {
    pub(super) ts: u64,
    equity: Decimal,
    text: &'a str,
}

pub(super) fn write_equity_svg(out: &mut String, t: &TradingLine) -> fmt::Result {
    let samples: Vec<Sample<'_>> = t
        .equity_curve
        .iter()
        .filter_map(|(ts, text)| {
            let text = text.trim();
            text.parse::<Decimal>().ok().map(|equity| Sample {
                ts: *ts,
                equity,
                text,
            })
        })
        .collect();
    let unreadable = t.equity_curve.len() - samples.len();
    let note = if unreadable > 0 {
        format!(" ({unreadable} unreadable samples skipped)")
    } else {
        String::new()
    };
    let (first, last) = match samples.as_slice() {
        [] => {
            writeln!(out, "<p class=\"empty\">no equity samples{note}</p>")?;
            return Ok(());
        }
        [only] => {
            writeln!(
                out,
                "<p class=\"empty\">no equity samples to draw a curve from: one sample, {} at {} UTC{note}</p>",
                escape_html(only.text),
                utc(only.ts)
            )?;
            return Ok(());
        }
        [first, .., last] => (first, last),
    };

    // Labels come from the exact decimals; only the positions are floating point.
    let mut lowest = first;
    let mut highest = first;
    for s in &samples {
        if s.equity < lowest.equity {
            lowest = s;
        }
        if s.equity > highest.equity {
            highest = s;
        }
    }
    let base_text = t.start_equity.trim();
    let (base, base_text) = match base_text.parse::<Decimal>() {
        Ok(d) => (d, base_text),
        Err(_) => (first.equity, first.text),
    };
    let lo = lowest.equity.min(base).to_f64().unwrap_or(0.0);
    let hi = highest.equity.max(base).to_f64().unwrap_or(0.0);
    let t0 = samples.iter().map(|s| s.ts).min().unwrap_or(0);
    let t1 = samples.iter().map(|s| s.ts).max().unwrap_or(0);

    let y_of = |equity: Decimal| -> f64 {
        let v = equity.to_f64().unwrap_or(lo);
        if hi > lo {
            PLOT_BOTTOM - (v - lo) / (hi - lo) * (PLOT_BOTTOM - PLOT_TOP)
        } else {
            (PLOT_TOP + PLOT_BOTTOM) / 2.0
        }
    };
    let points: Vec<(f64, f64)> = samples
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let frac = if t1 > t0 {
                s.ts.saturating_sub(t0) as f64 / (t1 - t0) as f64
            } else {
                // All samples at one instant: spread them evenly instead of stacking them.
                i as f64 / (samples.len() - 1) as f64
            };
            (PLOT_LEFT + frac * (PLOT_RIGHT - PLOT_LEFT), y_of(s.equity))
        })
        .collect();
    let points = downsample(&points, MAX_CHART_POINTS);

    writeln!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {SVG_W} {SVG_H}\" \
         width=\"{SVG_W}\" height=\"{SVG_H}\" role=\"img\" aria-label=\"equity curve\">"
    )?;
    writeln!(
        out,
        "<title>equity from {} to {} ({} samples)</title>",
        escape_html(first.text),
        escape_html(last.text),
        samples.len()
    )?;
    // Axes.
    writeln!(
        out,
        "<line x1=\"{PLOT_LEFT}\" y1=\"{PLOT_TOP}\" x2=\"{PLOT_LEFT}\" y2=\"{PLOT_BOTTOM}\" stroke=\"#8c959f\"/>\n\
         <line x1=\"{PLOT_LEFT}\" y1=\"{PLOT_BOTTOM}\" x2=\"{PLOT_RIGHT}\" y2=\"{PLOT_BOTTOM}\" stroke=\"#8c959f\"/>"
    )?;
    // Baseline at the start equity.
    let yb = y_of(base);
    writeln!(
        out,
        "<line class=\"baseline\" x1=\"{PLOT_LEFT}\" y1=\"{yb:.1}\" x2=\"{PLOT_RIGHT}\" y2=\"{yb:.1}\" \
         stroke=\"#8c959f\" stroke-dasharray=\"4 4\"/>\n\
         <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">start {}</text>",
        PLOT_RIGHT,
        yb - 4.0,
        escape_html(base_text)
    )?;
    // Min and max equity, at their heights.
    let y_hi = y_of(highest.equity);
    let y_lo = y_of(lowest.equity);
    writeln!(
        out,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">max {}</text>",
        PLOT_LEFT - 6.0,
        y_hi + 4.0,
        escape_html(highest.text)
    )?;
    if lowest.equity != highest.equity {
        writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">min {}</text>",
            PLOT_LEFT - 6.0,
            y_lo + 4.0,
            escape_html(lowest.text)
        )?;
    }
    // Start and end dates.
    writeln!(
        out,
        "<text x=\"{PLOT_LEFT}\" y=\"{:.1}\" text-anchor=\"start\">{} UTC</text>\n\
         <text x=\"{PLOT_RIGHT}\" y=\"{:.1}\" text-anchor=\"end\">{} UTC</text>",
        PLOT_BOTTOM + 18.0,
        utc(t0),
        PLOT_BOTTOM + 18.0,
        utc(t1)
    )?;
    let stroke = if last.equity < base {
        "#cf222e"
    } else {
        "#1a7f37"
    };
    out.push_str("<polyline fill=\"none\" stroke=\"");
    out.push_str(stroke);
    out.push_str("\" stroke-width=\"1.5\" points=\"");
    for (i, (x, y)) in points.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        write!(out, "{x:.1},{y:.1}")?;
    }
    out.push_str("\"/>\n</svg>\n");
    if !note.is_empty() {
        writeln!(out, "<p class=\"empty\">{}</p>", note.trim())?;
    }
    Ok(())
}

/// At most `max` of `points` (at least 4), keeping the first and the last and, from each
/// of the equal buckets in between, the lowest and the highest `y` in their original order.
pub(super) fn downsample(points: &[(f64, f64)], max: usize) -> Vec<(f64, f64)> {
    let max = max.max(4);
    let n = points.len();
    if n <= max {
        return points.to_vec();
    }
    let interior = &points[1..n - 1];
    let buckets = (max - 2) / 2;
    let mut out = Vec::with_capacity(max);
    out.push(points[0]);
    for b in 0..buckets {
        let start = b * interior.len() / buckets;
        let end = (b + 1) * interior.len() / buckets;
        let Some(bucket) = interior.get(start..end) else {
            continue;
        };
        let mut lo = None::<usize>;
        let mut hi = None::<usize>;
        for (i, p) in bucket.iter().enumerate() {
            if lo.is_none_or(|j| p.1 < bucket[j].1) {
                lo = Some(i);
            }
            if hi.is_none_or(|j| p.1 > bucket[j].1) {
                hi = Some(i);
            }
        }
        match (lo, hi) {
            (Some(l), Some(h)) if l == h => out.push(bucket[l]),
            (Some(l), Some(h)) => {
                out.push(bucket[l.min(h)]);
                out.push(bucket[l.max(h)]);
            }
            _ => {}
        }
    }
    out.push(points[n - 1]);
    out
}
