// D14/T45: asynchat's `set_terminator(-1)` raised ValueError. A count is a
// `usize`, so a negative one cannot be written: the only error is E0600
// "cannot apply unary operator `-` to type `usize`".
use rolecore::Terminator;

fn main() {
    let _t = Terminator::count(-1);
}
