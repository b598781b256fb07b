// extra (D8 for datagrams): a `DatagramHandler` for a socket that is not
// bound yet. Only a `Channel<Datagram>` (bound, or used `without_bind`) or a
// `Channel<ConnectedDatagram>` joins a map with a datagram handler; an
// `UnboundDatagram` must be bound or connected first. E0277 with rolecore's
// `on_unimplemented` (`DatagramRole`), saying so.
use rolecore::{Channel, Ctx, DatagramHandler, UnboundDatagram};

struct Receiver;

impl DatagramHandler<UnboundDatagram> for Receiver {
    fn handle_read(&mut self, ch: &mut Channel<UnboundDatagram>, _: &mut Ctx<'_>) -> std::io::Result<()> {
        let _ = ch;
        Ok(())
    }
}

fn main() {}
