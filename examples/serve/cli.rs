//! The command line every example server shares:
//! `[ADDR] [--backend select|poll|epoll] [--threads N]`, plus the flags one
//! server adds (`--idle-timeout SECS`, `--max-bulk BYTES`, …, and
//! `--tls-cert PEM --tls-key PEM` for TLS).
//!
//! `-h` or `--help` prints the usage line on stdout and exits 0. A bad
//! command line is one line on stderr, `NAME: what is wrong; usage:
//! …`, and exit status 2, never a panic: a value that is empty, not a
//! number, negative, NaN, infinite or out of range is refused before the
//! server starts, and so is a flag given twice or one the server does not
//! know.

// Each server uses the parts its flags need.
#![allow(dead_code)]

use std::process::ExitCode;
use std::time::Duration;

use rolecore::{Address, Backend};

/// The longest timeout a flag takes: a week. Longer is a typo, and
/// `Duration::from_secs_f64` would panic past `u64::MAX` seconds.
const MAX_SECONDS: f64 = 7.0 * 24.0 * 3600.0;
/// The shortest timeout a flag takes: a millisecond, the loop's resolution.
const MIN_SECONDS: f64 = 0.001;
/// The most loops `--threads` starts.
const MAX_THREADS: u64 = 256;

/// A flag one server adds to the shared ones: its name and the name of its
/// value in the usage line.
#[derive(Clone, Copy)]
pub struct Flag {
    /// The flag itself, `--idle-timeout`.
    pub name: &'static str,
    /// Its value in the usage line, `SECS`.
    pub value: &'static str,
}

/// `--tls-cert PEM`: the certificate chain a TLS server presents.
pub const TLS_CERT: Flag = Flag { name: "--tls-cert", value: "PEM" };
/// `--tls-key PEM`: its private key (PKCS#8, PKCS#1 or SEC1).
pub const TLS_KEY: Flag = Flag { name: "--tls-key", value: "PEM" };
/// The longest `--tls-cert` or `--tls-key` file read: a certificate chain
/// or a key takes a few kilobytes.
#[cfg(feature = "tls")]
const MAX_PEM: usize = 1 << 20;

/// A command line that does not start the server: help that was asked
/// for, or a mistake; what to print before exiting.
#[derive(Debug)]
pub struct Usage {
    line: String,
    help: bool,
}

impl Usage {
    /// Prints the one line: the usage on stdout with exit status 0 when it
    /// was asked for, what is wrong on stderr with status 2 otherwise.
    pub fn exit(self) -> ExitCode {
        if self.help {
            println!("{}", self.line);
            ExitCode::SUCCESS
        } else {
            eprintln!("{}", self.line);
            ExitCode::from(2)
        }
    }
}

/// One server's parsed command line.
pub struct Cli {
    name: &'static str,
    usage: String,
    /// Where to listen.
    pub addr: Address,
    /// Which poller the loops use.
    pub backend: Backend,
    /// How many loops (and listeners sharing the port) to run.
    pub threads: usize,
    values: Vec<(&'static str, String)>,
}

impl Cli {
    /// Parses `args` (without the program name) for the server `name`, which
    /// listens on `default_addr` unless told otherwise, takes `--threads`
    /// when `threads` is true, and adds `flags`.
    pub fn parse(
        name: &'static str,
        default_addr: &str,
        threads: bool,
        flags: &[Flag],
        args: impl IntoIterator<Item = String>,
    ) -> Result<Cli, Usage> {
        let mut usage = format!("usage: {name} [ADDR] [--backend select|poll|epoll]");
        if threads {
            usage.push_str(" [--threads N]");
        }
        for flag in flags {
            usage.push_str(&format!(" [{} {}]", flag.name, flag.value));
        }
        let mut cli = Cli {
            name,
            usage,
            addr: default_addr.parse().expect("the default address parses"),
            backend: Backend::default(),
            threads: 1,
            values: Vec::new(),
        };
        let mut addr = None;
        let mut seen: Vec<&str> = Vec::new();
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            if arg == "-h" || arg == "--help" {
                return Err(Usage { line: cli.usage, help: true });
            }
            if !arg.starts_with('-') || arg == "-" {
                if addr.is_some() {
                    return Err(cli.usage_error(format!("a second address {arg:?}")));
                }
                let parsed = arg.parse::<Address>().map_err(|e| cli.usage_error(e))?;
                addr = Some(parsed);
                continue;
            }
            let known = match arg.as_str() {
                "--backend" => Some("--backend"),
                "--threads" if threads => Some("--threads"),
                _ => flags.iter().find(|f| f.name == arg).map(|f| f.name),
            };
            let Some(flag) = known else {
                return Err(cli.usage_error(format!("unknown option {arg:?}")));
            };
            if seen.contains(&flag) {
                return Err(cli.usage_error(format!("{flag} given twice")));
            }
            seen.push(flag);
            let Some(value) = args.next() else {
                return Err(cli.usage_error(format!("{flag} needs a value")));
            };
            match flag {
                "--backend" => cli.backend = value.parse().map_err(|e| cli.usage_error(e))?,
                "--threads" => cli.threads = cli.number(flag, &value, 1, MAX_THREADS)? as usize,
                _ => cli.values.push((flag, value)),
            }
        }
        if let Some(addr) = addr {
            cli.addr = addr;
        }
        if !cli.backend.is_available() {
            let backend = cli.backend;
            return Err(
                cli.usage_error(format!("the {backend} backend is not built in or not available here"))
            );
        }
        Ok(cli)
    }

