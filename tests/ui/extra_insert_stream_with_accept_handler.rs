// Extra (D4 at the map): a connected stream paired with an `AcceptHandler`,
// whose default `handle_accept` would call `accept` on it. A stream joins a
// map only with a `StreamHandler`, so the only error is E0277 "the trait bound
// `Server: StreamHandler` is not satisfied", noting it is "required for
// `Channel<Connected>` to implement `Register<Server>`".
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
    let (a, _b) = Channel::pair()?;
    let mut map = Map::new()?;
    map.insert(a, Server)?;
    Ok(())
}
