//! The processes a run starts and stops: servers, the load generator, their
//! output.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use crate::Result;

pub fn lines_of<R: io::Read + Send + 'static>(r: R) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                // Keep draining so the child never blocks on a full pipe.
                continue;
            }
        }
    });
    rx
}

pub struct ServerProc {
    pub child: Child,
    pub pid: u32,
    pub addr: String,
    pub _stdout: Receiver<String>,
}

/// How a started server says it is ready.
#[derive(Clone, Copy)]
pub enum Ready {
    /// Its first stdout line is `listening on HOST:PORT` (the echo servers
    /// and rolecore's examples, started on port 0).
    Stdout,
    /// It was told this port (nginx, redis-server): ready once a connection
    /// to 127.0.0.1:PORT succeeds.
    Port(u16),
}

impl ServerProc {
    /// Starts a server pinned to CPU 0 that says where it listens.
    pub fn start(argv: &[String], prefix: &[&str], log: &Path) -> Result<ServerProc> {
        ServerProc::spawn(argv, prefix, log, Some("0"), Ready::Stdout)
    }

    /// Starts a server, pinned to `cpu` (`taskset -c`) or not.
    pub fn spawn(
        argv: &[String],
        prefix: &[&str],
        log: &Path,
        cpu: Option<&str>,
        ready: Ready,
    ) -> Result<ServerProc> {
        let argv: Vec<String> =
            argv.iter().map(|a| a.replace("{addr}", "127.0.0.1:0").replace("{port}", "0")).collect();
        let mut cmd = match cpu {
            Some(c) => {
                let mut cmd = Command::new("taskset");
                cmd.args(["-c", c]).args(prefix).args(&argv);
                cmd
            }
            None => {
                let all: Vec<&str> = prefix.iter().copied().chain(argv.iter().map(String::as_str)).collect();
                let mut cmd = Command::new(all[0]);
                cmd.args(&all[1..]);
                cmd
            }
        };
        let err = fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(err);
        let mut child = cmd.spawn().map_err(|e| format!("spawn {argv:?}: {e}"))?;
        let pid = child.id();
        let stdout = lines_of(child.stdout.take().expect("piped"));
        if let Ready::Port(port) = ready {
            let deadline = Instant::now() + Duration::from_secs(15);
            let to = std::net::SocketAddr::from(([127, 0, 0, 1], port));
            loop {
                if std::net::TcpStream::connect_timeout(&to, Duration::from_millis(200)).is_ok() {
                    return Ok(ServerProc { child, pid, addr: to.to_string(), _stdout: stdout });
                }
                if Instant::now() > deadline || !matches!(child.try_wait(), Ok(None)) {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!("{argv:?} did not listen on port {port} (log: {})", log.display()));
                }
                thread::sleep(Duration::from_millis(50));
            }
        }
        let line = match stdout.recv_timeout(Duration::from_secs(30)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{argv:?} did not say where it listens (log: {})", log.display()));
            }
        };
        let addr = line
            .strip_prefix("listening on ")
            .ok_or_else(|| format!("{argv:?} said {line:?}"))?
            .trim()
            .to_string();
        Ok(ServerProc { child, pid, addr, _stdout: stdout })
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM (valgrind then writes its profile), then SIGKILL after 10 s.
    pub fn stop(mut self) {
        // SAFETY: kill(2) on the PID of our own child, which we have not reaped.
        unsafe {
            libc::kill(self.pid as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if !self.alive() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Loadgen {
    pub child: Child,
    pub stdin: ChildStdin,
    pub out: Receiver<String>,
}

impl Loadgen {
    /// Starts the load generator pinned to CPU 1.
    pub fn start(root: &Path, addr: &str, conns: usize) -> Result<Loadgen> {
        Loadgen::start_on(root, addr, conns, Some("1"))
    }

    /// Starts the load generator pinned to `cpu`, or not pinned.
    pub fn start_on(root: &Path, addr: &str, conns: usize, cpu: Option<&str>) -> Result<Loadgen> {
        let bin = root.join("benches/harness/target/release/loadgen");
        let mut cmd = match cpu {
            Some(c) => {
                let mut cmd = Command::new("taskset");
                cmd.args(["-c", c]).arg(&bin);
                cmd
            }
            None => Command::new(&bin),
        };
        let mut child = cmd
            .args(["--addr", addr, "--conns", &conns.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("spawn loadgen: {e}"))?;
        let stdin = child.stdin.take().expect("piped");
        let out = lines_of(child.stdout.take().expect("piped"));
        let mut lg = Loadgen { child, stdin, out };
        let ready = lg.answer(Duration::from_secs(60))?;
        if !ready.starts_with("ready") {
            lg.kill();
            return Err(format!("loadgen: {ready}"));
        }
        Ok(lg)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn answer(&mut self, timeout: Duration) -> Result<String> {
        match self.out.recv_timeout(timeout) {
            Ok(line) if line.starts_with("error") => Err(format!("loadgen: {line}")),
            Ok(line) => Ok(line),
            Err(_) => Err(format!("loadgen gave no answer within {timeout:?}")),
        }
    }

    pub fn command(&mut self, cmd: &str, timeout: Duration) -> Result<String> {
        writeln!(self.stdin, "{cmd}").map_err(|e| format!("loadgen stdin: {e}"))?;
        self.stdin.flush().map_err(|e| format!("loadgen stdin: {e}"))?;
        self.answer(timeout)
    }

    pub fn run(&mut self, secs: f64) -> Result<RunResult> {
        let line = self.command(&format!("run {secs}"), Duration::from_secs_f64(secs + 20.0))?;
        RunResult::parse(&line)
    }

    pub fn count(&mut self, n: u64, timeout: Duration) -> Result<RunResult> {
        let line = self.command(&format!("count {n}"), timeout)?;
        RunResult::parse(&line)
    }

    pub fn quit(mut self) {
        let _ = writeln!(self.stdin, "quit");
        let _ = self.stdin.flush();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(10));
        }
        self.kill();
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Clone, Copy, Debug, Default)]
pub struct RunResult {
    pub msgs: u64,
    pub mps: f64,
    pub p50: f64,
    pub p99: f64,
}

impl RunResult {
    pub fn parse(line: &str) -> Result<RunResult> {
        let kv = fields(line);
        let get =
            |k: &str| kv.get(k).and_then(|v| v.parse::<f64>().ok()).ok_or(format!("no {k} in {line:?}"));
        Ok(RunResult {
            msgs: get("msgs")? as u64,
            mps: get("mps")?,
            p50: get("p50_us")?,
            p99: get("p99_us")?,
        })
    }
}

pub fn fields(line: &str) -> BTreeMap<String, String> {
    line.split_whitespace()
        .filter_map(|w| w.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
