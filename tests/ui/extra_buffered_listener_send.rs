// Extra (D1 through the buffered layer): wrapping a listener in `Buffered`
// (asyncore's dispatcher_with_send) does not give it a `send`: `Buffered::send`
// exists only for `Buffered<Connected>` (send now, queue the rest) and
// `Buffered<Connecting>` (queue until connected, T12). The only error is E0599
// "no method named `send` found for `Buffered<Listening>`".
use rolecore::{Buffered, Channel};

fn main() -> std::io::Result<()> {
    let listener = Channel::tcp_v4()?.bind("127.0.0.1:0")?.listen(5)?;
    let mut buffered = Buffered::new(listener);
    buffered.send(b"hello")?;
    Ok(())
}
