//! Real TLS clients against the example servers started with
//! `--tls-cert/--tls-key` and a certificate made here (rcgen, ECDSA P-256,
//! for `localhost` and 127.0.0.1): `curl --cacert` (TLS 1.3 and 1.2),
//! `openssl s_client` (both versions, and a TLS 1.2 renegotiation, which
//! rustls refuses), `redis-cli --tls`, and `wrk` over https.
//!
//! Ignored by default (a machine with only Rust has none of them); `.ci/run`
//! installs the clients and runs them with `--ignored`. Like
//! `tests/protocol_servers.rs`, they never skip: a missing client fails.
#![cfg(feature = "tls")]

mod tls_common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tls_common::{Example, PemFiles, cert};

const INSTALL: &str = "apt-get install curl openssl redis-tools wrk";

/// Runs `program` with `args` and `stdin` (at most 30 s); (success, stdout,
/// stderr).
fn run(program: &str, args: &[&str], stdin: &[u8]) -> (bool, String, String) {
    run_typed(program, args, &[stdin])
}

/// [`run`], with its input typed in `chunks`, 300 ms apart: s_client takes
/// a command only at the start of what one read of its input brought.
fn run_typed(program: &str, args: &[&str], chunks: &[&[u8]]) -> (bool, String, String) {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {program} ({e}); these tests need it: {INSTALL}"));
    let mut pipe = child.stdin.take().unwrap();
    let input: Vec<Vec<u8>> = chunks.iter().map(|c| c.to_vec()).collect();
    let writer = std::thread::spawn(move || {
        for chunk in input {
            let _ = pipe.write_all(&chunk);
            std::thread::sleep(Duration::from_millis(300));
        }
        // s_client reads its commands, then must see the server's answer
        // before its input ends.
        std::thread::sleep(Duration::from_millis(500));
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{program} {args:?} did not finish within 30 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = writer.join();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn server(name: &str) -> (Example, PemFiles) {
    let pems = cert().write_pems();
    (Example::start(name, &pems.flags()), pems)
}

#[test]
#[ignore = "needs curl (.ci/run installs it)"]
fn curl_gets_over_tls_13_and_12() {
    let (mut server, pems) = server("http_server");
    let url = format!("https://localhost:{}/", server.addr.port());
    let cacert = pems.cert.display().to_string();
    for version in [&["--tlsv1.3"][..], &["--tlsv1.2", "--tls-max", "1.2"]] {
        let mut args = vec!["-sS", "--cacert", &cacert, "-w", " %{http_version} %{ssl_verify_result}"];
        args.extend_from_slice(version);
        args.push(&url);
        let (ok, out, err) = run("curl", &args, b"");
        assert!(ok, "curl {version:?}: {err}");
        assert_eq!(out, "Hello, world! 1.1 0", "curl {version:?}");
    }
    server.assert_alive();
}

#[test]
#[ignore = "needs openssl (.ci/run installs it)"]
fn openssl_s_client_both_versions() {
    let (mut server, pems) = server("http_server");
    let connect = format!("127.0.0.1:{}", server.addr.port());
    let cafile = pems.cert.display().to_string();
    for (version, name) in [("-tls1_3", "TLSv1.3"), ("-tls1_2", "TLSv1.2")] {
        let args = [
            "s_client",
            version,
            "-connect",
            &connect,
            "-servername",
            "localhost",
            "-CAfile",
            &cafile,
            "-verify_return_error",
            "-alpn",
            "http/1.1",
            "-ign_eof",
        ];
        let (ok, out, err) = run("openssl", &args, b"GET / HTTP/1.0\r\n\r\n");
        assert!(ok, "s_client {version}: {err}\n{out}");
        assert!(
            out.contains(&format!("Protocol  : {name}")) || out.contains(&format!("New, {name}")),
            "{version}: {out}"
        );
        assert!(out.contains("Verify return code: 0 (ok)"), "{version}: {out}");
        assert!(out.contains("ALPN protocol: http/1.1"), "{version}: {out}");
        assert!(out.contains("Hello, world!"), "{version}: {out}");
    }
    server.assert_alive();
}

#[test]
#[ignore = "needs openssl (.ci/run installs it)"]
fn a_tls12_renegotiation_is_refused_and_harms_nothing() {
    let (mut server, pems) = server("echo_server");
    let connect = format!("127.0.0.1:{}", server.addr.port());
    let cafile = pems.cert.display().to_string();
    // s_client renegotiates on a line that is "R"; the echo comes first.
    // rustls answers the new ClientHello with a no_renegotiation warning,
    // on which OpenSSL gives up with a fatal alert: the connection closes.
    let args = ["s_client", "-tls1_2", "-connect", &connect, "-servername", "localhost", "-CAfile", &cafile];
    let (ok, out, err) = run_typed("openssl", &args, &[b"before\n", b"R\n", b"after\n"]);
    assert!(out.contains("before"), "the echo before the attempt: {out}");
    assert!(err.contains("RENEGOTIATING"), "s_client tried: {err}");
    assert!(!ok && err.contains("no renegotiation"), "refused: {err}");
    assert!(!out.contains("after"), "no data after a refused renegotiation: {out}\n{err}");
    let lines = server.wait_for_stderr("TLS record processing failed");
    let reports: Vec<_> = lines.iter().filter(|l| l.contains("TLS")).collect();
    assert_eq!(reports.len(), 1, "one report line: {lines:?}");
    assert!(reports[0].contains("HandshakeFailure"), "{reports:?}");
    // The server goes on: another client is served.
    // (Its input ends 300 ms after the line, and s_client with it.)
    let (ok, out, err) =
        run("openssl", &["s_client", "-tls1_2", "-connect", &connect, "-CAfile", &cafile], b"again\n");
    assert!(ok && out.contains("again"), "{err}\n{out}");
    server.assert_alive();
}

#[test]
#[ignore = "needs redis-cli (.ci/run installs redis-tools)"]
fn redis_cli_speaks_resp_over_tls() {
    let (mut server, pems) = server("resp_server");
    let port = server.addr.port().to_string();
    let cacert = pems.cert.display().to_string();
    let base = ["--tls", "--cacert", &cacert, "-h", "127.0.0.1", "-p", &port];
    let cli = |extra: &[&str]| {
        let args: Vec<&str> = base.iter().copied().chain(extra.iter().copied()).collect();
        let (ok, out, err) = run("redis-cli", &args, b"");
        assert!(ok, "redis-cli {extra:?}: {err}");
        out.trim_end().to_string()
    };
    assert_eq!(cli(&["PING"]), "PONG");
    assert_eq!(cli(&["SET", "greeting", "over tls"]), "OK");
    assert_eq!(cli(&["GET", "greeting"]), "over tls");
    server.assert_alive();
}

#[test]
#[ignore = "needs wrk (.ci/run installs it)"]
fn wrk_over_https_keep_alive_and_new_connections() {
    let (mut server, _pems) = server("http_server");
    let url = format!("https://127.0.0.1:{}/", server.addr.port());
    for extra in [&[][..], &["-H", "Connection: close"]] {
        let mut args = vec!["-t1", "-c10", "-d1s"];
        args.extend_from_slice(extra);
        args.push(&url);
        let (ok, out, err) = run("wrk", &args, b"");
        assert!(ok, "wrk {extra:?}: {err}");
        let requests: u64 = out
            .lines()
            .find_map(|l| l.split_whitespace().next().filter(|_| l.contains("requests in")))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        assert!(requests > 50, "wrk {extra:?}: {out}");
        assert!(!out.contains("Non-2xx") && !out.contains("Socket errors"), "wrk {extra:?}: {out}");
    }
    server.assert_alive();
}
