// D8 for datagrams: `recv_from` on a connected datagram socket. Once
// `connect` fixed the peer, datagrams come only from it: a
// `Channel<ConnectedDatagram>` has `recv`, and no `recv_from` whose address
// could only ever be that peer. E0599 no method named `recv_from` found for
// `Channel<ConnectedDatagram>`.
use rolecore::Channel;

fn main() -> std::io::Result<()> {
    let mut socket = Channel::udp_v4()?.connect("127.0.0.1:9")?;
    let mut buf = [0u8; 64];
    let (_n, _from) = socket.recv_from(&mut buf)?;
    Ok(())
}
