// D12: `accept` on a file channel. asyncore's file_wrapper raised
// AttributeError. In rolecore `Channel<FileFd>` offers only recv, send (and
// dropping to close), so the only error is E0599 "no method named `accept`
// found for `Channel<FileFd>`".
use rolecore::Channel;

fn main() -> std::io::Result<()> {
    let (reader, _writer) = std::io::pipe()?;
    let mut file = Channel::file(reader.into())?;
    let _conn = file.accept()?;
    Ok(())
}
