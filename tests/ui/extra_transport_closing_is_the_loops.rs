// D16 for TLS: `Transport::closing` is what the loop calls just before it
// closes a stream (a TLS session sends its close_notify there). With
// `Transport` in scope any transport had it, and a call in a handler sent
// the close_notify while the stream went on: what followed reached the
// peer after the end of the session. It takes a proof only rolecore can
// make now. The only error is E0061 "this method takes 1 argument but 0
// arguments were supplied".
use rolecore::{Buffered, Channel, Transport};

fn main() -> std::io::Result<()> {
    let (a, _b) = Channel::pair()?;
    let mut stream = Buffered::new(a);
    stream.closing();
    stream.send(b"after the end\n")?;
    Ok(())
}
