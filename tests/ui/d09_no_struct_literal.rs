// D9: there is no socket-less channel, and a user cannot assemble one either:
// the fields of `Channel` are private, so a struct literal fails with "cannot
// construct `Channel<_>` with struct literal syntax due to private fields".
// (rustc's hint to use `from_fd` points at a crate-private function, which
// d09_no_private_constructor.rs shows is refused too.)
use std::os::fd::OwnedFd;

use rolecore::{Channel, Connected};

fn main() {
    let fd: OwnedFd = std::fs::File::open("/dev/null").unwrap().into();
    let _ch: Channel<Connected> = Channel { fd };
}
