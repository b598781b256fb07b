// D16 (issue 15): no raw path bypasses an AsyncChat's queue. The loop's
// `&mut` access to a transport's channel is a method of a trait that cannot
// be named outside rolecore, so `Transport` in scope does not reach it. The
// only error is E0599 "no method named `channel_mut` found".
use rolecore::{AsyncChat, Channel, Terminator, Transport};

fn main() -> std::io::Result<()> {
    let (a, _b) = Channel::pair()?;
    let mut chat = AsyncChat::new(a, Terminator::bytes(b"\n"));
    chat.close_when_done();
    assert!(!chat.has_queued_output());
    chat.channel_mut().send(b"overtaking\n")?;
    Ok(())
}
