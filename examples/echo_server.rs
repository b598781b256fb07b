//! The echo server: every byte a client sends comes back.
//!
//! ```text
//! cargo run --release --example echo_server -- [ADDR] [--backend select|poll|epoll] [--threads N]
//!     [--output-budget BYTES] [--tls-cert PEM --tls-key PEM] [--handshake-timeout SECS]
//! ```
//!
//! ADDR defaults to 127.0.0.1:8080 (port 0 picks a free port; `[::1]:PORT`
//! and `unix:PATH` work too); the first line on stdout is
//! `listening on HOST:PORT`. Ctrl-C or SIGTERM shuts it down cleanly.
//!
//! A client that sends and never reads makes the server queue its echoes:
//! each connection's queue pauses its reading at 1 MiB, and
//! `--output-budget BYTES` (default 64 MiB) bounds the echoes queued by all
//! connections together. A connection whose echo would pass the budget is
//! closed, so many silent readers cannot take the server's memory. A
//! connection is charged to the budget only once it first queues: one whose
//! client reads its echoes costs nothing more than without a budget. The
//! command line and the loops live in `examples/serve/`, which every example
//! server shares. `--tls-cert PEM --tls-key PEM` echo over TLS (1.3 and
//! 1.2; a build with rolecore's `tls` feature): the same `Echo`, handed the
//! plaintext once the handshake completed. A handshake must complete within
//! `--handshake-timeout SECS` (default 10, 0 for none) of the accept: a
//! client that stops halfway through its ClientHello would otherwise hold
//! its descriptor and rustls's buffers (a record of up to 16 KiB) for good,
//! since an echo connection has no idle timeout.

use std::io;
use std::sync::OnceLock;
use std::time::Duration;

use rolecore::{
    AcceptHandler, Address, BudgetFull, Buffered, Channel, Connected, Ctx, OutputBudget, StreamHandler,
};

/// What all connections may queue together, before a client that does not
/// read its echoes is hung up on.
const DEFAULT_OUTPUT_BUDGET: u64 = 64 << 20;

/// How long a TLS handshake may take, from the accept, by default.
const DEFAULT_HANDSHAKE_TIMEOUT: f64 = 10.0;

/// The budget every connection's queued echoes are charged to, once it has
/// queued any: set once, before the loops start. Here, not in `Echo`, so
/// that a connection's handler stays zero bytes.
static BUDGET: OnceLock<OutputBudget> = OnceLock::new();

struct Echo;

impl StreamHandler<Buffered<Connected>> for Echo {
    // Called once a TLS handshake completed: the handshake's deadline is
    // over, and an established connection has none.
    fn handle_connect(&mut self, _ch: &mut Buffered<Connected>, cx: &mut Ctx<'_>) -> io::Result<()> {
        cx.set_deadline(cx.token(), None);
        Ok(())
    }

    fn handle_read(&mut self, ch: &mut Buffered<Connected>, cx: &mut Ctx<'_>) -> io::Result<()> {
        let buf = cx.buffer(); // the loop's read buffer, reused
        let n = ch.recv(buf)?; // 0: the peer closed, the loop calls handle_close
        ch.send(&buf[..n])?; // queued if the socket cannot take it all; past 1 MiB, reading pauses
        if ch.queued() > 0 && ch.budget().is_none() {
            charge(ch)?;
        }
        Ok(())
    }
}

/// Charges a connection that queued for the first time to the budget, so
/// that its later sends are refused whole (and it is closed) when all
/// connections together would pass it. Closed at once when what it queued
/// already passes it. Not done at accept: a charged connection holds its
/// queue's bookkeeping for good, and one that never queues needs none.
#[cold]
fn charge(ch: &mut Buffered<Connected>) -> io::Result<()> {
    let Some(budget) = BUDGET.get() else { return Ok(()) };
    ch.set_budget(budget);
    let (used, limit) = (budget.used(), budget.limit());
    if used > limit {
        let full = BudgetFull { used: used - ch.queued(), requested: ch.queued(), limit };
        return Err(io::Error::new(io::ErrorKind::StorageFull, full));
    }
    Ok(())
}

struct Server {
    tls: Option<serve::TlsConfig>,
    /// The deadline of a TLS handshake, counted from the accept (read only
    /// in a build with TLS).
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    handshake_timeout: Option<Duration>,
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
                let tls = rolecore::tls::Handshaking::server(Buffered::new(conn), config.clone())?;
                let token = cx.insert(tls, Echo)?;
                // Past it, the handshake fails with `TimedOut` and closes.
                if let Some(timeout) = self.handshake_timeout {
                    let at = cx.now().checked_add(timeout);
                    cx.set_deadline(token, at);
                }
                token
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
        flags: &[
            serve::Flag { name: "--output-budget", value: "BYTES" },
            serve::TLS_CERT,
            serve::TLS_KEY,
            serve::Flag { name: "--handshake-timeout", value: "SECS" },
        ],
    };
    serve::main(echo, |cli| {
        let budget = cli.count("--output-budget", DEFAULT_OUTPUT_BUDGET, 64 << 10, 1 << 40)?;
        let _ = BUDGET.set(OutputBudget::new(budget as usize));
        let tls = cli.tls(&[])?;
        let handshake_timeout = cli.seconds("--handshake-timeout", DEFAULT_HANDSHAKE_TIMEOUT)?;
        Ok(move || Server { tls: tls.clone(), handshake_timeout })
    })
}

mod serve;
