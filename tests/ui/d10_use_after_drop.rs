// D10: use after close. In asyncore `send` on a closed dispatcher hit EBADF and
// called `handle_close` again. In rolecore closing a channel is dropping it (the
// descriptor closes with the value), so any later use is E0382 "borrow of moved
// value: `a`".
use rolecore::Channel;

fn main() -> std::io::Result<()> {
    let (mut a, _b) = Channel::pair()?;
    drop(a);
    a.send(b"after close")?;
    Ok(())
}
