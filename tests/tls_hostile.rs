//! Bad input on a TLS port (feature `tls`): plain text, random bytes, a
//! truncated or oversized ClientHello, a client that stalls mid-handshake,
//! one that floods records and never reads, a TLS 1.2 renegotiation (a
//! ClientHello the test encrypts into the established stream itself). Each is closed with one clear
//! report line (the handler's default `handle_connect_failed` or
//! `handle_error`), and a bystander connection, established before the
//! attack, still echoes after it.
#![cfg(feature = "tls")]

mod tls_common;
mod util;

use std::cell::Cell;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::rc::Rc;
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use rolecore::report::{self, Level};
use rolecore::tls::{Handshaking, rustls};
use rolecore::{AcceptHandler, Address, Buffered, Channel, Connected, Ctx, Map, StreamHandler, Token};
use tls_common::{Client, cert, client_config, connect, localhost, roundtrip, server_config};
use util::{run_iterations, run_until, tcp_listener};

/// Every report line of this test binary, for each test to find its own
/// (by its handler's type name, which names the test's `ID`).
static REPORTS: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn capture_reports() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        report::set_log_hook(Some(Box::new(|level: Level, message: &std::fmt::Arguments<'_>| {
            REPORTS.lock().unwrap().push(format!("{level}: {message}"));
        })));
    });
}

/// The report lines that name `Echo<ID>`.
fn reports_of<const ID: u8>() -> Vec<String> {
    let name = format!("Echo<{ID}>");
    REPORTS.lock().unwrap().iter().filter(|l| l.contains(&name)).cloned().collect()
}

/// An echo with the default failure callbacks: what they report is what
/// an operator would read.
struct Echo<const ID: u8> {
    connected: Rc<Cell<Option<Token>>>,
}

impl<const ID: u8> StreamHandler<Buffered> for Echo<ID> {
    fn handle_connect(&mut self, _: &mut Buffered, cx: &mut Ctx<'_>) -> io::Result<()> {
        self.connected.set(Some(cx.token()));
        Ok(())
    }
    fn handle_read(&mut self, ch: &mut Buffered, cx: &mut Ctx<'_>) -> io::Result<()> {
        let buf = cx.buffer();
        let n = ch.recv(buf)?;
        ch.send(&buf[..n])
    }
}

struct Server<const ID: u8> {
    config: Arc<rustls::ServerConfig>,
    idle: Duration,
    connected: Rc<Cell<Option<Token>>>,
}

impl<const ID: u8> AcceptHandler for Server<ID> {
    fn handle_accepted(&mut self, conn: Channel<Connected>, _: Address, cx: &mut Ctx<'_>) -> io::Result<()> {
        let tls = Handshaking::server(Buffered::new(conn), self.config.clone())?;
        let token = cx.insert(tls, Echo::<ID> { connected: self.connected.clone() })?;
        // The handshake, like any silence, is bounded by the idle timeout.
        cx.set_idle_timeout(token, Some(self.idle));
        Ok(())
    }
}

/// A server, and a bystander client whose handshake is done.
struct World {
    map: Map,
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    bystander: Client,
    connected: Rc<Cell<Option<Token>>>,
    cert: tls_common::TestCert,
}

fn world<const ID: u8>(idle: Duration) -> World {
    capture_reports();
    let cert = cert();
    let (listener, addr) = tcp_listener();
    let connected = Rc::new(Cell::new(None));
    let mut map = Map::new().unwrap();
    let server = Server::<ID> { config: server_config(&cert, &[], &[]), idle, connected: connected.clone() };
    map.insert(listener, server).unwrap();
    let config = client_config(&cert, &[], &[]);
    let handshake = {
        let config = config.clone();
        std::thread::spawn(move || connect(addr, config).unwrap())
    };
    assert!(run_until(&mut map, |_| connected.get().is_some()));
    let bystander = handshake.join().unwrap();
    World { map, addr, config, bystander, connected, cert }
}

