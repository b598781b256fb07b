//! A `unix:PATH` left by an earlier run, removed before binding: the
//! example servers' and `netcat --listen`'s one rule for it.

/// Removes the socket file at `path` if it is stale: a socket that nothing
/// listens on (a connect is refused), left by an earlier run. A regular
/// file, or the socket of a server still listening there, is left alone
/// (the bind then fails): removing it lost the file, or left that server
/// running where no client could reach it.
pub fn remove_stale_socket(path: &std::path::Path) {
    use std::os::unix::fs::FileTypeExt;
    let is_socket = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket());
    if !is_socket {
        return;
    }
    // rolecore's connect does not block: a live server's full backlog does
    // not stall the start.
    let addr = rolecore::Address::Unix(rolecore::UnixAddress::Path(path.to_path_buf()));
    let refused = rolecore::Channel::for_address(&addr).is_ok_and(|fresh| match fresh.connect(&addr) {
        Ok(_) => false,
        Err(e) => std::io::Error::from(e).kind() == std::io::ErrorKind::ConnectionRefused,
    });
    if refused {
        let _ = std::fs::remove_file(path);
    }
}
