// D8: `recv` on a fresh, never-connected socket. In asyncore ENOTCONN closed
// the dispatcher and recv returned b''. In rolecore `Channel<Fresh>` has no
// `recv`, so the only error is E0599 "no method named `recv` found for
// `Channel<Fresh>`".
use rolecore::Channel;

fn main() -> std::io::Result<()> {
    let mut fresh = Channel::tcp_v4()?;
    let mut buf = [0u8; 64];
    fresh.recv(&mut buf)?;
    Ok(())
}
