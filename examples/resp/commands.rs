//! RESP command execution for `examples/resp_server.rs`: the store and what
//! each command answers, in a file of its own so `fuzz/bodies/resp_exec.rs`
//! can run it without a socket, under the limits the server sets.
//!
//! Every reply is written to a [`Sink`]. A reply whose size depends on what
//! is stored or on how many arguments the request has (`GET`, `ECHO`,
//! `PING msg`, `MGET`) is measured before a byte of it is written, against
//! the connection's [`Budget`]: a reply larger than the output limit itself
//! is refused with `-ERR reply too large`, and one that would not fit beside
//! the output already queued is not written at all ([`After::Overflow`]: the
//! client does not read its replies, and the server closes it). Every other
//! reply is at most [`SMALL_REPLY`] bytes, whatever the request.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::parser::Command;

/// The largest reply that is written without being measured first: errors
/// (the unknown-command one included), integers, `+OK`, `CONFIG GET`.
#[allow(dead_code)] // the fuzz body checks replies against it
pub const SMALL_REPLY: usize = 1024;
/// The most bytes of a client's command name, and of its arguments together,
/// echoed (escaped) in the unknown-command error.
pub const ECHOED_NAME: usize = 128;
/// The default bound on queued output (the chat's own default), which the
/// server raises so one `GET` of the largest value fits.
pub const DEFAULT_OUTPUT_LIMIT: usize = 4 << 20;
/// Stop reading while this much output waits for a slow client.
pub const READ_PAUSE: usize = 1 << 20;

/// The output limit the server gives each connection for `max_bulk`: a
/// `GET` of the largest value must fit, beside a pipeline's worth of
/// smaller replies.
pub fn output_limit(max_bulk: usize) -> usize {
    DEFAULT_OUTPUT_LIMIT.max(max_bulk.saturating_mul(2).saturating_add(READ_PAUSE))
}

/// Where replies go: a `Vec` (tests, the fuzz body) or the connection.
pub trait Sink {
    /// Appends bytes of a reply.
    fn put(&mut self, bytes: &[u8]);
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// How much one reply may take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// The connection's output limit: a reply larger than this could never
    /// be queued.
    pub limit: usize,
    /// What is left of it beside the output already queued.
    pub room: usize,
}

impl Budget {
    /// The budget of a connection whose queue holds `queued` bytes.
    pub fn new(limit: usize, queued: usize) -> Budget {
        Budget { limit, room: limit.saturating_sub(queued) }
    }
}

// ---- replies -------------------------------------------------------------------

// Replies are written straight into the sink: no `format!`, no allocation
// once the connection's buffers have grown.

pub fn simple(out: &mut impl Sink, s: &str) {
    out.put(b"+");
    out.put(s.as_bytes());
    out.put(b"\r\n");
}

pub fn error(out: &mut impl Sink, s: &str) {
    out.put(b"-ERR ");
    out.put(s.as_bytes());
    out.put(b"\r\n");
}

