// D17: asyncore's `loop(count=-1)` ran no iterations and `timeout=-1` raised
// ValueError (select) or blocked forever (poll). The loop's count is a `u64`
// and its timeout a `Duration`: nothing negative can be written. The only
// error is E0600 "cannot apply unary operator `-` to type `u64`".
use rolecore::LoopOptions;

fn main() {
    let _options = LoopOptions::new().count(-1);
}
