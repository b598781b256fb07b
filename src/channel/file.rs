//! The `FileFd` role: pipes, terminals, character devices and regular files.

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use rustix::io::Errno;

use super::{Channel, FileFd, Observed, read_is_recv, restarted, set_nonblocking};
use crate::error::RoleError;

impl Channel<FileFd> {
    /// Adopts a descriptor as a file channel and makes it non-blocking.
    ///
    /// `O_NONBLOCK` belongs to the open file description, which every
    /// duplicate of the descriptor shares: adopting a `dup` of stdin makes the
    /// original stdin non-blocking too.
    ///
    /// ```
    /// use rolecore::Channel;
    ///
    /// # fn main() -> std::io::Result<()> {
    /// let (reader, _writer) = std::io::pipe()?;
    /// let channel = Channel::file(reader.into())?;
    /// # drop(channel);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// A socket is refused (`InvalidInput`): its role must be checked, with
    /// `Channel::<Connected>::try_from` or `Channel::<Listening>::try_from`,
    /// or a listener could pass for a file that can `send`. So is a
    /// descriptor opened with `O_PATH` (`InvalidInput`), which can be
    /// neither read nor written.
    pub fn file(fd: OwnedFd) -> Result<Channel<FileFd>, RoleError<OwnedFd>> {
        let is_socket = rustix::fs::fstat(&fd)
            .map(|st| rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Socket);
        match is_socket {
            Ok(false) => {}
            Ok(true) => {
                let e = io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "a socket is not a file channel: adopt it with Channel::<Connected>::try_from \
                     or Channel::<Listening>::try_from, which check its role",
                );
                return Err(RoleError::new(e, fd));
            }
            Err(e) => return Err(RoleError::new(e.into(), fd)),
        }
        // An `O_PATH` descriptor names a file without opening it: no I/O, and
        // no `O_NONBLOCK`. Its `EBADF` would read as a peer gone (D19).
        if rustix::fs::fcntl_getfl(&fd).is_ok_and(|flags| flags.contains(rustix::fs::OFlags::PATH)) {
            let e = io::Error::new(
                io::ErrorKind::InvalidInput,
                "a descriptor opened with O_PATH is not a file channel: it cannot be read or \
                 written; open the file for reading or writing",
            );
            return Err(RoleError::new(e, fd));
        }
        match set_nonblocking(fd.as_fd()) {
            Ok(()) => Ok(super::wrap(fd)),
            Err(e) => Err(RoleError::new(e, fd)),
        }
    }

    /// Duplicates `fd` (close-on-exec) and adopts the duplicate, as asyncore's
    /// `file_dispatcher(fd)`: the caller keeps, and must close, the original.
    ///
    /// The duplicate shares the original's open file description, so making
    /// it non-blocking makes the original non-blocking too: after
    /// `Channel::dup_file(std::io::stdin())`, blocking reads of stdin
    /// elsewhere in the program can fail with `WouldBlock`.
    ///
    /// ```
    /// use rolecore::Channel;
    ///
    /// # fn main() -> std::io::Result<()> {
    /// let (reader, _writer) = std::io::pipe()?;
    /// let channel = Channel::dup_file(&reader)?;
    /// assert_ne!(channel.fileno(), std::os::fd::AsRawFd::as_raw_fd(&reader));
    /// # Ok(())
    /// # }
    /// ```
    pub fn dup_file(fd: impl AsFd) -> io::Result<Channel<FileFd>> {
        let dup = rustix::io::fcntl_dupfd_cloexec(fd, 0)?;
        Channel::file(dup).map_err(io::Error::from)
    }

    /// Whether the descriptor is a regular file. epoll refuses those, and
    /// they are always ready anyway: the map reports them ready on every
    /// backend without asking the kernel.
    pub fn is_regular_file(&self) -> bool {
        rustix::fs::fstat(&self.fd)
            .map(|st| rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::RegularFile)
            .unwrap_or(false)
    }

    /// Reads up to `buf.len()` bytes: `Ok(0)` at end of file (the loop then
    /// calls `handle_close`), `WouldBlock` when nothing is there yet; an
    /// `InvalidInput` error if the descriptor is not open for reading (a
    /// pipe's writing end).
    pub fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.check_open()?;
        if buf.is_empty() {
            return Ok(0);
        }
        match restarted(|| rustix::io::read(&self.fd, &mut *buf)) {
            Ok(0) => {
                self.observe(Observed::PEER_GONE | Observed::EOF);
                Ok(0)
            }
            Ok(n) => {
                self.observe(Observed::READ_PROGRESS);
                Ok(n)
            }
            Err(e) => Err(self.failed(access(e, "reading"))),
        }
    }

    /// Writes as much of `data` as fits now: `Ok(0)` when full, or when the
    /// reading end is gone (`EPIPE`; the loop then calls `handle_close`). A
    /// descriptor not open for writing (a pipe's reading end, a file opened
    /// read-only) is an `InvalidInput` error: its `EBADF` is not a peer
    /// that left, as it is on a socket.
    ///
    /// A pipe has no per-call `MSG_NOSIGNAL`: writing to a pipe whose reader
    /// is gone raises `SIGPIPE`, which Rust programs ignore by default (the
    /// `main` of a Rust binary sets it to `SIG_IGN`). A program that restores
    /// the default disposition must expect to be killed by it.
    pub fn send(&mut self, data: &[u8]) -> io::Result<usize> {
        self.check_open()?;
        let result = restarted(|| rustix::io::write(&self.fd, data));
        if let Err(e @ Errno::BADF) = result {
            return Err(access(e, "writing"));
        }
        self.sent(result)
    }
}

/// A read's or write's error: `EBADF` on a descriptor the channel owns
/// (so open) means it is not open for `what`.
fn access(e: Errno, what: &str) -> io::Error {
    if e != Errno::BADF {
        return e.into();
    }
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "this file channel's descriptor is not open for {what} (the other end of a pipe, or a file \
             opened without {what} access): {}",
            io::Error::from(e)
        ),
    )
}

read_is_recv! {
    /// Reads as [`Channel::recv`].
    FileFd
}

/// Writes with `WouldBlock` when full, as `std` expects of a non-blocking
/// descriptor.
impl io::Write for Channel<FileFd> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.check_open()?;
        match restarted(|| rustix::io::write(&self.fd, data)) {
            Ok(n) => {
                if n > 0 {
                    self.observe(Observed::WRITE_PROGRESS);
                }
                Ok(n)
            }
            Err(e) => Err(self.failed(access(e, "writing"))),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
