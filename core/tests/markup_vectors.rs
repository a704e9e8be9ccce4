//! The public test vectors of the markup spec (§11), each as its own test.
//!
//! `VECTORS` is the spec's JSON array copied verbatim, so the file can be diffed against
//! the spec; a small JSON reader below decodes it (core has no JSON dev-dependency).

use atacama_core::markup::{check_output_allowlist, render};

/// Spec §11, verbatim.
const VECTORS: &str = r##"[
  {
    "name": "empty_input",
    "input": "",
    "expected_html": ""
  },
  {
    "name": "plain_paragraph",
    "input": "Hello, world!",
    "expected_html": "<p>Hello, world!</p>"
  },
  {
    "name": "line_break_within_paragraph",
    "input": "Line one\nLine two",
    "expected_html": "<p>Line one<br />Line two</p>"
  },
  {
    "name": "blank_lines_separate_paragraphs",
    "input": "First paragraph\n\n\nSecond paragraph",
    "expected_html": "<p>First paragraph</p>\n<p>Second paragraph</p>"
  },
  {
    "name": "crlf_and_trimming",
    "input": "  Hello  \r\n\r\nWorld\t\r\n",
    "expected_html": "<p>Hello</p>\n<p>World</p>"
  },
  {
    "name": "section_break",
    "input": "Section 1\n----\nSection 2",
    "expected_html": "<p>Section 1</p>\n<hr class=\"section-break\" />\n<p>Section 2</p>"
  },
  {
    "name": "section_break_variants",
    "input": "a\n  ----  \n-----\n--- -",
    "expected_html": "<p>a</p>\n<hr class=\"section-break\" />\n<p>-----<br />--- -</p>"
  },
  {
    "name": "escaping_text",
    "input": "<b>bold</b> & \"quotes\" 'single'",
    "expected_html": "<p>&lt;b&gt;bold&lt;/b&gt; &amp; &quot;quotes&quot; 'single'</p>"
  },
  {
    "name": "script_is_text",
    "input": "<script>alert(\"x\")</script>",
    "expected_html": "<p>&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;</p>"
  },
  {
    "name": "line_color_tag",
    "input": "<red>Important warning",
    "expected_html": "<p><span class=\"colorblock color-red\"><span class=\"sigil\">💡</span><span class=\"colortext-content\">Important warning</span></span></p>"
  },
  {
    "name": "color_run_ends_at_line_end",
    "input": "Intro <blue>mystic words\nnext line",
    "expected_html": "<p>Intro <span class=\"colorblock color-blue\"><span class=\"sigil\">✨</span><span class=\"colortext-content\">mystic words</span></span><br />next line</p>"
  },
  {
    "name": "paren_color_section",
    "input": "A note (<red>important) here",
    "expected_html": "<p>A note <span class=\"colorblock color-red\"><span class=\"sigil\">💡</span><span class=\"colortext-content\">important</span></span> here</p>"
  },
  {
    "name": "balanced_parens_inside_section",
    "input": "(<green>uses f(x) and (y)) done",
    "expected_html": "<p><span class=\"colorblock color-green\"><span class=\"sigil\">⚙\ufe0f</span><span class=\"colortext-content\">uses f(x) and (y)</span></span> done</p>"
  },
  {
    "name": "nested_sections_in_run",
    "input": "<red>Alert: (<blue>critical (<gray>old) update) required",
    "expected_html": "<p><span class=\"colorblock color-red\"><span class=\"sigil\">💡</span><span class=\"colortext-content\">Alert: <span class=\"colorblock color-blue\"><span class=\"sigil\">✨</span><span class=\"colortext-content\">critical <span class=\"colorblock color-gray\"><span class=\"sigil\">💭</span><span class=\"colortext-content\">old</span></span> update</span></span> required</span></span></p>"
  },
  {
    "name": "unclosed_paren_section",
    "input": "(<red>unclosed note",
    "expected_html": "<p>(&lt;red&gt;unclosed note</p>"
  },
  {
    "name": "unknown_and_uppercase_tags",
    "input": "<foo>bar <RED>baz</red>",
    "expected_html": "<p>&lt;foo&gt;bar &lt;RED&gt;baz&lt;/red&gt;</p>"
  },
  {
    "name": "bullet_list",
    "input": "* First item\n* Second item",
    "expected_html": "<ul>\n<li class=\"bullet-list\">First item</li>\n<li class=\"bullet-list\">Second item</li>\n</ul>"
  },
  {
    "name": "list_marker_grouping",
    "input": "* a\n# b\n# c\n> d",
    "expected_html": "<ul>\n<li class=\"bullet-list\">a</li>\n</ul>\n<ul>\n<li class=\"number-list\">b</li>\n<li class=\"number-list\">c</li>\n</ul>\n<ul>\n<li class=\"arrow-list\">d</li>\n</ul>"
  },
  {
    "name": "list_boundaries",
    "input": "Intro\n* one\n* two\n\n* three\nOutro",
    "expected_html": "<p>Intro</p>\n<ul>\n<li class=\"bullet-list\">one</li>\n<li class=\"bullet-list\">two</li>\n</ul>\n<ul>\n<li class=\"bullet-list\">three</li>\n</ul>\n<p>Outro</p>"
  },
  {
    "name": "color_in_list_item",
    "input": "* <red>hot take (<xantham>obviously)",
    "expected_html": "<ul>\n<li class=\"bullet-list\"><span class=\"colorblock color-red\"><span class=\"sigil\">💡</span><span class=\"colortext-content\">hot take <span class=\"colorblock color-xantham\"><span class=\"sigil\">🔥</span><span class=\"colortext-content\">obviously</span></span></span></span></li>\n</ul>"
  },
  {
    "name": "quote_block",
    "input": "Before\n<<<\nFirst quoted line\nstill first\n\nSecond paragraph\n>>>\nAfter",
    "expected_html": "<p>Before</p>\n<div class=\"mlq\"><button type=\"button\" class=\"mlq-collapse\" aria-label=\"Toggle visibility\"><span class=\"mlq-collapse-icon\">-</span></button><div class=\"mlq-content\"><p>First quoted line<br />still first</p>\n<p>Second paragraph</p></div></div>\n<p>After</p>"
  },
  {
    "name": "colored_quote_inline_delimiters",
    "input": "<teal> <<< Generated text\nmore >>>",
    "expected_html": "<div class=\"mlq color-teal\"><button type=\"button\" class=\"mlq-collapse\" aria-label=\"Toggle visibility\"><span class=\"mlq-collapse-icon\">🤖</span></button><div class=\"mlq-content\"><p>Generated text<br />more</p></div></div>"
  },
  {
    "name": "unclosed_quote_is_text",
    "input": "<<<\nnot closed",
    "expected_html": "<p>&lt;&lt;&lt;<br />not closed</p>"
  },
  {
    "name": "url_trailing_punctuation",
    "input": "Visit https://example.com/path?q=1&r=2.",
    "expected_html": "<p>Visit <a href=\"https://example.com/path?q=1&amp;r=2\" target=\"_blank\" rel=\"noopener noreferrer\">https://example.com/path?q=1&amp;r=2</a>.</p>"
  },
  {
    "name": "url_balanced_parens_in_section",
    "input": "(<green>see https://en.wikipedia.org/wiki/Rust_(programming_language))",
    "expected_html": "<p><span class=\"colorblock color-green\"><span class=\"sigil\">⚙\ufe0f</span><span class=\"colortext-content\">see <a href=\"https://en.wikipedia.org/wiki/Rust_(programming_language)\" target=\"_blank\" rel=\"noopener noreferrer\">https://en.wikipedia.org/wiki/Rust_(programming_language)</a></span></span></p>"
  },
  {
    "name": "wikilink",
    "input": "See [[Article Name]] for details",
    "expected_html": "<p>See <a href=\"https://en.wikipedia.org/wiki/Article_Name\" class=\"wikilink\" target=\"_blank\" rel=\"noopener noreferrer\">Article Name</a> for details</p>"
  },
  {
    "name": "wikilink_encoding",
    "input": "[[AT&T \"Labs\"]]",
    "expected_html": "<p><a href=\"https://en.wikipedia.org/wiki/AT%26T_%22Labs%22\" class=\"wikilink\" target=\"_blank\" rel=\"noopener noreferrer\">AT&amp;T &quot;Labs&quot;</a></p>"
  },
  {
    "name": "chinese_run",
    "input": "Hello 你好 World",
    "expected_html": "<p>Hello <span class=\"annotated-chinese\">你好</span> World</p>"
  },
  {
    "name": "literal_text",
    "input": "Code: <<print('<b>hi</b>') [[x]]>>",
    "expected_html": "<p>Code: <span class=\"literal-text\">print('&lt;b&gt;hi&lt;/b&gt;') [[x]]</span></p>"
  },
  {
    "name": "emphasis",
    "input": "This is *emphasized* text, 2*3=6",
    "expected_html": "<p>This is <em>emphasized</em> text, 2*3=6</p>"
  },
  {
    "name": "color_aliases",
    "input": "<music>la la (<acronym>TLA)",
    "expected_html": "<p><span class=\"colorblock color-musicnote\"><span class=\"sigil\">🎵</span><span class=\"colortext-content\">la la <span class=\"colorblock color-green\"><span class=\"sigil\">⚙\ufe0f</span><span class=\"colortext-content\">TLA</span></span></span></span></p>"
  },
  {
    "name": "emoji_passthrough",
    "input": "💡 not a tag 🎉",
    "expected_html": "<p>💡 not a tag 🎉</p>"
  },
  {
    "name": "nesting_limit_sections",
    "input": "(<red>(<red>(<red>(<red>(<red>(<red>(<red>(<red>(<red>x)))))))))",
    "expected_html": "<p><span class=\"colorblock color-red\"><span class=\"sigil\">💡</span><span class=\"colortext-content\"><span class=\"colorblock color-red\"><span class=\"sigil\">💡</span><span class=\"colortext-content\"><span class=\"colorblock color-red\"><span class=\"sigil\">💡</span><span class=\"colortext-content\"><span class=\"colorblock color-red\"><span class=\"sigil\">💡</span><span class=\"colortext-content\"><span class=\"colorblock color-red\"><span class=\"sigil\">💡</span><span class=\"colortext-content\"><span class=\"colorblock color-red\"><span class=\"sigil\">💡</span><span class=\"colortext-content\"><span class=\"colorblock color-red\"><span class=\"sigil\">💡</span><span class=\"colortext-content\"><span class=\"colorblock color-red\"><span class=\"sigil\">💡</span><span class=\"colortext-content\">(&lt;red&gt;x)</span></span></span></span></span></span></span></span></span></span></span></span></span></span></span></span></p>"
  }
]"##;

