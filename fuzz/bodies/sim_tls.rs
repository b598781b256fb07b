//! TLS in the simulated world (feature `tls`): the handshake and
//! application data under the scripted poller, which withholds, invents and
//! reorders readiness.
//!
//! The map holds a rolecore TLS client and a rolecore TLS server, joined by
//! a Unix socket, the server an echo (`Buffered`) or a line echo
//! (`AsyncChat`); the client sends a payload once its handshake completed,
//! reads the echo, and closes (with `close_notify`) once it has it all. The
//! simulated peers meanwhile connect to a TLS listener and send it noise,
//! which must fail their handshakes; with a bit of the input, a TLS client
//! also connects to a simulated peer that answers noise. The input's first
//! bytes size the world, the payload, the server kind and the TLS version;
//! the rest drives the simulation.
//!
//! It checks the simulation's invariants (`handle_connect` once and before
//! any I/O, nothing after close, no livelock, no channel left open: every
//! handshake ends, and the pair closes on its own), that the echo the client
//! read is exactly its payload (the settle phase runs the loop on the truth,
//! so the exchange completes), and that a peer sending noise got at most an
//! alert back.

use std::cell::{Cell, RefCell};
use std::io;
use std::rc::Rc;
use std::sync::{Arc, OnceLock};

use rolecore::sim::{Sim, SimConfig, SimFailure, SimReport};
use rolecore::tls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rolecore::tls::{Handshaking, rustls};
use rolecore::{
    AcceptHandler, Address, AsyncChat, Buffered, Channel, ChatHandler, Connected, Ctx, StreamHandler,
    Terminator, UnixAddress,
};

use super::{Input, config_name, sim_config, summarize_trace};

/// How the world is set up.
#[derive(Clone, Copy, Debug)]
pub struct Setup {
    pub config: SimConfig,
    pub payload: usize,
    pub chat: bool,
    pub tls12: bool,
    pub client_to_noise: bool,
}

pub fn decode(inp: &mut Input<'_>, check_descriptors: bool) -> Setup {
    let config = sim_config(inp, check_descriptors);
    let b = inp.byte();
    Setup {
        config,
        payload: [0, 1, 100, 5000, 17_000, 70_000][usize::from(b % 6)],
        chat: b & 8 != 0,
        tls12: b & 16 != 0,
        client_to_noise: b & 32 != 0,
    }
}

/// One certificate for every run: making one takes longer than a run.
fn configs(tls12: bool) -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
    static CERT: OnceLock<(CertificateDer<'static>, Vec<u8>)> = OnceLock::new();
    let (cert, key) = CERT.get_or_init(|| {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("a certificate");
        (made.cert.der().clone(), made.signing_key.serialize_der())
    });
    let versions: &[&rustls::SupportedProtocolVersion] =
        if tls12 { &[&rustls::version::TLS12] } else { &[&rustls::version::TLS13] };
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.clone()));
    let server = rustls::ServerConfig::builder_with_protocol_versions(versions)
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .expect("the server's configuration");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.clone()).expect("a root");
    let client = rustls::ClientConfig::builder_with_protocol_versions(versions)
        .with_root_certificates(roots)
        .with_no_client_auth();
    (Arc::new(server), Arc::new(client))
}

/// The payload: lines of up to 99 bytes, ending with one.
fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| if i % 100 == 99 || i + 1 == len { b'\n' } else { b'a' + (i % 26) as u8 }).collect()
}

/// Counts down when the handler it is in is dropped (its channel closed,
/// whichever way).
struct Closes(Option<Rc<Cell<usize>>>);

impl Drop for Closes {
    fn drop(&mut self) {
        if let Some(open) = &self.0 {
            open.set(open.get() - 1);
        }
    }
}

/// Keeps the simulation from taking the pair's handshake for a quiet loop:
/// a handshake's flights make no handler callback, and the simulation's
/// settling ends after two iterations without one. Its write events move
/// nothing (so a pair that never finishes still shows as a livelock), and
/// it closes once both ends of the pair have.
struct Ticker {
    open: Rc<Cell<usize>>,
    /// The socket's other end, closed with the ticker (so that no
    /// descriptor outlives the run).
    _far_end: Channel<Connected>,
}