/// Appends `n` in decimal.
pub fn decimal(out: &mut impl Sink, n: i64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut rest = n.unsigned_abs();
    loop {
        i -= 1;
        digits[i] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    if n < 0 {
        out.put(b"-");
    }
    out.put(&digits[i..]);
}

/// How many digits `decimal` writes for `n` (without a sign).
fn digits(mut n: usize) -> usize {
    let mut d = 1;
    while n >= 10 {
        n /= 10;
        d += 1;
    }
    d
}

/// A reply header: `prefix`, a decimal, `\r\n`.
fn header(out: &mut impl Sink, prefix: u8, n: i64) {
    out.put(&[prefix]);
    decimal(out, n);
    out.put(b"\r\n");
}

fn integer(out: &mut impl Sink, n: i64) {
    header(out, b':', n);
}

fn bulk(out: &mut impl Sink, value: Option<&[u8]>) {
    match value {
        Some(v) => {
            header(out, b'$', v.len() as i64);
            out.put(v);
            out.put(b"\r\n");
        }
        None => out.put(b"$-1\r\n"),
    }
}

/// The size of `bulk(value)`.
fn bulk_size(value: Option<&[u8]>) -> usize {
    match value {
        Some(v) => 1 + digits(v.len()) + 2 + v.len() + 2,
        None => 5,
    }
}

fn array_header(out: &mut impl Sink, n: usize) {
    header(out, b'*', n as i64);
}

/// `bytes` escaped (`\xff`, `\r`, `\'`), at most `max` bytes of it.
fn escaped(out: &mut impl Sink, bytes: &[u8], max: usize) {
    let mut written = 0;
    for &b in bytes {
        let e = std::ascii::escape_default(b);
        if written + e.len() > max {
            out.put(b"...");
            return;
        }
        written += e.len();
        for c in e {
            out.put(&[c]);
        }
    }
}

// ---- the store -----------------------------------------------------------------

#[derive(Debug)]
pub struct Entry {
    pub value: Vec<u8>,
    pub expires: Option<Instant>,
}

impl Entry {
    fn live(&self, now: Instant) -> bool {
        self.expires.is_none_or(|at| at > now)
    }

    /// Replaces the value, reusing its buffer unless that is much too big.
    fn set_value(&mut self, value: &[u8]) {
        if self.value.capacity() > 4096 && self.value.capacity() / 4 > value.len() {
            self.value = value.to_vec();
        } else {
            self.value.clear();
            self.value.extend_from_slice(value);
        }
    }
}

/// What the sweep counts for an entry beside its key and value: the map's
/// own share (the `Entry`, two vectors' headers, the table's slot).
const ENTRY_COST: usize = 64;
/// The least volatile input between two sweeps of the store: below it,
/// a sweep of a large store would cost more than the memory it frees.
const MIN_SWEEP: usize = 1 << 20;

/// The data set, shared by every connection of the loop.
///
/// Nothing bounds its size but the machine: every `SET` of a new key keeps
/// up to `--max-bulk` bytes (and a key of up to `--max-bulk` bytes) until it
/// is deleted or expires. See "Hostile clients of the protocol servers" in
/// `docs/reliability.md`.
#[derive(Debug, Default)]
pub struct Store {
    pub map: HashMap<Vec<u8>, Entry>,
    /// Whether any entry may have an expiry (set by `SET … EX|PX`, cleared
    /// by `FLUSHALL`): until then no lookup needs the clock or a second
    /// probe.
    volatile: bool,
    /// Bytes (keys, values and [`ENTRY_COST`] each) stored with an expiry
    /// since the last sweep: at most what expired entries hold unswept.
    volatile_since_sweep: usize,
    /// The same cost for every entry the last sweep kept.
    kept_at_sweep: usize,
}

impl Store {
    /// The live entry of `key` at `now`; an expired one is dropped.
    pub fn get(&mut self, key: &[u8], now: Instant) -> Option<&mut Entry> {
        if self.volatile && self.map.get(key).is_some_and(|e| !e.live(now)) {
            self.map.remove(key);
        }
        self.map.get_mut(key)
    }

    /// Sets `key` to `value`, reusing the key's entry when there is one.
    pub fn set(&mut self, key: &[u8], value: &[u8], expires: Option<Instant>) {
        if expires.is_some() {
            self.volatile = true;
        }
        match self.map.get_mut(key) {
            Some(entry) => {
                entry.set_value(value);
                entry.expires = expires;
            }
            None => {
                self.map.insert(key.to_vec(), Entry { value: value.to_vec(), expires });
            }
        }
    }

    /// Drops the entries expired at `now`.
    fn purge(&mut self, now: Instant) {
        if self.volatile {
            self.map.retain(|_, e| e.live(now));
            self.kept_at_sweep = self.map.iter().map(|(k, e)| k.len() + e.value.len() + ENTRY_COST).sum();
            self.volatile_since_sweep = 0;
        }
    }

    /// Sets `key` with an expiry, then sweeps the store when what was set
    /// with one since the last sweep outweighs what that sweep kept. An
    /// expired entry is otherwise dropped only when its key is read, so a
    /// client that sets fresh keys with a short expiry (a cache of
    /// sessions) held every value it ever set, live ones a sliver of it.
    /// With the sweep, expired entries hold at most about what the store
    /// held live at the last sweep, or `MIN_SWEEP`; its cost, one pass
    /// over the map, is amortised over at least `ENTRY_COST / 2` bytes of
    /// input per entry passed over.
    pub fn set_expiring(&mut self, key: &[u8], value: &[u8], expires: Instant, now: Instant) {
        self.set(key, value, Some(expires));
        let cost = key.len() + value.len() + ENTRY_COST;
        self.volatile_since_sweep = self.volatile_since_sweep.saturating_add(cost);
        let due = MIN_SWEEP.max(self.kept_at_sweep).max(self.map.len() * (ENTRY_COST / 2));
        if self.volatile_since_sweep > due {
            self.purge(now);
        }
    }
}

/// What a command asks of the connection after its reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum After {
    /// Go on with the next request.
    Continue,
    /// `QUIT`: close once the reply is sent.
    Close,
    /// The reply would not fit beside the output already queued (the client
    /// does not read its replies): nothing was written; close the
    /// connection.
    Overflow,
}

