//! The echo server: every byte a client sends comes back.
//!
//! ```text
//! cargo run --release --example echo_server -- [ADDR] [--backend select|poll|epoll] [--threads N]
//!     [--tls-cert PEM --tls-key PEM]
//! ```
//!
//! ADDR defaults to 127.0.0.1:8080 (port 0 picks a free port; `[::1]:PORT`
//! and `unix:PATH` work too); the first line on stdout is
//! `listening on HOST:PORT`. Ctrl-C or SIGTERM shuts it down cleanly. The
//! command line and the loops live in `examples/serve/`, which every example
//! server shares. `--tls-cert PEM --tls-key PEM` echo over TLS (1.3 and
//! 1.2; a build with rolecore's `tls` feature): the same `Echo`, handed the
//! plaintext once the handshake completed.

use std::io;

use rolecore::{AcceptHandler, Address, Buffered, Channel, Connected, Ctx, StreamHandler};

struct Echo;

impl StreamHandler<Buffered<Connected>> for Echo {
    fn handle_read(&mut self, ch: &mut Buffered<Connected>, cx: &mut Ctx<'_>) -> io::Result<()> {
        let buf = cx.buffer(); // the loop's read buffer, reused
        let n = ch.recv(buf)?; // 0: the peer closed, the loop calls handle_close
        ch.send(&buf[..n]) // queued if the socket cannot take it all; past 1 MiB, reading pauses
    }
}

struct Server {
    tls: Option<serve::TlsConfig>,
}

impl AcceptHandler for Server {
    fn handle_accepted(
        &mut self,
        conn: Channel<Connected>,
        _peer: Address,
        cx: &mut Ctx<'_>,
    ) -> io::Result<()> {
        match &self.tls {
            None => cx.insert(Buffered::new(conn), Echo)?, // a new channel joins the same loop
            #[cfg(feature = "tls")]
            Some(config) => {
                cx.insert(rolecore::tls::Handshaking::server(Buffered::new(conn), config.clone())?, Echo)?
            }
            #[cfg(not(feature = "tls"))]
            Some(never) => match *never {},
        };
        Ok(())
    }
}

fn main() -> std::process::ExitCode {
    let echo = serve::Server {
        name: "echo_server",
        default_addr: "127.0.0.1:8080",
        threads: true,
        flags: &[serve::TLS_CERT, serve::TLS_KEY],
    };
    serve::main(echo, |cli| {
        let tls = cli.tls(&[])?;
        Ok(move || Server { tls: tls.clone() })
    })
}

mod serve;
