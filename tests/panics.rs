//! Optional panic isolation: with `LoopOptions::catch_panics(true)` a
//! handler's panic closes only its own channel; without it, the panic
//! reaches the caller of the loop.

mod util;

use std::io::{self, Write};
use std::os::unix::net::UnixStream;

use rolecore::{Channel, Connected, Ctx, LoopOptions, StreamHandler};
use util::Log;

struct Reader {
    name: &'static str,
    panics: bool,
    log: Log,
}

impl StreamHandler for Reader {
    fn handle_read(&mut self, ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        let mut buf = [0u8; 16];
        let n = ch.recv(&mut buf)?;
        if self.panics && n > 0 {
            panic!("{} cannot cope", self.name);
        }
        self.log.push(format!("{} read {n}", self.name));
        Ok(())
    }
    fn handle_close(&mut self, _: &mut Channel<Connected>, _: &mut Ctx<'_>) {
        self.log.push(format!("{} close", self.name));
    }
}

#[test]
fn a_panicking_handler_closes_only_its_channel_when_caught() {
    for backend in util::backends() {
        let (a, mut peer_a) = UnixStream::pair().unwrap();
        let (b, mut peer_b) = UnixStream::pair().unwrap();
        let log = Log::default();
        let mut map = util::map(backend);
        let ta = map
            .insert(Channel::try_from(a).unwrap(), Reader { name: "bad", panics: true, log: log.clone() })
            .unwrap();
        let tb = map
            .insert(Channel::try_from(b).unwrap(), Reader { name: "good", panics: false, log: log.clone() })
            .unwrap();
        peer_a.write_all(b"boom").unwrap();
        peer_b.write_all(b"fine").unwrap();
        let options = LoopOptions::new().timeout(std::time::Duration::from_millis(10)).catch_panics(true);
        for _ in 0..5 {
            map.run(options.count(1)).unwrap();
        }
        assert!(!map.contains(ta), "{backend}: the panicking channel is closed");
        assert!(map.contains(tb), "{backend}: the other channel lives on");
        assert!(log.contains("good read 4"), "{backend}: {:?}", log.events());
        assert!(!log.contains("bad close"), "{backend}: no handle_close after a panic");
        // The closed channel's peer sees the end of the stream.
        let mut buf = [0u8; 1];
        assert_eq!(io::Read::read(&mut peer_a, &mut buf).unwrap(), 0, "{backend}");
        // And the survivor still works.
        peer_b.write_all(b"again").unwrap();
        assert!(util::run_until(&mut map, |_| log.contains("good read 5")), "{backend}");
    }
}

#[test]
fn an_uncaught_panic_reaches_the_caller() {
    let (a, mut peer) = UnixStream::pair().unwrap();
    let mut map = util::map(rolecore::Backend::Epoll);
    map.insert(Channel::try_from(a).unwrap(), Reader { name: "bad", panics: true, log: Log::default() })
        .unwrap();
    peer.write_all(b"x").unwrap();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        map.run(LoopOptions::new().count(1)).unwrap();
    }));
    let payload = result.expect_err("the panic propagates by default");
    assert_eq!(payload.downcast_ref::<String>().map(String::as_str), Some("bad cannot cope"));
}

/// Panics in `writable()` once it has read something: the predicates the
/// loop asks after a callback are part of that callback's wake-up.
struct PanickyPredicate {
    read: bool,
}

impl StreamHandler for PanickyPredicate {
    fn writable(&self, _ch: &Channel<Connected>) -> bool {
        if self.read {
            panic!("writable() cannot cope");
        }
        false
    }
    fn handle_read(&mut self, ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        let mut buf = [0u8; 16];
        self.read |= ch.recv(&mut buf)? > 0;
        Ok(())
    }
}

#[test]
fn a_predicate_that_panics_after_a_callback_is_caught_like_the_callback() {
    for backend in util::backends() {
        let (a, mut peer) = UnixStream::pair().unwrap();
        let mut map = util::map(backend);
        let token = map.insert(Channel::try_from(a).unwrap(), PanickyPredicate { read: false }).unwrap();
        peer.write_all(b"x").unwrap();
        let options = LoopOptions::new().timeout(std::time::Duration::from_millis(10)).catch_panics(true);
        for _ in 0..5 {
            map.run(options.count(1)).unwrap();
        }
        assert!(!map.contains(token), "{backend}: the channel whose predicate panicked is closed");
        let mut buf = [0u8; 1];
        assert_eq!(io::Read::read(&mut peer, &mut buf).unwrap(), 0, "{backend}: its peer sees the end");
    }
}
