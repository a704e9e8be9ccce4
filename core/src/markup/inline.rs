//! Rendering one inline container, a paragraph or a list item (spec §4.5, §4.9).
//!
//! Parentheses are matched first, then the atoms are rendered with an explicit frame stack:
//! nothing recurses per nesting level, so 1 MB of `(<red>` costs heap, not call stack. Nor does
//! anything grow with the container: the scanner hands out atoms one at a time, matching keeps
//! two bits per parenthesis, and the frame stack holds at most [`MAX_DEPTH`] colour blocks,
//! with the plain parentheses between them counted, not stacked. A container of a few
//! thousand atoms (nearly every one) is scanned once and its atoms kept for the second pass; a
//! larger one is scanned again instead.

use super::colour::Colour;
use super::html::{self, Html, Out, Push};
use super::scan::{Atom, LineAtoms};

/// At most this many colour blocks may enclose any point (§4.7).
pub(crate) const MAX_DEPTH: usize = 8;

/// Containers of at most this many atoms keep them between the two passes (24 bytes each).
const KEPT_ATOMS: usize = 4096;

/// Renders inline containers; holds scratch buffers reused from one container to the next.
#[derive(Default)]
pub(crate) struct Inline<'a> {
    atoms: Vec<Atom<'a>>,
    parens: Parens,
    frames: Frames,
}

/// The atoms of a container: its lines' atoms with a line break between two lines.
#[derive(Clone)]
struct ContainerAtoms<'a, L> {
    lines: L,
    line: Option<LineAtoms<'a>>,
    started: bool,
}

impl<'a, L: Iterator<Item = &'a str>> Iterator for ContainerAtoms<'a, L> {
    type Item = Atom<'a>;

    fn next(&mut self) -> Option<Atom<'a>> {
        loop {
            if let Some(atom) = self.line.as_mut().and_then(Iterator::next) {
                return Some(atom);
            }
            let line = self.lines.next()?;
            self.line = Some(LineAtoms::new(line));
            if std::mem::replace(&mut self.started, true) {
                return Some(Atom::LineBreak);
            }
        }
    }
}

impl<'a> Inline<'a> {
    /// Appends the HTML of the container made of `lines`, joined by line breaks; stops where
    /// `out` is full ([`Out::fits`]), closing what it opened.
    pub(crate) fn render<L>(&mut self, lines: L, out: &mut Out<'_>)
    where
        L: Iterator<Item = &'a str> + Clone,
    {
        let atoms = ContainerAtoms {
            lines,
            line: None,
            started: false,
        };
        self.atoms.clear();
        self.parens.clear();
        let mut kept = true;
        for atom in atoms.clone() {
            self.parens.scanned(&atom);
            if kept && self.atoms.len() < KEPT_ATOMS {
                self.atoms.push(atom);
            } else if kept {
                kept = false;
                self.atoms.clear();
            }
        }
        self.parens.match_opens();
        let mut renderer = Renderer {
            sink: Sink {
                out,
                trim_leading: false,
            },
            parens: &self.parens,
            next_paren: 0,
            frames: &mut self.frames,
        };
        renderer.frames.clear();
        if kept {
            renderer.render(self.atoms.iter().copied());
        } else {
            renderer.render(atoms);
        }
    }
}

/// Which parentheses of a container match (§4.5), two bits each, in atom order.
///
/// Bracket matching pairs each `)` with the nearest unmatched `(` before it. A `)` is matched
/// if any `(` is then pending, which a left-to-right count tells; a `(` is matched if a
/// right-to-left count of `)` not yet paired is positive when it is reached, which gives the
/// same pairs (the reduced form of a bracket word is unique).
#[derive(Default)]
struct Parens {
    closes: Bits,
    matched: Bits,
    /// `(` seen and not yet paired, left to right.
    pending: usize,
}

impl Parens {
    fn clear(&mut self) {
        self.closes.clear();
        self.matched.clear();
        self.pending = 0;
    }

    /// The first pass: records each parenthesis; a `)` learns here whether it is matched.
    fn scanned(&mut self, atom: &Atom<'_>) {
        match atom {
            Atom::Open { .. } | Atom::ColourOpen { .. } => {
                self.closes.push(false);
                self.matched.push(false);
                self.pending += 1;
            }
            Atom::Close { .. } => {
                self.closes.push(true);
                self.matched.push(self.pending > 0);
                self.pending = self.pending.saturating_sub(1);
            }
            _ => {}
        }
    }

