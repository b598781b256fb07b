//! The echo server: every byte a client sends comes back.
//!
//! ```text
//! cargo run --release --example echo_server -- [ADDR] [--backend select|poll|epoll] [--threads N]
//! ```
//!
//! ADDR defaults to 127.0.0.1:8080 (port 0 picks a free port; `[::1]:PORT`
//! and `unix:PATH` work too); the first line on stdout is
//! `listening on HOST:PORT`. Ctrl-C or SIGTERM shuts it down cleanly. The
//! command line and the loops live in `examples/serve/`, which every example
//! server shares.

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

struct Server;

impl AcceptHandler for Server {
    fn handle_accepted(
        &mut self,
        conn: Channel<Connected>,
        _peer: Address,
        cx: &mut Ctx<'_>,
    ) -> io::Result<()> {
        cx.insert(Buffered::new(conn), Echo)?; // a new channel joins the same loop
        Ok(())
    }
}

fn main() -> std::process::ExitCode {
    let echo =
        serve::Server { name: "echo_server", default_addr: "127.0.0.1:8080", threads: true, flags: &[] };
    serve::main(echo, |_| Ok(|| Server))
}

mod serve;
