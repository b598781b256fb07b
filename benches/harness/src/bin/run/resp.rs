//! The RESP scenario: redis-benchmark against rolecore's `resp_server` and
//! redis-server.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::Result;
use crate::procfs::{cpu, per_msg};
use crate::procs::RunResult;
use crate::proto::{PROTO_CONNS, ProtoResult, ProtoServer, port_of, run_bounded};
use crate::settings::Settings;
use crate::strace::strace_window;

/// The RESP commands timed, each by its own `redis-benchmark -t` run so that
/// the server's CPU time can be divided among them: (name, test).
/// `ping_mbulk` is PING as a client library sends it (a multibulk frame).
pub const RESP_TESTS: [(&str, &str); 3] = [("PING", "ping_mbulk"), ("SET", "set"), ("GET", "get")];
pub const RESP_PIPELINE: u32 = 16;

/// `redis-benchmark -t TEST -P 16 -c 50 -n N -q --csv` on CPU 1.
pub fn redis_bench(port: u16, test: &str, n: u64) -> Result<RunResult> {
    let mut cmd = Command::new("taskset");
    cmd.args([
        "-c",
        "1",
        "redis-benchmark",
        "-h",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-t",
        test,
        "-P",
        &RESP_PIPELINE.to_string(),
        "-c",
        &PROTO_CONNS.to_string(),
        "-n",
        &n.to_string(),
        "-q",
        "--csv",
    ]);
    let out = run_bounded(&mut cmd, Duration::from_secs(90))?;
    // "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
    let row = out
        .lines()
        .map(|l| l.split(',').map(|f| f.trim_matches('"').to_string()).collect::<Vec<_>>())
        .rfind(|f| f.len() >= 7 && f[0] != "test")
        .ok_or(format!("redis-benchmark said {out:?}"))?;
    let num = |i: usize| row[i].parse::<f64>().map_err(|_| format!("redis-benchmark: bad field in {row:?}"));
    Ok(RunResult { msgs: n, mps: num(1)?, p50: num(4)? * 1e3, p99: num(6)? * 1e3 })
}

/// One round of the RESP scenario on one server: a warm-up of every test,
/// then each test timed on its own, and (first round) each under strace.
pub fn resp_run(
    logs: &Path,
    tmp: &Path,
    s: &ProtoServer,
    set: &Settings,
    with_strace: bool,
    res: &mut BTreeMap<&'static str, ProtoResult>,
) -> Result<()> {
    let server = s.start(logs, tmp, &[])?;
    let out = (|| -> Result<()> {
        let port = port_of(&server.addr)?;
        let all: Vec<&str> = RESP_TESTS.iter().map(|t| t.1).collect();
        redis_bench(port, &all.join(","), set.resp_warm_n)?;
        for (name, test) in RESP_TESTS {
            let a = cpu(server.pid)?;
            let r = redis_bench(port, test, set.resp_n)?;
            let b = cpu(server.pid)?;
            res.entry(name).or_default().main.runs.push((r, per_msg(a, b, r.msgs)));
        }
        if with_strace {
            for (name, test) in RESP_TESTS {
                let file = logs.join(format!("{}.{test}.strace", s.key));
                let n = set.resp_strace_n;
                let sc = strace_window(server.pid, &file, || redis_bench(port, test, n).map(|r| r.msgs))?;
                res.entry(name).or_default().main.syscalls = Some(sc);
            }
        }
        Ok(())
    })();
    server.stop();
    out
}
