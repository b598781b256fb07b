//! The example servers over TLS (`--tls-cert PEM --tls-key PEM`), driven by
//! an in-process rustls client, and `http_client --tls --cacert`; the TLS
//! flags' errors; and, in a build without the `tls` feature, the one-line
//! refusal of those flags.

#[cfg(feature = "tls")]
mod tls_common;
mod util;

use std::process::Command;
use std::time::Duration;

/// Runs an example to its exit, at most 10 s (a usage error exits at once;
/// one that starts serving instead is killed and fails the test); (status,
/// stderr).
fn run(name: &str, args: &[String]) -> (Option<i32>, String) {
    let out = util::output_within(Command::new(util::example(name)).args(args), Duration::from_secs(10));
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[cfg(not(feature = "tls"))]
#[test]
fn without_the_feature_the_tls_flags_are_a_usage_error() {
    for name in ["echo_server", "http_server", "resp_server"] {
        let args: Vec<String> =
            ["127.0.0.1:0", "--tls-cert", "c.pem", "--tls-key", "k.pem"].map(String::from).into();
        let (code, stderr) = run(name, &args);
        assert_eq!(code, Some(2), "{name}: {stderr}");
        assert!(stderr.contains("built without rolecore's `tls` feature"), "{name}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{name}: {stderr}");
    }
    let args: Vec<String> = ["127.0.0.1:1", "/", "--tls", "--cacert", "c.pem"].map(String::from).into();
    let (code, stderr) = run("http_client", &args);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("built without rolecore's `tls` feature"), "{stderr}");
}

#[cfg(feature = "tls")]
mod with_tls {
    use std::io::{Read, Write};

    use rolecore::tls::rustls;
    use tls_common::{Example, cert, client_config, connect};

    use super::{run, tls_common, util};

    #[test]
    fn http_server_answers_over_tls_13_and_12_with_alpn() {
        let cert = cert();
        let pems = cert.write_pems();
        let mut server = Example::start("http_server", &pems.flags());
        for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
            let mut c = connect(server.addr, client_config(&cert, &[version], &[b"http/1.1"])).unwrap();
            assert_eq!(c.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
            c.write_all(
                b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            )
            .unwrap();
            let mut answer = String::new();
            c.read_to_string(&mut answer).expect("two answers, then close_notify");
            assert_eq!(answer.matches("HTTP/1.1 200 OK").count(), 2, "{answer}");
            assert!(answer.ends_with("Hello, world!"), "{answer}");
        }
        server.assert_alive();
    }

    #[test]
    fn resp_server_answers_over_tls() {
        let cert = cert();
        let pems = cert.write_pems();
        let mut server = Example::start("resp_server", &pems.flags());
        let mut c = connect(server.addr, client_config(&cert, &[], &[])).unwrap();
        c.write_all(
            b"*1\r\n$4\r\nPING\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n",
        )
        .unwrap();
        let want = b"+PONG\r\n+OK\r\n$1\r\nv\r\n";
        let mut got = vec![0u8; want.len()];
        c.read_exact(&mut got).unwrap();
        assert_eq!(got, want);
        server.assert_alive();
    }

    #[test]
    fn echo_server_echoes_over_tls_and_plain_clients_are_refused() {
        let cert = cert();
        let pems = cert.write_pems();
        let mut server = Example::start("echo_server", &pems.flags());
        let mut plain = std::net::TcpStream::connect(server.addr).unwrap();
        plain.write_all(b"not tls\r\n").unwrap();
        let mut c = connect(server.addr, client_config(&cert, &[], &[])).unwrap();
        let back = tls_common::roundtrip(&mut c, b"echo me").unwrap();
        assert_eq!(back, b"echo me");
        plain.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
        let mut alert = Vec::new();
        let _ = plain.read_to_end(&mut alert);
        assert_eq!(alert.first(), Some(&21), "a TLS alert, then the end");
        server.assert_alive();
    }

    #[test]
    fn http_client_fetches_over_tls() {
        let cert = cert();
        let pems = cert.write_pems();
        let server = Example::start("http_server", &pems.flags());
        for host in ["localhost", "127.0.0.1"] {
            let target = format!("{host}:{}", server.addr.port());
            let args =
                [target, "/".into(), "--tls".into(), "--cacert".into(), pems.cert.display().to_string()];
            let out = util::output_within(
                std::process::Command::new(util::example("http_client")).args(&args),
                std::time::Duration::from_secs(30),
            );
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert_eq!(out.status.code(), Some(0), "{host}: {}", String::from_utf8_lossy(&out.stderr));
            assert!(stdout.starts_with("HTTP/1.1 200 OK") && stdout.ends_with("Hello, world!"), "{stdout}");
        }
        // A certificate it was not told to trust: the handshake fails, exit 1.
        let other = tls_common::cert().write_pems();
        let target = format!("localhost:{}", server.addr.port());
        let args = [target, "/".into(), "--tls".into(), "--cacert".into(), other.cert.display().to_string()];
        let (code, stderr) = run("http_client", &args);
        assert_eq!(code, Some(1), "{stderr}");
        assert!(stderr.contains("TLS handshake failed") && stderr.lines().count() == 1, "{stderr}");
    }

