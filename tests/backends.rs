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
