//! The seed's HTTP client: one `GET`, the whole response on stdout.
//!
//! ```text
//! cargo run --example http_client -- HOST:PORT PATH [--timeout SECS] [--tls --cacert PEM]
//! ```
//!
//! HOST is an IP address (`127.0.0.1`, `[::1]`) or `localhost`: rolecore never
//! blocks on DNS, so it does not resolve host names. Exits 0 once the whole
//! response came, 1 if it did not (the connect or the TLS handshake failed,
//! the server sent nothing, or less than its `Content-Length` said, or a head
//! that is too long or a `Content-Length` that is not one number, or
//! `--timeout` passed), 2 on bad arguments.
//!
//! The response goes to stdout as it arrives, raw. The client reads the head
//! only to learn where the response ends: after `Content-Length` bytes of
//! body (it then closes the connection, even if the server would keep it
//! open), or else when the server closes. It decodes no transfer coding: it
//! asks in HTTP/1.0, to which a server must not send one. A response without
//! a `Content-Length` that the server resets is printed as far as it came and
//! exits 1 (`Channel::peer_reset` tells a reset from the server's clean
//! close).
//!
//! `--timeout SECS` bounds each wait: for the connect, the handshake, and
//! each next byte from the server (a server that answers one byte at a time
//! within it is still served). Without it the client waits as long as the
//! server keeps the connection open.
//!
//! `--tls --cacert PEM` (a build with rolecore's `tls` feature) speaks
//! HTTPS: the server must present a certificate for HOST that the PEM's
//! certificates vouch for. The request then goes out in `handle_connect`,
//! once the handshake completed; over plain TCP it is queued before the
//! connect.

use std::cell::Cell;
use std::io;
use std::os::fd::AsFd;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Duration;

use rolecore::{Address, Buffered, Channel, Connected, Ctx, LoopOptions, Map, StreamHandler, Transport};

struct HttpClient {
    error: Rc<Cell<Option<io::Error>>>, // for main to report
    /// The request, when it could not be queued before the connect (TLS).
    request: Option<Vec<u8>>,
    response: Response,
    /// `--timeout`, to say what passed.
    timeout: Option<Duration>,
    /// The connection ended with a reset, not the server's clean close.
    reset: bool,
}

impl StreamHandler<Buffered<Connected>> for HttpClient {
    // Over plain TCP the request was queued before the connect; Buffered's
    // default `writable` and `handle_write` send it once connected.

    fn handle_connect(&mut self, ch: &mut Buffered<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        match self.request.take() {
            Some(request) => ch.send(&request),
            None => Ok(()),
        }
    }

    fn handle_read(&mut self, ch: &mut Buffered<Connected>, cx: &mut Ctx<'_>) -> io::Result<()> {
        let mut buf = [0u8; 8192];
        let n = ch.recv(&mut buf)?; // 0: the server closed, the loop calls handle_close
        self.reset |= n == 0 && ch.channel().peer_reset();
        let (part, finished) = self.response.take(&buf[..n]);
        print(&buf[..part])?;
        if finished? {
            // The whole response came: a server that keeps the connection
            // open after it is not waited for.
            cx.close();
        }
        Ok(())
    }

    fn handle_close(&mut self, _ch: &mut Buffered<Connected>, _cx: &mut Ctx<'_>) {
        if let Err(e) = self.response.at_close(self.reset) {
            self.error.set(Some(e));
        }
    }

    fn handle_timeout(&mut self, _ch: &mut Buffered<Connected>, cx: &mut Ctx<'_>) -> io::Result<()> {
        let secs = self.timeout.unwrap_or_default().as_secs_f64();
        self.error.set(Some(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("timed out: nothing from the server for {secs} s (--timeout)"),
        )));
        cx.close();
        Ok(())
    }

    fn handle_connect_failed(&mut self, error: io::Error, _cx: &mut Ctx<'_>) {
        self.error.set(Some(error));
    }

    fn handle_error(&mut self, _ch: &mut Buffered<Connected>, error: io::Error, cx: &mut Ctx<'_>) {
        // A TLS stream cut without close_notify, a response that is not
        // HTTP, say: the response may be incomplete, and main says so.
        self.error.set(Some(error));
        cx.close();
    }
}