    /// A server that takes the connection and never answers the
    /// ClientHello held `http_client --tls` for good; `--timeout` bounds
    /// the handshake too.
    #[test]
    fn http_client_gives_up_a_stalled_handshake_at_its_timeout() {
        let (listener, addr) = util::std_listener();
        let server = std::thread::spawn(move || {
            let mut conn = util::accept(&listener);
            let mut hello = Vec::new();
            let _ = conn.read_to_end(&mut hello); // until the client gives up
            hello
        });
        let pems = cert().write_pems();
        let target = format!("localhost:{}", addr.port());
        let args = [target, "/".into(), "--tls".into(), "--cacert".into(), pems.cert.display().to_string()];
        let args = [&args[..], &["--timeout".into(), "0.3".into()]].concat();
        let (code, stderr) = run("http_client", &args);
        assert_eq!(code, Some(1), "{stderr}");
        assert!(stderr.contains("TLS handshake timed out") && stderr.lines().count() == 1, "{stderr}");
        assert_eq!(server.join().unwrap().first(), Some(&22), "a ClientHello came, then the end");
    }

    #[test]
    fn bad_tls_flags_are_one_line_usage_errors() {
        let cert = cert();
        let pems = cert.write_pems();
        let garbage = std::env::temp_dir().join(format!("rolecore-tls-garbage-{}.pem", std::process::id()));
        std::fs::write(&garbage, "not a pem file\n").unwrap();
        let huge = std::env::temp_dir().join(format!("rolecore-tls-huge-{}.pem", std::process::id()));
        std::fs::write(&huge, vec![b'-'; (1 << 20) + 1]).unwrap();
        let other = tls_common::cert().write_pems();
        let c = pems.cert.display().to_string();
        let k = pems.key.display().to_string();
        let g = garbage.display().to_string();
        let other_key = other.key.display().to_string();
        let h = huge.display().to_string();
        let cases: Vec<(Vec<&str>, &str)> = vec![
            (vec!["--tls-cert", &c], "go together"),
            (vec!["--tls-key", &k], "go together"),
            (vec!["--tls-cert", "/no/such/file.pem", "--tls-key", &k], "--tls-cert \"/no/such/file.pem\""),
            (vec!["--tls-cert", &g, "--tls-key", &k], "no certificate"),
            (vec!["--tls-cert", &c, "--tls-key", &g], "no PEM private key"),
            (vec!["--tls-cert", &c, "--tls-key", &other_key], "does not fit"),
            // Read up to a bound (a path to /dev/zero took memory until the
            // process was killed), for both files.
            (vec!["--tls-cert", &h, "--tls-key", &k], "longer than 1048576 bytes"),
            (vec!["--tls-cert", &c, "--tls-key", &h], "longer than 1048576 bytes"),
        ];
        for name in ["echo_server", "http_server", "resp_server"] {
            for (flags, what) in &cases {
                let mut args = vec!["127.0.0.1:0".to_string()];
                args.extend(flags.iter().map(|s| s.to_string()));
                let (code, stderr) = run(name, &args);
                assert_eq!(code, Some(2), "{name} {flags:?}: {stderr}");
                assert!(stderr.contains(what), "{name} {flags:?}: {stderr}");
                assert_eq!(stderr.lines().count(), 1, "{name} {flags:?}: {stderr}");
                assert!(stderr.starts_with(&format!("{name}: ")), "{stderr}");
            }
        }
        let _ = std::fs::remove_file(garbage);
        // And http_client's --cacert, to the same bound.
        let args: Vec<String> = ["127.0.0.1:1", "/", "--tls", "--cacert", &h].map(String::from).into();
        let (code, stderr) = run("http_client", &args);
        assert_eq!(code, Some(2), "{stderr}");
        assert!(stderr.contains("longer than 1048576 bytes") && stderr.lines().count() == 1, "{stderr}");
        let _ = std::fs::remove_file(huge);
    }
}