fn wrong_arity(out: &mut impl Sink, name: &[u8]) {
    out.put(b"-ERR wrong number of arguments for '");
    out.put(name);
    out.put(b"' command\r\n");
}

/// Parses an integer as Redis does for values and options.
fn parse_i64(bytes: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(bytes).ok()?;
    if s.is_empty() || s.starts_with('+') || (s.len() > 1 && (s.starts_with('0') || s.starts_with("-0"))) {
        return None;
    }
    s.parse().ok()
}

/// The longest command name; a longer one is unknown.
const MAX_NAME: usize = 8;

/// Whether a reply of `size` bytes may be written: `Ok` if it fits, else
/// what to do instead (the error reply is written here).
fn admit(out: &mut impl Sink, size: usize, budget: Budget) -> Result<(), After> {
    if size > budget.limit {
        error(out, "reply too large");
        return Err(After::Continue);
    }
    if size > budget.room {
        return Err(After::Overflow);
    }
    Ok(())
}

/// Runs one command at time `now`, writing its reply to `out`. A reply
/// larger than [`SMALL_REPLY`] is written only if it fits `budget`.
///
/// `now` is the connection's map's time (`Ctx::now`), not the real clock:
/// under the simulation, `SET … EX` and `PX` expire on virtual time, as the
/// server's idle timeouts do, and a replay expires the same keys.
pub fn execute(
    store: &mut Store,
    args: Command<'_>,
    out: &mut impl Sink,
    budget: Budget,
    now: Instant,
) -> After {
    // The name, lower-cased on the stack; too long a name matches nothing.
    let raw_name = args.arg(0);
    let mut lower = [0u8; MAX_NAME];
    let name: &[u8] = if raw_name.len() <= MAX_NAME {
        let lower = &mut lower[..raw_name.len()];
        lower.copy_from_slice(raw_name);
        lower.make_ascii_lowercase();
        lower
    } else {
        b""
    };
    let argc = args.len();
    match name {
        b"ping" => match argc {
            1 => simple(out, "PONG"),
            2 => {
                if let Err(after) = admit(out, bulk_size(Some(args.arg(1))), budget) {
                    return after;
                }
                bulk(out, Some(args.arg(1)))
            }
            _ => wrong_arity(out, name),
        },
        b"echo" if argc == 2 => {
            if let Err(after) = admit(out, bulk_size(Some(args.arg(1))), budget) {
                return after;
            }
            bulk(out, Some(args.arg(1)))
        }
        b"set" if argc >= 3 => {
            let mut expires = None;
            let mut options = args.args_from(3);
            while let Some(option) = options.next() {
                let unit = if option.eq_ignore_ascii_case(b"EX") {
                    1000
                } else if option.eq_ignore_ascii_case(b"PX") {
                    1
                } else {
                    error(out, "syntax error");
                    return After::Continue;
                };
                let Some(amount) = options.next() else {
                    error(out, "syntax error");
                    return After::Continue;
                };
                let at = parse_i64(amount)
                    .filter(|&n| n > 0)
                    .and_then(|n| n.checked_mul(unit))
                    .and_then(|ms| now.checked_add(Duration::from_millis(ms as u64)));
                match at {
                    Some(at) => expires = Some(at),
                    None => {
                        error(out, "invalid expire time in 'set' command");
                        return After::Continue;
                    }
                }
            }
            match expires {
                Some(at) => store.set_expiring(args.arg(1), args.arg(2), at, now),
                None => store.set(args.arg(1), args.arg(2), None),
            }
            simple(out, "OK");
        }
        b"get" if argc == 2 => {
            let value = store.get(args.arg(1), now).map(|e| &e.value[..]);
            if let Err(after) = admit(out, bulk_size(value), budget) {
                return after;
            }
            bulk(out, value)
        }
        b"del" | b"exists" if argc >= 2 => {
            let mut n = 0;
            for key in args.args_from(1) {
                if store.get(key, now).is_some() {
                    n += 1;
                    if name == b"del" {
                        store.map.remove(key);
                    }
                }
            }
            integer(out, n);
        }
        b"incr" | b"decr" if argc == 2 => {
            let delta = if name == b"incr" { 1 } else { -1 };
            let entry = store.get(args.arg(1), now);
            let current = match &entry {
                Some(e) => parse_i64(&e.value),
                None => Some(0),
            };
            match current.and_then(|n| n.checked_add(delta)) {
                Some(n) => {
                    match entry {
                        Some(e) => {
                            // Keeps its expiry, as Redis.
                            e.value.clear();
                            decimal(&mut e.value, n);
                        }
                        None => {
                            let mut value = Vec::new();
                            decimal(&mut value, n);
                            store.map.insert(args.arg(1).to_vec(), Entry { value, expires: None });
                        }
                    }
                    integer(out, n);
                }
                None => error(out, "value is not an integer or out of range"),
            }
        }
        b"mget" if argc >= 2 => {
            // Measured first (the reply is the product of the keys asked
            // and the values stored), then written piece by piece: nothing
            // is allocated for it.
            let mut size = 1 + digits(argc - 1) + 2;
            for key in args.args_from(1) {
                size = size.saturating_add(bulk_size(store.get(key, now).map(|e| &e.value[..])));
                if size > budget.limit {
                    break;
                }
            }
            if let Err(after) = admit(out, size, budget) {
                return after;
            }
            array_header(out, argc - 1);
            for key in args.args_from(1) {
                // A key that expired since it was measured makes the reply
                // shorter, never longer.
                bulk(out, store.get(key, now).map(|e| &e.value[..]));
            }
        }
        b"mset" if argc >= 3 && argc % 2 == 1 => {
            for i in (1..argc).step_by(2) {
                store.set(args.arg(i), args.arg(i + 1), None);
            }
            simple(out, "OK");
        }
        b"dbsize" if argc == 1 => {
            store.purge(now);
            integer(out, store.map.len() as i64);
        }
        b"flushall" | b"flushdb" if argc <= 2 => {
            *store = Store::default();
            simple(out, "OK");
        }
        b"quit" => {
            simple(out, "OK");
            return After::Close;
        }
        b"config" if argc >= 2 => {
            if !args.arg(1).eq_ignore_ascii_case(b"GET") || argc < 3 {
                error(out, "only CONFIG GET parameter... is supported");
                return After::Continue;
            }
            // What redis-benchmark asks at start, with an in-memory answer.
            let known: [(&[u8], &[u8]); 2] = [(b"save", b""), (b"appendonly", b"no")];
            let asked = |k: &[u8]| args.args_from(2).any(|a| a.eq_ignore_ascii_case(k) || a == b"*");
            let count = known.iter().filter(|(k, _)| asked(k)).count();
            array_header(out, count * 2);
            for (k, v) in known.iter().filter(|(k, _)| asked(k)) {
                bulk(out, Some(k));
                bulk(out, Some(v));
            }
        }
        b"command" => array_header(out, 0),
        b"echo" | b"set" | b"get" | b"del" | b"exists" | b"incr" | b"decr" | b"mget" | b"mset"
        | b"dbsize" | b"flushall" | b"flushdb" | b"config" => wrong_arity(out, name),
        _ => unknown(out, args),
    }
    After::Continue
}

