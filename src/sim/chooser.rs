//! Where a simulation's decisions come from: a seed, or a fuzzer's bytes.

use std::cell::Cell;

/// A deterministic source of choices, shared by the simulation and its
/// script through an `Rc`: its state is in cells, so a choice costs no
/// borrow (a `RefCell`'s flag was checked, and traced by the fuzzer, on
/// every byte taken).
#[derive(Clone, Debug)]
pub(crate) enum Chooser {
    /// xorshift64* from a seed: endless.
    Seeded(Cell<u64>),
    /// A fuzzer's input, read a byte at a time: runs out.
    Bytes { data: Vec<u8>, at: Cell<usize> },
}

impl Chooser {
    pub fn seeded(seed: u64) -> Chooser {
        // xorshift needs a non-zero state; mix the seed so 0, 1, 2… differ.
        Chooser::Seeded(Cell::new(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1))
    }

    pub fn bytes(data: &[u8]) -> Chooser {
        Chooser::Bytes { data: data.to_vec(), at: Cell::new(0) }
    }

    pub fn byte(&self) -> Option<u8> {
        match self {
            Chooser::Seeded(state) => {
                let mut x = state.get();
                x ^= x >> 12;
                x ^= x << 25;
                x ^= x >> 27;
                state.set(x);
                Some((x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8)
            }
            Chooser::Bytes { data, at } => {
                let b = data.get(at.get()).copied();
                at.set(at.get() + 1);
                b
            }
        }
    }

    pub fn is_exhausted(&self) -> bool {
        matches!(self, Chooser::Bytes { data, at } if at.get() >= data.len())
    }

    /// A number below `n` (n ≥ 1), from one or two bytes.
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
    pub fn one_in(&self, n: u8) -> bool {
        self.byte().is_some_and(|b| b % n == 0)
    }
}
