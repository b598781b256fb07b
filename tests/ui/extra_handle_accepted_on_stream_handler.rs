// Extra (D4 in handlers): asyncore's one `dispatcher` class had every
// `handle_*` method whatever the socket's role. rolecore's `StreamHandler` has
// no `handle_accepted` (only `AcceptHandler` does, for listeners), so writing
// one in `impl StreamHandler` is E0407 "method `handle_accepted` is not a
// member of trait `StreamHandler`" instead of a callback that never runs.
use std::io;

use rolecore::{Address, Channel, Connected, Ctx, StreamHandler};

struct Confused;

impl StreamHandler for Confused {
    fn handle_read(&mut self, ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        let mut buf = [0u8; 512];
        ch.recv(&mut buf).map(drop)
    }

    fn handle_accepted(&mut self, conn: Channel<Connected>, _peer: Address, _cx: &mut Ctx<'_>) -> io::Result<()> {
        drop(conn);
        Ok(())
    }
}

fn main() {}
