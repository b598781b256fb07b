//! asynchat's record splitting, as a pure engine.
//!
//! [`next_split`] looks at buffered input and the current [`Terminator`] and
//! says how much to hand to `collect_incoming_data`, how much to skip (the
//! terminator itself), and whether a record ended. [`AsyncChat`] runs it
//! between the handler's callbacks, so a terminator changed inside
//! `found_terminator` applies to the rest of the buffer; [`Framer`] runs it
//! on its own, for tests, fuzzing, and parsers that have no socket.
//!
//! [`AsyncChat`]: super::AsyncChat

use std::borrow::Cow;
use std::fmt;
use std::io;
use std::num::NonZeroUsize;

/// Where a record ends (asynchat's `set_terminator` argument, typed: D14).
///
/// # Examples
///
/// ```
/// use rolecore::Terminator;
///
/// assert_eq!(Terminator::bytes(b"\r\n"), Terminator::CRLF);
/// assert_eq!(&*Terminator::CRLF.as_bytes().unwrap(), b"\r\n");
/// // asynchat's "no terminator" spellings all mean None here.
/// assert_eq!(Terminator::bytes(b""), Terminator::None);
/// assert_eq!(Terminator::count(0), Terminator::None);
/// ```
///
/// A protocol that switches between a line and a byte count for every
/// record (RESP's bulk strings, HTTP's chunked bodies) sets
/// [`Terminator::CRLF`] or one made by [`Terminator::from_static`]: those
/// borrow their bytes, where [`Terminator::bytes`] copies them into a new
/// allocation each time.
///
/// The variants can be matched, but their payloads can only be made valid:
/// a [`TerminatorBytes`] is never empty and a count is a [`NonZeroUsize`],
/// so no terminator makes the splitter loop on an empty match or end an
/// empty record for nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum Terminator {
    /// No terminator: everything is collected, no record ever ends.
    #[default]
    None,
    /// A record ends at these bytes (never empty: made by
    /// [`Terminator::bytes`], [`Terminator::from_static`] or
    /// [`TerminatorBytes::new`]).
    Bytes(TerminatorBytes),
    /// A record ends after this many more bytes (never 0; see
    /// [`Terminator::count`]). When it completes the terminator becomes
    /// [`Terminator::None`] until the handler sets another, as asynchat's
    /// count reached 0 and stayed there.
    Count(NonZeroUsize),
}

/// The bytes of a [`Terminator::Bytes`]: never empty, so a record always
/// ends after at least one byte of terminator (an empty one would match
/// everywhere, and the splitter would end records forever). Dereferences to
/// `[u8]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TerminatorBytes(Cow<'static, [u8]>);

impl TerminatorBytes {
    /// Copies `bytes`; `None` if they are empty.
    pub fn new(bytes: &[u8]) -> Option<TerminatorBytes> {
        (!bytes.is_empty()).then(|| TerminatorBytes(Cow::Owned(bytes.to_vec())))
    }

    /// Borrows `bytes` (no allocation); `None` if they are empty.
    pub const fn from_static(bytes: &'static [u8]) -> Option<TerminatorBytes> {
        if bytes.is_empty() { None } else { Some(TerminatorBytes(Cow::Borrowed(bytes))) }
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.0
    }
}

impl std::ops::Deref for TerminatorBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl AsRef<[u8]> for TerminatorBytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Terminator {
    /// `\r\n`, the line end of most Internet protocols. Allocates nothing.
    pub const CRLF: Terminator = Terminator::from_static(b"\r\n");

    /// `\n`. Allocates nothing.
    pub const LF: Terminator = Terminator::from_static(b"\n");

    /// A byte terminator; empty means [`Terminator::None`] (asynchat's
    /// `set_terminator(b"")`). `\r\n` and `\n` give the borrowed
    /// [`Terminator::CRLF`] and [`Terminator::LF`]; other bytes are copied
    /// into a new allocation.
    ///
    /// Keep it short, as protocol delimiters are: the search compares the
    /// terminator where its first byte occurs, so input that repeats the
    /// terminator's start without finishing it costs up to the terminator's
    /// length per byte received (a 4 KiB terminator makes such input about
    /// 20 times slower to split than a 16-byte one, a 64 KiB one about 250).
    pub fn bytes(bytes: &[u8]) -> Terminator {
        match bytes {
            b"\r\n" => Terminator::CRLF,
            b"\n" => Terminator::LF,
            _ => TerminatorBytes::new(bytes).map_or(Terminator::None, Terminator::Bytes),
        }
    }

