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
    let tcp = TcpStream::connect(addr)?;
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
