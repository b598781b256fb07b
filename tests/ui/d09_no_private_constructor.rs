// D9/D13: a channel cannot be made in a role of the caller's choosing from an
// arbitrary descriptor. The untyped constructor `Channel::from_fd` is private
// to rolecore (users go through `TryFrom<OwnedFd>`, which probes the socket,
// or `Channel::file`), so the only error is E0624 "associated function
// `from_fd` is private".
use std::os::fd::OwnedFd;

use rolecore::{Channel, Connected};

fn main() {
    let fd: OwnedFd = std::fs::File::open("/dev/null").unwrap().into();
    let _ch = Channel::<Connected>::from_fd(fd);
}
