//! The samples of `docs/guide.md`'s chapter "TLS", as tests (feature
//! `tls`): `tests/guide.rs` checks that every ```rust block of the guide is
//! an excerpt of it or of this file.
#![cfg(feature = "tls")]

mod tls_common;

use std::io::{self, Read, Write};
use std::sync::Arc;

use rolecore::tls::{Handshaking, rustls};
use rolecore::{AcceptHandler, Address, AsyncChat, Channel, ChatHandler, Connected, Ctx, Map, Terminator};

// ---- chapter 12: TLS --------------------------------------------------------------

/// A line echo over TLS: the same handler as over plain TCP, plus a look at
/// what the handshake negotiated.
struct Lines;

impl ChatHandler for Lines {
    fn handle_connect(&mut self, chat: &mut AsyncChat, _cx: &mut Ctx<'_>) -> io::Result<()> {
        // Called once, when the handshake completed: the session is there.
        let tls = chat.tls().expect("a TLS stream");
        let alpn = tls.alpn_protocol().map(String::from_utf8_lossy);
        chat.push(format!("hello, {:?} over {alpn:?}\n", tls.protocol_version().unwrap()).as_bytes())
    }

    fn found_terminator(&mut self, chat: &mut AsyncChat, _cx: &mut Ctx<'_>) -> io::Result<()> {
        let mut line = chat.take_incoming();
        line.push(b'\n');
        chat.push(&line) // plaintext in, plaintext out
    }
}

/// Every accepted connection handshakes first.
struct TlsServer {
    config: Arc<rustls::ServerConfig>,
}

impl AcceptHandler for TlsServer {
    fn handle_accepted(&mut self, conn: Channel<Connected>, _: Address, cx: &mut Ctx<'_>) -> io::Result<()> {
        let chat = AsyncChat::new(conn, Terminator::bytes(b"\n"));
        let tls = Handshaking::server(chat, self.config.clone())?; // no push, no send: still handshaking
        let token = cx.insert(tls, Lines)?;
        cx.set_idle_timeout(token, Some(std::time::Duration::from_secs(10))); // bounds the handshake too
        Ok(())
    }
}

/// The server's configuration: rustls's own builder, from PEM files.
fn server_config(cert_pem: &[u8], key_pem: &[u8]) -> io::Result<Arc<rustls::ServerConfig>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let chain =
        CertificateDer::pem_slice_iter(cert_pem).collect::<Result<Vec<_>, _>>().map_err(io::Error::other)?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(io::Error::other)?;
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(io::Error::other)?;
    config.alpn_protocols = vec![b"lines".to_vec()];
    Ok(Arc::new(config))
}

#[test]
fn a_tls_line_server() {
    let cert = tls_common::cert();
    let config = server_config(cert.cert_pem.as_bytes(), cert.key_pem.as_bytes()).unwrap();
    let listener = Channel::tcp_v4().unwrap().bind("127.0.0.1:0").unwrap().listen(8).unwrap();
    let addr = listener.local_addr().unwrap().inet().unwrap();
    let mut map = Map::new().unwrap();
    map.insert(listener, TlsServer { config }).unwrap();
    let client = tls_common::client_config(&cert, &[], &[b"lines"]);
    let peer = std::thread::spawn(move || {
        let mut c = tls_common::connect(addr, client).unwrap();
        c.write_all(b"one\n").unwrap();
        let mut got = vec![0u8; "hello, TLSv1_3 over Some(\"lines\")\none\n".len()];
        c.read_exact(&mut got).unwrap();
        String::from_utf8(got).unwrap()
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !peer.is_finished() && std::time::Instant::now() < deadline {
        map.poll(Some(std::time::Duration::from_millis(10))).unwrap();
    }
    assert_eq!(peer.join().unwrap(), "hello, TLSv1_3 over Some(\"lines\")\none\n");
}
