//! Errors as values: a failed role change gives the channel back, and
//! asyncore's set of disconnection errors.

use std::fmt;
use std::io;

/// A role change that failed, with the error and the value it was made on,
/// so nothing is lost: a failed `bind` gives the fresh channel back to try
/// another address, a failed `connect` gives it back to try another peer.
///
/// It converts into [`io::Error`], so `?` works in functions that return
/// `io::Result` (the value is then dropped, which closes its descriptor).
///
/// # Examples
///
/// ```
/// use rolecore::Channel;
///
/// # fn main() -> std::io::Result<()> {
/// let first = Channel::tcp_v4()?.bind("127.0.0.1:0")?.listen(1)?;
/// let taken = first.local_addr()?;
/// // The port is taken: bind fails, and the channel comes back unharmed.
/// let err = Channel::tcp_v4()?.bind(&taken).unwrap_err();
/// assert_eq!(err.error().kind(), std::io::ErrorKind::AddrInUse);
/// let retry = err.into_inner().bind("127.0.0.1:0")?;
/// # drop(retry);
/// # Ok(())
/// # }
/// ```
pub struct RoleError<T> {
    error: io::Error,
    inner: T,
}

impl<T> RoleError<T> {
    pub(crate) fn new(error: io::Error, inner: T) -> Self {
        RoleError { error, inner }
    }

    /// What went wrong.
    pub fn error(&self) -> &io::Error {
        &self.error
    }

    /// The value the operation was made on, unchanged.
    pub fn into_inner(self) -> T {
        self.inner
    }

    /// Both parts.
    pub fn into_parts(self) -> (io::Error, T) {
        (self.error, self.inner)
    }
}

impl<T> fmt::Debug for RoleError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RoleError")
            .field("error", &self.error)
            .field("inner", &std::any::type_name::<T>())
            .finish()
    }
}

impl<T> fmt::Display for RoleError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.error.fmt(f)
    }
}

impl<T> std::error::Error for RoleError<T> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

impl<T> From<RoleError<T>> for io::Error {
    fn from(e: RoleError<T>) -> io::Error {
        e.error
    }
}

/// Whether an error means the peer went away, the errors asyncore collected
/// in `_DISCONNECTED` (`ECONNRESET`, `ENOTCONN`, `ESHUTDOWN`, `ECONNABORTED`,
/// `EPIPE`, `EBADF`). The loop turns these into `handle_close`, never
/// `handle_error`, whichever backend reported them (D19).
///
/// # Examples
///
/// ```
/// use std::io::{Error, ErrorKind};
///
/// assert!(rolecore::is_disconnect(&Error::from(ErrorKind::ConnectionReset)));
/// assert!(!rolecore::is_disconnect(&Error::from(ErrorKind::ConnectionRefused)));
/// ```
pub fn is_disconnect(error: &io::Error) -> bool {
    use io::ErrorKind::*;
    matches!(error.kind(), ConnectionReset | NotConnected | ConnectionAborted | BrokenPipe)
        || matches!(
            error.raw_os_error(),
            Some(code) if code == rustix::io::Errno::SHUTDOWN.raw_os_error()
                || code == rustix::io::Errno::BADF.raw_os_error()
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disconnect_set_matches_asyncore() {
        use rustix::io::Errno;
        for e in
            [Errno::CONNRESET, Errno::NOTCONN, Errno::SHUTDOWN, Errno::CONNABORTED, Errno::PIPE, Errno::BADF]
        {
            assert!(is_disconnect(&io::Error::from(e)), "{e:?}");
        }
        for e in [
            Errno::CONNREFUSED,
            Errno::TIMEDOUT,
            Errno::HOSTUNREACH,
            Errno::NETUNREACH,
            Errno::AGAIN,
            Errno::MFILE,
        ] {
            assert!(!is_disconnect(&io::Error::from(e)), "{e:?}");
        }
    }
}
