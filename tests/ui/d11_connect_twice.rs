// D11: `connect` twice. In asyncore the second call returned EISCONN and
// `handle_connect` fired again. In rolecore `connect` consumes the fresh socket
// and returns a `Channel<Connecting>`, which has no `connect`, so the only error
// is E0599 "no method named `connect` found for `Channel<Connecting>`".
use rolecore::Channel;

fn main() -> std::io::Result<()> {
    let connecting = Channel::tcp_v4()?.connect("127.0.0.1:9")?;
    let _again = connecting.connect("127.0.0.1:9")?;
    Ok(())
}
