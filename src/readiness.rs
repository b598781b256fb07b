//! Layer 1: what a channel wants ([`Interest`]) and what a backend reported
//! ([`Readiness`]). Plain values: the pure [`machine`](crate::machine) takes
//! them without the poller's system calls, and the poller translates them to
//! and from each backend's bits.

use std::fmt;

/// Declares `const` predicates, each true when one flag's bit is set: in
/// `is_readable => READ`, `is_readable(self)` tests `Self::READ`'s bit. The
/// doc comments written before each name stay on the method.
macro_rules! flag_predicates {
    ($($(#[$doc:meta])* $name:ident => $flag:ident;)*) => {
        $(
            $(#[$doc])*
            pub const fn $name(self) -> bool {
                self.0 & Self::$flag.0 != 0
            }
        )*
    };
}

/// What a channel wants to be told about: the answer of its handler's
/// `readable()` and `writable()` predicates, as the poller sees it.
///
/// Hang-ups and errors are always reported, whatever the interest: a channel
/// that wants nothing still learns that its peer went away (asyncore did not,
/// P13).
///
/// # Examples
///
/// ```
/// use rolecore::Interest;
///
/// let both = Interest::READ | Interest::WRITE;
/// assert!(both.is_readable() && both.is_writable());
/// assert!(!Interest::NONE.is_readable());
/// ```
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Interest(u8);

impl Interest {
    /// Nothing but hang-ups and errors.
    pub const NONE: Interest = Interest(0);
    /// Readable: data, an incoming connection, or end of stream.
    pub const READ: Interest = Interest(1);
    /// Writable: room in the send buffer, or a finished connect.
    pub const WRITE: Interest = Interest(2);
    /// Priority (out-of-band) data.
    pub const PRIORITY: Interest = Interest(4);

    flag_predicates! {
        /// Whether read readiness is wanted.
        is_readable => READ;
        /// Whether write readiness is wanted.
        is_writable => WRITE;
        /// Whether priority readiness is wanted.
        is_priority => PRIORITY;
    }
    /// Whether nothing at all is wanted.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
    /// The bits, for [`Resume`](crate::map::Resume)'s one byte.
    pub(crate) const fn bits(self) -> u8 {
        self.0
    }
    /// The interest of [`bits`](Self::bits)' answer (others are dropped).
    pub(crate) const fn from_bits(bits: u8) -> Interest {
        Interest(bits & (Self::READ.0 | Self::WRITE.0 | Self::PRIORITY.0))
    }
    /// This interest with `other`'s added.
    pub const fn add(self, other: Interest) -> Interest {
        Interest(self.0 | other.0)
    }
    /// This interest with `other`'s taken away.
    pub const fn remove(self, other: Interest) -> Interest {
        Interest(self.0 & !other.0)
    }
    /// The interest of a channel from its predicates: read (with priority, as
    /// asyncore asked `POLLIN|POLLPRI` together) and write.
    pub const fn from_predicates(readable: bool, writable: bool, priority: bool) -> Interest {
        let mut bits = 0;
        if readable {
            bits |= Self::READ.0;
            if priority {
                bits |= Self::PRIORITY.0;
            }
        }
        if writable {
            bits |= Self::WRITE.0;
        }
        Interest(bits)
    }
}

impl std::ops::BitOr for Interest {
    type Output = Interest;
    fn bitor(self, rhs: Interest) -> Interest {
        self.add(rhs)
    }
}

impl fmt::Debug for Interest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_flags(f, self.0, &["READ", "WRITE", "PRIORITY"], "NONE")
    }
}

/// What a backend reported for one descriptor in one wait.
///
/// This is the input of the [`machine`](crate::machine) layer, which turns it
/// into asyncore's events.
///
/// # Examples
///
/// ```
/// use rolecore::Readiness;
///
/// let r = Readiness::READABLE | Readiness::HANGUP;
/// assert!(r.is_readable() && r.is_hangup() && !r.is_writable());
/// ```
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Readiness(u8);

impl Readiness {
    /// Nothing.
    pub const EMPTY: Readiness = Readiness(0);
    /// `POLLIN` / `EPOLLIN` / in the read set.
    pub const READABLE: Readiness = Readiness(1);
    /// `POLLOUT` / `EPOLLOUT` / in the write set.
    pub const WRITABLE: Readiness = Readiness(2);
    /// `POLLPRI` / `EPOLLPRI` / in the exception set: out-of-band data.
    pub const PRIORITY: Readiness = Readiness(4);
    /// `POLLHUP` / `EPOLLHUP`: the peer hung up.
    pub const HANGUP: Readiness = Readiness(8);
    /// `POLLERR` / `EPOLLERR`: an error is pending on the descriptor.
    pub const ERROR: Readiness = Readiness(16);
    /// `POLLNVAL`: the descriptor is not open (cannot happen to an owned
    /// channel; kept so every `poll` bit has a meaning).
    pub const INVALID: Readiness = Readiness(32);
    /// Every bit; the machine's exhaustive tests iterate `0..=ALL.bits()`.
    pub const ALL: Readiness = Readiness(63);

    /// The raw bits, for iteration and fuzzing.
    pub const fn bits(self) -> u8 {
        self.0
    }
    /// A readiness from raw bits; bits beyond [`Readiness::ALL`] are dropped.
    pub const fn from_bits_truncate(bits: u8) -> Readiness {
        Readiness(bits & Self::ALL.0)
    }
    /// Whether `other`'s bits are all set in `self`.
    pub const fn contains(self, other: Readiness) -> bool {
        self.0 & other.0 == other.0
    }
    /// Whether no bit is set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
    flag_predicates! {
        /// Readable.
        is_readable => READABLE;
        /// Writable.
        is_writable => WRITABLE;
        /// Priority data is pending.
        is_priority => PRIORITY;
        /// The peer hung up.
        is_hangup => HANGUP;
        /// An error is pending.
        is_error => ERROR;
        /// The descriptor was invalid.
        is_invalid => INVALID;
    }
    /// Any of hang-up, error or invalid: the conditions asyncore's `readwrite`
    /// turned into `handle_close`.
    pub const fn is_closed(self) -> bool {
        self.0 & (Self::HANGUP.0 | Self::ERROR.0 | Self::INVALID.0) != 0
    }
}

impl std::ops::BitOr for Readiness {
    type Output = Readiness;
    fn bitor(self, rhs: Readiness) -> Readiness {
        Readiness(self.0 | rhs.0)
    }
}

impl std::ops::BitOrAssign for Readiness {
    fn bitor_assign(&mut self, rhs: Readiness) {
        self.0 |= rhs.0;
    }
}

impl fmt::Debug for Readiness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_flags(f, self.0, &["READABLE", "WRITABLE", "PRIORITY", "HANGUP", "ERROR", "INVALID"], "EMPTY")
    }
}

