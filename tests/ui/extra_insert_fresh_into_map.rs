// Extra (D8 at the map): a `Channel<Fresh>` cannot join a map. A fresh socket
// has no event the loop could deliver (asyncore would have reported it
// writable and then closed it on EPIPE). `Register` is not implemented for it
// with any handler, so the only error is E0277 with rolecore's own
// `on_unimplemented` message, "`Channel<Fresh>` cannot join a map with the
// handler `_`", and a note listing what can join and "Fresh and Bound sockets
// must connect or listen first".
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
    let mut map = Map::new()?;
    map.insert(Channel::tcp_v4()?, Echo)?;
    Ok(())
}
