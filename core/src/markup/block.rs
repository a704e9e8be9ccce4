//! Input normalisation (spec §2) and block structure (§3): paragraphs, section breaks,
//! lists and quote blocks.
//!
//! Lines are read where they lie in the text and never collected: a paragraph, a list item
//! or a quote's content is a range of lines ([`LineSeq`]), read again by what renders it. So
//! memory does not grow with the number of lines, and every line is split and trimmed a
//! bounded number of times.

use super::colour::{Colour, tag_at};
use super::html::{self, Out, Push};
use super::inline::Inline;
use super::scan::trim;

/// Renders a whole document into `out`, as far as it fits.
pub(crate) fn render_document(text: &str, out: &mut Out<'_>) {
    let mut context = Context {
        inline: Inline::default(),
        paragraph: Vec::new(),
    };
    let level = Level::Top {
        last_closer: last_closer(text),
    };
    render_blocks(LineSeq::of(Lines::new(text)), level, out, &mut context);
}

/// The offset of the last line that ends with `>>>` (§9: an opener after it cannot close).
fn last_closer(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut end = bytes.len();
    // Each probe looks only before the last: linear in all.
    while let Some(at) = memchr::memmem::rfind(bytes.get(..end)?, b">>>") {
        let after = bytes.get(at + 3..).unwrap_or_default();
        let line_end = memchr::memchr2(b'\r', b'\n', after).unwrap_or(after.len());
        if after
            .get(..line_end)
            .is_some_and(|rest| rest.iter().all(|&b| b == b' ' || b == b'\t'))
        {
            let line_start = memchr::memrchr2(b'\r', b'\n', bytes.get(..at)?).map_or(0, |i| i + 1);
            return Some(line_start);
        }
        // `>>>>`: the `>>>` that ends the line may start one byte later than this one.
        end = at + 2;
    }
    None
}

/// What rendering blocks reuses from one block to the next.
struct Context<'a> {
    inline: Inline<'a>,
    /// The lines of a short paragraph, so they are split only once.
    paragraph: Vec<&'a str>,
}

/// Paragraphs of at most this many lines are collected rather than split again.
const COLLECTED_LINES: usize = 256;

/// The lines of a text: split at CR LF, CR and LF, and trimmed (§2), each with the offset
/// where it starts. A trailing line end gives a last, empty line; empty text one empty line.
///
/// U+0000 is not replaced here but where characters are written (see `html`); no rule
/// before that treats U+0000 and U+FFFD differently.
#[derive(Clone, Debug)]
struct Lines<'a> {
    text: &'a str,
    /// Where the next line starts.
    at: usize,
    /// The last line was given out.
    done: bool,
    /// At most this many lines more.
    left: usize,
}

impl<'a> Lines<'a> {
    fn new(text: &'a str) -> Lines<'a> {
        Lines {
            text,
            at: 0,
            done: false,
            left: usize::MAX,
        }
    }

    /// The next `count` lines, as a sequence of their own.
    fn limited(&self, count: usize) -> Lines<'a> {
        Lines {
            left: count,
            ..self.clone()
        }
    }
}

impl<'a> Iterator for Lines<'a> {
    type Item = (usize, &'a str);

    fn next(&mut self) -> Option<(usize, &'a str)> {
        if self.done || self.left == 0 {
            return None;
        }
        self.left -= 1;
        let start = self.at;
        let rest = self.text.get(start..).unwrap_or_default();
        let Some(end) = memchr::memchr2(b'\r', b'\n', rest.as_bytes()) else {
            self.done = true;
            return Some((start, trim(rest)));
        };
        // Invariant: `end` is the offset of an ASCII byte, so a char boundary.
        let line = rest.get(..end).unwrap_or_default();
        self.at = start + end + 1;
        if rest.as_bytes().get(end..end + 2) == Some(b"\r\n") {
            self.at += 1;
        }
        Some((start, trim(line)))
    }
}

/// A sequence of trimmed lines to group into blocks: lines of the text, optionally after a
/// first line and before a last one from elsewhere (a quote's content, §3.5).
#[derive(Clone, Debug)]
struct LineSeq<'a> {
    head: Option<&'a str>,
    body: Lines<'a>,
    tail: Option<&'a str>,
    /// At most this many lines more.
    left: usize,
}

