//! Datagram sockets in the loop: UDP over IPv4 and IPv6, Unix datagrams;
//! an empty datagram is a read of 0 bytes, never a close (peer-conformance
//! item 21); an unbound Unix sender is unnamed (item 22); a pending ICMP error
//! reaches handle_error through the read, and readiness never closes the socket.

mod util;

use std::io;

use rolecore::{Address, Channel, ConnectedDatagram, Ctx, Datagram, DatagramHandler, UnixAddress};
use util::Log;

/// Echoes every datagram to its sender and logs its length.
struct Echo(Log);

impl DatagramHandler for Echo {
    fn handle_read(&mut self, ch: &mut Channel<Datagram>, _: &mut Ctx<'_>) -> io::Result<()> {
        let mut buf = [0u8; 2048];
        let (n, from) = ch.recv_from(&mut buf)?;
        self.0.push(format!("got {n} from {}", if from.inet().is_some() { "ip" } else { "unix" }));
        if !matches!(from, Address::Unix(UnixAddress::Unnamed)) {
            ch.send_to(&buf[..n], &from)?;
        }
        Ok(())
    }
    fn handle_close(&mut self, _: &mut Channel<Datagram>, _: &mut Ctx<'_>) {
        self.0.push("close");
    }
}

/// A client connected to the echo: sends its datagrams, collects replies.
struct Client {
    to_send: Vec<Vec<u8>>,
    replies: Log,
}

impl DatagramHandler<ConnectedDatagram> for Client {
    fn writable(&self, _: &Channel<ConnectedDatagram>) -> bool {
        !self.to_send.is_empty()
    }
    fn handle_write(&mut self, ch: &mut Channel<ConnectedDatagram>, _: &mut Ctx<'_>) -> io::Result<()> {
        let next = self.to_send.remove(0);
        assert_eq!(ch.send(&next)?, next.len(), "a datagram goes whole");
        Ok(())
    }
    fn handle_read(&mut self, ch: &mut Channel<ConnectedDatagram>, _: &mut Ctx<'_>) -> io::Result<()> {
        let mut buf = [0u8; 2048];
        let n = ch.recv(&mut buf)?;
        self.replies.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        Ok(())
    }
}

fn round_trip(backend: rolecore::Backend, server_addr: &str, client: Channel<Datagram>) {
    let log = Log::default();
    let replies = Log::default();
    let mut map = util::map(backend);
    let server = Channel::datagram(server_addr.parse::<Address>().unwrap().family())
        .unwrap()
        .bind(server_addr)
        .unwrap();
    let addr = server.local_addr().unwrap();
    map.insert(server, Echo(log.clone())).unwrap();
    let client = client.connect(&addr).unwrap();
    let to_send = vec![b"one".to_vec(), Vec::new(), b"three".to_vec()];
    map.insert(client, Client { to_send, replies: replies.clone() }).unwrap();
    assert!(
        util::run_until(&mut map, |_| replies.events().len() == 3),
        "{backend} {server_addr}: {:?}",
        log.events()
    );
    assert_eq!(replies.events(), ["one", "", "three"], "{backend} {server_addr}");
    assert!(
        log.contains("got 0 from ip") || log.contains("got 0 from unix"),
        "{backend}: the empty datagram"
    );
    assert!(!log.contains("close"), "{backend}: an empty datagram is not an end of stream");
    assert_eq!(map.len(), 2, "{backend}: both sockets stay open");
}

#[test]
fn udp_v4_echo_round_trips_including_an_empty_datagram() {
    for backend in util::backends() {
        round_trip(backend, "127.0.0.1:0", Channel::udp_v4().unwrap().without_bind());
    }
}

#[test]
fn udp_v6_echo_round_trips() {
    for backend in util::backends() {
        round_trip(backend, "[::1]:0", Channel::udp_v6().unwrap().without_bind());
    }
}

#[test]
fn unix_datagram_echo_round_trips_and_an_unbound_sender_is_unnamed() {
    for backend in util::backends() {
        let name = format!("unix:@rolecore-dgram-test-{}-{backend}", std::process::id());
        let client = Channel::unix_datagram().unwrap().bind(format!("{name}-client")).unwrap();
        round_trip(backend, &name, client);

        let log = Log::default();
        let mut map = util::map(backend);
        let server = Channel::unix_datagram().unwrap().bind(format!("{name}-2")).unwrap();
        let addr = server.local_addr().unwrap();
        map.insert(server, Echo(log.clone())).unwrap();
        let mut anonymous = Channel::unix_datagram().unwrap().without_bind();
        anonymous.send_to(b"who?", &addr).unwrap();
        assert!(util::run_until(&mut map, |_| log.contains("got 4 from unix")), "{backend}");
    }
}