    /// A byte terminator that borrows its bytes, so setting it allocates
    /// nothing; empty means [`Terminator::None`].
    ///
    /// ```
    /// use rolecore::Terminator;
    ///
    /// const BLANK_LINE: Terminator = Terminator::from_static(b"\r\n\r\n");
    /// assert_eq!(BLANK_LINE, Terminator::bytes(b"\r\n\r\n"));
    /// ```
    pub const fn from_static(bytes: &'static [u8]) -> Terminator {
        if bytes.is_empty() {
            Terminator::None
        } else {
            Terminator::Bytes(TerminatorBytes(Cow::Borrowed(bytes)))
        }
    }

    /// A count terminator; 0 means [`Terminator::None`] (asynchat's
    /// `set_terminator(0)`).
    pub const fn count(n: usize) -> Terminator {
        match NonZeroUsize::new(n) {
            Some(n) => Terminator::Count(n),
            None => Terminator::None,
        }
    }

    /// The bytes of a byte terminator; `None` for the others.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Terminator::Bytes(b) => Some(b),
            _ => None,
        }
    }
}

/// One step of record splitting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Split {
    /// Bytes at the front of the buffer to pass to `collect_incoming_data`.
    pub collect: usize,
    /// Bytes after those to drop: the terminator.
    pub skip: usize,
    /// Whether a record ended: call `found_terminator`.
    pub found: bool,
    /// Whether to stop and keep the rest of the buffer for the next read
    /// (it may be the start of the terminator).
    pub keep_rest: bool,
}

/// Splits `buf` (non-empty) once under `terminator`, updating a count
/// terminator as asynchat did. The caller collects `buf[..collect]`, drops
/// `skip` more bytes, calls `found_terminator` if `found`, and goes on with
/// the rest of the buffer unless `keep_rest`.
pub fn next_split(buf: &[u8], terminator: &mut Terminator) -> Split {
    let len = buf.len();
    match terminator {
        Terminator::None => Split { collect: len, skip: 0, found: false, keep_rest: false },
        Terminator::Count(n) => {
            if len < n.get() {
                *n = NonZeroUsize::new(n.get() - len).expect("len < n");
                Split { collect: len, skip: 0, found: false, keep_rest: false }
            } else {
                let collect = n.get();
                *terminator = Terminator::None;
                Split { collect, skip: 0, found: true, keep_rest: false }
            }
        }
        Terminator::Bytes(t) => {
            if let Some(i) = find(buf, t) {
                Split { collect: i, skip: t.len(), found: true, keep_rest: false }
            } else {
                let p = find_prefix_at_end(buf, t);
                Split { collect: len - p, skip: 0, found: false, keep_rest: p > 0 }
            }
        }
    }
}

/// Where `needle` first starts in `haystack`. Scans for the needle's first
/// byte and compares the rest only there: a `\r\n\r\n` terminator is
/// checked at each `\r` of an HTTP head, not at every byte (comparing a
/// window at every position cost about 20 instructions a byte).
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    let Some((&first, rest)) = needle.split_first() else { return Some(0) };
    let last_start = haystack.len().checked_sub(needle.len())?;
    let mut from = 0;
    while from <= last_start {
        let at = from + memchr(first, &haystack[from..=last_start])?;
        if haystack[at + 1..at + needle.len()] == *rest {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// Where `byte` first occurs in `haystack`: the C library's `memchr`, which
/// std's `BufRead::skip_until` calls (it reads a slice up to and including
/// the byte, or all of it). A word at a time, not a comparison per byte,
/// and not instrumented by a fuzzer's comparison tracing, which made the
/// byte loop most of a record's cost under `cargo fuzz`.
fn memchr(byte: u8, haystack: &[u8]) -> Option<usize> {
    use std::io::BufRead;
    let mut rest = haystack;
    let through = rest.skip_until(byte).ok()?;
    // All of it was read: found only if it ends with the byte.
    (through > 0 && haystack[through - 1] == byte).then(|| through - 1)
}

/// The length of the longest proper prefix of `needle` that ends `haystack`
/// (asynchat's `find_prefix_at_end`; 0 for an empty needle, where asynchat
/// returned −1).
///
/// ```
/// use rolecore::chat::find_prefix_at_end;
///
/// assert_eq!(find_prefix_at_end(b"qwerty\r", b"\r\n"), 1);
/// assert_eq!(find_prefix_at_end(b"qwertydkjf", b"\r\n"), 0);
/// ```
pub fn find_prefix_at_end(haystack: &[u8], needle: &[u8]) -> usize {
    let mut l = needle.len().saturating_sub(1);
    while l > 0 && !haystack.ends_with(&needle[..l]) {
        l -= 1;
    }
    l
}

/// The error a handler gets when a record grows past the configured limit
/// without its terminator: the peer is sending more than the protocol
/// allows, or never sends the terminator at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordTooLong {
    /// The bound that was passed.
    pub limit: usize,
}

impl fmt::Display for RecordTooLong {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a record exceeded {} bytes without its terminator; raise the limit with \
             set_max_record if the protocol allows longer ones",
            self.limit
        )
    }
}

