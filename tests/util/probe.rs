//! The recording handlers of the peer conformance items (1–25,
//! `docs/rules.md`): every event as `"{name}:{event}"` in a [`Log`].
#![allow(unused_macros)]

use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::Command;
use std::rc::Rc;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread;
use std::time::{Duration, Instant};

use super::*;
use rolecore::{
    AcceptHandler, Address, Backend, Buffered, Channel, Connected, Ctx, FileFd, FileHandler, InsertError,
    Listening, LoopOptions, Map, StreamHandler, Token, UnixAddress,
};

/// A stream handler that records everything that happens to it as
/// `"{name}:{event}"`, and keeps the bytes it reads and the instants its
/// timeouts fired at (a timeout does not close it).
#[derive(Clone)]
pub struct Probe {
    pub name: &'static str,
    pub log: Log,
    /// Bytes asked for per `handle_read`.
    pub chunk: usize,
    pub data: Rc<RefCell<Vec<u8>>>,
    pub fired: Rc<RefCell<Vec<Instant>>>,
}

impl Probe {
    pub fn new(name: &'static str, log: &Log) -> Probe {
        Probe { name, log: log.clone(), chunk: 4096, data: Rc::default(), fired: Rc::default() }
    }

    pub fn chunk(mut self, chunk: usize) -> Probe {
        self.chunk = chunk;
        self
    }

    pub fn push(&self, event: impl std::fmt::Display) {
        self.log.push(format!("{}:{event}", self.name));
    }
}

pub fn record_read(probe: &Probe, recv: impl FnOnce(&mut [u8]) -> io::Result<usize>) -> io::Result<()> {
    probe.push("read");
    let mut buf = vec![0u8; probe.chunk];
    match recv(&mut buf) {
        Ok(0) => probe.push("eof"),
        Ok(n) => {
            probe.push("data");
            probe.data.borrow_mut().extend_from_slice(&buf[..n]);
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => probe.push("wouldblock"),
        Err(e) => {
            probe.push(format_args!("read-error:{:?}", e.kind()));
            return Err(e);
        }
    }
    Ok(())
}

impl StreamHandler for Probe {
    fn handle_connect(&mut self, ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        // Item 15 (mio `issue_776`): a fresh connection has nothing to read;
        // the receive must say so, not report an end of stream.
        let what = match ch.recv(&mut [0u8; 16]) {
            Ok(0) => "eof".to_string(),
            Ok(n) => format!("data({n})"),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => "wouldblock".to_string(),
            Err(e) => format!("{:?}", e.kind()),
        };
        self.push(format_args!("connect(recv:{what})"));
        Ok(())
    }

    fn handle_connect_failed(&mut self, error: io::Error, _cx: &mut Ctx<'_>) {
        self.push(format_args!("connect_failed:{:?}", error.kind()));
    }

    fn handle_read(&mut self, ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        record_read(self, |buf| ch.recv(buf))
    }

    fn handle_write(&mut self, _ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        self.push("write");
        Ok(())
    }

    fn handle_expt(&mut self, ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        let mut byte = [0u8; 1];
        let n = ch.recv_oob(&mut byte)?;
        self.push(format_args!("expt:{}", String::from_utf8_lossy(&byte[..n])));
        Ok(())
    }

    fn handle_timeout(&mut self, _ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        self.fired.borrow_mut().push(Instant::now());
        self.push("timeout");
        Ok(())
    }

    fn handle_close(&mut self, _ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) {
        self.push("close");
    }

    fn handle_error(&mut self, _ch: &mut Channel<Connected>, error: io::Error, cx: &mut Ctx<'_>) {
        self.push(format_args!("error:{error}"));
        cx.close();
    }
}

/// A file handler that records like [`Probe`]; it reads and/or writes as told.
pub struct FileProbe {
    pub probe: Probe,
    pub reading: bool,
    pub writing: bool,
}

impl FileProbe {
    pub fn reader(probe: Probe) -> FileProbe {
        FileProbe { probe, reading: true, writing: false }
    }
    pub fn writer(probe: Probe) -> FileProbe {
        FileProbe { probe, reading: false, writing: true }
    }
    pub fn deaf(probe: Probe) -> FileProbe {
        FileProbe { probe, reading: false, writing: false }
    }
}

impl FileHandler for FileProbe {
    fn readable(&self, _ch: &Channel<FileFd>) -> bool {
        self.reading
    }

    fn writable(&self, _ch: &Channel<FileFd>) -> bool {
        self.writing
    }

    fn handle_read(&mut self, ch: &mut Channel<FileFd>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        record_read(&self.probe, |buf| ch.recv(buf))
    }

    fn handle_write(&mut self, ch: &mut Channel<FileFd>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        let n = ch.send(b"x")?;
        self.probe.push(format_args!("write({n})"));
        Ok(())
    }

    fn handle_close(&mut self, _ch: &mut Channel<FileFd>, _cx: &mut Ctx<'_>) {
        self.probe.push("close");
    }

    fn handle_error(&mut self, _ch: &mut Channel<FileFd>, error: io::Error, cx: &mut Ctx<'_>) {
        self.probe.push(format_args!("error:{error}"));
        cx.close();
    }
}

/// An address on which nothing listens: a port the kernel just gave out and
/// took back.
pub fn refused_addr() -> io::Result<std::net::SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    listener.local_addr()
}

/// Socket-pair ends whose descriptor numbers are `targets` (numbers that were
/// just closed), made by taking the lowest free numbers one after the other.
/// Every other end made on the way goes to `spare`, which must live as long as
/// the claimed ends, or their peers would hang up. Needs [`exclusive`].
pub fn claim_fds(targets: &[i32], spare: &mut Vec<Channel<Connected>>) -> Vec<Channel<Connected>> {
    let mut wanted: BTreeSet<i32> = targets.iter().copied().collect();
    let mut got = Vec::new();
    for _ in 0..4096 {
        let Some(&highest) = wanted.last() else { break };
        let (a, b) = Channel::pair().expect("socketpair");
        let past = a.fileno() > highest && b.fileno() > highest;
        for ch in [a, b] {
            if wanted.remove(&ch.fileno()) {
                got.push(ch);
            } else {
                spare.push(ch);
            }
        }
        if past {
            break; // the kernel went past the numbers: something else holds them
        }
    }
    got
}

pub fn send_all(peer: &mut Channel<Connected>, data: &[u8]) {
    let mut sent = 0;
    while sent < data.len() {
        sent += peer.send(&data[sent..]).expect("send to the peer");
    }
}
