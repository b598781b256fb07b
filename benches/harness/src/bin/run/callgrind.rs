//! Instructions per message, from callgrind (counters zeroed and dumped around
//! a load).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

use crate::Result;
use crate::machine::sh;
use crate::procs::{Loadgen, ServerProc};
use crate::servers::Server;

pub fn callgrind_total(path: &Path) -> Result<u64> {
    let text = fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    text.lines()
        .find_map(|l| l.strip_prefix("summary:").or_else(|| l.strip_prefix("totals:")))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| format!("no totals in {}", path.display()))
}

/// Asks a process running under callgrind to zero its counters (`-z`) or to
/// dump them (`-d`); vgdb reaches it even while it sleeps in a wait.
pub fn callgrind_control(pid: u32, what: &str) -> Result<()> {
    let out = Command::new("callgrind_control")
        .args([what, &pid.to_string()])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("callgrind_control: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if out.status.success() && text.contains("OK") {
        Ok(())
    } else {
        Err(format!("callgrind_control {what} {pid}: {}", text.trim()))
    }
}

/// Instructions the server executes for exactly `n` messages: the server runs
/// under callgrind; the load generator connects `conns` connections (and
/// `idle` idle ones), warms up with `warm` messages and goes quiet; the
/// counters are zeroed, `n` messages run, the load goes quiet again and the
/// counters are dumped. Returns the dump file and its total.
#[allow(clippy::too_many_arguments)]
pub fn callgrind_run(
    root: &Path,
    s: &Server,
    conns: usize,
    warm: u64,
    n: u64,
    out: &Path,
    log: &Path,
    idle: usize,
) -> Result<(PathBuf, u64)> {
    let _ = fs::remove_file(out);
    let dump = PathBuf::from(format!("{}.1", out.display()));
    let _ = fs::remove_file(&dump);
    let prefix = ["valgrind", "--tool=callgrind", "--dump-instr=no"];
    let file_arg = format!("--callgrind-out-file={}", out.display());
    let mut pre: Vec<&str> = prefix.to_vec();
    pre.push(&file_arg);
    let server = ServerProc::start(&s.argv, &pre, log)?;
    let pid = server.pid;
    let r = (|| -> Result<()> {
        let mut lg = Loadgen::start(root, &server.addr, conns)?;
        let timeout = Duration::from_secs(120);
        let r = (|| -> Result<()> {
            if idle > 0 {
                let line = lg.command(&format!("idle {idle} 120"), Duration::from_secs(150))?;
                if line.contains("error=") {
                    return Err(format!("idle under callgrind: {line}"));
                }
            }
            lg.count(warm, timeout)?;
            callgrind_control(pid, "-z")?;
            lg.count(n, timeout)?;
            callgrind_control(pid, "-d")
        })();
        lg.quit();
        r
    })();
    thread::sleep(Duration::from_millis(200));
    server.stop();
    r?;
    let total = callgrind_total(&dump)?;
    Ok((dump, total))
}

/// Instructions per message by function (self cost) in a window dump.
pub fn per_function(dump: &Path, msgs: f64) -> Vec<(String, f64)> {
    let out = sh(&format!("callgrind_annotate --auto=no --threshold=100 {} 2>/dev/null", dump.display()));
    let mut m: BTreeMap<String, f64> = BTreeMap::new();
    let mut total = f64::INFINITY;
    for l in out.lines() {
        let l = l.trim_start();
        let Some((num, rest)) = l.split_once(' ') else { continue };
        let Ok(n) = num.replace(',', "").parse::<f64>() else { continue };
        let Some((_, func)) = rest.split_once(")  ") else { continue };
        let func = func.trim();
        if func.contains("PROGRAM TOTALS") {
            total = n;
            continue;
        }
        // A dump taken mid-run shows the frames that were on the stack when
        // the counters were zeroed (thread start, main, the loop) with the
        // whole total: they are callers, not costs.
        if n >= 0.999 * total {
            continue;
        }
        // Drop the object in brackets, and the file before the function.
        let func = func.rsplit_once(" [").map_or(func, |(f, _)| f);
        let func = match func.split_once(':') {
            Some((file, f)) if !file.contains('<') && !f.starts_with(':') => f,
            _ => func,
        };
        *m.entry(func.to_string()).or_insert(0.0) += n / msgs;
    }
    let mut rows: Vec<(String, f64)> = m.into_iter().filter(|(_, v)| *v >= 0.5).collect();
    rows.sort_by(|x, y| y.1.total_cmp(&x.1));
    rows
}
