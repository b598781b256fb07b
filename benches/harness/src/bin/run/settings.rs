//! The settings of a run: durations and sizes, shorter under `BENCH_QUICK=1`.

pub struct Settings {
    pub rounds: usize,
    pub warm_secs: f64,
    pub run_secs: f64,
    pub strace_secs: f64,
    pub idle_run_secs: f64,
    pub active_conns: usize,
    /// Messages before the counters are zeroed, and counted after.
    pub cg_warm: u64,
    pub cg_msgs: u64,
    /// The same for one active connection beside idle ones.
    pub cg_idle: (u64, u64),
    /// HTTP: `wrk` seconds of warm-up and measured (whole seconds: wrk's
    /// `-d`), and the requests under strace.
    pub http_warm_secs: u32,
    pub http_secs: u32,
    pub http_strace_n: u64,
    /// Requests counted under callgrind: HTTP, and each RESP test.
    pub http_cg_n: u64,
    pub resp_cg_n: u64,
    /// RESP: `redis-benchmark` requests of the warm-up (all tests), of each
    /// timed test, and of each test under strace.
    pub resp_warm_n: u64,
    pub resp_n: u64,
    pub resp_strace_n: u64,
    /// Threads: ping-pong connections.
    pub scale_conns: usize,
}

impl Settings {
    pub fn new() -> Settings {
        if std::env::var_os("BENCH_QUICK").is_some() {
            Settings {
                rounds: 1,
                warm_secs: 0.3,
                run_secs: 1.0,
                strace_secs: 0.5,
                idle_run_secs: 0.5,
                active_conns: 50,
                cg_warm: 500,
                cg_msgs: 2000,
                cg_idle: (200, 500),
                http_warm_secs: 1,
                http_secs: 1,
                http_strace_n: 5_000,
                http_cg_n: 2_000,
                resp_cg_n: 16_000,
                resp_warm_n: 16_000,
                resp_n: 48_000,
                resp_strace_n: 16_000,
                scale_conns: 100,
            }
        } else {
            Settings {
                rounds: 3,
                warm_secs: 1.0,
                run_secs: 3.0,
                strace_secs: 1.5,
                idle_run_secs: 1.0,
                active_conns: 50,
                cg_warm: 2000,
                cg_msgs: 10000,
                cg_idle: (300, 2000),
                http_warm_secs: 1,
                http_secs: 3,
                http_strace_n: 40_000,
                http_cg_n: 10_000,
                resp_cg_n: 48_000,
                resp_warm_n: 48_000,
                resp_n: 1_000_000,
                resp_strace_n: 96_000,
                scale_conns: 100,
            }
        }
    }
}
