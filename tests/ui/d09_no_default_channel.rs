// D9: there is no socket-less channel. asyncore's `dispatcher()` without
// `create_socket` had `socket = None`, and send/recv raised AttributeError. A
// rolecore channel always owns a descriptor: `Channel` has no `Default` (nor any
// other constructor that takes no descriptor), so the only error is E0599
// "no function or associated item named `default` found for struct `Channel<R>`".
use rolecore::{Channel, Connected};

fn main() {
    let mut ch = Channel::<Connected>::default();
    let _ = ch.send(b"into the void");
}
