// D4: `accept` on a fresh socket that never listened. In asyncore it raised
// OSError(EINVAL). In rolecore `accept` exists only on `Channel<Listening>`, so
// the only error is E0599 "no method named `accept` found for `Channel<Fresh>`".
use rolecore::Channel;

fn main() -> std::io::Result<()> {
    let mut fresh = Channel::tcp_v4()?;
    let _conn = fresh.accept()?;
    Ok(())
}
