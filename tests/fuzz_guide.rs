//! The example of `docs/fuzzing.md` ("fuzzing your own dispatcher"),
//! compiled and run: the guide must show exactly the code between the
//! `guide:start` and `guide:end` lines below, so it cannot rot.
//!
//! One test only, so that nothing else in this process opens descriptors
//! while it runs and the example can check for leaks as a fuzz target does.

// guide:start
use std::io;

use rolecore::sim::{Sim, SimConfig};
use rolecore::{AcceptHandler, Address, Buffered, Channel, Connected, Ctx, StreamHandler};

/// The dispatcher under test: an echo server. Put yours here.
struct Echo;
impl StreamHandler<Buffered<Connected>> for Echo {
    fn handle_read(&mut self, ch: &mut Buffered<Connected>, _: &mut Ctx<'_>) -> io::Result<()> {
        let mut buf = [0u8; 1024];
        let n = ch.recv(&mut buf)?;
        ch.send(&buf[..n])
    }
}
struct Server;
impl AcceptHandler for Server {
    fn handle_accepted(&mut self, c: Channel<Connected>, _: Address, cx: &mut Ctx<'_>) -> io::Result<()> {
        cx.insert(Buffered::new(c), Echo)?;
        Ok(())
    }
}

/// One fuzz input: the bytes decide who connects, writes, reads, closes,
/// and what readiness the loop sees.
fn check(data: &[u8], config: SimConfig) {
    let mut sim = Sim::from_bytes(data, config).expect("a simulated world");
    sim.listen(Server).expect("listen");
    // The loop's invariants: nothing after close, no stale token, no livelock…
    let report = sim.run().unwrap_or_else(|failure| panic!("{failure}"));
    // …and your protocol's: here, an echo never loses or reorders a byte.
    for peer in &report.peers {
        assert!(peer.sent.starts_with(&peer.received_data()), "{}", report.failure("the echo lost bytes"));
    }
}
// guide:end

/// The guide's code block: the lines between `<!-- guide:start -->` and
/// `<!-- guide:end -->`, without the fence and the lines only a fuzz target
/// has.
fn guide_block() -> String {
    let guide = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/fuzzing.md"))
        .expect("docs/fuzzing.md");
    let start = guide.find("<!-- guide:start -->").expect("a guide:start marker in docs/fuzzing.md");
    let end = guide.find("<!-- guide:end -->").expect("a guide:end marker in docs/fuzzing.md");
    guide[start..end]
        .lines()
        .skip(1)
        .filter(|l| {
            !l.starts_with("```") && !l.starts_with("#![no_main]") && !l.starts_with("libfuzzer_sys::")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_guide_example_is_this_code_and_finds_no_fault() {
    let this = include_str!("fuzz_guide.rs");
    let start = this.find("// guide:start\n").unwrap() + "// guide:start\n".len();
    let end = this.find("// guide:end").unwrap();
    assert_eq!(
        guide_block().trim(),
        this[start..end].trim(),
        "docs/fuzzing.md must show the code of tests/fuzz_guide.rs between guide:start and guide:end"
    );

    // As the fuzz target would: alone in the process, so descriptors are checked.
    let config = SimConfig { check_descriptors: true, ..SimConfig::default() };
    check(&[], config);
    let mut x: u32 = 7;
    for len in [10, 100, 1000, 3000] {
        let data: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        check(&data, config);
    }
}
