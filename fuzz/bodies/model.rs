//! A plain reference model of async_chat's record splitting, shared by the
//! `framer` and `sim_chat` bodies: it looks for the terminator in the whole
//! stream, record by record, with no buffering and no partial matches, so
//! it cannot depend on how the stream was split into reads.

use rolecore::Terminator;

/// What a handler does with the terminator in `found_terminator`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// Never changes it (a completed count stays "none").
    Fixed,
    /// A header record ended by these bytes, then a counted payload whose
    /// length the header gives (`LEN n`, or else the header's length mod
    /// 17; 0 means no terminator), then the next header.
    LenHeader(Vec<u8>),
    /// After each record, one of these, picked by a hash of the record and
    /// of how many records came before.
    Switching(Vec<Terminator>),
}

/// The state of a handler that follows a [`Protocol`].
#[derive(Clone, Debug)]
pub struct Policy {
    protocol: Protocol,
    /// Whether the protocol is `Fixed`: a flag, tested without a
    /// comparison (the match on the protocol is a traced switch in a
    /// fuzzer's build, made once per record, up to hundreds of thousands
    /// of times per input).
    fixed: bool,
    in_payload: bool,
    ended: usize,
    /// `LenHeader`'s header terminator, made once.
    header: Terminator,
    /// The last payload count given.
    payload: Terminator,
}

impl Policy {
    pub fn new(protocol: &Protocol) -> Policy {
        let header = match protocol {
            Protocol::LenHeader(header) => Terminator::bytes(header),
            _ => Terminator::None,
        };
        Policy {
            protocol: protocol.clone(),
            fixed: matches!(protocol, Protocol::Fixed),
            in_payload: false,
            ended: 0,
            header,
            payload: Terminator::None,
        }
    }

    /// The count set after every record, whatever it holds, if there is
    /// one: a switching protocol of a single count (the heaviest inputs',
    /// with hundreds of thousands of one-byte records). A handler that
    /// knows it sets it without asking [`after_record`](Self::after_record)
    /// and matching its answer, traced comparisons per record in a
    /// fuzzer's build; the record count only picks among several choices.
    pub fn every_count(&self) -> Option<std::num::NonZeroUsize> {
        match &self.protocol {
            Protocol::Switching(choices) => match choices[..] {
                [Terminator::Count(n)] => Some(n),
                _ => None,
            },
            _ => None,
        }
    }

    /// The terminator to set after `record` ended, if it changes. Lent, not
    /// made: a byte terminator is an allocation, and a caller that already
    /// has an equal one keeps it (one-byte records, each ending with a
    /// terminator chosen again, made and dropped one per record).
    pub fn after_record(&mut self, record: &[u8]) -> Option<&Terminator> {
        // Wrapping: an overflow check is one more traced comparison per
        // record, for a count that cannot reach 2^64.
        self.ended = self.ended.wrapping_add(1);
        if self.fixed {
            return None;
        }
        match &self.protocol {
            Protocol::Fixed => None,
            Protocol::LenHeader(_) => {
                if self.in_payload {
                    self.in_payload = false;
                    return Some(&self.header);
                }
                self.in_payload = true;
                let n = parse_len(record).unwrap_or(record.len() % 17);
                self.payload = Terminator::count(n);
                Some(&self.payload)
            }
            // One choice: no hash to make (a one-byte record's hash was
            // most of this function's cost under a fuzzer).
            Protocol::Switching(choices) if choices.len() == 1 => Some(&choices[0]),
            Protocol::Switching(choices) => {
                let h =
                    record.iter().fold(self.ended, |h, &b| h.wrapping_mul(31).wrapping_add(usize::from(b)));
                Some(&choices[h % choices.len()])
            }
        }
    }
}

/// `LEN n` with a small `n`.
pub fn parse_len(record: &[u8]) -> Option<usize> {
    let n: usize = std::str::from_utf8(record).ok()?.strip_prefix("LEN ")?.parse().ok()?;
    (n < 1000).then_some(n)
}

