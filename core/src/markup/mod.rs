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

mod allowlist;
mod block;
mod colour;
mod html;
mod inline;
mod scan;

pub use allowlist::check_output_allowlist;

/// Renders Atacama markup to a safe HTML fragment, with no leading or trailing newline.
pub fn render(text: &str) -> String {
    block::render_document(text)
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
