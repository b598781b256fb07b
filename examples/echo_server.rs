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
//! connections of a loop together. When an echo would pass the budget, the
//! connections with more queued than its own (the slowest readers) are
//! dropped until it fits, and the connection itself is closed only when it
//! is the slowest: many silent readers cannot take the server's memory,
//! nor have a client that reads closed in their place. A connection is
//! charged to the budget only once it first queues: one whose client reads
//! its echoes costs nothing more than without a budget. The
//! command line and the loops live in `examples/serve/`, which every example
//! server shares. `--tls-cert PEM --tls-key PEM` echo over TLS (1.3 and
//! 1.2; a build with rolecore's `tls` feature): the same `Echo`, handed the
//! plaintext once the handshake completed. A handshake must complete within
//! `--handshake-timeout SECS` (default 10, 0 for none) of the accept: a
//! client that stops halfway through its ClientHello would otherwise hold
//! its descriptor and rustls's buffers (a record of up to 16 KiB) for good,
//! since an echo connection has no idle timeout.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::io;
use std::sync::OnceLock;
use std::time::Duration;

use rolecore::{
    AcceptHandler, Address, BudgetFull, Buffered, Channel, Connected, Ctx, OutputBudget, StreamHandler, Token,
};

/// What all connections of a loop may queue together, before the slowest
/// reader of its echoes is hung up on.
const DEFAULT_OUTPUT_BUDGET: u64 = 64 << 20;

/// How long a TLS handshake may take, from the accept, by default.
const DEFAULT_HANDSHAKE_TIMEOUT: f64 = 10.0;

/// `--output-budget`: set once, before the loops start.
static BUDGET_LIMIT: OnceLock<usize> = OnceLock::new();

thread_local! {
    /// The budget every connection of this loop is charged to, once it has
    /// queued any. Here, not in `Echo`, so that a connection's handler
    /// stays zero bytes.
    static BUDGET: Option<OutputBudget> = BUDGET_LIMIT.get().map(|&limit| OutputBudget::new(limit));
    /// The connections of this loop charged to it: those that may be dropped
    /// when it runs short.
    static CHARGED: RefCell<BTreeSet<Token>> = const { RefCell::new(BTreeSet::new()) };
}

struct Echo;

impl StreamHandler<Buffered<Connected>> for Echo {
    // Called once a TLS handshake completed: the handshake's deadline is
    // over, and an established connection has none.
    fn handle_connect(&mut self, _ch: &mut Buffered<Connected>, cx: &mut Ctx<'_>) -> io::Result<()> {
        cx.set_deadline(cx.token(), None);
        Ok(())
    }

    // Inline: rolecore's entry calls it from one place, and folded into
    // that wake-up it saves a call, a return and the saving of six
    // registers (17 instructions per echoed message, callgrind).
    #[inline]
    fn handle_read(&mut self, ch: &mut Buffered<Connected>, cx: &mut Ctx<'_>) -> io::Result<()> {
        let buf = cx.buffer(); // the loop's read buffer, reused
        let n = ch.recv(buf)?; // 0: the peer closed, the loop calls handle_close
        // Queued if the socket cannot take it all; past 1 MiB, reading pauses.
        if let Err(e) = ch.send(&buf[..n]) {
            return room::echo_refused(ch, e, cx);
        }
        if ch.queued() > 0 && ch.budget().is_none() {
            charge(ch, cx)?;
        }
        Ok(())
    }

    fn handle_close(&mut self, _ch: &mut Buffered<Connected>, cx: &mut Ctx<'_>) {
        CHARGED.with_borrow_mut(|charged| charged.remove(&cx.token()));
    }
}

