//! An in-memory server that speaks the Redis protocol (RESP2), on
//! [`AsyncChat`]: enough for `redis-cli` and `redis-benchmark`.
//!
//! ```text
//! cargo run --release --example resp_server -- [ADDR] [--backend select|poll|epoll] [--threads N]
//!     [--max-bulk BYTES] [--max-request BYTES] [--idle-timeout SECS] [--output-budget BYTES]
//!     [--input-budget BYTES] [--tls-cert PEM --tls-key PEM]
//! ```
//!
//! ADDR defaults to 127.0.0.1:6379 (port 0 picks a free port); the first line
//! on stdout is `listening on HOST:PORT`. `--max-bulk` (default 16 MiB) bounds
//! one bulk string of a request; `--max-request` (default twice `--max-bulk`
//! plus 1 MiB) bounds a whole request, all its arguments together (each
//! counted with 8 bytes more, what the server keeps to split them).
//! `--idle-timeout` (default 300, 0 for none) closes a connection that stays
//! silent that long (no request, and no reply taken); a request, however
//! its bytes trickle in, must arrive within twice that (over TLS, the
//! handshake within once). `--output-budget`
//! (default 256 MiB) bounds the replies queued by all of one loop's
//! connections together: each connection's output limit bounds one client
//! that does not read, the budget bounds a thousand of them. When it runs
//! short, the connection with the most output queued (the slowest reader)
//! is dropped first. `--input-budget` (default 256 MiB, and at least
//! `--max-request`) bounds the same way the bytes of requests still
//! arriving: `--max-request` bounds one client that sends most of a big
//! request and never the rest, the input budget a thousand of them. A
//! connection whose bytes do not fit is answered
//! `-ERR server busy: too many unfinished requests` and closed. `--tls-cert PEM --tls-key PEM` serve RESP over TLS
//! (TLS 1.3 and 1.2, as `redis-cli --tls` speaks it; a build with
//! rolecore's `tls` feature), with the same handlers.
//!
//! Commands: `PING [msg]`, `ECHO msg`, `SET key value [EX s|PX ms]`, `GET`,
//! `DEL key...`, `EXISTS key...`, `INCR`, `DECR`, `MGET key...`,
//! `MSET key value...`, `DBSIZE`, `FLUSHALL`, `QUIT`, `CONFIG GET name...`,
//! `COMMAND`. Requests are multibulk frames or inline lines, pipelined or
//! not. Expired keys are dropped when they are next looked at.
//!
//! Replies are bounded by the connection's output limit (the chat's 4 MiB,
//! raised to twice `--max-bulk` plus 1 MiB): a reply is measured before it is
//! built, one larger than the limit is refused with `-ERR reply too large`,
//! and one that does not fit beside the replies already queued (a client
//! that does not read them) closes the connection. Big pieces of a reply go
//! to the chat's queue directly, never through a second buffer, and a
//! connection's own buffers shrink back after a big request or reply.
//!
//! Framing uses the chat's terminators: a line (`*N`, `$N` or an inline
//! command) ends at `\n`, its `\r` before it dropped (Redis takes an inline
//! command ended by a bare LF, as `echo PING | nc` sends it; a server that
//! waited for `\r\n` left that client unanswered until its idle timeout);
//! the `\r` counts against the line's bound (64 KiB). The payload of a bulk string is a count
//! terminator of `N + 2` bytes whose last two must be `\r\n`. The parser,
//! [`RespParser`], is a plain struct that is told each record and says which
//! terminator comes next, so it can be driven without a socket; the commands
//! (`examples/resp/commands.rs`) write to a [`Sink`], so they run without
//! one too. Both are fuzzed (`fuzz/bodies/resp.rs`, `fuzz/bodies/resp_exec.rs`).
//! The handlers themselves (`RespServer`, `RespConnection`) are
//! `examples/resp/server.rs`, which `fuzz/bodies/sim_resp.rs` runs in
//! `rolecore::sim` with pipelined, oversized and broken requests.

mod serve;
use serve::{Connections, Flag, Server};

use std::process::ExitCode;
use std::sync::Arc;

// ---- the parser, the commands, the handlers: examples/resp/ (fuzzed: fuzz/bodies/resp*.rs, sim_resp.rs) ----

#[path = "resp/parser.rs"]
mod parser;

#[path = "resp/commands.rs"]
mod commands;
use commands::output_limit;

#[path = "resp/server.rs"]
mod server;
use server::{InputBudget, MAX_LINE, RespServer, Shared};

// ---- main ----------------------------------------------------------------------