    /// A usage error that names what is wrong.
    pub fn usage_error(&self, what: impl std::fmt::Display) -> Usage {
        Usage { line: format!("{}: {what}; {}", self.name, self.usage), help: false }
    }

    /// A timeout flag in seconds (fractions allowed, down to a
    /// millisecond): `None` for 0 (no timeout) or when the flag is absent
    /// and `default` is 0.
    pub fn seconds(&self, flag: &str, default: f64) -> Result<Option<Duration>, Usage> {
        let secs = match self.value(flag) {
            None => default,
            Some(text) => {
                let bad = || {
                    self.usage_error(format!(
                        "{flag} {text:?}: expected 0 (none) or seconds from {MIN_SECONDS} to {MAX_SECONDS}"
                    ))
                };
                let secs: f64 = text.trim().parse().map_err(|_| bad())?;
                // NaN fails `contains` too; a timeout of a few nanoseconds
                // would close every connection at once.
                if secs != 0.0 && !(MIN_SECONDS..=MAX_SECONDS).contains(&secs) {
                    return Err(bad());
                }
                secs
            }
        };
        Ok((secs > 0.0).then(|| Duration::from_secs_f64(secs)))
    }

    /// A whole-number flag within `min..=max`, or `default` when absent.
    pub fn count(&self, flag: &str, default: u64, min: u64, max: u64) -> Result<u64, Usage> {
        match self.value(flag) {
            None => Ok(default),
            Some(text) => self.number(flag, text, min, max),
        }
    }

    /// `--tls-cert PEM --tls-key PEM`, both or neither: the configuration
    /// of a server that speaks TLS 1.3 and 1.2, offering the ALPN
    /// protocols `alpn`, without session resumption. A file that cannot be read, holds no certificate or
    /// key, or a key that does not fit the certificate is a usage error.
    #[cfg(feature = "tls")]
    pub fn tls(&self, alpn: &[&[u8]]) -> Result<Option<super::connections::TlsConfig>, Usage> {
        use rolecore::tls::rustls;
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};

