//! `/proc` sampling: a process's CPU time and RSS, per message.

use std::fs;

use crate::Result;

#[derive(Clone, Copy, Debug, Default)]
pub struct Cpu {
    pub utime: u64,
    pub stime: u64,
    pub run_ns: u64,
}

/// CPUs online (the machine's, not this process's affinity).
pub fn num_cpus() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    if n > 0 { n as usize } else { 1 }
}

pub fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

pub fn cpu(pid: u32) -> Result<Cpu> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).map_err(|e| format!("stat {pid}: {e}"))?;
    let rest = &stat[stat.rfind(')').ok_or("bad stat")? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the command: field 3 (state) is f[0]; utime is field 14, stime 15.
    let utime = f[11].parse().map_err(|_| "utime")?;
    let stime = f[12].parse().map_err(|_| "stime")?;
    // schedstat is per thread: add up every thread of the process (rolecore's
    // example runs its loop in a thread of its own).
    let mut run_ns = 0;
    if let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            let sched = fs::read_to_string(t.path().join("schedstat")).unwrap_or_default();
            run_ns += sched.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        }
    }
    Ok(Cpu { utime, stime, run_ns })
}

pub fn rss_kb(pid: u32) -> Result<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| format!("status: {e}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| "no VmRSS".into())
}

/// CPU per message over a window.
#[derive(Clone, Copy, Debug, Default)]
pub struct PerMsg {
    pub user_us: f64,
    pub sys_us: f64,
    pub cpu_us: f64,
    pub user_ticks: u64,
}

pub fn per_msg(a: Cpu, b: Cpu, msgs: u64) -> PerMsg {
    let hz = clock_ticks();
    let m = msgs.max(1) as f64;
    PerMsg {
        user_us: (b.utime - a.utime) as f64 / hz * 1e6 / m,
        sys_us: (b.stime - a.stime) as f64 / hz * 1e6 / m,
        cpu_us: (b.run_ns - a.run_ns) as f64 / 1e3 / m,
        user_ticks: b.utime - a.utime,
    }
}
