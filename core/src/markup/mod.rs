//! Atacama markup to HTML (spec: `../shared/atacama-markup.md`, version 1).
//!
//! The renderer is total, deterministic and pure: every input gives one HTML fragment,
//! fixed to the byte by the spec, and never a panic. One departure: control characters other
//! than tab and line ends are dropped from the output, where the spec (§2) keeps them as
//! content (`html::push_escaped` says why). The text is parsed once and each
//! character escaped once, on output, so no markup can be produced inside an attribute
//! (the Python original's colour-tag-in-`href` bug, spec §6).
//!
//! Structure: `block` splits lines and groups them into paragraphs, lists, breaks and
//! quotes (§2, §3); `scan` turns each line of a paragraph or list item into atoms (§5.1);
//! `inline` matches parentheses and renders colours with an explicit frame stack (§4).
//! Every look-ahead is bounded or consumed, so time is linear in the input (§9), and
//! nesting costs heap, not call stack.
//!
//! Memory is bounded too: the HTML is at most [`html_limit`] bytes (twice the text and 1 MiB;
//! a text that would render longer is cut at a safe point, see [`render_checked`]), and what
//! the renderer keeps besides does not grow with the input, but for two bits per parenthesis.
//! 25 MB of `[[a]]` lines once rendered to 420 MB of HTML, through 240 MB of line and atom
//! lists. [`render_to`] need not keep the HTML at all: it hands it on as it is written.

mod allowlist;
mod block;
pub(crate) mod byte_set;
mod colour;
mod html;
mod inline;
mod scan;

pub use allowlist::check_output_allowlist;

use std::fmt;

/// Renders Atacama markup to a safe HTML fragment, with no leading or trailing newline; cut
/// as [`render_checked`] says.
pub fn render(text: &str) -> String {
    render_checked(text).html
}

/// Every colour class the renderer can write (`color-…`, spec §4.1), each once, in the
/// table's order: sixteen tags share thirteen classes. The stylesheet's test checks it has a
/// rule for each.
pub fn colour_classes() -> Vec<&'static str> {
    let mut classes: Vec<&'static str> = Vec::with_capacity(colour::ALL.len());
    for class in colour::ALL.map(colour::Colour::class) {
        if !classes.contains(&class) {
            classes.push(class);
        }
    }
    classes
}

/// The most HTML a text of `text_len` bytes renders to: twice the text, and 1 MiB.
///
/// Prose renders to a little more than itself, a line dense with markup to five to eight
/// times itself (a colour tag or a link becomes about 100 bytes), and only contrived text to
/// more (`<red>` alone on a line: 20 times). So a text of 100 KB is cut only if contrived,
/// and a long one only if its markup is dense throughout. The factor two keeps what a
/// delivery holds at once (data, text and HTML) under four times the largest message
/// (issue 24: `tests/bench.sh memory`).
pub fn html_limit(text_len: usize) -> usize {
    text_len.saturating_mul(2).saturating_add(1 << 20)
}

/// The HTML of a text, and whether it had to be cut.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The fragment: complete, or cut ([`render_to`]: its part not handed to the sink).
    pub html: String,
    /// Set when the HTML reached [`html_limit`] and the rest of the text was not rendered.
    pub cut: Option<Cut>,
}

/// Where and why the HTML of a text was cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cut {
    /// How long the text is.
    pub text_len: usize,
    /// The limit for a text that long ([`html_limit`]).
    pub limit: usize,
}

impl fmt::Display for Cut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the HTML reached its limit ({} bytes for {} bytes of text: twice the text and 1 \
             MiB) and the rest of the text was not rendered; the text itself is kept whole",
            self.limit, self.text_len
        )
    }
}

/// Renders like [`render`], and says whether the HTML was cut.
///
/// The HTML never exceeds [`html_limit`]`(text.len())` bytes. Where it would, it stops
/// before the first piece that does not fit: between two elements, or inside text between
/// two characters (never inside a tag or a character reference), and every element open
/// there is closed, so the fragment stays well formed and inside the vocabulary (§7).
pub fn render_checked(text: &str) -> Rendered {
    render_within(text, html_limit(text.len()))
}

