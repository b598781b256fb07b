// Extra (D7 through the buffered layer): a `Buffered<Connecting>` may queue
// output before the connect completes (T12), but it cannot receive: the only
// error is E0599 "no method named `recv` found for `Buffered<Connecting>`".
use rolecore::{Buffered, Channel};

fn main() -> std::io::Result<()> {
    let mut pending = Buffered::new(Channel::tcp_v4()?.connect("127.0.0.1:9")?);
    pending.send(b"queued until connected")?; // allowed
    let mut buf = [0u8; 64];
    pending.recv(&mut buf)?;
    Ok(())
}
