// Extra (D1/D2 at the map): a listener paired with a `StreamHandler`, whose
// `handle_read` would be called as connections arrive, the way asyncore
// delivered them to `handle_read` on a dispatcher that was not `accepting`
// (D13). A listener joins a map only with an `AcceptHandler`, so the only error
// is E0277 "the trait bound `Echo: AcceptHandler` is not satisfied", noting it
// is "required for `Channel<Listening>` to implement `Register<Echo>`".
use std::io;

use rolecore::{Channel, Connected, Ctx, Map, StreamHandler};

struct Echo;

impl StreamHandler for Echo {
    fn handle_read(&mut self, ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        let mut buf = [0u8; 512];
        let n = ch.recv(&mut buf)?;
        ch.send(&buf[..n]).map(drop)
    }
}

fn main() -> io::Result<()> {
    let listener = Channel::tcp_v4()?.bind("127.0.0.1:0")?.listen(5)?;
    let mut map = Map::new()?;
    map.insert(listener, Echo)?;
    Ok(())
}
