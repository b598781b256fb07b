// D4: `accept` on a connecting socket (SYN_SENT). In asyncore it raised
// OSError(EINVAL). In rolecore `accept` exists only on `Channel<Listening>`, so
// the only error is E0599 "no method named `accept` found for `Channel<Connecting>`".
use rolecore::Channel;

fn main() -> std::io::Result<()> {
    let mut connecting = Channel::tcp_v4()?.connect("127.0.0.1:9")?;
    let _conn = connecting.accept()?;
    Ok(())
}
