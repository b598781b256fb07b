//! The threads scenario: the echo server on 1 and 2 loops.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::Instant;

use crate::Result;
use crate::procfs::{PerMsg, clock_ticks, cpu, per_msg};
use crate::procs::{Loadgen, Ready, RunResult, ServerProc};
use crate::settings::Settings;

/// Nanoseconds on CPU of each thread of a process, by thread id.
pub fn thread_ns(pid: u32) -> BTreeMap<u32, u64> {
    let mut m = BTreeMap::new();
    if let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            let Some(tid) = t.file_name().to_str().and_then(|n| n.parse().ok()) else { continue };
            let sched = fs::read_to_string(t.path().join("schedstat")).unwrap_or_default();
            if let Some(ns) = sched.split_whitespace().next().and_then(|v| v.parse().ok()) {
                m.insert(tid, ns);
            }
        }
    }
    m
}

/// The whole machine's CPU time from `/proc/stat`, in clock ticks:
/// (busy, steal, total) over every CPU.
pub fn machine_ticks() -> (u64, u64, u64) {
    let stat = fs::read_to_string("/proc/stat").unwrap_or_default();
    let f: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|v| v.parse().ok())
        .collect();
    if f.len() < 8 {
        return (0, 0, 0);
    }
    // user nice system idle iowait irq softirq steal
    let busy = f[0] + f[1] + f[2] + f[5] + f[6];
    (busy, f[7], f.iter().sum())
}

#[derive(Clone, Debug, Default)]
pub struct ScaleRun {
    pub run: RunResult,
    pub server: PerMsg,
    pub load: PerMsg,
    /// CPU ns of each of the server's threads in the window, busiest first
    /// (threads under 1% of the server's time, the main thread waiting on
    /// its loops, left out).
    pub loops_ns: Vec<u64>,
    pub window_ns: f64,
    /// Busy and stolen ns of the whole machine in the window.
    pub machine_busy_ns: f64,
    pub machine_steal_ns: f64,
}

impl ScaleRun {
    pub fn server_ns(&self) -> f64 {
        self.server.cpu_us * 1e3 * self.run.msgs as f64
    }
    pub fn load_ns(&self) -> f64 {
        self.load.cpu_us * 1e3 * self.run.msgs as f64
    }
    /// Share of the busiest loop thread in the server's CPU time.
    pub fn busiest(&self) -> f64 {
        let sum: u64 = self.loops_ns.iter().sum();
        self.loops_ns.first().map_or(f64::NAN, |&b| b as f64 / sum.max(1) as f64)
    }
}

/// One round of the thread scenario: `examples/echo_server --threads N`
/// (epoll) and the load generator, neither pinned, `scale_conns`
/// ping-pong connections.
pub fn scale_run(root: &Path, logs: &Path, threads: usize, set: &Settings) -> Result<ScaleRun> {
    let example = root.join("target/release/examples/echo_server").to_string_lossy().into_owned();
    let argv = vec![
        example,
        "{addr}".into(),
        "--backend".into(),
        "epoll".into(),
        "--threads".into(),
        threads.to_string(),
    ];
    let log = logs.join(format!("threads{threads}.err"));
    let server = ServerProc::spawn(&argv, &[], &log, None, Ready::Stdout)?;
    let out = (|| -> Result<ScaleRun> {
        let mut lg = Loadgen::start_on(root, &server.addr, set.scale_conns, None)?;
        let r = (|| -> Result<ScaleRun> {
            lg.run(set.warm_secs)?;
            let (a, la, ta, ma) = (cpu(server.pid)?, cpu(lg.pid())?, thread_ns(server.pid), machine_ticks());
            let t = Instant::now();
            let run = lg.run(set.run_secs)?;
            let window_ns = t.elapsed().as_nanos() as f64;
            let (b, lb, tb, mb) = (cpu(server.pid)?, cpu(lg.pid())?, thread_ns(server.pid), machine_ticks());
            let mut loops: Vec<u64> =
                tb.iter().map(|(tid, ns)| ns.saturating_sub(ta.get(tid).copied().unwrap_or(0))).collect();
            let sum: u64 = loops.iter().sum();
            loops.retain(|&ns| ns * 100 >= sum);
            loops.sort_by(|x, y| y.cmp(x));
            let tick_ns = 1e9 / clock_ticks();
            Ok(ScaleRun {
                run,
                server: per_msg(a, b, run.msgs),
                load: per_msg(la, lb, run.msgs),
                loops_ns: loops,
                window_ns,
                machine_busy_ns: (mb.0 - ma.0) as f64 * tick_ns,
                machine_steal_ns: (mb.1 - ma.1) as f64 * tick_ns,
            })
        })();
        lg.quit();
        r
    })();
    server.stop();
    out
}

/// The expected share of the busiest of `n` listeners when `conns`
/// connections are hashed uniformly among them (SO_REUSEPORT's spread, as
/// a model): the mean over 20,000 deals with a fixed seed.
pub fn hash_busiest_share(conns: usize, n: usize) -> f64 {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let trials = 20_000;
    let mut sum = 0.0;
    let mut bins = vec![0usize; n];
    for _ in 0..trials {
        bins.iter_mut().for_each(|b| *b = 0);
        for _ in 0..conns {
            bins[(next() % n as u64) as usize] += 1;
        }
        sum += *bins.iter().max().unwrap_or(&0) as f64 / conns as f64;
    }
    sum / trials as f64
}
