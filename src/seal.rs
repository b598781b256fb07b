//! Proofs that only rolecore can make.
//!
//! Some methods of rolecore's public, sealed traits are the loop's own:
//! turning a connecting transport into a connected one (only the loop knows
//! the connect completed, D7/D21) and turning a channel and its handler into
//! a map entry (only `Map::insert` and `Ctx::insert` may, or user code could
//! drive an entry with forged readiness). Each takes a proof: an argument
//! whose type must implement a trait that only [`Seal`] implements, and
//! `Seal` has a private field. User code cannot name the traits, implement
//! them, or make a `Seal`; passing anything else fails to compile with a
//! message that says what to do instead.

/// The only proof there is. Its field is private: only rolecore makes one.
#[derive(Clone, Copy, Debug)]
pub struct Seal(pub(crate) ());

mod private {
    pub trait Sealed {}
    impl Sealed for super::Seal {}
}

/// Proof that the caller of `Pending::into_ready` is the loop.
#[diagnostic::on_unimplemented(
    message = "only rolecore's loop can make a connecting channel `Connected`",
    label = "`into_ready` is the loop's: no value you can write proves the connect completed",
    note = "insert the connecting channel (or Buffered/AsyncChat over it) into a Map with a \
            StreamHandler: when the connect completes, the loop calls `handle_connect` with the \
            channel already Connected, or `handle_connect_failed` if it did not (D7, D21)"
)]
pub trait ConnectProof: private::Sealed {}
impl ConnectProof for Seal {}

/// Proof that the caller of a `Register` method is the map.
#[diagnostic::on_unimplemented(
    message = "only a map can turn a channel and its handler into an entry",
    label = "`Register`'s methods are the map's: no value you can write stands in for it",
    note = "add the channel with `map.insert(channel, handler)`, or `cx.insert(channel, handler)` \
            inside a callback; the loop then delivers real readiness to the handler"
)]
pub trait EntryProof: private::Sealed {}
impl EntryProof for Seal {}

/// Proof that the caller of a transport's raw access (its `&mut` channel,
/// its `closing`) is the loop: through a generic `T: Transport`, whose
/// bound brings the sealed supertrait's methods into reach, a raw send
/// would overtake a `Buffered`'s or an `AsyncChat`'s queue, or write
/// plaintext under a TLS session.
#[diagnostic::on_unimplemented(
    message = "only rolecore's loop reaches a transport's raw channel",
    label = "the loop's own access: no value you can write stands in for it",
    note = "send through the transport, which keeps the order of what is queued: \
            `Channel::send`, `Buffered::send`, `AsyncChat::push`; read-only socket queries go \
            through `Transport::channel`"
)]
pub trait RawProof: private::Sealed {}
impl RawProof for Seal {}
