//! Output primitives: the one escaping function (spec §6), the wikilink percent-encoding
//! (§5.3), the fixed markup the generator writes, the length of each piece before it is
//! written, and [`Out`], the output with its limit.

use super::byte_set::ByteSet;
use super::colour::Colour;

/// The HTML being written, and the most it may hold.
///
/// Writers ask [`Out::fits`] before each piece of markup and write it whole or not at all;
/// text is written up to the limit, a whole character or reference at a time. Once a piece
/// does not fit the output is cut: everything later is refused, and only the closing tags of
/// what is open are still written (they are not counted: the caller keeps room for them).
#[derive(Debug)]
pub(crate) struct Out<'s> {
    html: Html<'s>,
    limit: usize,
    cut: bool,
}

impl<'s> Out<'s> {
    /// An output that keeps its HTML and holds at most `limit` bytes before closing tags.
    pub(crate) fn new(limit: usize, capacity: usize) -> Out<'s> {
        Out {
            html: Html {
                buf: String::with_capacity(capacity.min(limit)),
                flushed: 0,
                solid: 0,
                scanned: 0,
                sink: None,
                flush_at: usize::MAX,
            },
            limit,
            cut: false,
        }
    }

    /// An output like [`Out::new`] that hands its HTML to `sink` about every `flush_at`
    /// bytes ([`Html`]).
    pub(crate) fn with_sink(
        limit: usize,
        capacity: usize,
        flush_at: usize,
        sink: &'s mut dyn FnMut(&str),
    ) -> Self {
        // At least one character at a time.
        let flush_at = flush_at.max(4);
        let mut out = Out::new(limit, capacity.min(flush_at.saturating_mul(2)));
        out.html.sink = Some(Sink(sink));
        out.html.flush_at = flush_at;
        out
    }

    #[cfg(test)]
    pub(crate) fn unlimited() -> Out<'s> {
        Out::new(usize::MAX, 0)
    }

    /// Whether `len` more bytes fit; if not, the output is cut, and nothing fits any more.
    pub(crate) fn fits(&mut self, len: usize) -> bool {
        if !self.cut && self.html.len().saturating_add(len) <= self.limit {
            return true;
        }
        self.cut = true;
        false
    }

    /// [`Out::fits`] for a piece of at most `bound` bytes whose length is `exact()`: the
    /// exact length is only worked out near the limit.
    pub(crate) fn fits_within(&mut self, bound: usize, exact: impl FnOnce() -> usize) -> bool {
        if !self.cut && self.html.len().saturating_add(bound) <= self.limit {
            return true;
        }
        self.fits(exact())
    }

    /// Whether a piece was refused.
    pub(crate) fn is_cut(&self) -> bool {
        self.cut
    }

    /// How many bytes were written, those handed to the sink included.
    pub(crate) fn len(&self) -> usize {
        self.html.len()
    }

    /// The HTML, to write what [`Out::fits`] allowed, or closing tags.
    pub(crate) fn html_mut(&mut self) -> &mut Html<'s> {
        &mut self.html
    }

    /// The HTML not handed to the sink: all of it without one.
    pub(crate) fn into_html(self) -> String {
        self.html.buf
    }

    /// Appends `text` escaped ([`push_escaped`]), as much of it as fits: if not all, up to
    /// the last character whose escaped form fits, and the output is cut.
    pub(crate) fn push_escaped(&mut self, text: &str) {
        if self.fits_within(text.len().saturating_mul(MAX_ESCAPED), || escaped_len(text)) {
            push_escaped(&mut self.html, text);
            return;
        }
        let room = self.limit.saturating_sub(self.html.len());
        let mut used = 0;
        let mut end = 0;
        for (at, c) in text.char_indices() {
            let mut utf8 = [0u8; 4];
            let cost = escaped_len(c.encode_utf8(&mut utf8));
            if used + cost > room {
                break;
            }
            used += cost;
            end = at + c.len_utf8();
        }
        push_escaped(&mut self.html, text.get(..end).unwrap_or_default());
    }
}

/// What HTML is written into: a `String` (tests), or [`Html`].
pub(crate) trait Push {
    fn push_str(&mut self, s: &str);

