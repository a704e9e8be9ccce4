//! The schema-4 message value: everything about one message in one redb value, but for a large
//! body, which goes into rows of its own.
//!
//! ```text
//! value   = 0x01 | u32 envelope length | envelope (JSON MessageRecord, text and html empty)
//!                | u32 header length   | our Received: header
//!                | codec               | body
//! codec 0: payload                       payload = u32 data length | data
//! codec 1: u32 payload length | lz4 of the payload        | u32 text length | text | html
//! codec 2: (u32 length | u32 rows) for the data, the text, then the HTML
//! ```
//! All lengths little-endian. Codec 2 keeps the body in [`super::schema::BODY`], keyed by
//! (message id, row number): first the data's rows, then the text's, then the HTML's, each
//! section starting a row of its own. A row is `u32 length | bytes`, the bytes an lz4 block of
//! `length` bytes when that is shorter, else the bytes themselves; at most [`ROW`] of them.
//!
//! The envelope and the header stay outside the compressed part: listing messages reads
//! neither the body nor a decompressor, and the header, which names the message's id, is only
//! known inside the write transaction, while the body is compressed ahead of it on the prepare
//! thread.
//!
//! Why one compressed payload for a small message: the data, the text decoded from it and the
//! HTML rendered from the text repeat one another, and lz4 only finds repeats within one
//! stream. Schema 1 kept a JSON record (text and HTML escaped, 42 KB for the 10 KB sample) and
//! the raw bytes in two tables: 80 KB of pages per message after redb rounds each value up to
//! a power of two, and the kernel's copy of those pages into the page cache was the largest
//! single cost of the commit thread (24 % of all samples in a 20-connection run).
//!
//! Why rows past [`INLINE_MAX`] (issue 24: a delivery holds at most four times the largest
//! message): redb builds a value in memory whole, in a page of the next power of two. 25 MiB
//! of random letters pack to 79 MB (lz4 cannot shrink them: data, text and HTML), which took
//! a 128 MiB page beside the packed body, 8.2 times the message in all. A row of at most
//! [`ROW`] bytes takes a 1 MiB page, and redb writes a transaction's pages out once they fill
//! half its cache, so what the insert adds is a few MiB. lz4 finds repeats 64 KiB back at
//! most, so compressing a row at a time loses nothing on a large body. Each section has rows
//! of its own so that the data and the text, which [`BodyWriter`] is given whole, are cut into
//! rows from their end, the section shrinking as its rows grow: a section and its packed copy
//! are never both whole in memory. And a read fetches only the sections it wants.
//!
//! A schema-1 value begins with `{` (MESSAGES) and its bytes live in the RAW table; both are
//! still read, and so are the codec-0 and codec-1 values of schemas 2 and 3 of any size, so an
//! older file needs no rewrite (see [`super::schema`]).

use std::borrow::Cow;

use super::StoreError;

/// The first byte of a schema-2 (and later) message value.
pub(super) const FORMAT_PACKED: u8 = 0x01;
const CODEC_STORED: u8 = 0;
const CODEC_LZ4: u8 = 1;
const CODEC_ROWS: u8 = 2;

/// The most bytes of a section in one row. redb keeps a row in a leaf page of its own, whose
/// size is the next power of two of the row's value (4 bytes and these), its key (12) and the
/// page's header (8): at 1 MiB exactly, every full row would take a 2 MiB page.
pub(super) const ROW: usize = (1 << 20) - 4096;

/// The largest payload (sections and their lengths) kept inside the message value; a larger
/// one goes into rows.
pub(super) const INLINE_MAX: usize = ROW;

/// lz4 cannot expand a byte into more than 255: a larger claimed length is corruption, and is
/// refused before anything that size is allocated.
const LZ4_MAX_RATIO: usize = 255;

