// D8 for datagrams: `send` on a datagram socket with no fixed peer. A
// `Channel<Datagram>` sends with `send_to(data, addr)`; plain `send` exists
// only once `connect` fixed the peer (`Channel<ConnectedDatagram>`).
// E0599 no method named `send` found for `Channel<Datagram>`.
use rolecore::Channel;

fn main() -> std::io::Result<()> {
    let mut socket = Channel::udp_v4()?.bind("127.0.0.1:0")?;
    socket.send(b"to whom?")?;
    Ok(())
}
