//! Syscalls per message, from `strace -c -f` around a load window.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::Result;
use crate::procs::lines_of;

#[derive(Clone, Debug, Default)]
pub struct Syscalls {
    pub msgs: u64,
    pub total: u64,
    pub by_name: BTreeMap<String, u64>,
}

impl Syscalls {
    pub fn total_per_msg(&self) -> f64 {
        self.total as f64 / self.msgs.max(1) as f64
    }
    pub fn count(&self, names: &[&str]) -> u64 {
        names.iter().map(|n| self.by_name.get(*n).copied().unwrap_or(0)).sum()
    }
}

pub fn parse_strace(text: &str) -> Syscalls {
    let mut s = Syscalls::default();
    for line in text.lines() {
        let t: Vec<&str> = line.split_whitespace().collect();
        if t.len() < 5 || t[0].parse::<f64>().is_err() {
            continue;
        }
        let Ok(calls) = t[3].parse::<u64>() else { continue };
        let name = t[t.len() - 1];
        if name == "total" {
            s.total = calls;
        } else {
            s.by_name.insert(name.to_string(), calls);
        }
    }
    if s.total == 0 {
        s.total = s.by_name.values().sum();
    }
    s
}

/// Counts a server's system calls while `load` runs (it returns the messages
/// or requests it made): strace attaches while the load is paused, and
/// detaches after every answer came back, so nothing outside the window is
/// counted but the wait the server sleeps in. The echo scenarios pass the
/// load generator; the protocol scenarios a `wrk` or `redis-benchmark` run.
pub fn strace_window(pid: u32, out: &Path, load: impl FnOnce() -> Result<u64>) -> Result<Syscalls> {
    let mut st = Command::new("strace")
        .args(["-c", "-f", "-p", &pid.to_string(), "-o"])
        .arg(out)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn strace: {e}"))?;
    let err = lines_of(st.stderr.take().expect("piped"));
    let attached = err.recv_timeout(Duration::from_secs(10));
    if !matches!(&attached, Ok(l) if l.contains("attached")) {
        let _ = st.kill();
        let _ = st.wait();
        return Err(format!("strace did not attach: {attached:?}"));
    }
    thread::sleep(Duration::from_millis(300));
    let result = load();
    thread::sleep(Duration::from_millis(200));
    // SAFETY: kill(2) on our own child strace: SIGINT makes it detach and
    // write its summary.
    unsafe {
        libc::kill(st.id() as libc::pid_t, libc::SIGINT);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && matches!(st.try_wait(), Ok(None)) {
        thread::sleep(Duration::from_millis(20));
    }
    let _ = st.kill();
    let _ = st.wait();
    let msgs = result?;
    let text = fs::read_to_string(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let mut s = parse_strace(&text);
    s.msgs = msgs;
    Ok(s)
}
