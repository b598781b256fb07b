// TLS over a bare channel: a TLS session runs under a `Buffered` or an
// `AsyncChat`, which hold its records and the plaintext queued; a raw
// `Channel<Connected>` cannot carry one. E0277 (`ServerSide`), with a note
// showing the wrapping. (Run only with the `tls` feature:
// tests/compile_fail.rs.)
use std::sync::Arc;

use rolecore::Channel;
use rolecore::tls::{Handshaking, rustls};

fn serve(config: Arc<rustls::ServerConfig>) -> std::io::Result<()> {
    let (conn, _peer) = Channel::pair()?;
    let _tls = Handshaking::server(conn, config)?;
    Ok(())
}

fn main() {
    let _ = serve;
}