/// Renders like [`render_checked`], but hands the HTML to `sink` a piece at a time, in
/// order, once it passes about 64 KiB, instead of keeping it whole: what the renderer holds of
/// it at once is about that much (and at most the longest run of spaces and tabs in the text,
/// which a colour block's closing may still trim). What is left at the end, the whole HTML of
/// a small text, comes back in [`Rendered::html`]: the pieces, then that, are
/// [`render_checked`]'s HTML, to the byte.
pub fn render_to(text: &str, sink: &mut dyn FnMut(&str)) -> Rendered {
    render_flushing(text, html_limit(text.len()), html::FLUSH_AT, sink)
}

/// [`render_to`] into at most `limit` bytes, handing the HTML on about every `flush_at` bytes.
fn render_flushing(
    text: &str,
    limit: usize,
    flush_at: usize,
    sink: &mut dyn FnMut(&str),
) -> Rendered {
    let mut out = html::Out::with_sink(
        limit.saturating_sub(block::MAX_CLOSING),
        text.len().saturating_mul(2),
        flush_at,
        sink,
    );
    block::render_document(text, &mut out);
    let cut = out.is_cut().then_some(Cut {
        text_len: text.len(),
        limit,
    });
    Rendered {
        html: out.into_html(),
        cut,
    }
}

