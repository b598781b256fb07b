// Extra (layers): a handler written for the raw channel, inserted with a
// `Buffered` stream. Its callbacks would be handed a `Buffered<Connected>`,
// which it does not take. The only error is E0277 "`Buffered<Connected>`
// cannot join a map with the handler `Echo`", whose note lists which handler
// trait each channel needs, with no pointer into rolecore's internals.
use std::io;

use rolecore::{Buffered, Channel, Connected, Ctx, Map, StreamHandler};

struct Echo;

impl StreamHandler for Echo {
    fn handle_read(&mut self, ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        ch.recv(&mut [0u8; 64]).map(drop)
    }
}

fn main() -> io::Result<()> {
    let (a, _b) = Channel::pair()?;
    let mut map = Map::new()?;
    map.insert(Buffered::new(a), Echo)?;
    Ok(())
}
