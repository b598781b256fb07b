// D1: `send` on a listening socket. In asyncore this failed with EPIPE and
// closed the listener. In rolecore `Channel<Listening>` has no `send` at all, so
// the only error is E0599 "no method named `send` found for `Channel<Listening>`"
// (the compiler notes that `send` exists on `Channel<Connected>` and `Channel<FileFd>`).
use rolecore::Channel;

fn main() -> std::io::Result<()> {
    let mut listener = Channel::tcp_v4()?.bind("127.0.0.1:0")?.listen(5)?;
    listener.send(b"hello")?;
    Ok(())
}