impl std::error::Error for RecordTooLong {}

impl RecordTooLong {
    /// This error as an `io::Error` of kind `InvalidData`.
    pub fn into_io(self) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, self)
    }

    /// The `RecordTooLong` inside an `io::Error`, if that is what it carries.
    pub fn from_io(error: &io::Error) -> Option<RecordTooLong> {
        error.get_ref()?.downcast_ref::<RecordTooLong>().copied()
    }
}

/// What a [`Framer`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framed<'a> {
    /// Bytes of the current record (`collect_incoming_data`).
    Data(&'a [u8]),
    /// The current record ended (`found_terminator`).
    End,
}

/// asynchat's input side without a socket: feed it bytes as they arrive, and
/// it reports record data and record ends, exactly as an [`AsyncChat`]
/// would report them to its handler. The callback may change the terminator.
///
/// [`AsyncChat`]: super::AsyncChat
///
/// # Examples
///
/// ```
/// use rolecore::chat::{Framed, Framer};
/// use rolecore::Terminator;
///
/// let mut framer = Framer::new(Terminator::bytes(b"\r\n"));
/// let mut records = vec![Vec::new()];
/// for chunk in [&b"hel"[..], b"lo\r", b"\nworld\r\n"] {
///     framer
///         .feed(chunk, |piece, _terminator| {
///             match piece {
///                 Framed::Data(d) => records.last_mut().unwrap().extend_from_slice(d),
///                 Framed::End => records.push(Vec::new()),
///             }
///             Ok(())
///         })
///         .unwrap();
/// }
/// assert_eq!(records, [&b"hello"[..], b"world", b""]);
/// ```
#[derive(Clone, Debug, Default)]
pub struct Framer {
    terminator: Terminator,
    pending: Vec<u8>,
    record_len: usize,
    max_record: Option<usize>,
}

impl Framer {
    /// A framer with no limit on record length.
    pub fn new(terminator: Terminator) -> Framer {
        Framer { terminator, ..Framer::default() }
    }

    /// Bounds records under a byte terminator: a record that grows past
    /// `limit` bytes fails the feed with [`RecordTooLong`].
    pub fn with_max_record(mut self, limit: usize) -> Framer {
        self.max_record = Some(limit);
        self
    }

    /// The current terminator.
    pub fn terminator(&self) -> &Terminator {
        &self.terminator
    }

    /// Replaces the terminator.
    pub fn set_terminator(&mut self, terminator: Terminator) {
        self.terminator = terminator;
    }

    /// Bytes held back because they may begin the terminator.
    pub fn pending(&self) -> &[u8] {
        &self.pending
    }

