//! Strong entity tags (RFC 9110 §8.8.3) from the bytes of a response.

/// A strong ETag, quoted: the CRC-32 of the content type, a NUL and the body, then the
/// body's length, in hex (`"89abcdef-2a10"`).
///
/// The content type is part of it so that the JSON and HTML forms of one message, served at
/// one URL, never share a tag (a strong tag names one representation). The length makes a
/// collision need two bodies of one length and one CRC. CRC-32 rather than a byte-at-a-time
/// hash such as FNV-1a: it is computed on every response, over 10 KB messages and feeds ten
/// times that, and crc32fast runs at several bytes a cycle. Pure and stable across runs and
/// builds, so a restarted server hands out the same tags.
pub fn strong_etag(content_type: &str, body: &[u8]) -> String {
    let mut crc = crc32fast::Hasher::new();
    crc.update(content_type.as_bytes());
    crc.update(b"\0");
    crc.update(body);
    format!("\"{:08x}-{:x}\"", crc.finalize(), body.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_32_vector() {
        // The CRC-32 check value: "123456789" gives cbf43926.
        let mut crc = crc32fast::Hasher::new();
        crc.update(b"123456789");
        assert_eq!(crc.finalize(), 0xcbf4_3926);
    }

    #[test]
    fn tag_depends_on_form_and_body() {
        let json = strong_etag("application/json", b"{}");
        assert_eq!(json, strong_etag("application/json", b"{}"));
        assert!(json.starts_with('"') && json.ends_with("-2\"") && json.len() == 12);
        assert_ne!(json, strong_etag("text/html; charset=utf-8", b"{}"));
        assert_ne!(json, strong_etag("application/json", b"[]"));
    }
}