/// Writes all of `data` to stdout, waiting for room if need be. stdout
/// may be non-blocking: `O_NONBLOCK` belongs to the open file description,
/// which every process sharing the pipe or terminal shares. A full one then
/// fails a write with `WouldBlock`, which the loop would take for a
/// spurious wake-up, and the bytes would be lost. A failure is an error of
/// kind `Other`: returned as it is, a broken pipe (`EPIPE`) would read to
/// the loop as the server gone, and end the client as if the response were
/// done.
fn print(mut data: &[u8]) -> io::Result<()> {
    use rustix::event::{PollFd, PollFlags, poll};

    let stdout = io::stdout();
    let fd = stdout.as_fd();
    while !data.is_empty() {
        match rustix::io::write(fd, data) {
            Ok(n) => data = &data[n..],
            Err(rustix::io::Errno::INTR) => {}
            Err(rustix::io::Errno::AGAIN) => {
                poll(&mut [PollFd::new(&fd, PollFlags::OUT)], None).map_err(stdout_failed)?;
            }
            Err(e) => return Err(stdout_failed(e)),
        }
    }
    Ok(())
}

fn stdout_failed(e: rustix::io::Errno) -> io::Error {
    io::Error::other(format!("writing stdout: {}", io::Error::from(e)))
}

/// The longest response head read before its blank line: the server's
/// headers are not held without bound.
const MAX_HEAD: usize = 64 * 1024;

/// Where the response ends, from what its head says.
enum Response {
    /// The head so far (at most [`MAX_HEAD`] bytes and one read).
    Head(Vec<u8>),
    /// The head is complete: the body bytes still to come, if its
    /// `Content-Length` said (else the body ends when the server closes).
    Body(Option<u64>),
}

impl Response {
    /// Takes `data`, just read: how much of it belongs to the response (to
    /// print), and whether the response is now complete, or else wrong.
    fn take(&mut self, data: &[u8]) -> (usize, io::Result<bool>) {
        let head = match self {
            Response::Body(left) => return (Self::body(left, data.len()), Ok(*left == Some(0))),
            Response::Head(head) => head,
        };
        let seen = head.len();
        head.extend_from_slice(data);
        let Some(end) = head_end(head, seen) else {
            let result = match head.len() > MAX_HEAD {
                true => Err(invalid(format!("the response head is longer than {MAX_HEAD} bytes"))),
                false => Ok(false),
            };
            return (data.len(), result);
        };
        let length = match content_length(&head[..end]) {
            Ok(length) => length,
            Err(e) => return (data.len(), Err(e)),
        };
        let in_body = head.len() - end;
        let mut left = length;
        let taken = end - seen + Self::body(&mut left, in_body);
        *self = Response::Body(left);
        (taken, Ok(left == Some(0)))
    }

    /// Counts `n` bytes of body against what is left: how many belong to it.
    fn body(left: &mut Option<u64>, n: usize) -> usize {
        match left {
            None => n,
            Some(left) => {
                let taken = (*left).min(n as u64);
                *left -= taken;
                taken as usize
            }
        }
    }

