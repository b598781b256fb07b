//! Instructions per request of the protocol servers, under callgrind: the
//! HTTP and RESP scenarios' counted loads. Its own module, above both, so
//! that what they share (`proto`) imports neither.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

use crate::Result;
use crate::callgrind::{callgrind_control, callgrind_total};
use crate::http::{wrk, wrk_limited};
use crate::proto::{PROTO_CONNS, ProtoResult, ProtoServer, port_of};
use crate::resp::{RESP_TESTS, redis_bench};
use crate::settings::Settings;

/// Instructions per request of a protocol server: it runs under callgrind;
/// after a warm-up the counters are zeroed (`callgrind_control -z`) while no
/// load runs, a counted load runs (`http_cg_n` requests of wrk, or
/// `resp_cg_n` of each redis-benchmark test), and the counters are dumped
/// (`-d`); one dump per load. Fills `ir_per_msg` and `dump` of each result.
pub fn proto_callgrind(
    logs: &Path,
    tmp: &Path,
    s: &ProtoServer,
    set: &Settings,
    http: Option<&mut ProtoResult>,
    resp: Option<&mut BTreeMap<&'static str, ProtoResult>>,
) -> Result<()> {
    let out = logs.join(format!("{}.cg", s.key));
    for i in 0..=RESP_TESTS.len() {
        let _ = fs::remove_file(format!("{}.{i}", out.display()));
    }
    let _ = fs::remove_file(&out);
    let file_arg = format!("--callgrind-out-file={}", out.display());
    let prefix = ["valgrind", "--tool=callgrind", "--dump-instr=no", &file_arg];
    let server = s.start(logs, tmp, &prefix)?;
    let pid = server.pid;
    let mut dumps = 0;
    let mut dump = |n: u64| -> Result<((PathBuf, u64), f64)> {
        callgrind_control(pid, "-d")?;
        dumps += 1;
        let file = PathBuf::from(format!("{}.{dumps}", out.display()));
        let per = callgrind_total(&file)? as f64 / n.max(1) as f64;
        Ok(((file, n), per))
    };
    let r = (|| -> Result<()> {
        if let Some(res) = http {
            let url = format!("http://{}/", server.addr);
            wrk(&url, set.http_warm_secs, PROTO_CONNS, &tmp.join("summary.lua"))?;
            callgrind_control(pid, "-z")?;
            let n = wrk_limited(&url, PROTO_CONNS, &tmp.join("limited_cg.lua"))?;
            let (file, per) = dump(n)?;
            res.main.ir_per_msg = Some(per);
            res.dump = Some(file);
        }
        if let Some(res) = resp {
            let port = port_of(&server.addr)?;
            let all: Vec<&str> = RESP_TESTS.iter().map(|t| t.1).collect();
            redis_bench(port, &all.join(","), set.resp_warm_n)?;
            for (name, test) in RESP_TESTS {
                callgrind_control(pid, "-z")?;
                let r = redis_bench(port, test, set.resp_cg_n)?;
                let (file, per) = dump(r.msgs)?;
                let e = res.entry(name).or_default();
                e.main.ir_per_msg = Some(per);
                e.dump = Some(file);
            }
        }
        Ok(())
    })();
    thread::sleep(Duration::from_millis(200));
    server.stop();
    r
}