/// `-ERR unknown command 'NAME', with args beginning with: 'A' 'B'`, as
/// Redis words it, with the name and the arguments escaped (a `\r\n` in a
/// name must not end the reply line) and cut to [`ECHOED_NAME`] bytes each:
/// a megabyte of name is not echoed back.
fn unknown(out: &mut impl Sink, args: Command<'_>) {
    out.put(b"-ERR unknown command '");
    escaped(out, args.arg(0), ECHOED_NAME);
    out.put(b"', with args beginning with:");
    let mut left = ECHOED_NAME;
    for arg in args.args_from(1).take(8) {
        // Each argument takes its escaped length and three bytes of quoting.
        let cost = arg.iter().map(|&b| std::ascii::escape_default(b).len()).sum::<usize>() + 3;
        if cost > left {
            out.put(b" ...");
            break;
        }
        left -= cost;
        out.put(b" '");
        escaped(out, arg, usize::MAX);
        out.put(b"'");
    }
    out.put(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::super::parser::RespParser;
    use super::*;

    /// Runs one inline command at `now`; returns its reply.
    fn run(store: &mut Store, line: &[u8], now: Instant) -> Vec<u8> {
        let mut parser = RespParser::new(1024);
        let args = parser.record(line).expect("a well-formed line").expect("a whole command");
        let mut out = Vec::new();
        execute(store, args, &mut out, Budget::new(1 << 20, 0), now);
        out
    }

    #[test]
    fn keys_expire_on_the_time_the_caller_gives_not_the_real_clock() {
        let mut store = Store::default();
        let t0 = Instant::now();
        assert_eq!(run(&mut store, b"SET k v PX 100", t0), b"+OK\r\n");
        assert_eq!(run(&mut store, b"SET forever v", t0), b"+OK\r\n");
        // However long the real clock runs, `k` lives until its time comes.
        assert_eq!(run(&mut store, b"GET k", t0 + Duration::from_millis(99)), b"$1\r\nv\r\n");
        assert_eq!(run(&mut store, b"DBSIZE", t0 + Duration::from_millis(99)), b":2\r\n");
        // An hour later on the caller's clock it is gone, at once.
        let later = t0 + Duration::from_secs(3600);
        assert_eq!(run(&mut store, b"GET k", later), b"$-1\r\n");
        assert_eq!(run(&mut store, b"DBSIZE", later), b":1\r\n");
        assert_eq!(run(&mut store, b"GET forever", later), b"$1\r\nv\r\n");
    }

    /// Fresh keys set with a short expiry and never read again: the expired
    /// ones are swept as new ones come, not kept until a `DBSIZE`. A
    /// thousand values of 64 KiB, each expired when the next is set, leave
    /// at most `MIN_SWEEP` and one value's worth of entries behind; a key
    /// without an expiry, or one not yet expired, is never swept.
    #[test]
    fn expired_keys_are_swept_as_fresh_ones_are_set() {
        let mut store = Store::default();
        let t0 = Instant::now();
        assert_eq!(run(&mut store, b"SET forever v", t0), b"+OK\r\n");
        assert_eq!(run(&mut store, b"SET later v EX 3600", t0), b"+OK\r\n");
        let value = vec![b'v'; 64 << 10];
        let mut most = 0;
        for i in 0..1000u64 {
            let key = format!("session:{i}");
            let at = t0 + Duration::from_millis(i);
            let now = at + Duration::from_micros(500);
            store.set_expiring(key.as_bytes(), &value, at + Duration::from_millis(1), now);
            let held: usize = store.map.values().map(|e| e.value.len()).sum();
            most = most.max(held);
        }
        assert!(most <= MIN_SWEEP + 2 * value.len(), "the store held {most} bytes");
        let end = t0 + Duration::from_secs(2);
        assert_eq!(run(&mut store, b"GET forever", end), b"$1\r\nv\r\n");
        assert_eq!(run(&mut store, b"GET later", end), b"$1\r\nv\r\n");
    }

    /// Integers are read as Redis reads them: no leading zero, no `+`, no
    /// overflow. `INCR` past `i64::MAX` (or `DECR` past `i64::MIN`) is an
    /// error that leaves the value as it was, and a value with a leading
    /// zero is not an integer.
    #[test]
    fn integers_are_strict_and_never_wrap() {
        let mut store = Store::default();
        let t0 = Instant::now();
        let not_integer = &b"-ERR value is not an integer or out of range\r\n"[..];
        assert_eq!(run(&mut store, b"SET n 9223372036854775807", t0), b"+OK\r\n");
        assert_eq!(run(&mut store, b"INCR n", t0), not_integer);
        assert_eq!(run(&mut store, b"GET n", t0), b"$19\r\n9223372036854775807\r\n");
        assert_eq!(run(&mut store, b"SET m -9223372036854775808", t0), b"+OK\r\n");
        assert_eq!(run(&mut store, b"DECR m", t0), not_integer);
        for value in [&b"007"[..], b"+7", b"-07", b"00", b"7x", b""] {
            let mut store = Store::default();
            store.set(b"z", value, None);
            assert_eq!(run(&mut store, b"INCR z", t0), not_integer, "{}", value.escape_ascii());
        }
        assert_eq!(run(&mut store, b"SET e v EX 010", t0), b"-ERR invalid expire time in 'set' command\r\n");
    }

    /// `SET … EX` counts seconds and `PX` milliseconds; an expire time of 0
    /// or less is refused (the key is not set), as Redis does.
    #[test]
    fn ex_is_seconds_px_is_milliseconds_and_zero_is_refused() {
        let mut store = Store::default();
        let t0 = Instant::now();
        assert_eq!(run(&mut store, b"SET s v EX 1", t0), b"+OK\r\n");
        assert_eq!(run(&mut store, b"SET m v PX 1", t0), b"+OK\r\n");
        let later = t0 + Duration::from_millis(500);
        assert_eq!(run(&mut store, b"GET s", later), b"$1\r\nv\r\n", "EX 1 lives a second");
        assert_eq!(run(&mut store, b"GET m", later), b"$-1\r\n", "PX 1 lives a millisecond");
        assert_eq!(run(&mut store, b"GET s", t0 + Duration::from_millis(1001)), b"$-1\r\n");
        for line in [&b"SET z v EX 0"[..], b"SET z v PX 0", b"SET z v EX -1", b"SET z v PX -5"] {
            assert_eq!(
                run(&mut store, line, t0),
                b"-ERR invalid expire time in 'set' command\r\n",
                "{}",
                line.escape_ascii()
            );
        }
        assert_eq!(run(&mut store, b"EXISTS z", t0), b":0\r\n", "a refused SET sets nothing");
    }

    /// `INCR` and `DECR` keep the key's expiry, as Redis does: the counter
    /// still expires when the key set it to.
    #[test]
    fn incr_keeps_the_expiry() {
        let mut store = Store::default();
        let t0 = Instant::now();
        assert_eq!(run(&mut store, b"SET c 1 PX 100", t0), b"+OK\r\n");
        assert_eq!(run(&mut store, b"INCR c", t0 + Duration::from_millis(50)), b":2\r\n");
        assert_eq!(run(&mut store, b"DECR c", t0 + Duration::from_millis(60)), b":1\r\n");
        assert_eq!(run(&mut store, b"GET c", t0 + Duration::from_millis(101)), b"$-1\r\n");
    }

    /// `EXISTS` counts and leaves the keys; `DEL` counts and removes them.
    #[test]
    fn exists_reads_del_removes() {
        let mut store = Store::default();
        let t0 = Instant::now();
        assert_eq!(run(&mut store, b"MSET a 1 b 2", t0), b"+OK\r\n");
        assert_eq!(run(&mut store, b"EXISTS a b a nope", t0), b":3\r\n");
        assert_eq!(run(&mut store, b"EXISTS a b", t0), b":2\r\n");
        assert_eq!(run(&mut store, b"DEL a nope", t0), b":1\r\n");
        assert_eq!(run(&mut store, b"EXISTS a b", t0), b":1\r\n");
    }

    /// A measured reply exactly as large as the output limit is written;
    /// one byte more is refused with `reply too large`; one that fits the
    /// limit but not the room left beside the queued output is not written
    /// at all (`After::Overflow`).
    #[test]
    fn a_reply_may_take_the_whole_limit_and_no_more() {
        let mut store = Store::default();
        let t0 = Instant::now();
        store.set(b"k", &[b'v'; 100], None);
        // `$100\r\n` + 100 bytes + `\r\n`.
        let size = 108;
        let mut parser = RespParser::new(1024);
        let get = |parser: &mut RespParser, store: &mut Store, budget: Budget| {
            let args = parser.record(b"GET k").unwrap().unwrap();
            let mut out = Vec::new();
            let after = execute(store, args, &mut out, budget, t0);
            (after, out)
        };
        let (after, out) = get(&mut parser, &mut store, Budget::new(size, 0));
        assert_eq!((after, out.len()), (After::Continue, size));
        let (after, out) = get(&mut parser, &mut store, Budget::new(size - 1, 0));
        assert_eq!((after, &out[..]), (After::Continue, &b"-ERR reply too large\r\n"[..]));
        let (after, out) = get(&mut parser, &mut store, Budget::new(size, 1));
        assert_eq!((after, out.len()), (After::Overflow, 0));
    }

    /// The unknown-command error echoes at most [`ECHOED_NAME`] bytes of the
    /// name and as much of the arguments together, escaped, however large
    /// the request.
    #[test]
    fn the_unknown_command_error_is_bounded() {
        let mut store = Store::default();
        let name = vec![b'n'; 1000];
        let arg = vec![b'a'; 1000];
        let mut line = name.clone();
        for _ in 0..8 {
            line.push(b' ');
            line.extend_from_slice(&arg);
        }
        let reply = run(&mut store, &line, Instant::now());
        assert!(reply.starts_with(b"-ERR unknown command 'nnn"), "{}", reply.escape_ascii());
        assert!(reply.ends_with(b"\r\n") && reply.len() < 2 * ECHOED_NAME + 100, "{} bytes", reply.len());
        // Short arguments are echoed whole.
        let reply = run(&mut store, b"FROB a b", Instant::now());
        assert_eq!(reply, b"-ERR unknown command 'FROB', with args beginning with: 'a' 'b'\r\n");
    }

    #[test]
    fn sizes_are_what_is_written() {
        for value in [None, Some(&b""[..]), Some(b"x"), Some(&[7u8; 12345][..])] {
            let mut out = Vec::new();
            bulk(&mut out, value);
            assert_eq!(out.len(), bulk_size(value));
        }
        for n in [0, 9, 10, 99, 100, 123_456_789] {
            let mut out = Vec::new();
            decimal(&mut out, n as i64);
            assert_eq!(out.len(), digits(n));
        }
    }
}
