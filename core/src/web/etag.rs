//! Strong entity tags (RFC 9110 §8.8.3) from the bytes of a response.

/// A strong ETag, quoted: FNV-1a 64 over the content type, a NUL, and the body, in hex.
///
/// The content type is part of the hash so that the JSON and HTML forms of one message,
/// served at one URL, never share a tag (RFC 9110 §8.8.3: a strong tag names one
/// representation). Pure and stable across runs and builds, so every process of a
/// restarted server hands out the same tags.
pub fn strong_etag(content_type: &str, body: &[u8]) -> String {
    format!(
        "\"{:016x}\"",
        fnv1a_64([content_type.as_bytes(), b"\0", body])
    )
}

fn fnv1a_64<const N: usize>(parts: [&[u8]; N]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    parts
        .iter()
        .flat_map(|part| part.iter())
        .fold(OFFSET, |hash, &byte| {
            (hash ^ u64::from(byte)).wrapping_mul(PRIME)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_64_vectors() {
        // From the FNV reference test suite.
        assert_eq!(fnv1a_64([b""]), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a_64([b"a"]), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a_64([b"foo", b"bar"]), 0x85944171f73967e8);
    }

    #[test]
    fn tag_depends_on_form_and_body() {
        let json = strong_etag("application/json", b"{}");
        assert_eq!(json.len(), 18);
        assert_eq!(json, strong_etag("application/json", b"{}"));
        assert_ne!(json, strong_etag("text/html; charset=utf-8", b"{}"));
        assert_ne!(json, strong_etag("application/json", b"[]"));
    }
}
