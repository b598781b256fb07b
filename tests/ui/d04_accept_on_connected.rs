// D4: `accept` on a connected socket. In asyncore it raised OSError(EINVAL).
// In rolecore `accept` exists only on `Channel<Listening>`, so the only error
// is E0599 "no method named `accept` found for `Channel<Connected>`".
use rolecore::Channel;

fn main() -> std::io::Result<()> {
    let (mut a, _b) = Channel::pair()?;
    let _conn = a.accept()?;
    Ok(())
}
