//! Layer 6: the handler of an [`AsyncChat`], and what makes it a
//! [`StreamHandler`]: records read and split for it, one send after each of
//! its callbacks, `close_when_done` and lingering carried out.

use std::io;

use super::async_chat::{AsyncChat, DEFAULT_IN_BUFFER_SIZE};
use super::output::LINGER_BYTES;
use super::terminator::{RecordTooLong, Terminator, next_split};
use crate::channel::Connected;
use crate::handler::StreamHandler;
use crate::map::Ctx;
use crate::report::{Level, log_info};

/// The handler of an [`AsyncChat`]: asynchat's `async_chat` subclass.
///
/// Only [`found_terminator`](Self::found_terminator) is required; the default
/// [`collect_incoming_data`](Self::collect_incoming_data) gathers the record
/// in the chat, where [`AsyncChat::take_incoming`] takes it.
pub trait ChatHandler: 'static {
    /// Whether to read. Default: always.
    fn readable(&self, chat: &AsyncChat) -> bool {
        let _ = chat;
        true
    }

    /// Bytes of the current record. Default: [`AsyncChat::collect`].
    fn collect_incoming_data(&mut self, data: &[u8], chat: &mut AsyncChat) -> io::Result<()> {
        chat.collect(data);
        Ok(())
    }

    /// The current record ended. May change the terminator for the rest.
    fn found_terminator(&mut self, chat: &mut AsyncChat, cx: &mut Ctx<'_>) -> io::Result<()>;

    /// A record grew past [`AsyncChat::max_record`] without its terminator.
    /// Default: fail with [`RecordTooLong`] (reported, and the channel
    /// closed, by the default `handle_error`). Return `Ok` to go on: what
    /// was collected of the record is dropped, the rest of it up to its
    /// terminator is skipped, and the next record is read as usual — a line
    /// protocol can answer "line too long" and keep the connection.
    ///
    /// Under [`Terminator::None`] the record never ends: this is called
    /// when the default collector's record ([`AsyncChat::incoming`]) grew
    /// past `max_record`, and what it held is dropped (a peer cannot make
    /// it hold more). A `collect_incoming_data` of your own that keeps the
    /// bytes elsewhere is not limited.
    fn handle_record_too_long(&mut self, chat: &mut AsyncChat, cx: &mut Ctx<'_>) -> io::Result<()> {
        let _ = cx;
        Err(RecordTooLong { limit: chat.max_record() }.into_io())
    }

    /// The connect completed (for chats that connected out).
    fn handle_connect(&mut self, chat: &mut AsyncChat, cx: &mut Ctx<'_>) -> io::Result<()> {
        let _ = (chat, cx);
        Ok(())
    }

    /// The connect failed. Default: report it in one line.
    fn handle_connect_failed(&mut self, error: io::Error, cx: &mut Ctx<'_>) {
        let _ = cx;
        log_info(Level::Error, format_args!("connect failed for {}: {error}", std::any::type_name::<Self>()));
    }

    /// The deadline or idle timeout passed. Default: `handle_close`, then
    /// close.
    fn handle_timeout(&mut self, chat: &mut AsyncChat, cx: &mut Ctx<'_>) -> io::Result<()> {
        self.handle_close(chat, cx);
        cx.close();
        Ok(())
    }

    /// The peer went away, or `close_when_done` finished. Called once; the
    /// channel is closed after. Unlike asyncore's, silent by default.
    fn handle_close(&mut self, chat: &mut AsyncChat, cx: &mut Ctx<'_>) {
        let _ = (chat, cx);
    }

    /// A callback failed (for instance with [`RecordTooLong`]). Default:
    /// report one line, `handle_close`, close.
    fn handle_error(&mut self, chat: &mut AsyncChat, error: io::Error, cx: &mut Ctx<'_>) {
        log_info(
            Level::Error,
            format_args!(
                "uncaptured error, closing channel {:?} of {}: {error}",
                chat.channel,
                std::any::type_name::<Self>()
            ),
        );
        self.handle_close(chat, cx);
        cx.close();
    }
}

/// After any callback: one send for what it queued, then `close_when_done`
/// takes effect once the queue before it is out.
fn finish<H: ChatHandler>(
    handler: &mut H,
    chat: &mut AsyncChat,
    cx: &mut Ctx<'_>,
    result: io::Result<()>,
) -> io::Result<()> {
    let result = result.and_then(|()| if cx.is_closing() { Ok(()) } else { chat.initiate_send() });
    if result.is_ok()
        && chat.output.done()
        && !chat.tls.wants_write()
        && !cx.is_closing()
        && !chat.output.linger.active
    {
        match chat.output.linger.time {
            // The sending side is shut down after everything queued: the
            // peer reads it all, then the end of the stream.
            // (After a TLS stream's close_notify.)
            Some(time) if chat.tls.shutdown_write(&mut chat.channel).is_ok() => {
                chat.output.linger.active = true;
                let at = cx.now().checked_add(time);
                cx.set_deadline(cx.token(), at);
            }
            _ => {
                handler.handle_close(chat, cx);
                cx.close();
            }
        }
    }
    result
}

