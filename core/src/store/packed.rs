//! The schema-2 message value: everything about one message in one redb value.
//!
//! ```text
//! 0x01 | u32 envelope length | envelope (JSON MessageRecord, text and html empty)
//!      | u32 header length   | our Received: header
//!      | codec               | payload
//! payload = u32 data length | data | u32 text length | text | html
//! ```
//! All lengths little-endian. Codec 0 stores the payload as it is; codec 1 is an lz4 block
//! preceded by the payload's u32 length. The envelope and the header stay outside the
//! compressed part: listing messages reads neither the body nor a decompressor, and the
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
//! A schema-1 value begins with `{` (MESSAGES) and its bytes live in the RAW table; both
//! are still read, so a schema-1 file needs no rewrite (see [`super::schema`]).

use super::StoreError;

/// The first byte of a schema-2 message value.
pub(super) const FORMAT_PACKED: u8 = 0x01;
const CODEC_STORED: u8 = 0;
const CODEC_LZ4: u8 = 1;
/// lz4 cannot expand a byte into more than 255: a larger claimed length is corruption, and is
/// refused before anything that size is allocated.
const LZ4_MAX_RATIO: usize = 255;

/// The compressed data, text and HTML of a message: built outside the write transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PackedBody {
    /// Codec byte, then the payload (compressed or not).
    bytes: Vec<u8>,
}

impl PackedBody {
    /// Lays out and compresses the payload; keeps it uncompressed when lz4 does not shrink it
    /// (already compressed attachments).
    pub(super) fn new(data: &[u8], text: &str, html: &str) -> Result<PackedBody, StoreError> {
        let mut payload = Vec::with_capacity(8 + data.len() + text.len() + html.len());
        push_length(&mut payload, data.len(), "data")?;
        payload.extend_from_slice(data);
        push_length(&mut payload, text.len(), "text")?;
        payload.extend_from_slice(text.as_bytes());
        payload.extend_from_slice(html.as_bytes());
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
        Ok(PackedBody { bytes })
    }

    /// How many bytes the value will hold for it.
    pub(super) fn len(&self) -> usize {
        self.bytes.len()
    }
}

/// The whole value: format byte, envelope, header, then the packed body.
pub(super) fn pack(
    envelope: &[u8],
    header: &[u8],
    body: &PackedBody,
) -> Result<Vec<u8>, StoreError> {
    let mut value = Vec::with_capacity(9 + envelope.len() + header.len() + body.bytes.len());
    value.push(FORMAT_PACKED);
    push_length(&mut value, envelope.len(), "envelope")?;
    value.extend_from_slice(envelope);
    push_length(&mut value, header.len(), "header")?;
    value.extend_from_slice(header);
    value.extend_from_slice(&body.bytes);
    Ok(value)
}

/// A schema-2 value taken apart; the body still packed.
#[derive(Debug)]
pub(super) struct Packed<'a> {
    pub envelope: &'a [u8],
    pub header: &'a [u8],
    body: &'a [u8],
}

/// What the packed body holds.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Body {
    pub data: Vec<u8>,
    pub text: String,
    pub html: String,
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

    /// Decompresses the body.
    pub(super) fn body(&self) -> Result<Body, StoreError> {
        let payload = match self.body.split_first() {
            Some((&CODEC_STORED, payload)) => payload.to_vec(),
            Some((&CODEC_LZ4, rest)) => {
                let (length, compressed) = take_length(rest, "payload")?;
                if length > compressed.len().saturating_mul(LZ4_MAX_RATIO) {
                    return Err(corrupt("payload length beyond what lz4 can expand to"));
                }
                let payload = lz4_flex::block::decompress(compressed, length)
                    .map_err(|e| corrupt(&format!("payload: {e}")))?;
                if payload.len() != length {
                    return Err(corrupt("payload shorter than its length says"));
                }
                payload
            }
            Some((codec, _)) => return Err(corrupt(&format!("unknown codec {codec}"))),
            None => return Err(corrupt("no body")),
        };
        let (data, rest) = take_prefixed(&payload, "data")?;
        let (text, html) = take_prefixed(rest, "text")?;
        let text = std::str::from_utf8(text).map_err(|_| corrupt("text is not UTF-8"))?;
        let html = std::str::from_utf8(html).map_err(|_| corrupt("html is not UTF-8"))?;
        Ok(Body {
            data: data.to_vec(),
            text: text.to_string(),
            html: html.to_string(),
        })
    }
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

    fn round_trip(data: &[u8], text: &str, html: &str) -> (Vec<u8>, Body) {
        let body = PackedBody::new(data, text, html).unwrap();
        let value = pack(b"{\"env\":1}", b"Received: x\r\n", &body).unwrap();
        let packed = Packed::parse(&value).unwrap();
        assert_eq!(packed.envelope, b"{\"env\":1}");
        assert_eq!(packed.header, b"Received: x\r\n");
        let unpacked = packed.body().unwrap();
        (value, unpacked)
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
        // splitmix64 output: incompressible.
        let mut state = 1u64;
        let data: Vec<u8> = (0..4096)
            .map(|_| {
                state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let z = (state ^ (state >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                (z ^ (z >> 27)) as u8
            })
            .collect();
        let body = PackedBody::new(&data, "", "").unwrap();
        assert_eq!(body.bytes[0], CODEC_STORED);
        assert_eq!(body.len(), 1 + 4 + data.len() + 4);
        let (_, unpacked) = round_trip(&data, "", "");
        assert_eq!(unpacked.data, data);
        assert_eq!((unpacked.text.as_str(), unpacked.html.as_str()), ("", ""));
    }

    #[test]
    fn a_damaged_value_is_an_error_never_a_panic_or_a_huge_allocation() {
        let text = "abcd".repeat(500);
        let body = PackedBody::new(b"data", &text, "<p>html</p>").unwrap();
        let value = pack(b"{}", b"R", &body).unwrap();
        // Every truncation, and every single byte changed to 0xFF, either fails cleanly or
        // reads back something.
        for cut in 0..value.len() {
            if let Ok(packed) = Packed::parse(&value[..cut]) {
                let _ = packed.body();
            }
        }
        for at in 0..value.len() {
            let mut damaged = value.clone();
            damaged[at] = 0xFF;
            if let Ok(packed) = Packed::parse(&damaged) {
                let _ = packed.body();
            }
        }
        // A claimed length of 4 GiB for a few bytes of lz4 is refused up front.
        let mut huge = vec![FORMAT_PACKED, 2, 0, 0, 0, b'{', b'}', 0, 0, 0, 0, CODEC_LZ4];
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        huge.extend_from_slice(&[0x10, b'a']);
        let error = Packed::parse(&huge).unwrap().body().unwrap_err();
        assert!(error.to_string().contains("beyond"), "{error}");
        assert!(Packed::parse(b"{\"v1\":true}").is_err());
    }
}
