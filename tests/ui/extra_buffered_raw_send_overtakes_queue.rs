// Extra (D16 for `Buffered`): `buffered.get_mut().send(..)` wrote to the
// socket underneath: before the bytes already queued (they arrived out of
// order) and, on a TLS stream (`Handshaking::server(Buffered::new(conn), ..)`,
// whose handler is handed this same `Buffered<Connected>`), as plaintext in
// the middle of the TLS records, past the encryption; a raw `recv` through it
// ate the peer's records. A `Buffered` gives no `&mut` access to its channel,
// as an `AsyncChat` gives none: output goes through `send`, socket queries
// through `get_ref`, `TCP_NODELAY` through `set_nodelay`. The only error is
// E0599 "no method named `get_mut` found for struct `Buffered`".
use rolecore::{Buffered, Channel};

fn main() -> std::io::Result<()> {
    let (a, _b) = Channel::pair()?;
    let mut buffered = Buffered::new(a);
    buffered.send(b"queued first\n")?;
    buffered.get_mut().send(b"overtaking, and never encrypted\n")?;
    Ok(())
}
