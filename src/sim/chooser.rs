//! Where a simulation's decisions come from: a seed, or a fuzzer's bytes.

use std::cell::Cell;

/// A deterministic source of choices, shared by the simulation and its
/// script through an `Rc`: its state is in cells, so a choice costs no
/// borrow (a `RefCell`'s flag was checked, and traced by the fuzzer, on
/// every byte taken).
///
/// A fuzzer's bytes are read first and a seed's generator runs only once
/// they are used up (a seeded chooser has none): a byte from the input
/// costs one comparison, its bounds check, where telling the two kinds
/// apart first cost another on every byte, and each is a traced call in
/// a fuzzer's build.
#[derive(Clone, Debug)]
pub(crate) struct Chooser {
    /// A fuzzer's input, read a byte at a time (empty when seeded).
    data: Vec<u8>,
    /// How many bytes were asked for.
    at: Cell<usize>,
    /// Where the choices end: the input's length, or never (`usize::MAX`)
    /// when seeded, so that telling whether they ended is one comparison.
    end: usize,
    /// xorshift64*'s state, when seeded: endless.
    seeded: Option<Cell<u64>>,
}

impl Chooser {
    pub fn seeded(seed: u64) -> Chooser {
        // xorshift needs a non-zero state; mix the seed so 0, 1, 2… differ.
        let state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        Chooser { data: Vec::new(), at: Cell::new(0), end: usize::MAX, seeded: Some(Cell::new(state)) }
    }

    pub fn bytes(data: &[u8]) -> Chooser {
        Chooser { data: data.to_vec(), at: Cell::new(0), end: data.len(), seeded: None }
    }

    #[inline(always)]
    pub fn byte(&self) -> Option<u8> {
        let at = self.at.get();
        // Wrapping: an overflow check is one more traced comparison per
        // byte in a fuzzer's build, for a count that cannot reach 2^64.
        self.at.set(at.wrapping_add(1));
        match self.data.get(at) {
            Some(&b) => Some(b),
            None => self.generated(),
        }
    }

    /// The seed's next byte; `None` for a fuzzer's input that ran out.
    #[cold]
    fn generated(&self) -> Option<u8> {
        let state = self.seeded.as_ref()?;
        let mut x = state.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        state.set(x);
        Some((x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8)
    }

    pub fn is_exhausted(&self) -> bool {
        self.at.get() >= self.end
    }

    /// A number below `n` (n ≥ 1), from one or two bytes. Inlined: most
    /// callers' `n` is a constant, and its comparisons then fold away.
    #[inline(always)]
    pub fn below(&self, n: usize) -> Option<usize> {
        if n <= 256 {
            Some(usize::from(self.byte()?) % n)
        } else {
            let hi = usize::from(self.byte()?);
            let lo = usize::from(self.byte()?);
            Some(((hi << 8) | lo) % n)
        }
    }

    /// True about once in `n` (never once the bytes ran out).
    #[inline(always)]
    pub fn one_in(&self, n: u8) -> bool {
        self.byte().is_some_and(|b| b % n == 0)
    }
}