        let Some((cert, key)) = self.tls_files()? else { return Ok(None) };
        // Read up to a bound: a path to an endless file (`/dev/zero`) would
        // otherwise take memory until the process is killed.
        let read = |flag: &str, path: &str| {
            use std::io::Read;
            let mut pem = Vec::new();
            std::fs::File::open(path)
                .and_then(|file| file.take(MAX_PEM as u64 + 1).read_to_end(&mut pem))
                .map_err(|e| self.usage_error(format!("{flag} {path:?}: {e}")))?;
            if pem.len() > MAX_PEM {
                return Err(
                    self.usage_error(format!("{flag} {path:?}: longer than {MAX_PEM} bytes, not a PEM file"))
                );
            }
            Ok(pem)
        };
        let pem = read(TLS_CERT.name, cert)?;
        let chain = CertificateDer::pem_slice_iter(&pem).collect::<Result<Vec<_>, _>>().map_err(|e| {
            self.usage_error(format!("{} {cert:?}: not a PEM certificate chain: {e}", TLS_CERT.name))
        })?;
        if chain.is_empty() {
            return Err(self.usage_error(format!("{} {cert:?}: no certificate in it", TLS_CERT.name)));
        }
        let pem = read(TLS_KEY.name, key)?;
        let key_der = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
            self.usage_error(format!("{} {key:?}: no PEM private key in it: {e}", TLS_KEY.name))
        })?;
        let versions = &[&rustls::version::TLS13, &rustls::version::TLS12];
        let mut config = rustls::ServerConfig::builder_with_protocol_versions(versions)
            .with_no_client_auth()
            .with_single_cert(chain, key_der)
            .map_err(|e| {
                self.usage_error(format!(
                    "{} {key:?} does not fit {} {cert:?}: {e}",
                    TLS_KEY.name, TLS_CERT.name
                ))
            })?;
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        // No session resumption: every connection makes a full handshake,
        // and the server keeps no session state (the benchmark's terms).
        config.session_storage = std::sync::Arc::new(rustls::server::NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
        Ok(Some(std::sync::Arc::new(config)))
    }

    /// Without rolecore's `tls` feature, the TLS flags are a usage error.
    #[cfg(not(feature = "tls"))]
    pub fn tls(&self, alpn: &[&[u8]]) -> Result<Option<super::connections::TlsConfig>, Usage> {
        let _ = alpn;
        match self.tls_files()? {
            None => Ok(None),
            Some(_) => Err(self.usage_error(
                "this server was built without rolecore's `tls` feature; rebuild it with --features tls",
            )),
        }
    }

    /// The TLS flags' files: both, or neither.
    fn tls_files(&self) -> Result<Option<(&str, &str)>, Usage> {
        match (self.value(TLS_CERT.name), self.value(TLS_KEY.name)) {
            (None, None) => Ok(None),
            (Some(cert), Some(key)) => Ok(Some((cert, key))),
            _ => Err(self.usage_error("--tls-cert and --tls-key go together: give both or neither")),
        }
    }

    fn value(&self, flag: &str) -> Option<&str> {
        self.values.iter().find(|(name, _)| *name == flag).map(|(_, value)| value.as_str())
    }

    fn number(&self, flag: &str, text: &str, min: u64, max: u64) -> Result<u64, Usage> {
        // u64's parser takes a leading `+`; digits only is what a reader expects.
        match text.parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) && text.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
            _ => {
                Err(self.usage_error(format!("{flag} {text:?}: expected a whole number from {min} to {max}")))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLAGS: &[Flag] =
        &[Flag { name: "--idle-timeout", value: "SECS" }, Flag { name: "--max", value: "N" }];

    fn parse(args: &[&str]) -> Result<Cli, Usage> {
        Cli::parse("srv", "127.0.0.1:1", true, FLAGS, args.iter().map(|a| a.to_string()))
    }

    fn refused(args: &[&str]) -> String {
        match parse(args) {
            Ok(cli) => match (cli.seconds("--idle-timeout", 60.0), cli.count("--max", 5, 1, 100)) {
                (Err(e), _) | (_, Err(e)) => e.line,
                _ => panic!("{args:?} was accepted"),
            },
            Err(e) => e.line,
        }
    }

    #[test]
    fn defaults_and_values() {
        let cli = parse(&[]).unwrap();
        assert_eq!(cli.addr.to_string(), "127.0.0.1:1");
        assert_eq!((cli.threads, cli.backend), (1, Backend::default()));
        assert_eq!(cli.seconds("--idle-timeout", 60.0).unwrap(), Some(Duration::from_secs(60)));
        let cli = parse(&["[::1]:9", "--threads", "3", "--idle-timeout", "0.5", "--max", "100"]).unwrap();
        assert_eq!((cli.addr.to_string().as_str(), cli.threads), ("[::1]:9", 3));
        assert_eq!(cli.seconds("--idle-timeout", 60.0).unwrap(), Some(Duration::from_millis(500)));
        assert_eq!(cli.count("--max", 5, 1, 100).unwrap(), 100);
        assert_eq!(parse(&["--idle-timeout", "0"]).unwrap().seconds("--idle-timeout", 60.0).unwrap(), None);
    }

    /// `--threads` above 1 shares one IP port among its loops through
    /// `SO_REUSEPORT`; a Unix socket cannot be shared so, and is refused
    /// with `InvalidInput` that names `--threads`, before anything binds.
    #[test]
    fn more_than_one_thread_needs_an_ip_address() {
        let addr: Address = format!("unix:@rolecore-cli-threads-{}", std::process::id()).parse().unwrap();
        let error = super::super::bind(&addr, 2).err().expect("two loops on a Unix socket are refused");
        assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput, "{error}");
        assert!(error.to_string().contains("--threads"), "{error}");
        // One loop on the same address is fine: nothing was left bound.
        assert_eq!(super::super::bind(&addr, 1).map(|listeners| listeners.len()).ok(), Some(1));
    }

    #[test]
    fn absurd_values_are_one_line_errors() {
        for args in [
            &["--idle-timeout", "1e20"][..],
            &["--idle-timeout", "-1"],
            &["--idle-timeout", "NaN"],
            &["--idle-timeout", "inf"],
            &["--idle-timeout", ""],
            &["--idle-timeout", "soon"],
            &["--idle-timeout", "1e-9"],
            &["--idle-timeout"],
            &["--max", "0"],
            &["--max", "101"],
            &["--max", "-1"],
            &["--max", "+5"],
            &["--max", "18446744073709551616"],
            &["--threads", "0"],
            &["--threads", "100000"],
            &["--backend", "kqueue"],
            &["--backend", ""],
            &["--no-such-flag", "1"],
            &["not an address"],
            &["127.0.0.1:99999"],
            &["unix:"],
            &["127.0.0.1:1", "127.0.0.1:2"],
            &["--max", "1", "--max", "2"],
        ] {
            let line = refused(args);
            assert!(line.starts_with("srv: ") && line.contains("; usage: srv [ADDR]"), "{args:?}: {line}");
            assert!(!line.contains('\n'), "{args:?}: {line}");
        }
    }
}