/// The packed data, text and HTML of a message: built outside the write transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum PackedBody {
    /// Codec 0 or 1: the codec byte and the payload, which go inside the value.
    Inline(Vec<u8>),
    /// Codec 2: what goes inside the value (the codec byte and the sections' lengths), and the
    /// rows, in order, each to be written and dropped in turn.
    Rows { head: Vec<u8>, rows: Vec<Vec<u8>> },
}

impl PackedBody {
    /// Lays out and compresses a body given whole.
    #[cfg(test)]
    pub(super) fn new(data: &[u8], text: &str, html: &str) -> Result<PackedBody, StoreError> {
        let mut writer = BodyWriter::new();
        writer.data(data.to_vec());
        writer.html(html);
        writer.text(text.to_owned());
        writer.finish()
    }

    /// A body as a store keeps it: `body` the value's part (inline, or the head of one in
    /// rows), `rows` its rows in order (none for one inline).
    pub(super) fn from_stored(body: Vec<u8>, rows: Vec<Vec<u8>>) -> PackedBody {
        if body.first() == Some(&CODEC_ROWS) {
            PackedBody::Rows { head: body, rows }
        } else {
            PackedBody::Inline(body)
        }
    }

    /// How many bytes it takes, in the value and in rows.
    pub(super) fn len(&self) -> usize {
        match self {
            PackedBody::Inline(bytes) => bytes.len(),
            PackedBody::Rows { head, rows } => {
                head.len() + rows.iter().map(Vec::len).sum::<usize>()
            }
        }
    }
}

/// Packs the data, the text and the HTML of a message, in any order, each once: the data and
/// the text given whole (and let go), the HTML a piece at a time, as it is rendered.
///
/// Together up to [`INLINE_MAX`] bytes, they are kept as they come and become one lz4 block
/// (codec 1, or 0) when finished. Past that, each section is cut into rows of [`ROW`] bytes
/// (codec 2), each compressed as it is cut; what is held besides the packed rows is a row's
/// worth of each section and lz4's output buffer.
#[derive(Debug, Default)]
pub struct BodyWriter {
    data: Section,
    text: Section,
    html: Section,
    /// Set once the sections outgrew [`INLINE_MAX`].
    in_rows: bool,
    /// lz4's output for one row, reused.
    scratch: Vec<u8>,
}

/// One of the three parts of a body, being packed.
#[derive(Debug, Default)]
struct Section {
    /// Bytes given so far.
    len: usize,
    /// Packed rows, in order (in rows only).
    rows: Vec<Vec<u8>>,
    /// The bytes not in a row yet: all of them until the body goes into rows, then less than
    /// a row.
    pending: Vec<u8>,
}

#[derive(Debug, Clone, Copy)]
enum Part {
    Data,
    Text,
}

impl BodyWriter {
    /// An empty body.
    pub fn new() -> BodyWriter {
        BodyWriter::default()
    }

    /// Packs the data as received, and lets it go.
    pub fn data(&mut self, data: Vec<u8>) {
        self.whole(Part::Data, data);
    }

    /// Packs the text, and lets it go.
    pub fn text(&mut self, text: String) {
        self.whole(Part::Text, text.into_bytes());
    }

    /// Packs the next piece of the HTML.
    pub fn html(&mut self, piece: &str) {
        if !self.in_rows && self.total().saturating_add(piece.len()) > INLINE_MAX {
            self.go_into_rows();
        }
        let BodyWriter {
            html,
            in_rows,
            scratch,
            ..
        } = self;
        html.len += piece.len();
        if *in_rows {
            html.append(piece.as_bytes(), scratch);
        } else {
            html.pending.extend_from_slice(piece.as_bytes());
        }
    }

    /// Packs the last piece of the HTML, which it may keep as it is.
    pub fn html_end(&mut self, piece: String) {
        if self.in_rows
            || self.html.len > 0
            || self.total().saturating_add(piece.len()) > INLINE_MAX
        {
            return self.html(&piece);
        }
        self.html.len = piece.len();
        self.html.pending = piece.into_bytes();
    }

