//! Layer 1: [`Token`], the generation-checked handle to a channel in a
//! map, and the ids that keep one map's tokens out of another.

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicU32, Ordering};

/// A handle to a channel in a [`Map`](crate::Map): its descriptor number, a generation,
/// and the map that issued it, so a handle outlives its channel harmlessly
/// and names nothing in another map. A token that a map did not issue (or
/// whose channel closed) is refused by every call that takes one: `None`,
/// `false`, or nothing done.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Token {
    index: u32,
    generation: u32,
    /// The issuing map's id, unique in the process (see [`next_map_id`]).
    map: u32,
}

/// The last id given to a map; ids start at 1.
static LAST_MAP_ID: AtomicU32 = AtomicU32::new(0);

/// A map id no other map of this process has had. Tokens carry it, so a
/// token from one map reaches nothing in another, even when both have a
/// channel on the same descriptor with the same generation. Fails once
/// `u32::MAX` maps were made, rather than reuse an id.
pub(crate) fn next_map_id() -> io::Result<u32> {
    LAST_MAP_ID
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| last.checked_add(1))
        .map(|last| last + 1)
        .map_err(|_| io::Error::other("this process has made 4294967295 maps: map ids are used up"))
}

impl Token {
    /// The descriptor number of the channel this token was issued for.
    pub fn fd(self) -> i32 {
        self.index as i32
    }

    /// The token of slot `index` at `generation` in map `map`.
    #[inline]
    pub(crate) fn new(index: u32, generation: u32, map: u32) -> Token {
        Token { index, generation, map }
    }

    /// The id of the map that issued it.
    #[inline]
    pub(crate) fn map(self) -> u32 {
        self.map
    }

    #[inline]
    pub(crate) fn index(self) -> u32 {
        self.index
    }

    #[inline]
    pub(crate) fn generation(self) -> u32 {
        self.generation
    }

    #[inline]
    pub(crate) fn key(self) -> u64 {
        (u64::from(self.generation) << 32) | u64::from(self.index)
    }

    /// The token of map `map` that the poller key `key` stands for.
    #[inline]
    pub(crate) fn from_key(key: u64, map: u32) -> Token {
        Token { index: key as u32, generation: (key >> 32) as u32, map }
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token(fd {}, generation {}, map {})", self.index, self.generation, self.map)
    }
}