    fn push(&mut self, c: char) {
        self.push_str(c.encode_utf8(&mut [0; 4]));
    }
}

impl Push for String {
    fn push_str(&mut self, s: &str) {
        String::push_str(self, s);
    }

    fn push(&mut self, c: char) {
        String::push(self, c);
    }
}

/// How much HTML [`Html`] gathers before it hands it to its sink.
pub(crate) const FLUSH_AT: usize = 64 << 10;

/// The HTML written, kept whole, or with a sink handed on about every [`FLUSH_AT`] bytes, so
/// that a large document is never in memory whole (issue 24: the HTML of a 25 MB message was
/// once held beside its text, its data and their packed copies).
///
/// One thing is held back from the sink: trailing spaces and tabs, which the closing of a
/// colour block may still trim (§4.6, [`Html::trim_end_from`]). So what is held is about
/// [`FLUSH_AT`] bytes, and at most the longest run of blanks the text has.
#[derive(Debug)]
pub(crate) struct Html<'s> {
    buf: String,
    /// Bytes handed to the sink so far: `buf` starts at this offset of the whole HTML.
    flushed: usize,
    /// The end of `buf[..scanned]` without its trailing spaces and tabs.
    solid: usize,
    /// How much of `buf` [`Html::scan`] has looked at.
    scanned: usize,
    sink: Option<Sink<'s>>,
    /// [`FLUSH_AT`] (smaller in tests) with a sink, else never.
    flush_at: usize,
}

/// Where [`Html`] hands its HTML.
struct Sink<'s>(&'s mut dyn FnMut(&str));

impl std::fmt::Debug for Sink<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sink")
    }
}

impl Html<'_> {
    /// How many bytes were written, those handed on included.
    pub(crate) fn len(&self) -> usize {
        self.flushed + self.buf.len()
    }

    /// Drops the spaces and tabs that end the HTML after offset `from` of the whole (the
    /// content of a colour block being closed, §4.6). Never reaches into what was handed on:
    /// that ends with neither.
    pub(crate) fn trim_end_from(&mut self, from: usize) {
        let start = from.saturating_sub(self.flushed);
        let content = self.buf.as_bytes().get(start..).unwrap_or_default();
        let kept = content
            .iter()
            .rposition(|&b| !is_blank(b))
            .map_or(start, |last| start + last + 1);
        // The bytes removed are ASCII, so the string stays valid UTF-8.
        self.buf.truncate(kept);
        self.solid = self.buf.len();
        self.scanned = self.buf.len();
    }

    /// Hands `buf` up to its trailing blanks to the sink.
    fn flush(&mut self) {
        self.scan();
        let Some(Sink(sink)) = self.sink.as_mut() else {
            return;
        };
        // Invariant: `solid` follows a non-blank byte, or is 0 or the end, so it is a char
        // boundary; it never exceeds the length.
        let solid = self.solid.min(self.buf.len());
        if solid == 0 {
            return;
        }
        sink(self.buf.get(..solid).unwrap_or_default());
        self.buf.drain(..solid);
        self.flushed += solid;
        // What is left is blanks.
        self.solid = 0;
        self.scanned = self.buf.len();
    }

    /// Brings `solid` up to date with what was written since the last look: each byte is
    /// looked at once, however long a run of blanks is held back.
    fn scan(&mut self) {
        let new = self.buf.as_bytes().get(self.scanned..).unwrap_or_default();
        if let Some(last) = new.iter().rposition(|&b| !is_blank(b)) {
            self.solid = self.scanned + last + 1;
        }
        self.scanned = self.buf.len();
    }

    /// Appends a piece of `flush_at` bytes or more, that much at a time.
    #[cold]
    fn push_large(&mut self, s: &str) {
        let mut rest = s;
        while !rest.is_empty() {
            // Cut between characters; `flush_at` is at least 4, so never at 0.
            let mut cut = rest.len().min(self.flush_at);
            while !rest.is_char_boundary(cut) {
                cut -= 1;
            }
            let (piece, later) = rest.split_at(cut);
            self.buf.push_str(piece);
            rest = later;
            if self.buf.len() >= self.flush_at {
                self.flush();
            }
        }
    }
}