impl<'a> LineSeq<'a> {
    fn of(body: Lines<'a>) -> LineSeq<'a> {
        LineSeq {
            head: None,
            body,
            tail: None,
            left: usize::MAX,
        }
    }

    /// The next `count` lines, as a sequence of their own.
    fn limited(&self, count: usize) -> LineSeq<'a> {
        LineSeq {
            left: count,
            ..self.clone()
        }
    }
}

impl<'a> Iterator for LineSeq<'a> {
    /// A line, and its offset in the text (0 for a line from elsewhere: offsets only matter
    /// at top level, where there are none).
    type Item = (usize, &'a str);

    fn next(&mut self) -> Option<(usize, &'a str)> {
        if self.left == 0 {
            return None;
        }
        let line = match self.head.take() {
            Some(head) => Some((0, head)),
            None => self.body.next().or_else(|| Some((0, self.tail.take()?))),
        };
        if line.is_some() {
            self.left -= 1;
        }
        line
    }
}

/// Where blocks are: at top level section breaks and quotes exist; inside a quote they do
/// not (§3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Level {
    /// `last_closer`: the offset of the last line ending with `>>>`.
    Top {
        last_closer: Option<usize>,
    },
    Inner,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ListKind {
    Bullet,
    Number,
    Arrow,
}

impl ListKind {
    fn item_open(self) -> &'static str {
        match self {
            ListKind::Bullet => "<li class=\"bullet-list\">",
            ListKind::Number => "<li class=\"number-list\">",
            ListKind::Arrow => "<li class=\"arrow-list\">",
        }
    }
}

const ITEM_CLOSE: &str = "</li>";
const LIST_CLOSE: &str = "\n</ul>";

/// The most closing markup the renderer can owe at any point: every colour block open in a
/// list item inside a quote. The caller keeps this much room beyond what [`Out`] counts.
pub(crate) const MAX_CLOSING: usize = super::inline::MAX_DEPTH * html::COLOUR_CLOSE.len()
    + ITEM_CLOSE.len()
    + LIST_CLOSE.len()
    + html::QUOTE_CLOSE.len();

#[derive(Debug, PartialEq, Eq)]
enum LineKind<'a> {
    Blank,
    SectionBreak,
    /// A quote opener whose quote closes; `rest` is what follows `<<<`, trimmed.
    QuoteOpener {
        colour: Option<Colour>,
        rest: &'a str,
    },
    ListItem {
        kind: ListKind,
        content: &'a str,
    },
    Text,
}

impl Level {
    /// The kind of `line`, which starts at offset `at` (§3.1).
    fn kind<'a>(self, at: usize, line: &'a str) -> LineKind<'a> {
        if line.is_empty() {
            LineKind::Blank
        } else if self != Level::Inner && line == "----" {
            LineKind::SectionBreak
        } else if let Some(opener) = self.quote_opener(at, line) {
            opener
        } else if let Some(item) = list_item(line) {
            item
        } else {
            LineKind::Text
        }
    }

    fn quote_opener<'a>(self, at: usize, line: &'a str) -> Option<LineKind<'a>> {
        let Level::Top { last_closer } = self else {
            return None;
        };
        let (colour, after_tag) = match tag_at(line.as_bytes()) {
            Some((colour, len)) => (Some(colour), trim(line.get(len..)?)),
            None => (None, line),
        };
        let rest = trim(after_tag.strip_prefix("<<<")?);
        let closes = rest.ends_with(">>>") || last_closer.is_some_and(|last| last > at);
        closes.then_some(LineKind::QuoteOpener { colour, rest })
    }
}

fn list_item(line: &str) -> Option<LineKind<'_>> {
    let mut chars = line.chars();
    let kind = match chars.next()? {
        '*' => ListKind::Bullet,
        '#' => ListKind::Number,
        '>' => ListKind::Arrow,
        _ => return None,
    };
    let after = chars.as_str();
    if !after.starts_with([' ', '\t']) {
        return None;
    }
    Some(LineKind::ListItem {
        kind,
        content: trim(after),
    })
}

