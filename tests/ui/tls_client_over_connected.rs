// TLS: the client side of a handshake over an accepted connection. A TLS
// client wraps the socket it is connecting (a `Channel<Connecting>`); over
// an accepted `Channel<Connected>` only the server side starts. Before,
// this compiled and `Handshaking::client` refused it at run time; now it is
// E0277 (`ClientSide`), with a note naming the server side. (Run only with
// the `tls` feature: tests/compile_fail.rs.)
use std::sync::Arc;

use rolecore::tls::{Handshaking, rustls};
use rolecore::{AsyncChat, Channel, Terminator};

fn dial(config: Arc<rustls::ClientConfig>) -> std::io::Result<()> {
    let (conn, _peer) = Channel::pair()?;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let _tls = Handshaking::client(AsyncChat::new(conn, Terminator::CRLF), config, name)?;
    Ok(())
}

fn main() {
    let _ = dial;
}
