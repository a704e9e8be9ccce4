//! HTML to plain text, for messages whose body has no text/plain part.
//!
//! Not a browser: tags are dropped, character references decoded, runs of white space
//! collapsed, and block elements become line and paragraph breaks, shaped so that the result
//! reads well as Atacama markup: a blank line between paragraphs, `* ` and `# ` list items,
//! `----` for `<hr>`. A link whose text does not already show its http(s) address is followed
//! by ` (address)`, so the address survives. Time and memory are linear in the input.

use std::borrow::Cow;

use memchr::{memchr, memmem};

/// Converts an HTML document or fragment to plain text with LF line breaks.
pub(crate) fn html_to_text(html: &str) -> String {
    let mut writer = Writer::default();
    let mut rest = html;
    while let Some(lt) = memchr(b'<', rest.as_bytes()) {
        // Invariant: `lt` is the index of an ASCII byte, hence a char boundary.
        let Some((text, markup)) = rest.split_at_checked(lt) else {
            break;
        };
        writer.text(text);
        rest = writer.markup(markup);
    }
    writer.text(rest);
    writer.finish()
}

/// Elements whose content is not text to show; it is skipped up to the matching end tag.
const SKIPPED: [&str; 4] = ["script", "style", "title", "template"];

/// What an element does to the text around it.
enum Kind {
    /// A blank line before and after (`p`, headings, tables…).
    Paragraph,
    /// Starts and ends on its own line (`div`, `tr`…).
    Line,
    Break,
    Rule,
    Pre,
    List(&'static str),
    Item,
    Cell,
    Link,
    Inline,
}

fn kind(name: &str) -> Kind {
    match name {
        "p" | "h1" | "h2" | "h3" | "h4" | "h5" | "h6" | "blockquote" | "table" | "dl"
        | "address" | "figure" | "fieldset" | "form" => Kind::Paragraph,
        "div" | "tr" | "dt" | "dd" | "caption" | "center" | "section" | "article" | "header"
        | "footer" | "nav" | "aside" | "main" | "details" | "summary" | "figcaption" => Kind::Line,
        "br" => Kind::Break,
        "hr" => Kind::Rule,
        "pre" => Kind::Pre,
        // The Atacama markup list markers: bullet and number items.
        "ul" => Kind::List("* "),
        "ol" => Kind::List("# "),
        "li" => Kind::Item,
        "td" | "th" => Kind::Cell,
        "a" => Kind::Link,
        _ => Kind::Inline,
    }
}

/// Accumulates the text; breaks and spaces are owed and only written before the next word, so
/// that none pile up at the edges or around empty elements.
#[derive(Default)]
struct Writer {
    out: String,
    /// White space was seen since the last word.
    space: bool,
    /// Line breaks owed before the next word: 1 starts a line, 2 leaves a blank line.
    breaks: usize,
    /// Depth of `<pre>`: inside, text is copied as it is.
    pre: usize,
    /// The marker of each open list, innermost last.
    lists: Vec<&'static str>,
    /// A list item started: its marker is owed before its first word.
    marker: Option<&'static str>,
    /// The open link: its http(s) address and where its text starts in `out`.
    link: Option<(String, usize)>,
}

impl Writer {
    /// Handles the markup at the start of `s` (which starts with `<`); returns what follows it.
    fn markup<'a>(&mut self, s: &'a str) -> &'a str {
        let after = s.get(1..).unwrap_or("");
        if let Some(comment) = after.strip_prefix("!--") {
            return skip_past(comment, "-->");
        }
        if after.starts_with(['!', '?']) {
            return skip_past(after, ">"); // doctype, CDATA, processing instruction
        }
        let (closing, name_on) = match after.strip_prefix('/') {
            Some(name_on) => (true, name_on),
            None => (false, after),
        };
        if !name_on.starts_with(|c: char| c.is_ascii_alphabetic()) {
            self.text("<"); // a lone `<` is text, as in browsers
            return after;
        }
        let name_len = name_on
            .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, ':' | '-' | '_')))
            .unwrap_or(name_on.len());
        let (name, attributes_on) = name_on.split_at_checked(name_len).unwrap_or((name_on, ""));
        let (attributes, rest) = split_tag_end(attributes_on);
        let name = name.to_ascii_lowercase();
        if closing {
            self.end_tag(&name);
            rest
        } else if SKIPPED.contains(&name.as_str()) {
            skip_element(rest, &name)
        } else {
            self.start_tag(&name, attributes);
            rest
        }
    }

    fn start_tag(&mut self, name: &str, attributes: &str) {
        match kind(name) {
            Kind::Paragraph => self.block(2),
            Kind::Line => self.block(1),
            Kind::Break => self.line_break(),
            Kind::Rule => {
                self.block(2);
                self.word("----");
                self.block(2);
            }
            Kind::Pre => {
                self.block(2);
                self.pre += 1;
            }
            Kind::List(marker) => {
                self.block(2); // inside a list, only a new line: Atacama markup has no nesting
                self.lists.push(marker);
            }
            Kind::Item => {
                self.block(1);
                self.marker = Some(self.lists.last().copied().unwrap_or("* "));
            }
            Kind::Cell => self.space = true,
            Kind::Link => {
                self.end_link(); // links do not nest: a new one closes the last
                self.link = attribute(attributes, "href")
                    .map(|href| decode_entities(href).trim().to_owned())
                    .filter(|href| is_web_address(href))
                    .map(|href| (href, self.out.len()));
            }
            Kind::Inline => {}
        }
    }

    fn end_tag(&mut self, name: &str) {
        match kind(name) {
            Kind::Paragraph => self.block(2),
            Kind::Line | Kind::Item => self.block(1),
            Kind::Break => self.line_break(), // `</br>` is a `<br>` in browsers
            Kind::Pre => {
                self.pre = self.pre.saturating_sub(1);
                self.block(2);
            }
            Kind::List(_) => {
                self.lists.pop();
                self.block(2);
            }
            Kind::Cell => self.space = true,
            Kind::Link => self.end_link(),
            Kind::Rule | Kind::Inline => {}
        }
    }

    /// Writes the text between two tags.
    fn text(&mut self, raw: &str) {
        if raw.is_empty() {
            return;
        }
        let text = decode_entities(raw);
        if self.pre > 0 {
            self.flush();
            self.out.push_str(&text.replace("\r\n", "\n"));
            return;
        }
        let mut words = text.split(is_html_space);
        if let Some(first) = words.next() {
            self.word(first);
        }
        for word in words {
            self.space = true;
            self.word(word);
        }
    }

    fn word(&mut self, word: &str) {
        if word.is_empty() {
            return;
        }
        self.flush();
        if self.space && !self.out.is_empty() && !self.out.ends_with('\n') {
            self.out.push(' ');
        }
        self.space = false;
        self.out.push_str(word);
    }

    /// Writes the breaks and the list marker owed before a word.
    fn flush(&mut self) {
        if self.breaks > 0 {
            if !self.out.is_empty() {
                for _ in self.trailing_newlines()..self.breaks {
                    self.out.push('\n');
                }
            }
            self.breaks = 0;
            self.space = false;
        }
        if let Some(marker) = self.marker.take() {
            self.out.push_str(marker);
            self.space = false;
        }
    }

    fn block(&mut self, breaks: usize) {
        // A blank line inside a list would split it in two in Atacama markup.
        let breaks = if self.lists.is_empty() { breaks } else { 1 };
        self.breaks = self.breaks.max(breaks);
    }

    /// `<br>`: ends the line now, so that two of them leave a blank line.
    fn line_break(&mut self) {
        let marker = self.marker.take(); // an item's marker waits for the item's text
        self.flush();
        self.marker = marker;
        // At most one blank line: more would mean nothing more to a reader or to the markup.
        if !self.out.is_empty() && self.trailing_newlines() < 2 {
            self.out.push('\n');
        }
        self.space = false;
    }

    fn end_link(&mut self) {
        let Some((href, start)) = self.link.take() else {
            return;
        };
        let shown = self.out.get(start..).unwrap_or("").trim();
        let address = strip_scheme(&href).trim_end_matches('/');
        if !shown.is_empty() && !shown.contains(address) {
            self.space = true;
            self.word(&format!("({href})"));
        }
    }

    fn trailing_newlines(&self) -> usize {
        self.out.bytes().rev().take_while(|&b| b == b'\n').count()
    }

    fn finish(self) -> String {
        self.out.trim_end().trim_start_matches('\n').to_owned()
    }
}

