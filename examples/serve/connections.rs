//! The connections of one loop, charged to one [`OutputBudget`]: each
//! connection's output limit bounds one slow reader, the budget bounds all
//! of them together. When the budget runs short, the connection with the
//! most output queued, the slowest reader and the one whose going frees the
//! most, is dropped first. With a TLS configuration, each connection
//! is inserted handshaking ([`Connections::insert`]): its handler, the same
//! as over plain TCP, sees it once the handshake completed.

// Each server uses the parts it needs.
#![allow(dead_code)]

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::io;
use std::marker::PhantomData;
use std::rc::Rc;

use rolecore::{AsyncChat, ChatHandler, Ctx, OutputBudget, Token};

/// A server's TLS configuration (`--tls-cert`, `--tls-key`); without
/// rolecore's `tls` feature there is none to have.
#[cfg(feature = "tls")]
pub type TlsConfig = std::sync::Arc<rolecore::tls::rustls::ServerConfig>;
/// A server's TLS configuration: none can exist in a build without
/// rolecore's `tls` feature.
#[cfg(not(feature = "tls"))]
#[derive(Clone)]
pub enum TlsConfig {}

/// The tokens of one loop's connections, whose chats have handlers of type
/// `H`, and the budget their output is charged to.
pub struct Connections<H> {
    tokens: Rc<RefCell<BTreeSet<Token>>>,
    budget: OutputBudget,
    tls: Option<TlsConfig>,
    handler: PhantomData<fn() -> H>,
}

impl<H> Clone for Connections<H> {
    fn clone(&self) -> Self {
        Connections {
            tokens: Rc::clone(&self.tokens),
            budget: self.budget.clone(),
            tls: self.tls.clone(),
            handler: PhantomData,
        }
    }
}

impl<H: 'static> Connections<H> {
    /// No connection yet; their output together may not pass `budget` bytes.
    pub fn new(budget: usize) -> Connections<H> {
        Connections {
            tokens: Rc::default(),
            budget: OutputBudget::new(budget),
            tls: None,
            handler: PhantomData,
        }
    }

    /// The same, each connection speaking TLS with `tls` when given.
    pub fn with_tls(mut self, tls: Option<TlsConfig>) -> Connections<H> {
        self.tls = tls;
        self
    }

    /// Inserts a connection's chat and handler (handshaking first, with a
    /// TLS configuration) and has it join.
    pub fn insert(&self, cx: &mut Ctx<'_>, chat: AsyncChat, handler: H) -> io::Result<Token>
    where
        H: ChatHandler,
    {
        let token = match &self.tls {
            None => cx.insert(chat, handler)?,
            #[cfg(feature = "tls")]
            Some(config) => cx.insert(rolecore::tls::Handshaking::server(chat, config.clone())?, handler)?,
            #[cfg(not(feature = "tls"))]
            Some(never) => match *never {},
        };
        self.join(token);
        Ok(token)
    }

    /// Charges `chat`'s output to the budget; call before inserting it.
    pub fn charge(&self, chat: &mut AsyncChat) {
        chat.set_budget(&self.budget);
    }

    /// How many connections there are.
    pub fn len(&self) -> usize {
        self.tokens.borrow().len()
    }

    /// The most bytes the budget holds.
    pub fn limit(&self) -> usize {
        self.budget.limit()
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

    /// Closes the connection whose callback this is, and has it leave: how a
    /// connection's `handle_error` ends when it gives up on the connection.
    pub fn close(&self, cx: &mut Ctx<'_>) {
        self.leave(cx.token());
        cx.close();
    }

    /// Every connection but `me`.
    pub fn others(&self, me: Token) -> Vec<Token> {
        self.tokens.borrow().iter().copied().filter(|&t| t != me).collect()
    }

    /// The connection with the most output queued, other than `me`, and
    /// how much; `None` when no other has any queued.
    fn slowest(&self, me: Token, cx: &mut Ctx<'_>) -> Option<(usize, Token)> {
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
        slowest
    }

    /// The connections other than `me` whose own queue has no room for
    /// `len` bytes more: a push of that many would pass their output limit.
    pub fn without_room(&self, me: Token, len: usize, cx: &mut Ctx<'_>) -> Vec<Token> {
        let mut full = Vec::new();
        for token in self.others(me) {
            match cx.stream_mut::<AsyncChat, H>(token) {
                Some(mut chat) => {
                    let chat = chat.transport();
                    if chat.queued().saturating_add(len) > chat.output_limit() {
                        full.push(token);
                    }
                }
                None => self.leave(token), // closed meanwhile
            }
        }
        full
    }

    /// The most output any connection but `me` has queued (0 for none).
    pub fn largest_queue(&self, me: Token, cx: &mut Ctx<'_>) -> usize {
        self.slowest(me, cx).map_or(0, |(queued, _)| queued)
    }

    /// Closes the connection with the most output queued, other than `me`
    /// (whose channel cannot close from inside its own callback), and
    /// reports it on stderr as `name`. Returns whether one was closed.
    pub fn drop_slowest(&self, me: Token, cx: &mut Ctx<'_>, name: &str) -> bool {
        let Some((queued, token)) = self.slowest(me, cx) else { return false };
        eprintln!("{name}: output budget exhausted, dropping the slowest reader ({queued} bytes queued)");
        self.leave(token);
        cx.remove(token);
        true
    }
}
