// Extra (all of D1-D12): the roles are rolecore's. `Role` is sealed, so a user
// cannot add a role of their own next to Fresh, Bound, Connecting, Connected,
// Listening and FileFd. The only error is E0277 "the trait bound `MyRole:
// channel::sealed::Sealed` is not satisfied", with rustc's note that `Role` is
// a sealed trait.
use rolecore::Role;

enum MyRole {}

impl Role for MyRole {
    const NAME: &'static str = "MyRole";
}

fn main() {}
