//! Message data after `354`: end-of-data detection and dot-unstuffing (RFC 5321 §4.1.1.4,
//! §4.5.2).

use super::config::BareNewline;

/// Reads a message body after `354`.
///
/// Only CR LF "." CR LF ends the data; the start of the data counts as a line start, so
/// `.` CR LF right after `354` is an empty message (S10). A bare LF or a bare CR never ends a
/// line, so `\n.\n`, `\r.\n`, `\n.\r\n` and `\r\n.\r\r\n` are content (SMTP smuggling,
/// CVE-2023-51764). A leading dot is removed from every line (S9, first line included).
/// Past `max_size` stored octets the rest is scanned for the end but not kept (E7).
#[derive(Debug)]
pub struct DataReader {
    data: Vec<u8>,
    max_size: usize,
    policy: BareNewline,
    at_line_start: bool,
    too_big: bool,
    bare_newline: bool,
    done: bool,
}

/// Whether the end of data has been reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataStatus {
    /// Everything decidable was consumed; an undecided tail (a lone CR, a dot at a line
    /// start) waits for more bytes.
    NeedMore,
    /// The final `.` line was consumed.
    Done,
}

/// How a completed body turned out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataOutcome {
    /// The unstuffed content, ready to deliver.
    Complete(Vec<u8>),
    /// More than the size limit: `552 5.3.4`.
    TooBig,
    /// Bare CR or LF with the `reject` policy: `550 5.5.2`.
    BareNewline,
}

impl DataReader {
    /// A reader at the first line of the data.
    pub fn new(max_size: usize, policy: BareNewline) -> DataReader {
        DataReader {
            data: Vec::new(),
            max_size,
            policy,
            at_line_start: true,
            too_big: false,
            bare_newline: false,
            done: false,
        }
    }

    /// Reserves room for a message of `size` octets (the client's SIZE declaration), so a
    /// large body is not copied again and again as it grows. Capped by the size limit.
    pub fn reserve(&mut self, size: u64) {
        let size = usize::try_from(size)
            .unwrap_or(usize::MAX)
            .min(self.max_size);
        self.data.reserve(size.saturating_add(2));
    }

    /// Whether the final `.` line has been consumed.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Octets stored so far (never more than the size limit).
    pub fn stored(&self) -> usize {
        self.data.len()
    }

    /// Consumes what it can decide from `input`; returns the bytes consumed and the status.
    pub fn feed(&mut self, input: &[u8]) -> (usize, DataStatus) {
        if self.done {
            return (0, DataStatus::Done);
        }
        let mut pos = 0;
        let mut run = 0; // start of bytes not yet copied
        loop {
            if self.at_line_start {
                match input.get(pos) {
                    None => break,
                    Some(b'.') => match (input.get(pos + 1), input.get(pos + 2)) {
                        (None, _) | (Some(b'\r'), None) => break,
                        (Some(b'\r'), Some(b'\n')) => {
                            self.emit_span(input, run, pos);
                            self.done = true;
                            return (pos + 3, DataStatus::Done);
                        }
                        _ => {
                            // Dot-stuffing: drop the leading dot, keep the rest of the line.
                            self.emit_span(input, run, pos);
                            pos += 1;
                            run = pos;
                        }
                    },
                    Some(_) => {}
                }
                self.at_line_start = false;
            }
            let rest = input.get(pos..).unwrap_or_default();
            let Some(offset) = memchr::memchr2(b'\r', b'\n', rest) else {
                pos = input.len();
                break;
            };
            let at = pos + offset;
            if input.get(at) == Some(&b'\r') {
                match input.get(at + 1) {
                    None => {
                        // A CR at the end of the chunk: undecided until the next byte.
                        pos = at;
                        break;
                    }
                    Some(b'\n') => {
                        pos = at + 2;
                        self.at_line_start = true;
                    }
                    Some(_) => {
                        self.emit_span(input, run, at);
                        self.bare(b'\r');
                        pos = at + 1;
                        run = pos;
                    }
                }
            } else {
                self.emit_span(input, run, at);
                self.bare(b'\n');
                pos = at + 1;
                run = pos;
            }
        }
        self.emit_span(input, run, pos);
        (pos, DataStatus::NeedMore)
    }

    /// The result, once [`DataReader::feed`] returned `Done`.
    pub fn finish(self) -> DataOutcome {
        if self.too_big {
            DataOutcome::TooBig
        } else if self.bare_newline && self.policy == BareNewline::Reject {
            DataOutcome::BareNewline
        } else {
            DataOutcome::Complete(self.data)
        }
    }

    fn bare(&mut self, byte: u8) {
        self.bare_newline = true;
        match self.policy {
            BareNewline::Normalize => self.emit(b"\r\n"),
            BareNewline::Reject => self.emit(&[byte]),
        }
    }

    /// Emits `input[from..to]`.
    fn emit_span(&mut self, input: &[u8], from: usize, to: usize) {
        // Invariant: `feed` keeps run <= pos <= input.len() (each position was found in
        // `input` by `get` or memchr), so the span always exists.
        self.emit(input.get(from..to).unwrap_or_default());
    }

