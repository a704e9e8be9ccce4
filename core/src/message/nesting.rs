//! How deep the parts of a message nest, found before mail-parser builds them.
//!
//! mail-parser 0.11 keeps an attached message (`message/rfc822`, `message/global`) as a
//! `Message` inside its part, and recurses once per level when it copies or drops one: 50 000
//! plain levels (1.6 MB), or 3 000 inside one base64 part (131 KB), overflow a thread's 2 MiB
//! stack, and a stack overflow aborts the whole process, `catch_unwind` or not. So
//! [`parse`](super::parse) first walks the message with [`depth`], and reads a message
//! nested beyond [`MAX_DEPTH`] no further than its top-level header fields.
//!
//! The walk is mail-parser's own loop (`MessageParser::parse_` in
//! `src/parsers/message.rs`) with the building left out: the same tokenizer (`MessageStream`:
//! header fields, boundaries, transfer decoders) and the same decisions, with a stack of the
//! open levels instead of a tree, so it finds the depth the parser would build, not an
//! estimate of it. Multipart levels count too: they cost the parser heap, not stack, but no
//! real message nests 32 deep either way. An attached message in base64 or quoted-printable
//! is decoded and walked, as the parser does, and like the parser to at most
//! [`ENCODED_LEVELS`] encoded levels: past that it keeps the part as bytes.
//!
//! Cost: one pass of the parser's tokenizer, without the building; the stack holds at most
//! `MAX_DEPTH + 1` levels (the walk stops at the first level too deep); each encoded level
//! decodes its part once, into a buffer no larger than the part, and at most
//! [`ENCODED_LEVELS`] such buffers exist at once, so no input makes the walk quadratic or its
//! memory more than a few times the message.

use mail_parser::{
    ContentType, GetHeader, HeaderName, HeaderValue, MessageParser, parsers::MessageStream,
};

/// Parts may nest this deep: `multipart/*` and attached-message levels together.
pub const MAX_DEPTH: usize = 32;

/// Encoded attached messages nested this deep are parsed by mail-parser 0.11
/// (`MAX_NESTED_ENCODED`); a deeper one stays bytes (pinned by the tests below).
const ENCODED_LEVELS: usize = 3;

/// The parts of a message nest deeper than [`MAX_DEPTH`]; the walk stopped at `depth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct TooDeep {
    pub depth: usize,
}

/// Walks `raw` as mail-parser would parse it: the number of multipart and attached-message
/// levels around its deepest part (0 for a message of one part), or `Err` as soon as that
/// exceeds [`MAX_DEPTH`].
///
/// Never less than the depth of the tree mail-parser builds; the same, unless a container
/// is left empty (its boundary is found, then nothing follows), or the parser gives up early:
/// where two attached messages end at once inside a multipart it stops reading (after a
/// failed debug assertion, `message.rs:485` in 0.11.9), while the walk reads on. May panic
/// where mail-parser's tokenizer does: the caller catches that as it does a panic of the
/// parser.
pub(super) fn depth(raw: &[u8]) -> Result<usize, TooDeep> {
    walk(raw, 0, ENCODED_LEVELS)
}

/// What a level holds: an attached message (or the message itself), or multipart parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Container {
    Message,
    Multipart {
        /// `multipart/digest`: a part without Content-Type is a message (RFC 2046 §5.1.5).
        digest: bool,
    },
}

/// One level of mail-parser's `MessageParserState`, as far as nesting goes.
struct Level {
    container: Container,
    /// The boundary that ends this level's parts; an attached message shares its parent's.
    boundary: Option<Vec<u8>>,
}

