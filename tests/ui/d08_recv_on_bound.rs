// D8: `recv` on a bound socket that has not connected either. Binding does not
// make a socket connected, so `Channel<Bound>` has no `recv`; the only error is
// E0599 "no method named `recv` found for `Channel<Bound>`".
use rolecore::Channel;

fn main() -> std::io::Result<()> {
    let mut bound = Channel::tcp_v4()?.bind("127.0.0.1:0")?;
    let mut buf = [0u8; 64];
    bound.recv(&mut buf)?;
    Ok(())
}