    /// The second pass, right to left: each `(` learns whether it is matched.
    fn match_opens(&mut self) {
        if self.pending == 0 {
            // Every `(` found its `)` (or there is none): the count below would set them all.
            for index in 0..self.closes.len() {
                if !self.closes.get(index) {
                    self.matched.set(index);
                }
            }
            return;
        }
        let mut closes = 0usize;
        for index in (0..self.closes.len()).rev() {
            if self.closes.get(index) {
                closes += 1;
            } else if closes > 0 {
                closes -= 1;
                self.matched.set(index);
            }
        }
    }
}

/// A growable bit vector.
#[derive(Default)]
struct Bits {
    words: Vec<u64>,
    len: usize,
}

impl Bits {
    fn clear(&mut self) {
        self.words.clear();
        self.len = 0;
    }

    fn len(&self) -> usize {
        self.len
    }

    fn push(&mut self, bit: bool) {
        if self.len.is_multiple_of(64) {
            self.words.push(0);
        }
        if bit {
            self.set(self.len);
        }
        self.len += 1;
    }

    fn get(&self, index: usize) -> bool {
        self.words
            .get(index / 64)
            .is_some_and(|word| word & (1 << (index % 64)) != 0)
    }

    fn set(&mut self, index: usize) {
        if let Some(word) = self.words.get_mut(index / 64) {
            *word |= 1 << (index % 64);
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum BlockKind {
    /// A coloured section `(<color>…)`.
    Section,
    /// A colour run started by a bare tag.
    Run,
}

#[derive(Clone, Copy)]
struct Block {
    kind: BlockKind,
    /// Output length right after the block's opening: trailing trimming stops here (§4.6).
    content_from: usize,
}

/// The frame stack of §4.9: the open colour blocks, and how many matched plain parentheses
/// (or sections refused by the depth limit) are open above each, `above[0]` below them all.
#[derive(Default)]
struct Frames {
    blocks: Vec<Block>,
    above: Vec<usize>,
}

impl Frames {
    fn clear(&mut self) {
        self.blocks.clear();
        self.above.clear();
        self.above.push(0);
    }

    fn push_block(&mut self, block: Block) {
        self.blocks.push(block);
        self.above.push(0);
    }

    fn push_paren(&mut self) {
        if let Some(count) = self.above.last_mut() {
            *count += 1;
        }
    }

    /// The top frame is a run: no parenthesis is open above the innermost block, a run.
    fn run_on_top(&self) -> bool {
        self.above.last() == Some(&0)
            && self
                .blocks
                .last()
                .is_some_and(|block| block.kind == BlockKind::Run)
    }

    fn pop_block(&mut self) -> Option<Block> {
        self.above.pop();
        if self.above.is_empty() {
            self.above.push(0);
        }
        self.blocks.pop()
    }

    fn depth(&self) -> usize {
        self.blocks.len()
    }
}

/// The third pass: the procedure of §4.9 over the atoms, with the matches of [`Parens`].
struct Renderer<'r, 'o, 's> {
    sink: Sink<'o, 's>,
    parens: &'r Parens,
    /// The index in `parens` of the next parenthesis atom.
    next_paren: usize,
    frames: &'r mut Frames,
}

impl Renderer<'_, '_, '_> {
    fn render<'a>(&mut self, atoms: impl Iterator<Item = Atom<'a>>) {
        for atom in atoms {
            if self.sink.out.is_cut() {
                break;
            }
            self.atom(atom);
        }
        // Only runs can be left; closing any other block too keeps the output well formed
        // even if that invariant were broken, or the output was cut.
        while let Some(block) = self.frames.pop_block() {
            self.sink.close_block(block);
        }
    }

    fn matched(&mut self) -> bool {
        let matched = self.parens.matched.get(self.next_paren);
        self.next_paren += 1;
        matched
    }