/// Charges a connection that queued for the first time to the budget, so
/// that its later sends are refused whole when all the loop's connections
/// together would pass it. When what it queued already passes it, slower
/// readers are dropped to make room, or it is closed if it is the slowest.
/// Not done at accept: a charged connection holds its queue's bookkeeping
/// for good, and one that never queues needs none.
#[cold]
fn charge(ch: &mut Buffered<Connected>, cx: &mut Ctx<'_>) -> io::Result<()> {
    let Some(budget) = BUDGET.with(Clone::clone) else { return Ok(()) };
    ch.set_budget(&budget);
    CHARGED.with_borrow_mut(|charged| charged.insert(cx.token()));
    make_room(ch, 0, cx);
    let (used, limit) = (budget.used(), budget.limit());
    if used > limit {
        let full = BudgetFull { used: used - ch.queued(), requested: ch.queued(), limit };
        return Err(io::Error::new(io::ErrorKind::StorageFull, full));
    }
    Ok(())
}

/// Out of line, and in a module of its own: a second call of
/// `Buffered::send` beside the one in `handle_read` made the compiler stop
/// inlining that one (26 more instructions per echoed message, callgrind).
/// A module of its own lands in another of the release build's codegen
/// units, each with its own copy of `send` to inline; with one codegen
/// unit that would no longer hold (measure again with callgrind).
mod room {
    use super::*;

    /// The echo in the loop's buffer was refused by the budget (`error`
    /// says how much it was): slower readers are dropped to make room for
    /// it, and it is sent again. Any other error, or no slower reader,
    /// is the caller's error, which closes the connection.
    #[cold]
    #[inline(never)]
    pub fn echo_refused(ch: &mut Buffered<Connected>, error: io::Error, cx: &mut Ctx<'_>) -> io::Result<()> {
        let Some(&BudgetFull { requested: n, .. }) = error.get_ref().and_then(|e| e.downcast_ref()) else {
            return Err(error);
        };
        make_room(ch, n, cx);
        // Nothing used the loop's buffer since the read: it holds the echo.
        ch.send(&cx.buffer()[..n])
    }
}

/// The budget has no room for `n` more bytes of this connection's echoes:
/// drops the loop's slowest readers, those with more queued than this
/// connection, until it has. A connection whose client reads its echoes
/// was closed in their place, however fast it read, and one that sends and
/// never reads kept the budget full for good (an echo connection has no
/// timeout). When this connection is the slowest, nothing is dropped, and
/// its send is refused (which closes it). Checked before the send, not
/// retried after a refusal: a second call of `send` in this file made the
/// compiler stop inlining the first, 26 more instructions per echoed
/// message (callgrind).
#[cold]
#[inline(never)]
fn make_room(ch: &Buffered<Connected>, n: usize, cx: &mut Ctx<'_>) {
    let me = cx.token();
    while ch.budget().is_some_and(|budget| budget.available() < n || budget.used() > budget.limit()) {
        let others: Vec<Token> =
            CHARGED.with_borrow(|charged| charged.iter().copied().filter(|&t| t != me).collect());
        let mut slowest: Option<(usize, Token)> = None;
        for token in others {
            match cx.stream_mut::<Buffered<Connected>, Echo>(token) {
                Some(mut other) => {
                    let queued = other.transport().queued();
                    if slowest.is_none_or(|(most, _)| queued > most) {
                        slowest = Some((queued, token));
                    }
                }
                None => {
                    CHARGED.with_borrow_mut(|charged| charged.remove(&token));
                }
            }
        }
        match slowest {
            Some((queued, token)) if queued > ch.queued() => {
                eprintln!(
                    "echo_server: output budget exhausted, dropping the slowest reader ({queued} bytes queued)"
                );
                CHARGED.with_borrow_mut(|charged| charged.remove(&token));
                cx.remove(token);
            }
            _ => return,
        }
    }
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
        let _ = BUDGET_LIMIT.set(budget as usize);
        let tls = cli.tls(&[])?;
        let handshake_timeout = cli.seconds("--handshake-timeout", DEFAULT_HANDSHAKE_TIMEOUT)?;
        Ok(move || Server { tls: tls.clone(), handshake_timeout })
    })
}

mod serve;
