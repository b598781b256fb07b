//! Helpers shared by the behaviour tests. Each test file includes this with
//! `mod util;`; not every file uses every helper.
#![allow(dead_code)]

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use rolecore::{Backend, LoopOptions, Map};

/// Every backend this build has.
pub fn backends() -> impl Iterator<Item = Backend> {
    Backend::ALL.into_iter().filter(|b| b.is_available())
}

/// A fresh map on `backend`.
pub fn map(backend: Backend) -> Map {
    Map::with_backend(backend).expect("create a map")
}

/// Runs `map` one short iteration at a time until `done()` holds, the map is
/// empty, or 5 s pass: asyncore's tests' `loop_waiting_for_flag`, without the
/// fixed sleeps. Returns whether `done()` held.
pub fn run_until(map: &mut Map, mut done: impl FnMut(&Map) -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if done(map) {
            return true;
        }
        if map.is_empty() {
            return done(map);
        }
        map.run(LoopOptions::new().timeout(Duration::from_millis(10)).count(1)).expect("loop");
    }
    done(map)
}

/// Runs `n` iterations with a short timeout.
pub fn run_iterations(map: &mut Map, n: u64) {
    map.run(LoopOptions::new().timeout(Duration::from_millis(10)).count(n)).expect("loop");
}

/// A shared, ordered record of what handlers saw.
#[derive(Clone, Default)]
pub struct Log(Rc<RefCell<Vec<String>>>);

impl Log {
    pub fn push(&self, event: impl Into<String>) {
        self.0.borrow_mut().push(event.into());
    }
    pub fn events(&self) -> Vec<String> {
        self.0.borrow().clone()
    }
    pub fn contains(&self, event: &str) -> bool {
        self.0.borrow().iter().any(|e| e == event)
    }
    pub fn count(&self, event: &str) -> usize {
        self.0.borrow().iter().filter(|e| *e == event).count()
    }
}

/// The path of an example binary that `cargo test` built.
pub fn example(name: &str) -> PathBuf {
    let mut dir = std::env::current_exe().expect("test binary path");
    dir.pop(); // the test binary
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join("examples").join(name);
    assert!(path.exists(), "{} was not built: run the tests with `cargo test`", path.display());
    path
}

/// Open descriptors of this process, to check for leaks.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0)
}