/// Renders `text` into at most `limit` bytes of HTML.
fn render_within(text: &str, limit: usize) -> Rendered {
    let mut out = html::Out::new(
        limit.saturating_sub(block::MAX_CLOSING),
        // Markup roughly doubles the size of text: reserved pages never written cost
        // nothing, while a regrowth copies everything written so far.
        text.len().saturating_mul(2),
    );
    block::render_document(text, &mut out);
    let cut = out.is_cut().then_some(Cut {
        text_len: text.len(),
        limit,
    });
    Rendered {
        html: out.into_html(),
        cut,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_a_document_with_every_block_kind() {
        let input = "Intro <red>hot\r\n* a\r\n# b\r\n----\r\n<<< q >>>\r\nend";
        let expected = "<p>Intro <span class=\"colorblock color-red\"><span class=\"sigil\">💡\
                        </span><span class=\"colortext-content\">hot</span></span></p>\n\
                        <ul>\n<li class=\"bullet-list\">a</li>\n</ul>\n\
                        <ul>\n<li class=\"number-list\">b</li>\n</ul>\n\
                        <hr class=\"section-break\" />\n\
                        <div class=\"mlq\"><button type=\"button\" class=\"mlq-collapse\" \
                        aria-label=\"Toggle visibility\"><span class=\"mlq-collapse-icon\">-\
                        </span></button><div class=\"mlq-content\"><p>q</p></div></div>\n\
                        <p>end</p>";
        let out = render(input);
        assert_eq!(out, expected);
        assert_eq!(check_output_allowlist(&out), Ok(()));
    }

    #[test]
    fn a_megabyte_of_unclosed_nesting_is_text() {
        let count = (1 << 20) / "(<red>".len();
        let out = render(&"(<red>".repeat(count));
        assert_eq!(out, format!("<p>{}</p>", "(&lt;red&gt;".repeat(count)));
    }

    #[test]
    fn a_megabyte_of_closed_nesting_keeps_eight_blocks() {
        let depth = (1 << 20) / "(<red>)".len();
        let out = render(&format!("{}x{}", "(<red>".repeat(depth), ")".repeat(depth)));
        assert_eq!(out.matches("<span class=\"colorblock").count(), 8);
        assert_eq!(out.matches("(&lt;red&gt;").count(), depth - 8);
        assert_eq!(check_output_allowlist(&out), Ok(()));
    }

    /// The cut HTML without the closing tags written at the cut, nor the spaces and tabs
    /// the last colour block's closing trimmed: a prefix of the whole HTML.
    fn before_the_cut(html: &str) -> &str {
        let mut rest = html;
        loop {
            let shorter = ["</span>", "</p>", "</li>", "\n</ul>", "</div>"]
                .iter()
                .find_map(|close| rest.strip_suffix(close));
            match shorter {
                Some(shorter) => rest = shorter,
                None => return rest.trim_end_matches([' ', '\t']),
            }
        }
    }

    const TOKENS: &[&str] = &[
        "(<red>",
        "( <blue>",
        "(",
        ")",
        "<red>",
        "<teal>",
        "<<",
        ">>",
        "<<<",
        ">>>",
        "[[x]]",
        "[[",
        "]]",
        "*e*",
        "https://a.example/(x)",
        "你好",
        "\n",
        "\n\n",
        "* ",
        "# ",
        "> ",
        "----",
        "<teal> <<<",
        "&",
        "\"",
        "<",
        "a",
        "b c",
        " ",
        "\t",
        "\u{1b}",
        "\u{9b}",
    ];

    proptest::proptest! {
        #[test]
        fn cut_html_is_well_formed_within_the_limit_and_a_prefix(
            tokens in proptest::collection::vec(proptest::sample::select(TOKENS), 0..60),
            fraction in 0.0f64..1.1,
        ) {
            let text = tokens.concat();
            let whole = render(&text);
            let limit = (whole.len() as f64 * fraction) as usize;
            let rendered = render_within(&text, limit);
            proptest::prop_assert!(rendered.html.len() <= limit);
            proptest::prop_assert_eq!(check_output_allowlist(&rendered.html), Ok(()));
            if rendered.cut.is_none() {
                proptest::prop_assert_eq!(&rendered.html, &whole);
            } else {
                let kept = before_the_cut(&rendered.html);
                proptest::prop_assert!(whole.starts_with(kept), "{:?} is no prefix of {:?}", kept, whole);
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn html_handed_on_in_pieces_is_the_html_kept_whole(
            tokens in proptest::collection::vec(proptest::sample::select(TOKENS), 0..60),
            fraction in 0.0f64..1.1,
            flush_at in 1usize..40,
        ) {
            let text = tokens.concat();
            let limit = (render(&text).len() as f64 * fraction) as usize;
            let whole = render_within(&text, limit);
            let mut pieces = Vec::new();
            let rendered = render_flushing(&text, limit, flush_at, &mut |piece: &str| {
                pieces.push(piece.to_owned());
            });
            proptest::prop_assert!(pieces.iter().all(|piece| !piece.is_empty()));
            pieces.push(rendered.html);
            proptest::prop_assert_eq!(pieces.concat(), whole.html);
            proptest::prop_assert_eq!(rendered.cut, whole.cut);
        }
    }

    #[test]
    fn a_large_document_is_handed_on_in_pieces_of_about_64_kib() {
        // Paragraphs, a colour block that spans them, one line holding a 1.6 MB wikilink, and
        // 300 KB of spaces inside a colour block (held back until the block closes).
        let text = format!(
            "{}\n(<red>{}\n\n[[{}]]\n<blue>x{}y)",
            "Some *prose* with a few words in it, as mail has\n".repeat(20_000),
            "x ".repeat(100_000),
            "é".repeat(200_000),
            " ".repeat(300_000),
        );
        let mut pieces = Vec::new();
        let rendered = render_to(&text, &mut |piece: &str| pieces.push(piece.len()));
        assert_eq!(rendered.cut, None);
        pieces.push(rendered.html.len());
        assert_eq!(pieces.iter().sum::<usize>(), render(&text).len());
        assert!(pieces.len() > 20, "{} pieces", pieces.len());
        let largest = pieces.iter().max().copied().unwrap_or(0);
        assert!(
            largest < 2 * html::FLUSH_AT + 300_000,
            "{largest} bytes at once"
        );
        let mut joined = String::new();
        let rest = render_to(&text, &mut |piece: &str| joined.push_str(piece)).html;
        assert_eq!(joined + &rest, render(&text));
        // A small text's HTML is not handed on at all.
        let mut handed = 0;
        let small = render_to("<red>hello", &mut |_: &str| handed += 1);
        assert_eq!((handed, small.html), (0, render("<red>hello")));
    }

    #[test]
    fn the_limit_is_twice_the_text_and_a_mebibyte() {
        assert_eq!(html_limit(0), 1 << 20);
        assert_eq!(html_limit(10 << 20), (20 << 20) + (1 << 20));
        assert_eq!(html_limit(usize::MAX), usize::MAX);
    }

    #[test]
    fn html_past_the_limit_is_cut_and_says_so() {
        // 2 MB of wikilinks would render to 28 MB.
        let text = "[[a]]\n".repeat(300_000);
        let rendered = render_checked(&text);
        let limit = html_limit(text.len());
        assert_eq!(
            rendered.cut,
            Some(Cut {
                text_len: text.len(),
                limit
            })
        );
        // Short of the limit by less than the closing reserve and one piece.
        assert!(rendered.html.len() <= limit && rendered.html.len() > limit - 300);
        assert!(rendered.html.ends_with("</p>"));
        assert_eq!(check_output_allowlist(&rendered.html), Ok(()));
        // 100 KB of dense markup (seven times itself), or 10 MB of prose, are not.
        let dense = "<red>Hello (<blue>world) [[a]] https://x.example\n".repeat(2_000);
        assert!(render(&dense).len() > 6 * dense.len());
        assert_eq!(render_checked(&dense).cut, None);
        let prose =
            "A line of ordinary prose, hard-wrapped the way mail is, with *a* (<red>tag).\n\
                     And a second line to make a paragraph of it, then a blank line.\n\n"
                .repeat(70_000);
        assert_eq!(render_checked(&prose).cut, None);
    }

    #[test]
    fn terminal_escapes_are_dropped_everywhere() {
        // OSC 52 (set the clipboard), ended by BEL, and CSI in its C1 form, U+009B.
        let osc = "\u{1b}]52;c;ZWNobyBwd25lZA==\u{7}";
        let csi = "\u{9b}2J";
        let table = [
            (
                format!("a{osc}b{csi}"),
                "<p>a]52;c;ZWNobyBwd25lZA==b2J</p>".to_owned(),
            ),
            (
                format!("<<{osc}>> *{csi}*"),
                "<p><span class=\"literal-text\">]52;c;ZWNobyBwd25lZA==</span> <em>2J</em></p>"
                    .to_owned(),
            ),
            (
                format!("[[x{csi}]]"),
                "<p><a href=\"https://en.wikipedia.org/wiki/x%C2%9B2J\" class=\"wikilink\" \
                 target=\"_blank\" rel=\"noopener noreferrer\">x2J</a></p>"
                    .to_owned(),
            ),
            (
                format!("<red>{osc}\tred"),
                "<p><span class=\"colorblock color-red\"><span class=\"sigil\">💡</span>\
                 <span class=\"colortext-content\">]52;c;ZWNobyBwd25lZA==\tred</span></span></p>"
                    .to_owned(),
            ),
        ];
        for (input, expected) in table {
            let out = render(&input);
            assert_eq!(out, expected, "input {input:?}");
            assert_eq!(check_output_allowlist(&out), Ok(()));
        }
    }

    #[test]
    fn nul_becomes_replacement_character_everywhere() {
        let table = [
            ("a\0b", "<p>a\u{FFFD}b</p>"),
            (
                "<<\0>>",
                "<p><span class=\"literal-text\">\u{FFFD}</span></p>",
            ),
            ("*\0*", "<p><em>\u{FFFD}</em></p>"),
            (
                "[[\0]]",
                "<p><a href=\"https://en.wikipedia.org/wiki/%EF%BF%BD\" class=\"wikilink\" \
                 target=\"_blank\" rel=\"noopener noreferrer\">\u{FFFD}</a></p>",
            ),
        ];
        for (input, expected) in table {
            assert_eq!(render(input), expected, "input {input:?}");
        }
    }
}
