// TLS: application data before the handshake completed. A server's stream is
// a `Handshaking<T>` until the loop has run the handshake; only then does the
// handler get the established transport, in `handle_connect`. Sending or
// pushing on the handshaking form is E0277, with a message saying where to
// send instead. (Run only with the `tls` feature: tests/compile_fail.rs.)
use std::sync::Arc;

use rolecore::tls::{Handshaking, rustls};
use rolecore::{AsyncChat, Channel, Terminator};

fn serve(config: Arc<rustls::ServerConfig>) -> std::io::Result<()> {
    let (conn, _peer) = Channel::pair()?;
    let mut tls = Handshaking::server(AsyncChat::new(conn, Terminator::bytes(b"\n")), config)?;
    tls.push(b"220 welcome\n")?;
    Ok(())
}

fn main() {
    let _ = serve;
}
