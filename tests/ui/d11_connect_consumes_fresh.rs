// D11: `connect` twice through the same fresh socket. `connect(self)` consumes
// the `Channel<Fresh>`, so reaching it again is E0382 "use of moved value:
// `fresh`", not a second connect at run time.
use rolecore::Channel;

fn main() -> std::io::Result<()> {
    let fresh = Channel::tcp_v4()?;
    let _first = fresh.connect("127.0.0.1:9")?;
    let _second = fresh.connect("127.0.0.1:9")?;
    Ok(())
}
