//! The plot (`docs/perf.svg`).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::idle::{IdlePoint, IdleResult};
use crate::report_fmt::fmt_int;
use crate::servers::Server;

pub const COLORS: [&str; 8] =
    ["#000000", "#1f77b4", "#2ca02c", "#ff7f0e", "#d62728", "#9467bd", "#8c564b", "#e377c2"];

pub fn svg_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// One panel of the plot: a title and, per series, (idle level, value) points.
pub struct Panel {
    pub title: &'static str,
    pub lines: Vec<Vec<(usize, f64)>>,
}

pub fn write_svg(
    servers: &[Server],
    idle: &BTreeMap<&'static str, IdleResult>,
    cg_idle: &BTreeMap<&'static str, Vec<(usize, f64)>>,
    max_idle: usize,
) -> String {
    let mut levels = vec![0usize, 1_000, 10_000];
    if max_idle > 10_000 {
        levels.push(max_idle);
    }
    let series: Vec<(&Server, &IdleResult)> =
        servers.iter().filter_map(|sv| idle.get(sv.key).map(|r| (sv, r))).collect();
    let from_points = |f: fn(&IdlePoint) -> f64| -> Vec<Vec<(usize, f64)>> {
        series.iter().map(|(_, r)| r.points.iter().map(|p| (p.idle, f(p))).collect()).collect()
    };
    let panels = [
        Panel { title: "msgs/s of the active connection", lines: from_points(|p| p.run.mps) },
        Panel {
            title: "user instructions per message (callgrind)",
            lines: series.iter().map(|(sv, _)| cg_idle.get(sv.key).cloned().unwrap_or_default()).collect(),
        },
        Panel { title: "server CPU µs per message (user + sys)", lines: from_points(|p| p.per.cpu_us) },
    ];
    let (pw, ph, ml, mt, mb) = (330.0, 260.0, 60.0, 50.0, 50.0);
    let width = ml + 3.0 * (pw + ml) + 20.0;
    let height = mt + ph + mb + 140.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{ml}" y="20" font-size="14" font-weight="bold">One active echo connection beside N idle connections (log scales)</text>"#
    );
    for (m, panel) in panels.iter().enumerate() {
        let x0 = ml + m as f64 * (pw + ml);
        let vals: Vec<f64> =
            panel.lines.iter().flatten().map(|(_, v)| *v).filter(|v| v.is_finite() && *v > 0.0).collect();
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" font-size="12">{}</text>"#,
            x0,
            mt - 8.0,
            svg_escape(panel.title)
        );
        let _ = writeln!(
            s,
            r##"<rect x="{x0}" y="{mt}" width="{pw}" height="{ph}" fill="none" stroke="#888"/>"##
        );
        if vals.is_empty() {
            continue;
        }
        let lo = vals.iter().cloned().fold(f64::INFINITY, f64::min).log10().floor();
        let hi = vals.iter().cloned().fold(0.0, f64::max).log10().ceil().max(lo + 1.0);
        let y = |v: f64| mt + ph - (v.log10() - lo) / (hi - lo) * ph;
        let x = |i: usize| x0 + 20.0 + i as f64 * (pw - 40.0) / (levels.len() - 1) as f64;
        let mut e = lo;
        while e <= hi + 1e-9 {
            let v = 10f64.powf(e);
            let yy = y(v);
            let _ = writeln!(
                s,
                r##"<line x1="{x0}" y1="{yy:.1}" x2="{}" y2="{yy:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
                x0 + pw,
                x0 - 4.0,
                yy + 4.0,
                if v >= 1.0 { fmt_int(v) } else { format!("{v}") }
            );
            e += 1.0;
        }
        for (i, l) in levels.iter().enumerate() {
            let xx = x(i);
            let _ = writeln!(
                s,
                r##"<line x1="{xx:.1}" y1="{mt}" x2="{xx:.1}" y2="{}" stroke="#eee"/><text x="{xx:.1}" y="{}" text-anchor="middle">{}</text>"##,
                mt + ph,
                mt + ph + 15.0,
                fmt_int(*l as f64)
            );
        }
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle">idle connections</text>"#,
            x0 + pw / 2.0,
            mt + ph + 32.0
        );
        for (ci, line) in panel.lines.iter().enumerate() {
            let color = COLORS[ci % COLORS.len()];
            let pts: Vec<(f64, f64)> = line
                .iter()
                .filter_map(|(idle, v)| {
                    let i = levels.iter().position(|l| l == idle)?;
                    (v.is_finite() && *v > 0.0).then(|| (x(i), y(*v)))
                })
                .collect();
            if pts.is_empty() {
                continue;
            }
            let path: Vec<String> = pts.iter().map(|(px, py)| format!("{px:.1},{py:.1}")).collect();
            let _ = writeln!(
                s,
                r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"/>"#,
                path.join(" ")
            );
            for (px, py) in &pts {
                let _ = writeln!(s, r#"<circle cx="{px:.1}" cy="{py:.1}" r="3" fill="{color}"/>"#);
            }
        }
    }
    // Legend.
    let ly = mt + ph + mb + 10.0;
    for (k, (_, r)) in series.iter().enumerate() {
        let color = COLORS[k % COLORS.len()];
        let lx = ml + (k % 4) as f64 * 250.0;
        let yy = ly + (k / 4) as f64 * 20.0;
        let _ = writeln!(
            s,
            r#"<line x1="{lx}" y1="{yy}" x2="{}" y2="{yy}" stroke="{color}" stroke-width="3"/><text x="{}" y="{}">{}</text>"#,
            lx + 24.0,
            lx + 30.0,
            yy + 4.0,
            svg_escape(&r.label)
        );
    }
    let _ = writeln!(
        s,
        r##"<text x="{ml}" y="{}" fill="#555">Server on CPU 0, load on CPU 1, 64-byte ping-pong; msgs/s and CPU time from a shared 2-core VM (noisy), instructions exact. Data: docs/PERFORMANCE.md.</text>"##,
        ly + 60.0
    );
    s.push_str("</svg>\n");
    s
}
