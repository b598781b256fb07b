// D17: `loop_` takes asyncore's timeout as an `Option<Duration>`, not a
// float that may be negative (or `None` with nothing to wait on, a TypeError
// under select): the only error is E0308 "expected `Option<Duration>`, found
// floating-point number".
fn main() -> std::io::Result<()> {
    rolecore::loop_(-1.0, rolecore::Backend::Poll, None, Some(1))
}