pub fn naive_find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    // Every position, byte by byte: naive on purpose (the reference must not
    // share the engine's search), and without a memcmp per position, which
    // a fuzzer intercepts at a high cost. The first byte is compared at
    // every position in one pass over the haystack (one traced comparison
    // a byte, where slicing a window and zipping it made two more), the
    // rest only where it matched.
    let Some((&first, rest)) = needle.split_first() else { return Some(0) };
    let starts = haystack.len().checked_sub(rest.len())?;
    let mut from = 0;
    while let Some(i) = haystack[from..starts].iter().position(|&b| b == first) {
        let at = from + i;
        if haystack[at + 1..].iter().zip(rest).all(|(a, b)| a == b) {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// The longest proper prefix of `needle` that ends `haystack`, by definition.
pub fn naive_prefix_at_end(haystack: &[u8], needle: &[u8]) -> usize {
    (1..needle.len()).rev().find(|&l| haystack.ends_with(&needle[..l])).unwrap_or(0)
}

/// One ended record and the terminator that ended it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub data: Vec<u8>,
    /// Whether a byte terminator ended it (record limits apply only then).
    pub by_bytes: bool,
}

/// What the model says a stream splits into.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Split {
    pub records: Vec<Record>,
    /// Bytes collected after the last record (no terminator yet).
    pub tail: Vec<u8>,
    /// Bytes held back at the end because they may begin the terminator.
    pub pending: Vec<u8>,
    /// Whether the tail is collected under a byte terminator.
    pub tail_by_bytes: bool,
}

impl Split {
    /// The index of the first record over `limit` under a byte terminator,
    /// or `records.len()` if only the tail is over it, or `None`.
    pub fn first_over(&self, limit: usize) -> Option<usize> {
        self.records
            .iter()
            .position(|r| r.by_bytes && r.data.len() > limit)
            .or((self.tail_by_bytes && self.tail.len() > limit).then_some(self.records.len()))
    }
}

/// Splits `stream` as async_chat should, starting at `initial`, with the
/// handler following `protocol`.
pub fn split(stream: &[u8], initial: &Terminator, protocol: &Protocol) -> Split {
    let mut records = Vec::new();
    let end = walk(stream, initial, protocol, |data, by_bytes| {
        records.push(Record { data: data.to_vec(), by_bytes });
        true
    });
    let rest = &stream[end.at..];
    let held = match &end.terminator {
        Terminator::Bytes(t) => naive_prefix_at_end(rest, t),
        _ => 0,
    };
    let (tail, pending) = rest.split_at(rest.len() - held);
    Split {
        records,
        tail: tail.to_vec(),
        pending: pending.to_vec(),
        tail_by_bytes: matches!(end.terminator, Terminator::Bytes(_)),
    }
}

/// Where [`walk`] stopped: the offset of the first byte of no ended record
/// it handed over, and the terminator in force there.
pub struct Walked {
    pub at: usize,
    pub terminator: Terminator,
}

/// The records `stream` splits into, starting at `initial`, with the handler
/// following `protocol`: `record(data, by_bytes)` gets each one in order
/// (borrowed from `stream`, nothing copied) and returns whether to go on, so
/// a caller that needs only the first records stops there.
pub fn walk(
    stream: &[u8],
    initial: &Terminator,
    protocol: &Protocol,
    mut record: impl FnMut(&[u8], bool) -> bool,
) -> Walked {
    let mut policy = Policy::new(protocol);
    let mut terminator = initial.clone();
    let mut pos = 0;
    loop {
        let rest = &stream[pos..];
        let end = match &terminator {
            Terminator::None => None,
            Terminator::Count(n) => (rest.len() >= n.get()).then_some((n.get(), 0)),
            Terminator::Bytes(t) => naive_find(rest, t).map(|i| (i, t.len())),
        };
        let Some((len, skip)) = end else { break };
        let data = &rest[..len];
        pos += len + skip;
        let by_bytes = matches!(terminator, Terminator::Bytes(_));
        if !by_bytes {
            terminator = Terminator::None; // a completed count stays at "none"
        }
        if let Some(next) = policy.after_record(data)
            && *next != terminator
        {
            terminator = next.clone();
        }
        if !record(data, by_bytes) {
            break;
        }
    }
    Walked { at: pos, terminator }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first-byte pass finds what a comparison of the whole window at
    /// every position finds, over short words of a 3-letter alphabet, where
    /// matches overlap and repeat, and needles can be longer than the
    /// haystack.
    #[test]
    fn naive_find_agrees_with_a_window_at_every_position() {
        // Word number `n` of length `len`, its letters the digits of `n` in
        // base 3.
        let word = |mut n: usize, len: usize| -> Vec<u8> {
            (0..len)
                .map(|_| {
                    let letter = b"ab\r"[n % 3];
                    n /= 3;
                    letter
                })
                .collect()
        };
        for hay_len in 0..=6 {
            for h in 0..3usize.pow(hay_len) {
                let haystack = word(h, hay_len as usize);
                for needle_len in 1..=3 {
                    for n in 0..3usize.pow(needle_len) {
                        let needle = word(n, needle_len as usize);
                        let windows = haystack.windows(needle.len()).position(|w| w == needle);
                        assert_eq!(naive_find(&haystack, &needle), windows, "{haystack:?} {needle:?}");
                    }
                }
                assert_eq!(naive_find(&haystack, b""), Some(0));
            }
        }
    }
}
