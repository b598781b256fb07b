// D6 for datagrams: a datagram socket is bound once. `bind` exists only on
// `Channel<UnboundDatagram>` and gives a `Channel<Datagram>`, which has no
// `bind` (nor has a socket used `without_bind`, which the kernel binds at its
// first send). The only error is E0599 "no method named `bind` found for
// struct `Channel<Datagram>`".
fn main() -> std::io::Result<()> {
    let twice = rolecore::Channel::udp_v4()?.bind("127.0.0.1:0")?.bind("127.0.0.1:0")?;
    drop(twice);
    Ok(())
}
