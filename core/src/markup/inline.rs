//! Rendering one inline container, a paragraph or a list item (spec §4.5, §4.9).
//!
//! Parentheses are matched in one pass with a stack, then the atoms are rendered with an
//! explicit frame stack: nothing recurses per nesting level, so 1 MB of `(<red>` costs
//! heap, not call stack.

use super::colour::Colour;
use super::html;
use super::scan::{Atom, scan_line};

/// At most this many colour blocks may enclose any point (§4.7).
const MAX_DEPTH: usize = 8;

/// Renders inline containers; holds scratch buffers reused from one container to the next.
#[derive(Default)]
pub(crate) struct Inline<'a> {
    atoms: Vec<Atom<'a>>,
    unmatched_opens: Vec<usize>,
    frames: Vec<Frame>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum FrameKind {
    /// A coloured section `(<color>…)`.
    Section,
    /// A matched plain pair, or a section refused by the depth limit.
    Paren,
    /// A colour run started by a bare tag.
    Run,
}

#[derive(Clone, Copy)]
struct Frame {
    kind: FrameKind,
    /// Output length right after the block's opening: trailing trimming stops here (§4.6).
    content_from: usize,
}

impl<'a> Inline<'a> {
    /// Appends the HTML of the container made of `lines`, joined by line breaks.
    pub(crate) fn render(&mut self, lines: &[&'a str], out: &mut String) {
        self.atoms.clear();
        for (index, line) in lines.iter().enumerate() {
            if index > 0 {
                self.atoms.push(Atom::LineBreak);
            }
            scan_line(line, &mut self.atoms);
        }
        self.match_parentheses();
        self.render_atoms(out);
    }

    /// Ordinary bracket matching over the container (§4.5).
    fn match_parentheses(&mut self) {
        self.unmatched_opens.clear();
        for index in 0..self.atoms.len() {
            match self.atoms.get(index) {
                Some(Atom::Open { .. } | Atom::ColourOpen { .. }) => {
                    self.unmatched_opens.push(index);
                }
                Some(Atom::Close { .. }) => {
                    if let Some(open) = self.unmatched_opens.pop() {
                        set_matched(self.atoms.get_mut(open));
                        set_matched(self.atoms.get_mut(index));
                    }
                }
                _ => {}
            }
        }
    }

    /// The procedure of §4.9.
    fn render_atoms(&mut self, out: &mut String) {
        let mut sink = Sink {
            out,
            trim_leading: false,
        };
        let frames = &mut self.frames;
        frames.clear();
        let mut depth = 0;
        for atom in &self.atoms {
            match *atom {
                Atom::Text(text) => sink.text(text),
                Atom::Literal(content) => {
                    sink.markup_with(|out| {
                        html::push_wrapped(
                            out,
                            "<span class=\"literal-text\">",
                            content,
                            "</span>",
                        );
                    });
                }
                Atom::Url(url) => sink.markup_with(|out| html::push_url(out, url)),
                Atom::Wikilink(title) => sink.markup_with(|out| html::push_wikilink(out, title)),
                Atom::Emphasis(content) => {
                    sink.markup_with(|out| html::push_wrapped(out, "<em>", content, "</em>"));
                }
                Atom::Chinese(run) => {
                    sink.markup_with(|out| {
                        html::push_wrapped(
                            out,
                            "<span class=\"annotated-chinese\">",
                            run,
                            "</span>",
                        );
                    });
                }
                Atom::Open { matched: false } => sink.text("("),
                Atom::ColourOpen {
                    source,
                    matched: false,
                    ..
                } => sink.text(source),
                Atom::ColourOpen {
                    colour,
                    matched: true,
                    ..
                } if depth < MAX_DEPTH => {
                    frames.push(sink.open_block(colour, FrameKind::Section));
                    depth += 1;
                }
                Atom::Open { matched: true } => {
                    sink.text("(");
                    frames.push(sink.paren_frame());
                }
                Atom::ColourOpen {
                    source,
                    matched: true,
                    ..
                } => {
                    sink.text(source);
                    frames.push(sink.paren_frame());
                }
                Atom::Close { matched: false } => sink.text(")"),
                Atom::Close { matched: true } => {
                    depth -= close_runs(frames, &mut sink);
                    // Invariant: matched pairs nest properly and only runs are pushed
                    // between them, so the top is the partner's frame. Were the stack
                    // empty, the `)` would still be written.
                    match frames.pop() {
                        Some(frame) if frame.kind == FrameKind::Paren => sink.text(")"),
                        Some(frame) => {
                            sink.close_block(frame);
                            depth -= 1;
                        }
                        None => sink.text(")"),
                    }
                }
                Atom::Tag { colour, .. } if depth < MAX_DEPTH => {
                    frames.push(sink.open_block(colour, FrameKind::Run));
                    depth += 1;
                }
                Atom::Tag { source, .. } => sink.text(source),
                Atom::LineBreak => {
                    depth -= close_runs(frames, &mut sink);
                    sink.markup_with(|out| out.push_str(html::LINE_BREAK));
                }
            }
        }
        // Only runs can be left; closing any other frame too keeps the output well formed
        // even if that invariant were broken.
        while let Some(frame) = frames.pop() {
            match frame.kind {
                FrameKind::Paren => {}
                FrameKind::Section | FrameKind::Run => sink.close_block(frame),
            }
        }
    }
}

fn set_matched(atom: Option<&mut Atom<'_>>) {
    if let Some(
        Atom::Open { matched } | Atom::ColourOpen { matched, .. } | Atom::Close { matched },
    ) = atom
    {
        *matched = true;
    }
}

/// Closes the run frames on top of the stack; returns how many it closed.
fn close_runs(frames: &mut Vec<Frame>, sink: &mut Sink<'_>) -> usize {
    let mut closed = 0;
    while let Some(&frame) = frames.last() {
        if frame.kind != FrameKind::Run {
            break;
        }
        frames.pop();
        sink.close_block(frame);
        closed += 1;
    }
    closed
}

/// The output, plus the state of §4.6 trimming.
struct Sink<'o> {
    out: &'o mut String,
    /// A colour block has just opened: spaces and tabs written now are dropped.
    trim_leading: bool,
}

