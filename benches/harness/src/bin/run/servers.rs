//! The echo servers compared: rolecore's example on each backend, the C epoll
//! floor, the mio peer, Python's asyncore.

use std::path::{Path, PathBuf};

use crate::machine::sh;
use crate::settings::Settings;

#[derive(Clone)]
pub struct Server {
    pub key: &'static str,
    pub label: &'static str,
    /// The command, with `{addr}` where the listening address goes.
    pub argv: Vec<String>,
    /// The command for the idle-connection scenarios, when it differs.
    pub idle_argv: Option<Vec<String>>,
    pub idle_label: &'static str,
    /// Whether the descriptor-limit level (~20k or 100k idle) is run.
    pub max_level: bool,
    /// The longest the idle connections of one level may take to open.
    pub idle_budget_secs: f64,
    /// Instruction counts: (warm-up, counted) messages.
    pub callgrind: Option<(u64, u64)>,
    /// A diagnostic variant, not one of the peers.
    pub diagnostic: bool,
}

pub fn servers(root: &Path, s: &Settings) -> Vec<Server> {
    let t = root.join("benches/harness/target");
    let p = |x: PathBuf| x.to_string_lossy().into_owned();
    let example = p(root.join("target/release/examples/echo_server"));
    let cg = Some((s.cg_warm, s.cg_msgs));
    let rolecore = |key, label, backend: &str, max_level| Server {
        key,
        label,
        argv: vec![example.clone(), "{addr}".into(), "--backend".into(), backend.into()],
        idle_argv: None,
        idle_label: label,
        max_level,
        idle_budget_secs: if max_level { 60.0 } else { 30.0 },
        callgrind: cg,
        diagnostic: false,
    };
    let python = p(root.join("benches/python/asyncore_echo.py"));
    // The interpreter itself, not a shim script (pyenv's shims are bash,
    // which valgrind would profile instead).
    let interp = {
        let exe = sh("python3 -c 'import sys; print(sys.executable)'");
        if exe.is_empty() { "python3".to_string() } else { exe }
    };
    vec![
        Server {
            key: "c",
            label: "C epoll (floor)",
            argv: vec![p(t.join("c/epoll_echo")), "{addr}".into()],
            idle_argv: None,
            idle_label: "C epoll (floor)",
            max_level: true,
            idle_budget_secs: 60.0,
            callgrind: cg,
            diagnostic: false,
        },
        Server {
            key: "mio",
            label: "mio 1.x",
            argv: vec![p(t.join("release/mio_echo")), "{addr}".into()],
            idle_argv: None,
            idle_label: "mio 1.x",
            max_level: true,
            idle_budget_secs: 60.0,
            callgrind: cg,
            diagnostic: false,
        },
        // select and poll pay O(descriptors) per wait: opening ~20k
        // connections one wait at a time takes over a minute each, so their
        // idle levels stop at 10,000 to keep the run under 10 minutes.
        rolecore("rc-select", "rolecore select", "select", false),
        rolecore("rc-poll", "rolecore poll", "poll", false),
        rolecore("rc-epoll", "rolecore epoll", "epoll", true),
        Server {
            key: "asyncore",
            label: "asyncore (select)",
            argv: vec![interp.clone(), "-W".into(), "ignore".into(), python.clone(), "{port}".into()],
            idle_argv: Some(vec![
                interp,
                "-W".into(),
                "ignore".into(),
                python,
                "{port}".into(),
                "--poll".into(),
            ]),
            idle_label: "asyncore (poll)",
            max_level: false,
            // Each accept costs it a wait over every descriptor: its 10,000
            // level stops at what 20 s open (it only illustrates O(n)),
            // which keeps the whole run, with the protocol and thread
            // scenarios, under 10 minutes.
            idle_budget_secs: 20.0,
            callgrind: Some((300, 1000)),
            diagnostic: false,
        },
    ]
}
