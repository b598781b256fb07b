//! The TLS scenario: wrk over HTTPS against rolecore's `http_server` (built
//! with the `tls` feature, `--tls-cert/--tls-key`) and nginx, one worker,
//! side by side: the same ECDSA P-256 certificate, TLS 1.3 with X25519, no
//! session resumption on either side (wrk does not resume; nginx has its
//! cache and tickets off; the example keeps no sessions and sends no
//! tickets). Two loads: keep-alive requests, and `Connection: close`, where
//! every request is a new TCP connection and a full handshake.
//!
//! CPU is the server's utime + stime from `/proc/PID/stat` over the measured
//! run, divided by the requests wrk completed; medians over the rounds, and
//! rolecore's median over nginx's from the same run. Runs alone with
//! `BENCH_ONLY=tls bash benches/run.sh`, and writes only its own section of
//! `docs/PERFORMANCE.md` (between the markers below), whatever else ran.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::process::Command;

use crate::Result;
use crate::http::wrk_with;
use crate::procfs::{PerMsg, cpu, per_msg};
use crate::procs::{RunResult, ServerProc};
use crate::proto::{PROTO_CONNS, nginx_conf, start_nginx};
use crate::settings::Settings;

pub const BEGIN: &str =
    "<!-- tls scenario: begin (benches/harness/src/bin/run/tls.rs writes this section) -->";
pub const END: &str = "<!-- tls scenario: end -->";

/// The two loads: a name, and wrk's extra arguments.
const LOADS: [(&str, &[&str]); 2] = [("keep-alive", &[]), ("new connection", &["-H", "Connection: close"])];

/// One server's measured runs, per load.
#[derive(Default)]
struct Runs {
    per_load: [Vec<(RunResult, PerMsg)>; 2],
    error: Option<String>,
}

