// D5: `listen` on a connected socket. In asyncore it raised EINVAL after
// setting `accepting = True`, leaving a corrupt state. In rolecore `listen(self)`
// exists only on `Channel<Fresh>` and `Channel<Bound>`, so the only error is
// E0599 "no method named `listen` found for `Channel<Connected>`".
use rolecore::Channel;

fn main() -> std::io::Result<()> {
    let (a, _b) = Channel::pair()?;
    let _listener = a.listen(5)?;
    Ok(())
}
