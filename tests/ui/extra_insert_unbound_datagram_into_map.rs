// Extra (D8 for datagrams): a datagram socket that was neither bound, nor
// connected, nor explicitly used unbound cannot join a map: the only error is
// E0277 "`Channel<UnboundDatagram>` cannot join a map with the handler
// `Echo`", whose note says to `bind` or `connect` it first.
use std::io;

use rolecore::{Channel, Ctx, Datagram, DatagramHandler, Map};

struct Echo;

impl DatagramHandler for Echo {
    fn handle_read(&mut self, ch: &mut Channel<Datagram>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        ch.recv_from(&mut [0u8; 64]).map(drop)
    }
}

fn main() -> io::Result<()> {
    let mut map = Map::new()?;
    map.insert(Channel::udp_v4()?, Echo)?;
    Ok(())
}