    /// How many bytes of data it was given.
    pub fn data_len(&self) -> usize {
        self.data.len
    }

    /// The packed body; fails only on a section over 4 GiB.
    pub(super) fn finish(mut self) -> Result<PackedBody, StoreError> {
        if !self.in_rows {
            return self.finish_inline();
        }
        let mut head = vec![CODEC_ROWS];
        let mut rows = Vec::new();
        for (section, what) in [
            (&mut self.data, "data"),
            (&mut self.text, "text"),
            (&mut self.html, "html"),
        ] {
            if !section.pending.is_empty() {
                let row = pack_row(&section.pending, &mut self.scratch);
                section.rows.push(row);
                section.pending = Vec::new();
            }
            push_length(&mut head, section.len, what)?;
            push_length(&mut head, section.rows.len(), what)?;
            rows.append(&mut section.rows);
        }
        Ok(PackedBody::Rows { head, rows })
    }

    /// Codec 1, or 0 when lz4 does not shrink the payload (already compressed attachments).
    fn finish_inline(self) -> Result<PackedBody, StoreError> {
        let (data, text, html) = (self.data.pending, self.text.pending, self.html.pending);
        let mut payload = Vec::with_capacity(8 + data.len() + text.len() + html.len());
        push_length(&mut payload, data.len(), "data")?;
        payload.extend_from_slice(&data);
        push_length(&mut payload, text.len(), "text")?;
        payload.extend_from_slice(&text);
        payload.extend_from_slice(&html);
        let compressed = lz4_flex::block::compress(&payload);
        let mut bytes = Vec::with_capacity(5 + compressed.len().min(payload.len()));
        if compressed.len() + 4 < payload.len() {
            bytes.push(CODEC_LZ4);
            push_length(&mut bytes, payload.len(), "payload")?;
            bytes.extend_from_slice(&compressed);
        } else {
            bytes.push(CODEC_STORED);
            bytes.extend_from_slice(&payload);
        }
        Ok(PackedBody::Inline(bytes))
    }

    /// The payload bytes given so far, with the lengths an inline payload carries.
    fn total(&self) -> usize {
        8usize
            .saturating_add(self.data.len)
            .saturating_add(self.text.len)
            .saturating_add(self.html.len)
    }

    /// Packs a section given whole: kept as it is while the body is small, else cut into rows
    /// from its end, the section shrinking as they are made.
    fn whole(&mut self, part: Part, mut bytes: Vec<u8>) {
        let given = match part {
            Part::Data => &self.data,
            Part::Text => &self.text,
        };
        let first = given.len == 0;
        if !self.in_rows && self.total().saturating_add(bytes.len()) > INLINE_MAX {
            self.go_into_rows();
        }
        let BodyWriter {
            data,
            text,
            in_rows,
            scratch,
            ..
        } = self;
        let section = match part {
            Part::Data => data,
            Part::Text => text,
        };
        if !first {
            // Given twice: appended, as the HTML is.
            section.len += bytes.len();
            if *in_rows {
                section.append(&bytes, scratch);
            } else {
                section.pending.extend_from_slice(&bytes);
            }
            return;
        }
        section.len = bytes.len();
        if !*in_rows {
            section.pending = bytes;
            return;
        }
        let full = bytes.len() / ROW * ROW;
        section.pending = bytes.get(full..).unwrap_or_default().to_vec();
        bytes.truncate(full);
        let mut rows = Vec::with_capacity(full / ROW);
        while let Some(start) = bytes.len().checked_sub(ROW) {
            rows.push(pack_row(bytes.get(start..).unwrap_or_default(), scratch));
            bytes.truncate(start);
            // Gives the row's worth back: realloc shrinks in place.
            bytes.shrink_to_fit();
        }
        rows.reverse();
        section.rows = rows;
    }

