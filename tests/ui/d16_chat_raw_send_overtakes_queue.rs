// D16 (issue 15): `chat.close_when_done(); chat.get_mut().send(..)` sent the
// raw bytes before the queued goodbye. An AsyncChat gives no `&mut` access to
// its channel: output goes through `push`, socket queries through `get_ref`,
// `TCP_NODELAY` through `set_nodelay`. The only error is E0599 "no method
// named `get_mut` found for struct `AsyncChat`".
use rolecore::{AsyncChat, Channel, Terminator};

fn main() -> std::io::Result<()> {
    let (a, _b) = Channel::pair()?;
    let mut chat = AsyncChat::new(a, Terminator::bytes(b"\n"));
    chat.push(b"goodbye\n")?;
    chat.close_when_done();
    chat.get_mut().send(b"overtaking\n")?;
    Ok(())
}
