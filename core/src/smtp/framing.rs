//! The input buffer and command-line framing.
//!
//! Lines end at LF (a CR before it is dropped; a command ending in bare LF is accepted,
//! SECURITY-CASES S11). A line longer than its limit is reported once, as soon as the limit
//! is passed, and then discarded up to its LF without being buffered (L1, L2). Every
//! decision depends only on the bytes, never on how they were split.

use std::ops::Range;

/// Bytes received but not yet processed, bounded by a fixed capacity.
#[derive(Debug)]
pub struct InputBuffer {
    buf: Vec<u8>,
    /// Bytes before `start` are consumed; compacted lazily.
    start: usize,
    capacity: usize,
    /// Inside an over-long line: drop bytes up to and including the next LF.
    discarding: bool,
}

/// The next command line, if one is complete.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A complete line; the range excludes the CR LF. Consume it with [`InputBuffer::consume`].
    Line(Range<usize>),
    /// A line passed its limit; it is being discarded.
    TooLong,
    /// No complete line yet.
    Incomplete,
}

impl InputBuffer {
    /// An empty buffer holding at most `capacity` bytes.
    pub fn new(capacity: usize) -> InputBuffer {
        InputBuffer {
            buf: Vec::new(),
            start: 0,
            capacity,
            discarding: false,
        }
    }

    /// How many more bytes fit.
    pub fn space(&self) -> usize {
        self.capacity.saturating_sub(self.len())
    }

    /// Bytes buffered and not consumed.
    pub fn len(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The unconsumed bytes.
    pub fn bytes(&self) -> &[u8] {
        // Invariant: `consume` keeps start <= buf.len().
        self.buf.get(self.start..).unwrap_or_default()
    }

    /// Appends as much of `data` as fits; returns how much was taken.
    pub fn push(&mut self, data: &[u8]) -> usize {
        // The first `space` bytes, or all of them if fewer.
        let data = data.get(..self.space()).unwrap_or(data);
        let take = data.len();
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > 0 && self.buf.len() + take > self.capacity {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(data);
        take
    }

    /// Marks `n` bytes from the front as processed.
    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.buf.len());
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
    }

    /// Drops everything buffered (STARTTLS: RFC 3207 §4.2, CVE-2011-0411).
    pub fn clear(&mut self) {
        self.buf.clear();
        self.start = 0;
        self.discarding = false;
    }

    /// Drops what has arrived of an over-long line; true once it is gone, so that the
    /// bytes start a new line (whose limit may depend on how it starts).
    pub fn skip_long_line(&mut self) -> bool {
        if self.discarding {
            match memchr::memchr(b'\n', self.bytes()) {
                Some(lf) => {
                    self.consume(lf + 1);
                    self.discarding = false;
                }
                None => self.consume(self.len()),
            }
        }
        !self.discarding
    }

    /// Finds the next line of at most `limit` octets (line ending included). Ranges are
    /// relative to [`InputBuffer::bytes`].
    pub fn next_line(&mut self, limit: usize) -> Frame {
        if !self.skip_long_line() {
            return Frame::Incomplete;
        }
        let bytes = self.bytes();
        let window = bytes.get(..limit).unwrap_or(bytes);
        match memchr::memchr(b'\n', window) {
            Some(lf) => {
                // A CR before the LF belongs to the line ending.
                let end = match window.get(..lf) {
                    Some([.., b'\r']) => lf - 1,
                    _ => lf,
                };
                Frame::Line(0..end)
            }
            None if bytes.len() >= limit => {
                // Invariant: no LF in the first `limit` bytes, so all of them are line content.
                self.consume(limit);
                self.discarding = true;
                Frame::TooLong
            }
            None => Frame::Incomplete,
        }
    }

    /// Consumes a line returned by [`InputBuffer::next_line`], with its line ending.
    pub fn consume_line(&mut self, line: &Range<usize>) {
        let bytes = self.bytes();
        let mut end = line.end;
        if bytes.get(end) == Some(&b'\r') {
            end += 1;
        }
        if bytes.get(end) == Some(&b'\n') {
            end += 1;
        }
        self.consume(end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[&[u8]], limit: usize) -> Vec<Result<Vec<u8>, ()>> {
        let mut b = InputBuffer::new(1024);
        let mut out = Vec::new();
        for chunk in input {
            assert_eq!(b.push(chunk), chunk.len());
            loop {
                match b.next_line(limit) {
                    Frame::Line(r) => {
                        out.push(Ok(b.bytes()[r.clone()].to_vec()));
                        b.consume_line(&r);
                    }
                    Frame::TooLong => out.push(Err(())),
                    Frame::Incomplete => break,
                }
            }
        }
        out
    }

    #[test]
    fn crlf_and_bare_lf_end_lines() {
        assert_eq!(
            lines(&[b"NOOP\r\nQUIT\nRSET\r"], 512),
            vec![Ok(b"NOOP".to_vec()), Ok(b"QUIT".to_vec())]
        );
    }

    #[test]
    fn too_long_is_reported_once_and_discarded() {
        let long = vec![b'x'; 20];
        let mut input: Vec<&[u8]> = vec![&long, &long, b"yy\r\nNOOP\r\n"];
        assert_eq!(lines(&input, 10), vec![Err(()), Ok(b"NOOP".to_vec())]);
        input = vec![b"123456789\r\nNOOP\r\n"];
        assert_eq!(lines(&input, 10), vec![Err(()), Ok(b"NOOP".to_vec())]);
        input = vec![b"12345678\r\n"];
        assert_eq!(lines(&input, 10), vec![Ok(b"12345678".to_vec())]);
    }

    #[test]
    fn every_split_gives_the_same_lines() {
        let input = b"EHLO a\r\nxxxxxxxxxxxxxxxxxxxxxxxx\r\nNOOP\nQUIT\r\n";
        let whole = lines(&[input], 12);
        for i in 0..input.len() {
            for j in i..input.len() {
                assert_eq!(lines(&[&input[..i], &input[i..j], &input[j..]], 12), whole);
            }
        }
    }

    #[test]
    fn a_new_line_is_visible_once_the_long_one_is_skipped() {
        let mut b = InputBuffer::new(64);
        b.push(b"xxxxxxxxxxxx\r\n");
        assert_eq!(b.next_line(8), Frame::TooLong);
        b.push(b"AUTH PLAIN");
        assert!(b.skip_long_line());
        assert_eq!(b.bytes(), b"AUTH PLAIN");
    }

    #[test]
    fn push_never_exceeds_capacity() {
        let mut b = InputBuffer::new(8);
        assert_eq!(b.push(b"0123456789"), 8);
        assert_eq!(b.space(), 0);
        b.consume(3);
        assert_eq!(b.push(b"abcdef"), 3);
        assert_eq!(b.bytes(), b"34567abc");
    }
}
