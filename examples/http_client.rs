//! The seed's HTTP client: one `GET`, the whole response on stdout.
//!
//! ```text
//! cargo run --example http_client -- HOST:PORT PATH [--tls --cacert PEM]
//! ```
//!
//! HOST is an IP address (`127.0.0.1`, `[::1]`) or `localhost`: rolecore never
//! blocks on DNS, so it does not resolve host names. Exits 0 once the server
//! has closed the connection, 1 if the connect (or the TLS handshake) failed,
//! 2 on bad arguments.
//!
//! `--tls --cacert PEM` (a build with rolecore's `tls` feature) speaks
//! HTTPS: the server must present a certificate for HOST that the PEM's
//! certificates vouch for. The request then goes out in `handle_connect`,
//! once the handshake completed; over plain TCP it is queued before the
//! connect.

use std::cell::Cell;
use std::io::{self, Write};
use std::process::ExitCode;
use std::rc::Rc;

use rolecore::{Address, Buffered, Channel, Connected, Ctx, LoopOptions, Map, StreamHandler};

struct HttpClient {
    connect_error: Rc<Cell<Option<io::Error>>>, // for main to report
    /// The request, when it could not be queued before the connect (TLS).
    request: Option<Vec<u8>>,
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

    fn handle_error(&mut self, _ch: &mut Buffered<Connected>, error: io::Error, cx: &mut Ctx<'_>) {
        // A TLS stream cut without close_notify, say: the response may be
        // incomplete, and main says so.
        self.connect_error.set(Some(error));
        cx.close();
    }
}

/// What the command line asks for.
struct Args {
    addr: Address,
    /// `localhost` or the IP address, as the server's certificate names it.
    host: String,
    path: String,
    /// `--cacert PEM`, with `--tls`.
    cacert: Option<String>,
}

const USAGE: &str = "usage: http_client HOST:PORT PATH [--tls --cacert PEM], where HOST is an IP address \
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
        None => plain(&args.addr, &request),
        Some(cacert) => secure(&args.addr, request, cacert, &args.host),
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
fn plain(addr: &Address, request: &[u8]) -> Result<(), Failure> {
    let mut conn = Buffered::new(Channel::for_address(addr)?.connect(addr).map_err(io::Error::from)?);
    conn.send(request)?; // queued until connected
    run(|map, client| map.insert(conn, client).map(drop).map_err(io::Error::from), None)
}

/// The same over TLS, trusting the certificates of `cacert`: the request
/// goes out once the handshake completed.
#[cfg(feature = "tls")]
fn secure(addr: &Address, request: Vec<u8>, cacert: &str, host: &str) -> Result<(), Failure> {
    use std::sync::Arc;

    use rolecore::tls::rustls::pki_types::pem::PemObject;
    use rolecore::tls::rustls::pki_types::{CertificateDer, ServerName};
    use rolecore::tls::{Handshaking, rustls};

    let pem = std::fs::read(cacert).map_err(|e| Failure::Usage(format!("--cacert {cacert:?}: {e}")))?;
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
    run(|map, client| map.insert(tls, client).map(drop).map_err(io::Error::from), Some(request))
}

#[cfg(not(feature = "tls"))]
fn secure(_: &Address, _: Vec<u8>, _: &str, _: &str) -> Result<(), Failure> {
    Err(Failure::Usage(
        "--tls: this client was built without rolecore's `tls` feature; rebuild it with --features tls"
            .into(),
    ))
}

/// Inserts the stream with its handler (`request` to send once the stream
/// is established) and runs the loop until the server closes.
fn run(
    insert: impl FnOnce(&mut Map, HttpClient) -> io::Result<()>,
    request: Option<Vec<u8>>,
) -> Result<(), Failure> {
    let connect_error = Rc::new(Cell::new(None));
    let mut map = Map::new()?;
    insert(&mut map, HttpClient { connect_error: connect_error.clone(), request })?;
    map.run(LoopOptions::default())?; // until the server closes
    connect_error.take().map_or(Ok(()), |e| Err(Failure::Io(e)))
}

fn parse_args() -> Result<Args, String> {
    let bad = || "bad arguments".to_string();
    let mut args = std::env::args().skip(1);
    let mut positional = Vec::new();
    let mut tls = false;
    let mut cacert = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
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
    Ok(Args { addr, host, path, cacert })
}
