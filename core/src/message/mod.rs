//! From raw message bytes to the fields Atacama Mail stores.
//!
//! mail-parser 0.11 does the MIME work: RFC 5322 header fields, RFC 2045 transfer encodings,
//! RFC 2047 encoded words, RFC 2231 parameters, and charsets, all converted to UTF-8 (its
//! `full_encoding` feature adds the CJK multi-byte charsets). This module decides what is kept:
//! display strings for the addresses, the one text a reader should see, and the list of
//! attachments. It is pure, and total: every input gives a [`ParsedMessage`], never a panic,
//! nor a stack overflow: `nesting` measures how deep the parts nest before mail-parser, which
//! recurses per attached message, builds them, and a message nested past [`MAX_DEPTH`] is
//! read no further than its top-level header.

// Input reaches every line of this module.
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic
    )
)]

mod address;
mod flowed;
mod html;
mod nesting;

pub use nesting::MAX_DEPTH;

use std::{borrow::Cow, fmt};

use mail_parser::{
    DateTime, Encoding, HeaderValue, Message, MessageParser, MessagePart, MimeHeaders, PartType,
    parsers::MessageStream,
};

/// One attachment of a message, as listed (never its contents).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Attachment {
    /// The file name the sender gave, if any.
    pub name: Option<String>,
    /// `type/subtype`, lower case.
    pub media_type: String,
    /// Decoded size in bytes.
    pub size: u64,
}

/// The header fields a reader is shown and threads by, as parsed and as stored.
///
/// The store keeps these under the same names (`#[serde(flatten)]` into its records), so a
/// record written before this type existed reads back unchanged.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Headers {
    /// The Subject, encoded words decoded.
    pub subject: Option<String>,
    /// The From mailboxes, shown as for [`Headers::to`] (normally just one).
    pub from: Option<String>,
    /// The To recipients as a reader sees them: `Name <addr>`, or `addr` when there is no
    /// name, joined with `, `.
    ///
    /// A name that holds one of `,;:<>@"\` is quoted (`"Doe, John" <j@x.test>`) so that the
    /// list stays unambiguous; a group shows as `Team: a@x.test, b@x.test;`.
    pub to: Option<String>,
    /// RFC 3339, e.g. `2024-03-05T09:15:00+01:00`; None if absent or not a real date.
    pub date: Option<String>,
    /// Without the angle brackets.
    pub message_id: Option<String>,
    /// The first id of In-Reply-To (the parent, for threading), without the angle brackets.
    pub in_reply_to: Option<String>,
}

/// The processed fields of one message.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ParsedMessage {
    /// The top-level header fields.
    #[serde(flatten)]
    pub headers: Headers,
    /// The text that is rendered as Atacama markup; [`parse`] says where it comes from.
    pub text: String,
    /// Every attachment in message order, inline images and attached messages included.
    pub attachments: Vec<Attachment>,
    /// What could not be read, one sentence each; empty when all went well.
    #[serde(default)]
    pub problems: Vec<String>,
}

