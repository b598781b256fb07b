// D9: there is no socket-less channel, and a user cannot assemble one either:
// the fields of `Channel` are private, so a struct literal fails with "cannot
// construct `Channel<_>` with struct literal syntax due to private fields".
// (rolecore's own unchecked constructor is a free function, so rustc has no
// constructor to hint at; d09_no_unchecked_constructor.rs shows there is none.)
use std::os::fd::OwnedFd;

use rolecore::{Channel, Connected};

fn main() {
    let fd: OwnedFd = std::fs::File::open("/dev/null").unwrap().into();
    let _ch: Channel<Connected> = Channel { fd };
}
