//! asynchat's producers: output made on demand, a chunk at a time.

use std::fmt;

/// A source of output that [`AsyncChat`](super::AsyncChat) asks for more
/// only when the socket can take it: a large file, or a reply built as it is
/// sent. asynchat's `producer.more()`.
pub trait Producer {
    /// The next chunk; an empty one means the producer is done.
    fn more(&mut self) -> Vec<u8>;
}

/// Bytes handed out `buffer_size` at a time (asynchat's `simple_producer`).
///
/// # Examples
///
/// ```
/// use rolecore::chat::{Producer, SimpleProducer};
///
/// let mut p = SimpleProducer::new(b"0123456789".to_vec(), 4);
/// assert_eq!(p.more(), b"0123");
/// assert_eq!(p.more(), b"4567");
/// assert_eq!(p.more(), b"89");
/// assert!(p.more().is_empty());
/// ```
pub struct SimpleProducer {
    data: Vec<u8>,
    at: usize,
    buffer_size: usize,
}

impl SimpleProducer {
    /// asynchat's default chunk size.
    pub const DEFAULT_BUFFER_SIZE: usize = 512;

    /// A producer of `data` in chunks of `buffer_size` bytes (at least 1).
    pub fn new(data: Vec<u8>, buffer_size: usize) -> SimpleProducer {
        SimpleProducer { data, at: 0, buffer_size: buffer_size.max(1) }
    }
}

impl Producer for SimpleProducer {
    fn more(&mut self) -> Vec<u8> {
        let end = self.data.len().min(self.at.saturating_add(self.buffer_size));
        let chunk = self.data[self.at..end].to_vec();
        self.at = end;
        chunk
    }
}

impl fmt::Debug for SimpleProducer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimpleProducer")
            .field("remaining", &(self.data.len() - self.at))
            .field("buffer_size", &self.buffer_size)
            .finish()
    }
}

/// Plain bytes as a producer that hands them out whole, once (asynchat
/// accepted bytes in `push_with_producer`, T39).
impl Producer for Vec<u8> {
    fn more(&mut self) -> Vec<u8> {
        std::mem::take(self)
    }
}
