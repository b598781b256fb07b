// D9/D13: a channel cannot be made in a role of the caller's choosing from an
// arbitrary descriptor. There is no constructor that takes a descriptor and
// trusts it: users go through `TryFrom<OwnedFd>` (or `TryFrom` a std socket),
// which probes the socket, or `Channel::file`, which refuses sockets. The only
// error is E0599 "no function or associated item named `new` found", and
// rustc lists the constructors that do exist.
use std::os::fd::OwnedFd;

use rolecore::{Channel, Connected};

fn main() {
    let fd: OwnedFd = std::fs::File::open("/dev/null").unwrap().into();
    let _ch = Channel::<Connected>::new(fd);
}
