//! The driver: runs every scenario against every server and writes
//! `docs/PERFORMANCE.md` and `docs/perf.svg`. Started by `benches/run.sh`,
//! which builds everything first and passes the paths:
//!
//! ```text
//! run ROOT ALLOC_TEST_LOG
//! ```
//!
//! Servers run pinned to CPU 0, the load generator to CPU 1. Every load run is
//! bounded in time; every process it starts it stops, by PID.
//! `BENCH_QUICK=1` shortens every run (for trying the harness, not for results).

mod callgrind;
mod headline;
mod http;
mod idle;
mod machine;
mod plot;
mod procfs;
mod procs;
mod proto;
mod proto_callgrind;
mod report;
mod report_fmt;
mod report_proto;
mod resp;
mod servers;
mod settings;
mod strace;
mod threads;
mod tls;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use callgrind::{callgrind_run, per_function};
use headline::{MainResult, main_run};
use http::{WRK_SCRIPT, http_run, wrk_limited_script};
use idle::{IdleResult, idle_run};
use machine::{raise_nofile, sh};
use plot::write_svg;
use procfs::num_cpus;
use proto::{Peer, ProtoResult, ProtoServer};
use proto_callgrind::proto_callgrind;
use report::write_report;
use report_fmt::Report;
use resp::{RESP_TESTS, resp_run};
use servers::servers;
use settings::Settings;
use threads::{ScaleRun, scale_run};

/// Every fallible step of the driver: the error says what failed.
pub type Result<T> = std::result::Result<T, String>;

fn main() {
    if let Err(e) = real_main() {
        eprintln!("run: {e}");
        std::process::exit(1);
    }
}

