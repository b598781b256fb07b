//! The seed's echo server: every byte a client sends comes back.
//!
//! ```text
//! cargo run --release --example echo_server -- [ADDR] [--backend select|poll|epoll] [--threads N]
//! ```
//!
//! ADDR defaults to 127.0.0.1:8080 (port 0 picks a free port; `[::1]:PORT`
//! and `unix:PATH` work too); the first line on stdout is
//! `listening on HOST:PORT`. Ctrl-C or SIGTERM shuts it down cleanly.

mod serve;

use std::io;

use rolecore::{AcceptHandler, Address, Backend, Buffered, Channel, Connected, Ctx, StreamHandler};

struct EchoHandler;

impl StreamHandler<Buffered<Connected>> for EchoHandler {
    fn handle_read(&mut self, ch: &mut Buffered<Connected>, cx: &mut Ctx<'_>) -> io::Result<()> {
        let buf = cx.buffer(); // the loop's read buffer, reused for every read
        let n = ch.recv(buf)?; // 0: the peer closed, and the loop calls handle_close
        // Queued if the socket cannot take it all; past 1 MiB queued, the loop
        // stops reading this client until it catches up (back-pressure).
        ch.send(&buf[..n])
    }
}

struct EchoServer;

impl AcceptHandler for EchoServer {
    fn handle_accepted(
        &mut self,
        conn: Channel<Connected>,
        _peer: Address,
        cx: &mut Ctx<'_>,
    ) -> io::Result<()> {
        cx.insert(Buffered::new(conn), EchoHandler)?;
        Ok(())
    }
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("echo_server: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> io::Result<()> {
    let (addr, backend, threads) = parse_args()?;
    serve::serve(&addr, backend, threads, || EchoServer)
}

fn parse_args() -> io::Result<(Address, Backend, usize)> {
    let usage = |msg: String| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{msg}\nusage: echo_server [ADDR] [--backend select|poll|epoll] [--threads N]"),
        )
    };
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let threads = serve::take_threads(&mut args).map_err(usage)?;
    let mut addr: Address = "127.0.0.1:8080".parse().expect("a valid default");
    let mut backend = Backend::default();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        if arg == "--backend" {
            let name = args.next().ok_or_else(|| usage("--backend needs a value".into()))?;
            backend = name.parse().map_err(|e| usage(format!("{e}")))?;
        } else {
            addr = arg.parse().map_err(|e| usage(format!("{e}")))?;
        }
    }
    Ok((addr, backend, threads))
}
