// D3: `connect` on a listening socket. In asyncore connect_ex gave EISCONN and
// left the listener both `connected` and `accepting`. In rolecore `connect`
// exists only on `Channel<Fresh>` and `Channel<Bound>` and consumes them, so
// the only error is E0599 "no method named `connect` found for `Channel<Listening>`".
use rolecore::Channel;

fn main() -> std::io::Result<()> {
    let listener = Channel::tcp_v4()?.bind("127.0.0.1:0")?.listen(5)?;
    let _connecting = listener.connect("127.0.0.1:9")?;
    Ok(())
}