/// Parses raw message bytes. Never fails: an unreadable message keeps its body as lossy text.
///
/// The text is what a mail client shows as the message: its text body in the sense of
/// RFC 8621 §4.1.4, as mail-parser builds it. That is every inline text part in order, so
/// the text on both sides of an inline image is kept, taking from each multipart/alternative
/// its text/plain part. Where there is no text/plain part, or only a blank one, the HTML part
/// stands in, converted to plain text. `format=flowed` (RFC 3676) is joined back into
/// paragraphs. Parts are separated by a blank line, lines end with LF, and line breaks at the
/// very end are dropped.
///
/// Input in which mail-parser finds no header field at all (empty input, binary garbage, a
/// bare body), or on which it panics, is unreadable: every field is None, `text` is the whole
/// input as lossy UTF-8, and `problems` says so.
///
/// A message whose parts nest more than [`MAX_DEPTH`] levels deep (multipart and attached
/// messages, encoded ones included; see `nesting`) is read no further than its top-level
/// header fields: its text is empty, since what a reader would see cannot be known without
/// the parts, and `problems` names the depth. The raw bytes are stored all the same.
pub fn parse(raw: &[u8]) -> ParsedMessage {
    if raw.is_empty() {
        return unreadable(raw, Problem::Empty);
    }
    // SMTP only carries whole lines; mail-parser drops a last header line that has no CRLF.
    let input: Cow<'_, [u8]> = if raw.ends_with(b"\n") {
        Cow::Borrowed(raw)
    } else {
        Cow::Owned([raw, b"\r\n"].concat())
    };
    // The client has sent the message already: a bug in mail-parser must not lose it.
    // 0.11.9 does panic, with overflow checks on (debug, tests, fuzzing), on a quoted-printable
    // part that is only a soft line break (see the `mail_parser_panic_keeps_the_message` test).
    // The nesting walk uses mail-parser's tokenizer, so it may panic the same way.
    let parser = MessageParser::default();
    let parsed = std::panic::catch_unwind(|| match nesting::depth(&input) {
        Ok(_) => (parser.parse(input.as_ref()), None),
        Err(too_deep) => (parser.parse_headers(input.as_ref()), Some(too_deep)),
    });
    let (message, too_deep) = match parsed {
        Ok((Some(message), too_deep)) => (message, too_deep),
        Ok((None, _)) => return unreadable(raw, Problem::NoHeaders),
        Err(_) => return unreadable(raw, Problem::ParserPanicked),
    };
    let parsed = match too_deep {
        None => read(&message, &input),
        Some(too_deep) => top_level(&message, too_deep),
    };
    parsed.unwrap_or_else(|| unreadable(raw, Problem::NoHeaders))
}

/// What went wrong while reading a message; its text goes to [`ParsedMessage::problems`].
#[derive(Debug, Clone, PartialEq, Eq)]
enum Problem {
    Empty,
    NoHeaders,
    ParserPanicked,
    TextUndecoded,
    /// The attachment's name, or its 1-based position when it has none.
    AttachmentUndecoded(String),
    /// Parts nest deeper than [`MAX_DEPTH`]; the nesting walk stopped at this depth.
    TooDeep(usize),
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const WHY: &str = "(bad transfer encoding or unterminated MIME part)";
        match self {
            Problem::Empty => f.write_str("empty message"),
            Problem::NoHeaders => f.write_str("no header field: the whole message is kept as text"),
            Problem::ParserPanicked => {
                f.write_str("the MIME parser failed: the whole message is kept as text")
            }
            Problem::TextUndecoded => {
                write!(
                    f,
                    "the text body could not be decoded {WHY}: it is kept as received"
                )
            }
            Problem::AttachmentUndecoded(which) => write!(
                f,
                "attachment {which} could not be decoded {WHY}: its size is that of the bytes \
                 as received"
            ),
            Problem::TooDeep(depth) => write!(
                f,
                "MIME parts nest at least {depth} levels deep, beyond the limit of {MAX_DEPTH}: \
                 only the top-level header fields were read; the message is kept as received"
            ),
        }
    }
}

fn unreadable(raw: &[u8], problem: Problem) -> ParsedMessage {
    ParsedMessage {
        text: String::from_utf8_lossy(raw).into_owned(),
        problems: vec![problem.to_string()],
        ..ParsedMessage::default()
    }
}

/// Takes the stored fields from a parsed message; None if it has no real header field.
fn read(message: &Message<'_>, raw: &[u8]) -> Option<ParsedMessage> {
    let fields = header_fields(message)?;
    let mut problems = Vec::new();
    let text = body_text(message, &mut problems);
    let attachments = message
        .attachments()
        .enumerate()
        .map(|(index, part)| {
            let attachment = attachment(part, raw);
            if part.is_encoding_problem {
                let which = match &attachment.name {
                    Some(name) => format!("{name:?}"),
                    None => format!("#{}", index + 1),
                };
                problems.push(Problem::AttachmentUndecoded(which));
            }
            attachment
        })
        .collect();
    Some(ParsedMessage {
        text,
        attachments,
        problems: problems.iter().map(Problem::to_string).collect(),
        ..fields
    })
}

