//! Unix signals as loop events (feature `signals`).
#![cfg(feature = "signals")]

mod util;

use std::time::Duration;

use rolecore::Ctx;
use rolecore::signal::{SIGUSR1, SIGUSR2};
use util::Log;

fn raise(signal: &str) {
    let status = std::process::Command::new("kill")
        .args([signal, &std::process::id().to_string()])
        .status()
        .expect("kill(1) runs");
    assert!(status.success());
}

#[test]
fn a_signal_reaches_every_map_watching_it_on_the_loops_thread() {
    for backend in util::backends() {
        let log = Log::default();
        let mut first = util::map(backend);
        let mut second = util::map(backend);
        for (name, map) in [("first", &mut first), ("second", &mut second)] {
            let sink = log.clone();
            let thread = std::thread::current().id();
            map.on_signals(&[SIGUSR1, SIGUSR2], move |signal: i32, cx: &mut Ctx<'_>| {
                assert_eq!(std::thread::current().id(), thread, "handlers run on the loop's thread");
                sink.push(format!("{name} {}", if signal == SIGUSR1 { "usr1" } else { "usr2" }));
                cx.stop();
                Ok(())
            })
            .unwrap();
            assert!(map.is_empty(), "{backend}: signal watchers do not keep a loop alive");
        }
        raise("-USR1");
        raise("-USR1"); // coalesces with the first if the loop has not run yet
        raise("-USR2");
        // `run` would return at once (watchers alone count as empty): poll.
        for _ in 0..100 {
            first.poll(Some(Duration::from_millis(20))).unwrap();
            second.poll(Some(Duration::from_millis(20))).unwrap();
            if ["first usr1", "first usr2", "second usr1", "second usr2"].iter().all(|e| log.contains(e)) {
                break;
            }
        }
        assert!(log.contains("first usr1") && log.contains("first usr2"), "{backend}: {:?}", log.events());
        assert!(log.contains("second usr1") && log.contains("second usr2"), "{backend}: {:?}", log.events());
        assert!(log.count("first usr1") <= 2, "{backend}");
    }
}

#[test]
fn a_signal_that_cannot_be_watched_is_an_error() {
    let mut map = util::map(rolecore::Backend::Epoll);
    let err = map.on_signals(&[9], |_: i32, _: &mut Ctx<'_>| Ok(())).unwrap_err(); // SIGKILL
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("signal 9"), "{err}");
}

/// An empty list used to be `Ok` with nothing watched: the handler was
/// dropped, and the caller believed its signals caught.
#[test]
fn an_empty_list_of_signals_is_an_error() {
    let mut map = util::map(rolecore::Backend::Poll);
    let err = map.on_signals(&[], |_: i32, _: &mut Ctx<'_>| Ok(())).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{err}");
    assert!(err.to_string().contains("at least one signal"), "says what to do: {err}");
    assert_eq!(map.tokens(), [], "nothing is watched");
}

/// `on_signals` is all or nothing: a list with one signal that cannot be
/// watched leaves none of the others caught (no watcher, no descriptor),
/// so the caller's error is the whole story.
#[test]
fn a_list_with_one_signal_that_cannot_be_watched_watches_none_of_them() {
    for backend in util::backends() {
        let mut map = util::map(backend);
        for bad in [9, 0, 1000] {
            let err = map.on_signals(&[SIGUSR1, SIGUSR2, bad], |_: i32, _: &mut Ctx<'_>| Ok(())).unwrap_err();
            assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{backend}: signal {bad}: {err}");
            assert!(err.to_string().contains(&format!("signal {bad}")), "{backend}: {err}");
            assert_eq!(map.tokens(), [], "{backend}: signal {bad}: watchers were left behind");
        }
    }
}

/// The watchers a failed `on_signals` takes back were never channels: the
/// map's channels are counted as before (`len`), and the loop still runs
/// for them.
#[test]
fn watchers_taken_back_after_a_failure_leave_the_count_of_channels_alone() {
    for backend in util::backends() {
        let mut map = util::map(backend);
        let (a, _a_peer) = rolecore::Channel::pair().unwrap();
        let (b, _b_peer) = rolecore::Channel::pair().unwrap();
        map.insert(a, util::Idle).unwrap();
        map.insert(b, util::Idle).unwrap();
        assert_eq!(map.len(), 2, "{backend}");
        map.on_signals(&[SIGUSR1, SIGUSR2, 1000], |_: i32, _: &mut Ctx<'_>| Ok(())).unwrap_err();
        assert_eq!(map.tokens().len(), 2, "{backend}: watchers were left behind");
        assert_eq!(map.len(), 2, "{backend}: two channels, whatever watchers came and went");
        assert!(!map.is_empty(), "{backend}");
    }
}

/// A signal listed twice is watched once: one call per arrival, not two.
#[test]
fn a_signal_listed_twice_is_watched_once() {
    for backend in util::backends() {
        let calls = std::rc::Rc::new(std::cell::Cell::new(0));
        let mut map = util::map(backend);
        let seen = calls.clone();
        map.on_signals(&[SIGUSR2, SIGUSR2], move |_: i32, _: &mut Ctx<'_>| {
            seen.set(seen.get() + 1);
            Ok(())
        })
        .unwrap();
        assert_eq!(map.tokens().len(), 1, "{backend}: one watcher for one signal");
        raise("-USR2");
        for _ in 0..100 {
            map.poll(Some(Duration::from_millis(20))).unwrap();
            if calls.get() > 0 {
                break;
            }
        }
        map.poll(Some(Duration::ZERO)).unwrap();
        assert_eq!(calls.get(), 1, "{backend}: one signal, one call");
    }
}