    fn emit(&mut self, bytes: &[u8]) {
        if self.too_big || bytes.is_empty() {
            return;
        }
        if self.data.len() + bytes.len() > self.max_size {
            self.too_big = true;
            self.data = Vec::new();
            return;
        }
        self.data.extend_from_slice(bytes);
    }
}

/// Dot-stuffs `body` for sending after `354` and appends the final `.` line. A body that
/// does not end in CR LF gets one, so that the `.` stands on its own line.
pub fn dot_stuff(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + body.len() / 64 + 5);
    let mut at_line_start = true;
    let mut rest = body;
    while !rest.is_empty() {
        if at_line_start && rest.first() == Some(&b'.') {
            out.push(b'.');
        }
        // The next line with its CR LF, or the unterminated rest.
        let (line, after) = match memchr::memmem::find(rest, b"\r\n") {
            Some(cr) => rest.split_at_checked(cr + 2).unwrap_or((rest, &[])),
            None => (rest, &[][..]),
        };
        out.extend_from_slice(line);
        at_line_start = line.ends_with(b"\r\n");
        rest = after;
    }
    if !at_line_start {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `chunks` like a session would: undecided tails are kept and re-fed.
    fn read(chunks: &[&[u8]], max: usize, policy: BareNewline) -> (Option<DataOutcome>, Vec<u8>) {
        let mut r = DataReader::new(max, policy);
        let mut pending = Vec::new();
        for (i, chunk) in chunks.iter().enumerate() {
            pending.extend_from_slice(chunk);
            let (used, status) = r.feed(&pending);
            pending.drain(..used);
            if status == DataStatus::Done {
                chunks[i + 1..]
                    .iter()
                    .for_each(|c| pending.extend_from_slice(c));
                return (Some(r.finish()), pending);
            }
        }
        (None, pending)
    }

    fn whole(input: &[u8]) -> (Option<DataOutcome>, Vec<u8>) {
        read(&[input], 1 << 20, BareNewline::Reject)
    }

    #[test]
    fn ends_only_at_crlf_dot_crlf() {
        let cases: &[(&[u8], Option<&[u8]>)] = &[
            (b"a\r\n.\r\n", Some(b"a\r\n")),
            (b".\r\n", Some(b"")),
            (b"..x\r\n.\r\n", Some(b".x\r\n")),
            (b"a\r\n..\r\n.\r\n", Some(b"a\r\n.\r\n")),
            (b"a\r\n.x\r\n.\r\n", Some(b"a\r\nx\r\n")),
            (b"a\r\n\x00.\r\n", None),
            (b"a\r\n.\r\r\n", None),
            (b"a\r\n. \r\n", None),
        ];
        for (input, expected) in cases {
            let (outcome, _) = whole(input);
            assert_eq!(
                outcome,
                expected.map(|e| DataOutcome::Complete(e.to_vec())),
                "{input:?}"
            );
        }
    }

    #[test]
    fn smuggling_variants_are_content() {
        for eod in [
            &b"\n.\r\n"[..],
            b"\n.\n",
            b"\r\n.\n",
            b"\r.\r",
            b"\r.\n",
            b"\n.\r",
            b"\r.\r\n",
            b"\r\n.\r\r\n",
        ] {
            let mut input = b"Subject: one\r\n\r\nbody".to_vec();
            input.extend_from_slice(eod);
            input.extend_from_slice(b"MAIL FROM:<ceo@example.org>\r\n");
            let (outcome, _) = whole(&input);
            assert_eq!(outcome, None, "{eod:?} ended the data");
            input.extend_from_slice(b"\r\n.\r\n");
            let (outcome, rest) = whole(&input);
            assert_eq!(outcome, Some(DataOutcome::BareNewline), "{eod:?}");
            assert!(rest.is_empty());
        }
    }

    #[test]
    fn normalize_turns_bare_endings_into_crlf() {
        let (outcome, _) = read(&[b"a\nb\rc\r\n.\r\n"], 100, BareNewline::Normalize);
        assert_eq!(
            outcome,
            Some(DataOutcome::Complete(b"a\r\nb\r\nc\r\n".to_vec()))
        );
    }

    #[test]
    fn too_big_reads_to_the_end() {
        let (outcome, rest) = read(
            &[b"0123456789\r\n", b"0123456789\r\n.\r\nNOOP\r\n"],
            15,
            BareNewline::Reject,
        );
        assert_eq!(outcome, Some(DataOutcome::TooBig));
        assert_eq!(rest, b"NOOP\r\n");
    }

    #[test]
    fn every_split_gives_the_same_result() {
        let input = b"..a\r\nb\r\r\n.\rc\n.\r\n\r\n.\r\nQUIT\r\n";
        let expected = whole(input);
        for i in 0..=input.len() {
            for j in i..=input.len() {
                let got = read(
                    &[&input[..i], &input[i..j], &input[j..]],
                    1 << 20,
                    BareNewline::Reject,
                );
                assert_eq!(got, expected, "split {i} {j}");
            }
        }
    }

    #[test]
    fn stuffing_round_trips() {
        for body in [&b""[..], b"a\r\n", b".\r\n", b"..\r\n.x\r\n", b"x\r\n.\r\n"] {
            let (outcome, _) = whole(&dot_stuff(body));
            assert_eq!(
                outcome,
                Some(DataOutcome::Complete(body.to_vec())),
                "{body:?}"
            );
        }
    }
}