    /// From now on every section goes into rows: what each holds already becomes rows, but
    /// for a last part shorter than a row.
    fn go_into_rows(&mut self) {
        self.in_rows = true;
        let BodyWriter {
            data,
            text,
            html,
            scratch,
            ..
        } = self;
        for section in [data, text, html] {
            let pending = std::mem::take(&mut section.pending);
            section.append(&pending, scratch);
        }
    }
}

impl Section {
    /// Appends `bytes` in rows: full rows are packed, the rest waits in `pending`.
    fn append(&mut self, mut bytes: &[u8], scratch: &mut Vec<u8>) {
        while !bytes.is_empty() {
            if self.pending.capacity() == 0 {
                self.pending.reserve_exact(ROW);
            }
            let room = ROW - self.pending.len().min(ROW);
            let (now, later) = bytes.split_at(room.min(bytes.len()));
            self.pending.extend_from_slice(now);
            bytes = later;
            if self.pending.len() >= ROW {
                self.rows.push(pack_row(&self.pending, scratch));
                self.pending.clear();
            }
        }
    }
}

/// A row: the length, then lz4's block if shorter, else the bytes themselves.
fn pack_row(bytes: &[u8], scratch: &mut Vec<u8>) -> Vec<u8> {
    scratch.resize(lz4_flex::block::get_maximum_output_size(bytes.len()), 0);
    let compressed = lz4_flex::block::compress_into(bytes, scratch)
        .ok()
        .and_then(|n| scratch.get(..n))
        .filter(|compressed| compressed.len() < bytes.len());
    let stored = compressed.unwrap_or(bytes);
    let mut row = Vec::with_capacity(4 + stored.len());
    // Invariant: a row holds at most ROW bytes, far below u32::MAX.
    row.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    row.extend_from_slice(stored);
    row
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

/// Bytes of a row as read from the database.
pub(super) trait RowBytes {
    fn bytes(&self) -> &[u8];
}

impl RowBytes for redb::AccessGuard<'_, &[u8]> {
    fn bytes(&self) -> &[u8] {
        self.value()
    }
}

impl RowBytes for Vec<u8> {
    fn bytes(&self) -> &[u8] {
        self
    }
}