/// The top-level header fields of a message nested too deep to read further.
fn top_level(message: &Message<'_>, too_deep: nesting::TooDeep) -> Option<ParsedMessage> {
    Some(ParsedMessage {
        problems: vec![Problem::TooDeep(too_deep.depth).to_string()],
        ..header_fields(message)?
    })
}

/// The fields taken from the top-level header; None if it has no real header field.
fn header_fields(message: &Message<'_>) -> Option<ParsedMessage> {
    // mail-parser skips lines that are no header field, and takes any name before a colon,
    // even binary. Without one real field the input is no message, and what mail-parser took
    // for its body would drop the lines it skipped.
    let root = message.parts.first()?;
    if !root.headers.iter().any(|field| is_field_name(field.name())) {
        return None;
    }
    Some(ParsedMessage {
        headers: Headers {
            subject: message.subject().and_then(non_empty),
            from: address::display(message.from()),
            to: address::display(message.all_to()),
            date: message.date().and_then(rfc3339),
            message_id: message.message_id().and_then(non_empty),
            in_reply_to: first_id(message.in_reply_to()),
        },
        ..ParsedMessage::default()
    })
}

fn body_text(message: &Message<'_>, problems: &mut Vec<Problem>) -> String {
    let (mut text, mut damaged) = joined_text(message, &message.text_body);
    if text.trim().is_empty() && message.html_body != message.text_body {
        // Some senders pair a real HTML part with an empty text/plain one.
        let (html, html_damaged) = joined_text(message, &message.html_body);
        if !html.is_empty() {
            (text, damaged) = (html, html_damaged);
        }
    }
    if damaged {
        problems.push(Problem::TextUndecoded);
    }
    text
}

/// The text of the listed parts, one after the other; true if one could not be decoded.
fn joined_text(message: &Message<'_>, part_ids: &[u32]) -> (String, bool) {
    let mut texts = Vec::new();
    let mut damaged = false;
    for part in part_ids
        .iter()
        .filter_map(|&id| message.parts.get(id as usize))
    {
        let text = match &part.body {
            PartType::Text(text) => plain_text(part, text),
            PartType::Html(html) => Cow::Owned(html::html_to_text(html)),
            _ => continue, // inline images and the like: they are listed as attachments
        };
        if text.trim_end_matches(['\r', '\n']).is_empty() {
            continue;
        }
        damaged |= part.is_encoding_problem;
        texts.push(text);
    }
    // One allocation of the final size: the text can be as large as the message.
    let len = texts.iter().map(|text| text.len() + 2).sum();
    let mut out = String::with_capacity(len);
    for text in &texts {
        if !out.is_empty() {
            out.push_str("\n\n");
        }
        push_lf_lines(&mut out, text.trim_end_matches(['\r', '\n']));
    }
    (out, damaged)
}

/// Appends `text` with LF line ends: every CR before an LF goes, not just one, since
/// "\r\r\n" would otherwise leave a CR LF.
fn push_lf_lines(out: &mut String, text: &str) {
    for (index, line) in text.split('\n').enumerate() {
        if index > 0 {
            out.push('\n');
        }
        out.push_str(line.trim_end_matches('\r'));
    }
}

fn plain_text<'a>(part: &MessagePart<'_>, text: &'a str) -> Cow<'a, str> {
    let parameter = |name| part.content_type().and_then(|ct| ct.attribute(name));
    if parameter("format").is_some_and(|f| f.eq_ignore_ascii_case("flowed")) {
        let delete_space = parameter("delsp").is_some_and(|d| d.eq_ignore_ascii_case("yes"));
        Cow::Owned(flowed::unflow(text, delete_space))
    } else {
        Cow::Borrowed(text)
    }
}

fn attachment(part: &MessagePart<'_>, raw: &[u8]) -> Attachment {
    Attachment {
        name: part.attachment_name().and_then(non_empty),
        media_type: media_type(part),
        size: u64::try_from(decoded_size(part, raw)).unwrap_or(u64::MAX),
    }
}

