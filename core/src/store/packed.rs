//! The schema-2 message value: everything about one message in one redb value.
//!
//! ```text
//! 0x01 | u32 envelope length | envelope (JSON MessageRecord, text and html empty)
//!      | u32 header length   | our Received: header
//!      | codec               | payload
//! payload = u32 data length | data | u32 text length | text | html
//! ```
//! All lengths little-endian. Codec 0 stores the payload as it is; codec 1 is an lz4 block
//! preceded by the payload's u32 length; codec 2 cuts the payload into chunks of at most
//! [`CHUNK`] bytes, each `u32 length | u32 stored length | bytes`, the bytes an lz4 block when
//! shorter than the chunk, else the chunk itself. The envelope and the header stay outside
//! the compressed part: listing messages reads neither the body nor a decompressor, and the
//! header, which names the message's id, is only known inside the write transaction, while
//! the payload is compressed ahead of it on the prepare thread.
//!
//! Why one compressed value: the data, the text decoded from it and the HTML rendered from
//! the text repeat one another, and lz4 only finds repeats within one stream. Schema 1 kept a
//! JSON record (text and HTML escaped, 42 KB for the 10 KB sample) and the raw bytes in two
//! tables: 80 KB of pages per message after redb rounds each value up to a power of two, and
//! the kernel's copy of those pages into the page cache was the largest single cost of the
//! commit thread (24 % of all samples in a 20-connection run).
//!
//! Why chunks past [`CHUNK`]: lz4 finds repeats 64 KiB back at most, so a large payload loses
//! nothing by being compressed a chunk at a time, and neither it nor its parts need to be in
//! memory whole: [`BodyWriter`] takes the data, text and HTML one after the other (the caller
//! drops each once written), and the store writes the chunks into the database's page one
//! by one, and reads back only the sections asked for. A payload of one chunk or less is one
//! lz4 block as before (codec 0 or 1), byte for byte.
//!
//! A schema-1 value begins with `{` (MESSAGES) and its bytes live in the RAW table; both
//! are still read, so a schema-1 file needs no rewrite (see [`super::schema`]).

use super::StoreError;

/// The first byte of a schema-2 message value.
pub(super) const FORMAT_PACKED: u8 = 0x01;
const CODEC_STORED: u8 = 0;
const CODEC_LZ4: u8 = 1;
const CODEC_CHUNKED: u8 = 2;
/// The most payload bytes in one chunk of codec 2, and in a payload of codec 0 or 1 written
/// now (older ones may be larger).
pub(super) const CHUNK: usize = 1 << 20;
/// lz4 cannot expand a byte into more than 255: a larger claimed length is corruption, and is
/// refused before anything that size is allocated.
const LZ4_MAX_RATIO: usize = 255;

/// The compressed data, text and HTML of a message: built outside the write transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PackedBody {
    /// Codec byte, then the payload (compressed or not): one piece for codecs 0 and 1, then a
    /// piece per chunk for codec 2, so that they can be written out and dropped one by one.
    pieces: Vec<Vec<u8>>,
    len: usize,
}

impl PackedBody {
    /// Lays out and compresses the payload; keeps it uncompressed when lz4 does not shrink it
    /// (already compressed attachments).
    #[cfg(test)]
    pub(super) fn new(data: &[u8], text: &str, html: &str) -> Result<PackedBody, StoreError> {
        let mut writer = BodyWriter::new(8 + data.len() + text.len() + html.len());
        writer.section(data, "data")?;
        writer.section(text.as_bytes(), "text")?;
        writer.rest(html.as_bytes());
        Ok(writer.finish())
    }

    /// How many bytes the value will hold for it.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// The pieces in order, each handed over to be written and dropped.
    pub(super) fn into_pieces(self) -> impl Iterator<Item = Vec<u8>> {
        self.pieces.into_iter()
    }
}

/// Builds a [`PackedBody`] from the payload's parts, in order: data, text, then HTML.
///
/// Up to [`CHUNK`] bytes are gathered and end up as one lz4 block (codec 1, or 0); past that,
/// each full chunk is compressed on its own as it fills (codec 2). What it holds besides the
/// compressed chunks is one chunk and one chunk's compression buffer.
#[derive(Debug)]
pub(super) struct BodyWriter {
    /// The payload bytes not yet in a chunk.
    pending: Vec<u8>,
    /// Codec 2's pieces, once the payload outgrew one chunk.
    chunks: Option<Vec<Vec<u8>>>,
    len: usize,
}

