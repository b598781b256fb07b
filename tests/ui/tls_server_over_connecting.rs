// TLS: the server side of a handshake over a socket that is still
// connecting. A TLS server wraps the connection it accepted (a
// `Channel<Connected>`); over a `Channel<Connecting>` only the client side
// starts. Before, this compiled and `Handshaking::server` refused it at run
// time; now it is E0277 (`ServerSide`), with a note naming the client side.
// (Run only with the `tls` feature: tests/compile_fail.rs.)
use std::sync::Arc;

use rolecore::tls::{Handshaking, rustls};
use rolecore::{Buffered, Channel};

fn serve(config: Arc<rustls::ServerConfig>) -> std::io::Result<()> {
    let connecting = Channel::tcp_v4()?.connect("127.0.0.1:443")?;
    let _tls = Handshaking::server(Buffered::new(connecting), config)?;
    Ok(())
}

fn main() {
    let _ = serve;
}
