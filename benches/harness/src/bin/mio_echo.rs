//! A mio 1.x echo server, written the way mio wants: edge-triggered, each
//! connection registered once for READABLE | WRITABLE (no reregistration ever),
//! a read loop that stops at would-block or at a short read (with edge
//! triggering, a read that did not fill the buffer proves the socket drained:
//! any later data raises a new edge; tokio relies on the same fact), one read
//! buffer for the whole loop, and a per-connection queue only for output the
//! socket did not take (reading that connection stops until it is out).
//!
//! ```text
//! mio_echo [HOST:PORT]      first stdout line: listening on HOST:PORT
//! ```

use std::io::{self, Read, Write};
use std::net::SocketAddr;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

const LISTENER: Token = Token(usize::MAX);
const BUF_SIZE: usize = 8192;

struct Conn {
    stream: TcpStream,
    /// Output the socket did not take yet; empty (and unallocated) in the
    /// steady state of an echo.
    out: Vec<u8>,
}

/// Connections by token, with a free list: O(1) insert and remove, no hashing.
#[derive(Default)]
struct Slab {
    entries: Vec<Option<Conn>>,
    free: Vec<usize>,
}

impl Slab {
    /// The index the next `insert` will use.
    fn vacant_key(&self) -> usize {
        self.free.last().copied().unwrap_or(self.entries.len())
    }

    fn insert(&mut self, conn: Conn) -> usize {
        match self.free.pop() {
            Some(i) => {
                self.entries[i] = Some(conn);
                i
            }
            None => {
                self.entries.push(Some(conn));
                self.entries.len() - 1
            }
        }
    }

    fn remove(&mut self, i: usize) -> Option<Conn> {
        let conn = self.entries.get_mut(i)?.take();
        if conn.is_some() {
            self.free.push(i);
        }
        conn
    }
}

fn main() -> io::Result<()> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8080".into())
        .parse()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{e}")))?;
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    let mut listener = TcpListener::bind(addr)?;
    println!("listening on {}", listener.local_addr()?);
    poll.registry().register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut conns = Slab::default();
    let mut buf = vec![0u8; BUF_SIZE];
    loop {
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        for event in events.iter() {
            if event.token() == LISTENER {
                // Edge-triggered: accept until would-block.
                loop {
                    match listener.accept() {
                        Ok((mut stream, _)) => {
                            let i = conns.vacant_key();
                            let registered = poll.registry().register(
                                &mut stream,
                                Token(i),
                                Interest::READABLE | Interest::WRITABLE,
                            );
                            if registered.is_ok() {
                                let at = conns.insert(Conn { stream, out: Vec::new() });
                                debug_assert_eq!(at, i);
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        // EMFILE and friends: give up until the next edge.
                        Err(_) => break,
                    }
                }
                continue;
            }
            let i = event.token().0;
            let Some(Some(conn)) = conns.entries.get_mut(i) else { continue };
            if !drive(conn, &mut buf)
                && let Some(mut conn) = conns.remove(i)
            {
                let _ = poll.registry().deregister(&mut conn.stream);
            }
        }
    }
}

/// Flushes queued output, then echoes what is readable. Returns whether the
/// connection lives on.
fn drive(conn: &mut Conn, buf: &mut [u8]) -> bool {
    loop {
        if !conn.out.is_empty() {
            match conn.stream.write(&conn.out) {
                Ok(n) => {
                    conn.out.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return false,
            }
            if !conn.out.is_empty() {
                return true; // the next writable edge resumes here
            }
            conn.out = Vec::new();
        }
        match conn.stream.read(buf) {
            Ok(0) => return false,
            Ok(n) => {
                let mut sent = 0;
                while sent < n {
                    match conn.stream.write(&buf[sent..n]) {
                        Ok(m) => sent += m,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(_) => return false,
                    }
                }
                if sent < n {
                    conn.out.extend_from_slice(&buf[sent..n]);
                    continue; // try once more, then wait for writable
                }
                if n < buf.len() {
                    return true; // a short read: drained, the next edge brings more
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
}