/// A value taken apart; the body still packed.
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

    /// A value kept in parts (PostgreSQL's columns): the envelope, the header, and the body as
    /// [`PackedBody`] laid it out (inline, or the head of one in rows).
    pub(super) fn from_parts(envelope: &'a [u8], header: &'a [u8], body: &'a [u8]) -> Packed<'a> {
        Packed {
            envelope,
            header,
            body,
        }
    }

    /// The packed body as the value holds it: inline, or the head of one in rows.
    pub(super) fn body(&self) -> &'a [u8] {
        self.body
    }

    /// Whether the body is in rows: the reads below then ask for them.
    pub(super) fn in_rows(&self) -> bool {
        self.body.first() == Some(&CODEC_ROWS)
    }

    /// `prefix`, then the data as received; no more of the payload is decompressed than it
    /// takes. `row(n)` reads row `n` of this message ([`Packed::in_rows`]).
    pub(super) fn data_after<R: RowBytes>(
        &self,
        prefix: &[u8],
        row: impl FnMut(u32) -> Result<R, StoreError>,
    ) -> Result<Vec<u8>, StoreError> {
        match self.layout()? {
            Layout::Inline(payload) => {
                let (data, _) = take_prefixed(&payload, "data")?;
                let mut out = Vec::with_capacity(prefix.len() + data.len());
                out.extend_from_slice(prefix);
                out.extend_from_slice(data);
                Ok(out)
            }
            Layout::Rows(sections) => {
                let mut out = Vec::new();
                read_rows(&mut out, prefix, sections.data, 0, row)?;
                Ok(out)
            }
        }
    }

    /// The text and the HTML; in rows, the data is not read.
    pub(super) fn text_and_html<R: RowBytes>(
        &self,
        mut row: impl FnMut(u32) -> Result<R, StoreError>,
    ) -> Result<(String, String), StoreError> {
        let (text, html) = match self.layout()? {
            Layout::Inline(payload) => {
                let (_, rest) = take_prefixed(&payload, "data")?;
                let (text, html) = take_prefixed(rest, "text")?;
                (text.to_vec(), html.to_vec())
            }
            Layout::Rows(sections) => {
                let (mut text, mut html) = (Vec::new(), Vec::new());
                let first = sections.data.rows;
                read_rows(&mut text, b"", sections.text, first, &mut row)?;
                let first = first.checked_add(sections.text.rows);
                let first = first.ok_or_else(|| corrupt("row count overflows"))?;
                read_rows(&mut html, b"", sections.html, first, &mut row)?;
                (text, html)
            }
        };
        let text = String::from_utf8(text).map_err(|_| corrupt("text is not UTF-8"))?;
        let html = String::from_utf8(html).map_err(|_| corrupt("html is not UTF-8"))?;
        Ok((text, html))
    }

    fn layout(&self) -> Result<Layout<'a>, StoreError> {
        match self.body.split_first() {
            Some((&CODEC_STORED, payload)) => Ok(Layout::Inline(Cow::Borrowed(payload))),
            Some((&CODEC_LZ4, rest)) => {
                let (length, compressed) = take_length(rest, "payload")?;
                let payload = decompress(compressed, length, "payload")?;
                Ok(Layout::Inline(Cow::Owned(payload)))
            }
            Some((&CODEC_ROWS, rest)) => {
                let (data, rest) = take_section(rest, "data")?;
                let (text, rest) = take_section(rest, "text")?;
                let (html, _) = take_section(rest, "html")?;
                Ok(Layout::Rows(Sections { data, text, html }))
            }
            Some((codec, _)) => Err(corrupt(&format!("unknown codec {codec}"))),
            None => Err(corrupt("no body")),
        }
    }
}

/// Where a body's sections are.
enum Layout<'a> {
    /// Codecs 0 and 1: the payload, decompressed.
    Inline(Cow<'a, [u8]>),
    /// Codec 2.
    Rows(Sections),
}

/// The three sections of a body in rows.
#[derive(Debug, Clone, Copy)]
struct Sections {
    data: SectionRows,
    text: SectionRows,
    html: SectionRows,
}

/// A section's length, and how many rows hold it.
#[derive(Debug, Clone, Copy)]
struct SectionRows {
    len: usize,
    rows: u32,
}

fn take_section<'a>(bytes: &'a [u8], what: &str) -> Result<(SectionRows, &'a [u8]), StoreError> {
    let (len, rest) = take_length(bytes, what)?;
    let (rows, rest) = take_length(rest, what)?;
    // Invariant: take_length reads a u32.
    let rows = rows as u32;
    if len > (rows as usize).saturating_mul(ROW) {
        return Err(corrupt(&format!("{what} longer than its rows can hold")));
    }
    Ok((SectionRows { len, rows }, rest))
}

