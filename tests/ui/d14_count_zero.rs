// D14: a count terminator of 0 would end an empty record for nothing.
// `Terminator::Count` holds a `NonZeroUsize`, so writing the variant with 0
// does not compile: the only error is E0308 "expected `NonZero<usize>`,
// found integer". (`Terminator::count(0)` is asynchat's spelling of "no
// terminator" and gives `Terminator::None`.)
use rolecore::Terminator;

fn main() {
    let _t = Terminator::Count(0);
}
