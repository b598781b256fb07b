// Extra (D1/D2 in handlers): a `StreamHandler` whose callbacks are handed a
// listener. Its `handle_read` could never `recv`, and its default
// `handle_write` would send. The transport of a `StreamHandler` must be a
// connected stream (`Transport` is sealed and implemented only for
// `Channel<Connected>` and `Buffered<Connected>`), so the only error is E0277
// "the trait bound `Channel<Listening>: Transport` is not satisfied".
use std::io;

use rolecore::{Channel, Ctx, Listening, StreamHandler};

struct Confused;

impl StreamHandler<Channel<Listening>> for Confused {
    fn handle_read(&mut self, _ch: &mut Channel<Listening>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        Ok(())
    }
}

fn main() {}
