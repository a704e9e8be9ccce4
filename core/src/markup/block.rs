//! Input normalisation (spec §2) and block structure (§3): paragraphs, section breaks,
//! lists and quote blocks.

use super::colour::{Colour, tag_at};
use super::html;
use super::inline::Inline;
use super::scan::trim;

/// Renders a whole document.
pub(crate) fn render_document(text: &str) -> String {
    let lines = split_lines(text);
    // Markup roughly doubles the size of text; pages reserved but never written cost
    // nothing, while a regrowth copies everything written so far.
    let mut out = String::with_capacity(text.len().saturating_mul(2));
    let mut inline = Inline::default();
    let top = Lines {
        // §9: an opener after the last line ending with `>>>` cannot close.
        last_closer: lines.iter().rposition(|line| line.ends_with(">>>")),
        lines: &lines,
        top_level: true,
    };
    render_blocks(&top, &mut out, &mut inline);
    out
}

/// Splits at CR LF, CR and LF, and trims every line (§2).
///
/// U+0000 is not replaced here but where characters are written (see `html`); no rule
/// before that treats U+0000 and U+FFFD differently.
fn split_lines(text: &str) -> Vec<&str> {
    let bytes = text.as_bytes();
    let mut lines = Vec::new();
    let mut start = 0;
    for end in memchr::memchr2_iter(b'\r', b'\n', bytes) {
        if end < start {
            continue; // the LF of a CR LF pair, already consumed
        }
        lines.push(trim(text.get(start..end).unwrap_or_default()));
        start = end + 1;
        if bytes.get(end..end + 2) == Some(b"\r\n") {
            start += 1;
        }
    }
    lines.push(trim(text.get(start..).unwrap_or_default()));
    lines
}

/// A sequence of trimmed lines to group into blocks.
struct Lines<'l, 'a> {
    lines: &'l [&'a str],
    /// Top level: section breaks and quotes exist. Inside a quote they do not (§3.1).
    top_level: bool,
    /// The index of the last line ending with `>>>`.
    last_closer: Option<usize>,
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

impl<'a> Lines<'_, 'a> {
    /// The kind of line `index` (§3.1); `None` past the end.
    fn kind(&self, index: usize) -> Option<LineKind<'a>> {
        let line = *self.lines.get(index)?;
        Some(if line.is_empty() {
            LineKind::Blank
        } else if self.top_level && line == "----" {
            LineKind::SectionBreak
        } else if let Some(opener) = self.quote_opener(index, line) {
            opener
        } else if let Some(item) = list_item(line) {
            item
        } else {
            LineKind::Text
        })
    }

    fn quote_opener(&self, index: usize, line: &'a str) -> Option<LineKind<'a>> {
        if !self.top_level {
            return None;
        }
        let (colour, after_tag) = match tag_at(line.as_bytes()) {
            Some((colour, len)) => (Some(colour), trim(line.get(len..)?)),
            None => (None, line),
        };
        let rest = trim(after_tag.strip_prefix("<<<")?);
        let closes = rest.ends_with(">>>") || self.last_closer.is_some_and(|last| last > index);
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

/// Renders the blocks of `lines`, joined by LF (§3.6).
fn render_blocks<'a>(lines: &Lines<'_, 'a>, out: &mut String, inline: &mut Inline<'a>) {
    let mut first = true;
    let mut index = 0;
    while let Some(kind) = lines.kind(index) {
        if kind == LineKind::Blank {
            index += 1;
            continue;
        }
        if !first {
            out.push('\n');
        }
        first = false;
        index = match kind {
            LineKind::SectionBreak => {
                out.push_str(html::SECTION_BREAK);
                index + 1
            }
            LineKind::QuoteOpener { colour, rest } => {
                render_quote(lines, index, colour, rest, out, inline)
            }
            LineKind::ListItem { kind, .. } => render_list(lines, index, kind, out, inline),
            LineKind::Blank | LineKind::Text => render_paragraph(lines, index, out, inline),
        };
    }
}

/// Renders the paragraph starting at `start`; returns the index after it (§3.2).
fn render_paragraph<'a>(
    lines: &Lines<'_, 'a>,
    start: usize,
    out: &mut String,
    inline: &mut Inline<'a>,
) -> usize {
    let mut end = start + 1;
    while lines.kind(end) == Some(LineKind::Text) {
        end += 1;
    }
    out.push_str("<p>");
    inline.render(lines.lines.get(start..end).unwrap_or_default(), out);
    out.push_str("</p>");
    end
}