fn is_blank(byte: u8) -> bool {
    byte == b' ' || byte == b'\t'
}

impl Push for Html<'_> {
    fn push_str(&mut self, s: &str) {
        if s.len() >= self.flush_at {
            return self.push_large(s);
        }
        self.buf.push_str(s);
        if self.buf.len() >= self.flush_at {
            self.flush();
        }
    }
}

/// U+0000 is rendered as U+FFFD (§2). The renderer reads the input in place, so the
/// replacement happens here, where characters are written, instead of in a copy.
const REPLACEMENT: &str = "\u{FFFD}";

/// Bytes that are not written as themselves: the four of §6, U+0000, the C0 controls and
/// DEL, and 0xC2, the first byte of the C1 controls (and of the rest of U+0080..U+00BF).
static NEEDS_ATTENTION: ByteSet = ByteSet::of(&[
    (0x00, 0x08), // the C0 controls but tab (09), LF (0A) and CR (0D)
    (0x0B, 0x0C),
    (0x0E, 0x1F),
    (0x7F, 0x7F),
    (0xC2, 0xC2),
    (b'&', b'&'),
    (b'<', b'<'),
    (b'>', b'>'),
    (b'"', b'"'),
]);

/// Appends `text` escaped (§6), with U+0000 replaced (§2) and the other control characters
/// but tab, LF and CR dropped.
///
/// **Differs from the spec (§2 keeps them as content):** a C0 or C1 control in a message
/// body is an escape sequence waiting for a terminal (`messages show --html` wrote an OSC 52
/// clipboard write through), and no page needs one.
pub(crate) fn push_escaped(out: &mut impl Push, text: &str) {
    let bytes = text.as_bytes();
    let mut clean_from = 0;
    let mut at = 0;
    while let Some(&byte) = bytes.get(at) {
        if !NEEDS_ATTENTION.contains(byte) {
            at += 1;
            continue;
        }
        let (replacement, len) = match byte {
            b'&' => ("&amp;", 1),
            b'<' => ("&lt;", 1),
            b'>' => ("&gt;", 1),
            b'"' => ("&quot;", 1),
            0 => (REPLACEMENT, 1),
            // U+0080..U+009F are C2 80..C2 9F; any other C2 xx is kept.
            0xC2 => match bytes.get(at + 1) {
                Some(0x80..=0x9F) => ("", 2),
                _ => {
                    at += 1;
                    continue;
                }
            },
            _ => ("", 1), // a C0 control or DEL
        };
        // The bytes replaced are ASCII, or the two bytes of one C1 character, so `at` and
        // `at + len` are char boundaries.
        out.push_str(text.get(clean_from..at).unwrap_or_default());
        out.push_str(replacement);
        at += len;
        clean_from = at;
    }
    out.push_str(text.get(clean_from..).unwrap_or_default());
}

/// The most bytes [`push_escaped`] writes for one byte of text (`"` becomes `&quot;`).
pub(crate) const MAX_ESCAPED: usize = 6;

/// The most bytes [`push_wiki_target`] writes for one byte of title (U+0000 becomes
/// `%EF%BF%BD`).
pub(crate) const MAX_WIKI_TARGET: usize = 9;

/// The length of `text` as [`push_escaped`] writes it.
pub(crate) fn escaped_len(text: &str) -> usize {
    let bytes = text.as_bytes();
    let mut len = bytes.len();
    let mut at = 0;
    while let Some(&byte) = bytes.get(at) {
        if NEEDS_ATTENTION.contains(byte) {
            match byte {
                b'&' => len += 4,
                b'<' | b'>' => len += 3,
                b'"' => len += 5,
                0 => len += REPLACEMENT.len() - 1,
                0xC2 if matches!(bytes.get(at + 1), Some(0x80..=0x9F)) => {
                    len -= 2;
                    at += 1;
                }
                0xC2 => {}
                _ => len -= 1,
            }
        }
        at += 1;
    }
    len
}