/// The part's `type/subtype`, lower case. Without a valid Content-Type, what mail-parser took
/// the part for: a message, text (the RFC 2045 §5.2 default), or bytes.
fn media_type(part: &MessagePart<'_>) -> String {
    let declared = part
        .content_type()
        .and_then(|ct| Some(format!("{}/{}", ct.ctype(), ct.subtype()?)));
    match declared {
        Some(media_type) => media_type.to_ascii_lowercase(),
        None => match part.body {
            PartType::Message(_) => "message/rfc822".to_owned(),
            PartType::Text(_) | PartType::Html(_) => "text/plain".to_owned(),
            _ => "application/octet-stream".to_owned(),
        },
    }
}

/// The size after transfer decoding.
///
/// mail-parser keeps binary parts exactly as decoded, but text parts after charset conversion
/// and attached messages as their whole enclosing message, so those two are decoded again
/// from their place in the raw message, the way mail-parser decoded them.
fn decoded_size(part: &MessagePart<'_>, raw: &[u8]) -> usize {
    if let PartType::Binary(_) | PartType::InlineBinary(_) | PartType::Multipart(_) = part.body {
        return part.body.len();
    }
    let Some(body) = raw.get(part.offset_body as usize..part.offset_end as usize) else {
        return part.body.len();
    };
    let mut stream = MessageStream::new(body);
    // An empty boundary makes the decoders read to the end of `body`.
    let (end, decoded) = match part.encoding {
        Encoding::None => return body.len(),
        Encoding::Base64 => stream.decode_base64_mime(b""),
        Encoding::QuotedPrintable => stream.decode_quoted_printable_mime(b""),
    };
    if end == usize::MAX {
        body.len()
    } else {
        decoded.len()
    }
}

/// RFC 3339, if the date is a real one (mail-parser accepts 31 February).
fn rfc3339(date: &DateTime) -> Option<String> {
    let year = date.year;
    let leap = year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400));
    let days = match date.month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    (date.is_valid() && date.day <= days).then(|| date.to_rfc3339())
}

/// The first message id of the field: of several parents, threading follows the first.
fn first_id(field: &HeaderValue<'_>) -> Option<String> {
    match field {
        HeaderValue::Text(id) => non_empty(id),
        HeaderValue::TextList(ids) => ids.iter().find_map(|id| non_empty(id)),
        _ => None,
    }
}

/// RFC 5322 §3.6.8: printable US-ASCII except the colon.
fn is_field_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && b != b':')
}

