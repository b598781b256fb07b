// D10 (and D5/D6): a role change consumes the channel in its old role. After
// `listen`, the `Channel<Bound>` is gone; binding or listening through the old
// name again is E0382 "use of moved value: `bound`".
use rolecore::Channel;

fn main() -> std::io::Result<()> {
    let bound = Channel::tcp_v4()?.bind("127.0.0.1:0")?;
    let _listener = bound.listen(5)?;
    let _second = bound.listen(5)?;
    Ok(())
}
