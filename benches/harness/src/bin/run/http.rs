//! The HTTP scenario: wrk against rolecore's `http_server` and nginx.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::Result;
use crate::procfs::{cpu, per_msg};
use crate::procs::{RunResult, fields, lines_of};
use crate::proto::{PROTO_CONNS, ProtoResult, ProtoServer, run_bounded};
use crate::settings::Settings;
use crate::strace::strace_window;

/// wrk's summary, as one line the driver parses: every completed request,
/// the bytes read, the errors (socket errors and non-2xx answers).
pub const WRK_SCRIPT: &str = r#"-- Written by benches/harness/src/bin/run/http.rs.
done = function(summary, latency, requests)
  local e = summary.errors
  local secs = summary.duration / 1e6
  io.write(string.format(
    "result msgs=%d secs=%.6f mps=%.1f p50_us=%.1f p99_us=%.1f bytes=%d errors=%d status=%d\n",
    summary.requests, secs, summary.requests / secs, latency:percentile(50),
    latency:percentile(99), summary.bytes, e.connect + e.read + e.write + e.timeout, e.status))
end
"#;

/// The same summary, and wrk's thread stops after `limit` responses and says
/// so (`limit reached`); wrk's main thread sleeps out its `-d` unless
/// interrupted, so the driver then sends it SIGINT, and it prints its summary.
/// The strace windows of both HTTP servers thus cover the same number of
/// requests, and their connections' setup is spread over as many.
pub fn wrk_limited_script(limit: u64) -> String {
    format!(
        "{WRK_SCRIPT}\nlocal answered = 0\nresponse = function(status, headers, body)\n  answered = answered + 1\n  \
         if answered == {limit} then\n    io.write(\"limit reached\\n\")\n    io.stdout:flush()\n    \
         wrk.thread:stop()\n  end\nend\n"
    )
}

/// `wrk` with the limited script: runs until `limit reached`, then SIGINT.
pub fn wrk_limited(url: &str, conns: usize, script: &Path) -> Result<u64> {
    let mut child = Command::new("taskset")
        .args(["-c", "1", "wrk", "-t1", &format!("-c{conns}"), "-d120s", "-s"])
        .arg(script)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("spawn wrk: {e}"))?;
    let out = lines_of(child.stdout.take().expect("piped"));
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut result = None;
    let mut interrupted = false;
    while Instant::now() < deadline {
        match out.recv_timeout(Duration::from_millis(50)) {
            Ok(l) if l.starts_with("limit reached") && !interrupted => {
                // SAFETY: kill(2) on our own child (taskset exec'd wrk).
                unsafe {
                    libc::kill(child.id() as libc::pid_t, libc::SIGINT);
                }
                interrupted = true;
            }
            Ok(l) if l.starts_with("result ") => {
                result = Some(l);
                break;
            }
            Ok(_) | Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let line = result.ok_or("wrk (limited) gave no summary within 60 s")?;
    let kv = fields(&line);
    let n = |k: &str| kv.get(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(u64::MAX);
    if n("errors") != 0 || n("status") != 0 {
        return Err(format!("wrk: {line}"));
    }
    Ok(RunResult::parse(&line)?.msgs)
}

/// `wrk -t1 -cN -dSECSs` (keep-alive, one request in flight per connection)
/// on CPU 1. Returns the requests, and the bytes of one response.
pub fn wrk(url: &str, secs: u32, conns: usize, script: &Path) -> Result<(RunResult, f64)> {
    wrk_with(url, secs, conns, script, &[])
}

/// [`wrk`] with more of wrk's arguments (`-H "Connection: close"`).
pub fn wrk_with(
    url: &str,
    secs: u32,
    conns: usize,
    script: &Path,
    extra: &[&str],
) -> Result<(RunResult, f64)> {
    let mut cmd = Command::new("taskset");
    cmd.args(["-c", "1", "wrk", "-t1", &format!("-c{conns}"), &format!("-d{secs}s"), "-s"])
        .arg(script)
        .args(extra)
        .arg(url);
    let out = run_bounded(&mut cmd, Duration::from_secs(u64::from(secs) + 30))?;
    let line = out.lines().find(|l| l.starts_with("result ")).ok_or(format!("wrk said {out:?}"))?;
    let kv = fields(line);
    let n = |k: &str| kv.get(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(u64::MAX);
    if n("errors") != 0 || n("status") != 0 {
        return Err(format!("wrk: {line}"));
    }
    let r = RunResult::parse(line)?;
    Ok((r, n("bytes") as f64 / r.msgs.max(1) as f64))
}

/// One round of the HTTP scenario on one server: warm-up, the measured
/// `wrk` run with the server's CPU time around it, and (first round) a
/// `wrk` run under strace.
pub fn http_run(
    logs: &Path,
    tmp: &Path,
    s: &ProtoServer,
    set: &Settings,
    with_strace: bool,
    res: &mut ProtoResult,
) -> Result<()> {
    let server = s.start(logs, tmp, &[])?;
    let url = format!("http://{}/", server.addr);
    let script = tmp.join("summary.lua");
    let out = (|| -> Result<()> {
        wrk(&url, set.http_warm_secs, PROTO_CONNS, &script)?;
        let a = cpu(server.pid)?;
        let (r, bytes) = wrk(&url, set.http_secs, PROTO_CONNS, &script)?;
        let b = cpu(server.pid)?;
        res.main.runs.push((r, per_msg(a, b, r.msgs)));
        res.bytes = bytes;
        if with_strace {
            let file = logs.join(format!("{}.strace", s.key));
            let limited = tmp.join("limited.lua");
            let load = || wrk_limited(&url, PROTO_CONNS, &limited);
            res.main.syscalls = Some(strace_window(server.pid, &file, load)?);
        }
        Ok(())
    })();
    server.stop();
    out
}