impl BodyWriter {
    /// A writer for a payload of about `expected` bytes (what it reserves, up to a chunk).
    pub(super) fn new(expected: usize) -> BodyWriter {
        BodyWriter {
            pending: Vec::with_capacity(expected.min(CHUNK)),
            chunks: None,
            len: 0,
        }
    }

    /// Appends a section: its length, then its bytes.
    pub(super) fn section(&mut self, bytes: &[u8], what: &str) -> Result<(), StoreError> {
        let length =
            u32::try_from(bytes.len()).map_err(|_| corrupt(&format!("{what} exceeds 4 GiB")))?;
        self.push(&length.to_le_bytes());
        self.push(bytes);
        Ok(())
    }

    /// Appends the last section, which runs to the end of the payload.
    pub(super) fn rest(&mut self, bytes: &[u8]) {
        self.push(bytes);
    }

    fn push(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.pending.len() == CHUNK {
                self.flush_chunk();
            }
            let room = CHUNK - self.pending.len();
            let (now, later) = bytes.split_at(room.min(bytes.len()));
            self.pending.extend_from_slice(now);
            bytes = later;
        }
    }

    /// Compresses the pending chunk into a piece of codec 2.
    fn flush_chunk(&mut self) {
        let chunks = self.chunks.get_or_insert_with(|| vec![vec![CODEC_CHUNKED]]);
        let compressed = lz4_flex::block::compress(&self.pending);
        let stored: &[u8] = if compressed.len() < self.pending.len() {
            &compressed
        } else {
            &self.pending
        };
        let mut piece = Vec::with_capacity(8 + stored.len());
        // Invariant: both lengths are at most CHUNK, far below u32::MAX.
        piece.extend_from_slice(&(self.pending.len() as u32).to_le_bytes());
        piece.extend_from_slice(&(stored.len() as u32).to_le_bytes());
        piece.extend_from_slice(stored);
        self.len += piece.len();
        chunks.push(piece);
        self.pending.clear();
    }

    pub(super) fn finish(mut self) -> PackedBody {
        if self.chunks.is_some() {
            if !self.pending.is_empty() {
                self.flush_chunk();
            }
            let pieces = self.chunks.unwrap_or_default();
            return PackedBody {
                len: self.len + 1,
                pieces,
            };
        }
        let payload = self.pending;
        let compressed = lz4_flex::block::compress(&payload);
        let mut bytes = Vec::with_capacity(5 + compressed.len().min(payload.len()));
        if compressed.len() + 4 < payload.len() {
            bytes.push(CODEC_LZ4);
            // Invariant: the payload is at most CHUNK bytes.
            bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            bytes.extend_from_slice(&compressed);
        } else {
            bytes.push(CODEC_STORED);
            bytes.extend_from_slice(&payload);
        }
        PackedBody {
            len: bytes.len(),
            pieces: vec![bytes],
        }
    }
}

/// The head of a value: format byte, envelope and header; the packed body follows it.
pub(super) fn value_head(envelope: &[u8], header: &[u8]) -> Result<Vec<u8>, StoreError> {
    let mut head = Vec::with_capacity(9 + envelope.len() + header.len());
    head.push(FORMAT_PACKED);
    push_length(&mut head, envelope.len(), "envelope")?;
    head.extend_from_slice(envelope);
    push_length(&mut head, header.len(), "header")?;
    head.extend_from_slice(header);
    Ok(head)
}

/// The whole value: format byte, envelope, header, then the packed body.
pub(super) fn pack(
    envelope: &[u8],
    header: &[u8],
    body: PackedBody,
) -> Result<Vec<u8>, StoreError> {
    let mut value = value_head(envelope, header)?;
    value.reserve_exact(body.len());
    for piece in body.into_pieces() {
        value.extend_from_slice(&piece);
    }
    Ok(value)
}

/// A schema-2 value taken apart; the body still packed.
#[derive(Debug)]
pub(super) struct Packed<'a> {
    pub envelope: &'a [u8],
    pub header: &'a [u8],
    body: &'a [u8],
}