/// Appends `prefix`, then the section's rows, decoded, to `out`: rows `first..` of the message.
fn read_rows<R: RowBytes>(
    out: &mut Vec<u8>,
    prefix: &[u8],
    section: SectionRows,
    first: u32,
    mut row: impl FnMut(u32) -> Result<R, StoreError>,
) -> Result<(), StoreError> {
    // Fallible: a damaged length must not abort the process on a huge allocation.
    out.try_reserve_exact(prefix.len().saturating_add(section.len))
        .map_err(|_| corrupt("section length beyond memory"))?;
    out.extend_from_slice(prefix);
    let end = out.len() + section.len;
    for index in 0..section.rows {
        let number = first
            .checked_add(index)
            .ok_or_else(|| corrupt("row count overflows"))?;
        let guard = row(number)?;
        let (length, stored) = take_length(guard.bytes(), "row")?;
        let at = out.len();
        if length == 0 || length > ROW || stored.len() > length || at + length > end {
            return Err(corrupt("row lengths do not add up"));
        }
        if stored.len() == length {
            out.extend_from_slice(stored);
            continue;
        }
        if length > stored.len().saturating_mul(LZ4_MAX_RATIO) {
            return Err(corrupt("row length beyond what lz4 can expand to"));
        }
        out.resize(at + length, 0);
        let written = out
            .get_mut(at..)
            .map(|room| lz4_flex::block::decompress_into(stored, room));
        if !matches!(written, Some(Ok(n)) if n == length) {
            return Err(corrupt("row: not the lz4 block its length says"));
        }
    }
    if out.len() != end {
        return Err(corrupt("section shorter than its length says"));
    }
    Ok(())
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

    /// The value and the rows of a packed body.
    fn store(body: PackedBody) -> (Vec<u8>, Vec<Vec<u8>>) {
        let mut value = value_head(b"{\"env\":1}", b"Received: x\r\n").unwrap();
        match body {
            PackedBody::Inline(bytes) => {
                value.extend_from_slice(&bytes);
                (value, Vec::new())
            }
            PackedBody::Rows { head, rows } => {
                value.extend_from_slice(&head);
                (value, rows)
            }
        }
    }

    fn unpack(value: &[u8], rows: &[Vec<u8>]) -> Result<Body, StoreError> {
        let row = |n: u32| {
            rows.get(n as usize)
                .cloned()
                .ok_or_else(|| StoreError::Corrupt(format!("no row {n}")))
        };
        let packed = Packed::parse(value)?;
        let data = packed.data_after(b"", row)?;
        let (text, html) = packed.text_and_html(row)?;
        Ok(Body { data, text, html })
    }

    fn round_trip(data: &[u8], text: &str, html: &str) -> (PackedBody, Body) {
        let body = PackedBody::new(data, text, html).unwrap();
        let (value, rows) = store(body.clone());
        let packed = Packed::parse(&value).unwrap();
        assert_eq!(packed.envelope, b"{\"env\":1}");
        assert_eq!(packed.header, b"Received: x\r\n");
        let row = |n: u32| Ok::<_, StoreError>(rows[n as usize].clone());
        assert_eq!(
            packed.data_after(b"Received: x\r\n", row).unwrap(),
            [b"Received: x\r\n".as_slice(), data].concat()
        );
        (body, unpack(&value, &rows).unwrap())
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

    /// Random lowercase letters: text lz4 cannot shrink.
    fn letters(len: usize) -> String {
        noise(len)
            .iter()
            .map(|b| char::from(b'a' + b % 26))
            .collect()
    }

    #[test]
    fn text_that_repeats_is_compressed_and_comes_back_whole() {
        let text = "the same words again and again\n".repeat(100);
        let html = format!("<p>{text}</p>");
        let data = format!("Subject: x\r\n\r\n{text}");
        let (body, unpacked) = round_trip(data.as_bytes(), &text, &html);
        assert!(matches!(&body, PackedBody::Inline(bytes) if bytes[0] == CODEC_LZ4));
        assert_eq!(unpacked.data, data.as_bytes());
        assert_eq!(unpacked.text, text);
        assert_eq!(unpacked.html, html);
        assert!(body.len() < text.len() / 4, "{} bytes", body.len());
    }

    #[test]
    fn bytes_lz4_cannot_shrink_are_stored_as_they_are() {
        let data = noise(4096);
        let (body, unpacked) = round_trip(&data, "", "");
        assert!(matches!(&body, PackedBody::Inline(bytes) if bytes[0] == CODEC_STORED));
        assert_eq!(body.len(), 1 + 4 + data.len() + 4);
        assert_eq!(unpacked.data, data);
        assert_eq!((unpacked.text.as_str(), unpacked.html.as_str()), ("", ""));
    }

    #[test]
    fn a_body_past_the_inline_bound_goes_into_rows_and_reads_back() {
        // At the bound, one byte past it, and sections that end on, before and after a row.
        let cases = [
            (INLINE_MAX - 8 - 2, 1, 1, false),
            (INLINE_MAX - 8 - 2, 1, 2, true),
            (1, INLINE_MAX - 8, 0, true),
            (2 * ROW, ROW - 1, ROW + 1, true),
            (2 * ROW + 1, 0, 3 * ROW, true),
            (0, 0, INLINE_MAX + 5, true),
        ];
        for (data_len, text_len, html_len, in_rows) in cases {
            let data = noise(data_len);
            let text = letters(text_len);
            let html = letters(html_len);
            let (body, unpacked) = round_trip(&data, &text, &html);
            let read_back = unpacked == Body { data, text, html };
            assert!(
                read_back,
                "{data_len} {text_len} {html_len} read back otherwise"
            );
            match body {
                PackedBody::Rows { rows, .. } => {
                    assert!(in_rows, "{data_len} {text_len} {html_len} in rows");
                    let expected = [data_len, text_len, html_len].map(|len| len.div_ceil(ROW));
                    assert_eq!(rows.len(), expected.iter().sum::<usize>());
                    // Each row's value, key and leaf header within a 1 MiB page.
                    assert!(rows.iter().all(|row| row.len() + 12 + 8 <= 1 << 20));
                }
                PackedBody::Inline(_) => assert!(!in_rows, "{data_len} {text_len} {html_len}"),
            }
        }
    }

    #[test]
    fn html_in_pieces_packs_as_html_given_whole_in_any_order() {
        let data = noise(3 * ROW / 2);
        let text = "[[a]]\n".repeat(ROW / 4);
        let html = letters(2 * ROW + 77);
        let whole = PackedBody::new(&data, &text, &html).unwrap();
        let mut writer = BodyWriter::new();
        writer.data(data.clone());
        let (most, last) = html.split_at(html.len() - 1000);
        for piece in most.as_bytes().chunks(65_536) {
            writer.html(std::str::from_utf8(piece).unwrap());
        }
        writer.html_end(last.to_owned());
        writer.text(text.clone());
        assert_eq!(writer.finish().unwrap(), whole);
        // Text first, HTML from a small start that crosses the bound late.
        let mut writer = BodyWriter::new();
        writer.text(text.clone());
        writer.html(&html[..3]);
        writer.html(&html[3..]);
        writer.data(data.clone());
        let (value, rows) = store(writer.finish().unwrap());
        let unpacked = unpack(&value, &rows).unwrap();
        assert!(unpacked == Body { data, text, html }, "read back otherwise");
    }

    /// Schemas 2 and 3 wrote a body of any size as one block, codec 1 (or 0): still read.
    #[test]
    fn a_large_body_in_one_block_as_schema_3_wrote_it_reads_back() {
        let data = noise(2 * ROW);
        let text = "[[a]]\n".repeat(ROW / 3);
        let html = letters(ROW + 1);
        let mut payload = Vec::new();
        push_length(&mut payload, data.len(), "data").unwrap();
        payload.extend_from_slice(&data);
        push_length(&mut payload, text.len(), "text").unwrap();
        payload.extend_from_slice(text.as_bytes());
        payload.extend_from_slice(html.as_bytes());
        let mut lz4 = vec![CODEC_LZ4];
        push_length(&mut lz4, payload.len(), "payload").unwrap();
        lz4.extend_from_slice(&lz4_flex::block::compress(&payload));
        let stored = [[CODEC_STORED].as_slice(), &payload].concat();
        for body in [lz4, stored] {
            let (value, rows) = store(PackedBody::Inline(body));
            let unpacked = unpack(&value, &rows).unwrap();
            let expected = Body {
                data: data.clone(),
                text: text.clone(),
                html: html.clone(),
            };
            assert!(unpacked == expected, "read back otherwise");
        }
    }

    #[test]
    fn a_small_html_given_at_its_end_is_kept_as_it_is() {
        let (data, text, html) = (b"Subject: x\r\n\r\nhi".to_vec(), "hi", "<p>hi</p>");
        let whole = PackedBody::new(&data, text, html).unwrap();
        let mut writer = BodyWriter::new();
        writer.data(data.clone());
        writer.html_end(html.to_owned());
        writer.text(text.to_owned());
        assert_eq!(writer.finish().unwrap(), whole);
        // Past the bound, it goes into rows like any piece.
        let big = letters(INLINE_MAX);
        let mut writer = BodyWriter::new();
        writer.data(data.clone());
        writer.html_end(big.clone());
        writer.text(text.to_owned());
        let (value, rows) = store(writer.finish().unwrap());
        assert_eq!(rows.len(), 3, "a row each");
        let unpacked = unpack(&value, &rows).unwrap();
        assert!(
            unpacked
                == Body {
                    data,
                    text: text.into(),
                    html: big
                },
            "read back otherwise"
        );
    }

    #[test]
    fn a_damaged_value_or_row_is_an_error_never_a_panic_or_a_huge_allocation() {
        let text = "abcd".repeat(500);
        for (data, html) in [
            (b"data".to_vec(), "<p>html</p>".to_owned()),
            (noise(ROW + 10), "<p>h</p>".repeat(200)),
        ] {
            let (value, rows) = store(PackedBody::new(&data, &text, &html).unwrap());
            // Every truncation, and single bytes changed to 0xFF, either fail cleanly or
            // read back something.
            let step = (value.len() / 3000).max(1);
            for cut in (0..value.len()).step_by(step) {
                let _ = unpack(&value[..cut], &rows);
            }
            for at in (0..value.len()).step_by(step) {
                let mut damaged = value.clone();
                damaged[at] = 0xFF;
                let _ = unpack(&damaged, &rows);
            }
            for (n, row) in rows.iter().enumerate() {
                let step = (row.len() / 300).max(1);
                for cut in (0..row.len()).step_by(step) {
                    let mut damaged = rows.clone();
                    damaged[n].truncate(cut);
                    assert!(unpack(&value, &damaged).is_err());
                }
                for at in (0..row.len().min(64)).chain([row.len() - 1]) {
                    let mut damaged = rows.clone();
                    damaged[n][at] ^= 0xFF;
                    let _ = unpack(&value, &damaged);
                }
            }
            if !rows.is_empty() {
                assert!(
                    unpack(&value, &rows[..rows.len() - 1]).is_err(),
                    "a row missing"
                );
            }
        }
        // A claimed length of 4 GiB for a few bytes of lz4 is refused up front.
        let mut huge = vec![FORMAT_PACKED, 2, 0, 0, 0, b'{', b'}', 0, 0, 0, 0, CODEC_LZ4];
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        huge.extend_from_slice(&[0x10, b'a']);
        let error = unpack(&huge, &[]).unwrap_err();
        assert!(error.to_string().contains("beyond"), "{error}");
        // So are sections longer than their rows, and a row claiming a megabyte from two
        // bytes, or more than a row.
        let rows_value = |data_len: u32, rows: u32| {
            let mut value = vec![
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
                CODEC_ROWS,
            ];
            for (len, count) in [(data_len, rows), (0, 0), (0, 0)] {
                value.extend_from_slice(&len.to_le_bytes());
                value.extend_from_slice(&count.to_le_bytes());
            }
            value
        };
        assert!(unpack(&rows_value(u32::MAX, 1), &[]).is_err());
        for length in [ROW as u32, ROW as u32 + 1] {
            let mut row = length.to_le_bytes().to_vec();
            row.extend_from_slice(&[0x10, b'a']);
            assert!(unpack(&rows_value(length, 2), &[row]).is_err());
        }
        assert!(Packed::parse(b"{\"v1\":true}").is_err());
    }
}
