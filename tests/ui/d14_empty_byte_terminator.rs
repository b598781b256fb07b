// D14: an empty byte terminator would match everywhere, and the splitter
// would call `found_terminator` forever. `Terminator::Bytes` holds a
// `TerminatorBytes`, which is never empty and whose field is private, so it
// cannot be assembled around empty bytes: the only error is E0423 "cannot
// initialize a tuple struct which contains private fields". (Its
// constructors return `None` for empty bytes; `Terminator::bytes(b"")` is
// `Terminator::None`.)
use std::borrow::Cow;

use rolecore::chat::TerminatorBytes;
use rolecore::Terminator;

fn main() {
    let _t = Terminator::Bytes(TerminatorBytes(Cow::Borrowed(b"")));
}