    /// The connection ended (`reset`: with a reset): an error unless the
    /// response is complete. A body without a length ends with the
    /// connection, and a reset may have cut it anywhere.
    fn at_close(&self, reset: bool) -> io::Result<()> {
        match self {
            Response::Head(head) if head.is_empty() => {
                Err(invalid("the server closed the connection without a response".into()))
            }
            Response::Head(head) => Err(invalid(format!(
                "the server closed the connection inside the response head, after {} bytes",
                head.len()
            ))),
            Response::Body(Some(left @ 1..)) => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "the response is cut short: the connection ended {left} bytes before the end its Content-Length gave"
                ),
            )),
            Response::Body(None) if reset => Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "the server reset the connection: the response, which ends with it, may be cut short",
            )),
            Response::Body(_) => Ok(()),
        }
    }
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// Where the head ends (after its blank line), searching from about `seen`.
fn head_end(head: &[u8], seen: usize) -> Option<usize> {
    let from = seen.saturating_sub(3);
    let crlf = head[from..].windows(4).position(|w| w == b"\r\n\r\n").map(|i| from + i + 4);
    let lf = head[from..].windows(2).position(|w| w == b"\n\n").map(|i| from + i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The body's length a head gives: `None` without a `Content-Length` (or
/// with a `Transfer-Encoding`, which overrides it); an error if the
/// `Content-Length` is not one decimal number, as a client must treat it.
fn content_length(head: &[u8]) -> io::Result<Option<u64>> {
    let mut length = None;
    let mut coded = false;
    for line in head.split(|&b| b == b'\n').skip(1) {
        let Some(colon) = line.iter().position(|&b| b == b':') else { continue };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        coded |= name.eq_ignore_ascii_case(b"transfer-encoding");
        if !name.eq_ignore_ascii_case(b"content-length") {
            continue;
        }
        for value in value.split(|&b| b == b',') {
            let value = value.trim_ascii();
            let number = std::str::from_utf8(value)
                .ok()
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<u64>().ok());
            match (number, length) {
                (Some(n), None) => length = Some(n),
                (Some(n), Some(m)) if n == m => {}
                _ => {
                    return Err(invalid(format!(
                        "the response's Content-Length {:?} is not one decimal number: where it ends is unknown",
                        String::from_utf8_lossy(line[colon + 1..].trim_ascii())
                    )));
                }
            }
        }
    }
    Ok(if coded { None } else { length })
}

/// What the command line asks for.
struct Args {
    addr: Address,
    /// `localhost` or the IP address, as the server's certificate names it.
    host: String,
    path: String,
    /// `--cacert PEM`, with `--tls`.
    cacert: Option<String>,
    /// `--timeout SECS`.
    timeout: Option<Duration>,
}

const USAGE: &str = "usage: http_client HOST:PORT PATH [--timeout SECS] [--tls --cacert PEM], where HOST is an IP address \
                     or localhost (rolecore does not resolve host names) and PATH has no spaces, e.g. /index.html";

fn main() -> ExitCode {
    if std::env::args().skip(1).any(|arg| arg == "-h" || arg == "--help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let args = match parse_args() {
        Ok(args) => args,
        Err(what) => return usage(&what),
    };
    let request = format!("GET {} HTTP/1.0\r\n\r\n", args.path).into_bytes();
    let result = match &args.cacert {
        None => plain(&args.addr, &request, args.timeout),
        Some(cacert) => secure(&args.addr, request, cacert, &args.host, args.timeout),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(what)) => usage(&what),
        Err(Failure::Io(e)) => {
            eprintln!("http_client: {}: {e}", args.addr);
            ExitCode::FAILURE
        }
    }
}

fn usage(what: &str) -> ExitCode {
    eprintln!("http_client: {what}; {USAGE}");
    ExitCode::from(2)
}

enum Failure {
    Usage(String),
    Io(io::Error),
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Failure {
        Failure::Io(e)
    }
}

/// Sends the request and prints the response as it arrives.
fn plain(addr: &Address, request: &[u8], timeout: Option<Duration>) -> Result<(), Failure> {
    let mut conn = Buffered::new(Channel::for_address(addr)?.connect(addr).map_err(io::Error::from)?);
    conn.send(request)?; // queued until connected
    run(|map, client| map.insert(conn, client).map_err(io::Error::from), None, timeout)
}

