// D16 (issue 15): the loop's `&mut` access to a transport's channel is a
// method of a sealed supertrait of `Transport`, which a generic bound
// `T: Transport` brings into reach without naming it: `t.channel_mut()`
// compiled, and a raw send through it overtook an AsyncChat's queued
// goodbye (or a Buffered's queue, or wrote plaintext under TLS). The method
// now takes a proof only rolecore can make. The only error is E0061 "this
// method takes 1 argument but 0 arguments were supplied".
use rolecore::{AsyncChat, Channel, Connected, Terminator, Transport};

fn raw<T: Transport>(t: &mut T) -> &mut Channel<Connected> {
    t.channel_mut()
}

fn main() -> std::io::Result<()> {
    let (a, _b) = Channel::pair()?;
    let mut chat = AsyncChat::new(a, Terminator::bytes(b"\n"));
    chat.push(b"goodbye\n")?;
    chat.close_when_done();
    raw(&mut chat).send(b"overtaking\n")?;
    Ok(())
}
