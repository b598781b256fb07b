//! One `OutputBudget` bounds the output queued by all channels together
//! (issue 14, defect 4): many members that never read, one sender relaying
//! every line to each of them, and the total queued never passes the budget.
//! Assertions are on the budget's accounting and the queues, never on time.

mod util;

use std::cell::RefCell;
use std::io::{self, ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::rc::Rc;

use rolecore::{
    AsyncChat, BudgetFull, Buffered, Channel, ChatHandler, Ctx, Map, OutputBudget, Terminator, Token,
};

const MEMBERS: usize = 40;
const BUDGET: usize = 2 << 20;

fn _handles_cross_threads() {
    fn check<T: Send + Sync + Clone + std::fmt::Debug>() {}
    check::<OutputBudget>();
    fn error<T: Send + Sync + Copy + std::error::Error>() {}
    error::<BudgetFull>();
}

#[derive(Default)]
struct Room {
    members: Vec<Token>,
    evicted: usize,
    refused_by_budget: usize,
}

/// Relays each line to every other member; when the budget refuses, drops
/// the member with the largest queue and tries once more, as
/// `examples/chat_server.rs` does.
struct Member {
    room: Rc<RefCell<Room>>,
}

impl Member {
    fn largest_queue(&self, me: Token, cx: &mut Ctx<'_>) -> Option<Token> {
        let members = self.room.borrow().members.clone();
        let mut best: Option<(usize, Token)> = None;
        for t in members.into_iter().filter(|&t| t != me) {
            if let Some(mut m) = cx.stream_mut::<AsyncChat, Member>(t) {
                let q = m.transport().queued();
                if q > 0 && best.is_none_or(|(most, _)| q > most) {
                    best = Some((q, t));
                }
            }
        }
        best.map(|(_, t)| t)
    }

    fn drop_member(&self, t: Token, cx: &mut Ctx<'_>) {
        self.room.borrow_mut().members.retain(|&m| m != t);
        cx.remove(t);
    }
}

impl ChatHandler for Member {
    fn found_terminator(&mut self, chat: &mut AsyncChat, cx: &mut Ctx<'_>) -> io::Result<()> {
        let mut line = chat.take_incoming();
        line.push(b'\n');
        let me = cx.token();
        let others: Vec<Token> = self.room.borrow().members.iter().copied().filter(|&t| t != me).collect();
        for t in others {
            for attempt in 0..2 {
                let Some(mut m) = cx.stream_mut::<AsyncChat, Member>(t) else { break };
                let Err(e) = m.transport().push(&line) else { break };
                drop(m);
                assert_eq!(e.kind(), ErrorKind::StorageFull);
                let by_budget = e.get_ref().is_some_and(|i| i.is::<BudgetFull>());
                if by_budget {
                    self.room.borrow_mut().refused_by_budget += 1;
                }
                if by_budget
                    && attempt == 0
                    && let Some(slowest) = self.largest_queue(me, cx)
                {
                    self.drop_member(slowest, cx);
                    self.room.borrow_mut().evicted += 1;
                    continue;
                }
                self.drop_member(t, cx);
                break;
            }
        }
        Ok(())
    }
}

fn total_queued(map: &mut Map, members: &[Token]) -> usize {
    members
        .iter()
        .filter_map(|&t| map.stream_mut::<AsyncChat, Member>(t).map(|mut m| m.transport().queued()))
        .sum()
}

#[test]
fn members_that_never_read_cannot_queue_more_than_the_budget() {
    let budget = OutputBudget::new(BUDGET);
    let room = Rc::new(RefCell::new(Room::default()));
    let mut map = util::map(rolecore::Backend::Epoll);
    let mut peers = Vec::new();
    for _ in 0..MEMBERS {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let mut chat = AsyncChat::new(Channel::try_from(ours).unwrap(), Terminator::bytes(b"\n"));
        chat.set_budget(&budget);
        let t = map.insert(chat, Member { room: Rc::clone(&room) }).unwrap();
        room.borrow_mut().members.push(t);
        peers.push(theirs); // kept open, never read
    }
    let (ours, mut sender) = UnixStream::pair().unwrap();
    let mut chat = AsyncChat::new(Channel::try_from(ours).unwrap(), Terminator::bytes(b"\n"));
    chat.set_budget(&budget);
    let me = map.insert(chat, Member { room: Rc::clone(&room) }).unwrap();
    room.borrow_mut().members.push(me);

    // 4 MB of 4000-byte lines: 160 MB to relay, far past the budget and past
    // what the members' sockets hold.
    sender.set_nonblocking(true).unwrap();
    let line = [&[b'x'; 3999][..], b"\n"].concat();
    let (mut sent, mut most) = (0usize, 0usize);
    let mut pending = &line[..0];
    for _ in 0..100_000 {
        if sent >= 4_000_000 && pending.is_empty() {
            break;
        }
        if pending.is_empty() {
            pending = &line[..];
        }
        match sender.write(pending) {
            Ok(n) => {
                pending = &pending[n..];
                sent += n;
            }
            Err(e) => assert_eq!(e.kind(), ErrorKind::WouldBlock),
        }
        util::run_iterations(&mut map, 1);
        let members = room.borrow().members.clone();
        let queued = total_queued(&mut map, &members);
        most = most.max(budget.used());
        assert!(
            budget.used() <= budget.limit(),
            "budget {} over its limit {}",
            budget.used(),
            budget.limit()
        );
        assert_eq!(budget.used(), queued, "the budget counts exactly the queued bytes of the open members");
    }
    util::run_iterations(&mut map, 3);
    let room = room.borrow();
    assert!(sent >= 4_000_000, "the sender was not drained: {sent} bytes");
    assert!(room.refused_by_budget > 0, "the budget, not each member's limit, must have been what refused");
    assert!(room.evicted > 0, "slow readers were dropped");
    assert!(map.contains(me), "the sender stays");
    assert!(most > BUDGET / 2, "the budget was used: at most {most}");
    eprintln!(
        "{MEMBERS} members, budget {BUDGET}: most used {most}, {} evicted, {} still in the room",
        room.evicted,
        room.members.len() - 1
    );
    drop(room);
    map.close_all();
    assert_eq!(budget.used(), 0, "closing every channel gives the whole budget back");
}

#[test]
fn buffered_streams_share_a_budget_and_release_it_when_sent_or_dropped() {
    let budget = OutputBudget::new(1 << 20);
    let (a, mut a_peer) = Channel::pair().unwrap();
    let (b, _b_peer) = Channel::pair().unwrap();
    let mut a = Buffered::new(a).with_budget(&budget);
    let mut b = Buffered::new(b).with_budget(&budget);
    // Nothing queued yet: the sockets take it, nothing is charged.
    a.send(b"straight out").unwrap();
    assert_eq!(budget.used(), 0);
    while a.queued() < 600_000 {
        a.send(&[1u8; 30_000]).unwrap();
    }
    assert_eq!(budget.used(), a.queued());
    let refused = loop {
        match b.send(&[2u8; 30_000]) {
            Ok(()) => assert_eq!(budget.used(), a.queued() + b.queued()),
            Err(e) => break e,
        }
    };
    assert_eq!(refused.kind(), ErrorKind::StorageFull);
    let full = refused.get_ref().unwrap().downcast_ref::<BudgetFull>().unwrap();
    assert_eq!(full.limit, 1 << 20);
    assert!(full.used + full.requested > full.limit);
    assert!(refused.to_string().contains("OutputBudget::set_limit"));
    assert!(budget.used() <= budget.limit());
    // a's peer reads: a's sent bytes are released.
    let mut sink = vec![0u8; 1 << 16];
    let before = budget.used();
    for _ in 0..20 {
        let _ = std::io::Read::read(&mut a_peer, &mut sink);
        a.initiate_send().unwrap();
    }
    assert!(budget.used() < before);
    assert_eq!(budget.used(), a.queued() + b.queued());
    // Moving b to another budget moves its bytes; dropping a releases its own.
    let other = OutputBudget::new(usize::MAX);
    b.set_budget(&other);
    assert_eq!((budget.used(), other.used()), (a.queued(), b.queued()));
    drop(a);
    assert_eq!(budget.used(), 0);
    drop(b);
    assert_eq!(other.used(), 0);
}

/// Closes its channel on the first input, then tries to send: the send is
/// refused (the channel is closing) and records what it got.
struct SendAfterClose {
    refused: Rc<RefCell<Option<io::ErrorKind>>>,
}

impl rolecore::StreamHandler<Buffered<rolecore::Connected>> for SendAfterClose {
    fn handle_read(&mut self, ch: &mut Buffered<rolecore::Connected>, cx: &mut Ctx<'_>) -> io::Result<()> {
        let mut buf = [0u8; 64];
        ch.recv(&mut buf)?;
        cx.close();
        let result = ch.send(b"after close");
        *self.refused.borrow_mut() = result.err().map(|e| e.kind());
        Ok(())
    }
}

/// A send that fails charges nothing: the bytes it reserved in the budget
/// are given back with the error, so a channel that failed does not shrink
/// the others' budget for good.
#[test]
fn a_send_that_fails_gives_its_budget_back() {
    let budget = OutputBudget::new(1 << 20);
    let (a, peer) = Channel::pair().unwrap();
    let refused = Rc::new(RefCell::new(None));
    let mut map = Map::new().unwrap();
    map.insert(Buffered::new(a).with_budget(&budget), SendAfterClose { refused: refused.clone() }).unwrap();
    let mut peer = UnixStream::from(std::os::fd::OwnedFd::from(peer));
    peer.write_all(b"go").unwrap();
    assert!(util::run_until(&mut map, |m| m.is_empty()));
    assert_eq!(*refused.borrow(), Some(ErrorKind::NotConnected));
    assert_eq!(budget.used(), 0, "the refused send's bytes were given back");
}

/// A producer's chunks are charged to the chat's budget as they are taken
/// (past the budget if they must: the producer was queued already) and
/// released as they are sent: the budget always holds exactly what the chat
/// has queued, and nothing once all is sent.
#[test]
fn a_producers_chunks_are_charged_while_queued_and_released_when_sent() {
    let budget = OutputBudget::new(1 << 20);
    let (a, peer) = Channel::pair().unwrap();
    let mut peer = UnixStream::from(std::os::fd::OwnedFd::from(peer));
    let mut chat = AsyncChat::new(a, Terminator::LF);
    chat.set_budget(&budget);
    let data: Vec<u8> = (0..600_000).map(|i| (i % 251) as u8).collect();
    chat.push_with_producer(rolecore::chat::SimpleProducer::new(data.clone(), 100_000)).unwrap();
    assert_eq!(budget.used(), 0, "nothing taken from the producer yet");
    let mut got = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    peer.set_nonblocking(true).unwrap();
    while chat.has_output() {
        chat.initiate_send().unwrap();
        assert_eq!(budget.used(), chat.queued());
        match peer.read(&mut buf) {
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => assert_eq!(e.kind(), ErrorKind::WouldBlock),
        }
    }
    assert_eq!(budget.used(), 0);
    peer.set_nonblocking(false).unwrap();
    drop(chat);
    peer.read_to_end(&mut got).unwrap();
    assert!(got == data, "{} of {} bytes, in order?", got.len(), data.len());
}

/// `discard_buffers` drops the queued output, and with it the output's
/// charge: the chat's queue counts nothing and the budget holds nothing for
/// bytes that will never be sent, and both count again from zero.
#[test]
fn discarded_output_is_no_longer_queued_nor_charged() {
    let budget = OutputBudget::new(1 << 20);
    let (a, _peer) = Channel::pair().unwrap();
    let mut chat = AsyncChat::new(a, Terminator::LF);
    chat.set_budget(&budget);
    chat.push(&[7u8; 5000]).unwrap();
    assert_eq!((chat.queued(), budget.used()), (5000, 5000));
    chat.discard_buffers();
    assert_eq!(chat.queued(), 0, "nothing is queued after discard_buffers");
    assert_eq!(budget.used(), 0, "the discarded bytes were given back to the budget");
    chat.push(b"again\n").unwrap();
    assert_eq!((chat.queued(), budget.used()), (6, 6));
    drop(chat);
    assert_eq!(budget.used(), 0);
}
