// Extra (D8 at the map): a `Channel<Bound>` cannot join a map, even with an
// `AcceptHandler`: it must `listen` first. `Register` is not implemented for it
// with any handler, so the only error is E0277 with rolecore's own
// `on_unimplemented` message, "`Channel<Bound>` cannot join a map with the
// handler `_`", whose note ends "Fresh and Bound sockets must connect or listen
// first".
use std::io;

use rolecore::{AcceptHandler, Address, Channel, Connected, Ctx, Map};

struct Server;

impl AcceptHandler for Server {
    fn handle_accepted(&mut self, conn: Channel<Connected>, _peer: Address, _cx: &mut Ctx<'_>) -> io::Result<()> {
        drop(conn);
        Ok(())
    }
}

fn main() -> io::Result<()> {
    let bound = Channel::tcp_v4()?.bind("127.0.0.1:0")?;
    let mut map = Map::new()?;
    map.insert(bound, Server)?; // forgot `.listen(5)?`
    Ok(())
}
