// D7/D21: only the loop may turn a connecting channel into a connected one,
// because only the loop knows the connect completed. `Pending::into_ready`
// takes a seal that user code cannot construct, so skipping the connect does
// not compile.
use rolecore::{Channel, Pending};

fn main() -> std::io::Result<()> {
    let connecting = Channel::tcp_v4()?.connect("127.0.0.1:9")?;
    let mut connected = connecting.into_ready(());
    connected.send(b"x")?;
    Ok(())
}