/// Records the errors the loop hands it.
struct Refused(Log);

impl DatagramHandler<ConnectedDatagram> for Refused {
    fn handle_read(&mut self, ch: &mut Channel<ConnectedDatagram>, _: &mut Ctx<'_>) -> io::Result<()> {
        let mut buf = [0u8; 16];
        ch.recv(&mut buf).map(drop)
    }
    fn handle_error(&mut self, _: &mut Channel<ConnectedDatagram>, error: io::Error, _: &mut Ctx<'_>) {
        self.0.push(format!("{:?}", error.kind()));
    }
}

/// A receive into an empty buffer took a whole datagram off the socket and
/// returned `Ok(0)`, which reads as an empty datagram: the data was lost
/// without a word. It is refused now, before anything is received, and the
/// datagram waits for a receive with room.
#[test]
fn a_receive_into_an_empty_buffer_is_refused_and_loses_no_datagram() {
    let (mut a, mut b) = Channel::datagram_pair().unwrap();
    b.send(b"kept").unwrap();
    let refused = a.recv(&mut []).unwrap_err();
    assert_eq!(refused.kind(), io::ErrorKind::InvalidInput, "{refused}");
    assert!(refused.to_string().contains("empty buffer"), "{refused}");
    let mut buf = [0u8; 16];
    assert_eq!(a.recv(&mut buf).unwrap(), 4, "the datagram is still there");
    assert_eq!(&buf[..4], b"kept");

    let mut server = Channel::udp_v4().unwrap().bind("127.0.0.1:0").unwrap();
    let to = server.local_addr().unwrap();
    let mut client = Channel::udp_v4().unwrap().bind("127.0.0.1:0").unwrap();
    client.send_to(b"kept too", &to).unwrap();
    let refused = server.recv_from(&mut []).unwrap_err();
    assert_eq!(refused.kind(), io::ErrorKind::InvalidInput, "{refused}");
    let mut got = None;
    for _ in 0..500 {
        match server.recv_from(&mut buf) {
            Ok((n, _)) => {
                got = Some(buf[..n].to_vec());
                break;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(std::time::Duration::from_millis(2))
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(got.as_deref(), Some(&b"kept too"[..]), "the datagram is still there");
}

/// A datagram longer than the socket can send was `EMSGSIZE` as an
/// uncategorized error ("Message too long"), with no word of the limit; it
/// is `InvalidInput` now, naming the length, and nothing is sent: the next
/// datagram is the first one the peer gets.
#[test]
fn a_datagram_longer_than_the_socket_can_send_is_a_clear_error() {
    let mut server = Channel::udp_v4().unwrap().bind("127.0.0.1:0").unwrap();
    let to = server.local_addr().unwrap();
    let mut client = Channel::udp_v4().unwrap().without_bind();
    let (mut a, mut b) = Channel::datagram_pair().unwrap();
    let too_long = vec![7u8; 16 << 20];
    let mut refusals =
        vec![("udp send_to", client.send_to(&too_long[..65_508], &to)), ("unix send", a.send(&too_long))];
    let mut connected = Channel::udp_v4().unwrap().connect(&to).unwrap();
    refusals.push(("udp send", connected.send(&too_long[..70_000])));
    for (what, refused) in refusals {
        let e = refused.expect_err(what);
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{what}: {e}");
        assert!(e.to_string().contains("longer than this socket can send"), "{what}: {e}");
    }
    a.send(b"next").unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(b.recv(&mut buf).unwrap(), 4, "the refused datagram was not sent");
    client.send_to(b"next", &to).unwrap();
    let mut got = None;
    for _ in 0..500 {
        match server.recv_from(&mut buf) {
            Ok((n, _)) => {
                got = Some(n);
                break;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(std::time::Duration::from_millis(2))
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(got, Some(4), "the first datagram the server gets is the next one");
}

#[test]
fn a_port_unreachable_error_reaches_handle_error_and_the_socket_stays() {
    for backend in util::backends() {
        // A port with nothing behind it: bind, note the port, close.
        let closed = Channel::udp_v4().unwrap().bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let log = Log::default();
        let mut map = util::map(backend);
        let mut ch = Channel::udp_v4().unwrap().connect(&closed).unwrap();
        ch.send(b"anyone?").unwrap();
        let token = map.insert(ch, Refused(log.clone())).unwrap();
        assert!(
            util::run_until(&mut map, |_| log.contains("ConnectionRefused")),
            "{backend}: {:?}",
            log.events()
        );
        assert!(
            map.contains(token),
            "{backend}: a datagram socket is not closed by an error it was told about"
        );
    }
}

/// A graceful shutdown closes a datagram socket still open when the grace
/// ends with its `handle_close`, once, on every backend (readiness never
/// closes one: the shutdown is how a datagram socket's handler learns of
/// the end).
#[test]
fn a_shutdown_closes_a_datagram_socket_with_handle_close_once() {
    for backend in util::backends() {
        let mut map = util::map(backend);
        let log = Log::default();
        let socket = Channel::unix_datagram().unwrap().without_bind();
        map.insert(socket, Echo(log.clone())).unwrap();
        map.shutdown(std::time::Duration::ZERO);
        map.run(rolecore::LoopOptions::new().no_timeout()).unwrap();
        assert!(map.is_empty(), "{backend}");
        assert_eq!(log.events(), ["close"], "{backend}");
    }
}

/// Reads a datagram, then fails the way a stream fails when its peer left.
struct FailsAsDisconnected(Log);

impl DatagramHandler<ConnectedDatagram> for FailsAsDisconnected {
    fn handle_read(&mut self, ch: &mut Channel<ConnectedDatagram>, _: &mut Ctx<'_>) -> io::Result<()> {
        let mut buf = [0u8; 16];
        ch.recv(&mut buf)?;
        Err(io::ErrorKind::BrokenPipe.into())
    }
    fn handle_error(&mut self, _: &mut Channel<ConnectedDatagram>, error: io::Error, _: &mut Ctx<'_>) {
        self.0.push(format!("error {:?}", error.kind()));
    }
    fn handle_close(&mut self, _: &mut Channel<ConnectedDatagram>, _: &mut Ctx<'_>) {
        self.0.push("close");
    }
}

/// Two UDP sockets on loopback, each connected to the other.
fn connected_udp_pair() -> (Channel<ConnectedDatagram>, Channel<ConnectedDatagram>) {
    let a = Channel::udp_v4().unwrap().bind("127.0.0.1:0").unwrap();
    let b = Channel::udp_v4().unwrap().bind("127.0.0.1:0").unwrap();
    let (a_addr, b_addr) = (a.local_addr().unwrap(), b.local_addr().unwrap());
    (a.connect(&b_addr).unwrap(), b.connect(&a_addr).unwrap())
}

/// A datagram socket has no peer to lose: an error that on a stream means
/// the peer left (`BrokenPipe`, `ConnectionReset`, ...) is, on a datagram
/// socket, the handler's like any other: `handle_error`, and the socket
/// stays in the map, never `handle_close`.
#[test]
fn a_disconnect_kind_of_error_on_a_datagram_socket_is_handle_error_not_close() {
    for backend in util::backends() {
        let (mut a, b) = connected_udp_pair();
        let log = Log::default();
        let mut map = util::map(backend);
        let token = map.insert(b, FailsAsDisconnected(log.clone())).unwrap();
        a.send(b"one").unwrap();
        assert!(util::run_until(&mut map, |_| !log.events().is_empty()), "{backend}");
        util::run_iterations(&mut map, 2);
        assert_eq!(log.events(), ["error BrokenPipe"], "{backend}");
        assert!(map.contains(token), "{backend}: the socket was closed");
    }
}

/// Closes its socket on the first datagram, then tries to send and passes
/// the refusal on with `?`.
struct ClosesThenSends(Log);

impl DatagramHandler<ConnectedDatagram> for ClosesThenSends {
    fn handle_read(&mut self, ch: &mut Channel<ConnectedDatagram>, cx: &mut Ctx<'_>) -> io::Result<()> {
        let mut buf = [0u8; 16];
        ch.recv(&mut buf)?;
        cx.close();
        ch.send(b"after close")?;
        self.0.push("sent after close");
        Ok(())
    }
    fn handle_error(&mut self, _: &mut Channel<ConnectedDatagram>, error: io::Error, _: &mut Ctx<'_>) {
        self.0.push(format!("error {:?}", error.kind()));
    }
    fn handle_close(&mut self, _: &mut Channel<ConnectedDatagram>, _: &mut Ctx<'_>) {
        self.0.push("close");
    }
}

/// A datagram socket closed from its own callback refuses I/O, and the
/// refusal passed on with `?` is not an error of the handler's: the socket
/// closes as asked, with no `handle_error`.
#[test]
fn io_refused_after_a_datagram_socket_closed_itself_is_no_error() {
    for backend in util::backends() {
        let (mut a, b) = connected_udp_pair();
        let log = Log::default();
        let mut map = util::map(backend);
        map.insert(b, ClosesThenSends(log.clone())).unwrap();
        a.send(b"one").unwrap();
        assert!(util::run_until(&mut map, |m| m.is_empty()), "{backend}");
        assert!(log.events().is_empty(), "{backend}: {:?}", log.events());
    }
}