impl World {
    /// The bystander still gets its echo.
    fn bystander_still_echoes(mut self) {
        let mut client = self.bystander;
        let echo = std::thread::spawn(move || roundtrip(&mut client, b"still here").unwrap());
        assert!(run_until(&mut self.map, |_| echo.is_finished()));
        assert_eq!(echo.join().unwrap(), b"still here");
    }

    /// Runs the map until `ID`'s report lines include one containing
    /// `what`; returns them.
    fn reported<const ID: u8>(&mut self, what: &str) -> Vec<String> {
        let found = run_until(&mut self.map, |_| reports_of::<ID>().iter().any(|l| l.contains(what)));
        let lines = reports_of::<ID>();
        assert!(found, "no report containing {what:?}: {lines:?}");
        lines
    }
}

/// Reads what the server sends until it closes (at most 5 s).
fn read_to_close(mut stream: TcpStream) -> Vec<u8> {
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut got = Vec::new();
    let _ = stream.read_to_end(&mut got);
    got
}

/// Sends `bytes` on a new TCP connection in a thread and reads until the
/// server closes; the map runs meanwhile.
fn attack(world: &mut World, bytes: Vec<u8>, then_close: bool) -> std::thread::JoinHandle<Vec<u8>> {
    let addr = world.addr;
    std::thread::spawn(move || {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.write_all(&bytes).unwrap();
        if then_close {
            stream.shutdown(std::net::Shutdown::Write).unwrap();
        }
        read_to_close(stream)
    })
}

/// A real ClientHello, as rustls's client makes it.
fn client_hello(config: Arc<rustls::ClientConfig>) -> Vec<u8> {
    let mut conn = rustls::ClientConnection::new(config, localhost()).unwrap();
    let mut hello = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut hello).unwrap();
    }
    hello
}

/// A fatal alert record (TLS content type 21), what rustls sends before it
/// closes on a refused handshake.
fn is_alert(bytes: &[u8]) -> bool {
    bytes.first() == Some(&21)
}

#[test]
fn plain_text_is_refused_with_an_alert() {
    let mut world = world::<1>(Duration::from_secs(5));
    let peer = attack(&mut world, b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(), false);
    let lines = world.reported::<1>("TLS handshake failed");
    assert!(run_until(&mut world.map, |_| peer.is_finished()));
    assert!(is_alert(&peer.join().unwrap()), "the server answers with an alert");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].starts_with("error: ") && !lines[0].contains('\n'), "{lines:?}");
    world.bystander_still_echoes();
}

#[test]
fn random_bytes_are_refused() {
    let mut world = world::<2>(Duration::from_secs(5));
    // xorshift: the same noise every run. A first byte of 22 would be a
    // handshake record header; noise that happens to start with one is
    // covered by the stalling and oversized cases.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let noise: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    assert_ne!(noise[0], 22);
    let peer = attack(&mut world, noise, false);
    let lines = world.reported::<2>("TLS handshake failed");
    assert!(run_until(&mut world.map, |_| peer.is_finished()));
    assert_eq!(lines.len(), 1, "{lines:?}");
    world.bystander_still_echoes();
}

#[test]
fn a_truncated_client_hello_then_end_of_stream_is_refused() {
    let mut world = world::<3>(Duration::from_secs(5));
    let hello = client_hello(world.config.clone());
    let peer = attack(&mut world, hello[..hello.len() / 2].to_vec(), true);
    let lines = world.reported::<3>("closed the connection before it completed");
    assert!(run_until(&mut world.map, |_| peer.is_finished()));
    assert_eq!(lines.len(), 1, "{lines:?}");
    world.bystander_still_echoes();
}

