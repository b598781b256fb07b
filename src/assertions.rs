//! Compile-time promises about rolecore's types, checked with
//! `static_assertions`: which types cross threads, and the sizes the map's
//! memory per channel relies on.

use static_assertions::{assert_eq_size, assert_impl_all, assert_not_impl_any};

use crate::channel::{Bound, Channel, Connected, Connecting, FileFd, Fresh, Listening};
use crate::map::{Map, Token};

// A channel is an owned descriptor: it can move to another thread (to be
// inserted into that thread's map).
assert_impl_all!(Channel<Fresh>: Send, Sync);
assert_impl_all!(Channel<Bound>: Send, Sync);
assert_impl_all!(Channel<Connecting>: Send, Sync);
assert_impl_all!(Channel<Connected>: Send, Sync);
assert_impl_all!(Channel<Listening>: Send, Sync);
assert_impl_all!(Channel<FileFd>: Send, Sync);

// A map holds handlers of any type, `Rc` included: it stays on its thread.
assert_not_impl_any!(Map: Send, Sync);

// Tokens are plain values: copy them, send them, hash them.
assert_impl_all!(Token: Copy, Send, Sync, std::hash::Hash, Eq);
assert_eq_size!(Token, u64);

// A channel is its descriptor plus one byte of bookkeeping.
assert_eq_size!(Channel<Connected>, u64);