/// An enclosing level, set aside while a deeper one is walked.
struct Frame {
    level: Level,
    /// Pushed when an attached message began (mail-parser saves its parent message then).
    for_message: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PartKind {
    Multipart { digest: bool },
    Message,
    Leaf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TransferEncoding {
    None,
    Base64,
    QuotedPrintable,
}

/// The open levels of one walk: the current one, the enclosing ones, the deepest so far.
struct Levels {
    current: Level,
    enclosing: Vec<Frame>,
    /// Levels around the walked message (those of the encoded parts it is inside).
    base: usize,
    deepest: usize,
}

impl Levels {
    fn new(base: usize) -> Levels {
        Levels {
            current: Level {
                container: Container::Message,
                boundary: None,
            },
            enclosing: Vec::new(),
            base,
            deepest: base,
        }
    }

    /// How many levels enclose the parts of the current level.
    fn depth(&self) -> usize {
        self.base + self.enclosing.len()
    }

    fn enter(&mut self, inner: Level, for_message: bool) -> Result<(), TooDeep> {
        let outer = std::mem::replace(&mut self.current, inner);
        self.enclosing.push(Frame {
            level: outer,
            for_message,
        });
        self.reached(self.depth())
    }

    fn reached(&mut self, depth: usize) -> Result<(), TooDeep> {
        self.deepest = self.deepest.max(depth);
        if depth > MAX_DEPTH {
            Err(TooDeep { depth })
        } else {
            Ok(())
        }
    }
}

/// The walk of one message: the top level, or the decoded body of an encoded attached
/// message inside `base` levels, with `encoded_left` more encoded levels to look into.
///
/// Recursion is bounded by [`ENCODED_LEVELS`]; every other level lives in `levels`.
fn walk(raw: &[u8], base: usize, encoded_left: usize) -> Result<usize, TooDeep> {
    let parser = MessageParser::default();
    let mut stream = MessageStream::new(raw);
    let mut levels = Levels::new(base);
    let mut headers = Vec::new();
    'parts: loop {
        headers.clear();
        if !stream.parse_headers(&parser, &mut headers) {
            break;
        }
        let content_type = headers
            .header_value(&HeaderName::ContentType)
            .and_then(HeaderValue::as_content_type);
        let mut kind = part_kind(content_type, levels.current.container);
        if let PartKind::Multipart { digest } = kind {
            let boundary = content_type.and_then(|ct| ct.attribute("boundary"));
            if let Some(boundary) = boundary
                && stream.seek_next_part(boundary.as_bytes())
            {
                let inner = Level {
                    container: Container::Multipart { digest },
                    boundary: Some(boundary.as_bytes().to_vec()),
                };
                levels.enter(inner, false)?;
                stream.skip_crlf();
                continue;
            }
            kind = PartKind::Leaf; // no boundary, or none found: the parser reads it as text
        }
        let encoding =
            transfer_encoding(headers.header_value(&HeaderName::ContentTransferEncoding));
        if kind == PartKind::Message && encoding == TransferEncoding::None {
            // The attached message's header fields follow at once.
            let inner = Level {
                container: Container::Message,
                boundary: levels.current.boundary.take(),
            };
            levels.enter(inner, true)?;
            continue;
        }
        let boundary = levels.current.boundary.as_deref().unwrap_or_default();
        let (end, body) = match encoding {
            TransferEncoding::Base64 => stream.decode_base64_mime(boundary),
            TransferEncoding::QuotedPrintable => stream.decode_quoted_printable_mime(boundary),
            TransferEncoding::None => stream.mime_part(boundary),
        };
        if end == usize::MAX {
            // Undecodable: the parser keeps the part as text up to the boundary, if any.
            let (_, found) = stream.seek_part_end(levels.current.boundary.as_deref());
            if !found {
                levels.current.boundary = None;
            }
        } else if kind == PartKind::Message && encoded_left > 0 {
            let inner = walk(&body, levels.depth() + 1, encoded_left - 1)?;
            levels.reached(inner)?;
        }
        drop(body);

        if levels.current.boundary.is_none() {
            if stream.offset() >= raw.len() {
                break;
            }
            continue;
        }
        // After a part inside a boundary: close what ends here, as the parser does.
        loop {
            if levels.current.container == Container::Message {
                // An attached message ends with its parent's part.
                match levels.enclosing.pop() {
                    Some(frame) if frame.for_message => {
                        let boundary = levels.current.boundary.take();
                        levels.current = frame.level;
                        levels.current.boundary = boundary;
                    }
                    _ => break 'parts,
                }
            }
            if !stream.is_multipart_end() {
                continue 'parts; // the next part's header fields
            }
            // `--boundary--`: the multipart level is over; its parent's parts go on at the
            // parent's next boundary, if there is one.
            if let Some(frame) = levels.enclosing.pop() {
                levels.current = frame.level;
                if let Some(boundary) = levels.current.boundary.as_deref()
                    && stream.seek_next_part_offset(boundary).is_some()
                {
                    continue;
                }
            }
            break 'parts;
        }
    }
    Ok(levels.deepest)
}

/// mail-parser's `mime_type`, as far as nesting goes.
fn part_kind(content_type: Option<&ContentType<'_>>, container: Container) -> PartKind {
    match content_type {
        Some(ct) => match ct.ctype() {
            "multipart" => PartKind::Multipart {
                digest: ct.subtype() == Some("digest"),
            },
            "message" if matches!(ct.subtype(), Some("rfc822" | "global")) => PartKind::Message,
            _ => PartKind::Leaf,
        },
        None if container == (Container::Multipart { digest: true }) => PartKind::Message,
        None => PartKind::Leaf,
    }
}

/// mail-parser's choice of decoder for a `Content-Transfer-Encoding` value.
fn transfer_encoding(field: Option<&HeaderValue<'_>>) -> TransferEncoding {
    match field {
        Some(HeaderValue::Text(name)) if name.eq_ignore_ascii_case("base64") => {
            TransferEncoding::Base64
        }
        Some(HeaderValue::Text(name)) if name.eq_ignore_ascii_case("quoted-printable") => {
            TransferEncoding::QuotedPrintable
        }
        _ => TransferEncoding::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use mail_parser::{Message, PartType};
    use proptest::{collection::vec, prelude::*};

    /// The depth of the tree mail-parser builds, found without recursion: within a message,
    /// a multipart's children lie one level below it, and a part no multipart lists at the
    /// message's own level (the root, and what the parser files there when it loses track);
    /// an attached message's parts lie one level below its part.
    fn tree_depth(message: &Message<'_>) -> usize {
        let mut deepest = 0;
        let mut todo = vec![(message, 0)];
        while let Some((message, base)) = todo.pop() {
            // Children come after their multipart, so one pass in order sees every parent
            // before its children.
            let mut depths = vec![base; message.parts.len()];
            for (id, part) in message.parts.iter().enumerate() {
                let depth = depths[id];
                deepest = deepest.max(depth);
                match &part.body {
                    PartType::Multipart(children) => {
                        for &child in children {
                            depths[child as usize] = depth + 1;
                        }
                    }
                    PartType::Message(inner) => todo.push((inner, depth + 1)),
                    _ => {}
                }
            }
        }
        deepest
    }

    fn parsed_depth(raw: &[u8]) -> usize {
        MessageParser::default()
            .parse(raw)
            .map_or(0, |message| tree_depth(&message))
    }

    /// A MIME tree to write out.
    #[derive(Debug, Clone)]
    enum Node {
        Text,
        Multipart {
            subtype: &'static str,
            children: Vec<Node>,
        },
        /// An attached message; in a digest, `typed: false` leaves out its Content-Type.
        Message {
            encoding: &'static str,
            typed: bool,
            inner: Box<Node>,
        },
    }

    impl Node {
        fn message(encoding: &'static str, inner: Node) -> Node {
            Node::Message {
                encoding,
                typed: true,
                inner: Box::new(inner),
            }
        }

        fn multipart(subtype: &'static str, children: Vec<Node>) -> Node {
            Node::Multipart { subtype, children }
        }

        /// `levels` attached messages, one inside the other, in `encoding`.
        fn chain(levels: usize, encoding: &'static str, innermost: Node) -> Node {
            (0..levels).fold(innermost, |inner, _| Node::message(encoding, inner))
        }

        /// What the walk must find: encoded messages past the third encoded level stay bytes.
        fn expected_depth(&self, encoded: usize) -> usize {
            match self {
                Node::Text => 0,
                Node::Multipart { children, .. } => {
                    1 + children
                        .iter()
                        .map(|child| child.expected_depth(encoded))
                        .max()
                        .unwrap_or(0)
                }
                Node::Message {
                    encoding, inner, ..
                } => {
                    if *encoding == "7bit" {
                        1 + inner.expected_depth(encoded)
                    } else if encoded < ENCODED_LEVELS {
                        1 + inner.expected_depth(encoded + 1)
                    } else {
                        0
                    }
                }
            }
        }

        /// Whether, inside a multipart, a plain attached message directly holds another.
        fn stacks_plain_messages(&self, in_multipart: bool) -> bool {
            match self {
                Node::Text => false,
                Node::Multipart { children, .. } => children
                    .iter()
                    .any(|child| child.stacks_plain_messages(true)),
                Node::Message {
                    encoding, inner, ..
                } => {
                    let plain = *encoding == "7bit";
                    let stacked = matches!(
                        **inner,
                        Node::Message {
                            encoding: "7bit",
                            ..
                        }
                    );
                    (in_multipart && plain && stacked)
                        || inner.stacks_plain_messages(in_multipart && plain)
                }
            }
        }

        fn write(&self, id: &mut usize, out: &mut String) {
            *id += 1;
            match self {
                Node::Text => out.push_str("Content-Type: text/plain\r\n\r\nSome text.\r\n"),
                Node::Multipart { subtype, children } => {
                    // Unique, and none a prefix of another: mail-parser finds `--boundary`
                    // anywhere.
                    let boundary = format!("=_b{id}_=");
                    out.push_str(&format!(
                        "Content-Type: multipart/{subtype}; boundary=\"{boundary}\"\r\n\r\n\
                         Preamble.\r\n"
                    ));
                    for child in children {
                        out.push_str(&format!("--{boundary}\r\n"));
                        child.write(id, out);
                        out.push_str("\r\n");
                    }
                    out.push_str(&format!("--{boundary}--\r\nEpilogue.\r\n"));
                }
                Node::Message {
                    encoding,
                    typed,
                    inner,
                } => {
                    if *typed {
                        out.push_str("Content-Type: message/rfc822\r\n");
                    }
                    out.push_str(&format!("Content-Transfer-Encoding: {encoding}\r\n\r\n"));
                    let mut body = String::from("Subject: inner\r\n");
                    inner.write(id, &mut body);
                    match *encoding {
                        "base64" => {
                            let encoded = base64::engine::general_purpose::STANDARD.encode(body);
                            for line in encoded.as_bytes().chunks(76) {
                                out.push_str(std::str::from_utf8(line).unwrap());
                                out.push_str("\r\n");
                            }
                        }
                        // Only `=` needs escaping, and lines stay under 76 in these trees.
                        "quoted-printable" => out.push_str(&body.replace('=', "=3D")),
                        _ => out.push_str(&body),
                    }
                }
            }
        }

        fn raw(&self) -> Vec<u8> {
            let mut out = String::from("Subject: outer\r\nMIME-Version: 1.0\r\n");
            self.write(&mut 0, &mut out);
            out.into_bytes()
        }
    }

    fn check(node: &Node) {
        let raw = node.raw();
        let expected = node.expected_depth(0);
        assert_eq!(parsed_depth(&raw), expected, "mail-parser, for {node:?}");
        assert_eq!(depth(&raw), Ok(expected), "the walk, for {node:?}");
    }

    #[test]
    fn finds_the_depth_mail_parser_builds() {
        let text = || Node::Text;
        let cases = [
            text(),
            Node::message("7bit", text()),
            Node::multipart("mixed", vec![text(), text()]),
            Node::multipart(
                "mixed",
                vec![
                    Node::multipart("alternative", vec![text(), text()]),
                    Node::message("7bit", Node::multipart("related", vec![text()])),
                ],
            ),
            Node::multipart(
                "digest",
                vec![
                    Node::Message {
                        encoding: "7bit",
                        typed: false,
                        inner: Box::new(Node::message("7bit", text())),
                    },
                    text(),
                ],
            ),
            Node::message("base64", Node::message("7bit", text())),
            Node::message("quoted-printable", Node::multipart("mixed", vec![text()])),
            Node::multipart(
                "mixed",
                vec![
                    Node::message("base64", Node::multipart("mixed", vec![text()])),
                    Node::message("7bit", text()),
                ],
            ),
        ];
        for node in &cases {
            check(node);
        }
    }

    #[test]
    fn a_fourth_encoded_level_is_left_as_bytes_as_mail_parser_does() {
        // Pins mail-parser's MAX_NESTED_ENCODED: were it raised, the walk would no longer
        // see every level the parser builds.
        for encoding in ["base64", "quoted-printable"] {
            for levels in 1..=5 {
                let node = Node::chain(levels, encoding, Node::message("7bit", Node::Text));
                check(&node);
            }
        }
    }

    #[test]
    fn the_bound_is_inclusive_for_every_kind_of_level() {
        let over = |depth| Err(TooDeep { depth });
        type Build = fn(usize) -> Node;
        let kinds: [(&str, Build); 4] = [
            ("attached", |n| Node::chain(n, "7bit", Node::Text)),
            ("multipart", |n| {
                (0..n).fold(Node::Text, |inner, _| Node::multipart("mixed", vec![inner]))
            }),
            ("base64-wrapped", |n| {
                Node::message("base64", Node::chain(n - 1, "7bit", Node::Text))
            }),
            ("alternating", |n| {
                (0..n).fold(Node::Text, |inner, level| {
                    if level % 2 == 0 {
                        Node::message("7bit", inner)
                    } else {
                        Node::multipart("mixed", vec![inner, Node::Text])
                    }
                })
            }),
        ];
        for (kind, build) in kinds {
            assert_eq!(depth(&build(MAX_DEPTH).raw()), Ok(MAX_DEPTH), "{kind}");
            assert_eq!(
                depth(&build(MAX_DEPTH + 1).raw()),
                over(MAX_DEPTH + 1),
                "{kind}"
            );
        }
        // Deep nesting stops the walk at the first level too deep.
        let deep = "Content-Type: message/rfc822\r\n\r\n".repeat(50_000) + "Subject: x\r\n\r\n";
        assert_eq!(depth(deep.as_bytes()), over(MAX_DEPTH + 1));
    }

    /// Random trees of every kind of level, to 6 levels.
    fn node() -> impl Strategy<Value = Node> {
        let leaf = Just(Node::Text);
        leaf.prop_recursive(6, 40, 3, |inner| {
            prop_oneof![
                (
                    prop_oneof![
                        Just("mixed"),
                        Just("alternative"),
                        Just("related"),
                        Just("digest")
                    ],
                    vec(inner.clone(), 1..4)
                )
                    .prop_map(|(subtype, children)| Node::multipart(subtype, children)),
                (
                    prop_oneof![Just("7bit"), Just("base64"), Just("quoted-printable")],
                    inner
                )
                    .prop_map(|(encoding, inner)| Node::message(encoding, inner)),
            ]
        })
    }

    /// Bytes that matter to MIME structure are more interesting than random ones.
    fn byte() -> impl Strategy<Value = u8> {
        prop_oneof![prop::sample::select(b"-\r\n:;=\"".to_vec()), any::<u8>()]
    }

    proptest! {
        #[test]
        fn the_walk_finds_the_depth_of_random_trees(node in node()) {
            let raw = node.raw();
            let walked = depth(&raw);
            // In debug builds mail-parser may trip its own assertion (message.rs:485), see
            // `depth`.
            if let Ok(parsed) = std::panic::catch_unwind(|| parsed_depth(&raw)) {
                prop_assert!(walked.is_ok_and(|walked| walked >= parsed), "{walked:?} < {parsed}");
            }
            // Where two plain attached messages end at once inside a multipart, mail-parser
            // loses track: it files the next part inside the outer message, or drops a
            // branch, and the walk follows the first (one level more than the tree drawn).
            if !node.stacks_plain_messages(false) {
                prop_assert_eq!(walked, Ok(node.expected_depth(0)));
                prop_assert_eq!(parsed_depth(&raw), node.expected_depth(0));
            }
        }

        /// Damaged trees: the walk may count a level the parser leaves empty, never fewer.
        #[test]
        fn the_walk_never_finds_less_than_mail_parser(
            node in node(),
            edits in vec((any::<prop::sample::Index>(), byte(), 0usize..3), 1..6),
        ) {
            let mut raw = node.raw();
            for (at, byte, kind) in edits {
                if raw.is_empty() {
                    break;
                }
                let at = at.index(raw.len());
                match kind {
                    0 => raw[at] = byte,
                    1 => raw.insert(at, byte),
                    _ => raw.truncate(at),
                }
            }
            let parsed = std::panic::catch_unwind(|| parsed_depth(&raw));
            let walked = std::panic::catch_unwind(|| depth(&raw));
            if let (Ok(parsed), Ok(walked)) = (parsed, walked) {
                prop_assert!(walked.is_ok_and(|walked| walked >= parsed), "{walked:?} < {parsed}");
            }
        }
    }
}