#[test]
fn an_oversized_client_hello_is_refused() {
    let mut world = world::<4>(Duration::from_secs(5));
    // A record longer than TLS allows (2^14 + 2048 for ciphertext).
    let mut header = vec![22, 3, 1, 0xFF, 0xFF];
    header.extend_from_slice(&[1, 0xFF, 0xFF, 0xFF]);
    let peer = attack(&mut world, header, false);
    world.reported::<4>("TLS handshake failed");
    assert!(run_until(&mut world.map, |_| peer.is_finished()));
    // A handshake message claiming 16 MiB, sent as full records: refused
    // long before it could be buffered.
    let mut flood = Vec::new();
    let mut first = vec![1u8, 0xFF, 0xFF, 0xFF];
    first.resize(16384, 0x41);
    for i in 0..64 {
        let body = if i == 0 { &first[..] } else { &[0x41u8; 16384][..] };
        flood.extend_from_slice(&[22, 3, 1, 0x40, 0x00]);
        flood.extend_from_slice(body);
    }
    let peer = attack(&mut world, flood, false);
    assert!(run_until(&mut world.map, |_| reports_of::<4>().len() == 2 && peer.is_finished()));
    let lines = reports_of::<4>();
    assert!(lines.iter().all(|l| l.contains("TLS handshake failed")), "{lines:?}");
    world.bystander_still_echoes();
}

#[test]
fn a_client_stalling_mid_handshake_times_out() {
    let mut world = world::<5>(Duration::from_millis(300));
    let hello = client_hello(world.config.clone());
    let started = Instant::now();
    // Half a ClientHello, then silence (the socket stays open).
    let peer = attack(&mut world, hello[..hello.len() / 2].to_vec(), false);
    let lines = world.reported::<5>("timed out");
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(250) && took < Duration::from_secs(3), "{took:?}");
    assert!(run_until(&mut world.map, |_| peer.is_finished()));
    assert_eq!(lines.len(), 1, "{lines:?}");
    // The bystander was idle too long as well in this world: a new one.
    let config = world.config.clone();
    let addr = world.addr;
    let fresh = std::thread::spawn(move || {
        let mut c = connect(addr, config).unwrap();
        roundtrip(&mut c, b"after").unwrap()
    });
    assert!(run_until(&mut world.map, |_| fresh.is_finished()));
    assert_eq!(fresh.join().unwrap(), b"after");
}

#[test]
fn a_client_that_floods_and_never_reads_is_bounded() {
    let mut world = world::<6>(Duration::from_secs(30));
    world.connected.set(None);
    let config = world.config.clone();
    let addr = world.addr;
    let flooding = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let keep = flooding.clone();
    let flooder = std::thread::spawn(move || {
        let mut c = connect(addr, config).unwrap();
        c.sock.set_write_timeout(Some(Duration::from_secs(1))).unwrap();
        let record = [b'x'; 16000];
        let mut sent = 0usize;
        // Writes until the server stops taking them (its queue is past
        // the high watermark and it stopped reading); never reads.
        while keep.load(std::sync::atomic::Ordering::SeqCst) {
            match c.write(&record) {
                Ok(n) => sent += n,
                Err(_) => break,
            }
            if c.conn.wants_write() {
                match c.conn.write_tls(&mut c.sock) {
                    Ok(_) => {}
                    Err(e)
                        if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::TimedOut =>
                    {
                        break;
                    }
                    Err(_) => break,
                }
            }
        }
        (c, sent)
    });
    assert!(run_until(&mut world.map, |_| world.connected.get().is_some()));
    let token = world.connected.get().unwrap();
    let mut most = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !flooder.is_finished() && Instant::now() < deadline {
        run_iterations(&mut world.map, 1);
        if let Some(mut stream) = world.map.stream_mut::<Buffered, Echo<6>>(token) {
            most = most.max(stream.transport().queued());
        }
    }
    flooding.store(false, std::sync::atomic::Ordering::SeqCst);
    let (_client, sent) = flooder.join().unwrap();
    // Back-pressure: reading stopped past the high watermark (1 MiB), so
    // the queue holds at most that plus one read's echo (64 KiB).
    assert!(most > 0 && most <= (1 << 20) + (64 << 10), "queued {most}");
    assert!(sent >= 1 << 20, "the flood stopped early: {sent}");
    assert!(sent < 64 << 20, "the server read without bound: {sent}");
    world.bystander_still_echoes();
}