impl StreamHandler for Ticker {
    fn writable(&self, _: &Channel<Connected>) -> bool {
        true
    }
    fn handle_write(&mut self, _: &mut Channel<Connected>, cx: &mut Ctx<'_>) -> io::Result<()> {
        if self.open.get() == 0 {
            cx.close();
        }
        Ok(())
    }
    fn handle_read(&mut self, _: &mut Channel<Connected>, _: &mut Ctx<'_>) -> io::Result<()> {
        Ok(())
    }
}

struct Echo(Closes);

impl StreamHandler<Buffered> for Echo {
    fn handle_read(&mut self, ch: &mut Buffered, cx: &mut Ctx<'_>) -> io::Result<()> {
        let buf = cx.buffer();
        let n = ch.recv(buf)?;
        ch.send(&buf[..n])
    }
    fn handle_connect_failed(&mut self, _: io::Error, _: &mut Ctx<'_>) {}
}

struct LineEcho(Closes);

impl ChatHandler for LineEcho {
    fn found_terminator(&mut self, chat: &mut AsyncChat, _: &mut Ctx<'_>) -> io::Result<()> {
        let mut line = chat.take_incoming();
        line.push(b'\n');
        chat.push(&line)
    }
    fn handle_connect_failed(&mut self, _: io::Error, _: &mut Ctx<'_>) {}
}

/// Where the simulated peers send their noise.
struct TlsListener(Arc<rustls::ServerConfig>);

impl AcceptHandler for TlsListener {
    fn handle_accepted(&mut self, c: Channel<Connected>, _: Address, cx: &mut Ctx<'_>) -> io::Result<()> {
        cx.insert(Handshaking::server(Buffered::new(c), self.0.clone())?, Echo(Closes(None)))?;
        Ok(())
    }
}

/// What the client saw.
#[derive(Default, Debug)]
pub struct Seen {
    pub connected: usize,
    pub received: Vec<u8>,
    pub failed: Option<String>,
}

struct Client {
    payload: Rc<Vec<u8>>,
    seen: Rc<RefCell<Seen>>,
    _closes: Closes,
}

impl StreamHandler<Buffered> for Client {
    fn handle_connect(&mut self, ch: &mut Buffered, cx: &mut Ctx<'_>) -> io::Result<()> {
        self.seen.borrow_mut().connected += 1;
        if self.payload.is_empty() {
            cx.close();
            return Ok(());
        }
        ch.send(&self.payload)
    }
    fn handle_read(&mut self, ch: &mut Buffered, cx: &mut Ctx<'_>) -> io::Result<()> {
        let buf = cx.buffer();
        let n = ch.recv(buf)?;
        let mut seen = self.seen.borrow_mut();
        seen.received.extend_from_slice(&buf[..n]);
        if seen.received.len() >= self.payload.len() {
            cx.close(); // with close_notify
        }
        Ok(())
    }
    fn handle_connect_failed(&mut self, error: io::Error, _: &mut Ctx<'_>) {
        self.seen.borrow_mut().failed = Some(error.to_string());
    }
    fn handle_error(&mut self, _: &mut Buffered, error: io::Error, cx: &mut Ctx<'_>) {
        self.seen.borrow_mut().failed = Some(error.to_string());
        cx.close();
    }
}

/// What one run gives: the setup, the payload, the pair's client's view,
/// the noise client's, and the simulation's verdict.
pub type Outcome = (Setup, Vec<u8>, Rc<RefCell<Seen>>, Rc<RefCell<Seen>>, Result<SimReport, SimFailure>);

/// Runs the world an input describes.
pub fn simulate(data: &[u8], check_descriptors: bool) -> Outcome {
    let mut inp = Input::new(data);
    let s = decode(&mut inp, check_descriptors);
    let (server_config, client_config) = configs(s.tls12);
    let mut sim = Sim::from_bytes(inp.rest(), s.config).expect("create the simulation");
    sim.listen(TlsListener(server_config.clone())).expect("listen");

    // The pair, joined by a Unix socket of its own.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let address = Address::Unix(UnixAddress::Abstract(
        format!("rolecore-sim-tls-{}-{n}", std::process::id()).into_bytes(),
    ));
    let mut listener = Channel::unix_stream().unwrap().bind(&address).unwrap().listen(1).unwrap();
    let connecting = Channel::unix_stream().unwrap().connect(&address).unwrap();
    let (accepted, _) = listener.accept().unwrap().expect("the pair's connection");
    drop(listener);
    let name = ServerName::try_from("localhost").unwrap();
    let sent = payload(s.payload);
    let seen = Rc::new(RefCell::new(Seen::default()));
    let open = Rc::new(Cell::new(2));
    let client =
        Client { payload: Rc::new(sent.clone()), seen: seen.clone(), _closes: Closes(Some(open.clone())) };
    let map = sim.map();
    map.insert(
        Handshaking::client(Buffered::new(connecting), client_config.clone(), name.clone()).unwrap(),
        client,
    )
    .unwrap();
    if s.chat {
        let chat = AsyncChat::new(accepted, Terminator::bytes(b"\n"));
        map.insert(Handshaking::server(chat, server_config).unwrap(), LineEcho(Closes(Some(open.clone()))))
            .unwrap();
    } else {
        let echo = Echo(Closes(Some(open.clone())));
        map.insert(Handshaking::server(Buffered::new(accepted), server_config).unwrap(), echo).unwrap();
    }
    let (ticker, far_end) = Channel::pair().unwrap();
    map.insert(ticker, Ticker { open, _far_end: far_end }).unwrap();