/// HTML's white space, plus NBSP: in mail it is layout padding, not content.
fn is_html_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0c' | '\u{a0}')
}

fn is_web_address(href: &str) -> bool {
    let lower = href.get(..8).unwrap_or(href).to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
}

fn strip_scheme(href: &str) -> &str {
    href.split_once("://").map_or(href, |(_, rest)| rest)
}

/// Returns what follows the first `end` in `s`, or nothing if it never comes.
fn skip_past<'a>(s: &'a str, end: &str) -> &'a str {
    match memmem::find(s.as_bytes(), end.as_bytes()) {
        Some(at) => s.get(at + end.len()..).unwrap_or(""),
        None => "",
    }
}

/// Splits what follows a tag name into its attributes and what follows the tag's `>`.
///
/// A `>` inside a quoted attribute value does not end the tag; a quote only opens a value
/// right after `=`, as in HTML, so that a stray `'` cannot swallow the rest of the document.
fn split_tag_end(s: &str) -> (&str, &str) {
    let mut quote = None;
    let mut after_equals = false;
    for (i, b) in s.bytes().enumerate() {
        match quote {
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None => match b {
                b'>' => {
                    // Invariant: `i` is the index of an ASCII byte, hence a char boundary.
                    return (s.get(..i).unwrap_or(s), s.get(i + 1..).unwrap_or(""));
                }
                b'"' | b'\'' if after_equals => quote = Some(b),
                b'=' => after_equals = true,
                b' ' | b'\t' | b'\n' | b'\r' | b'\x0c' => {}
                _ => after_equals = false,
            },
        }
    }
    (s, "") // a tag cut off by the end of the document is dropped
}