/// One TLS 1.2 record, encrypted as the client's next record with its
/// AES-GCM traffic secrets (RFC 5288: the nonce is the write IV's salt and
/// an explicit part sent before the ciphertext).
fn seal_tls12(secrets: &rustls::ConnectionTrafficSecrets, seq: u64, kind: u8, plain: &[u8]) -> Vec<u8> {
    use ring::aead::{AES_128_GCM, AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
    let (key, iv, alg) = match secrets {
        rustls::ConnectionTrafficSecrets::Aes128Gcm { key, iv } => (key, iv, &AES_128_GCM),
        rustls::ConnectionTrafficSecrets::Aes256Gcm { key, iv } => (key, iv, &AES_256_GCM),
        _ => panic!("the test's TLS 1.2 suites are AES-GCM"),
    };
    let mut nonce = [0u8; 12];
    nonce.copy_from_slice(iv.as_ref());
    for (n, s) in nonce[4..].iter_mut().zip(seq.to_be_bytes()) {
        *n ^= s;
    }
    let mut aad = seq.to_be_bytes().to_vec();
    aad.extend_from_slice(&[kind, 3, 3]);
    aad.extend_from_slice(&(plain.len() as u16).to_be_bytes());
    let key = LessSafeKey::new(UnboundKey::new(alg, key.as_ref()).unwrap());
    let mut body = plain.to_vec();
    key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut body).unwrap();
    let mut record = vec![kind, 3, 3];
    record.extend_from_slice(&((8 + body.len()) as u16).to_be_bytes());
    record.extend_from_slice(&nonce[4..]);
    record.extend_from_slice(&body);
    record
}

/// The content types of the records in `bytes` (their headers are in the
/// clear in TLS 1.2).
fn record_types(mut bytes: &[u8]) -> Vec<u8> {
    let mut types = Vec::new();
    while bytes.len() >= 5 {
        types.push(bytes[0]);
        let len = usize::from(u16::from_be_bytes([bytes[3], bytes[4]]));
        bytes = &bytes[(5 + len).min(bytes.len())..];
    }
    types
}

#[test]
fn a_tls12_renegotiation_is_refused() {
    let mut world = world::<7>(Duration::from_secs(5));
    // TLS 1.2, with the secrets the test needs to encrypt records itself.
    let mut tls12 = (*client_config(&world.cert, &[&rustls::version::TLS12], &[])).clone();
    tls12.enable_secret_extraction = true;
    let tls12 = Arc::new(tls12);
    let hello = client_hello(world.config.clone());
    let handshake = hello[5..].to_vec(); // the ClientHello message, out of its record
    let addr = world.addr;
    let attacker = std::thread::spawn(move || {
        let mut c = connect(addr, tls12).unwrap();
        assert_eq!(c.conn.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_2));
        assert_eq!(roundtrip(&mut c, b"before").unwrap(), b"before");
        let rustls::StreamOwned { conn, mut sock } = c;
        let secrets = conn.dangerous_extract_secrets().unwrap();
        let (seq, tx) = secrets.tx;
        // A renegotiation: a ClientHello inside the encrypted stream.
        sock.write_all(&seal_tls12(&tx, seq, 22, &handshake)).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut first = [0u8; 64];
        let n = sock.read(&mut first).unwrap();
        let answer = record_types(&first[..n]);
        // A second one: rustls then gives up on the peer.
        sock.write_all(&seal_tls12(&tx, seq + 1, 22, &handshake)).unwrap();
        (answer, read_to_close(sock))
    });
    let lines = world.reported::<7>("TLS record processing failed");
    assert!(run_until(&mut world.map, |_| attacker.is_finished()));
    let (answer, rest) = attacker.join().unwrap();
    assert_eq!(answer, [21], "the first attempt gets an alert record (no_renegotiation, a warning)");
    assert_eq!(record_types(&rest), [21], "the second, a fatal alert, then the end");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("Renegotiation"), "{lines:?}");
    world.bystander_still_echoes();
}