/// Whether `c` is written as itself in a wikilink target (§5.3).
fn kept_in_wiki_target(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._~()!*',:;@/#".contains(c)
}

/// The length of the wikilink target [`push_wiki_target`] writes for `title`.
fn wiki_target_len(title: &str) -> usize {
    title
        .chars()
        .map(|c| match c {
            ' ' => 1,
            '\0' => 3 * '\u{FFFD}'.len_utf8(),
            c if kept_in_wiki_target(c) => 1,
            c => 3 * c.len_utf8(),
        })
        .sum()
}

/// Appends the wikilink target for title `title` (§5.3): spaces become `_`, then every
/// byte outside the kept set becomes `%XX`.
pub(crate) fn push_wiki_target(out: &mut impl Push, title: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    // A nibble is below 16: the `None` arm is never taken, and compiles away.
    let hex = |nibble: u8| {
        HEX.get(usize::from(nibble))
            .map_or('0', |&digit| char::from(digit))
    };
    let mut utf8 = [0u8; 4];
    for c in title.chars() {
        let c = match c {
            ' ' => '_',
            '\0' => '\u{FFFD}',
            c => c,
        };
        if kept_in_wiki_target(c) {
            out.push(c);
            continue;
        }
        for byte in c.encode_utf8(&mut utf8).bytes() {
            out.push('%');
            out.push(hex(byte >> 4));
            out.push(hex(byte & 0xF));
        }
    }
}

/// The length of what [`push_colour_open`] writes.
pub(crate) fn colour_open_len(colour: Colour) -> usize {
    COLOUR_OPEN_FIXED + colour.class().len() + colour.sigil().len()
}

const COLOUR_OPEN_FIXED: usize = "<span class=\"colorblock \"><span class=\"sigil\"></span>\
                                  <span class=\"colortext-content\">"
    .len();

/// Appends the opening of a colour block (§4.8), up to where its content starts.
pub(crate) fn push_colour_open(out: &mut impl Push, colour: Colour) {
    out.push_str("<span class=\"colorblock ");
    out.push_str(colour.class());
    out.push_str("\"><span class=\"sigil\">");
    out.push_str(colour.sigil());
    out.push_str("</span><span class=\"colortext-content\">");
}

/// Closes a colour block opened by [`push_colour_open`].
pub(crate) const COLOUR_CLOSE: &str = "</span></span>";

/// Appends the opening of a quote block (§3.5), up to where its blocks start.
pub(crate) fn push_quote_open(out: &mut impl Push, colour: Option<Colour>) {
    out.push_str("<div class=\"mlq");
    if let Some(colour) = colour {
        out.push(' ');
        out.push_str(colour.class());
    }
    out.push_str(
        "\"><button type=\"button\" class=\"mlq-collapse\" aria-label=\"Toggle visibility\">\
         <span class=\"mlq-collapse-icon\">",
    );
    out.push_str(colour.map_or("-", Colour::sigil));
    out.push_str("</span></button><div class=\"mlq-content\">");
}

/// The length of what [`push_quote_open`] writes.
pub(crate) fn quote_open_len(colour: Option<Colour>) -> usize {
    QUOTE_OPEN_FIXED + colour.map_or(1, |colour| 1 + colour.class().len() + colour.sigil().len())
}

const QUOTE_OPEN_FIXED: usize = "<div class=\"mlq\"><button type=\"button\" class=\"mlq-collapse\" \
                                 aria-label=\"Toggle visibility\"><span class=\"mlq-collapse-icon\">\
                                 </span></button><div class=\"mlq-content\">"
    .len();

/// Closes a quote block opened by [`push_quote_open`].
pub(crate) const QUOTE_CLOSE: &str = "</div></div>";

/// Opens a literal (§5.5).
pub(crate) const LITERAL_OPEN: &str = "<span class=\"literal-text\">";

/// Opens a Chinese run (§5.4).
pub(crate) const CHINESE_OPEN: &str = "<span class=\"annotated-chinese\">";

/// Closes a `span` opened by [`LITERAL_OPEN`] or [`CHINESE_OPEN`].
pub(crate) const SPAN_CLOSE: &str = "</span>";