fn real_main() -> Result<()> {
    let started = Instant::now();
    let mut args = std::env::args().skip(1);
    let root = PathBuf::from(args.next().ok_or("usage: run ROOT ALLOC_TEST_LOG")?);
    let alloc_log = args.next().map(|p| fs::read_to_string(p).unwrap_or_default()).unwrap_or_default();
    let set = Settings::new();
    let logs = root.join("benches/harness/target/logs");
    fs::create_dir_all(&logs).map_err(|e| format!("{}: {e}", logs.display()))?;
    let limits = raise_nofile();
    // Descriptors for one process: stdio, listener, poller, a margin.
    let max_idle = (limits.0.saturating_sub(100) as usize).min(100_000) / 100 * 100;
    eprintln!("run: RLIMIT_NOFILE soft {} hard {}; largest idle level {}", limits.0, limits.1, max_idle);
    let load_before = sh("cat /proc/loadavg");
    let servers = servers(&root, &set);

    // Every scenario runs, unless BENCH_ONLY names some (comma-separated:
    // headline, callgrind, idle, http, resp, threads, tls); such a partial
    // run writes its report under benches/harness/target, not docs/, but
    // for the TLS scenario's own section of docs/PERFORMANCE.md.
    let only = std::env::var("BENCH_ONLY").ok().filter(|o| !o.trim().is_empty());
    let wants = |name: &str| only.as_deref().is_none_or(|o| o.split(',').any(|x| x.trim() == name));

    let mut phases: Vec<(&str, f64)> = Vec::new();
    let mut phase_start = Instant::now();
    let mut phase = |name: &'static str, phases: &mut Vec<(&str, f64)>| {
        phases.push((name, phase_start.elapsed().as_secs_f64()));
        phase_start = Instant::now();
    };

    // 1. Headline rounds, interleaved.
    let mut main: BTreeMap<&'static str, MainResult> = BTreeMap::new();
    for round in 0..if wants("headline") { set.rounds } else { 0 } {
        for s in &servers {
            let t = Instant::now();
            let res = main.entry(s.key).or_default();
            if let Err(e) = main_run(&root, &logs, s, &set, round == 0, res) {
                eprintln!("run: {} round {}: {e}", s.key, round + 1);
                res.error = Some(e);
            }
            if let Some((r, p)) = res.runs.last() {
                eprintln!(
                    "round {} {:<16} {:>9.0} msgs/s p50 {:>7.1} p99 {:>8.1} µs  user {:.3} sys {:.2} cpu {:.2} µs/msg{} ({:.1} s)",
                    round + 1,
                    s.key,
                    r.mps,
                    r.p50,
                    r.p99,
                    p.user_us,
                    p.sys_us,
                    p.cpu_us,
                    res.syscalls
                        .as_ref()
                        .filter(|_| round == 0)
                        .map(|c| format!("  syscalls/msg {:.3}", c.total_per_msg()))
                        .unwrap_or_default(),
                    t.elapsed().as_secs_f64()
                );
            }
        }
    }

    phase("headline", &mut phases);

    // 2. Instruction counts.
    let mut dumps: BTreeMap<&'static str, PathBuf> = BTreeMap::new();
    for s in servers.iter().filter(|_| wants("callgrind")) {
        let Some((warm, n)) = s.callgrind else { continue };
        let t = Instant::now();
        let out = logs.join(format!("{}.cg", s.key));
        let log = logs.join(format!("{}.cg.err", s.key));
        match callgrind_run(&root, s, set.active_conns, warm, n, &out, &log, 0) {
            Ok((dump, total)) => {
                let per = total as f64 / n as f64;
                eprintln!(
                    "callgrind {:<16} {:>9.0} instructions/msg ({:.1} s)",
                    s.key,
                    per,
                    t.elapsed().as_secs_f64()
                );
                main.entry(s.key).or_default().ir_per_msg = Some(per);
                dumps.insert(s.key, dump);
            }
            Err(e) => eprintln!("callgrind {}: {e}", s.key),
        }
    }
    let profile = {
        let mut text = String::new();
        for (key, title) in [
            ("rc-epoll", "rolecore epoll, examples/echo_server.rs"),
            ("mio", "mio 1.x"),
            ("c", "C epoll (floor)"),
        ] {
            let Some(dump) = dumps.get(key) else { continue };
            let rows = per_function(dump, set.cg_msgs as f64);
            let total = main.get(key).and_then(|m| m.ir_per_msg).unwrap_or(f64::NAN);
            let _ = writeln!(text, "{title}: {total:.0} instructions per message");
            for (f, v) in rows.iter().take(14) {
                let _ = writeln!(text, "  {v:>8.1}  {f}");
            }
            text.push('\n');
        }
        text
    };

    // 2b. Instructions per message of one active connection beside idle ones.
    let mut cg_idle: BTreeMap<&'static str, Vec<(usize, f64)>> = BTreeMap::new();
    for s in servers.iter().filter(|s| s.callgrind.is_some() && s.key != "asyncore" && wants("callgrind")) {
        let levels: &[usize] = if s.max_level { &[0, 10_000] } else { &[0, 1_000] };
        let (warm, n) = set.cg_idle;
        for &idle in levels {
            let t = Instant::now();
            let out = logs.join(format!("{}.cg1.{idle}", s.key));
            let log = logs.join(format!("{}.cg1.err", s.key));
            match callgrind_run(&root, s, 1, warm, n, &out, &log, idle) {
                Ok((_, total)) => {
                    let per = total as f64 / n as f64;
                    eprintln!(
                        "callgrind {:<16} 1 active + {idle:>6} idle: {per:>9.0} instructions/msg ({:.1} s)",
                        s.key,
                        t.elapsed().as_secs_f64()
                    );
                    cg_idle.entry(s.key).or_default().push((idle, per));
                }
                Err(e) => eprintln!("callgrind {} idle {idle}: {e}", s.key),
            }
        }
    }

    phase("callgrind", &mut phases);

    // 3. Idle connections.
    let mut idle: BTreeMap<&'static str, IdleResult> = BTreeMap::new();
    for s in servers.iter().filter(|s| !s.diagnostic && wants("idle")) {
        let t = Instant::now();
        eprintln!("idle {}:", s.key);
        let r = idle_run(&root, &logs, s, &set, max_idle);
        if let Some(n) = &r.note {
            eprintln!("    note: {n}");
        }
        eprintln!("    ({:.1} s)", t.elapsed().as_secs_f64());
        idle.insert(s.key, r);
    }

    phase("idle", &mut phases);

    // 4. Protocol servers against their peers: HTTP (wrk) and RESP
    // (redis-benchmark), rounds interleaved, server on CPU 0, load on CPU 1.
    let tmp = std::env::temp_dir().join(format!("rolecore-bench-{}", std::process::id()));
    fs::create_dir_all(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
    fs::write(tmp.join("summary.lua"), WRK_SCRIPT).map_err(|e| format!("summary.lua: {e}"))?;
    fs::write(tmp.join("limited.lua"), wrk_limited_script(set.http_strace_n))
        .map_err(|e| format!("limited.lua: {e}"))?;
    fs::write(tmp.join("limited_cg.lua"), wrk_limited_script(set.http_cg_n))
        .map_err(|e| format!("limited_cg.lua: {e}"))?;
    let example = |name: &str| root.join("target/release/examples").join(name).to_string_lossy().into_owned();
    let nginx_version = sh("nginx -v 2>&1 | sed 's/^nginx version: //'");
    let redis_version = sh("redis-server --version | grep -o 'v=[^ ]*' | cut -c3-");
    let http_servers = [
        ProtoServer {
            key: "rc-http",
            label: "rolecore http_server (epoll)".into(),
            peer: Peer::Example,
            argv: vec![example("http_server"), "{addr}".into(), "--backend".into(), "epoll".into()],
        },
        ProtoServer {
            key: "nginx",
            label: format!("{nginx_version} (1 process)"),
            peer: Peer::Nginx,
            argv: Vec::new(),
        },
    ];
    let resp_servers = [
        ProtoServer {
            key: "rc-resp",
            label: "rolecore resp_server (epoll)".into(),
            peer: Peer::Example,
            argv: vec![example("resp_server"), "{addr}".into(), "--backend".into(), "epoll".into()],
        },
        ProtoServer {
            key: "redis",
            label: format!("redis-server {redis_version}"),
            peer: Peer::Redis,
            argv: Vec::new(),
        },
    ];
    let mut http: BTreeMap<&'static str, ProtoResult> = BTreeMap::new();
    for round in 0..if wants("http") { set.rounds } else { 0 } {
        for s in &http_servers {
            let t = Instant::now();
            let res = http.entry(s.key).or_default();
            if let Err(e) = http_run(&logs, &tmp, s, &set, round == 0, res) {
                eprintln!("run: {} round {}: {e}", s.key, round + 1);
                res.main.error = Some(e);
            }
            if let Some((r, p)) = res.main.runs.last() {
                eprintln!(
                    "http round {} {:<8} {:>9.0} req/s p50 {:>7.1} p99 {:>8.1} µs  user {:.3} sys {:.2} cpu {:.2} µs/req{} ({:.1} s)",
                    round + 1,
                    s.key,
                    r.mps,
                    r.p50,
                    r.p99,
                    p.user_us,
                    p.sys_us,
                    p.cpu_us,
                    res.main
                        .syscalls
                        .as_ref()
                        .filter(|_| round == 0)
                        .map(|c| format!("  syscalls/req {:.3}", c.total_per_msg()))
                        .unwrap_or_default(),
                    t.elapsed().as_secs_f64()
                );
            }
        }
    }
    for s in http_servers.iter().filter(|_| wants("http")) {
        let t = Instant::now();
        let res = http.entry(s.key).or_default();
        match proto_callgrind(&logs, &tmp, s, &set, Some(res), None) {
            Ok(()) => eprintln!(
                "callgrind {:<8} {:>9.0} instructions/request ({:.1} s)",
                s.key,
                res.main.ir_per_msg.unwrap_or(f64::NAN),
                t.elapsed().as_secs_f64()
            ),
            Err(e) => eprintln!("callgrind {}: {e}", s.key),
        }
    }
    phase("http", &mut phases);
    let mut resp: BTreeMap<&'static str, BTreeMap<&'static str, ProtoResult>> = BTreeMap::new();
    for round in 0..if wants("resp") { set.rounds } else { 0 } {
        for s in &resp_servers {
            let t = Instant::now();
            let res = resp.entry(s.key).or_default();
            if let Err(e) = resp_run(&logs, &tmp, s, &set, round == 0, res) {
                eprintln!("run: {} round {}: {e}", s.key, round + 1);
                res.entry("error").or_default().main.error = Some(e);
            }
            for (name, _) in RESP_TESTS {
                let Some(pr) = res.get(name) else { continue };
                let Some((r, p)) = pr.main.runs.get(round) else { continue };
                eprintln!(
                    "resp round {} {:<8} {:<4} {:>9.0} req/s p50 {:>7.1} µs  user {:.3} sys {:.3} cpu {:.3} µs/req{}",
                    round + 1,
                    s.key,
                    name,
                    r.mps,
                    r.p50,
                    p.user_us,
                    p.sys_us,
                    p.cpu_us,
                    pr.main
                        .syscalls
                        .as_ref()
                        .filter(|_| round == 0)
                        .map(|c| format!("  syscalls/req {:.4}", c.total_per_msg()))
                        .unwrap_or_default(),
                );
            }
            eprintln!("resp round {} {} ({:.1} s)", round + 1, s.key, t.elapsed().as_secs_f64());
        }
    }
    for s in resp_servers.iter().filter(|_| wants("resp")) {
        let t = Instant::now();
        let res = resp.entry(s.key).or_default();
        match proto_callgrind(&logs, &tmp, s, &set, None, Some(res)) {
            Ok(()) => eprintln!(
                "callgrind {:<8} {} instructions/request ({:.1} s)",
                s.key,
                RESP_TESTS
                    .iter()
                    .map(|(n, _)| format!(
                        "{n} {:.0}",
                        res.get(n).and_then(|p| p.main.ir_per_msg).unwrap_or(f64::NAN)
                    ))
                    .collect::<Vec<_>>()
                    .join(", "),
                t.elapsed().as_secs_f64()
            ),
            Err(e) => eprintln!("callgrind {}: {e}", s.key),
        }
    }
    let _ = fs::remove_dir_all(&tmp);
    phase("resp", &mut phases);

    // 5. Threads: the echo server on 1 and 2 loops, nothing pinned.
    let mut scale: BTreeMap<usize, Vec<ScaleRun>> = BTreeMap::new();
    let mut scale_errors: Vec<String> = Vec::new();
    for round in 0..if wants("threads") { set.rounds } else { 0 } {
        for threads in [1usize, 2] {
            let t = Instant::now();
            match scale_run(&root, &logs, threads, &set) {
                Ok(r) => {
                    eprintln!(
                        "threads {threads} round {}: {:>9.0} msgs/s  server {:.2} µs/msg, load {:.2} µs/msg, machine busy {:.0}%, busiest loop {:.0}% ({:.1} s)",
                        round + 1,
                        r.run.mps,
                        r.server.cpu_us,
                        r.load.cpu_us,
                        100.0 * r.machine_busy_ns / (r.window_ns * num_cpus() as f64),
                        100.0 * r.busiest(),
                        t.elapsed().as_secs_f64()
                    );
                    scale.entry(threads).or_default().push(r);
                }
                Err(e) => {
                    eprintln!("run: threads {threads} round {}: {e}", round + 1);
                    scale_errors.push(format!("{threads} thread(s), round {}: {e}", round + 1));
                }
            }
        }
    }

    phase("threads", &mut phases);

    // 6. The report.
    let facts = vec![
        ("date (UTC)".into(), sh("date -u '+%Y-%m-%d %H:%M'")),
        ("nproc".into(), sh("nproc")),
        ("CPU".into(), sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2")),
        ("free -m".into(), sh("free -m | head -2")),
        ("uname -a".into(), sh("uname -a")),
        ("RLIMIT_NOFILE (soft / hard)".into(), format!("{} / {}", limits.0, limits.1)),
        ("load average before / after".into(), format!("{} / {}", load_before, sh("cat /proc/loadavg"))),
        ("rustc".into(), sh("rustc --version")),
        ("cc".into(), sh("cc --version | head -1")),
        ("python3".into(), sh("python3 --version 2>&1")),
        ("valgrind / strace".into(), sh("valgrind --version; strace -V | head -1")),
        (
            "driver time per scenario".into(),
            phases.iter().map(|(n, t)| format!("{n} {t:.0} s")).collect::<Vec<_>>().join(", "),
        ),
        ("nginx / redis-server".into(), format!("{nginx_version}<br>redis-server {redis_version}")),
        (
            "wrk / redis-benchmark".into(),
            sh("wrk -v 2>&1 | head -1 | cut -d' ' -f1-2; redis-benchmark --version"),
        ),
        (
            "mio".into(),
            sh(&format!("grep -A1 'name = \"mio\"' {}/benches/harness/Cargo.lock | tail -1", root.display())),
        ),
        (
            "rolecore tree measured".into(),
            sh(&format!(
                "cd {} && echo \"HEAD $(git rev-parse --short HEAD), $(git status --porcelain src | wc -l) uncommitted change(s) in src/ at the time of the run\"",
                root.display()
            )),
        ),
        (
            "harness settings".into(),
            format!(
                "rounds {}, warm-up {} s, measured {} s, strace window {} s, idle runs {} s; \
                 HTTP: wrk warm-up {} s, measured {} s, strace {} requests; RESP: redis-benchmark \
                 warm-up {}, measured {} and strace {} requests per test; threads: {} connections{}",
                set.rounds,
                set.warm_secs,
                set.run_secs,
                set.strace_secs,
                set.idle_run_secs,
                set.http_warm_secs,
                set.http_secs,
                set.http_strace_n,
                set.resp_warm_n,
                set.resp_n,
                set.resp_strace_n,
                set.scale_conns,
                only.as_deref().map(|o| format!("; BENCH_ONLY={o}")).unwrap_or_default()
            ),
        ),
    ];
    let report = Report {
        servers: &servers,
        main: &main,
        idle: &idle,
        cg_idle: &cg_idle,
        max_idle,
        limits,
        facts,
        alloc_log,
        profile,
        http_servers: &http_servers,
        resp_servers: &resp_servers,
        http: &http,
        resp: &resp,
        scale: &scale,
        scale_errors: &scale_errors,
        elapsed: std::env::var("BENCH_STARTED")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .and_then(|t| {
                SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .ok()?
                    .checked_sub(Duration::from_secs(t))
            })
            .unwrap_or_else(|| started.elapsed()),
        set: &set,
    };
    // A partial run (BENCH_ONLY) never overwrites the committed report.
    let (docs, name, svg) = if only.is_some() {
        (root.join("benches/harness/target"), "PERFORMANCE.partial.md", "perf.partial.svg")
    } else {
        (root.join("docs"), "PERFORMANCE.md", "perf.svg")
    };
    fs::create_dir_all(&docs).map_err(|e| format!("{}: {e}", docs.display()))?;
    let md = write_report(&report);
    fs::write(docs.join(name), md).map_err(|e| format!("{name}: {e}"))?;
    fs::write(docs.join(svg), write_svg(&servers, &idle, &cg_idle, max_idle))
        .map_err(|e| format!("{svg}: {e}"))?;
    // The TLS scenario last: its section goes into docs/PERFORMANCE.md
    // whatever else ran, replacing only the one written before.
    if wants("tls") {
        let t = Instant::now();
        let section = tls::tls_scenario(&root, &logs, &set)?;
        tls::splice(&root.join("docs/PERFORMANCE.md"), &section)?;
        eprintln!("run: tls scenario written to docs/PERFORMANCE.md ({:.1} s)", t.elapsed().as_secs_f64());
    }
    let stamp = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    eprintln!(
        "run: wrote {} and {} in {:.0} s (at {stamp})",
        docs.join(name).display(),
        docs.join(svg).display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