fn write_flags(f: &mut fmt::Formatter<'_>, bits: u8, names: &[&str], empty: &str) -> fmt::Result {
    if bits == 0 {
        return f.write_str(empty);
    }
    let mut first = true;
    for (i, name) in names.iter().enumerate() {
        if bits & (1 << i) != 0 {
            if !first {
                f.write_str(" | ")?;
            }
            f.write_str(name)?;
            first = false;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interest_from_predicates_adds_priority_only_with_read() {
        assert_eq!(Interest::from_predicates(false, false, true), Interest::NONE);
        assert_eq!(Interest::from_predicates(true, false, true), Interest::READ | Interest::PRIORITY);
        assert_eq!(Interest::from_predicates(false, true, true), Interest::WRITE);
        assert_eq!(format!("{:?}", Interest::READ | Interest::WRITE), "READ | WRITE");
        assert_eq!(format!("{:?}", Interest::NONE), "NONE");
    }

    #[test]
    fn readiness_closed_bits() {
        assert!(!Readiness::READABLE.is_closed());
        for bit in [Readiness::HANGUP, Readiness::ERROR, Readiness::INVALID] {
            assert!(bit.is_closed());
        }
        assert_eq!(Readiness::from_bits_truncate(0xff), Readiness::ALL);
    }
}