/// A line break inside a paragraph (§5.7).
pub(crate) const LINE_BREAK: &str = "<br />";

/// A section break (§3.3).
pub(crate) const SECTION_BREAK: &str = "<hr class=\"section-break\" />";

/// The length of what [`push_url`] writes.
pub(crate) fn url_len(url: &str) -> usize {
    URL_FIXED + 2 * escaped_len(url)
}

const URL_FIXED: usize = "<a href=\"\" target=\"_blank\" rel=\"noopener noreferrer\"></a>".len();

/// Appends an `a` element for a URL (§5.2).
pub(crate) fn push_url(out: &mut impl Push, url: &str) {
    out.push_str("<a href=\"");
    push_escaped(out, url);
    out.push_str("\" target=\"_blank\" rel=\"noopener noreferrer\">");
    push_escaped(out, url);
    out.push_str("</a>");
}

/// The length of what [`push_wikilink`] writes.
pub(crate) fn wikilink_len(title: &str) -> usize {
    WIKILINK_FIXED + wiki_target_len(title) + escaped_len(title)
}

const WIKILINK_FIXED: usize = "<a href=\"https://en.wikipedia.org/wiki/\" class=\"wikilink\" \
                               target=\"_blank\" rel=\"noopener noreferrer\"></a>"
    .len();

/// Appends an `a` element for a wikilink with trimmed title `title` (§5.3).
pub(crate) fn push_wikilink(out: &mut impl Push, title: &str) {
    out.push_str("<a href=\"https://en.wikipedia.org/wiki/");
    push_wiki_target(out, title);
    out.push_str("\" class=\"wikilink\" target=\"_blank\" rel=\"noopener noreferrer\">");
    push_escaped(out, title);
    out.push_str("</a>");
}

/// The length of what [`push_wrapped`] writes.
pub(crate) fn wrapped_len(open: &str, content: &str, close: &str) -> usize {
    open.len() + escaped_len(content) + close.len()
}

