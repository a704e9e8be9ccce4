//! The inline scanner (spec §5.1): one trimmed line in, atoms out.
//!
//! Every look-ahead is bounded or consumed (§9): a colour tag is at most 10 bytes, emphasis
//! looks at most 41 characters ahead, a wikilink probe stops at the first bracket, a URL
//! probe that fails covers only trailing punctuation, and a literal probe either consumes
//! what it scanned or records that the rest of the line has no `>>`.

use super::byte_set::ByteSet;
use super::colour::{Colour, tag_at};

/// One lexical unit of an inline container.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Atom<'a> {
    /// Characters written escaped, as typed.
    Text(&'a str),
    /// `<<…>>`: the content between the delimiters, trimmed (§5.5).
    Literal(&'a str),
    /// A URL, scheme included, trailing punctuation excluded (§5.2).
    Url(&'a str),
    /// `[[…]]`: the title between the brackets, trimmed and not blank (§5.3).
    Wikilink(&'a str),
    /// `*…*`: the content between the stars (§5.6).
    Emphasis(&'a str),
    /// A maximal run of U+4E00–U+9FFF (§5.4).
    Chinese(&'a str),
    /// A `(` not followed by a colour tag; `matched` is set by the container (§4.5).
    Open { matched: bool },
    /// `(`, spaces/tabs, a colour tag; `source` is all of it, for when it renders as text.
    ColourOpen {
        source: &'a str,
        colour: Colour,
        matched: bool,
    },
    /// A `)`.
    Close { matched: bool },
    /// A colour tag that does not follow `(`: starts a run (§4.3).
    Tag { source: &'a str, colour: Colour },
    /// The boundary between two lines of a paragraph (§5.7).
    LineBreak,
}

/// The longest emphasis content, in characters (§5.6).
const MAX_EMPHASIS_CHARS: usize = 40;

/// Bytes at which a rule of §5.1 other than "text" may apply. The last range holds the
/// UTF-8 lead bytes of U+4E00..=U+9FFF; continuation bytes are never in the table, so a
/// hit is always on a character boundary.
static SPECIAL: ByteSet = ByteSet::of(&[
    (b'<', b'<'),
    (b'(', b')'),
    (b'[', b'['),
    (b'h', b'h'),
    (b'*', b'*'),
    (0xE4, 0xE9),
]);

/// The atoms of one trimmed line, one at a time: nothing is kept per atom, so a line of any
/// length costs no memory here.
#[derive(Clone)]
pub(crate) struct LineAtoms<'a> {
    scanner: Scanner<'a>,
    /// Where the text not yet given out as an atom starts.
    text_from: usize,
    at: usize,
    /// An atom found after a run of text: given out after the text.
    pending: Option<Atom<'a>>,
}

impl<'a> LineAtoms<'a> {
    pub(crate) fn new(line: &'a str) -> LineAtoms<'a> {
        LineAtoms {
            scanner: Scanner {
                line,
                bytes: line.as_bytes(),
                no_literal_from: usize::MAX,
            },
            text_from: 0,
            at: 0,
            pending: None,
        }
    }
}

impl<'a> Iterator for LineAtoms<'a> {
    type Item = Atom<'a>;

    fn next(&mut self) -> Option<Atom<'a>> {
        if let Some(atom) = self.pending.take() {
            return Some(atom);
        }
        let line = self.scanner.line;
        while let Some(&byte) = self.scanner.bytes.get(self.at) {
            if !SPECIAL.contains(byte) {
                self.at += 1;
                continue;
            }
            match self.scanner.atom_at(self.at, byte) {
                Step::Atom(atom, end) => {
                    let text = slice(line, self.text_from, self.at);
                    self.at = end;
                    self.text_from = end;
                    if text.is_empty() {
                        return Some(atom);
                    }
                    self.pending = Some(atom);
                    return Some(Atom::Text(text));
                }
                Step::Text(len) => self.at += len,
            }
        }
        let text = slice(line, self.text_from, line.len());
        self.text_from = line.len();
        (!text.is_empty()).then_some(Atom::Text(text))
    }
}

/// What the characters at a special byte are.
enum Step<'a> {
    /// An atom, and the byte offset where scanning resumes.
    Atom(Atom<'a>, usize),
    /// This many bytes are text.
    Text(usize),
}

#[derive(Clone)]
struct Scanner<'a> {
    line: &'a str,
    bytes: &'a [u8],
    /// From this offset on the line holds no `>>`: learnt from a failed literal probe, so
    /// no later `<<` scans the rest of the line again.
    no_literal_from: usize,
}

impl<'a> Scanner<'a> {
    fn atom_at(&mut self, at: usize, byte: u8) -> Step<'a> {
        let found = match byte {
            b'<' => return self.angle(at),
            b'(' => Some(self.open(at)),
            b')' => Some((Atom::Close { matched: false }, at + 1)),
            b'[' => self.wikilink(at),
            b'h' => self.url(at),
            b'*' => self.emphasis(at),
            _ => return self.chinese(at),
        };
        match found {
            Some((atom, end)) => Step::Atom(atom, end),
            None => Step::Text(1),
        }
    }

    /// Rule 1: a literal, a colour tag, or `<` characters as text.
    fn angle(&mut self, at: usize) -> Step<'a> {
        let rest = self.bytes.get(at..).unwrap_or_default();
        let run = rest.iter().take_while(|&&b| b == b'<').count();
        if run == 2
            && let Some(step) = self.literal(at + 2)
        {
            return step;
        }
        if run == 1
            && let Some((colour, len)) = tag_at(rest)
        {
            let source = slice(self.line, at, at + len);
            return Step::Atom(Atom::Tag { source, colour }, at + len);
        }
        // A run of three or more `<` is text as a whole, so none of its `<` starts a tag.
        Step::Text(run.max(1))
    }

    fn literal(&mut self, from: usize) -> Option<Step<'a>> {
        if from >= self.no_literal_from {
            return None;
        }
        let Some(len) = memchr::memmem::find(self.bytes.get(from..)?, b">>") else {
            self.no_literal_from = from;
            return None;
        };
        let content = slice(self.line, from, from + len);
        Some(Step::Atom(Atom::Literal(trim(content)), from + len + 2))
    }

    /// Rule 2: `(`, optionally spaces/tabs and a colour tag.
    fn open(&self, at: usize) -> (Atom<'a>, usize) {
        let after = at + 1;
        let blanks = self
            .bytes
            .get(after..)
            .unwrap_or_default()
            .iter()
            .take_while(|&&b| b == b' ' || b == b'\t')
            .count();
        let tag_from = after + blanks;
        match tag_at(self.bytes.get(tag_from..).unwrap_or_default()) {
            Some((colour, len)) => {
                let end = tag_from + len;
                let source = slice(self.line, at, end);
                let atom = Atom::ColourOpen {
                    source,
                    colour,
                    matched: false,
                };
                (atom, end)
            }
            None => (Atom::Open { matched: false }, after),
        }
    }

    /// Rule 4: `[[` up to the first bracket, which must begin `]]`.
    fn wikilink(&self, at: usize) -> Option<(Atom<'a>, usize)> {
        let from = at + 2;
        if self.bytes.get(at + 1) != Some(&b'[') {
            return None;
        }
        let len = memchr::memchr2(b'[', b']', self.bytes.get(from..)?)?;
        let close = from + len;
        if self.bytes.get(close..close + 2) != Some(b"]]") {
            return None;
        }
        let title = trim(slice(self.line, from, close));
        if title.is_empty() {
            return None;
        }
        Some((Atom::Wikilink(title), close + 2))
    }

    /// Rule 5: `http://` or `https://`, then URL characters with balanced parentheses,
    /// minus trailing punctuation.
    fn url(&self, at: usize) -> Option<(Atom<'a>, usize)> {
        let rest = self.bytes.get(at..)?;
        let scheme = if rest.starts_with(b"http://") {
            "http://".len()
        } else if rest.starts_with(b"https://") {
            "https://".len()
        } else {
            return None;
        };
        let body_from = at + scheme;
        let mut end = body_from;
        let mut open_parens = 0usize;
        while let Some(&b) = self.bytes.get(end) {
            match b {
                b'(' => open_parens += 1,
                b')' if open_parens > 0 => open_parens -= 1,
                b')' => break,
                _ if is_url_byte(b) => {}
                _ => break,
            }
            end += 1;
        }
        while end > body_from
            && self
                .bytes
                .get(end - 1)
                .is_some_and(|b| b".,:;!?'*".contains(b))
        {
            end -= 1;
        }
        if end == body_from {
            return None;
        }
        Some((Atom::Url(slice(self.line, at, end)), end))
    }

    /// Rule 6: `*`, 1 to 40 characters not starting with a space or tab, `*`.
    fn emphasis(&self, at: usize) -> Option<(Atom<'a>, usize)> {
        let from = at + 1;
        let rest = self.line.get(from..)?;
        if rest.starts_with([' ', '\t']) {
            return None;
        }
        let (count, (len, _)) = rest
            .char_indices()
            .take(MAX_EMPHASIS_CHARS + 1)
            .enumerate()
            .find(|(_, (_, c))| *c == '*')?;
        if count == 0 {
            return None;
        }
        Some((
            Atom::Emphasis(slice(self.line, from, from + len)),
            from + len + 1,
        ))
    }

    /// Rule 7: a run of U+4E00..=U+9FFF; other characters behind the same lead bytes are
    /// text.
    fn chinese(&self, at: usize) -> Step<'a> {
        let rest = self.line.get(at..).unwrap_or_default();
        let len: usize = rest
            .chars()
            .take_while(|c| is_chinese(*c))
            .map(char::len_utf8)
            .sum();
        if len == 0 {
            return Step::Text(1);
        }
        Step::Atom(Atom::Chinese(slice(self.line, at, at + len)), at + len)
    }
}

