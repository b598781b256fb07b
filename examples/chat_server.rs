//! A line-based chat room on [`AsyncChat`]: every line a client sends
//! reaches every other client, prefixed with the sender's address.
//!
//! ```text
//! cargo run --release --example chat_server -- [ADDR] [--backend select|poll|epoll]
//! ```
//!
//! ADDR defaults to 127.0.0.1:5555 (port 0 picks a free port); the first line
//! on stdout is `listening on HOST:PORT`.
//!
//! What a client sees:
//!
//! - on joining, one line from the server: `* welcome HOST:PORT, N others here`
//!   (its own address; once it is read, the client is in the room);
//! - `HOST:PORT: text` for each line another member sends (empty lines are
//!   not relayed; `\r\n` and `\n` both end a line);
//! - `! line too long (max 4096 bytes)` when its own line was longer than
//!   4096 bytes: the line is dropped, the connection stays.
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

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::io::{self, Write};
use std::process::ExitCode;
use std::rc::Rc;

use rolecore::{
    AcceptHandler, Address, AsyncChat, Backend, Channel, ChatHandler, Connected, Ctx, Listening, LoopOptions,
    Map, Terminator, Token,
};

/// The longest line relayed, without its line ending.
const MAX_LINE: usize = 4096;

/// The members of the room, by token.
#[derive(Debug, Default)]
struct Room {
    members: BTreeSet<Token>,
}

type Shared = Rc<RefCell<Room>>;

struct Member {
    room: Shared,
    /// `HOST:PORT: `, put before each line this member sends.
    prefix: Vec<u8>,
}

impl Member {
    fn leave(&self, cx: &Ctx<'_>) {
        self.room.borrow_mut().members.remove(&cx.token());
    }

    /// Pushes `line` into every other member's chat.
    fn relay(&self, line: &[u8], cx: &mut Ctx<'_>) {
        let me = cx.token();
        let others: Vec<Token> = self.room.borrow().members.iter().copied().filter(|&t| t != me).collect();
        let mut message = Vec::with_capacity(self.prefix.len() + line.len() + 1);
        message.extend_from_slice(&self.prefix);
        message.extend_from_slice(line);
        message.push(b'\n');
        for token in others {
            let Some(mut member) = cx.stream_mut::<AsyncChat, Member>(token) else {
                // Gone, or draining its last output: no longer in the room.
                self.room.borrow_mut().members.remove(&token);
                continue;
            };
            if member.transport().push(&message).is_err() {
                // It does not keep up: a full output queue. Let it go.
                drop(member);
                self.room.borrow_mut().members.remove(&token);
                cx.remove(token);
            }
        }
    }
}

impl ChatHandler for Member {
    fn found_terminator(&mut self, chat: &mut AsyncChat, cx: &mut Ctx<'_>) -> io::Result<()> {
        let mut line = chat.take_incoming();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        if line.len() > MAX_LINE {
            return self.handle_record_too_long(chat, cx);
        }
        if !line.is_empty() {
            self.relay(&line, cx);
        }
        Ok(())
    }

    /// Refuse the line, keep the connection: the chat skips the rest of it.
    fn handle_record_too_long(&mut self, chat: &mut AsyncChat, _cx: &mut Ctx<'_>) -> io::Result<()> {
        chat.push(format!("! line too long (max {MAX_LINE} bytes)\n").as_bytes())
    }

    fn handle_close(&mut self, _chat: &mut AsyncChat, cx: &mut Ctx<'_>) {
        self.leave(cx);
    }

    fn handle_error(&mut self, _chat: &mut AsyncChat, error: io::Error, cx: &mut Ctx<'_>) {
        eprintln!(
            "chat_server: dropping {}: {error}",
            String::from_utf8_lossy(&self.prefix).trim_end_matches(": ")
        );
        self.leave(cx);
        cx.close();
    }
}

struct ChatServer {
    room: Shared,
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
        let others = self.room.borrow().members.len();
        chat.push(format!("* welcome {peer}, {others} others here\n").as_bytes())?;
        let member = Member { room: Rc::clone(&self.room), prefix: format!("{peer}: ").into_bytes() };
        let token = cx.insert(chat, member)?;
        self.room.borrow_mut().members.insert(token);
        Ok(())
    }

    fn handle_error(&mut self, _ch: &mut Channel<Listening>, error: io::Error, _cx: &mut Ctx<'_>) {
        eprintln!("chat_server: accept failed: {error}");
    }
}

const USAGE: &str = "usage: chat_server [ADDR] [--backend select|poll|epoll]";

fn parse_args() -> Result<(Address, Backend), String> {
    let mut addr: Address = "127.0.0.1:5555".parse().expect("a valid default");
    let mut backend = Backend::default();
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--backend" => {
                let name = it.next().ok_or("--backend needs a value")?;
                backend = name.parse().map_err(|e| format!("{e}"))?;
            }
            flag if flag.starts_with("--") => return Err(format!("unknown option {flag}")),
            _ => addr = arg.parse().map_err(|e| format!("{e}"))?,
        }
    }
    Ok((addr, backend))
}

fn main() -> ExitCode {
    let (addr, backend) = match parse_args() {
        Ok(args) => args,
        Err(msg) => {
            eprintln!("chat_server: {msg}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(addr, backend) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chat_server: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(addr: Address, backend: Backend) -> io::Result<()> {
    if let Address::Unix(rolecore::UnixAddress::Path(path)) = &addr {
        let _ = std::fs::remove_file(path); // a stale socket file from an earlier run
    }
    let listener = Channel::for_address(&addr)?.set_reuse_addr()?.bind(&addr)?.listen(1024)?;
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "listening on {}", listener.local_addr()?)?;
    stdout.flush()?;
    drop(stdout);
    let mut map = Map::with_backend(backend)?;
    map.insert(listener, ChatServer { room: Shared::default() })?;
    map.run(LoopOptions::default())
}
