//! A line-based chat room on [`AsyncChat`]: every line a client sends
//! reaches every other client, prefixed with the sender's address.
//!
//! ```text
//! cargo run --release --example chat_server -- [ADDR] [--backend select|poll|epoll] [--output-budget BYTES]
//! ```
//!
//! ADDR defaults to 127.0.0.1:5555 (port 0 picks a free port); the first line
//! on stdout is `listening on HOST:PORT`. Ctrl-C or SIGTERM shuts it down
//! cleanly. The room is one loop's state, so there is no `--threads`.
//!
//! What a client sees:
//!
//! - on joining, one line from the server: `* welcome HOST:PORT, N others here`
//!   (its own address; once it is read, the client is in the room);
//! - `HOST:PORT: text` for each line another member sends (empty lines are
//!   not relayed; `\r\n` and `\n` both end a line);
//! - `! line too long (max 4096 bytes)` when its own line was longer than
//!   4096 bytes: the line is dropped, the connection stays.
//! - `! control characters are not relayed` when its own line held a
//!   control character other than a tab (a CR counts, but for one just
//!   before the `\n`; the 8-bit controls, U+0080 to U+009F or a raw
//!   `0x80`–`0x9F` byte, count too, and so do Unicode's bidirectional
//!   overrides): the line is dropped, the connection stays. A CR, backspace
//!   or escape sequence would move the others' cursor back over the
//!   sender's address and print a forged one in its place.
//!
//! # Relaying between channels
//!
//! The sender's `found_terminator` reaches each other member's chat with
//! [`Ctx::stream_mut`] and pushes the line there; when the guard is dropped
//! the loop asks that member's predicates again, so the line goes out as soon
//! as its socket can take it. A member that cannot keep up (its chat's output
//! limit is reached) is disconnected. Lines are bounded by the chat itself
//! ([`AsyncChat::set_max_record`]); `handle_record_too_long` answers and keeps
//! the connection.
//!
//! # One bound for the whole room
//!
//! Each chat's output limit (4 MiB) bounds one slow reader, not a hundred:
//! a hundred members that never read, while one member sends, would each
//! fill their queue. Every chat is therefore charged to one shared
//! [`OutputBudget`] (`--output-budget`, 64 MiB by default). A line is relayed
//! when the budget has room for all its copies; until then its sender waits,
//! and nothing more is read from it, so one member sending faster than the
//! others read slows down to their pace instead of filling the budget (a
//! 4 KiB read of short lines is megabytes of copies). The sender waits the
//! same way while a member's own queue (its 4 MiB output limit) has no room
//! for the line, so a member that reads as fast as it can is never dropped
//! for a sender that sends faster; a member whose queue has had no room for
//! a second does not read, and is disconnected. When the budget has had
//! no room for a member's line for a second, the member with the largest
//! queue — the slowest reader, and the one whose going frees the most — is
//! disconnected to make some. That may be the waiting member itself, when
//! its own unread output holds the budget: no other's going would make
//! room. The server's queued output stays within the budget whatever its
//! members do.

mod serve;
use serve::{Connections, Flag, Server};

use std::collections::VecDeque;
use std::io;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use rolecore::{
    AcceptHandler, Address, AsyncChat, BudgetFull, Channel, ChatHandler, Connected, Ctx, Listening,
    Terminator,
};

/// The longest line relayed, without its line ending.
const MAX_LINE: usize = 4096;

/// The default bound on the output queued for all members together.
const DEFAULT_OUTPUT_BUDGET: usize = 64 * 1024 * 1024;

/// The members of the room, and the budget their queued output shares.
type Room = Connections<Member>;

struct Member {
    room: Room,
    /// `HOST:PORT: `, put before each line this member sends.
    prefix: Vec<u8>,
    /// This member's lines, prefixed, that wait for room in the budget, in
    /// order. Nothing more is read from the member meanwhile, so they are at
    /// most what one read brought.
    backlog: VecDeque<Vec<u8>>,
    /// Since when the budget has had no room for the first of them.
    stalled_since: Option<Instant>,
}

/// How soon a member whose lines wait for room in the budget tries again.
const RETRY: Duration = Duration::from_millis(5);