impl<'a> Packed<'a> {
    /// Splits a value that begins with [`FORMAT_PACKED`].
    pub(super) fn parse(value: &'a [u8]) -> Result<Packed<'a>, StoreError> {
        let rest = match value.split_first() {
            Some((&FORMAT_PACKED, rest)) => rest,
            _ => return Err(corrupt("not a schema-2 message value")),
        };
        let (envelope, rest) = take_prefixed(rest, "envelope")?;
        let (header, body) = take_prefixed(rest, "header")?;
        Ok(Packed {
            envelope,
            header,
            body,
        })
    }

    /// The data as received, and no more of the payload than it takes.
    pub(super) fn data(&self) -> Result<Vec<u8>, StoreError> {
        let mut payload = Payload::new(self.body)?;
        let length = payload.length("data")?;
        payload.read(length, "data")
    }

    /// The text and the HTML; the data is decompressed but not kept.
    pub(super) fn text_and_html(&self) -> Result<(String, String), StoreError> {
        let mut payload = Payload::new(self.body)?;
        let data = payload.length("data")?;
        payload.skip(data, "data")?;
        let text = payload.length("text")?;
        let text = payload.read(text, "text")?;
        let html = payload.read(payload.remaining(), "html")?;
        let text = String::from_utf8(text).map_err(|_| corrupt("text is not UTF-8"))?;
        let html = String::from_utf8(html).map_err(|_| corrupt("html is not UTF-8"))?;
        Ok((text, html))
    }
}

/// The payload of a packed body, decompressed as it is read: a chunk at a time for codec 2,
/// whole for codecs 0 and 1.
struct Payload<'a> {
    /// Codec 2's chunks not yet decompressed.
    chunks: &'a [u8],
    /// Decompressed bytes not yet read.
    current: Vec<u8>,
    at: usize,
    /// Payload bytes not yet read, `current`'s included.
    remaining: usize,
}