    fn atom(&mut self, atom: Atom<'_>) {
        let sink = &mut self.sink;
        match atom {
            Atom::Text(text) => sink.text(text),
            Atom::Literal(content) => sink.wrapped(html::LITERAL_OPEN, content, html::SPAN_CLOSE),
            Atom::Url(url) => sink.markup(
                html::url_len(""),
                2 * html::MAX_ESCAPED * url.len(),
                || html::url_len(url),
                |out| html::push_url(out, url),
            ),
            Atom::Wikilink(title) => sink.markup(
                html::wikilink_len(""),
                (html::MAX_WIKI_TARGET + html::MAX_ESCAPED) * title.len(),
                || html::wikilink_len(title),
                |out| html::push_wikilink(out, title),
            ),
            Atom::Emphasis(content) => sink.wrapped("<em>", content, "</em>"),
            Atom::Chinese(run) => sink.wrapped(html::CHINESE_OPEN, run, html::SPAN_CLOSE),
            Atom::Open { .. } => {
                let matched = self.matched();
                self.sink.text("(");
                if matched {
                    self.frames.push_paren();
                }
            }
            Atom::ColourOpen { source, colour, .. } => {
                let matched = self.matched();
                if matched && self.frames.depth() < MAX_DEPTH {
                    self.open_block(colour, BlockKind::Section);
                } else {
                    self.sink.text(source);
                    if matched {
                        self.frames.push_paren(); // refused by the depth limit: a plain pair
                    }
                }
            }
            Atom::Close { .. } => {
                if self.matched() {
                    self.close_runs();
                    // Invariant: matched pairs nest properly and only runs open between
                    // them, so the top is the partner. Were nothing open, the `)` would
                    // still be written.
                    if let Some(count) = self.frames.above.last_mut()
                        && *count > 0
                    {
                        *count -= 1;
                        self.sink.text(")");
                    } else if let Some(block) = self.frames.pop_block() {
                        self.sink.close_block(block);
                    } else {
                        self.sink.text(")");
                    }
                } else {
                    self.sink.text(")");
                }
            }
            Atom::Tag { colour, source } => {
                if self.frames.depth() < MAX_DEPTH {
                    self.open_block(colour, BlockKind::Run);
                } else {
                    self.sink.text(source);
                }
            }
            Atom::LineBreak => {
                self.close_runs();
                let len = html::LINE_BREAK.len();
                self.sink
                    .markup(len, 0, || len, |out| out.push_str(html::LINE_BREAK));
            }
        }
    }

    fn open_block(&mut self, colour: Colour, kind: BlockKind) {
        if let Some(content_from) = self.sink.open_block(colour) {
            self.frames.push_block(Block { kind, content_from });
        }
    }

    /// Closes the runs on top of the stack.
    fn close_runs(&mut self) {
        while self.frames.run_on_top() {
            if let Some(block) = self.frames.pop_block() {
                self.sink.close_block(block);
            }
        }
    }
}

/// The output, plus the state of §4.6 trimming.
struct Sink<'o, 's> {
    out: &'o mut Out<'s>,
    /// A colour block has just opened: spaces and tabs written now are dropped.
    trim_leading: bool,
}

impl<'s> Sink<'_, 's> {
    fn text(&mut self, text: &str) {
        let text = if self.trim_leading {
            text.trim_start_matches([' ', '\t'])
        } else {
            text
        };
        if !text.is_empty() {
            self.trim_leading = false;
            self.out.push_escaped(text);
        }
    }

    /// Writes generated markup, which never begins or ends with whitespace, if it fits: it
    /// is `fixed` bytes and at most `variable` more, `len()` in all.
    fn markup(
        &mut self,
        fixed: usize,
        variable: usize,
        len: impl FnOnce() -> usize,
        write: impl FnOnce(&mut Html<'s>),
    ) {
        if self.out.fits_within(fixed.saturating_add(variable), len) {
            self.trim_leading = false;
            write(self.out.html_mut());
        }
    }

    /// Writes `open`, `content` escaped and `close`, if it fits.
    fn wrapped(&mut self, open: &str, content: &str, close: &str) {
        self.markup(
            open.len() + close.len(),
            html::MAX_ESCAPED.saturating_mul(content.len()),
            || html::wrapped_len(open, content, close),
            |out| html::push_wrapped(out, open, content, close),
        );
    }

    /// Opens a colour block if it fits: the output length where its content starts.
    fn open_block(&mut self, colour: Colour) -> Option<usize> {
        if !self.out.fits(html::colour_open_len(colour)) {
            return None;
        }
        html::push_colour_open(self.out.html_mut(), colour);
        self.trim_leading = true;
        Some(self.out.len())
    }

    fn close_block(&mut self, block: Block) {
        // Generated markup never ends with whitespace, so only text is trimmed here.
        let html = self.out.html_mut();
        html.trim_end_from(block.content_from);
        html.push_str(html::COLOUR_CLOSE);
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
        let mut out = Out::unlimited();
        Inline::default().render(lines.iter().copied(), &mut out);
        out.into_html()
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
