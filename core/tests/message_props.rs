//! Properties of `message::parse`: it is total, whatever the bytes.
//!
//! `parse` only catches panics of mail-parser itself (and then keeps the message as text); a
//! panic in our own code fails these tests. `text` is a `String`, so always valid UTF-8.

use atacama_core::message::{ParsedMessage, parse};
use proptest::{collection::vec, prelude::*, sample::select};

const PARSER_FAILED: &str = "the MIME parser failed: the whole message is kept as text";
const NO_HEADER: &str = "no header field: the whole message is kept as text";

/// What must hold for every input.
fn check(raw: &[u8]) -> Result<ParsedMessage, TestCaseError> {
    let parsed = parse(raw);
    if matches!(parsed.problems.as_slice(), [only] if only == NO_HEADER || only == PARSER_FAILED) {
        let expected = ParsedMessage {
            text: String::from_utf8_lossy(raw).into_owned(),
            problems: parsed.problems.clone(),
            ..ParsedMessage::default()
        };
        prop_assert_eq!(
            &parsed,
            &expected,
            "an unreadable message is kept whole, as text"
        );
    }
    prop_assert_eq!(&parse(raw), &parsed, "parse is deterministic");
    Ok(parsed)
}

fn samples() -> Vec<Vec<u8>> {
    let dir = format!("{}/tests/mime", env!("CARGO_MANIFEST_DIR"));
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("{dir}: {error}"))
        .filter_map(|entry| Some(entry.ok()?.path()))
        .filter(|path| path.extension().is_some_and(|e| e == "eml"))
        .collect();
    paths.sort();
    paths
        .iter()
        .filter_map(|path| std::fs::read(path).ok())
        .collect()
}

/// One edit of a sample: overwrite, insert or delete at a position (taken modulo the length).
#[derive(Debug, Clone)]
enum Edit {
    Overwrite(usize, u8),
    Insert(usize, u8),
    Delete(usize, usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    // Bytes that matter to MIME are more interesting than random ones.
    let byte = prop_oneof![select(b"-\r\n:;=<>\"'?&/ \t".to_vec()), any::<u8>(),];
    prop_oneof![
        (any::<usize>(), byte.clone()).prop_map(|(at, b)| Edit::Overwrite(at, b)),
        (any::<usize>(), byte).prop_map(|(at, b)| Edit::Insert(at, b)),
        (any::<usize>(), 1usize..64).prop_map(|(at, n)| Edit::Delete(at, n)),
    ]
}

fn apply(raw: &mut Vec<u8>, edit: &Edit) {
    let position = |at: usize, len: usize| if len == 0 { 0 } else { at % len };
    match *edit {
        Edit::Overwrite(at, b) => {
            let at = position(at, raw.len());
            if let Some(slot) = raw.get_mut(at) {
                *slot = b;
            }
        }
        Edit::Insert(at, b) => raw.insert(position(at, raw.len() + 1), b),
        Edit::Delete(at, n) => {
            let at = position(at, raw.len());
            raw.drain(at..(at + n).min(raw.len()));
        }
    }
}

/// Messages built from MIME pieces, valid and broken, to reach deep into the parser.
fn mime_message() -> impl Strategy<Value = Vec<u8>> {
    let header = select(vec![
        "From: =?utf-8?q?Jos=C3=A9?= <j@x.test>",
        "From: \"Doe, John\" <j@x.test>, Group: a@x.test;",
        "To: undisclosed-recipients:;",
        "To: =?iso-8859-1?b?6Q==?= <e@x.test>, <",
        "Subject: =?utf-8?b?8J+OiQ==?= =?shift_jis?b?gqA=?=",
        "Subject: =?x-unknown?q?=FF?= =?utf-8?q?broken",
        "Date: Fri, 30 Feb 2024 25:61:61 +9999",
        "Date: Tue, 5 Mar 2024 09:15:42 +0100",
        "Message-ID: <a@x.test>",
        "In-Reply-To: <a@x.test> <b@x.test>",
        "In-Reply-To: <",
        "Content-Disposition: attachment; filename*=UTF-8''%E2%82%AC%zz.pdf",
        "Content-Disposition: inline",
        "no colon here",
        " folded continuation",
    ]);
    let content_type = select(vec![
        "multipart/mixed; boundary=b",
        "multipart/alternative; boundary=b",
        "multipart/related; boundary=\"b\"",
        "multipart/digest; boundary=b",
        "multipart/mixed",
        "text/plain; charset=iso-2022-jp; format=flowed; delsp=yes",
        "text/plain; charset=utf-16",
        "text/html; charset=windows-1252",
        "message/rfc822",
        "image/png; name=\"a.png\"",
        "application",
    ]);
    let encoding = select(vec!["base64", "quoted-printable", "8bit", "x-uuencode"]);
    let body = prop_oneof![
        "[ -~\r\n]{0,120}",
        "(<[a-z/!-]{0,4}[^<>]{0,10}>|&[a-z#0-9]{0,6};?|[a-z ]{0,8}|\r\n){0,20}",
        "([A-Za-z0-9+/=]{0,76}\r\n){0,4}",
        "(=[0-9A-Fa-z]{0,2}|[a-z ]{0,10}|=?\r\n){0,12}",
        vec(any::<u8>(), 0..64).prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ];
    let part = (
        vec(header.clone(), 0..3),
        proptest::option::of(content_type.clone()),
        proptest::option::of(encoding.clone()),
        body.clone(),
        select(vec!["\r\n--b\r\n", "\r\n--b--\r\n", "\r\n--b", "\r\n", ""]),
    );
    (
        vec(header, 0..6),
        content_type,
        encoding,
        vec(part, 0..5),
        body,
    )
        .prop_map(|(headers, content_type, encoding, parts, preamble)| {
            let mut raw = String::new();
            for header in headers {
                raw += &format!("{header}\r\n");
            }
            raw += &format!("Content-Type: {content_type}\r\n");
            raw += &format!("Content-Transfer-Encoding: {encoding}\r\n\r\n{preamble}\r\n--b\r\n");
            for (headers, content_type, encoding, body, delimiter) in parts {
                for header in headers {
                    raw += &format!("{header}\r\n");
                }
                if let Some(content_type) = content_type {
                    raw += &format!("Content-Type: {content_type}\r\n");
                }
                if let Some(encoding) = encoding {
                    raw += &format!("Content-Transfer-Encoding: {encoding}\r\n");
                }
                raw += &format!("\r\n{body}{delimiter}");
            }
            raw.into_bytes()
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_are_parsed(raw in vec(any::<u8>(), 0..2048)) {
        check(&raw)?;
    }

    #[test]
    fn mime_shaped_messages_are_parsed(raw in mime_message()) {
        check(&raw)?;
    }

    #[test]
    fn edited_samples_are_parsed(index in any::<prop::sample::Index>(), edits in vec(edit(), 1..12)) {
        let samples = samples();
        let mut raw = index.get(&samples).clone();
        for edit in &edits {
            apply(&mut raw, edit);
        }
        check(&raw)?;
    }
}
