// Extra (sealing): `Register`'s methods are the map's own. Through a bound
// `C: Register<H>` generic code can see them (supertrait methods are in scope
// through a bound), but each takes a proof that only rolecore can make, so
// user code cannot turn a channel into an entry and drive it with readiness
// it made up. The only error is E0277 "only a map can turn a channel and its
// handler into an entry", with a note saying to use `map.insert` or
// `cx.insert`.
use std::io;

use rolecore::{Channel, Connected, Ctx, Register, StreamHandler};

struct Echo;

impl StreamHandler for Echo {
    fn handle_read(&mut self, _ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        Ok(())
    }
}

fn forge<C: Register<Echo>>(channel: C) {
    let _entry = channel.into_entry(Echo, ());
}

fn main() -> io::Result<()> {
    let (a, _b) = Channel::pair()?;
    forge(a);
    Ok(())
}
