// D16 (asynchat's silent loss): `push` on a listener's chat queued bytes that
// nothing would ever send. `AsyncChat::push` needs `R: CanPush` (connected or
// connecting); the only error is E0277 with rolecore's `on_unimplemented`
// message: "an `AsyncChat<Listening>` cannot queue output".
use rolecore::{AsyncChat, Channel, Terminator};

fn main() -> std::io::Result<()> {
    let listener = Channel::tcp_v4()?.bind("127.0.0.1:0")?.listen(5)?;
    let mut chat = AsyncChat::new(listener, Terminator::bytes(b"\n"));
    chat.push(b"hello\n")?;
    Ok(())
}
