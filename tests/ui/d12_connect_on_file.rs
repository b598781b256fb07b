// D12: `connect` on a file channel. asyncore's file_wrapper raised
// AttributeError. In rolecore `Channel<FileFd>` has no `connect`, so the only
// error is E0599 "no method named `connect` found for `Channel<FileFd>`".
use rolecore::Channel;

fn main() -> std::io::Result<()> {
    let (reader, _writer) = std::io::pipe()?;
    let file = Channel::file(reader.into())?;
    let _connecting = file.connect("127.0.0.1:9")?;
    Ok(())
}
