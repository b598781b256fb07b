// D8: `send` on a fresh, never-connected socket. In asyncore EPIPE closed the
// dispatcher and send returned 0. In rolecore `Channel<Fresh>` has no `send`,
// so the only error is E0599 "no method named `send` found for `Channel<Fresh>`".
use rolecore::Channel;

fn main() -> std::io::Result<()> {
    let mut fresh = Channel::tcp_v4()?;
    fresh.send(b"nobody is there")?;
    Ok(())
}