/// Renders the blocks of `lines`, joined by LF (§3.6), until they end or `out` is full.
fn render_blocks<'a>(
    lines: LineSeq<'a>,
    level: Level,
    out: &mut Out<'_>,
    context: &mut Context<'a>,
) {
    let mut cursor = lines;
    let mut separator = "";
    while !out.is_cut() {
        let before = cursor.clone();
        let Some((at, line)) = cursor.next() else {
            return;
        };
        match level.kind(at, line) {
            LineKind::Blank => continue,
            LineKind::SectionBreak => {
                if out.fits(separator.len() + html::SECTION_BREAK.len()) {
                    let html = out.html_mut();
                    html.push_str(separator);
                    html.push_str(html::SECTION_BREAK);
                }
            }
            LineKind::QuoteOpener { colour, rest } => {
                if out.fits(separator.len() + html::quote_open_len(colour)) {
                    out.html_mut().push_str(separator);
                    html::push_quote_open(out.html_mut(), colour);
                    let content = quote_content(&mut cursor, rest);
                    render_blocks(content, Level::Inner, out, context);
                    out.html_mut().push_str(html::QUOTE_CLOSE);
                }
            }
            LineKind::ListItem { kind, content } => {
                if out.fits(separator.len() + "<ul>".len()) {
                    out.html_mut().push_str(separator);
                    out.html_mut().push_str("<ul>");
                    render_list(&mut cursor, level, kind, content, out, &mut context.inline);
                    out.html_mut().push_str(LIST_CLOSE);
                }
            }
            LineKind::Text => {
                // §3.2: the paragraph runs to the next line of another kind.
                let paragraph = &mut context.paragraph;
                paragraph.clear();
                paragraph.push(line);
                let mut count = 1;
                loop {
                    let mut probe = cursor.clone();
                    match probe.next() {
                        Some((at, line)) if level.kind(at, line) == LineKind::Text => {
                            cursor = probe;
                            count += 1;
                            if count <= COLLECTED_LINES {
                                paragraph.push(line);
                            }
                        }
                        _ => break,
                    }
                }
                if out.fits(separator.len() + "<p>".len()) {
                    out.html_mut().push_str(separator);
                    out.html_mut().push_str("<p>");
                    if count <= COLLECTED_LINES {
                        let lines = std::mem::take(&mut context.paragraph);
                        context.inline.render(lines.iter().copied(), out);
                        context.paragraph = lines;
                    } else {
                        let lines = before.limited(count).map(|(_, line)| line);
                        context.inline.render(lines, out);
                    }
                    out.html_mut().push_str("</p>");
                }
            }
        }
        separator = "\n";
    }
}

/// Renders the items of the list whose first item is `first` (§3.4); leaves `cursor` after
/// the last.
fn render_list<'a>(
    cursor: &mut LineSeq<'a>,
    level: Level,
    kind: ListKind,
    first: &'a str,
    out: &mut Out<'_>,
    inline: &mut Inline<'a>,
) {
    let mut item = Some(first);
    while let Some(content) = item {
        if !out.fits("\n".len() + kind.item_open().len()) {
            return;
        }
        out.html_mut().push('\n');
        out.html_mut().push_str(kind.item_open());
        inline.render(std::iter::once(content), out);
        out.html_mut().push_str(ITEM_CLOSE);
        let mut probe = cursor.clone();
        item = match probe.next() {
            Some((at, line)) => match level.kind(at, line) {
                LineKind::ListItem {
                    kind: next,
                    content,
                } if next == kind => {
                    *cursor = probe;
                    Some(content)
                }
                _ => None,
            },
            None => None,
        };
    }
}