/// The certificate both servers present: ECDSA P-256, made by `openssl req`.
fn certificate(dir: &Path) -> Result<(String, String)> {
    let cert = dir.join("cert.pem").to_string_lossy().into_owned();
    let key = dir.join("key.pem").to_string_lossy().into_owned();
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"])
        .args(["-keyout", &key, "-out", &cert, "-days", "3650", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .output()
        .map_err(|e| format!("openssl req: {e}"))?;
    if !out.status.success() {
        return Err(format!("openssl req: {}", String::from_utf8_lossy(&out.stderr)));
    }
    Ok((cert, key))
}

/// nginx's HTTP configuration with the `listen` line made TLS.
fn nginx_tls_conf(dir: &Path, port: u16, cert: &str, key: &str) -> String {
    nginx_conf(dir, port).replace(
        &format!("listen 127.0.0.1:{port};"),
        &format!(
            "listen 127.0.0.1:{port} ssl;\n\
             \x20       ssl_certificate {cert};\n\
             \x20       ssl_certificate_key {key};\n\
             \x20       ssl_protocols TLSv1.3;\n\
             \x20       ssl_ecdh_curve X25519;\n\
             \x20       ssl_session_cache off;\n\
             \x20       ssl_session_tickets off;"
        ),
    )
}

fn start(root: &Path, logs: &Path, tmp: &Path, key: &str, cert: &(String, String)) -> Result<ServerProc> {
    let log = logs.join(format!("tls-{key}.err"));
    if key == "rolecore" {
        let bin = root.join("benches/harness/target/tls/http_server").to_string_lossy().into_owned();
        let argv = [
            bin,
            "127.0.0.1:0".into(),
            "--tls-cert".into(),
            cert.0.clone(),
            "--tls-key".into(),
            cert.1.clone(),
        ];
        return ServerProc::start(&argv, &[], &log);
    }
    start_nginx(&tmp.join("nginx-tls"), &[], &log, |dir, port| nginx_tls_conf(dir, port, &cert.0, &cert.1))
}

/// One round on one server: a warm-up, then each load measured.
fn round(
    root: &Path,
    logs: &Path,
    tmp: &Path,
    key: &str,
    cert: &(String, String),
    set: &Settings,
    runs: &mut Runs,
) -> Result<()> {
    let server = start(root, logs, tmp, key, cert)?;
    let url = format!("https://{}/", server.addr);
    let script = tmp.join("summary.lua");
    let out = (|| -> Result<()> {
        wrk_with(&url, set.http_warm_secs, PROTO_CONNS, &script, &[])?;
        for (i, (_, extra)) in LOADS.iter().enumerate() {
            let a = cpu(server.pid)?;
            let (r, _) = wrk_with(&url, set.http_secs, PROTO_CONNS, &script, extra)?;
            let b = cpu(server.pid)?;
            runs.per_load[i].push((r, per_msg(a, b, r.msgs)));
        }
        Ok(())
    })();
    server.stop();
    out
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Runs the scenario; returns its section of the report.
pub fn tls_scenario(root: &Path, logs: &Path, set: &Settings) -> Result<String> {
    let tmp = std::env::temp_dir().join(format!("rolecore-bench-tls-{}", std::process::id()));
    fs::create_dir_all(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
    fs::write(tmp.join("summary.lua"), crate::http::WRK_SCRIPT).map_err(|e| format!("summary.lua: {e}"))?;
    let cert = certificate(&tmp)?;
    let keys = ["rolecore", "nginx"];
    let mut runs: [Runs; 2] = Default::default();
    for r in 0..set.rounds {
        for (k, key) in keys.iter().enumerate() {
            if let Err(e) = round(root, logs, &tmp, key, &cert, set, &mut runs[k]) {
                eprintln!("run: tls {key} round {}: {e}", r + 1);
                runs[k].error = Some(e);
            }
            for (i, (load, _)) in LOADS.iter().enumerate() {
                if let Some((run, p)) = runs[k].per_load[i].get(r) {
                    eprintln!(
                        "tls round {} {key:<8} {load:<14} {:>8.0} req/s  user {:.2} sys {:.2} = {:.2} µs/req",
                        r + 1,
                        run.mps,
                        p.user_us,
                        p.sys_us,
                        p.user_us + p.sys_us
                    );
                }
            }
        }
    }
    let _ = fs::remove_dir_all(&tmp);
    Ok(section(set, &runs))
}

fn section(set: &Settings, runs: &[Runs; 2]) -> String {
    let mut md = String::new();
    let w = &mut md;
    let _ = writeln!(w, "{BEGIN}\n\n## TLS: rolecore against nginx, HTTPS\n");
    let _ = writeln!(
        w,
        "`wrk -t1 -c{PROTO_CONNS}` over HTTPS against `http_server --tls-cert --tls-key` (rolecore's \
         `tls` feature: rustls 0.23 with ring) and {} (one worker, `master_process off`, \
         OpenSSL), side by side in one run: the same ECDSA P-256 certificate (`openssl req`), TLS 1.3 \
         with X25519, no session resumption on either side (wrk does not resume; nginx has \
         `ssl_session_cache off` and `ssl_session_tickets off`; the example keeps no sessions and \
         sends no tickets). Server on CPU 0, wrk on CPU 1. CPU is the server's utime + stime from \
         `/proc/PID/stat` over each {} s run, per request; medians of {} rounds (each column is its \
         own median, so user + sys need not make the CPU column). *New connection* \
         sends `Connection: close`: every request is a new TCP connection and a full handshake, \
         and wrk's own handshakes on one core bound the rate.\n",
        crate::machine::sh("nginx -v 2>&1 | sed 's/^nginx version: //'"),
        set.http_secs,
        set.rounds
    );
    let _ =
        writeln!(w, "| load | server | req/s | user µs/req | sys µs/req | CPU µs/req | rolecore / nginx |");
    let _ = writeln!(w, "|---|---|---:|---:|---:|---:|---:|");
    for (i, (load, _)) in LOADS.iter().enumerate() {
        let cpu_of =
            |k: usize| median(runs[k].per_load[i].iter().map(|(_, p)| p.user_us + p.sys_us).collect());
        let ratio = cpu_of(0) / cpu_of(1);
        for (k, key) in ["rolecore", "nginx"].iter().enumerate() {
            let r = &runs[k].per_load[i];
            let _ = writeln!(
                w,
                "| {load} | {key} | {:.0} | {:.2} | {:.2} | {:.2} | {} |",
                median(r.iter().map(|(x, _)| x.mps).collect()),
                median(r.iter().map(|(_, p)| p.user_us).collect()),
                median(r.iter().map(|(_, p)| p.sys_us).collect()),
                cpu_of(k),
                if k == 0 { format!("{ratio:.2}") } else { String::new() },
            );
        }
    }
    for (k, key) in ["rolecore", "nginx"].iter().enumerate() {
        if let Some(e) = &runs[k].error {
            let _ = writeln!(w, "\n{key} failed a round: {e}");
        }
    }
    let _ = writeln!(w, "\n{END}");
    md
}

/// Puts `section` in place of the one between the markers in the file at
/// `path`, or at its end.
pub fn splice(path: &Path, section: &str) -> Result<()> {
    let old = fs::read_to_string(path).unwrap_or_default();
    let new = match (old.find(BEGIN), old.find(END)) {
        (Some(b), Some(e)) if b < e => {
            format!("{}{}{}", &old[..b], section.trim_end(), &old[e + END.len()..])
        }
        _ => format!("{}\n{}", old.trim_end(), section),
    };
    fs::write(path, new).map_err(|e| format!("{}: {e}", path.display()))
}
