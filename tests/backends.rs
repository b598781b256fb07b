//! What differs between backends, and what must not: every backend this build
//! has is exercised, a map switches backend with live channels, and no backend
//! reports a readiness the loop will not deliver (issue 14, defect 3).
//!
//! Each test names where it comes from: CPython's `test_asyncore.py` (T1–T31,
//! `docs/asyncore.md`), a peer conformance item (1–25, `docs/rules.md`), a
//! pitfall (P1–P22, `docs/reliability.md`) or a decision (D-codes).

mod util;

use std::cell::RefCell;
use std::io::Write;
use std::net::TcpStream;
use std::rc::Rc;
use std::time::Duration;

use rolecore::{Channel, LoopOptions};
use util::*;

#[cfg(feature = "select")]
#[test]
fn all_three_backends_are_exercised() {
    use rolecore::Backend;
    let names: Vec<Backend> = util::backends().collect();
    assert_eq!(
        names,
        [Backend::Select, Backend::Poll, Backend::Epoll],
        "this build should have every backend"
    );
}

#[test]
fn set_backend_with_live_channels_keeps_them_working() {
    for from in util::backends() {
        for to in util::backends().filter(|&b| b != from) {
            let mut map = util::map(from);
            let (listener, addr) = tcp_listener();
            let accepted = Rc::new(RefCell::new(Vec::new()));
            let server = InsertingServer { inserted: Vec::new(), data: Rc::clone(&accepted) };
            let listener = map.insert(listener, server).expect("insert");
            let (ours, mut peer) = Channel::pair().expect("socketpair");
            let reader = Reader::new();
            let data = reader.data.clone();
            let reader = map.insert(ours, reader).expect("insert");
            let (writer, _writer_peer) = Channel::pair().expect("socketpair");
            let writer = map.insert(writer, Toggle::default()).expect("insert");
            map.handler_mut::<Toggle>(writer).unwrap().want_write = true;

            peer.send(b"before").expect("send");
            assert!(util::run_until(&mut map, |_| data.borrow().as_slice() == b"before"), "{from}: before");
            let writes_before = map.handler::<Toggle>(writer).unwrap().writes;

            map.set_backend(to).expect("set_backend");
            assert_eq!(map.backend(), to, "{from} -> {to}");
            assert_eq!(map.len(), 3, "{from} -> {to}: every channel kept");
            peer.send(b", after").expect("send");
            assert!(
                util::run_until(&mut map, |_| data.borrow().as_slice() == b"before, after"),
                "{from} -> {to}: the reader still gets its data"
            );
            let mut client = TcpStream::connect(addr).expect("connect");
            client.write_all(b"!").expect("write");
            assert!(
                util::run_until(&mut map, |m| m.handler::<InsertingServer>(listener).unwrap().inserted.len()
                    == 1
                    && accepted.borrow().as_slice() == b"!"),
                "{from} -> {to}: the listener still accepts"
            );
            assert!(
                map.handler::<Toggle>(writer).unwrap().writes > writes_before,
                "{from} -> {to}: the writer still gets handle_write"
            );
            assert!(map.contains(reader), "{from} -> {to}");
            // LoopOptions::backend switches too.
            map.run(LoopOptions::new().backend(from).timeout(Duration::from_millis(10)).count(1))
                .expect("loop");
            assert_eq!(map.backend(), from, "{from} -> {to} -> {from}");
            peer.send(b", back").expect("send");
            assert!(
                util::run_until(&mut map, |_| data.borrow().as_slice() == b"before, after, back"),
                "{from} -> {to} -> {from}: the reader still gets its data"
            );
        }
    }
}

/// One wait reports every channel that is ready, on every backend: five
/// streams with data each get their read in a single iteration (epoll's
/// buffer takes many reports per wait, not one).
#[test]
fn one_wait_reports_every_ready_channel() {
    use std::cell::Cell;
    for backend in util::backends() {
        let mut map = util::map(backend);
        let reads = Rc::new(Cell::new(0));
        let mut peers = Vec::new();
        for _ in 0..5 {
            let (ours, mut peer) = Channel::pair().expect("socketpair");
            map.insert(ours, Quiet(reads.clone())).expect("insert");
            peer.send(b"x").expect("send");
            peers.push(peer);
        }
        map.poll(Some(Duration::ZERO)).expect("poll");
        assert_eq!(reads.get(), 5, "{backend}: one iteration reads every ready channel");
    }
}

/// Level-triggered, not sticky: a channel whose data was read is not
/// reported again by a later wait, on any backend, however busy the other
/// channels keep the waits (an always-writable one here).
#[test]
fn a_channel_read_dry_is_not_reported_by_the_next_waits() {
    use std::cell::Cell;
    for backend in util::backends() {
        let mut map = util::map(backend);
        let reads = Rc::new(Cell::new(0));
        let (ours, mut peer) = Channel::pair().expect("socketpair");
        map.insert(ours, Quiet(reads.clone())).expect("insert");
        let (busy, _busy_peer) = Channel::pair().expect("socketpair");
        let busy = map.insert(busy, AlwaysWritable::default()).expect("insert");
        peer.send(b"once").expect("send");
        map.poll(Some(Duration::ZERO)).expect("poll");
        assert_eq!(reads.get(), 1, "{backend}");
        for _ in 0..5 {
            map.poll(Some(Duration::ZERO)).expect("poll");
        }
        assert_eq!(writes(&map, busy), 6, "{backend}: the writer was served every iteration");
        assert_eq!(reads.get(), 1, "{backend}: the drained channel was reported again");
    }
}
