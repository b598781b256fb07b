//! The connections of one loop, charged to one [`OutputBudget`]: each
//! connection's output limit bounds one slow reader, the budget bounds all
//! of them together. When the budget runs short, the connection with the
//! most output queued, the slowest reader and the one whose going frees the
//! most, is dropped first.

// Each server uses the parts it needs.
#![allow(dead_code)]

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::marker::PhantomData;
use std::rc::Rc;

use rolecore::{AsyncChat, Ctx, OutputBudget, Token};

/// The tokens of one loop's connections, whose chats have handlers of type
/// `H`, and the budget their output is charged to.
pub struct Connections<H> {
    tokens: Rc<RefCell<BTreeSet<Token>>>,
    budget: OutputBudget,
    handler: PhantomData<fn() -> H>,
}

impl<H> Clone for Connections<H> {
    fn clone(&self) -> Self {
        Connections { tokens: Rc::clone(&self.tokens), budget: self.budget.clone(), handler: PhantomData }
    }
}

impl<H: 'static> Connections<H> {
    /// No connection yet; their output together may not pass `budget` bytes.
    pub fn new(budget: usize) -> Connections<H> {
        Connections { tokens: Rc::default(), budget: OutputBudget::new(budget), handler: PhantomData }
    }

    /// Charges `chat`'s output to the budget; call before inserting it.
    pub fn charge(&self, chat: &mut AsyncChat) {
        chat.set_budget(&self.budget);
    }

    /// Bytes the budget still has room for.
    pub fn available(&self) -> usize {
        self.budget.available()
    }

    /// A connection joined, under `token`.
    pub fn join(&self, token: Token) {
        self.tokens.borrow_mut().insert(token);
    }

    /// A connection left (closed, or dropped).
    pub fn leave(&self, token: Token) {
        self.tokens.borrow_mut().remove(&token);
    }

    /// Every connection but `me`.
    pub fn others(&self, me: Token) -> Vec<Token> {
        self.tokens.borrow().iter().copied().filter(|&t| t != me).collect()
    }

    /// Closes the connection with the most output queued, other than `me`
    /// (whose channel cannot close from inside its own callback), and
    /// reports it on stderr as `name`. Returns whether one was closed.
    pub fn drop_slowest(&self, me: Token, cx: &mut Ctx<'_>, name: &str) -> bool {
        let mut slowest: Option<(usize, Token)> = None;
        for token in self.others(me) {
            match cx.stream_mut::<AsyncChat, H>(token) {
                Some(mut chat) => {
                    let queued = chat.transport().queued();
                    if queued > 0 && slowest.is_none_or(|(most, _)| queued > most) {
                        slowest = Some((queued, token));
                    }
                }
                None => self.leave(token), // closed meanwhile
            }
        }
        let Some((queued, token)) = slowest else { return false };
        eprintln!("{name}: output budget exhausted, dropping the slowest reader ({queued} bytes queued)");
        self.leave(token);
        cx.remove(token);
        true
    }
}