/// The trimmed text, unless that is empty.
fn non_empty(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NO_HEADER: &str = "no header field: the whole message is kept as text";

    fn with_header(field: &str) -> ParsedMessage {
        parse(format!("{field}\r\n\r\nBody\r\n").as_bytes())
    }

    #[test]
    fn unreadable_input_is_kept_as_text() {
        let cases: &[(&[u8], &str, &str)] = &[
            (b"", "", "empty message"),
            (b"Hello world\r\n", "Hello world\r\n", NO_HEADER),
            (
                b"Hello\r\nmore\r\n\r\nbody\r\n",
                "Hello\r\nmore\r\n\r\nbody\r\n",
                NO_HEADER,
            ),
            (b"\r\nbody", "\r\nbody", NO_HEADER),
            (b": no name\r\n\r\nbody", ": no name\r\n\r\nbody", NO_HEADER),
            (
                b"\x00\xff\xfe\x01:\x80",
                "\0\u{fffd}\u{fffd}\u{1}:\u{fffd}",
                NO_HEADER,
            ),
        ];
        for (raw, text, problem) in cases {
            let expected = ParsedMessage {
                text: (*text).to_owned(),
                problems: vec![(*problem).to_owned()],
                ..ParsedMessage::default()
            };
            assert_eq!(parse(raw), expected, "for {raw:?}");
        }
    }

    #[test]
    fn mail_parser_panic_keeps_the_message() {
        // Found by the proptest: mail-parser 0.11.9 subtracts past zero in its quoted-printable
        // decoder when a part is only a soft line break before the boundary.
        let raw: &[u8] = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\
                           Content-Transfer-Encoding: quoted-printable\r\n\r\n=\r\n--b\r\n";
        let parsed = parse(raw);
        // Overflow checks come with debug assertions unless a profile says otherwise.
        if cfg!(debug_assertions) {
            let expected = ParsedMessage {
                text: String::from_utf8_lossy(raw).into_owned(),
                problems: vec![Problem::ParserPanicked.to_string()],
                ..ParsedMessage::default()
            };
            assert_eq!(parsed, expected);
        } else {
            assert!(parsed.problems.is_empty()); // the subtraction wraps and mail-parser reads on
        }
    }

    #[test]
    fn headers_only_message_has_empty_text() {
        for raw in [
            "Subject: hi",
            "Subject: hi\r\n",
            "Subject: hi\n",
            "Subject: hi\r\n\r\n",
        ] {
            let expected = ParsedMessage {
                headers: Headers {
                    subject: Some("hi".to_owned()),
                    ..Headers::default()
                },
                ..ParsedMessage::default()
            };
            assert_eq!(parse(raw.as_bytes()), expected, "for {raw:?}");
        }
    }

    #[test]
    fn shows_addresses() {
        let cases: &[(&str, Option<&str>)] = &[
            ("a@x.test", Some("a@x.test")),
            ("<a@x.test>", Some("a@x.test")),
            ("John Doe <j@x.test>", Some("John Doe <j@x.test>")),
            ("\"John Doe\" <j@x.test>", Some("John Doe <j@x.test>")),
            ("\"Doe, John\" <j@x.test>", Some("\"Doe, John\" <j@x.test>")),
            (
                r#""Say \"hi\"" <s@x.test>"#,
                Some(r#""Say \"hi\"" <s@x.test>"#),
            ),
            (
                "=?UTF-8?Q?Jos=C3=A9?= <jose@x.test>",
                Some("José <jose@x.test>"),
            ),
            ("\"j@x.test\" <j@x.test>", Some("j@x.test")),
            ("a@x.test, B <b@x.test>", Some("a@x.test, B <b@x.test>")),
            (
                "Team: a@x.test, B <b@x.test>;",
                Some("Team: a@x.test, B <b@x.test>;"),
            ),
            ("undisclosed-recipients:;", Some("undisclosed-recipients:;")),
            (
                "c@x.test, Team: a@x.test;, d@x.test",
                Some("c@x.test, Team: a@x.test;, d@x.test"),
            ),
            ("", None),
        ];
        for (value, shown) in cases {
            let shown = shown.map(str::to_owned);
            assert_eq!(
                with_header(&format!("To: {value}")).headers.to,
                shown,
                "To: {value}"
            );
            assert_eq!(
                with_header(&format!("From: {value}")).headers.from,
                shown,
                "From: {value}"
            );
        }
    }

    #[test]
    fn joins_every_to_field() {
        let parsed = parse(b"To: a@x.test\r\nTo: b@x.test\r\n\r\n");
        assert_eq!(parsed.headers.to.as_deref(), Some("a@x.test, b@x.test"));
    }

    #[test]
    fn dates_become_rfc3339() {
        let cases: &[(&str, Option<&str>)] = &[
            (
                "Tue, 5 Mar 2024 09:15:00 +0100",
                Some("2024-03-05T09:15:00+01:00"),
            ),
            ("5 Mar 2024 09:15:00 GMT", Some("2024-03-05T09:15:00Z")),
            (
                "Thu, 29 Feb 2024 23:59:59 -0800",
                Some("2024-02-29T23:59:59-08:00"),
            ),
            (
                "Tue, 1 Feb 2000 00:00:00 +0000",
                Some("2000-02-01T00:00:00Z"),
            ),
            ("Fri, 30 Feb 2024 10:00:00 +0000", None),
            ("Sun, 29 Feb 2023 10:00:00 +0000", None),
            ("Wed, 31 Apr 2024 10:00:00 +0000", None),
            ("Mon, 1 Jan 2024 25:00:00 +0000", None),
            ("yesterday", None),
            ("", None),
        ];
        for (value, date) in cases {
            let date = date.map(str::to_owned);
            assert_eq!(
                with_header(&format!("Date: {value}")).headers.date,
                date,
                "Date: {value}"
            );
        }
    }

    #[test]
    fn ids_lose_their_brackets() {
        let cases: &[(&str, Option<&str>, Option<&str>)] = &[
            ("Message-ID: <abc@x.test>", Some("abc@x.test"), None),
            ("Message-ID: <>", None, None),
            ("In-Reply-To: <p@x.test>", None, Some("p@x.test")),
            (
                "In-Reply-To: <p1@x.test> <p2@x.test>",
                None,
                Some("p1@x.test"),
            ),
            (
                "In-Reply-To: <p@x.test> (Bob's message)",
                None,
                Some("p@x.test"),
            ),
            ("In-Reply-To:", None, None),
        ];
        for (field, message_id, in_reply_to) in cases {
            let parsed = with_header(field);
            assert_eq!(parsed.headers.message_id.as_deref(), *message_id, "{field}");
            assert_eq!(
                parsed.headers.in_reply_to.as_deref(),
                *in_reply_to,
                "{field}"
            );
        }
    }

    #[test]
    fn text_parts_are_joined_with_a_blank_line() {
        let raw = "Content-Type: multipart/mixed; boundary=b\r\n\r\n\
                   --b\r\nContent-Type: text/plain\r\n\r\nBefore the image.\r\n\r\n\
                   --b\r\nContent-Type: image/png\r\nContent-Disposition: inline\r\n\
                   Content-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n\
                   --b\r\nContent-Type: text/plain\r\n\r\nAfter it.\r\n--b--\r\n";
        let parsed = parse(raw.as_bytes());
        assert_eq!(parsed.text, "Before the image.\n\nAfter it.");
        let png = Attachment {
            name: None,
            media_type: "image/png".to_owned(),
            size: 8,
        };
        assert_eq!(parsed.attachments, [png]);
        assert!(parsed.problems.is_empty());
    }

    #[test]
    fn blank_plain_part_gives_way_to_html() {
        let raw = "Content-Type: multipart/alternative; boundary=b\r\n\r\n\
                   --b\r\nContent-Type: text/plain\r\n\r\n \r\n\
                   --b\r\nContent-Type: text/html\r\n\r\n<p>Real <b>content</b></p>\r\n--b--\r\n";
        assert_eq!(parse(raw.as_bytes()).text, "Real content");
    }

    #[test]
    fn flowed_text_is_joined() {
        let raw = "Content-Type: text/plain; charset=utf-8; format=flowed; delsp=yes\r\n\r\n\
                   A long para \r\ngraph.\r\n\r\n> quo \r\n> ted\r\n";
        assert_eq!(parse(raw.as_bytes()).text, "A long paragraph.\n\n> quoted");
    }

    #[test]
    fn undecodable_text_is_kept_and_reported() {
        let raw = "Subject: s\r\nContent-Transfer-Encoding: base64\r\n\r\n!!not base64!!\r\n";
        let parsed = parse(raw.as_bytes());
        assert_eq!(parsed.text, "!!not base64!!");
        assert_eq!(
            parsed.problems,
            [
                "the text body could not be decoded (bad transfer encoding or unterminated \
                 MIME part): it is kept as received"
            ]
        );
    }

    #[test]
    fn media_type_falls_back_to_what_the_part_is() {
        let raw = "Content-Type: multipart/mixed; boundary=b\r\n\r\n\
                   --b\r\n\r\nbody\r\n\
                   --b\r\nContent-Disposition: attachment; filename=notes\r\n\r\nnotes\r\n\
                   --b\r\nContent-Type: IMAGE/JPEG; name=\"a.jpg\"\r\n\
                   Content-Disposition: attachment\r\n\r\nxyz\r\n\
                   --b\r\nContent-Type: application\r\nContent-Disposition: attachment\r\n\r\n\
                   \x01\x02\r\n--b--\r\n";
        let expected = [
            ("notes", "text/plain", 5),
            ("a.jpg", "image/jpeg", 3),
            ("", "application/octet-stream", 2),
        ]
        .map(|(name, media_type, size)| Attachment {
            name: non_empty(name),
            media_type: media_type.to_owned(),
            size,
        });
        let parsed = parse(raw.as_bytes());
        assert_eq!(parsed.text, "body");
        assert_eq!(parsed.attachments, expected);
    }
}
