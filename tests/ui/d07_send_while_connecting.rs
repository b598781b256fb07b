// D7: `send` while the connect is in progress (SYN_SENT). In asyncore it
// silently returned 0. In rolecore `Channel<Connecting>` has no `send` (only the
// loop turns it into `Channel<Connected>`, before `handle_connect`), so the only
// error is E0599 "no method named `send` found for `Channel<Connecting>`".
// Queuing output early is still possible through `Buffered<Connecting>`.
use rolecore::Channel;

fn main() -> std::io::Result<()> {
    let mut connecting = Channel::tcp_v4()?.connect("127.0.0.1:9")?;
    connecting.send(b"too early")?;
    Ok(())
}
