//! The soak's command line: a bounded soak and fault-injection run against
//! rolecore's release example servers (the run itself is `soak.rs`).
//!
//! ```text
//! cargo build --release --examples          # in the rolecore checkout
//! cargo run --release --manifest-path tools/soak/Cargo.toml -- \
//!     --duration SECS [--clients N] [--seed S] [--backend select|poll|epoll] [--servers DIR]
//! ```
//!
//! `--servers DIR` is where `echo_server`, `http_server` and `resp_server`
//! are. By default: `$CARGO_TARGET_DIR/release/examples` if that variable is
//! set, else `target/release/examples` of the checkout this tool was built in
//! (two directories above its `Cargo.toml`). The last line is `soak: PASS`
//! (exit 0) or `soak: FAIL <reasons>` (exit 1); a bad command line exits 2.

mod soak;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use soak::Args;

const USAGE: &str =
    "usage: soak --duration SECS [--clients N] [--seed S] [--backend select|poll|epoll] [--servers DIR]";

/// The release examples of the rolecore checkout: `CARGO_TARGET_DIR`'s if
/// set (as `cargo build` would have used it), else the checkout's `target/`.
fn default_servers() -> PathBuf {
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../target")),
    };
    let dir = target.join("release").join("examples");
    // Without the `..`s in the report, if it exists.
    std::fs::canonicalize(&dir).unwrap_or(dir)
}

fn parse_args() -> Result<(Args, PathBuf), String> {
    let mut args = Args {
        duration: Duration::from_secs(30),
        clients: 200,
        seed: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1),
        backend: "epoll".into(),
    };
    let mut servers = None;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--duration" => {
                let v = value("--duration")?;
                let secs: f64 = v.parse().map_err(|_| format!("bad --duration {v:?}"))?;
                if !secs.is_finite() || secs <= 0.0 || secs > 7.0 * 86400.0 {
                    return Err(format!("bad --duration {v:?}"));
                }
                args.duration = Duration::from_secs_f64(secs);
            }
            "--clients" => {
                let v = value("--clients")?;
                args.clients = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=5000).contains(n))
                    .ok_or(format!("bad --clients {v:?}"))?;
            }
            "--seed" => {
                let v = value("--seed")?;
                args.seed = v.parse().map_err(|_| format!("bad --seed {v:?}"))?;
            }
            "--backend" => {
                let v = value("--backend")?;
                if !["select", "poll", "epoll"].contains(&v.as_str()) {
                    return Err(format!("bad --backend {v:?}"));
                }
                args.backend = v;
            }
            "--servers" => servers = Some(PathBuf::from(value("--servers")?)),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok((args, servers.unwrap_or_else(default_servers)))
}

fn main() -> ExitCode {
    let (args, servers) = match parse_args() {
        Ok(parsed) => parsed,
        Err(msg) => {
            eprintln!("soak: {msg}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match soak::run(&args, &servers, &mut std::io::stdout()) {
        Ok(()) => {
            println!("soak: PASS");
            ExitCode::SUCCESS
        }
        Err(reason) => {
            println!("soak: FAIL {reason}");
            ExitCode::FAILURE
        }
    }
}
