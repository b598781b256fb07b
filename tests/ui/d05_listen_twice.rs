// D5: `listen` on a socket that already listens. `listen(self)` consumes a
// `Channel<Fresh>`/`Channel<Bound>` and returns a `Channel<Listening>`, which
// has no `listen`, so the only error is E0599 "no method named `listen` found
// for `Channel<Listening>`".
use rolecore::Channel;

fn main() -> std::io::Result<()> {
    let listener = Channel::tcp_v4()?.bind("127.0.0.1:0")?.listen(5)?;
    let _again = listener.listen(128)?;
    Ok(())
}