    let noise = Rc::new(RefCell::new(Seen::default()));
    if s.client_to_noise {
        let client =
            Client { payload: Rc::new(b"never sent\n".to_vec()), seen: noise.clone(), _closes: Closes(None) };
        sim.connect(|c, map| {
            Ok(map.insert(Handshaking::client(Buffered::new(c), client_config, name)?, client)?)
        })
        .expect("connect");
    }
    (s, sent, seen, noise, sim.run())
}

pub fn run(data: &[u8]) -> usize {
    run_with(data, false)
}

pub fn run_with(data: &[u8], check_descriptors: bool) -> usize {
    let (s, sent, seen, noise, result) = simulate(data, check_descriptors);
    let report = match result {
        Ok(report) => report,
        Err(failure) => panic!("{s:?}\n{failure}"),
    };
    let seen = seen.borrow();
    // A graceful shutdown the simulation chose may end the pair early: its
    // grace period can pass before the handshake or the echo is done. Then
    // the client connected at most once and read a prefix of the echo.
    let complete = seen.connected == 1 && seen.failed.is_none() && seen.received == sent;
    if !complete && report.shut_down {
        assert!(seen.connected <= 1, "{s:?}: the pair's client completed its handshake twice: {seen:?}");
        assert!(sent.starts_with(&seen.received), "{s:?}: the echo is not a prefix of the payload");
    } else {
        assert_eq!(seen.connected, 1, "{s:?}: the pair's client completed its handshake once: {seen:?}");
        assert!(seen.failed.is_none(), "{s:?}: the pair's client failed: {seen:?}");
        assert!(
            seen.received == sent,
            "{s:?}: the echo ({} bytes) is not the payload ({} bytes)",
            seen.received.len(),
            sent.len()
        );
    }
    let noise = noise.borrow();
    assert_eq!(noise.connected, 0, "{s:?}: a handshake with noise completed");
    for (i, peer) in report.peers.iter().enumerate() {
        // A peer that sent noise gets an alert or nothing; the noise
        // client's peer (sim.connect) gets a ClientHello (a handshake
        // record) or nothing.
        let first = peer.received.first().copied();
        assert!(
            matches!(first, None | Some(21) | Some(22)),
            "{s:?}: peer p{i} received {:?}",
            &peer.received[..peer.received.len().min(8)]
        );
    }
    seen.received.len() + report.peers.len()
}

pub fn describe(data: &[u8]) -> String {
    let (s, _, _, _, result) = simulate(data, false);
    let trace = match &result {
        Ok(report) => summarize_trace(&report.trace),
        Err(failure) => format!("FAILS-{}", summarize_trace(&failure.trace)),
    };
    format!(
        "{}-payload{}-{}-{}{}-{trace}",
        config_name(&s.config),
        s.payload,
        if s.chat { "chat" } else { "buffered" },
        if s.tls12 { "tls12" } else { "tls13" },
        if s.client_to_noise { "-noiseclient" } else { "" }
    )
}
