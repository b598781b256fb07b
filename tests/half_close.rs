//! P14: a peer that shuts down its sending side still receives every byte the
//! server had queued for it (asyncore dropped the queue: 65 536 of 4 194 304
//! bytes arrived in experiment E25, `docs/rules.md`).

mod util;

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;

use rolecore::{Buffered, Channel, Connected, Ctx, StreamHandler};
use util::Log;

struct Echo(Log);

impl StreamHandler<Buffered<Connected>> for Echo {
    fn handle_read(&mut self, ch: &mut Buffered<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        let mut buf = [0u8; 8192];
        let n = ch.recv(&mut buf)?;
        ch.send(&buf[..n])
    }

    fn handle_close(&mut self, ch: &mut Buffered<Connected>, _cx: &mut Ctx<'_>) {
        self.0.push(format!("close with {} queued", ch.queued()));
    }
}

#[test]
fn queued_output_reaches_a_peer_that_half_closed() {
    const LEN: usize = 1 << 20;
    for backend in util::backends() {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let mut theirs = theirs;
        let data: Vec<u8> = (0..LEN).map(|i| (i * 7 % 251) as u8).collect();
        let log = Log::default();
        let mut map = util::map(backend);
        let channel = Channel::<Connected>::try_from(ours).unwrap();
        map.insert(Buffered::new(channel), Echo(log.clone())).unwrap();

        // The peer sends everything and its FIN without reading a byte, so the
        // echo piles up in the server's queue behind a full socket buffer.
        let writer = {
            let mut theirs = theirs.try_clone().unwrap();
            let data = data.clone();
            std::thread::spawn(move || {
                theirs.write_all(&data).unwrap();
                theirs.shutdown(Shutdown::Write).unwrap();
            })
        };
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            theirs.read_to_end(&mut got).map(|_| got)
        });
        // Let the server read to the end before the peer reads anything.
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(util::run_until(&mut map, |m| m.is_empty()), "{backend}: the channel never closed");
        writer.join().unwrap();
        let got = reader.join().unwrap().unwrap();
        assert_eq!(got.len(), LEN, "{backend}: bytes lost after the peer's FIN");
        assert!(got == data, "{backend}: bytes corrupted");
        assert_eq!(log.events(), ["close with 0 queued"], "{backend}: handle_close once, after draining");
    }
}