struct Vector {
    name: String,
    input: String,
    expected_html: String,
}

fn vectors() -> Vec<Vector> {
    let mut reader = Json {
        rest: VECTORS.trim(),
    };
    let mut vectors = Vec::new();
    reader.expect('[');
    loop {
        reader.expect('{');
        let mut fields = Vec::new();
        loop {
            let key = reader.string();
            reader.expect(':');
            fields.push((key, reader.string()));
            if !reader.next_is(',') {
                break;
            }
        }
        reader.expect('}');
        let field = |name: &str| {
            let found = fields.iter().find(|(key, _)| key == name);
            found
                .map(|(_, value)| value.clone())
                .unwrap_or_else(|| panic!("no {name}"))
        };
        vectors.push(Vector {
            name: field("name"),
            input: field("input"),
            expected_html: field("expected_html"),
        });
        if !reader.next_is(',') {
            break;
        }
    }
    reader.expect(']');
    assert!(
        reader.rest.trim().is_empty(),
        "trailing JSON: {:?}",
        reader.rest
    );
    vectors
}

/// Just enough JSON for an array of objects with string values.
struct Json<'a> {
    rest: &'a str,
}

impl Json<'_> {
    fn skip_space(&mut self) {
        self.rest = self.rest.trim_start();
    }

    fn next_is(&mut self, c: char) -> bool {
        self.skip_space();
        match self.rest.strip_prefix(c) {
            Some(rest) => {
                self.rest = rest;
                true
            }
            None => false,
        }
    }

    fn expect(&mut self, c: char) {
        let context: String = self.rest.chars().take(20).collect();
        assert!(self.next_is(c), "expected {c:?} at {context:?}");
    }

    fn string(&mut self) -> String {
        self.expect('"');
        let mut out = String::new();
        let mut chars = self.rest.chars();
        loop {
            match chars.next().expect("unterminated string") {
                '"' => break,
                '\\' => match chars.next().expect("dangling escape") {
                    'n' => out.push('\n'),
                    'r' => out.push('\r'),
                    't' => out.push('\t'),
                    'b' => out.push('\u{8}'),
                    'f' => out.push('\u{c}'),
                    'u' => {
                        let first = hex4(&mut chars);
                        let code = if (0xD800..0xDC00).contains(&first) {
                            assert_eq!(chars.next(), Some('\\'));
                            assert_eq!(chars.next(), Some('u'));
                            0x10000 + ((first - 0xD800) << 10) + (hex4(&mut chars) - 0xDC00)
                        } else {
                            first
                        };
                        out.push(char::from_u32(code).expect("bad code point"));
                    }
                    other => out.push(other),
                },
                c => out.push(c),
            }
        }
        self.rest = chars.as_str();
        out
    }
}

