//! The report's protocol and thread sections.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::callgrind::per_function;
use crate::headline::{MainResult, median};
use crate::procfs::num_cpus;
use crate::proto::{PROTO_CONNS, ProtoResult};
use crate::report_fmt::{Report, by_name_per_req, fmt_f, fmt_int, fmt_us, ticks_list, verdict};
use crate::resp::{RESP_PIPELINE, RESP_TESTS};
use crate::strace::Syscalls;
use crate::threads::{ScaleRun, hash_busiest_share};

/// The protocol and thread sections of the report.
pub fn write_proto_and_threads(w: &mut String, r: &Report<'_>) {
    let set = r.set;
    if !r.http.is_empty() || !r.resp.is_empty() {
        let _ = writeln!(w, "\n## Protocol servers against their peers\n");
        let _ = writeln!(
            w,
            "rolecore's `examples/http_server.rs` against nginx and `examples/resp_server.rs` against \
             redis-server, each pair under the same load. Server pinned to CPU 0, load tool to CPU 1; \
             {} interleaved rounds, each with a fresh server, a warm-up and a measured run; medians. \
             **user / sys µs/req**: the server's `utime`/`stime` (`/proc/PID/stat`, tick-sampled; the \
             tick counts of the rounds are given) over the measured run, divided by the requests \
             answered in it; **CPU µs/req**: `/proc/PID/schedstat` over the same run (exact, all \
             threads). **syscalls/req**: `strace -c -f -p PID` attached to the server (first round) \
             while the load tool is not running, then one more load run, then detached; calls divided \
             by that run's requests. The load tools open fresh connections for each run, so each \
             window also holds {} accepts and closes and what goes with them (by name below). \
             **user instr/req**: the server under `valgrind --tool=callgrind`, warmed up, counters \
             zeroed while no load runs, then {} HTTP requests (a wrk script stops there) or {} \
             requests of each redis-benchmark test, counters dumped: exact user-space instructions \
             over the requests, connection setup of the load tool included. Before any timing, each \
             server answers one checked exchange.\n",
            set.rounds,
            PROTO_CONNS,
            fmt_int(set.http_cg_n as f64),
            fmt_int(set.resp_cg_n as f64)
        );
    }
    if !r.http.is_empty() {
        let _ = writeln!(
            w,
            "### HTTP: `wrk -t1 -c{} -d{}s`, keep-alive, `GET /`\n\nnginx: one process \
             (`worker_processes 1; master_process off; daemon off;`), `access_log off`, \
             `keepalive_requests 1000000` (so that, like rolecore, it never closes a kept \
             connection during a run), `location / {{ default_type text/plain; return 200 \"Hello, \
             world!\"; }}`. Both answer `200`, `Content-Type: text/plain`, `Content-Length: 13`; nginx \
             adds `Date` and `Connection: keep-alive` headers (bytes per response below). Warm-up: \
             `wrk -d{}s`; syscalls: {} requests under strace (a wrk script stops it there, so \
             both servers' windows hold as many requests).\n",
            PROTO_CONNS,
            set.http_secs,
            set.http_warm_secs,
            fmt_int(set.http_strace_n as f64)
        );
        let _ = writeln!(
            w,
            "| server | requests/s | p50 µs | p99 µs | bytes per response | user µs/req | sys µs/req | CPU µs/req | user ticks per round | user instr/req (callgrind) | syscalls/req |"
        );
        let _ = writeln!(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for s in r.http_servers {
            let Some(pr) = r.http.get(s.key) else { continue };
            let m = &pr.main;
            if m.runs.is_empty() {
                let _ = writeln!(
                    w,
                    "| {} | failed: {} |||||||| ",
                    s.label,
                    m.error.clone().unwrap_or_default().replace('|', "/")
                );
                continue;
            }
            let _ = writeln!(
                w,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                s.label,
                fmt_int(m.med(|x| x.0.mps)),
                fmt_us(m.med(|x| x.0.p50)),
                fmt_us(m.med(|x| x.0.p99)),
                fmt_f(pr.bytes, 0),
                fmt_f(m.med(|x| x.1.user_us), 3),
                fmt_f(m.med(|x| x.1.sys_us), 2),
                fmt_f(m.med(|x| x.1.cpu_us), 2),
                ticks_list(m),
                m.ir_per_msg.map_or("–".into(), fmt_int),
                m.syscalls.as_ref().map_or("–".into(), |c| fmt_f(c.total_per_msg(), 3)),
            );
        }
    }
    if !r.resp.is_empty() {
        let _ = writeln!(
            w,
            "\n### RESP: `redis-benchmark -P {} -c {} -n {}`, one run per command\n\nEach command is \
             its own `redis-benchmark -t` run, so the server's CPU time over the run is that \
             command's: `-t ping_mbulk` (PING as a client library sends it, a multibulk frame), \
             `-t set`, `-t get` (redis-benchmark's defaults: one key, a 3-byte value; GET runs after \
             SET and finds it). redis-server: `--save \"\" --appendonly no`, its default single I/O \
             thread. Warm-up: all three tests, {} requests each; syscalls: {} requests per test under \
             strace. Latencies are redis-benchmark's (per pipelined request, µs).\n",
            RESP_PIPELINE,
            PROTO_CONNS,
            fmt_int(set.resp_n as f64),
            fmt_int(set.resp_warm_n as f64),
            fmt_int(set.resp_strace_n as f64)
        );
        let _ = writeln!(
            w,
            "| command | server | requests/s | p50 µs | p99 µs | user µs/req | sys µs/req | CPU µs/req | user ticks per round | user instr/req (callgrind) | syscalls/req |"
        );
        let _ = writeln!(w, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for (name, _) in RESP_TESTS {
            for s in r.resp_servers {
                let Some(pr) = r.resp.get(s.key).and_then(|m| m.get(name)) else {
                    if let Some(e) =
                        r.resp.get(s.key).and_then(|m| m.get("error")).and_then(|p| p.main.error.clone())
                    {
                        let _ =
                            writeln!(w, "| {name} | {} | failed: {} |||||||| ", s.label, e.replace('|', "/"));
                    }
                    continue;
                };
                let m = &pr.main;
                let _ = writeln!(
                    w,
                    "| {name} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    s.label,
                    fmt_int(m.med(|x| x.0.mps)),
                    fmt_us(m.med(|x| x.0.p50)),
                    fmt_us(m.med(|x| x.0.p99)),
                    fmt_f(m.med(|x| x.1.user_us), 3),
                    fmt_f(m.med(|x| x.1.sys_us), 3),
                    fmt_f(m.med(|x| x.1.cpu_us), 3),
                    ticks_list(m),
                    m.ir_per_msg.map_or("–".into(), fmt_int),
                    m.syscalls.as_ref().map_or("–".into(), |c| fmt_f(c.total_per_msg(), 4)),
                );
            }
        }
        if let Some(e) = r.resp.values().filter_map(|m| m.get("error")).find_map(|p| p.main.error.clone()) {
            let _ = writeln!(w, "\nA round failed: {}", e.replace('|', "/"));
        }
    }
    if !r.http.is_empty() || !r.resp.is_empty() {
        let _ = writeln!(w, "\n### System calls per request in the strace window, by name\n");
        let _ = writeln!(w, "| load | server | requests | calls per request by name (calls) |");
        let _ = writeln!(w, "|---|---|---:|---|");
        for s in r.http_servers {
            let Some(c) = r.http.get(s.key).and_then(|p| p.main.syscalls.as_ref()) else { continue };
            let _ =
                writeln!(w, "| HTTP | {} | {} | {} |", s.label, fmt_int(c.msgs as f64), by_name_per_req(c));
        }
        for (name, _) in RESP_TESTS {
            for s in r.resp_servers {
                let Some(c) =
                    r.resp.get(s.key).and_then(|m| m.get(name)).and_then(|p| p.main.syscalls.as_ref())
                else {
                    continue;
                };
                let _ = writeln!(
                    w,
                    "| {name} | {} | {} | {} |",
                    s.label,
                    fmt_int(c.msgs as f64),
                    by_name_per_req(c)
                );
            }
        }
    }

    let mut profile = String::new();
    let entries: [(&str, Option<&ProtoResult>); 4] = [
        ("rolecore http_server, HTTP", r.http.get("rc-http")),
        ("nginx, HTTP", r.http.get("nginx")),
        ("rolecore resp_server, SET", r.resp.get("rc-resp").and_then(|m| m.get("SET"))),
        ("redis-server, SET", r.resp.get("redis").and_then(|m| m.get("SET"))),
    ];
    for (title, pr) in entries {
        let Some(pr) = pr else { continue };
        let Some((dump, n)) = &pr.dump else { continue };
        let rows = per_function(dump, *n as f64);
        let _ = writeln!(
            profile,
            "{title}: {} instructions per request",
            fmt_int(pr.main.ir_per_msg.unwrap_or(f64::NAN))
        );
        for (f, v) in rows.iter().take(if title.starts_with("rolecore") { 16 } else { 10 }) {
            let f: String = if f.chars().count() > 110 {
                f.chars().take(107).collect::<String>() + "..."
            } else {
                f.clone()
            };
            let _ = writeln!(profile, "  {v:>8.1}  {f}");
        }
        profile.push('\n');
    }
    if !profile.is_empty() {
        let _ = writeln!(w, "\n### Where the protocol servers' instructions go\n");
        let _ = writeln!(
            w,
            "Instructions per request by function (self cost), from `callgrind_annotate` of the \
             counted requests above; rolecore's servers and, for comparison, the top of their \
             peers'. Functions under half an instruction per request are left out.\n"
        );
        let _ = writeln!(w, "```text\n{}\n```", profile.trim_end());
    }

    if r.scale.is_empty() && r.scale_errors.is_empty() {
        return;
    }
    let ncpu = num_cpus() as f64;
    let _ = writeln!(w, "\n## Threads: the echo server on 1 and 2 loops\n");
    let _ = writeln!(
        w,
        "`examples/echo_server --backend epoll --threads N`: N threads, each with its own loop and \
         its own `SO_REUSEPORT` listener on the one address (the kernel hashes each new connection \
         to one of them). The load generator (one thread) keeps {} ping-pong connections of 64-byte \
         messages; {} interleaved rounds, each with a fresh server: {} s warm-up, {} s measured; \
         medians. **Nothing is pinned, and the load runs on the same {} cores as the server**: the \
         server's loops, the load generator and whatever else runs on the machine share them, so \
         these figures say how this machine's CPU was shared, not what N cores give a server whose \
         load comes from elsewhere (that is the projection below). Shares are of the machine's \
         {} cores over the measured window: the server's and the load generator's from \
         `/proc/PID/schedstat`, the rest of the machine (other tenants, interrupts) from \
         `/proc/stat` minus those two; the busiest loop's share is of the server's own CPU time \
         (its threads' `schedstat`).\n",
        set.scale_conns, set.rounds, set.warm_secs, set.run_secs, ncpu, ncpu
    );
    let _ = writeln!(
        w,
        "| loops | msgs/s | p50 µs | p99 µs | server CPU µs/msg (user / sys / total) | load generator CPU µs/msg | server's share of the machine | load generator's share | rest of the machine busy | stolen by the hypervisor | busiest loop's share of the server's CPU |"
    );
    let _ = writeln!(w, "|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|");
    let med = |v: &[ScaleRun], f: &dyn Fn(&ScaleRun) -> f64| median(v.iter().map(f).collect());
    for (n, runs) in r.scale {
        let cap = |x: &ScaleRun| x.window_ns * ncpu;
        let _ = writeln!(
            w,
            "| {n} | {} | {} | {} | {} / {} / {} | {} | {}% | {}% | {}% | {}% | {}% |",
            fmt_int(med(runs, &|x| x.run.mps)),
            fmt_us(med(runs, &|x| x.run.p50)),
            fmt_us(med(runs, &|x| x.run.p99)),
            fmt_f(med(runs, &|x| x.server.user_us), 2),
            fmt_f(med(runs, &|x| x.server.sys_us), 2),
            fmt_f(med(runs, &|x| x.server.cpu_us), 2),
            fmt_f(med(runs, &|x| x.load.cpu_us), 2),
            fmt_f(med(runs, &|x| 100.0 * x.server_ns() / cap(x)), 0),
            fmt_f(med(runs, &|x| 100.0 * x.load_ns() / cap(x)), 0),
            fmt_f(
                med(runs, &|x| 100.0 * (x.machine_busy_ns - x.server_ns() - x.load_ns()).max(0.0) / cap(x)),
                0
            ),
            fmt_f(med(runs, &|x| 100.0 * x.machine_steal_ns / cap(x)), 0),
            if *n > 1 { fmt_f(med(runs, &|x| 100.0 * x.busiest()), 0) } else { "100".into() },
        );
    }
    for e in r.scale_errors {
        let _ = writeln!(w, "| error: {} |||||||||||", e.replace('|', "/"));
    }
    let _ = writeln!(w, "\nRaw rounds:\n");
    let _ = writeln!(
        w,
        "| loops | round | msgs/s | server CPU µs/msg | load CPU µs/msg | loop threads' CPU ms in the window |"
    );
    let _ = writeln!(w, "|---:|---:|---:|---:|---:|---|");
    for (n, runs) in r.scale {
        for (i, x) in runs.iter().enumerate() {
            let loops: Vec<String> = x.loops_ns.iter().map(|ns| fmt_f(*ns as f64 / 1e6, 0)).collect();
            let _ = writeln!(
                w,
                "| {n} | {} | {} | {} | {} | {} |",
                i + 1,
                fmt_int(x.run.mps),
                fmt_f(x.server.cpu_us, 2),
                fmt_f(x.load.cpu_us, 2),
                loops.join(" / ")
            );
        }
    }

    // The projection, from the figures above (and the headline's, when run).
    let (Some(one), two) = (r.scale.get(&1), r.scale.get(&2)) else { return };
    let s1 = med(one, &|x| x.server.cpu_us);
    let l1 = med(one, &|x| x.load.cpu_us);
    let sys_share1 = med(one, &|x| x.server.sys_us / (x.server.user_us + x.server.sys_us));
    let mps1 = med(one, &|x| x.run.mps);
    let s2 = two.map_or(f64::NAN, |v| med(v, &|x| x.server.cpu_us));
    let l2 = two.map_or(f64::NAN, |v| med(v, &|x| x.load.cpu_us));
    let mps2 = two.map_or(f64::NAN, |v| med(v, &|x| x.run.mps));
    let busiest2 = two.map_or(f64::NAN, |v| med(v, &|x| x.busiest()));
    let headline = r.main.get("rc-epoll").filter(|m| !m.runs.is_empty()).map(|m| m.med(|x| x.1.cpu_us));
    let basis = headline.unwrap_or(s1.max(s2));
    let _ = writeln!(w, "\n### Projection on paper: N cores with the load elsewhere\n");
    let share = |v: Option<&Vec<ScaleRun>>, f: &dyn Fn(&ScaleRun) -> f64| {
        v.map_or(f64::NAN, |v| med(v, &|x| 100.0 * f(x) / (x.window_ns * ncpu)))
    };
    let (srv1, lg1) = (share(Some(one), &|x| x.server_ns()), share(Some(one), &|x| x.load_ns()));
    let busy2 = share(two, &|x| x.machine_busy_ns);
    let _ = writeln!(
        w,
        "Arithmetic on the figures measured above, not a measurement. On this machine, one echoed \
         message cost the server {} µs of CPU with one loop and {} µs with two, and cost the load \
         generator {} and {} µs ({}× the server's, with one loop): {} and {} µs in all, so the \
         machine's {} cores could carry at most {} and {} msgs/s with nothing else running. \
         Measured: {} msgs/s with one loop, {} with two ({}×). With one loop, the server took {}% \
         of the machine and the load generator {}%{} (the machine was {}% busy with two loops).\n",
        fmt_f(s1, 2),
        fmt_f(s2, 2),
        fmt_f(l1, 2),
        fmt_f(l2, 2),
        fmt_f(l1 / s1, 2),
        fmt_f(s1 + l1, 2),
        fmt_f(s2 + l2, 2),
        ncpu,
        fmt_int(ncpu * 1e6 / (s1 + l1)),
        fmt_int(ncpu * 1e6 / (s2 + l2)),
        fmt_int(mps1),
        fmt_int(mps2),
        fmt_f(mps2 / mps1, 2),
        fmt_f(srv1, 0),
        fmt_f(lg1, 0),
        if srv1 + lg1 >= 90.0 && srv1 >= 100.0 / ncpu - 7.0 {
            ": the one loop was already as busy as a core allows, and the two processes filled \
             the machine. A second loop adds no core; it adds a third busy thread to the same \
             cores, and the loops and the load generator then preempt one another. More loops \
             pay only with more cores than the load takes"
        } else {
            ": the machine was not full with one loop, so a second loop could take up the slack, \
             as far as the load generator keeps up"
        },
        fmt_f(busy2, 0),
    );
    let _ = writeln!(
        w,
        "With the load on other machines, each loop has a core to itself. The per-message cost \
         used below is {} µs: {}. Of the server's CPU time, {}% is system time (tick-sampled, one \
         loop): the kernel's receive and send paths, not rolecore's code, set the per-core rate, \
         and nothing in the echo server is shared between loops (each loop has its own listener, \
         poller and connections), so the rate grows with the cores as long as the kernel's own \
         per-socket work does and the connections keep every loop busy. `SO_REUSEPORT` picks a \
         listener by a hash of the connection's addresses and ports: with ping-pong connections \
         (each waiting for its echo) a loop stays busy as long as it has a few, so an uneven \
         spread costs latency on the busiest loop, not throughput; with an open load (each \
         connection sending at its own pace) the busiest loop saturates first and caps the rest. \
         The busiest loop's share of {} connections among N listeners, if the hash spreads them \
         uniformly (mean of 20,000 simulated deals), and what each kind of load would give:\n",
        fmt_f(basis, 2),
        if headline.is_some() {
            "the headline's rolecore epoll CPU per message (50 connections, server alone on CPU 0, \
             load on CPU 1)"
        } else {
            "the larger of the two server costs measured here"
        },
        fmt_f(100.0 * sys_share1, 0),
        set.scale_conns
    );
    let _ = writeln!(
        w,
        "| cores (loops) | busiest loop's share of the connections (uniform hash model) | ping-pong: N × 10⁶ / {} µs | open load: (10⁶ / {} µs) / busiest share |",
        fmt_f(basis, 2),
        fmt_f(basis, 2)
    );
    let _ = writeln!(w, "|---:|---:|---:|---:|");
    for n in [1usize, 2, 4, 8] {
        let share = hash_busiest_share(set.scale_conns, n);
        let measured = if n == 2 && busiest2.is_finite() {
            format!(" (measured here: {}% of the CPU time)", fmt_f(100.0 * busiest2, 0))
        } else {
            String::new()
        };
        let _ = writeln!(
            w,
            "| {n} | {}%{measured} | {} | {} |",
            fmt_f(100.0 * share, 0),
            fmt_int(n as f64 * 1e6 / basis),
            fmt_int(1e6 / basis / share),
        );
    }
    let _ = writeln!(
        w,
        "\nWhat this leaves out: on loopback the sender's system call also runs the receiver's \
         TCP input, so part of the load generator's kernel work is billed to the server here; with \
         a network card, receive work moves to its interrupts and queues, and the number of queues \
         (RSS) bounds how many cores share it. Past a few cores, memory bandwidth and the cache \
         traffic of the kernel's shared structures (the listener's accept queues, the TCP hash \
         tables) are what a real run would find.\n"
    );
}

/// Where two servers' system calls differ, per 1,000 requests, with reads,
/// writes and waits counted together whatever their names.
pub fn syscall_diff(a: &Syscalls, b: &Syscalls) -> String {
    let kind = |n: &str| -> String {
        match n {
            "recvfrom" | "recv" | "read" | "recvmsg" => "reads".into(),
            "sendto" | "send" | "write" | "writev" | "sendmsg" => "writes".into(),
            "epoll_wait" | "epoll_pwait" | "epoll_pwait2" => "waits".into(),
            other => other.into(),
        }
    };
    let mut d: BTreeMap<String, f64> = BTreeMap::new();
    for (c, sign) in [(a, 1.0), (b, -1.0)] {
        for (n, k) in &c.by_name {
            *d.entry(kind(n)).or_insert(0.0) += sign * 1000.0 * *k as f64 / c.msgs.max(1) as f64;
        }
    }
    let mut v: Vec<(String, f64)> = d.into_iter().filter(|(_, x)| x.abs() >= 0.05).collect();
    v.sort_by(|x, y| y.1.abs().total_cmp(&x.1.abs()));
    let list: Vec<String> = v.iter().take(6).map(|(n, x)| format!("{n} {x:+.1}")).collect();
    if list.is_empty() { "none".into() } else { list.join(", ") }
}

/// Instructions per request in functions whose name matches one of `pats`.
pub fn profile_share(pr: Option<&ProtoResult>, pats: &[&str]) -> f64 {
    let Some((dump, n)) = pr.and_then(|p| p.dump.as_ref()) else { return f64::NAN };
    per_function(dump, *n as f64)
        .iter()
        .filter(|(f, _)| pats.iter().any(|p| f.contains(p)))
        .map(|(_, v)| v)
        .sum()
}

/// The protocol bullets of "Why the misses", from the figures measured.
pub fn write_proto_why(w: &mut String, r: &Report<'_>) {
    let rc_set = r.resp.get("rc-resp").and_then(|m| m.get("SET"));
    let rd_set = r.resp.get("redis").and_then(|m| m.get("SET"));
    // As the target rows judge: instructions where counted, else /proc.
    let user_miss = |a: Option<&ProtoResult>, b: Option<&ProtoResult>| match (a, b) {
        (Some(a), Some(b)) if !a.main.runs.is_empty() && !b.main.runs.is_empty() => {
            match a.main.ir_per_msg.zip(b.main.ir_per_msg) {
                Some((x, y)) => x > y,
                None => a.main.med(|x| x.1.user_us) > b.main.med(|x| x.1.user_us),
            }
        }
        _ => false,
    };
    let resp_miss = RESP_TESTS.iter().any(|(n, _)| {
        user_miss(r.resp.get("rc-resp").and_then(|m| m.get(n)), r.resp.get("redis").and_then(|m| m.get(n)))
    });
    if resp_miss {
        let ir = |k: &str, n: &str| r.resp.get(k).and_then(|m| m.get(n)).and_then(|p| p.main.ir_per_msg);
        let list: Vec<String> = RESP_TESTS
            .iter()
            .map(|(n, _)| {
                format!(
                    "{n} {} vs {}",
                    ir("rc-resp", n).map_or("–".into(), fmt_int),
                    ir("redis", n).map_or("–".into(), fmt_int)
                )
            })
            .collect();
        let alloc = [
            "malloc",
            "free",
            "realloc",
            "__rdl_alloc",
            "__rust_alloc",
            "__rdl_dealloc",
            "__rust_dealloc",
            "finish_grow",
            "do_reserve",
            "as core::clone::Clone>::clone",
        ];
        let framing = [
            "split_records",
            "next_split",
            "Terminator::bytes",
            "memcmp",
            "RespParser::record",
            "parse_length",
        ];
        let hash = ["DefaultHasher", "hash_one", "sip"];
        let _ = writeln!(
            w,
            "- **RESP user CPU per request.** The system calls are redis-server's (one read and one \
             write per pipelined batch of {RESP_PIPELINE}), so the gap is user space: instructions per \
             request, rolecore against redis-server, {}. Of rolecore's {} instructions per SET \
             (profile above), {} are the allocator (`malloc`/`free`, vector growth and clones: \
             the example takes every record out of the chat as a fresh `Vec`, keeps a command as \
             a `Vec<Vec<u8>>`, lower-cases its name into a new `String`, and clones key and value \
             into the store), {} the framing (the chat's record splitting and terminator search, \
             and the parser: a SET of three arguments is seven records, `*3`, then `$N` and a \
             counted payload per argument, each a terminator switch), and {} hashing (SipHash). \
             redis-server parses a multibulk request in place in its query buffer ({} per SET in \
             `processMultibulkBuffer`). All CPU time per SET (user and system, schedstat): {} vs \
             {} µs.",
            list.join(", "),
            fmt_int(ir("rc-resp", "SET").unwrap_or(f64::NAN)),
            fmt_int(profile_share(rc_set, &alloc)),
            fmt_int(profile_share(rc_set, &framing)),
            fmt_int(profile_share(rc_set, &hash)),
            fmt_int(profile_share(rd_set, &["processMultibulkBuffer"])),
            fmt_f(rc_set.map_or(f64::NAN, |p| p.main.med(|x| x.1.cpu_us)), 3),
            fmt_f(rd_set.map_or(f64::NAN, |p| p.main.med(|x| x.1.cpu_us)), 3),
        );
    }
    let (rc_h, ng_h) = (r.http.get("rc-http"), r.http.get("nginx"));
    if user_miss(rc_h, ng_h) {
        let _ = writeln!(
            w,
            "- **HTTP user CPU per request.** rolecore's http_server executes {} user instructions \
             per request against nginx's {} (exact), with /proc user time {} vs {} µs \
             (tick-sampled: {} vs {} ticks per round); its profile is above.",
            rc_h.and_then(|p| p.main.ir_per_msg).map_or("–".into(), fmt_int),
            ng_h.and_then(|p| p.main.ir_per_msg).map_or("–".into(), fmt_int),
            fmt_f(rc_h.map_or(f64::NAN, |p| p.main.med(|x| x.1.user_us)), 3),
            fmt_f(ng_h.map_or(f64::NAN, |p| p.main.med(|x| x.1.user_us)), 3),
            rc_h.map_or(String::new(), |p| ticks_list(&p.main)),
            ng_h.map_or(String::new(), |p| ticks_list(&p.main)),
        );
    }
    let sys_miss = |a: Option<&ProtoResult>, b: Option<&ProtoResult>| match (
        a.and_then(|p| p.main.syscalls.as_ref()),
        b.and_then(|p| p.main.syscalls.as_ref()),
    ) {
        (Some(x), Some(y)) if x.total_per_msg() > y.total_per_msg() => Some(syscall_diff(x, y)),
        _ => None,
    };
    let mut misses = Vec::new();
    if let Some(d) = sys_miss(rc_h, ng_h) {
        misses.push(format!("HTTP: {d}"));
    }
    for (n, _) in RESP_TESTS {
        if let Some(d) =
            sys_miss(r.resp.get("rc-resp").and_then(|m| m.get(n)), r.resp.get("redis").and_then(|m| m.get(n)))
        {
            misses.push(format!("{n}: {d}"));
        }
    }
    if !misses.is_empty() {
        let _ = writeln!(
            w,
            "- **System calls per request against the protocol peers.** Where rolecore makes more, \
             the difference per 1,000 requests (reads, writes and waits counted together whatever \
             their names): {}. `epoll_ctl` is per connection: rolecore removes a descriptor from \
             epoll before closing it (a duplicate of the descriptor would otherwise keep the \
             registration alive: P12), where nginx only adds it; nginx sets `TCP_NODELAY` on \
             each kept connection (`setsockopt`), so per connection both make four calls (accept, \
             two more, close). Waits per request depend on how many connections are ready at each \
             wait, so they move from run to run.",
            misses.join("; ")
        );
    }
}

/// Target rows for the protocol servers.
pub fn write_proto_targets(w: &mut String, r: &Report<'_>) {
    let user_row = |w: &mut String,
                    what: &str,
                    rc: Option<&MainResult>,
                    peer: Option<&MainResult>,
                    peer_name: &str| {
        let (Some(a), Some(b)) = (rc.filter(|m| !m.runs.is_empty()), peer.filter(|m| !m.runs.is_empty()))
        else {
            let _ = writeln!(w, "| {what}: user CPU per request ≤ {peer_name}'s | not measured | **MISS** |");
            return;
        };
        let (ua, ub) = (a.med(|x| x.1.user_us), b.med(|x| x.1.user_us));
        let (ca, cb) = (a.med(|x| x.1.cpu_us), b.med(|x| x.1.cpu_us));
        // Judged as the echo targets are: on the exact instruction counts
        // where callgrind ran, since the tick-sampled user time of a few
        // dozen ticks per round is good to ±20% at best; on it otherwise.
        let (instr, ok) = match (a.ir_per_msg, b.ir_per_msg) {
            (Some(x), Some(y)) => (
                format!(
                    "user instructions (callgrind, exact, the verdict's basis): {} vs {} = {}×; ",
                    fmt_int(x),
                    fmt_int(y),
                    fmt_f(x / y, 2)
                ),
                x <= y,
            ),
            _ => (String::new(), ua <= ub),
        };
        let _ = writeln!(
            w,
            "| {what}: user CPU per request ≤ {peer_name}'s | {instr}/proc user time {} vs {} µs = {}× (user ticks per round {} vs {}){}; all CPU (schedstat): {} vs {} µs = {}× | {} |",
            fmt_f(ua, 3),
            fmt_f(ub, 3),
            fmt_f(ua / ub, 2),
            ticks_list(a),
            ticks_list(b),
            if !instr.is_empty() && (ua <= ub) != ok {
                ", the other way round: within its sampling error"
            } else {
                ""
            },
            fmt_f(ca, 3),
            fmt_f(cb, 3),
            fmt_f(ca / cb, 2),
            verdict(ok)
        );
    };
    let sys_row = |w: &mut String,
                   what: &str,
                   rc: Option<&MainResult>,
                   peer: Option<&MainResult>,
                   peer_name: &str| {
        let (Some(a), Some(b)) =
            (rc.and_then(|m| m.syscalls.as_ref()), peer.and_then(|m| m.syscalls.as_ref()))
        else {
            let _ =
                writeln!(w, "| {what}: system calls per request ≤ {peer_name}'s | not measured | **MISS** |");
            return;
        };
        let (x, y) = (a.total_per_msg(), b.total_per_msg());
        let _ = writeln!(
            w,
            "| {what}: system calls per request ≤ {peer_name}'s | {} vs {} = {}× (differences per 1,000 requests: {}) | {} |",
            fmt_f(x, 4),
            fmt_f(y, 4),
            fmt_f(x / y, 3),
            syscall_diff(a, b),
            verdict(x <= y)
        );
    };
    if !r.http.is_empty() {
        let rc = r.http.get("rc-http").map(|p| &p.main);
        let ng = r.http.get("nginx").map(|p| &p.main);
        user_row(w, "HTTP (wrk, keep-alive)", rc, ng, "nginx");
        sys_row(w, "HTTP (wrk, keep-alive)", rc, ng, "nginx");
    }
    if !r.resp.is_empty() {
        for (name, _) in RESP_TESTS {
            let rc = r.resp.get("rc-resp").and_then(|m| m.get(name)).map(|p| &p.main);
            let rd = r.resp.get("redis").and_then(|m| m.get(name)).map(|p| &p.main);
            user_row(w, &format!("RESP {name} (redis-benchmark -P {RESP_PIPELINE})"), rc, rd, "redis-server");
        }
        for (name, _) in RESP_TESTS {
            let rc = r.resp.get("rc-resp").and_then(|m| m.get(name)).map(|p| &p.main);
            let rd = r.resp.get("redis").and_then(|m| m.get(name)).map(|p| &p.main);
            sys_row(w, &format!("RESP {name} (redis-benchmark -P {RESP_PIPELINE})"), rc, rd, "redis-server");
        }
    }
}