/// How long the budget may have no room for a member's next line before the
/// slowest reader is dropped to make some: members that read keep up within
/// it, one that never reads does not.
const STALL: Duration = Duration::from_secs(1);

impl Member {
    /// Relays the waiting lines, oldest first, each while the budget has
    /// room for all its copies and every other member's queue for its copy.
    /// One member sending faster than the others
    /// read would otherwise fill the budget within one read (a 4 KiB read
    /// of short lines is megabytes of copies), and the readers, not the
    /// sender, would be dropped to make room: the sender waits instead.
    fn relay_backlog(&mut self, chat: &AsyncChat, cx: &mut Ctx<'_>) -> io::Result<()> {
        let me = cx.token();
        while let Some(message) = self.backlog.front() {
            let cost = message.len().saturating_mul(self.room.len().saturating_sub(1));
            // A line whose copies could never fit goes out as before, each
            // recipient making room for itself.
            let over_budget = cost > self.room.available() && cost <= self.room.limit();
            // Nor may a member's own queue (its output limit) be full: a
            // member reading as fast as it can, but slower than the sender
            // sends, would be dropped for it, however big the budget.
            let full = self.room.without_room(me, message.len(), cx);
            if over_budget || !full.is_empty() {
                let now = cx.now();
                let since = *self.stalled_since.get_or_insert(now);
                if now.saturating_duration_since(since) >= STALL && !full.is_empty() {
                    // A second without room for one line: these do not read.
                    for token in full {
                        eprintln!("chat_server: dropping a member whose queue had no room for a second");
                        self.room.leave(token);
                        cx.remove(token);
                    }
                    self.stalled_since = Some(now);
                    continue;
                }
                if now.saturating_duration_since(since) >= STALL {
                    // The slowest reader goes. When that is this member,
                    // its own unread output holds the budget: no other's
                    // going makes room, and waiting would wake it every
                    // `RETRY` for as long as it does not read.
                    let queued = chat.queued();
                    if queued > 0 && queued >= self.room.largest_queue(me, cx) {
                        return Err(io::Error::new(
                            io::ErrorKind::StorageFull,
                            format!(
                                "its own unread output ({queued} bytes) holds the output budget its line waits for"
                            ),
                        ));
                    }
                    if self.room.drop_slowest(me, cx, "chat_server") {
                        self.stalled_since = Some(now);
                        continue;
                    }
                }
                cx.set_deadline(me, now.checked_add(RETRY));
                return Ok(());
            }
            let message = self.backlog.pop_front().expect("looked at above");
            self.relay(&message, cx);
            self.stalled_since = None;
        }
        Ok(())
    }

    /// Pushes `message` into every other member's chat.
    fn relay(&self, message: &[u8], cx: &mut Ctx<'_>) {
        let me = cx.token();
        for token in self.room.others(me) {
            // At most one eviction per recipient: each frees the largest queue,
            // and a push is smaller than a line's worth of any queue.
            for attempt in 0..2 {
                let Some(mut member) = cx.stream_mut::<AsyncChat, Member>(token) else {
                    // Gone, or draining its last output: no longer in the room.
                    self.room.leave(token);
                    break;
                };
                let Err(e) = member.transport().push(message) else { break };
                drop(member);
                let over_budget = e.get_ref().is_some_and(|inner| inner.is::<BudgetFull>());
                if over_budget && attempt == 0 && self.room.drop_slowest(me, cx, "chat_server") {
                    continue; // the budget has room now: try again
                }
                // It does not keep up (a full queue of its own), or nothing
                // could be freed for it. Let it go.
                self.room.leave(token);
                cx.remove(token);
                break;
            }
        }
    }
}

impl ChatHandler for Member {
    // Not read while its lines wait for room (see `relay_backlog`).
    fn readable(&self, _chat: &AsyncChat) -> bool {
        self.backlog.is_empty()
    }

    // The only deadline a member has: its waiting lines try again.
    fn handle_timeout(&mut self, chat: &mut AsyncChat, cx: &mut Ctx<'_>) -> io::Result<()> {
        self.relay_backlog(chat, cx)
    }

