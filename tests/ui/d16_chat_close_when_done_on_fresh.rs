// D16: `close_when_done` on a chat over a socket that is neither connected
// nor connecting would wait forever for a queue that is never sent. The only
// error is E0277: "an `AsyncChat<Fresh>` cannot queue output".
use rolecore::{AsyncChat, Channel, Terminator};

fn main() -> std::io::Result<()> {
    let fresh = Channel::tcp_v4()?;
    let mut chat = AsyncChat::new(fresh, Terminator::bytes(b"\n"));
    chat.close_when_done();
    Ok(())
}