/// Skips the content of a raw-text element such as `<style>`, up to and past its end tag.
fn skip_element<'a>(s: &'a str, name: &str) -> &'a str {
    let bytes = s.as_bytes();
    let mut from = 0;
    while let Some(found) = bytes.get(from..).and_then(|b| memmem::find(b, b"</")) {
        let at = from + found;
        let candidate = bytes.get(at + 2..at + 2 + name.len());
        if candidate.is_some_and(|c| c.eq_ignore_ascii_case(name.as_bytes())) {
            let end = bytes.get(at..).and_then(|b| memchr(b'>', b));
            return end.and_then(|end| s.get(at + end + 1..)).unwrap_or("");
        }
        from = at + 2;
    }
    "" // unclosed: like a browser, everything after is the element's content
}

/// Finds the value of one attribute in the text between a tag name and its `>`.
fn attribute<'a>(attributes: &'a str, wanted: &str) -> Option<&'a str> {
    let mut rest = attributes;
    loop {
        rest = rest.trim_start_matches(|c: char| c.is_ascii_whitespace() || c == '/');
        if rest.is_empty() {
            return None;
        }
        let name_len = rest
            .find(|c: char| c.is_ascii_whitespace() || matches!(c, '=' | '/'))
            .unwrap_or(rest.len());
        let (name, after_name) = rest.split_at_checked(name_len)?;
        let after_name = after_name.trim_start();
        let (value, after_value) = match after_name.strip_prefix('=') {
            Some(value_on) => split_value(value_on.trim_start()),
            None => ("", after_name),
        };
        if name.eq_ignore_ascii_case(wanted) {
            return Some(value);
        }
        rest = after_value;
    }
}

