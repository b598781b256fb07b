// D6 for datagrams: binding a datagram socket after `connect`. Connecting
// an unbound socket gave it an address already; a
// `Channel<ConnectedDatagram>` has no `bind`. E0599 no method named `bind`
// found for `Channel<ConnectedDatagram>`.
use rolecore::Channel;

fn main() -> std::io::Result<()> {
    let socket = Channel::udp_v4()?.connect("127.0.0.1:9")?;
    let _bound = socket.bind("127.0.0.1:0")?;
    Ok(())
}
