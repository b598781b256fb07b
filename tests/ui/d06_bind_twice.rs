// D6: `bind` twice. `bind(self)` consumes a `Channel<Fresh>` and returns a
// `Channel<Bound>`, which has no `bind`, so the only error is E0599 "no method
// named `bind` found for `Channel<Bound>`".
use rolecore::Channel;

fn main() -> std::io::Result<()> {
    let bound = Channel::tcp_v4()?.bind("127.0.0.1:0")?;
    let _again = bound.bind("127.0.0.1:0")?;
    Ok(())
}
