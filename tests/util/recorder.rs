//! A stream handler and a listener handler that record every event, in
//! order, in a [`Log`].
#![allow(unused_macros)]

use std::cell::{Cell, RefCell};
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::rc::Rc;
use std::time::Duration;

use super::*;
use rolecore::{
    AcceptHandler, Address, Buffered, Channel, Connected, Ctx, FileFd, FileHandler, Listening, LoopOptions,
    Map, StreamHandler, UnixAddress,
};

/// A stream handler that records every event in order.
pub struct Recorder {
    pub log: Log,
    pub data: Rc<RefCell<Vec<u8>>>,
    /// Bytes asked of `recv` per read event.
    pub chunk: usize,
    /// What `writable()` answers; cleared by the first `handle_write`.
    pub write: bool,
}

impl Recorder {
    pub fn new(log: &Log) -> Self {
        Recorder { log: log.clone(), data: Rc::default(), chunk: 4096, write: false }
    }
}

impl StreamHandler for Recorder {
    fn writable(&self, _ch: &Channel<Connected>) -> bool {
        self.write
    }

    fn handle_connect(&mut self, _ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        self.log.push("connect");
        Ok(())
    }

    fn handle_connect_failed(&mut self, error: io::Error, _cx: &mut Ctx<'_>) {
        self.log.push(format!("connect_failed:{:?}", error.kind()));
    }

    fn handle_read(&mut self, ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        let mut buf = vec![0u8; self.chunk];
        let n = ch.recv(&mut buf)?;
        if n == 0 {
            self.log.push("read:eof");
        } else {
            self.log.push("read");
            self.data.borrow_mut().extend_from_slice(&buf[..n]);
        }
        Ok(())
    }

    fn handle_write(&mut self, _ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        self.log.push("write");
        self.write = false;
        Ok(())
    }

    fn handle_expt(&mut self, ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        let mut byte = [0u8; 1];
        let n = ch.recv_oob(&mut byte)?;
        self.log.push(format!("expt:{:02x?}", &byte[..n]));
        Ok(())
    }

    fn handle_close(&mut self, _ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) {
        self.log.push("close");
    }

    fn handle_error(&mut self, _ch: &mut Channel<Connected>, error: io::Error, cx: &mut Ctx<'_>) {
        self.log.push(format!("error:{error}"));
        cx.close();
    }
}

/// A listener handler that records accepted connections and keeps them open.
pub struct Acceptor {
    pub log: Log,
    pub peers: Rc<RefCell<Vec<Address>>>,
    pub conns: Vec<Channel<Connected>>,
}

impl Acceptor {
    pub fn new(log: &Log) -> Self {
        Acceptor { log: log.clone(), peers: Rc::default(), conns: Vec::new() }
    }
}

impl AcceptHandler for Acceptor {
    fn handle_accepted(
        &mut self,
        conn: Channel<Connected>,
        peer: Address,
        _cx: &mut Ctx<'_>,
    ) -> io::Result<()> {
        self.log.push("accepted");
        self.peers.borrow_mut().push(peer);
        self.conns.push(conn);
        Ok(())
    }

    fn handle_close(&mut self, _ch: &mut Channel<Listening>, _cx: &mut Ctx<'_>) {
        self.log.push("listener:close");
    }

    fn handle_error(&mut self, _ch: &mut Channel<Listening>, error: io::Error, cx: &mut Ctx<'_>) {
        self.log.push(format!("listener:error:{error}"));
        cx.close();
    }
}
