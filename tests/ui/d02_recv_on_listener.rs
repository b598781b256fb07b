// D2: `recv` on a listening socket. In asyncore ENOTCONN closed the listener.
// In rolecore `Channel<Listening>` has no `recv`, so the only error is E0599
// "no method named `recv` found for `Channel<Listening>`".
use rolecore::Channel;

fn main() -> std::io::Result<()> {
    let mut listener = Channel::tcp_v4()?.bind("127.0.0.1:0")?.listen(5)?;
    let mut buf = [0u8; 64];
    listener.recv(&mut buf)?;
    Ok(())
}