/// The four hex digits of a `\\u` escape.
fn hex4(chars: &mut std::str::Chars<'_>) -> u32 {
    let hex: String = chars.take(4).collect();
    u32::from_str_radix(&hex, 16).expect("bad \\u escape")
}

fn check(name: &str) {
    let all = vectors();
    let vector = all
        .iter()
        .find(|v| v.name == name)
        .expect("vector in the spec");
    assert_eq!(render(&vector.input), vector.expected_html, "vector {name}");
}

macro_rules! vector_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                check(stringify!($name));
            }
        )*

        #[test]
        fn every_spec_vector_has_a_test() {
            let tested = [$(stringify!($name)),*];
            let names: Vec<String> = vectors().into_iter().map(|v| v.name).collect();
            assert_eq!(names, tested);
        }
    };
}

vector_tests!(
    empty_input,
    plain_paragraph,
    line_break_within_paragraph,
    blank_lines_separate_paragraphs,
    crlf_and_trimming,
    section_break,
    section_break_variants,
    escaping_text,
    script_is_text,
    line_color_tag,
    color_run_ends_at_line_end,
    paren_color_section,
    balanced_parens_inside_section,
    nested_sections_in_run,
    unclosed_paren_section,
    unknown_and_uppercase_tags,
    bullet_list,
    list_marker_grouping,
    list_boundaries,
    color_in_list_item,
    quote_block,
    colored_quote_inline_delimiters,
    unclosed_quote_is_text,
    url_trailing_punctuation,
    url_balanced_parens_in_section,
    wikilink,
    wikilink_encoding,
    chinese_run,
    literal_text,
    emphasis,
    color_aliases,
    emoji_passthrough,
    nesting_limit_sections,
);

#[test]
fn every_expected_output_passes_the_allowlist() {
    for vector in vectors() {
        assert_eq!(
            check_output_allowlist(&vector.expected_html),
            Ok(()),
            "{}",
            vector.name
        );
    }
}

#[test]
fn json_reader_decodes_escapes() {
    let mut reader = Json {
        rest: r#""a\"b\\c\nd\u00e9\ufe0f\ud83d\udca1""#,
    };
    assert_eq!(reader.string(), "a\"b\\c\nd\u{e9}\u{fe0f}\u{1f4a1}");
}
