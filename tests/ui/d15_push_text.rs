// D15: asynchat's `push` of a non-bytes value raised TypeError (and a `str`
// producer failed at send time). `push` takes bytes: the only error is E0308
// "expected `&[u8]`, found `&str`". There is no `use_encoding`.
use rolecore::{AsyncChat, Channel, Terminator};

fn main() -> std::io::Result<()> {
    let (a, _b) = Channel::pair()?;
    let mut chat = AsyncChat::new(a, Terminator::LF);
    chat.push("unicode")?;
    Ok(())
}
