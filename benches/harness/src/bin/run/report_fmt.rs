//! What both parts of the report (`report`, `report_proto`) use: the number
//! formats, the per-request lists, and the results the report is written
//! from.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::headline::MainResult;
use crate::idle::IdleResult;
use crate::proto::{ProtoResult, ProtoServer};
use crate::servers::Server;
use crate::settings::Settings;
use crate::strace::Syscalls;
use crate::threads::ScaleRun;

pub fn fmt_f(v: f64, digits: usize) -> String {
    if v.is_finite() { format!("{v:.digits$}") } else { "–".into() }
}

pub fn fmt_int(v: f64) -> String {
    if !v.is_finite() {
        return "–".into();
    }
    let s = format!("{:.0}", v);
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A latency; the histogram ends at 100 ms.
pub fn fmt_us(v: f64) -> String {
    if v >= 100_000.0 { "≥ 100,000".into() } else { fmt_f(v, 1) }
}

pub fn verdict(ok: bool) -> &'static str {
    if ok { "**PASS**" } else { "**MISS**" }
}

pub struct Report<'a> {
    pub servers: &'a [Server],
    pub main: &'a BTreeMap<&'static str, MainResult>,
    pub idle: &'a BTreeMap<&'static str, IdleResult>,
    pub cg_idle: &'a BTreeMap<&'static str, Vec<(usize, f64)>>,
    pub max_idle: usize,
    pub limits: (u64, u64),
    pub facts: Vec<(String, String)>,
    pub alloc_log: String,
    pub profile: String,
    pub http_servers: &'a [ProtoServer],
    pub resp_servers: &'a [ProtoServer],
    pub http: &'a BTreeMap<&'static str, ProtoResult>,
    pub resp: &'a BTreeMap<&'static str, BTreeMap<&'static str, ProtoResult>>,
    pub scale: &'a BTreeMap<usize, Vec<ScaleRun>>,
    pub scale_errors: &'a [String],
    pub elapsed: Duration,
    pub set: &'a Settings,
}

/// Calls per request by name, most frequent first.
pub fn by_name_per_req(c: &Syscalls) -> String {
    let mut names: Vec<(&String, &u64)> = c.by_name.iter().collect();
    names.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let m = c.msgs.max(1) as f64;
    let list: Vec<String> =
        names.iter().map(|(n, k)| format!("{n} {} ({k})", fmt_f(**k as f64 / m, 4))).collect();
    list.join(", ")
}

pub fn ticks_list(m: &MainResult) -> String {
    let t: Vec<String> = m.runs.iter().map(|(_, p)| p.user_ticks.to_string()).collect();
    t.join(" / ")
}
