// D10: a channel handed to the map belongs to the map: only its handler (inside
// callbacks) can reach it, and when the loop closes it nothing can touch it
// again. Using it after `Map::insert` is E0382 "borrow of moved value: `a`".
use std::io;

use rolecore::{Channel, Connected, Ctx, Map, StreamHandler};

struct Sink;

impl StreamHandler for Sink {
    fn handle_read(&mut self, ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        let mut buf = [0u8; 512];
        ch.recv(&mut buf).map(drop)
    }
}

fn main() -> io::Result<()> {
    let (mut a, _b) = Channel::pair()?;
    let mut map = Map::new()?;
    map.insert(a, Sink)?;
    a.send(b"behind the map's back")?;
    Ok(())
}
