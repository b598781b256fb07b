// D12: `listen` on a file channel. asyncore's file_wrapper raised
// AttributeError. In rolecore `Channel<FileFd>` has no `listen`, so the only
// error is E0599 "no method named `listen` found for `Channel<FileFd>`".
use rolecore::Channel;

fn main() -> std::io::Result<()> {
    let (reader, _writer) = std::io::pipe()?;
    let file = Channel::file(reader.into())?;
    let _listener = file.listen(5)?;
    Ok(())
}
