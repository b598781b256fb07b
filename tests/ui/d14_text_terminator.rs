// D14: asynchat failed at the first read when the terminator was a `str`
// (or a float). A byte terminator takes bytes: the only error is E0308
// "expected `&[u8]`, found `&str`".
use rolecore::Terminator;

fn main() {
    let _t = Terminator::bytes("\r\n");
}
