//! The seed's HTTP client: one `GET`, the whole response on stdout.
//!
//! ```text
//! cargo run --example http_client -- HOST:PORT PATH
//! ```
//!
//! HOST is an IP address (`127.0.0.1`, `[::1]`) or `localhost`: rolecore never
//! blocks on DNS, so it does not resolve host names. Exits 0 once the server
//! has closed the connection, 1 if the connect failed, 2 on bad arguments.

use std::cell::Cell;
use std::io::{self, Write};
use std::process::ExitCode;
use std::rc::Rc;

use rolecore::{Address, Buffered, Channel, Connected, Ctx, LoopOptions, Map, StreamHandler};

struct HttpClient {
    connect_error: Rc<Cell<Option<io::Error>>>, // for main to report
}

impl StreamHandler<Buffered<Connected>> for HttpClient {
    // The request was queued before the connect; Buffered's default
    // `writable` and `handle_write` send it once connected.

    fn handle_read(&mut self, ch: &mut Buffered<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        let mut buf = [0u8; 8192];
        let n = ch.recv(&mut buf)?; // 0: the server closed, the loop calls handle_close
        let mut stdout = io::stdout().lock();
        stdout.write_all(&buf[..n])?;
        stdout.flush()
    }

    fn handle_connect_failed(&mut self, error: io::Error, _cx: &mut Ctx<'_>) {
        self.connect_error.set(Some(error));
    }
}

fn main() -> ExitCode {
    let Some((addr, path)) = parse_args() else {
        eprintln!(
            "http_client: bad arguments; usage: http_client HOST:PORT PATH, where HOST is an IP address \
             or localhost (rolecore does not resolve host names) and PATH has no spaces, e.g. /index.html"
        );
        return ExitCode::from(2);
    };
    match get(&addr, &path) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("http_client: {addr}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Sends the request and prints the response as it arrives.
fn get(addr: &Address, path: &str) -> io::Result<()> {
    let mut conn = Buffered::new(Channel::for_address(addr)?.connect(addr)?);
    conn.send(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())?; // queued until connected
    let connect_error = Rc::new(Cell::new(None));
    let mut map = Map::new()?;
    map.insert(conn, HttpClient { connect_error: connect_error.clone() })?;
    map.run(LoopOptions::default())?; // until the server closes
    connect_error.take().map_or(Ok(()), Err)
}

fn parse_args() -> Option<(Address, String)> {
    let mut args = std::env::args().skip(1);
    let (target, path) = (args.next()?, args.next()?);
    if args.next().is_some() || path.is_empty() || path.contains(char::is_whitespace) {
        return None;
    }
    let target = match target.strip_prefix("localhost:") {
        Some(port) => format!("127.0.0.1:{port}"),
        None => target,
    };
    Some((target.parse().ok()?, path))
}
