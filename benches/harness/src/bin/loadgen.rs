//! The load generator: N connections to an echo server, each with `depth`
//! messages of `size` bytes in flight (1: ping-pong), every echoed byte checked
//! against what was sent, the round-trip time of every message in a histogram.
//!
//! ```text
//! loadgen --addr HOST:PORT [--conns 50] [--size 64] [--depth 1] [--idle 0]
//! ```
//!
//! It connects, prints `ready active=N idle=I`, then obeys commands on stdin,
//! one per line, answering each with one line on stdout:
//!
//! - `run SECS`: load for SECS seconds, then stop sending and wait for every
//!   message in flight (the server is idle when the answer comes):
//!   `result msgs=.. secs=.. mps=.. p50_us=.. p99_us=.. max_us=..`
//! - `count N`: the same for exactly N messages (for instruction counting).
//! - `idle N [SECS]`: opens N more idle connections (giving up after SECS
//!   seconds if given), each of which echoes one message (checked) before it
//!   goes quiet; `idle -N` closes N of them.
//!   Answer: `idle total=T` (fewer than asked if the descriptor limit or the
//!   server stopped it, with `error=...`).
//! - `quit`.
//!
//! Single-threaded, edge-triggered (mio), no allocation per message.

use std::io::{self, BufRead, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::FromRawFd;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

const MAX_SIZE: usize = 1 << 16;
/// Histogram resolution: 100 ns buckets up to 100 ms, then one overflow bucket.
const BUCKET_NS: u64 = 100;
const BUCKETS: usize = 1_000_000;
/// Connections per source address. Linux gives connect() the even half of
/// the ephemeral range first (~14k ports here) and its port search turns
/// quadratic as that half fills up, so each source address takes 8,000
/// connections; past that, connections bind 127.0.0.2, .3, ... (with
/// IP_BIND_ADDRESS_NO_PORT, so the port is still chosen at connect time).
const PER_SOURCE: usize = 8_000;

fn pattern(conn: u32, seq: u64, j: usize) -> u8 {
    (u64::from(conn).wrapping_mul(0x9E37) ^ seq.wrapping_mul(131)).wrapping_add(j as u64) as u8
}

struct Conn {
    stream: TcpStream,
    id: u32,
    tx_seq: u64,
    tx_off: usize,
    tx_buf: Vec<u8>,
    rx_seq: u64,
    rx_off: usize,
    inflight: usize,
    /// Send time of each message in flight, by `seq % depth`.
    sent_at: Vec<Instant>,
}

struct Load {
    poll: Poll,
    events: Events,
    conns: Vec<Conn>,
    size: usize,
    depth: usize,
    rx_buf: Vec<u8>,
    hist: Vec<u32>,
    completed: u64,
    issued: u64,
    /// Messages that may still be started (`u64::MAX` while running for a time).
    budget: u64,
    sending: bool,
    last_done: Instant,
    /// The events of one poll, copied out so the connections can be borrowed.
    ready: Vec<(usize, bool)>,
}

impl Load {
    fn fill(conn: &mut Conn, size: usize) {
        for j in 0..size {
            conn.tx_buf[j] = pattern(conn.id, conn.tx_seq, j);
        }
    }

    /// Writes as much as the socket takes and the budget allows.
    fn pump_writes(&mut self, i: usize) -> io::Result<()> {
        let (size, depth) = (self.size, self.depth);
        let conn = &mut self.conns[i];
        loop {
            if conn.tx_off == 0 {
                if !self.sending || conn.inflight >= depth || self.issued >= self.budget {
                    return Ok(());
                }
                Self::fill(conn, size);
                conn.sent_at[(conn.tx_seq % depth as u64) as usize] = Instant::now();
                conn.inflight += 1;
                self.issued += 1;
            }
            match conn.stream.write(&conn.tx_buf[conn.tx_off..size]) {
                Ok(n) => {
                    conn.tx_off += n;
                    if conn.tx_off == size {
                        conn.tx_off = 0;
                        conn.tx_seq += 1;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn pump_reads(&mut self, i: usize) -> io::Result<()> {
        let (size, depth) = (self.size, self.depth);
        let conn = &mut self.conns[i];
        loop {
            match conn.stream.read(&mut self.rx_buf) {
                Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "server closed")),
                Ok(n) => {
                    let now = Instant::now();
                    for &b in &self.rx_buf[..n] {
                        if conn.inflight == 0 || (conn.rx_seq == conn.tx_seq && conn.tx_off <= conn.rx_off) {
                            return Err(io::Error::new(
                                io::ErrorKind::InvalidData,
                                format!(
                                    "conn {} received a byte never sent (message {}, offset {})",
                                    conn.id, conn.rx_seq, conn.rx_off
                                ),
                            ));
                        }
                        let want = pattern(conn.id, conn.rx_seq, conn.rx_off);
                        if b != want {
                            return Err(io::Error::new(
                                io::ErrorKind::InvalidData,
                                format!(
                                    "conn {} message {} byte {}: got {b:#04x}, sent {want:#04x}",
                                    conn.id, conn.rx_seq, conn.rx_off
                                ),
                            ));
                        }
                        conn.rx_off += 1;
                        if conn.rx_off == size {
                            let at = conn.sent_at[(conn.rx_seq % depth as u64) as usize];
                            let ns = now.saturating_duration_since(at).as_nanos() as u64;
                            self.hist[((ns / BUCKET_NS) as usize).min(BUCKETS)] += 1;
                            conn.rx_off = 0;
                            conn.rx_seq += 1;
                            conn.inflight -= 1;
                            self.completed += 1;
                            self.last_done = now;
                        }
                    }
                    if n < self.rx_buf.len() {
                        return Ok(()); // short read: drained (edge-triggered)
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn busy(&self) -> bool {
        self.conns.iter().any(|c| c.inflight > 0 || c.tx_off > 0)
    }

    /// Runs until `deadline` (or the budget is done), then drains.
    fn run(&mut self, deadline: Option<Instant>, budget: u64) -> io::Result<String> {
        self.hist.iter_mut().for_each(|h| *h = 0);
        self.completed = 0;
        self.issued = 0;
        self.budget = budget;
        self.sending = true;
        let start = Instant::now();
        self.last_done = start;
        for i in 0..self.conns.len() {
            self.pump_writes(i)?;
        }
        let drain_limit = Duration::from_secs(10);
        let mut drain_deadline = None;
        loop {
            let now = Instant::now();
            if self.sending {
                let time_up = deadline.is_some_and(|d| now >= d);
                if time_up || self.completed >= budget {
                    self.sending = false;
                    drain_deadline = Some(now + drain_limit);
                }
            }
            if !self.sending && !self.busy() {
                break;
            }
            if drain_deadline.is_some_and(|d| now >= d) {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "echoes did not come back within 10 s"));
            }
            let timeout = if self.sending {
                deadline.map(|d| d.saturating_duration_since(now)).unwrap_or(Duration::from_millis(100))
            } else {
                Duration::from_millis(100)
            };
            match self.poll.poll(&mut self.events, Some(timeout)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            let mut ready = std::mem::take(&mut self.ready);
            ready.clear();
            ready.extend(
                self.events
                    .iter()
                    .map(|ev| (ev.token().0, ev.is_readable() || ev.is_read_closed() || ev.is_error())),
            );
            for &(i, readable) in &ready {
                if readable {
                    self.pump_reads(i)?;
                }
                self.pump_writes(i)?;
            }
            self.ready = ready;
        }
        let secs = self.last_done.saturating_duration_since(start).as_secs_f64().max(1e-9);
        let (p50, p99, max) = (self.quantile(0.50), self.quantile(0.99), self.quantile(1.0));
        Ok(format!(
            "result msgs={} secs={secs:.6} mps={:.1} p50_us={p50:.2} p99_us={p99:.2} max_us={max:.2}",
            self.completed,
            self.completed as f64 / secs
        ))
    }

    fn quantile(&self, q: f64) -> f64 {
        let total: u64 = self.hist.iter().map(|&h| u64::from(h)).sum();
        if total == 0 {
            return 0.0;
        }
        let rank = ((total as f64 * q).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (b, &h) in self.hist.iter().enumerate() {
            seen += u64::from(h);
            if seen >= rank {
                return (b as f64 + 0.5) * BUCKET_NS as f64 / 1000.0;
            }
        }
        f64::INFINITY
    }
}

/// A blocking connect, from 127.0.0.1 for the first [`PER_SOURCE`]
/// connections and from 127.0.0.2, .3, ... after (IP_BIND_ADDRESS_NO_PORT, so
/// the port is picked at connect time for the whole 4-tuple).
fn connect(addr: SocketAddr, index: usize) -> io::Result<std::net::TcpStream> {
    let source = index / PER_SOURCE;
    if source == 0 {
        return std::net::TcpStream::connect(addr);
    }
    let SocketAddr::V4(dst) = addr else {
        return Err(io::Error::new(io::ErrorKind::Unsupported, "many-source connects need IPv4"));
    };
    let src = SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1 + source as u8), 0);
    // SAFETY: plain socket calls on a descriptor this function owns; it is
    // handed to TcpStream (which closes it) or closed on every error path.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let stream = std::net::TcpStream::from_raw_fd(fd);
        let one: libc::c_int = 1;
        libc::setsockopt(
            fd,
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        );
        let to_sockaddr = |a: SocketAddrV4| libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: a.port().to_be(),
            sin_addr: libc::in_addr { s_addr: u32::from(*a.ip()).to_be() },
            sin_zero: [0; 8],
        };
        let len = size_of::<libc::sockaddr_in>() as libc::socklen_t;
        let s = to_sockaddr(src);
        if libc::bind(fd, (&s as *const libc::sockaddr_in).cast(), len) < 0 {
            return Err(io::Error::last_os_error());
        }
        let d = to_sockaddr(dst);
        if libc::connect(fd, (&d as *const libc::sockaddr_in).cast(), len) < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(stream)
    }
}

/// Opens up to `n` idle connections, each checked with one echoed message.
fn open_idle(
    addr: SocketAddr,
    idle: &mut Vec<std::net::TcpStream>,
    n: usize,
    first_index: usize,
    deadline: Option<Instant>,
) -> Option<String> {
    const BATCH: usize = 256;
    let msg: Vec<u8> = (0..64).map(|j| pattern(u32::MAX, 0, j)).collect();
    let mut opened = 0;
    while opened < n {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Some("time limit reached".into());
        }
        let batch_start = idle.len();
        for _ in 0..BATCH.min(n - opened) {
            let index = first_index + idle.len();
            let stream = match connect(addr, index) {
                Ok(s) => s,
                Err(e) => return Some(format!("connect #{}: {e}", idle.len())),
            };
            if let Err(e) = (&stream).write_all(&msg) {
                return Some(format!("send on idle #{}: {e}", idle.len()));
            }
            idle.push(stream);
            opened += 1;
        }
        let mut back = [0u8; 64];
        for (k, stream) in idle[batch_start..].iter().enumerate() {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
            if let Err(e) = (&*stream).read_exact(&mut back) {
                let at = batch_start + k;
                idle.truncate(at);
                return Some(format!("echo on idle #{at}: {e} (the server did not serve it)"));
            }
            if back[..] != msg[..] {
                return Some(format!("idle #{}: the echo differs from what was sent", batch_start + k));
            }
        }
    }
    None
}

fn raise_nofile() {
    // SAFETY: getrlimit/setrlimit on a local struct.
    unsafe {
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

fn main() {
    if let Err(e) = real_main() {
        println!("error {e}");
        eprintln!("loadgen: {e}");
        std::process::exit(1);
    }
}

fn real_main() -> io::Result<()> {
    raise_nofile();
    let mut addr: Option<SocketAddr> = None;
    let (mut conns, mut size, mut depth, mut idle_n) = (50usize, 64usize, 1usize, 0usize);
    let mut args = std::env::args().skip(1);
    let bad = |m: String| io::Error::new(io::ErrorKind::InvalidInput, m);
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or_else(|| bad(format!("{a} needs a value")));
        match a.as_str() {
            "--addr" => addr = Some(val()?.parse().map_err(|e| bad(format!("--addr: {e}")))?),
            "--conns" => conns = val()?.parse().map_err(|e| bad(format!("--conns: {e}")))?,
            "--size" => size = val()?.parse().map_err(|e| bad(format!("--size: {e}")))?,
            "--depth" => depth = val()?.parse().map_err(|e| bad(format!("--depth: {e}")))?,
            "--idle" => idle_n = val()?.parse().map_err(|e| bad(format!("--idle: {e}")))?,
            _ => return Err(bad(format!("unknown argument {a}"))),
        }
    }
    let addr = addr.ok_or_else(|| bad("--addr HOST:PORT is required".into()))?;
    if size == 0 || size > MAX_SIZE || depth == 0 {
        return Err(bad(format!("--size must be 1..={MAX_SIZE}, --depth at least 1")));
    }
    let mut idle = Vec::new();
    if let Some(err) = open_idle(addr, &mut idle, idle_n, 0, None) {
        return Err(io::Error::other(err));
    }
    let poll = Poll::new()?;
    let mut load = Load {
        events: Events::with_capacity(1024),
        conns: Vec::with_capacity(conns),
        size,
        depth,
        rx_buf: vec![0u8; 64 * 1024],
        hist: vec![0u32; BUCKETS + 1],
        completed: 0,
        issued: 0,
        budget: 0,
        sending: false,
        last_done: Instant::now(),
        ready: Vec::with_capacity(1024),
        poll,
    };
    for id in 0..conns {
        let s = connect(addr, idle.len() + id)?;
        s.set_nodelay(true)?;
        s.set_nonblocking(true)?;
        let mut stream = TcpStream::from_std(s);
        load.poll.registry().register(&mut stream, Token(id), Interest::READABLE | Interest::WRITABLE)?;
        load.conns.push(Conn {
            stream,
            id: id as u32,
            tx_seq: 0,
            tx_off: 0,
            tx_buf: vec![0u8; size],
            rx_seq: 0,
            rx_off: 0,
            inflight: 0,
            sent_at: vec![Instant::now(); depth],
        });
    }
    let mut out = io::stdout().lock();
    writeln!(out, "ready active={conns} idle={}", idle.len())?;
    out.flush()?;
    let stdin = io::stdin();
    for line in stdin.lock().lines() {
        let line = line?;
        let mut words = line.split_whitespace();
        let reply = match (words.next(), words.next()) {
            (Some("run"), Some(secs)) => {
                let secs: f64 = secs.parse().map_err(|e| bad(format!("run: {e}")))?;
                load.run(Some(Instant::now() + Duration::from_secs_f64(secs)), u64::MAX)?
            }
            (Some("count"), Some(n)) => {
                let n: u64 = n.parse().map_err(|e| bad(format!("count: {e}")))?;
                load.run(None, n)?
            }
            (Some("idle"), Some(n)) => {
                let n: i64 = n.parse().map_err(|e| bad(format!("idle: {e}")))?;
                let deadline = match words.next() {
                    Some(secs) => {
                        let secs: f64 = secs.parse().map_err(|e| bad(format!("idle: {e}")))?;
                        Some(Instant::now() + Duration::from_secs_f64(secs))
                    }
                    None => None,
                };
                let error = if n >= 0 {
                    open_idle(addr, &mut idle, n as usize, conns, deadline)
                } else {
                    idle.truncate(idle.len().saturating_sub(n.unsigned_abs() as usize));
                    None
                };
                match error {
                    None => format!("idle total={}", idle.len()),
                    Some(e) => format!("idle total={} error={e}", idle.len()),
                }
            }
            (Some("quit"), _) => break,
            _ => return Err(bad(format!("unknown command {line:?}"))),
        };
        writeln!(out, "{reply}")?;
        out.flush()?;
    }
    Ok(())
}