/// The same over TLS, trusting the certificates of `cacert`: the request
/// goes out once the handshake completed.
#[cfg(feature = "tls")]
fn secure(
    addr: &Address,
    request: Vec<u8>,
    cacert: &str,
    host: &str,
    timeout: Option<Duration>,
) -> Result<(), Failure> {
    use std::sync::Arc;

    use rolecore::tls::rustls::pki_types::pem::PemObject;
    use rolecore::tls::rustls::pki_types::{CertificateDer, ServerName};
    use rolecore::tls::{Handshaking, rustls};

    // Read up to a bound: a path to an endless file (`/dev/zero`) would
    // otherwise take memory until the process is killed. A CA bundle takes
    // a few hundred kilobytes.
    const MAX_PEM: usize = 1 << 20;
    let mut pem = Vec::new();
    std::fs::File::open(cacert)
        .and_then(|file| io::Read::read_to_end(&mut io::Read::take(file, MAX_PEM as u64 + 1), &mut pem))
        .map_err(|e| Failure::Usage(format!("--cacert {cacert:?}: {e}")))?;
    if pem.len() > MAX_PEM {
        return Err(Failure::Usage(format!(
            "--cacert {cacert:?}: longer than {MAX_PEM} bytes, not a PEM file"
        )));
    }
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| Failure::Usage(format!("--cacert {cacert:?}: not PEM: {e}")))?;
        roots.add(cert).map_err(|e| Failure::Usage(format!("--cacert {cacert:?}: {e}")))?;
    }
    if roots.is_empty() {
        return Err(Failure::Usage(format!("--cacert {cacert:?}: no certificate in it")));
    }
    let config = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    let name = ServerName::try_from(host.to_string())
        .map_err(|e| Failure::Usage(format!("{host:?} cannot name a TLS server: {e}")))?;
    let conn = Buffered::new(Channel::for_address(addr)?.connect(addr).map_err(io::Error::from)?);
    let tls = Handshaking::client(conn, Arc::new(config), name)?;
    run(|map, client| map.insert(tls, client).map_err(io::Error::from), Some(request), timeout)
}

#[cfg(not(feature = "tls"))]
fn secure(_: &Address, _: Vec<u8>, _: &str, _: &str, _: Option<Duration>) -> Result<(), Failure> {
    Err(Failure::Usage(
        "--tls: this client was built without rolecore's `tls` feature; rebuild it with --features tls"
            .into(),
    ))
}

/// Inserts the stream with its handler (`request` to send once the stream
/// is established) and runs the loop until the response is complete or the
/// server closes.
fn run(
    insert: impl FnOnce(&mut Map, HttpClient) -> io::Result<rolecore::Token>,
    request: Option<Vec<u8>>,
    timeout: Option<Duration>,
) -> Result<(), Failure> {
    let error = Rc::new(Cell::new(None));
    let mut map = Map::new()?;
    let response = Response::Head(Vec::new());
    let token =
        insert(&mut map, HttpClient { error: error.clone(), request, response, timeout, reset: false })?;
    // Every event of the channel re-arms it: the connect, the handshake and
    // each wait for the server's next bytes are bounded alike.
    map.set_idle_timeout(token, timeout);
    map.run(LoopOptions::default())?;
    error.take().map_or(Ok(()), |e| Err(Failure::Io(e)))
}

fn parse_args() -> Result<Args, String> {
    let bad = || "bad arguments".to_string();
    let mut args = std::env::args().skip(1);
    let mut positional = Vec::new();
    let mut tls = false;
    let mut cacert = None;
    let mut timeout = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--timeout" if timeout.is_none() => {
                let secs = args.next().ok_or("--timeout needs a number of seconds")?;
                timeout = Some(
                    secs.parse::<f64>()
                        .ok()
                        .and_then(|s| Duration::try_from_secs_f64(s).ok())
                        .filter(|d| !d.is_zero())
                        .ok_or(format!("--timeout {secs:?}: not a positive number of seconds"))?,
                );
            }
            "--tls" if !tls => tls = true,
            "--cacert" if cacert.is_none() => cacert = Some(args.next().ok_or("--cacert needs a PEM file")?),
            other if other.starts_with("--") => return Err(format!("bad option {other:?}")),
            _ => positional.push(arg),
        }
    }
    match (tls, &cacert) {
        (true, None) => return Err("--tls needs --cacert PEM (the certificates to trust)".into()),
        (false, Some(_)) => return Err("--cacert goes with --tls".into()),
        _ => {}
    }
    let [target, path] = <[String; 2]>::try_from(positional).map_err(|_| bad())?;
    if path.is_empty() || path.contains(char::is_whitespace) {
        return Err(bad());
    }
    let (host, target) = match target.strip_prefix("localhost:") {
        Some(port) => ("localhost".to_string(), format!("127.0.0.1:{port}")),
        None => (String::new(), target),
    };
    let addr: Address = target.parse().map_err(|_| bad())?;
    let host = match (host.is_empty(), addr.inet()) {
        (false, _) => host,
        (true, Some(inet)) => inet.ip().to_string(),
        (true, None) => return Err(bad()),
    };
    Ok(Args { addr, host, path, cacert, timeout })
}