impl<'a> Payload<'a> {
    fn new(body: &'a [u8]) -> Result<Payload<'a>, StoreError> {
        let (current, chunks, total) = match body.split_first() {
            Some((&CODEC_STORED, payload)) => (payload.to_vec(), &[][..], payload.len()),
            Some((&CODEC_LZ4, rest)) => {
                let (length, compressed) = take_length(rest, "payload")?;
                let payload = decompress(compressed, length, "payload")?;
                (payload, &[][..], length)
            }
            Some((&CODEC_CHUNKED, chunks)) => (Vec::new(), chunks, chunked_length(chunks)?),
            Some((codec, _)) => return Err(corrupt(&format!("unknown codec {codec}"))),
            None => return Err(corrupt("no body")),
        };
        Ok(Payload {
            chunks,
            current,
            at: 0,
            remaining: total,
        })
    }

    fn remaining(&self) -> usize {
        self.remaining
    }

    /// The next bytes, at most `wanted` of them: a slice of the current chunk.
    fn next_slice(&mut self, wanted: usize) -> Result<&[u8], StoreError> {
        if self.at == self.current.len() {
            let (length, stored, rest) = chunk_header(self.chunks)?;
            let (bytes, rest) = rest.split_at(stored);
            self.current = if stored == length {
                bytes.to_vec()
            } else {
                decompress(bytes, length, "chunk")?
            };
            self.chunks = rest;
            self.at = 0;
        }
        let end = self.at + wanted.min(self.current.len() - self.at);
        let slice = self.current.get(self.at..end).unwrap_or_default();
        self.at = end;
        self.remaining = self.remaining.saturating_sub(slice.len());
        Ok(slice)
    }

    /// Reads exactly `length` bytes.
    fn read(&mut self, length: usize, what: &str) -> Result<Vec<u8>, StoreError> {
        if length > self.remaining {
            return Err(corrupt(&format!("{what} cut short")));
        }
        let mut out = Vec::with_capacity(length);
        while out.len() < length {
            let slice = self.next_slice(length - out.len())?;
            out.extend_from_slice(slice);
        }
        Ok(out)
    }

    /// Passes over `length` bytes.
    fn skip(&mut self, mut length: usize, what: &str) -> Result<(), StoreError> {
        if length > self.remaining {
            return Err(corrupt(&format!("{what} cut short")));
        }
        while length > 0 {
            length -= self.next_slice(length)?.len();
        }
        Ok(())
    }

    fn length(&mut self, what: &str) -> Result<usize, StoreError> {
        let bytes = self.read(4, &format!("{what} length"))?;
        let (length, _) = take_length(&bytes, what)?;
        Ok(length)
    }
}

/// A chunk's length, its stored length, and what follows its header; checked against the
/// bytes there are.
fn chunk_header(chunks: &[u8]) -> Result<(usize, usize, &[u8]), StoreError> {
    let (length, rest) = take_length(chunks, "chunk")?;
    let (stored, rest) = take_length(rest, "chunk")?;
    if length == 0 || length > CHUNK || stored > length || stored > rest.len() {
        return Err(corrupt("chunk lengths do not add up"));
    }
    if length > stored.saturating_mul(LZ4_MAX_RATIO) {
        return Err(corrupt("chunk length beyond what lz4 can expand to"));
    }
    Ok((length, stored, rest))
}

/// The payload length of codec 2's chunks, from their headers alone.
fn chunked_length(mut chunks: &[u8]) -> Result<usize, StoreError> {
    let mut total = 0usize;
    while !chunks.is_empty() {
        let (length, stored, rest) = chunk_header(chunks)?;
        total = total.saturating_add(length);
        chunks = rest.get(stored..).unwrap_or_default();
    }
    Ok(total)
}

fn decompress(compressed: &[u8], length: usize, what: &str) -> Result<Vec<u8>, StoreError> {
    if length > compressed.len().saturating_mul(LZ4_MAX_RATIO) {
        return Err(corrupt(&format!(
            "{what} length beyond what lz4 can expand to"
        )));
    }
    let bytes = lz4_flex::block::decompress(compressed, length)
        .map_err(|e| corrupt(&format!("{what}: {e}")))?;
    if bytes.len() != length {
        return Err(corrupt(&format!("{what} shorter than its length says")));
    }
    Ok(bytes)
}

fn push_length(out: &mut Vec<u8>, length: usize, what: &str) -> Result<(), StoreError> {
    let length = u32::try_from(length).map_err(|_| corrupt(&format!("{what} exceeds 4 GiB")))?;
    out.extend_from_slice(&length.to_le_bytes());
    Ok(())
}

fn take_length<'a>(bytes: &'a [u8], what: &str) -> Result<(usize, &'a [u8]), StoreError> {
    match bytes.split_first_chunk::<4>() {
        Some((length, rest)) => Ok((u32::from_le_bytes(*length) as usize, rest)),
        None => Err(corrupt(&format!("{what} length cut short"))),
    }
}

