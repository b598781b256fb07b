//! The loop's invariants, checked on every traced event.

use std::collections::HashMap;

use crate::token::Token;
use crate::trace::{Callback, Joined, Traced};

#[derive(Debug)]
struct Life {
    name: String,
    joined: Joined,
    connected: bool,
    closes: u32,
    failed_connect: bool,
    removed: bool,
}

/// Per-channel state of the checks; channels are named `#1`, `#2`… in the
/// order they joined, so traces do not depend on descriptor numbers.
#[derive(Debug, Default)]
pub(crate) struct Checker {
    lives: HashMap<Token, Life>,
    pub ids: HashMap<u64, u32>,
    next: u32,
}

impl Checker {
    pub fn open_streams(&self) -> Vec<String> {
        let mut open: Vec<String> = self
            .lives
            .values()
            .filter(|l| !l.removed && matches!(l.joined, Joined::Connecting | Joined::Connected))
            .map(|l| l.name.clone())
            .collect();
        open.sort();
        open
    }

    pub fn live(&self) -> usize {
        self.lives.values().filter(|l| !l.removed).count()
    }

    /// Checks one event; `Err` says which invariant broke.
    pub fn check(&mut self, token: Token, event: Traced) -> Result<String, String> {
        if let Traced::Inserted(joined) = event {
            if self.lives.get(&token).is_some_and(|l| !l.removed) {
                return Err(format!("token {token:?} inserted twice"));
            }
            self.next += 1;
            let name = format!("#{}", self.next);
            self.ids.insert(token.key(), self.next);
            let life = Life {
                name: name.clone(),
                joined,
                connected: false,
                closes: 0,
                failed_connect: false,
                removed: false,
            };
            self.lives.insert(token, life);
            return Ok(format!("{name} joined the map ({joined:?})"));
        }
        let Some(life) = self.lives.get_mut(&token) else {
            return Err(format!("an event for a channel that never joined the map ({token:?}): {event:?}"));
        };
        let name = life.name.clone();
        if life.removed {
            return Err(format!("{name}: {event:?} after the channel closed (D18, stale token D20)"));
        }
        match event {
            Traced::Inserted(_) => unreachable!("handled above"),
            Traced::Removed => {
                life.removed = true;
                Ok(format!("{name} closed"))
            }
            Traced::Called { callback, progress } => {
                if life.closes > 0 {
                    return Err(format!("{name}: {callback:?} after handle_close (D18)"));
                }
                if life.failed_connect {
                    return Err(format!("{name}: {callback:?} after handle_connect_failed"));
                }
                match (life.joined, callback) {
                    (
                        Joined::Listening,
                        Callback::Read | Callback::Write | Callback::Expt | Callback::Connect,
                    ) => {
                        return Err(format!("{name}: a listener got {callback:?}"));
                    }
                    (Joined::Connecting, Callback::Read | Callback::Write | Callback::Expt)
                        if !life.connected =>
                    {
                        return Err(format!("{name}: {callback:?} before handle_connect (D21)"));
                    }
                    (Joined::Connecting, Callback::Connect) if life.connected => {
                        return Err(format!("{name}: handle_connect twice"));
                    }
                    (
                        Joined::Connected | Joined::Listening | Joined::File,
                        Callback::Connect | Callback::ConnectFailed,
                    ) => {
                        return Err(format!("{name}: {callback:?} on a channel that never connected out"));
                    }
                    _ => {}
                }
                match callback {
                    Callback::Connect => life.connected = true,
                    Callback::ConnectFailed => life.failed_connect = true,
                    Callback::Close => life.closes += 1,
                    _ => {}
                }
                let moved = if progress { " (moved data)" } else { "" };
                Ok(format!("{name} {}{moved}", callback_name(callback)))
            }
        }
    }
}

fn callback_name(c: Callback) -> &'static str {
    match c {
        Callback::Connect => "handle_connect",
        Callback::ConnectFailed => "handle_connect_failed",
        Callback::Accept => "handle_accept",
        Callback::Read => "handle_read",
        Callback::Write => "handle_write",
        Callback::Expt => "handle_expt",
        Callback::Timeout => "handle_timeout",
        Callback::Error => "handle_error",
        Callback::Close => "handle_close",
    }
}
