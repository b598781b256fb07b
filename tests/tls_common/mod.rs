//! What the TLS tests share: a certificate made at run time (rcgen, ECDSA
//! P-256), rustls configurations for both sides, and a blocking rustls
//! client for the other end of a test's socket.
#![allow(dead_code)]

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;

use rolecore::tls::rustls;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, StreamOwned};

/// A self-signed certificate for `localhost` and 127.0.0.1, and its key.
pub struct TestCert {
    pub cert: CertificateDer<'static>,
    pub key_der: Vec<u8>,
    pub cert_pem: String,
    pub key_pem: String,
}

pub fn cert() -> TestCert {
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    let made = rcgen::generate_simple_self_signed(names).expect("make a certificate");
    TestCert {
        cert: made.cert.der().clone(),
        key_der: made.signing_key.serialize_der(),
        cert_pem: made.cert.pem(),
        key_pem: made.signing_key.serialize_pem(),
    }
}

/// A server configuration with `cert`, the given protocol versions (both
/// when empty) and ALPN protocols.
pub fn server_config(
    cert: &TestCert,
    versions: &[&'static rustls::SupportedProtocolVersion],
    alpn: &[&[u8]],
) -> Arc<ServerConfig> {
    let versions = if versions.is_empty() { rustls::ALL_VERSIONS } else { versions };
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.key_der.clone()));
    let mut config = ServerConfig::builder_with_protocol_versions(versions)
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.clone()], key)
        .expect("certificate");
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// A client configuration that trusts `cert` only.
pub fn client_config(
    cert: &TestCert,
    versions: &[&'static rustls::SupportedProtocolVersion],
    alpn: &[&[u8]],
) -> Arc<ClientConfig> {
    let versions = if versions.is_empty() { rustls::ALL_VERSIONS } else { versions };
    let mut roots = RootCertStore::empty();
    roots.add(cert.cert.clone()).expect("root");
    let mut config = ClientConfig::builder_with_protocol_versions(versions)
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

pub fn localhost() -> ServerName<'static> {
    ServerName::try_from("localhost").expect("a name")
}

/// A blocking rustls client over TCP.
pub type Client = StreamOwned<ClientConnection, TcpStream>;

pub fn connect(addr: std::net::SocketAddr, config: Arc<ClientConfig>) -> io::Result<Client> {
    connect_over(TcpStream::connect(addr)?, config)
}

/// As [`connect`], with a receive buffer of a few kilobytes, set before
/// the connect (after it, the window is already advertised): the server's
/// socket fills at once and stays full, and its writes go partial (with a
/// small send buffer on the server's side too: see `tls.rs`). Over
/// loopback with default buffers a server's partial-write path never runs.
pub fn connect_small_window(addr: std::net::SocketAddr, config: Arc<ClientConfig>) -> io::Result<Client> {
    use rustix::net::{AddressFamily, SocketFlags, SocketType, socket_with, sockopt};
    // Close-on-exec, as std's sockets: tests that start examples must not
    // hand this socket to them.
    let fd = socket_with(AddressFamily::INET, SocketType::STREAM, SocketFlags::CLOEXEC, None)?;
    sockopt::set_socket_recv_buffer_size(&fd, 4096)?;
    rustix::net::connect(&fd, &addr)?;
    connect_over(TcpStream::from(fd), config)
}

/// Completes a TLS handshake over `tcp`, a connected socket.
fn connect_over(tcp: TcpStream, config: Arc<ClientConfig>) -> io::Result<Client> {
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
    let conn = ClientConnection::new(config, localhost()).map_err(io::Error::other)?;
    let mut client = StreamOwned::new(conn, tcp);
    // Drive the handshake to its end before the test speaks.
    while client.conn.is_handshaking() {
        client.conn.complete_io(&mut client.sock)?;
    }
    Ok(client)
}

/// Writes `data` and reads back exactly as many bytes.
pub fn roundtrip(client: &mut Client, data: &[u8]) -> io::Result<Vec<u8>> {
    client.write_all(data)?;
    client.flush()?;
    let mut back = vec![0u8; data.len()];
    client.read_exact(&mut back)?;
    Ok(back)
}

/// The certificate and key as PEM files, removed when dropped.
pub struct PemFiles {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

impl TestCert {
    pub fn write_pems(&self) -> PemFiles {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let base = std::env::temp_dir().join(format!("rolecore-tls-{}-{n}", std::process::id()));
        let files = PemFiles { cert: base.with_extension("cert.pem"), key: base.with_extension("key.pem") };
        std::fs::write(&files.cert, &self.cert_pem).unwrap();
        std::fs::write(&files.key, &self.key_pem).unwrap();
        files
    }
}

impl Drop for PemFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.cert);
        let _ = std::fs::remove_file(&self.key);
    }
}

impl PemFiles {
    /// `--tls-cert CERT --tls-key KEY`.
    pub fn flags(&self) -> Vec<String> {
        vec![
            "--tls-cert".into(),
            self.cert.display().to_string(),
            "--tls-key".into(),
            self.key.display().to_string(),
        ]
    }
}

/// An example server running as a child process, killed on drop.
pub struct Example {
    child: std::process::Child,
    pub addr: std::net::SocketAddr,
    _stdout: std::io::BufReader<std::process::ChildStdout>,
    /// Every line the server wrote on stderr so far.
    pub stderr: Arc<std::sync::Mutex<Vec<String>>>,
}

/// The path of an example binary that `cargo test` built.
pub fn example_path(name: &str) -> std::path::PathBuf {
    let mut dir = std::env::current_exe().expect("test binary path");
    dir.pop();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir.join("examples").join(name)
}

impl Example {
    /// Starts `name` on a free port with `args`; waits for its
    /// `listening on HOST:PORT` line.
    pub fn start(name: &str, args: &[String]) -> Example {
        use std::io::BufRead;
        use std::process::{Command, Stdio};
        let mut child = Command::new(example_path(name))
            .arg("127.0.0.1:0")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        let stderr = Arc::new(std::sync::Mutex::new(Vec::new()));
        let lines = std::io::BufReader::new(child.stderr.take().unwrap());
        let sink = stderr.clone();
        std::thread::spawn(move || {
            for line in lines.lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let Some(addr) = line.trim_end().strip_prefix("listening on ").and_then(|a| a.parse().ok()) else {
            let _ = child.kill();
            panic!("{name}: first line {line:?} is not `listening on HOST:PORT`");
        };
        Example { child, addr, _stdout: stdout, stderr }
    }

    /// Waits (at most 5 s) for a stderr line containing `what`; all the
    /// lines so far.
    pub fn wait_for_stderr(&self, what: &str) -> Vec<String> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let lines = self.stderr.lock().unwrap().clone();
            if lines.iter().any(|l| l.contains(what)) || std::time::Instant::now() > deadline {
                return lines;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Panics if the process has exited.
    pub fn assert_alive(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("the server exited: {status}");
        }
    }
}

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
