// D16: a producer queued on a datagram socket's chat would never be asked for
// its bytes (an AsyncChat is a stream transport). The only error is E0277:
// "an `AsyncChat<Datagram>` cannot queue output".
use rolecore::chat::SimpleProducer;
use rolecore::{AsyncChat, Channel, Terminator};

fn main() -> std::io::Result<()> {
    let udp = Channel::udp_v4()?;
    let mut chat = AsyncChat::new(udp, Terminator::bytes(b"\n"));
    chat.push_with_producer(SimpleProducer::new(b"bytes".to_vec(), 2))?;
    Ok(())
}