/// Splits an attribute value (quoted or not) from what follows it.
fn split_value(s: &str) -> (&str, &str) {
    for quote in ['"', '\''] {
        if let Some(quoted) = s.strip_prefix(quote) {
            return quoted.split_once(quote).unwrap_or((quoted, ""));
        }
    }
    let end = s.find(|c: char| c.is_ascii_whitespace()).unwrap_or(s.len());
    s.split_at_checked(end).unwrap_or((s, ""))
}

/// Decodes character references (`&amp;`, `&#233;`, `&#xE9;`); anything else is left as is.
fn decode_entities(s: &str) -> Cow<'_, str> {
    if !s.contains('&') {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        let (before, reference) = rest.split_at_checked(amp).unwrap_or((rest, ""));
        out.push_str(before);
        let after_amp = reference.get(1..).unwrap_or("");
        // The longest HTML entity name has 31 characters.
        let len = after_amp
            .bytes()
            .take(32)
            .take_while(|b| b.is_ascii_alphanumeric() || *b == b'#')
            .count();
        let (name, tail) = after_amp.split_at_checked(len).unwrap_or((after_amp, ""));
        match tail.strip_prefix(';') {
            Some(tail) if !name.is_empty() => {
                match name.strip_prefix('#') {
                    Some(number) => push_numeric_reference(&mut out, number, reference),
                    // Invariant: `reference` starts with `&name;`, all ASCII.
                    None => mail_parser::decoders::html::add_html_token(
                        &mut out,
                        reference.as_bytes().get(..len + 2).unwrap_or_default(),
                        false,
                    ),
                }
                rest = tail;
            }
            _ => {
                out.push('&');
                rest = after_amp;
            }
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// Decodes `&#NNN;` or `&#xHHH;`; a number that is no character gives U+FFFD, as in HTML.
fn push_numeric_reference(out: &mut String, number: &str, reference: &str) {
    let (digits, radix) = match number.strip_prefix(['x', 'X']) {
        Some(hex) => (hex, 16),
        None => (number, 10),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        // Not a reference after all: keep it as typed, `&` to `;`.
        out.push_str(reference.get(..number.len() + 3).unwrap_or(reference));
        return;
    }
    let c = u32::from_str_radix(digits, radix)
        .ok()
        .filter(|&n| n != 0)
        .and_then(char::from_u32)
        .unwrap_or(char::REPLACEMENT_CHARACTER);
    out.push(c);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_html_to_text() {
        let cases: &[(&str, &str)] = &[
            ("", ""),
            ("plain", "plain"),
            ("<p>One</p><p>Two</p>", "One\n\nTwo"),
            ("<p>One<br>two<br/>three</p>", "One\ntwo\nthree"),
            ("a<br><br><br><br>b", "a\n\nb"),
            ("<div>a</div><div>b</div>", "a\nb"),
            // Gmail's shape: a blank line is a div holding only a br.
            (
                "<div>Hi,</div><div><br></div><div>Text</div>",
                "Hi,\n\nText",
            ),
            ("<div>Line<br></div><div>Next</div>", "Line\nNext"),
            ("  lots \n of\t\r\n  space  ", "lots of space"),
            ("a&nbsp;&nbsp; b", "a b"),
            ("<b>bold</b><i>it</i> x", "boldit x"),
            (
                "&lt;b&gt; &amp;amp; &quot;q&quot; &eacute; &rsquo;",
                "<b> &amp; \"q\" é ’",
            ),
            (
                "&#233;&#xE9;&#XE9; &#0; &#x110000; &#99999999999;",
                "ééé \u{fffd} \u{fffd} \u{fffd}",
            ),
            (
                "&#; &#x; &#xZZ; &bogus; & a &amp",
                "&#; &#x; &#xZZ; &bogus; & a &amp",
            ),
            ("<h1>Title</h1>Body", "Title\n\nBody"),
            (
                "<ul><li>one</li><li>two</li></ul>after",
                "* one\n* two\n\nafter",
            ),
            ("<ol><li><p>one</p></li><li>two</ol>", "# one\n# two"),
            ("<ul><li>a<ul><li>b</li></ul></li></ul>", "* a\n* b"),
            (
                "<table><tr><td>a</td><td>b</td></tr><tr><td>c</td></tr></table>",
                "a b\nc",
            ),
            ("above<hr>below", "above\n\n----\n\nbelow"),
            (
                "<pre>  keep\r\n    this </pre>after",
                "  keep\n    this \n\nafter",
            ),
            (
                "<head><title>T</title><style>p {color: red}</style></head><p>x</p>",
                "x",
            ),
            ("<script>if (a < b) { x = '</div>'; }</script>ok", "ok"),
            ("<STYLE>p{}</Style >ok", "ok"),
            ("<style>never closed", ""),
            ("a<!-- <p>hidden</p> -->b", "ab"),
            ("<!--[if mso]><xml>x</xml><![endif]-->ok", "ok"),
            ("<!DOCTYPE html><html><body>x</body></html>", "x"),
            ("<?xml version=\"1.0\"?>x", "x"),
            ("1 < 2 and 3 <4", "1 < 2 and 3 <4"),
            ("a <p class='x>y'>b</p>", "a\n\nb"),
            ("<p title=don't>x</p>", "x"),
            ("cut <p class=\"x", "cut"),
            (
                "<a href=\"https://example.com/x?a=1&amp;b=2\">Read</a> on",
                "Read (https://example.com/x?a=1&b=2) on",
            ),
            (
                "<a href=https://example.com/>https://example.com</a>",
                "https://example.com",
            ),
            (
                "<a href='HTTP://example.com'>example.com</a>",
                "example.com",
            ),
            ("<a href=\"mailto:a@b.test\">write</a>", "write"),
            ("<a href=\"https://x.test\"><img src=\"b.png\"></a>", ""),
            (
                "<a href=\"https://x.test\">one<a href=\"https://y.test\">two</a>",
                "one (https://x.test)two (https://y.test)",
            ),
            (
                "<A HREF = \"https://x.test\" >Go</A>",
                "Go (https://x.test)",
            ),
            ("<p>é</p><p>日本語</p>", "é\n\n日本語"),
        ];
        for (html, text) in cases {
            assert_eq!(html_to_text(html), *text, "for {html:?}");
        }
    }

    #[test]
    fn finds_attributes() {
        let cases: &[(&str, Option<&str>)] = &[
            (" href=\"a\"", Some("a")),
            (" class=x href='b c' id=y", Some("b c")),
            (" data-href=x href=y", Some("y")),
            (" disabled href", Some("")),
            (" HREF=z/", Some("z/")),
            (" class=\"unterminated", None),
            ("", None),
        ];
        for (attributes, value) in cases {
            assert_eq!(attribute(attributes, "href"), *value, "for {attributes:?}");
        }
    }

    #[test]
    fn no_prefix_leaks_markup() {
        // A message cut anywhere in its markup still converts, and no piece of a tag, comment
        // or style shows: the visible text here has no `<`, `>`, `=`, `c` or `l`.
        let html = "<p class='a>b'>x &amp; <a href=https://e.test>y</a><!-- c --><style>s</style>";
        for end in 0..=html.len() {
            let text = html_to_text(html.get(..end).unwrap_or_default());
            // A `<` or `</` that ends the input is text, as in HTML.
            let shown = text.strip_suffix("</").or_else(|| text.strip_suffix('<'));
            let shown = shown.unwrap_or(&text);
            assert!(
                !shown.contains(['<', '>', '=', 'c', 'l']),
                "{text:?} for {end}"
            );
        }
        assert_eq!(html_to_text(html), "x & y (https://e.test)");
    }
}
