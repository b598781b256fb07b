// D13: adopting a std listener as a connected channel. A `TcpListener`
// becomes a `Channel<Listening>` (checked at run time that it listens); no
// conversion makes it a `Channel<Connected>`. E0277 the trait bound
// `Channel<Connected>: From<TcpListener>` is not satisfied (rustc lists the
// `TryFrom` impls that exist: `OwnedFd`, `TcpStream`, `UnixStream`).
use rolecore::{Channel, Connected};

fn adopt(listener: std::net::TcpListener) {
    let _conn = Channel::<Connected>::try_from(listener);
}

fn main() {
    let _ = adopt;
}