    fn found_terminator(&mut self, chat: &mut AsyncChat, cx: &mut Ctx<'_>) -> io::Result<()> {
        let mut line = chat.take_incoming();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        if line.len() > MAX_LINE {
            return self.handle_record_too_long(chat, cx);
        }
        if moves_the_cursor(&line) {
            // The sender's address before the line is the only proof of who
            // spoke: nothing in the line may move a terminal's cursor over it.
            return chat.push(b"! control characters are not relayed\n");
        }
        if !line.is_empty() {
            let mut message = Vec::with_capacity(self.prefix.len() + line.len() + 1);
            message.extend_from_slice(&self.prefix);
            message.extend_from_slice(&line);
            message.push(b'\n');
            self.backlog.push_back(message);
            if self.backlog.len() == 1 {
                return self.relay_backlog(chat, cx);
            }
        }
        Ok(())
    }

    /// Refuse the line, keep the connection: the chat skips the rest of it.
    fn handle_record_too_long(&mut self, chat: &mut AsyncChat, _cx: &mut Ctx<'_>) -> io::Result<()> {
        chat.push(format!("! line too long (max {MAX_LINE} bytes)\n").as_bytes())
    }

    fn handle_close(&mut self, _chat: &mut AsyncChat, cx: &mut Ctx<'_>) {
        self.room.leave(cx.token());
    }

    fn handle_error(&mut self, _chat: &mut AsyncChat, error: io::Error, cx: &mut Ctx<'_>) {
        eprintln!(
            "chat_server: dropping {}: {error}",
            String::from_utf8_lossy(&self.prefix).trim_end_matches(": ")
        );
        self.room.leave(cx.token());
        cx.close();
    }
}

struct ChatServer {
    room: Room,
}

impl AcceptHandler for ChatServer {
    fn handle_accepted(
        &mut self,
        conn: Channel<Connected>,
        peer: Address,
        cx: &mut Ctx<'_>,
    ) -> io::Result<()> {
        let mut chat = AsyncChat::new(conn, Terminator::bytes(b"\n"));
        // One byte more for a `\r` before the `\n`.
        chat.set_max_record(MAX_LINE + 1);
        self.room.charge(&mut chat);
        let others = self.room.others(cx.token()).len();
        chat.push(format!("* welcome {peer}, {others} others here\n").as_bytes())?;
        let member = Member {
            room: self.room.clone(),
            prefix: format!("{peer}: ").into_bytes(),
            backlog: VecDeque::new(),
            stalled_since: None,
        };
        let token = cx.insert(chat, member)?;
        self.room.join(token);
        Ok(())
    }

    fn handle_error(&mut self, _ch: &mut Channel<Listening>, error: io::Error, _cx: &mut Ctx<'_>) {
        eprintln!("chat_server: accept failed: {error}");
    }
}

/// Whether `line` holds a control character other than a tab: an ASCII one
/// (below a space, or DEL), an 8-bit one (U+0080 to U+009F in UTF-8, or the
/// raw byte an 8-bit terminal takes for it: `0x9B` is CSI, the start of an
/// escape sequence),
/// or a bidirectional override or isolate, which makes a terminal show the
/// rest of the line, or the address before it, in another order.
fn moves_the_cursor(line: &[u8]) -> bool {
    let bidi = |c: char| matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}');
    match std::str::from_utf8(line) {
        Ok(text) => text.chars().any(|c| (c.is_control() && c != '\t') || bidi(c)),
        Err(_) => line.iter().any(|&b| (b.is_ascii_control() && b != b'\t') || (0x80..=0x9f).contains(&b)),
    }
}

fn main() -> ExitCode {
    let server = Server {
        name: "chat_server",
        default_addr: "127.0.0.1:5555",
        threads: false, // one room, one loop
        flags: &[Flag { name: "--output-budget", value: "BYTES" }],
    };
    serve::main(server, |cli| {
        // Below 64 KiB not even the welcome lines of a few members would fit.
        let budget = cli.count("--output-budget", DEFAULT_OUTPUT_BUDGET as u64, 64 << 10, 1 << 40)? as usize;
        Ok(move || ChatServer { room: Connections::new(budget) })
    })
}
