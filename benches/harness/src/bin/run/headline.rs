//! The headline scenario: echo ping-pong on the active connections (CPU per
//! message, throughput, latency, and a window under strace).

use std::path::Path;

use crate::Result;
use crate::procfs::{PerMsg, cpu, per_msg};
use crate::procs::{Loadgen, RunResult, ServerProc};
use crate::servers::Server;
use crate::settings::Settings;
use crate::strace::{Syscalls, strace_window};

#[derive(Clone, Debug, Default)]
pub struct MainResult {
    pub runs: Vec<(RunResult, PerMsg)>,
    pub syscalls: Option<Syscalls>,
    pub ir_per_msg: Option<f64>,
    pub error: Option<String>,
}

pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

impl MainResult {
    pub fn med(&self, f: impl Fn(&(RunResult, PerMsg)) -> f64) -> f64 {
        median(self.runs.iter().map(f).collect())
    }
}

pub fn main_run(
    root: &Path,
    logs: &Path,
    s: &Server,
    set: &Settings,
    with_strace: bool,
    res: &mut MainResult,
) -> Result<()> {
    let server = ServerProc::start(&s.argv, &[], &logs.join(format!("{}.main.err", s.key)))?;
    let out = (|| -> Result<()> {
        let mut lg = Loadgen::start(root, &server.addr, set.active_conns)?;
        let r = (|| -> Result<()> {
            lg.run(set.warm_secs)?;
            let a = cpu(server.pid)?;
            let r = lg.run(set.run_secs)?;
            let b = cpu(server.pid)?;
            res.runs.push((r, per_msg(a, b, r.msgs)));
            if with_strace {
                let file = logs.join(format!("{}.strace", s.key));
                let secs = set.strace_secs;
                res.syscalls = Some(strace_window(server.pid, &file, || lg.run(secs).map(|r| r.msgs))?);
            }
            Ok(())
        })();
        lg.quit();
        r
    })();
    server.stop();
    out
}
