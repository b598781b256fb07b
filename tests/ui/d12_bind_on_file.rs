// D12: `bind` on a file channel. asyncore's file_wrapper raised
// AttributeError. In rolecore `Channel<FileFd>` has no `bind`, so the only
// error is E0599 "no method named `bind` found for `Channel<FileFd>`".
use rolecore::Channel;

fn main() -> std::io::Result<()> {
    let (reader, _writer) = std::io::pipe()?;
    let file = Channel::file(reader.into())?;
    let _bound = file.bind("127.0.0.1:0")?;
    Ok(())
}
