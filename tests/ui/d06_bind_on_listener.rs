// D6: `bind` on a listening socket. In asyncore it raised EINVAL after
// overwriting `self.addr`. In rolecore `bind` exists only on `Channel<Fresh>`, so
// the only error is E0599 "no method named `bind` found for `Channel<Listening>`".
use rolecore::Channel;

fn main() -> std::io::Result<()> {
    let listener = Channel::tcp_v4()?.bind("127.0.0.1:0")?.listen(5)?;
    let _rebound = listener.bind("127.0.0.1:0")?;
    Ok(())
}