/// Appends `open`, `content` escaped, then `close`.
pub(crate) fn push_wrapped(out: &mut impl Push, open: &str, content: &str, close: &str) {
    out.push_str(open);
    push_escaped(out, content);
    out.push_str(close);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_the_four_characters_and_replaces_nul() {
        let table = [
            ("", ""),
            ("plain 'text' é 💡", "plain 'text' é 💡"),
            ("a & b", "a &amp; b"),
            ("<b>", "&lt;b&gt;"),
            ("\"q\"", "&quot;q&quot;"),
            ("&amp;", "&amp;amp;"),
            ("x\0y", "x\u{FFFD}y"),
            ("<<&&>>", "&lt;&lt;&amp;&amp;&gt;&gt;"),
        ];
        for (input, expected) in table {
            let mut out = String::new();
            push_escaped(&mut out, input);
            assert_eq!(out, expected, "input {input:?}");
        }
    }

    #[test]
    fn control_characters_other_than_tab_lf_and_cr_are_dropped() {
        let table = [
            ("a\tb\nc\rd", "a\tb\nc\rd"),
            ("\u{1b}]52;c;SGk=\u{7}x", "]52;c;SGk=x"),
            ("\u{1b}[31mred\u{1b}[0m", "[31mred[0m"),
            ("\u{1}\u{8}\u{b}\u{c}\u{e}\u{1f}\u{7f}", ""),
            ("a\u{9b}31mb\u{80}c\u{9f}", "a31mbc"),
            // Other characters of U+0080..U+00FF start with C2 or C3 and stay.
            ("\u{a0}©°\u{bf}é\u{ff}", "\u{a0}©°\u{bf}é\u{ff}"),
            ("\u{1b}<\u{9b}&\0", "&lt;&amp;\u{FFFD}"),
            ("\u{85}", ""),
        ];
        for (input, expected) in table {
            let mut out = String::new();
            push_escaped(&mut out, input);
            assert_eq!(out, expected, "input {input:?}");
        }
    }

    #[test]
    fn lengths_are_what_is_written() {
        let texts = [
            "",
            "plain",
            "a & b < c > d \" e",
            "\0x\u{1}\u{7f}\u{80}\u{9f}\u{a0}©é好💡",
            "AT&T \"Labs\" 北京 (city)? a\tb%c+d",
            "\u{1b}]52;c;SGk=\u{7}",
        ];
        for text in texts {
            let mut out = String::new();
            push_escaped(&mut out, text);
            assert_eq!(escaped_len(text), out.len(), "escaped {text:?}");
            out.clear();
            push_url(&mut out, text);
            assert_eq!(url_len(text), out.len(), "url {text:?}");
            out.clear();
            push_wikilink(&mut out, text);
            assert_eq!(wikilink_len(text), out.len(), "wikilink {text:?}");
            out.clear();
            push_wrapped(&mut out, LITERAL_OPEN, text, SPAN_CLOSE);
            assert_eq!(wrapped_len(LITERAL_OPEN, text, SPAN_CLOSE), out.len());
        }
        for colour in [
            None,
            Some(Colour::Orange),
            Some(Colour::Music),
            Some(Colour::Red),
        ] {
            let mut out = String::new();
            push_quote_open(&mut out, colour);
            assert_eq!(quote_open_len(colour), out.len(), "{colour:?}");
            if let Some(colour) = colour {
                out.clear();
                push_colour_open(&mut out, colour);
                assert_eq!(colour_open_len(colour), out.len(), "{colour:?}");
            }
        }
    }

    #[test]
    fn text_is_cut_between_characters_never_inside_a_reference() {
        let cases = [
            (0, ""),
            (4, "a"),
            (5, "a&lt;"),
            (6, "a&lt;"),
            (7, "a&lt;é"),
            (11, "a&lt;é"),
            (12, "a&lt;é&amp;"),
        ];
        for (limit, expected) in cases {
            let mut out = Out::new(limit, 0);
            out.push_escaped("a<é&b");
            assert_eq!(out.html.buf, expected, "limit {limit}");
            assert!(out.is_cut());
            assert!(!out.fits(0), "nothing fits once cut");
        }
        let mut out = Out::new(13, 0);
        out.push_escaped("a<é&b");
        assert_eq!(
            (out.html.buf.as_str(), out.is_cut()),
            ("a&lt;é&amp;b", false)
        );
    }

    #[test]
    fn wiki_target_percent_encodes_utf8_bytes_uppercase() {
        let table = [
            ("Article Name", "Article_Name"),
            ("AT&T \"Labs\"", "AT%26T_%22Labs%22"),
            ("北京 (city)?", "%E5%8C%97%E4%BA%AC_(city)%3F"),
            ("a-._~()!*',:;@/#z", "a-._~()!*',:;@/#z"),
            ("a\tb%c+d<e>", "a%09b%25c%2Bd%3Ce%3E"),
            ("\0", "%EF%BF%BD"),
        ];
        for (input, expected) in table {
            let mut out = String::new();
            push_wiki_target(&mut out, input);
            assert_eq!(out, expected, "input {input:?}");
        }
    }

    #[test]
    fn quote_opening_uncoloured_and_coloured() {
        let mut out = String::new();
        push_quote_open(&mut out, None);
        assert_eq!(
            out,
            "<div class=\"mlq\"><button type=\"button\" class=\"mlq-collapse\" \
             aria-label=\"Toggle visibility\"><span class=\"mlq-collapse-icon\">-</span>\
             </button><div class=\"mlq-content\">"
        );
        out.clear();
        push_quote_open(&mut out, Some(Colour::Teal));
        assert!(out.starts_with("<div class=\"mlq color-teal\"><button"));
        assert!(out.contains("<span class=\"mlq-collapse-icon\">🤖</span>"));
    }

    #[test]
    fn colour_opening_shape() {
        let mut out = String::new();
        push_colour_open(&mut out, Colour::Orange);
        out.push_str(COLOUR_CLOSE);
        assert_eq!(
            out,
            "<span class=\"colorblock color-orange\"><span class=\"sigil\">\u{2694}\u{FE0F}\
             </span><span class=\"colortext-content\"></span></span>"
        );
    }
}