    /// Feeds bytes; `on` sees record data and record ends in order, and may
    /// change the terminator for the rest. An error from `on` (or
    /// [`RecordTooLong`]) stops the feed; unprocessed bytes are dropped.
    pub fn feed(
        &mut self,
        data: &[u8],
        mut on: impl FnMut(Framed<'_>, &mut Terminator) -> io::Result<()>,
    ) -> io::Result<()> {
        if self.pending.is_empty() {
            return self.run(data, &mut on);
        }
        let mut joined = std::mem::take(&mut self.pending);
        joined.extend_from_slice(data);
        self.run(&joined, &mut on)
    }

    fn run(
        &mut self,
        mut buf: &[u8],
        on: &mut impl FnMut(Framed<'_>, &mut Terminator) -> io::Result<()>,
    ) -> io::Result<()> {
        while !buf.is_empty() {
            let bounded = matches!(self.terminator, Terminator::Bytes(_));
            let split = next_split(buf, &mut self.terminator);
            if bounded
                && let Some(limit) = self.max_record
                && self.record_len + split.collect > limit
            {
                return Err(RecordTooLong { limit }.into_io());
            }
            if split.collect > 0 {
                self.record_len += split.collect;
                on(Framed::Data(&buf[..split.collect]), &mut self.terminator)?;
            }
            if split.keep_rest {
                self.pending.extend_from_slice(&buf[split.collect..]);
                return Ok(());
            }
            buf = &buf[split.collect + split.skip..];
            if split.found {
                self.record_len = 0;
                on(Framed::End, &mut self.terminator)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_agrees_with_a_search_at_every_position() {
        let naive = |h: &[u8], n: &[u8]| h.windows(n.len()).position(|w| w == n);
        // Every haystack up to 7 bytes and needle up to 3 over a 3-letter
        // alphabet: overlaps, repeats, needles longer than the haystack.
        let words = |max: usize| {
            let mut all = vec![Vec::new()];
            let mut last = vec![Vec::new()];
            for _ in 0..max {
                last = last.iter().flat_map(|w: &Vec<u8>| b"ab\r".map(|c| [&w[..], &[c]].concat())).collect();
                all.extend(last.iter().cloned());
            }
            all
        };
        let needles = words(3);
        for haystack in words(7) {
            for needle in needles.iter().filter(|n| !n.is_empty()) {
                assert_eq!(find(&haystack, needle), naive(&haystack, needle), "{haystack:?} {needle:?}");
            }
            assert_eq!(find(&haystack, b""), Some(0));
        }
    }

    #[test]
    fn memchr_finds_the_first_occurrence_or_none() {
        let long: Vec<u8> = (0..300).map(|i| (i % 7) as u8 + b'a').collect();
        let haystacks = [&b""[..], b"a", b"b", b"ab", b"ba", b"aab", b"bbb", &long, &long[5..], &long[..1]];
        for haystack in haystacks {
            for byte in [b'a', b'b', b'g', b'z', 0] {
                let expected = haystack.iter().position(|&b| b == byte);
                assert_eq!(memchr(byte, haystack), expected, "{byte} in {haystack:?}");
            }
        }
    }

    #[test]
    fn no_terminator_is_empty_or_zero() {
        // The payloads cannot be made invalid: an empty byte terminator and
        // a zero count do not exist, and asynchat's spellings of "none" give
        // `Terminator::None`.
        assert_eq!(TerminatorBytes::new(b""), None);
        assert_eq!(TerminatorBytes::from_static(b""), None);
        assert_eq!(Terminator::bytes(b""), Terminator::None);
        assert_eq!(Terminator::from_static(b""), Terminator::None);
        assert_eq!(Terminator::count(0), Terminator::None);
        assert_eq!(Terminator::count(3), Terminator::Count(NonZeroUsize::new(3).unwrap()));
        let ab = Terminator::Bytes(TerminatorBytes::new(b"ab").unwrap());
        assert_eq!(ab, Terminator::bytes(b"ab"));
        assert_eq!(ab.as_bytes(), Some(&b"ab"[..]));
        // Every byte terminator ends a record only after consuming input.
        let mut t = ab;
        let split = next_split(b"xab", &mut t);
        assert_eq!((split.collect, split.skip, split.found), (1, 2, true));
    }

    #[test]
    fn prefix_at_end_matches_asynchat() {
        assert_eq!(find_prefix_at_end(b"qwerty\r", b"\r\n"), 1);
        assert_eq!(find_prefix_at_end(b"qwertydkjf", b"\r\n"), 0);
        assert_eq!(find_prefix_at_end(b"abc", b"\n"), 0);
        assert_eq!(find_prefix_at_end(b"xaa", b"aab"), 2);
        assert_eq!(find_prefix_at_end(b"x\r\n\r", b"\r\n\r\n"), 3);
        assert_eq!(find_prefix_at_end(b"", b"ab"), 0);
        assert_eq!(find_prefix_at_end(b"abc", b""), 0);
    }

    /// Feeds `chunks` and returns asynchat-style events: collected data and
    /// ends, with the collected data of consecutive calls merged.
    fn records(
        t: Terminator,
        chunks: &[&[u8]],
        change: impl Fn(&[u8]) -> Option<Terminator>,
    ) -> Vec<Vec<u8>> {
        let mut framer = Framer::new(t);
        let mut out = vec![Vec::new()];
        for chunk in chunks {
            framer
                .feed(chunk, |piece, term| {
                    match piece {
                        Framed::Data(d) => out.last_mut().unwrap().extend_from_slice(d),
                        Framed::End => {
                            if let Some(next) = change(out.last().unwrap()) {
                                *term = next;
                            }
                            out.push(Vec::new());
                        }
                    }
                    Ok(())
                })
                .unwrap();
        }
        out
    }

    #[test]
    fn line_terminators_split_anywhere_give_the_same_records() {
        // T32–T34: terminators of 1, 2 and 3 bytes, input in chunks of 1–3.
        for term in [&b"\n"[..], b"\r\n", b"qqq"] {
            let mut input = Vec::new();
            for part in [&b"hello world"[..], b"I'm not dead yet!", b""] {
                input.extend_from_slice(part);
                input.extend_from_slice(term);
            }
            let whole = records(Terminator::bytes(term), &[&input], |_| None);
            for size in 1..=3 {
                let chunks: Vec<&[u8]> = input.chunks(size).collect();
                assert_eq!(records(Terminator::bytes(term), &chunks, |_| None), whole, "{term:?} by {size}");
            }
            assert_eq!(whole, [&b"hello world"[..], b"I'm not dead yet!", b"", b""]);
        }
    }

    #[test]
    fn a_count_that_completes_collects_everything_after() {
        // T35/T36 and E18: count 5 over abc|defgh|ijk.
        let out = records(Terminator::count(5), &[b"abc", b"defgh", b"ijk"], |_| None);
        assert_eq!(out, [&b"abcde"[..], b"fghijk"]);
    }

    #[test]
    fn a_terminator_changed_in_found_terminator_applies_to_the_rest() {
        // E18: LEN 4\nabcdLEN 2\nxyz\n → LEN 4, abcd, LEN 2, xy, z.
        let change = |record: &[u8]| {
            let text = std::str::from_utf8(record).ok()?;
            match text.strip_prefix("LEN ") {
                Some(n) => Some(Terminator::count(n.parse().ok()?)),
                None => Some(Terminator::bytes(b"\n")),
            }
        };
        let out = records(Terminator::bytes(b"\n"), &[b"LEN 4\nabcdLEN 2\nxyz\n"], change);
        assert_eq!(out, [&b"LEN 4"[..], b"abcd", b"LEN 2", b"xy", b"z", b""]);
    }

    #[test]
    fn no_terminator_collects_everything() {
        assert_eq!(records(Terminator::None, &[b"a\nb", b"c"], |_| None), [b"a\nbc"]);
    }

    #[test]
    fn a_partial_terminator_is_held_back() {
        let mut framer = Framer::new(Terminator::bytes(b"\r\n"));
        framer.feed(b"tail\r", |_, _| Ok(())).unwrap();
        assert_eq!(framer.pending(), b"\r");
    }

    /// A framer's record bound applies under a byte terminator only: a
    /// count terminator already says how long its record is, so a count
    /// past the bound is read whole, and the bound applies again to the
    /// lines after it.
    #[test]
    fn the_record_bound_leaves_count_records_alone() {
        let mut framer = Framer::new(Terminator::count(10)).with_max_record(4);
        let mut got = Vec::new();
        let mut on = |piece: Framed<'_>, t: &mut Terminator| {
            match piece {
                Framed::Data(d) => got.extend_from_slice(d),
                Framed::End => {
                    got.push(b'|');
                    *t = Terminator::LF;
                }
            }
            Ok(())
        };
        framer.feed(b"0123456789abcd\n", &mut on).unwrap();
        let err = framer.feed(b"abcde", &mut on).unwrap_err();
        assert_eq!(RecordTooLong::from_io(&err), Some(RecordTooLong { limit: 4 }));
        assert_eq!(got, b"0123456789|abcd|");
    }

    #[test]
    fn records_over_the_limit_fail_clearly() {
        let mut framer = Framer::new(Terminator::bytes(b"\n")).with_max_record(4);
        assert!(framer.feed(b"abcd\nab", |_, _| Ok(())).is_ok());
        let err = framer.feed(b"cde", |_, _| Ok(())).unwrap_err();
        assert_eq!(RecordTooLong::from_io(&err), Some(RecordTooLong { limit: 4 }));
        assert!(err.to_string().contains("set_max_record"));
    }
}