/// One read while lingering: the input is dropped; the peer's end of stream
/// ends the lingering (the loop then calls `handle_close`), and so does
/// [`LINGER_BYTES`] of input.
fn linger_read<H: ChatHandler>(handler: &mut H, chat: &mut AsyncChat, cx: &mut Ctx<'_>) -> io::Result<()> {
    let mut scratch = cx.take_scratch(DEFAULT_IN_BUFFER_SIZE);
    let read = chat.tls.recv(&mut chat.channel, &mut scratch);
    cx.put_scratch(scratch);
    let read = match read {
        // A TLS peer that leaves without close_notify once everything was
        // sent truncates nothing the conversation still needed.
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            handler.handle_close(chat, cx);
            cx.close();
            return Ok(());
        }
        read => read?,
    };
    chat.output.linger.discarded += read;
    if chat.output.linger.discarded > LINGER_BYTES {
        handler.handle_close(chat, cx);
        cx.close();
    }
    Ok(())
}

impl<H: ChatHandler> StreamHandler<AsyncChat> for H {
    fn readable(&self, chat: &AsyncChat) -> bool {
        // Lingering, the chat reads (and drops) until the peer closes.
        chat.output.linger.active || (ChatHandler::readable(self, chat) && !chat.output.closing)
    }

    fn handle_connect(&mut self, chat: &mut AsyncChat, cx: &mut Ctx<'_>) -> io::Result<()> {
        let result = ChatHandler::handle_connect(self, chat, cx);
        finish(self, chat, cx, result)
    }

    fn handle_connect_failed(&mut self, error: io::Error, cx: &mut Ctx<'_>) {
        ChatHandler::handle_connect_failed(self, error, cx);
    }

    fn handle_read(&mut self, chat: &mut AsyncChat, cx: &mut Ctx<'_>) -> io::Result<()> {
        if chat.output.linger.active {
            return linger_read(self, chat, cx);
        }
        let result = chat.read_records(self, cx);
        finish(self, chat, cx, result)
    }

    fn handle_write(&mut self, chat: &mut AsyncChat, cx: &mut Ctx<'_>) -> io::Result<()> {
        finish(self, chat, cx, Ok(()))
    }

    fn handle_timeout(&mut self, chat: &mut AsyncChat, cx: &mut Ctx<'_>) -> io::Result<()> {
        if chat.output.linger.active {
            // The peer did not close in time: close anyway.
            ChatHandler::handle_close(self, chat, cx);
            cx.close();
            return Ok(());
        }
        let result = ChatHandler::handle_timeout(self, chat, cx);
        finish(self, chat, cx, result)
    }

    fn handle_close(&mut self, chat: &mut AsyncChat, cx: &mut Ctx<'_>) {
        ChatHandler::handle_close(self, chat, cx);
    }

    fn handle_error(&mut self, chat: &mut AsyncChat, error: io::Error, cx: &mut Ctx<'_>) {
        ChatHandler::handle_error(self, chat, error, cx);
    }
}

impl AsyncChat<Connected> {
    /// Reads once and runs the terminator engine over what arrived, calling
    /// the handler's `collect_incoming_data` and `found_terminator`.
    fn read_records<H: ChatHandler>(&mut self, handler: &mut H, cx: &mut Ctx<'_>) -> io::Result<()> {
        if self.input.unexamined {
            return self.split_held(handler, cx);
        }
        let mut scratch = cx.take_scratch(self.input.in_buffer_size);
        let result = match self.tls.recv(&mut self.channel, &mut scratch[..self.input.in_buffer_size]) {
            // The end: the loop calls handle_close, after what was held.
            Ok(0) if self.input.held.is_empty() => Ok(()),
            Ok(0) => self.split_held(handler, cx),
            Ok(n) if self.input.held.is_empty() => self.split_records(&scratch[..n], handler, cx),
            Ok(n) => {
                self.input.unexamined = false;
                let mut joined = std::mem::take(&mut self.input.held);
                joined.extend_from_slice(&scratch[..n]);
                self.split_records(&joined, handler, cx)
            }
            Err(e) => Err(e),
        };
        cx.put_scratch(scratch);
        result
    }