/// A u32 length, then that many bytes.
fn take_prefixed<'a>(bytes: &'a [u8], what: &str) -> Result<(&'a [u8], &'a [u8]), StoreError> {
    let (length, rest) = take_length(bytes, what)?;
    if length > rest.len() {
        return Err(corrupt(&format!("{what} cut short")));
    }
    Ok(rest.split_at(length))
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("message value: {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What [`Packed`] reads back.
    #[derive(Debug, PartialEq, Eq)]
    struct Body {
        data: Vec<u8>,
        text: String,
        html: String,
    }

    fn unpack(value: &[u8]) -> Result<Body, StoreError> {
        let packed = Packed::parse(value)?;
        let data = packed.data()?;
        let (text, html) = packed.text_and_html()?;
        Ok(Body { data, text, html })
    }

    fn round_trip(data: &[u8], text: &str, html: &str) -> (Vec<u8>, Body) {
        let body = PackedBody::new(data, text, html).unwrap();
        let value = pack(b"{\"env\":1}", b"Received: x\r\n", body).unwrap();
        let packed = Packed::parse(&value).unwrap();
        assert_eq!(packed.envelope, b"{\"env\":1}");
        assert_eq!(packed.header, b"Received: x\r\n");
        let unpacked = unpack(&value).unwrap();
        (value, unpacked)
    }

    /// splitmix64 output: incompressible.
    fn noise(len: usize) -> Vec<u8> {
        let mut state = 1u64;
        (0..len)
            .map(|_| {
                state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let z = (state ^ (state >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                (z ^ (z >> 27)) as u8
            })
            .collect()
    }

    #[test]
    fn text_that_repeats_is_compressed_and_comes_back_whole() {
        let text = "the same words again and again\n".repeat(100);
        let html = format!("<p>{text}</p>");
        let data = format!("Subject: x\r\n\r\n{text}");
        let (value, body) = round_trip(data.as_bytes(), &text, &html);
        assert_eq!(body.data, data.as_bytes());
        assert_eq!(body.text, text);
        assert_eq!(body.html, html);
        assert!(value.len() < text.len() / 4, "{} bytes", value.len());
    }

    #[test]
    fn bytes_lz4_cannot_shrink_are_stored_as_they_are() {
        let data = noise(4096);
        let body = PackedBody::new(&data, "", "").unwrap();
        assert_eq!(body.pieces[0][0], CODEC_STORED);
        assert_eq!(body.len(), 1 + 4 + data.len() + 4);
        let (_, unpacked) = round_trip(&data, "", "");
        assert_eq!(unpacked.data, data);
        assert_eq!((unpacked.text.as_str(), unpacked.html.as_str()), ("", ""));
    }

    #[test]
    fn a_payload_past_one_chunk_is_chunked_and_reads_back() {
        // Noise, text that repeats, and sections that straddle chunk boundaries.
        let data = noise(CHUNK + 1000);
        let text = "[[a]]\n".repeat(300_000);
        let html = "<p>x</p>".repeat(10) + &String::from_utf8_lossy(&noise(CHUNK / 2));
        let body = PackedBody::new(&data, &text, &html).unwrap();
        assert_eq!(body.pieces[0], [CODEC_CHUNKED]);
        let payload = 8 + data.len() + text.len() + html.len();
        assert_eq!(body.pieces.len(), 1 + payload.div_ceil(CHUNK));
        // The noise is stored, the repeats compressed.
        assert!(
            body.len() < payload - text.len() / 2,
            "{} of {payload}",
            body.len()
        );
        let (_, unpacked) = round_trip(&data, &text, &html);
        assert_eq!(unpacked, Body { data, text, html });
        // A payload of exactly one chunk is still one block.
        let one = PackedBody::new(&vec![b'a'; CHUNK - 8], "", "").unwrap();
        assert_eq!((one.pieces.len(), one.pieces[0][0]), (1, CODEC_LZ4));
    }

    #[test]
    fn a_damaged_value_is_an_error_never_a_panic_or_a_huge_allocation() {
        let text = "abcd".repeat(500);
        for (data, html) in [
            (b"data".to_vec(), "<p>html</p>".to_owned()),
            (noise(CHUNK), "<p>h</p>".repeat(200)),
        ] {
            let body = PackedBody::new(&data, &text, &html).unwrap();
            let value = pack(b"{}", b"R", body).unwrap();
            // Every truncation, and single bytes changed to 0xFF, either fail cleanly or
            // read back something.
            let step = (value.len() / 3000).max(1);
            for cut in (0..value.len()).step_by(step) {
                let _ = unpack(&value[..cut]);
            }
            for at in (0..value.len()).step_by(step) {
                let mut damaged = value.clone();
                damaged[at] = 0xFF;
                let _ = unpack(&damaged);
            }
        }
        // A claimed length of 4 GiB for a few bytes of lz4 is refused up front.
        let mut huge = vec![FORMAT_PACKED, 2, 0, 0, 0, b'{', b'}', 0, 0, 0, 0, CODEC_LZ4];
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        huge.extend_from_slice(&[0x10, b'a']);
        let error = unpack(&huge).unwrap_err();
        assert!(error.to_string().contains("beyond"), "{error}");
        // So is a chunk claiming a megabyte from two bytes, or more than a chunk.
        for (length, stored) in [(CHUNK as u32, 2u32), (CHUNK as u32 + 1, CHUNK as u32 + 1)] {
            let mut chunked = vec![
                FORMAT_PACKED,
                2,
                0,
                0,
                0,
                b'{',
                b'}',
                0,
                0,
                0,
                0,
                CODEC_CHUNKED,
            ];
            chunked.extend_from_slice(&length.to_le_bytes());
            chunked.extend_from_slice(&stored.to_le_bytes());
            chunked.extend_from_slice(&[0x10, b'a']);
            assert!(unpack(&chunked).is_err());
        }
        assert!(Packed::parse(b"{\"v1\":true}").is_err());
    }
}