impl Sink<'_> {
    fn text(&mut self, text: &str) {
        let text = if self.trim_leading {
            text.trim_start_matches([' ', '\t'])
        } else {
            text
        };
        if !text.is_empty() {
            self.trim_leading = false;
            html::push_escaped(self.out, text);
        }
    }

    /// Writes generated markup, which never begins or ends with whitespace.
    fn markup_with(&mut self, write: impl FnOnce(&mut String)) {
        self.trim_leading = false;
        write(self.out);
    }

    fn open_block(&mut self, colour: Colour, kind: FrameKind) -> Frame {
        html::push_colour_open(self.out, colour);
        self.trim_leading = true;
        Frame {
            kind,
            content_from: self.out.len(),
        }
    }

    fn paren_frame(&self) -> Frame {
        Frame {
            kind: FrameKind::Paren,
            content_from: self.out.len(),
        }
    }

    fn close_block(&mut self, frame: Frame) {
        // Generated markup never ends with whitespace, so only text is trimmed here; the
        // bytes removed are ASCII, so the string stays valid UTF-8.
        let content = self
            .out
            .as_bytes()
            .get(frame.content_from..)
            .unwrap_or_default();
        let kept = content
            .iter()
            .rposition(|&b| b != b' ' && b != b'\t')
            .map_or(frame.content_from, |last| frame.content_from + last + 1);
        self.out.truncate(kept);
        self.out.push_str(html::COLOUR_CLOSE);
        self.trim_leading = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RED: &str = "<span class=\"colorblock color-red\"><span class=\"sigil\">💡</span>\
                       <span class=\"colortext-content\">";
    const BLUE: &str = "<span class=\"colorblock color-blue\"><span class=\"sigil\">✨</span>\
                        <span class=\"colortext-content\">";
    const TEAL: &str = "<span class=\"colorblock color-teal\"><span class=\"sigil\">🤖</span>\
                        <span class=\"colortext-content\">";
    const END: &str = "</span></span>";

    fn render(lines: &[&str]) -> String {
        let mut out = String::new();
        Inline::default().render(lines, &mut out);
        out
    }

    fn check(table: &[(&[&str], String)]) {
        for (lines, expected) in table {
            assert_eq!(render(lines), *expected, "lines {lines:?}");
        }
    }

    #[test]
    fn runs_end_at_line_end_or_enclosing_paren() {
        check(&[
            (&["<red>a", "b"], format!("{RED}a{END}<br />b")),
            (&["x <red>a"], format!("x {RED}a{END}")),
            (
                &["(see <red>this) now"],
                format!("(see {RED}this{END}) now"),
            ),
            (
                &["<red>a <blue>b", "c"],
                format!("{RED}a {BLUE}b{END}{END}<br />c"),
            ),
            (
                &["<red>a (<blue>b", "c) d", "next"],
                format!("{RED}a {BLUE}b<br />c{END} d{END}<br />next"),
            ),
            (
                &["<red>a (b", "c) d", "e"],
                format!("{RED}a (b<br />c) d{END}<br />e"),
            ),
            (&["(a <red>b", "c)"], format!("(a {RED}b{END}<br />c)")),
            (&["<red>"], format!("{RED}{END}")),
        ]);
    }

    #[test]
    fn sections_drop_their_parentheses_and_tag() {
        check(&[
            (&["A (<red>b) c"], format!("A {RED}b{END} c")),
            (&["( \t<red>b)"], format!("{RED}b{END}")),
            (&["(<red>f(x) (y))"], format!("{RED}f(x) (y){END}")),
            (&["(<red>a", "b) c"], format!("{RED}a<br />b{END} c")),
            (
                &["(<red>a (<blue>b) c)"],
                format!("{RED}a {BLUE}b{END} c{END}"),
            ),
        ]);
    }

    #[test]
    fn unmatched_parentheses_are_text() {
        check(&[
            (&["(<red>unclosed"], "(&lt;red&gt;unclosed".to_owned()),
            (&["( <red>x"], "( &lt;red&gt;x".to_owned()),
            (&["a) (b"], "a) (b".to_owned()),
            (&["(a (b) c"], "(a (b) c".to_owned()),
            (&["(<red>a (b) c"], "(&lt;red&gt;a (b) c".to_owned()),
            (&[")(<red>x"], ")(&lt;red&gt;x".to_owned()),
        ]);
    }

    #[test]
    fn colour_block_edges_are_trimmed() {
        check(&[
            (
                &["(\t<teal>  generated  )"],
                format!("{TEAL}generated{END}"),
            ),
            (&["(<teal> )"], format!("{TEAL}{END}")),
            (&["(<teal> (a) ) b"], format!("{TEAL}(a){END} b")),
            (&["(<teal>( a ))"], format!("{TEAL}( a ){END}")),
            (&["<teal> *x *"], format!("{TEAL}<em>x </em>{END}")),
            (&["(<teal> <red> x )"], format!("{TEAL}{RED}x{END}{END}")),
            (&["(<teal>", "x)"], format!("{TEAL}<br />x{END}")),
        ]);
    }

    #[test]
    fn depth_limit_turns_the_ninth_block_into_text() {
        let eight_runs = "<red>".repeat(8);
        let mut expected = RED.repeat(8);
        expected.push_str("&lt;blue&gt;x");
        expected.push_str(&END.repeat(8));
        check(&[(&[&format!("{eight_runs}<blue>x")], expected)]);

        // A refused section renders as a plain matched pair.
        let mut expected = RED.repeat(8);
        expected.push_str("( &lt;blue&gt;a) b");
        expected.push_str(&END.repeat(8));
        check(&[(&[&format!("{eight_runs}( <blue>a) b")], expected)]);
    }

    #[test]
    fn inline_constructs_render() {
        check(&[
            (
                &["<<a <b> >>"],
                "<span class=\"literal-text\">a &lt;b&gt;</span>".to_owned(),
            ),
            (&["*a&b*"], "<em>a&amp;b</em>".to_owned()),
            (
                &["你好"],
                "<span class=\"annotated-chinese\">你好</span>".to_owned(),
            ),
            (
                &["https://a.example/?a=1&b=2"],
                "<a href=\"https://a.example/?a=1&amp;b=2\" target=\"_blank\" \
                 rel=\"noopener noreferrer\">https://a.example/?a=1&amp;b=2</a>"
                    .to_owned(),
            ),
            (
                &["[[北京 (city)?]]"],
                "<a href=\"https://en.wikipedia.org/wiki/%E5%8C%97%E4%BA%AC_(city)%3F\" \
                 class=\"wikilink\" target=\"_blank\" rel=\"noopener noreferrer\">北京 (city)?</a>"
                    .to_owned(),
            ),
        ]);
    }

    #[test]
    fn constructs_inside_delimiters_do_not_take_parentheses() {
        check(&[
            (
                &["(<red>see https://example.com/a)"],
                format!(
                    "{RED}see <a href=\"https://example.com/a\" target=\"_blank\" \
                     rel=\"noopener noreferrer\">https://example.com/a</a>{END}"
                ),
            ),
            (
                &["(<red><<)>> x)"],
                format!("{RED}<span class=\"literal-text\">)</span> x{END}"),
            ),
            (&["(<red>*a)* x"], "(&lt;red&gt;<em>a)</em> x".to_owned()),
        ]);
    }

    #[test]
    fn deep_nesting_uses_no_call_stack() {
        let deep = "(<red>".repeat(200_000) + &")".repeat(200_000);
        let out = render(&[&deep]);
        assert!(out.starts_with(&RED.repeat(8)));
        assert!(out.ends_with(&format!("){}", END.repeat(8))));
        assert_eq!(out.matches("colorblock").count(), 8);
    }
}