    /// Splits the input held back, with nothing new: what a failed callback
    /// left unexamined, before anything more is read (records the peer sent
    /// all at once are not held until it sends again, which a peer awaiting
    /// its replies never does), or whatever is held at the peer's end of
    /// stream, before `handle_close`, where it would be lost. A partial
    /// terminator still held then stays uncollected (P16).
    #[cold]
    #[inline(never)]
    fn split_held<H: ChatHandler>(&mut self, handler: &mut H, cx: &mut Ctx<'_>) -> io::Result<()> {
        self.input.unexamined = false;
        let held = std::mem::take(&mut self.input.held);
        self.split_records(&held, handler, cx)
    }

    /// A callback failed before the split got to `rest`: kept for the
    /// handler, if it survives its error, to be split without new input.
    fn hold_unexamined(&mut self, rest: &[u8]) {
        self.input.held.extend_from_slice(rest);
        self.input.unexamined = true;
    }

    fn split_records<H: ChatHandler>(
        &mut self,
        mut rest: &[u8],
        handler: &mut H,
        cx: &mut Ctx<'_>,
    ) -> io::Result<()> {
        while !rest.is_empty() {
            if self.output.closing {
                // close_when_done: the conversation is over; what the peer
                // sent after it is not read as more records.
                return Ok(());
            }
            if self.input.counting {
                // A count, on its own path: no record limit, nothing skipped
                // or held back, so none of the checks below apply (what
                // `next_split` and they would do, with fewer branches per
                // record: a protocol of many small counted records pays
                // them for every one).
                self.input.skipping = false;
                let want = self.input.count;
                let Some((data, after)) = rest.split_at_checked(want) else {
                    self.input.set_terminator(Terminator::count(want - rest.len()));
                    self.input.record_len += rest.len();
                    return handler.collect_incoming_data(rest, self);
                };
                self.input.set_terminator(Terminator::None);
                // Wrapping: bytes received cannot count to 2^64, and an
                // overflow check is a traced comparison per record in a
                // fuzzing build.
                self.input.record_len = self.input.record_len.wrapping_add(want);
                if let Err(e) = handler.collect_incoming_data(data, self) {
                    self.hold_unexamined(after);
                    return Err(e);
                }
                rest = after;
                self.input.record_len = 0;
                if let Err(e) = handler.found_terminator(self, cx) {
                    self.hold_unexamined(rest);
                    return Err(e);
                }
                continue;
            }
            let bounded = self.input.by_bytes;
            self.input.skipping &= bounded;
            // None or bytes, which the split does not change (a count it
            // would: counts take the path above).
            let split = next_split(rest, &mut self.input.terminator);
            if self.input.skipping {
                // The rest of a record the handler chose to skip.
                if split.keep_rest {
                    self.input.held.extend_from_slice(&rest[split.collect..]);
                    return Ok(());
                }
                rest = &rest[split.collect + split.skip..];
                if split.found {
                    self.input.skipping = false;
                    self.input.record_len = 0;
                }
                continue;
            }
            if bounded && self.input.record_len + split.collect > self.input.max_record {
                self.input.incoming.clear();
                self.input.record_len = 0;
                self.input.skipping = true;
                if let Err(e) = handler.handle_record_too_long(self, cx) {
                    self.hold_unexamined(rest);
                    return Err(e);
                }
                continue; // the same bytes again, now skipped
            }
            if split.collect > 0 {
                self.input.record_len += split.collect;
                if let Err(e) = handler.collect_incoming_data(&rest[..split.collect], self) {
                    self.hold_unexamined(&rest[split.collect..]);
                    return Err(e);
                }
                if !bounded && self.input.incoming.len() > self.input.max_record {
                    // No terminator: the record never ends, and the default
                    // collector would keep all the peer sends. It is
                    // bounded as a line is (a collector of its own, which
                    // leaves `incoming` empty, is never stopped here).
                    self.input.incoming = Vec::new();
                    self.input.record_len = 0;
                    if let Err(e) = handler.handle_record_too_long(self, cx) {
                        self.hold_unexamined(&rest[split.collect..]);
                        return Err(e);
                    }
                }
            }
            if split.keep_rest {
                self.input.held.extend_from_slice(&rest[split.collect..]);
                return Ok(());
            }
            rest = &rest[split.collect + split.skip..];
            if split.found {
                self.input.record_len = 0;
                if let Err(e) = handler.found_terminator(self, cx) {
                    // Keep what was not yet looked at: a handler that survives
                    // its error loses no input.
                    self.hold_unexamined(rest);
                    return Err(e);
                }
            }
        }
        Ok(())
    }
}
