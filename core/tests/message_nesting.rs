//! Messages whose parts nest deeper than `message::MAX_DEPTH` (issue 24, item 1).
//!
//! mail-parser 0.11 recursed once per attached-message level while copying and dropping the
//! tree it built: 50 000 plain levels, or 3 000 inside one base64 part, overflowed the stack
//! of the thread that parsed them and aborted the daemon. Each test parses on a thread with
//! a stack of a known size, as the daemon's processing threads have.

use atacama_core::message::{Headers, MAX_DEPTH, ParsedMessage, parse};
use base64::Engine as _;

const HEADER: &str = "From: Mallory <m@x.test>\r\nTo: bob@x.test\r\nSubject: deep\r\n\
                      Message-ID: <deep@x.test>\r\nDate: Tue, 5 Mar 2024 09:15:00 +0100\r\n";

/// `levels` plain attached messages, one inside the other.
fn plain(levels: usize) -> String {
    let mut raw = "Content-Type: message/rfc822\r\n\r\n".repeat(levels);
    raw.push_str("Subject: innermost\r\n\r\nHello from the bottom.\r\n");
    raw
}

/// Our header, then `levels` plain levels sent as one base64 attached message.
fn base64_wrapped(levels: usize) -> Vec<u8> {
    let encoded = base64::engine::general_purpose::STANDARD.encode(plain(levels));
    let mut raw = format!(
        "{HEADER}Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    );
    for line in encoded.as_bytes().chunks(76) {
        raw.push_str(std::str::from_utf8(line).unwrap());
        raw.push_str("\r\n");
    }
    raw.into_bytes()
}

/// Our header, then `levels` plain levels.
fn plain_with_header(levels: usize) -> Vec<u8> {
    format!("{HEADER}{}", plain(levels)).into_bytes()
}

/// Parses on a thread with a stack of `stack` bytes.
fn parse_on_stack(stack: usize, raw: Vec<u8>) -> ParsedMessage {
    std::thread::Builder::new()
        .stack_size(stack)
        .spawn(move || parse(&raw))
        .unwrap()
        .join()
        .unwrap()
}

const TWO_MIB: usize = 2 << 20;

#[test]
fn nested_messages_beyond_the_bound_keep_their_top_level_fields() {
    let expected = ParsedMessage {
        headers: Headers {
            subject: Some("deep".into()),
            from: Some("Mallory <m@x.test>".into()),
            to: Some("bob@x.test".into()),
            date: Some("2024-03-05T09:15:00+01:00".into()),
            message_id: Some("deep@x.test".into()),
            in_reply_to: None,
        },
        text: String::new(),
        attachments: vec![],
        problems: vec![format!(
            "MIME parts nest at least {} levels deep, beyond the limit of {MAX_DEPTH}: only \
             the top-level header fields were read; the message is kept as received",
            MAX_DEPTH + 1
        )],
    };
    // The shapes of the issue: 1.6 MB plain, 131 KB base64.
    for (shape, raw) in [
        ("plain", plain_with_header(50_000)),
        ("base64", base64_wrapped(3_000)),
    ] {
        assert_eq!(parse_on_stack(TWO_MIB, raw), expected, "{shape}");
    }
}

#[test]
fn one_level_past_the_bound_is_too_deep_and_the_bound_itself_is_not() {
    // The message itself holds the first attached message: MAX_DEPTH levels in all.
    let at_bound = parse(&plain_with_header(MAX_DEPTH));
    assert!(at_bound.problems.is_empty(), "{:?}", at_bound.problems);
    assert_eq!(at_bound.attachments.len(), 1);
    let past = parse(&plain_with_header(MAX_DEPTH + 1));
    assert_eq!(past.problems.len(), 1);
    assert!(past.problems[0].contains("beyond the limit of 32"));
}

#[test]
fn a_message_nested_to_the_bound_is_read_on_a_quarter_of_the_default_stack() {
    // The costliest shape within the bound: every level inside a base64 part, which
    // mail-parser parses with recursive calls. It needs ~147 KiB of stack in a debug build,
    // ~37 KiB in release (`server::commit::PROCESSING_STACK` gives 4 MiB).
    let parsed = parse_on_stack(TWO_MIB / 4, base64_wrapped(MAX_DEPTH - 1));
    assert!(parsed.problems.is_empty(), "{:?}", parsed.problems);
    assert_eq!(parsed.headers.subject.as_deref(), Some("deep"));
    assert_eq!(parsed.attachments.len(), 1);
    assert_eq!(parsed.attachments[0].media_type, "message/rfc822");
}