fn main() -> ExitCode {
    let server = Server {
        name: "resp_server",
        default_addr: "127.0.0.1:6379",
        threads: true,
        flags: &[
            Flag { name: "--max-bulk", value: "BYTES" },
            Flag { name: "--max-request", value: "BYTES" },
            Flag { name: "--idle-timeout", value: "SECS" },
            Flag { name: "--output-budget", value: "BYTES" },
            Flag { name: "--input-budget", value: "BYTES" },
            serve::TLS_CERT,
            serve::TLS_KEY,
        ],
    };
    serve::main(server, |cli| {
        // Redis's own ceiling for one bulk string is 512 MiB.
        let max_bulk = cli.count("--max-bulk", 16 << 20, 1, 512 << 20)? as usize;
        // Redis's client-query-buffer-limit is 1 GiB.
        let default_request = parser::default_max_request(max_bulk) as u64;
        let max_request = cli.count("--max-request", default_request, 1, 1 << 30)? as usize;
        let idle_timeout = cli.seconds("--idle-timeout", 300.0)?;
        // What all of one loop's connections may queue together.
        let budget = cli.count("--output-budget", 256 << 20, 64 << 10, 1 << 40)? as usize;
        // What all of one loop's unfinished requests may hold together: by
        // default, room for one of the largest at least.
        let default_input = (max_request as u64).max(256 << 20);
        let input_budget = cli.count("--input-budget", default_input, 64 << 10, 1 << 40)? as usize;
        // One store for every loop (`--threads`): uncontended with one thread.
        let store = Shared::default();
        let tls = cli.tls(&[])?;
        Ok(move || RespServer {
            store: Arc::clone(&store),
            connections: Connections::new(budget).with_tls(tls.clone()),
            max_bulk,
            max_request,
            input: InputBudget::new(input_budget),
            idle_timeout,
            max_line: MAX_LINE,
            output_limit: output_limit(max_bulk),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;
    use std::time::{Duration, Instant};

    use super::parser::{ProtocolError, RespParser};
    use super::server::{KEEP_CAPACITY, RespConnection};
    use rolecore::chat::{Framed, Framer};
    use rolecore::{AsyncChat, Channel};

    /// Feeds `input` through a chat's record splitting and the parser.
    fn parse(input: &[u8], max_bulk: usize) -> Result<Vec<Vec<Vec<u8>>>, ProtocolError> {
        let mut parser = RespParser::new(max_bulk);
        let mut framer = Framer::new(parser.terminator());
        let mut record = Vec::new();
        let mut commands = Vec::new();
        let mut failure = None;
        let _ = framer.feed(input, |piece, terminator| {
            match piece {
                Framed::Data(d) => record.extend_from_slice(d),
                Framed::End => match parser.record(&std::mem::take(&mut record)) {
                    Ok(Some(c)) => commands.push(c.to_vecs()),
                    Ok(None) => {}
                    Err(e) => {
                        failure = Some(e);
                        return Err(io::ErrorKind::InvalidData.into());
                    }
                },
            }
            *terminator = parser.terminator();
            Ok(())
        });
        failure.map_or(Ok(commands), Err)
    }

    /// One client's chat and connection, as the server makes them (no idle
    /// timeout; bulks up to `max_bulk`).
    fn connection(ours: std::os::unix::net::UnixStream, max_bulk: usize) -> (AsyncChat, RespConnection) {
        let parser = RespParser::new(max_bulk);
        let mut chat = AsyncChat::new(Channel::try_from(ours).unwrap(), parser.terminator());
        chat.set_max_record(MAX_LINE + 1);
        chat.set_output_limit(output_limit(max_bulk));
        let connection = RespConnection {
            parser,
            store: Shared::default(),
            connections: Connections::new(256 << 20),
            idle_timeout: None,
            extended: false,
            queued_at_deadline: 0,
            record: Vec::new(),
            max_line: MAX_LINE,
            input: InputBudget::new(256 << 20),
            charged: 0,
            out: Vec::new(),
        };
        (chat, connection)
    }

    /// A connection that answered a 4 MiB `SET` and `GET` keeps no buffer
    /// of that size once it is idle; and an `MGET` whose reply would pass
    /// the output limit is refused without building it.
    #[test]
    fn an_idle_connection_gives_its_buffers_back() {
        use std::io::{Read, Write};
        let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        theirs.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        theirs.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
        let max_bulk = 8 << 20;
        let (chat, connection) = connection(ours, max_bulk);
        let mut map = rolecore::Map::new().unwrap();
        let token = map.insert(chat, connection).unwrap();

        let value = vec![b'v'; 4 << 20];
        let mut request = format!("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n${}\r\n", value.len()).into_bytes();
        request.extend_from_slice(&value);
        request.extend_from_slice(b"\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
        // 2,000 keys × 4 MiB: 8 GiB asked, refused.
        request.extend_from_slice(b"*2001\r\n$4\r\nMGET\r\n");
        for _ in 0..2000 {
            request.extend_from_slice(b"$1\r\nk\r\n");
        }
        let mut expected = format!("+OK\r\n${}\r\n", value.len()).into_bytes();
        expected.extend_from_slice(&value);
        expected.extend_from_slice(b"\r\n-ERR reply too large\r\n");

        let mut writer = theirs.try_clone().unwrap();
        let write = std::thread::spawn(move || writer.write_all(&request).map(|()| writer));
        let want = expected.len();
        let mut reader = theirs;
        let read = std::thread::spawn(move || {
            let mut got = vec![0; want];
            // The peer stays open (returned) so the connection stays too.
            reader.read_exact(&mut got).map(|()| (got, reader))
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        while !read.is_finished() && Instant::now() < deadline {
            map.run(rolecore::LoopOptions::new().timeout(Duration::from_millis(10)).count(1)).unwrap();
        }
        let _writer = write.join().unwrap().unwrap();
        let (got, _peer) = read.join().unwrap().unwrap();
        assert!(got == expected, "the replies differ: {:?}", String::from_utf8_lossy(&got[got.len() - 40..]));

        let connection = map.handler::<RespConnection>(token).expect("the connection is open");
        assert!(connection.record.capacity() <= KEEP_CAPACITY, "record: {}", connection.record.capacity());
        assert!(connection.out.capacity() <= KEEP_CAPACITY, "out: {}", connection.out.capacity());
        assert!(
            connection.parser.capacity() <= 2 * KEEP_CAPACITY,
            "parser: {}",
            connection.parser.capacity()
        );
    }

    /// A reply that would not fit beside the output already queued closes
    /// the connection at once, its queue dropped: a client that does not
    /// read its replies does not keep a connection and its queued megabytes
    /// for as long as it likes. The peer here never reads a reply.
    #[test]
    fn a_client_that_does_not_read_is_closed_with_its_queue_dropped() {
        use std::io::{Read, Write};
        let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        theirs.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let max_bulk = 1 << 20;
        let (chat, connection) = connection(ours, max_bulk);
        let mut map = rolecore::Map::new().unwrap();
        let token = map.insert(chat, connection).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let step = |map: &mut rolecore::Map| {
            assert!(Instant::now() < deadline, "the connection was kept");
            map.run(rolecore::LoopOptions::new().timeout(Duration::from_millis(10)).count(1)).unwrap();
        };

        let mut request = format!("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n${max_bulk}\r\n").into_bytes();
        request.resize(request.len() + max_bulk, b'v');
        request.extend_from_slice(b"\r\n");
        let mut peer = theirs;
        let mut writer = peer.try_clone().unwrap();
        let write = std::thread::spawn(move || writer.write_all(&request).map(|()| writer));
        let read = std::thread::spawn(move || {
            let mut ok = [0; 5];
            peer.read_exact(&mut ok).map(|()| (ok, peer))
        });
        while !read.is_finished() {
            step(&mut map);
        }
        let (ok, peer) = read.join().unwrap().unwrap();
        assert_eq!(&ok, b"+OK\r\n");
        // Twenty GETs of the megabyte in one write, one read of the
        // server's: their replies pass the 4 MiB output limit long before
        // the last.
        let mut writer = write.join().unwrap().unwrap();
        writer.write_all(&b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n".repeat(20)).unwrap();
        // Closed once the chat's default linger ends (the peer stays silent),
        // however much it was sent before.
        while map.contains(token) {
            step(&mut map);
        }
        drop(peer);
    }

    #[test]
    fn frames() {
        let c = parse(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\nPING\r\n*0\r\n*1\r\n$0\r\n\r\n", 100).unwrap();
        assert_eq!(c, vec![vec![b"GET".to_vec(), b"k".to_vec()], vec![b"PING".to_vec()], vec![Vec::new()]]);
        assert!(parse(b"*1\r\n$3\r\nGETxx", 100).is_err());
        assert!(parse(b"*1\r\n$101\r\n", 100).is_err());
        assert!(parse(b"*1\r\n+x\r\n", 100).is_err());
        assert!(parse(b"*x\r\n", 100).is_err());
    }

    /// Lines end at LF, with or without a CR: an inline command ended by a
    /// bare LF (`echo PING | nc`) is a command, as in Redis, and so is a
    /// `*N` or `$N` line; a bulk payload still ends with its CRLF.
    #[test]
    fn lines_end_at_a_bare_lf_too() {
        let c = parse(b"PING\nECHO a\r\n*2\n$4\r\nECHO\r\n$1\nb\r\n\nPING\r\r\n", 100).unwrap();
        let ping = vec![b"PING".to_vec()];
        let echo = |arg: &[u8]| vec![b"ECHO".to_vec(), arg.to_vec()];
        assert_eq!(c, vec![ping.clone(), echo(b"a"), echo(b"b"), ping]);
        assert!(parse(b"*1\n$1\na\nPING\r\n", 100).is_err(), "a bulk payload without its CRLF");
    }
}