/// Renders the list starting at `start`; returns the index after it (§3.4).
fn render_list<'a>(
    lines: &Lines<'_, 'a>,
    start: usize,
    kind: ListKind,
    out: &mut String,
    inline: &mut Inline<'a>,
) -> usize {
    out.push_str("<ul>");
    let mut index = start;
    while let Some(LineKind::ListItem {
        kind: item_kind,
        content,
    }) = lines.kind(index)
    {
        if item_kind != kind {
            break;
        }
        out.push('\n');
        out.push_str(kind.item_open());
        inline.render(std::slice::from_ref(&content), out);
        out.push_str("</li>");
        index += 1;
    }
    out.push_str("\n</ul>");
    index
}

/// Renders the quote opened at `start`; returns the index after its closer (§3.5).
fn render_quote<'a>(
    lines: &Lines<'_, 'a>,
    start: usize,
    colour: Option<Colour>,
    rest: &'a str,
    out: &mut String,
    inline: &mut Inline<'a>,
) -> usize {
    let mut content = Vec::new();
    let next = if let Some(only) = rest.strip_suffix(">>>") {
        content.push(trim(only));
        start + 1
    } else {
        content.push(rest);
        let mut index = start + 1;
        // The opener was accepted because a later line ends with `>>>`, so this loop stops
        // at that closer; running off the end would only treat the end as the closer.
        while let Some(&line) = lines.lines.get(index) {
            if let Some(last) = line.strip_suffix(">>>") {
                content.push(trim(last));
                break;
            }
            content.push(line);
            index += 1;
        }
        index + 1
    };
    html::push_quote_open(out, colour);
    let inner = Lines {
        lines: &content,
        top_level: false,
        last_closer: None,
    };
    render_blocks(&inner, out, inline);
    out.push_str(html::QUOTE_CLOSE);
    next
}

#[cfg(test)]
mod tests {
    use super::*;

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
            assert_eq!(split_lines(input), *expected, "input {input:?}");
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
        let top = Lines {
            lines: &lines,
            top_level: true,
            last_closer: Some(14),
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
        for (index, expected) in expected.iter().enumerate() {
            assert_eq!(
                top.kind(index).as_ref(),
                Some(expected),
                "line {:?}",
                lines[index]
            );
        }
        assert_eq!(top.kind(lines.len()), None);
    }

    #[test]
    fn inside_a_quote_only_blank_list_and_text_exist() {
        let lines = ["----", "<<<x>>>", "* a", ""];
        let inner = Lines {
            lines: &lines,
            top_level: false,
            last_closer: None,
        };
        assert_eq!(inner.kind(0), Some(LineKind::Text));
        assert_eq!(inner.kind(1), Some(LineKind::Text));
        assert!(matches!(inner.kind(2), Some(LineKind::ListItem { .. })));
        assert_eq!(inner.kind(3), Some(LineKind::Blank));
    }

    #[test]
    fn opener_without_closer_is_text() {
        let lines = ["<<<", "x >>>", "<<<", "y"];
        let top = Lines {
            lines: &lines,
            top_level: true,
            last_closer: Some(1),
        };
        assert!(matches!(top.kind(0), Some(LineKind::QuoteOpener { .. })));
        assert_eq!(top.kind(2), Some(LineKind::Text));
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