/// The ASCII characters a URL takes besides parentheses (§5.2).
fn is_url_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~:/?#@!$&'*+,;=%".contains(&b)
}

fn is_chinese(c: char) -> bool {
    ('\u{4E00}'..='\u{9FFF}').contains(&c)
}

/// Removes spaces and tabs at both ends, and nothing else (§1.3).
pub(crate) fn trim(s: &str) -> &str {
    s.trim_matches([' ', '\t'])
}

/// `line[from..to]`.
///
/// Invariant: callers pass offsets of ASCII bytes, of special bytes (never continuation
/// bytes) or of the line's end, so both are char boundaries and the empty fallback is
/// never taken; it only keeps a broken invariant from panicking.
fn slice(line: &str, from: usize, to: usize) -> &str {
    line.get(from..to).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::Atom::*;
    use super::*;

    fn scan(line: &str) -> Vec<Atom<'_>> {
        LineAtoms::new(line).collect()
    }

    fn open() -> Atom<'static> {
        Open { matched: false }
    }

    fn close() -> Atom<'static> {
        Close { matched: false }
    }

    #[test]
    fn plain_text_is_one_atom() {
        assert_eq!(scan("hello, world é 💡"), [Text("hello, world é 💡")]);
        assert_eq!(scan(""), []);
    }

    #[test]
    fn angle_brackets() {
        let red = Colour::Red;
        let table: &[(&str, &[Atom])] = &[
            (
                "<red>x",
                &[
                    Tag {
                        source: "<red>",
                        colour: red,
                    },
                    Text("x"),
                ],
            ),
            (
                "a<red>",
                &[
                    Text("a"),
                    Tag {
                        source: "<red>",
                        colour: red,
                    },
                ],
            ),
            ("<RED>", &[Text("<RED>")]),
            ("<<a>>", &[Literal("a")]),
            ("<<>>", &[Literal("")]),
            ("<<  a b  >>c", &[Literal("a b"), Text("c")]),
            ("<<a>>>", &[Literal("a"), Text(">")]),
            ("<<a", &[Text("<<a")]),
            ("<<<a>>", &[Text("<<<a>>")]),
            ("<<red>", &[Text("<<red>")]),
            ("<<<<red>", &[Text("<<<<red>")]),
            ("<<a>> <<b", &[Literal("a"), Text(" <<b")]),
            ("<<x <<y>>", &[Literal("x <<y")]),
            ("<< <red> >>", &[Literal("<red>")]),
            ("a>>b", &[Text("a>>b")]),
        ];
        for (input, expected) in table {
            assert_eq!(scan(input), *expected, "input {input:?}");
        }
    }

    #[test]
    fn parentheses() {
        let teal = Colour::Teal;
        let colour_open = |source| ColourOpen {
            source,
            colour: teal,
            matched: false,
        };
        let table: &[(&str, &[Atom])] = &[
            ("(a)", &[open(), Text("a"), close()]),
            ("(<teal>a", &[colour_open("(<teal>"), Text("a")]),
            ("( \t<teal>a", &[colour_open("( \t<teal>"), Text("a")]),
            ("( x", &[open(), Text(" x")]),
            ("(<tea>", &[open(), Text("<tea>")]),
            ("((", &[open(), open()]),
            (")(", &[close(), open()]),
        ];
        for (input, expected) in table {
            assert_eq!(scan(input), *expected, "input {input:?}");
        }
    }

    #[test]
    fn wikilinks() {
        let table: &[(&str, &[Atom])] = &[
            ("[[Article Name]]", &[Wikilink("Article Name")]),
            ("[[  padded\t]]", &[Wikilink("padded")]),
            ("[[<red>(x)]]", &[Wikilink("<red>(x)")]),
            ("[[[Python]]]", &[Text("["), Wikilink("Python"), Text("]")]),
            ("[[Unclosed", &[Text("[[Unclosed")]),
            ("[[]]", &[Text("[[]]")]),
            ("[[ ]]", &[Text("[[ ]]")]),
            ("[[a]b]]", &[Text("[[a]b]]")]),
            ("[x]", &[Text("[x]")]),
        ];
        for (input, expected) in table {
            assert_eq!(scan(input), *expected, "input {input:?}");
        }
    }

    #[test]
    fn urls() {
        let table: &[(&str, &[Atom])] = &[
            ("https://a.example", &[Url("https://a.example")]),
            ("http://a.example/x", &[Url("http://a.example/x")]),
            (
                "seehttps://b.example",
                &[Text("see"), Url("https://b.example")],
            ),
            (
                "https://a.example/p.",
                &[Url("https://a.example/p"), Text(".")],
            ),
            (
                "https://a.example?!.,",
                &[Url("https://a.example"), Text("?!.,")],
            ),
            (
                "https://w.example/R_(x))",
                &[Url("https://w.example/R_(x)"), close()],
            ),
            (
                "https://a.example/a)",
                &[Url("https://a.example/a"), close()],
            ),
            (
                "https://a.example/[1]",
                &[Url("https://a.example/"), Text("[1]")],
            ),
            (
                "https://a.example/é",
                &[Url("https://a.example/"), Text("é")],
            ),
            (
                "https://a.example/\"x\"",
                &[Url("https://a.example/"), Text("\"x\"")],
            ),
            (
                "https://a.b/<red>",
                &[
                    Url("https://a.b/"),
                    Tag {
                        source: "<red>",
                        colour: Colour::Red,
                    },
                ],
            ),
            ("https://", &[Text("https://")]),
            ("https://.", &[Text("https://.")]),
            ("HTTPS://a.example", &[Text("HTTPS://a.example")]),
            ("ftp://a.example", &[Text("ftp://a.example")]),
            (
                "javascript:alert(1)",
                &[Text("javascript:alert"), open(), Text("1"), close()],
            ),
            ("https://a.b/*x*", &[Url("https://a.b/*x"), Text("*")]),
        ];
        for (input, expected) in table {
            assert_eq!(scan(input), *expected, "input {input:?}");
        }
    }

    #[test]
    fn emphasis() {
        let forty = "x".repeat(40);
        let forty_one = "x".repeat(41);
        let at_limit = format!("*{forty}*");
        let over_limit = format!("*{forty_one}*");
        let forty_chinese = format!("*{}*", "好".repeat(40));
        let table: &[(&str, Vec<Atom>)] = &[
            ("*emphasized*", vec![Emphasis("emphasized")]),
            ("2*3=6", vec![Text("2*3=6")]),
            ("* spaced *", vec![Text("* spaced *")]),
            ("*\ttab*", vec![Text("*\ttab*")]),
            ("*a *", vec![Emphasis("a ")]),
            ("**bold**", vec![Text("*"), Emphasis("bold"), Text("*")]),
            ("*<red>(x*", vec![Emphasis("<red>(x")]),
            (&at_limit, vec![Emphasis(&forty)]),
            (&over_limit, vec![Text(&over_limit)]),
            (&forty_chinese, vec![Emphasis(&forty_chinese[1..121])]),
        ];
        for (input, expected) in table {
            assert_eq!(scan(input), *expected, "input {input:?}");
        }
    }

    #[test]
    fn chinese_runs() {
        let table: &[(&str, &[Atom])] = &[
            (
                "Hello 你好 World",
                &[Text("Hello "), Chinese("你好"), Text(" World")],
            ),
            ("一鿿", &[Chinese("一鿿")]),
            ("你，好", &[Chinese("你"), Text("，"), Chinese("好")]),
            ("㐀 かな 한글 𠀀", &[Text("㐀 かな 한글 𠀀")]),
            ("䷀", &[Text("䷀")]),
        ];
        for (input, expected) in table {
            assert_eq!(scan(input), *expected, "input {input:?}");
        }
    }

    #[test]
    fn nul_and_control_characters_are_text() {
        assert_eq!(scan("a\0b\u{1}"), [Text("a\0b\u{1}")]);
    }
}