/// The content lines of the quote whose opener's rest is `rest` (§3.5); leaves `cursor`
/// after the closer.
fn quote_content<'a>(cursor: &mut LineSeq<'a>, rest: &'a str) -> LineSeq<'a> {
    if let Some(only) = rest.strip_suffix(">>>") {
        return LineSeq {
            head: Some(trim(only)),
            body: Lines::new("").limited(0),
            tail: None,
            left: usize::MAX,
        };
    }
    let middle = cursor.body.clone();
    let mut count = 0;
    // The opener was accepted because a later line ends with `>>>`, so this loop stops at
    // that closer; running off the end would only treat the end as the closer.
    let mut last = "";
    for (_, line) in cursor.by_ref() {
        if let Some(content) = line.strip_suffix(">>>") {
            last = trim(content);
            break;
        }
        count += 1;
    }
    LineSeq {
        head: Some(rest),
        body: middle.limited(count),
        tail: Some(last),
        left: usize::MAX,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render_document(text: &str) -> String {
        let mut out = Out::unlimited();
        super::render_document(text, &mut out);
        out.into_html()
    }

    #[test]
    fn splits_at_every_line_end_and_trims() {
        let table: &[(&str, &[&str])] = &[
            ("", &[""]),
            ("a", &["a"]),
            ("a\n", &["a", ""]),
            ("a\r\nb\rc\nd", &["a", "b", "c", "d"]),
            ("a\r\r\nb", &["a", "", "b"]),
            ("a\n\rb", &["a", "", "b"]),
            (" \ta b\t \n  ", &["a b", ""]),
            ("\u{a0}x\u{a0}", &["\u{a0}x\u{a0}"]),
        ];
        for (input, expected) in table {
            let lines: Vec<&str> = Lines::new(input).map(|(_, line)| line).collect();
            assert_eq!(lines, *expected, "input {input:?}");
        }
        let offsets: Vec<usize> = Lines::new("ab\r\ncd\re\n").map(|(at, _)| at).collect();
        assert_eq!(offsets, [0, 4, 7, 9]);
        let limited: Vec<&str> = Lines::new("a\nb\nc").limited(2).map(|(_, l)| l).collect();
        assert_eq!(limited, ["a", "b"]);
    }

    /// The lines of `lines` joined by LF, each with its offset.
    fn document(lines: &[&'static str]) -> Vec<(usize, &'static str)> {
        let mut at = 0;
        lines
            .iter()
            .map(|&line| {
                let start = at;
                at += line.len() + 1;
                (start, line)
            })
            .collect()
    }

    #[test]
    fn finds_the_last_line_that_ends_with_the_closer() {
        for text in [
            "",
            ">>>",
            "a\n>>> b\nc",
            "a >>>\nb >>> c",
            "x\r\ny>>>>  \t\r\nz",
            "a>>>\r\nb",
            ">>>\n>>>x\n>> >\n",
            ">>>>>>",
            "a >>>\n\n",
        ] {
            let expected = Lines::new(text)
                .filter(|(_, line)| line.ends_with(">>>"))
                .map(|(at, _)| at)
                .last();
            assert_eq!(last_closer(text), expected, "{text:?}");
        }
    }

    #[test]
    fn classifies_lines_in_order() {
        let lines = [
            "",
            "----",
            "-----",
            "<<<",
            "<red> <<<",
            "<red><<<x>>>",
            "* a",
            "#\tb",
            "> c",
            "*word",
            ">> d",
            "*",
            "- e",
            "<<< x",
            ">>>",
        ];
        let document = document(&lines);
        let top = Level::Top {
            last_closer: Some(document[14].0),
        };
        let expected = [
            LineKind::Blank,
            LineKind::SectionBreak,
            LineKind::Text,
            LineKind::QuoteOpener {
                colour: None,
                rest: "",
            },
            LineKind::QuoteOpener {
                colour: Some(Colour::Red),
                rest: "",
            },
            LineKind::QuoteOpener {
                colour: Some(Colour::Red),
                rest: "x>>>",
            },
            LineKind::ListItem {
                kind: ListKind::Bullet,
                content: "a",
            },
            LineKind::ListItem {
                kind: ListKind::Number,
                content: "b",
            },
            LineKind::ListItem {
                kind: ListKind::Arrow,
                content: "c",
            },
            LineKind::Text,
            LineKind::Text,
            LineKind::Text,
            LineKind::Text,
            LineKind::QuoteOpener {
                colour: None,
                rest: "x",
            },
            LineKind::Text,
        ];
        for ((at, line), expected) in document.iter().zip(&expected) {
            assert_eq!(top.kind(*at, line), *expected, "line {line:?}");
        }
    }

    #[test]
    fn inside_a_quote_only_blank_list_and_text_exist() {
        let inner = Level::Inner;
        assert_eq!(inner.kind(0, "----"), LineKind::Text);
        assert_eq!(inner.kind(0, "<<<x>>>"), LineKind::Text);
        assert!(matches!(inner.kind(0, "* a"), LineKind::ListItem { .. }));
        assert_eq!(inner.kind(0, ""), LineKind::Blank);
    }

    #[test]
    fn opener_without_closer_is_text() {
        let document = document(&["<<<", "x >>>", "<<<", "y"]);
        let top = Level::Top {
            last_closer: Some(document[1].0),
        };
        let (at, line) = document[0];
        assert!(matches!(top.kind(at, line), LineKind::QuoteOpener { .. }));
        let (at, line) = document[2];
        assert_eq!(top.kind(at, line), LineKind::Text);
    }

    #[test]
    fn blocks() {
        let table = [
            ("", ""),
            ("\n \n\t\n", ""),
            ("a\nb", "<p>a<br />b</p>"),
            (
                "----\n----",
                "<hr class=\"section-break\" />\n<hr class=\"section-break\" />",
            ),
            ("a ---- b", "<p>a ---- b</p>"),
            (
                "* a\n*\tb",
                "<ul>\n<li class=\"bullet-list\">a</li>\n<li class=\"bullet-list\">b</li>\n</ul>",
            ),
            (
                "a\n> b\nc",
                "<p>a</p>\n<ul>\n<li class=\"arrow-list\">b</li>\n</ul>\n<p>c</p>",
            ),
            (
                "  * indented",
                "<ul>\n<li class=\"bullet-list\">indented</li>\n</ul>",
            ),
            (
                "* *a*",
                "<ul>\n<li class=\"bullet-list\"><em>a</em></li>\n</ul>",
            ),
            (
                "<red>* x",
                "<p><span class=\"colorblock color-red\"><span class=\"sigil\">💡</span><span class=\"colortext-content\">* x</span></span></p>",
            ),
            (
                "* (<red>a\n* b)",
                "<ul>\n<li class=\"bullet-list\">(&lt;red&gt;a</li>\n<li class=\"bullet-list\">b)</li>\n</ul>",
            ),
            ("(<red>a\n\nb)", "<p>(&lt;red&gt;a</p>\n<p>b)</p>"),
            (">>>", "<p>&gt;&gt;&gt;</p>"),
            ("<<\n>>", "<p>&lt;&lt;<br />&gt;&gt;</p>"),
        ];
        for (input, expected) in table {
            assert_eq!(render_document(input), expected, "input {input:?}");
        }
    }

    #[test]
    fn quotes() {
        const OPEN: &str = "<div class=\"mlq\"><button type=\"button\" class=\"mlq-collapse\" aria-label=\"Toggle visibility\"><span class=\"mlq-collapse-icon\">-</span></button><div class=\"mlq-content\">";
        const CLOSE: &str = "</div></div>";
        let table = [
            ("<<<>>>", format!("{OPEN}{CLOSE}")),
            ("<<< a >>>", format!("{OPEN}<p>a</p>{CLOSE}")),
            (
                "<<<\n* item >>>",
                format!("{OPEN}<ul>\n<li class=\"bullet-list\">item</li>\n</ul>{CLOSE}"),
            ),
            (
                "<<<\n----\n<<<\na>>>\nb>>>",
                format!("{OPEN}<p>----<br />&lt;&lt;&lt;<br />a</p>{CLOSE}\n<p>b&gt;&gt;&gt;</p>"),
            ),
            (
                "p\n<<<x>>>\nq",
                format!("<p>p</p>\n{OPEN}<p>x</p>{CLOSE}\n<p>q</p>"),
            ),
            (
                "* a\n<<<x>>>",
                format!("<ul>\n<li class=\"bullet-list\">a</li>\n</ul>\n{OPEN}<p>x</p>{CLOSE}"),
            ),
            ("<<<\n\n>>>", format!("{OPEN}{CLOSE}")),
            (
                "<<<a\n(<red>b\nc)>>>",
                format!(
                    "{OPEN}<p>a<br /><span class=\"colorblock color-red\"><span class=\"sigil\">💡</span><span class=\"colortext-content\">b<br />c</span></span></p>{CLOSE}"
                ),
            ),
            ("<<<<\n>>>", format!("{OPEN}<p>&lt;</p>{CLOSE}")),
        ];
        for (input, expected) in table {
            assert_eq!(render_document(input), expected, "input {input:?}");
        }
    }

    #[test]
    fn coloured_quote_uses_class_and_sigil() {
        let out = render_document("<music><<<la>>>");
        assert_eq!(
            out,
            "<div class=\"mlq color-musicnote\"><button type=\"button\" class=\"mlq-collapse\" \
             aria-label=\"Toggle visibility\"><span class=\"mlq-collapse-icon\">🎵</span>\
             </button><div class=\"mlq-content\"><p>la</p></div></div>"
        );
    }
}
