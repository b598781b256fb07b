// D7: `recv` while the connect is in progress (SYN_SENT). In asyncore it raised
// BlockingIOError out of asyncore.recv. In rolecore `Channel<Connecting>` has no
// `recv`, so the only error is E0599 "no method named `recv` found for
// `Channel<Connecting>`".
use rolecore::Channel;

fn main() -> std::io::Result<()> {
    let mut connecting = Channel::tcp_v4()?.connect("127.0.0.1:9")?;
    let mut buf = [0u8; 64];
    connecting.recv(&mut buf)?;
    Ok(())
}
