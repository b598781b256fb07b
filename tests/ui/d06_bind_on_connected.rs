// D6: `bind` on a connected socket. In asyncore it raised EINVAL after
// overwriting `self.addr`. In rolecore `bind` exists only on `Channel<Fresh>`, so
// the only error is E0599 "no method named `bind` found for `Channel<Connected>`".
use rolecore::Channel;

fn main() -> std::io::Result<()> {
    let (a, _b) = Channel::pair()?;
    let _rebound = a.bind("/tmp/rolecore-never-bound.sock")?;
    Ok(())
}
