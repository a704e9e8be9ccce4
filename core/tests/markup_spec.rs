//! The examples given in the prose of the markup spec and its edge-case table (§8), as
//! exact input → HTML tables, grouped by section.

use atacama_core::markup::{check_output_allowlist, render};

fn open(class: &str, sigil: &str) -> String {
    format!(
        "<span class=\"colorblock color-{class}\"><span class=\"sigil\">{sigil}</span>\
         <span class=\"colortext-content\">"
    )
}

const END: &str = "</span></span>";

fn red() -> String {
    open("red", "💡")
}

fn blue() -> String {
    open("blue", "✨")
}

fn link(url: &str) -> String {
    format!("<a href=\"{url}\" target=\"_blank\" rel=\"noopener noreferrer\">{url}</a>")
}

fn wikilink(target: &str, title: &str) -> String {
    format!(
        "<a href=\"https://en.wikipedia.org/wiki/{target}\" class=\"wikilink\" \
         target=\"_blank\" rel=\"noopener noreferrer\">{title}</a>"
    )
}

fn quote(blocks: &str) -> String {
    format!(
        "<div class=\"mlq\"><button type=\"button\" class=\"mlq-collapse\" \
         aria-label=\"Toggle visibility\"><span class=\"mlq-collapse-icon\">-</span></button>\
         <div class=\"mlq-content\">{blocks}</div></div>"
    )
}

fn check(table: &[(&str, String)]) {
    for (input, expected) in table {
        let out = render(input);
        assert_eq!(out, *expected, "input {input:?}");
        assert_eq!(check_output_allowlist(&out), Ok(()), "input {input:?}");
    }
}

fn p(inline: &str) -> String {
    format!("<p>{inline}</p>")
}

#[test]
fn s2_normalisation() {
    check(&[
        ("a\r\nb\rc", p("a<br />b<br />c")),
        ("&amp;", p("&amp;amp;")),
        ("a\0b", p("a\u{FFFD}b")),
        ("\u{feff}x\u{a0}", p("\u{feff}x\u{a0}")),
        ("x\u{2028}y", p("x\u{2028}y")),
        (" \t \n\t\n", String::new()),
    ]);
}

#[test]
fn s3_paragraphs_and_breaks() {
    let hr = "<hr class=\"section-break\" />";
    check(&[
        ("Line one\nLine two", p("Line one<br />Line two")),
        (
            "First\n\n\nSecond",
            "<p>First</p>\n<p>Second</p>".to_owned(),
        ),
        ("----", hr.to_owned()),
        ("----\n----", format!("{hr}\n{hr}")),
        ("a\n----\n", format!("{}\n{hr}", p("a"))),
        ("-----", p("-----")),
        ("--- -", p("--- -")),
        ("a ---- b", p("a ---- b")),
        ("<red>x\ny", p(&format!("{}x{END}<br />y", red()))),
    ]);
}

#[test]
fn s3_4_lists() {
    check(&[
        (
            "* a\n\n* b",
            "<ul>\n<li class=\"bullet-list\">a</li>\n</ul>\n<ul>\n<li class=\"bullet-list\">b</li>\n</ul>"
                .to_owned(),
        ),
        (
            "  #   spaced item  ",
            "<ul>\n<li class=\"number-list\">spaced item</li>\n</ul>".to_owned(),
        ),
        ("*word\n#tag\n>text", p("*word<br />#tag<br />&gt;text")),
        (">> double\n- dash", p("&gt;&gt; double<br />- dash")),
        ("*\n#\n>", p("*<br />#<br />&gt;")),
        (
            "> quoted reply",
            "<ul>\n<li class=\"arrow-list\">quoted reply</li>\n</ul>".to_owned(),
        ),
        (
            "* (<red>a\n* b)",
            "<ul>\n<li class=\"bullet-list\">(&lt;red&gt;a</li>\n<li class=\"bullet-list\">b)</li>\n</ul>"
                .to_owned(),
        ),
    ]);
}

#[test]
fn s3_5_quotes() {
    let teal = "<div class=\"mlq color-teal\"><button type=\"button\" class=\"mlq-collapse\" \
                aria-label=\"Toggle visibility\"><span class=\"mlq-collapse-icon\">🤖</span>\
                </button><div class=\"mlq-content\">";
    check(&[
        ("<<<>>>", quote("")),
        (
            "<red><<<x>>>",
            quote("<p>x</p>")
                .replace("mlq\"", "mlq color-red\"")
                .replace(">-<", ">💡<"),
        ),
        ("<teal> <<<\na\n>>>", format!("{teal}<p>a</p></div></div>")),
        (
            "<<<\n* item >>>",
            quote("<ul>\n<li class=\"bullet-list\">item</li>\n</ul>"),
        ),
        ("<<<\n<<<\na\n>>>", quote("<p>&lt;&lt;&lt;<br />a</p>")),
        (
            "a\n<<<b\nc>>>\nd",
            format!("{}\n{}\n{}", p("a"), quote("<p>b<br />c</p>"), p("d")),
        ),
        ("<<<\nnot closed", p("&lt;&lt;&lt;<br />not closed")),
        (">>>", p("&gt;&gt;&gt;")),
        ("x >>>\n<<<", p("x &gt;&gt;&gt;<br />&lt;&lt;&lt;")),
        ("a <<< b >>>", p("a &lt;&lt;&lt; b &gt;&gt;&gt;")),
    ]);
}

#[test]
fn s4_colour_runs_and_sections() {
    let (red, blue) = (red(), blue());
    let teal = open("teal", "🤖");
    let gray = open("gray", "💭");
    check(&[
        ("foo<red>bar", p(&format!("foo{red}bar{END}"))),
        (
            "(see <red>this) now",
            p(&format!("(see {red}this{END}) now")),
        ),
        ("<red>a <blue>b", p(&format!("{red}a {blue}b{END}{END}"))),
        (
            "<red>a (<blue>b\nc) d\nnext",
            p(&format!("{red}a {blue}b<br />c{END} d{END}<br />next")),
        ),
        (
            "A note (<red>important) here",
            p(&format!("A note {red}important{END} here")),
        ),
        ("( \t<red>spaced)", p(&format!("{red}spaced{END}"))),
        (
            "(\t<teal>  generated  )",
            p(&format!("{teal}generated{END}")),
        ),
        ("<gray>", p(&format!("{gray}{END}"))),
        ("(a (b) c", p("(a (b) c")),
        ("a) (b)", p("a) (b)")),
        (
            "(<red>a\n\nb)",
            format!("{}\n{}", p("(&lt;red&gt;a"), p("b)")),
        ),
        (
            "<red >x </red> <b>",
            p("&lt;red &gt;x &lt;/red&gt; &lt;b&gt;"),
        ),
        (
            "<orange>x (<acronym>y (<context>z (<resource>w)))",
            p(&format!(
                "{}x {}y {}z {}w{END}{END}{END}{END}",
                open("orange", "⚔\u{fe0f}"),
                open("green", "⚙\u{fe0f}"),
                open("green", "⚙\u{fe0f}"),
                open("green", "⚙\u{fe0f}"),
            )),
        ),
        (
            "<xantham><yellow><quote><violet><mogue><hazel><music>x",
            p(&format!(
                "{}{}{}{}{}{}{}x{}",
                open("xantham", "🔥"),
                open("yellow", "💬"),
                open("quote", "💬"),
                open("violet", "📣"),
                open("mogue", "🌎"),
                open("hazel", "🎭"),
                open("musicnote", "🎵"),
                END.repeat(7)
            )),
        ),
    ]);
}

#[test]
fn s4_7_nesting_limit() {
    let eight = red().repeat(8);
    let closes = END.repeat(8);
    check(&[
        (
            &format!("{}<mogue>x", "<red>".repeat(8)),
            p(&format!("{eight}&lt;mogue&gt;x{closes}")),
        ),
        (
            &format!("{}(<mogue>x) y", "<red>".repeat(8)),
            p(&format!("{eight}(&lt;mogue&gt;x) y{closes}")),
        ),
        (
            &format!("{}(<blue>x) <blue>y{}", "(<red>".repeat(7), ")".repeat(7)),
            p(&format!(
                "{}{}x{END} {}y{END}{}",
                red().repeat(7),
                blue(),
                blue(),
                END.repeat(7)
            )),
        ),
    ]);
}

#[test]
fn s5_2_urls() {
    check(&[
        (
            "seehttps://b.example",
            p(&format!("see{}", link("https://b.example"))),
        ),
        ("http://a.example/x_(y)", p(&link("http://a.example/x_(y)"))),
        (
            "https://a.example/x).",
            p(&format!("{}).", link("https://a.example/x"))),
        ),
        (
            "https://a.example/[x]",
            p(&format!("{}[x]", link("https://a.example/"))),
        ),
        (
            "<https://a.example>",
            p(&format!("&lt;{}&gt;", link("https://a.example"))),
        ),
        ("https://", p("https://")),
        ("https://.", p("https://.")),
        (
            "HTTPS://a.example ftp://a.example",
            p("HTTPS://a.example ftp://a.example"),
        ),
        (
            "mailto:a@b.example data:x javascript:y",
            p("mailto:a@b.example data:x javascript:y"),
        ),
        (
            "(<red>see https://example.com/a)",
            p(&format!(
                "{}see {}{END}",
                red(),
                link("https://example.com/a")
            )),
        ),
        (
            "https://a.example/<red>x",
            p(&format!("{}{}x{END}", link("https://a.example/"), red())),
        ),
    ]);
}

#[test]
fn s5_3_wikilinks() {
    check(&[
        ("[[ Rust ]]", p(&wikilink("Rust", "Rust"))),
        (
            "[[北京 (city)?]]",
            p(&wikilink("%E5%8C%97%E4%BA%AC_(city)%3F", "北京 (city)?")),
        ),
        ("[[<red>x]]", p(&wikilink("%3Cred%3Ex", "&lt;red&gt;x"))),
        ("[[Unclosed", p("[[Unclosed")),
        ("[[]] [[ ]] [[a]b]]", p("[[]] [[ ]] [[a]b]]")),
        (
            "[[[Python]]]",
            p(&format!("[{}]", wikilink("Python", "Python"))),
        ),
    ]);
}

#[test]
fn s5_4_to_5_6_chinese_literals_emphasis() {
    let forty = "x".repeat(40);
    let forty_one = "x".repeat(41);
    check(&[
        (
            "你好，世界",
            p(
                "<span class=\"annotated-chinese\">你好</span>，<span class=\"annotated-chinese\">世界</span>",
            ),
        ),
        ("かな 한글 㐀 𠀀", p("かな 한글 㐀 𠀀")),
        ("<<>>", p("<span class=\"literal-text\"></span>")),
        (
            "<< (<red>x >>",
            p("<span class=\"literal-text\">(&lt;red&gt;x</span>"),
        ),
        ("a <<< b", p("a &lt;&lt;&lt; b")),
        ("a >> b", p("a &gt;&gt; b")),
        ("<<a\nb>>", p("&lt;&lt;a<br />b&gt;&gt;")),
        ("*emphasized*", p("<em>emphasized</em>")),
        ("2*3=6\nx * spaced *", p("2*3=6<br />x * spaced *")),
        ("2*3=6 and *x*", p("2<em>3=6 and </em>x*")),
        ("**bold**", p("*<em>bold</em>*")),
        (&format!("*{forty}*"), p(&format!("<em>{forty}</em>"))),
        (&format!("*{forty_one}*"), p(&format!("*{forty_one}*"))),
        (
            "* *a*",
            "<ul>\n<li class=\"bullet-list\"><em>a</em></li>\n</ul>".to_owned(),
        ),
        ("*a\nb*", p("*a<br />b*")),
    ]);
}

#[test]
fn s8_edge_cases() {
    check(&[
        (
            "<foo> <RED> </red> <red >",
            p("&lt;foo&gt; &lt;RED&gt; &lt;/red&gt; &lt;red &gt;"),
        ),
        ("(<red>never closed", p("(&lt;red&gt;never closed")),
        ("a ) b", p("a ) b")),
        ("a << b\nc >> d", p("a &lt;&lt; b<br />c &gt;&gt; d")),
        ("[[]]", p("[[]]")),
        (
            "* <red>x",
            format!(
                "<ul>\n<li class=\"bullet-list\">{}x{END}</li>\n</ul>",
                red()
            ),
        ),
        ("<red>* x", p(&format!("{}* x{END}", red()))),
        ("💡 typed sigil", p("💡 typed sigil")),
        (
            "--MORE--\n[# x #]\n{{pgn|e4}}",
            p("--MORE--<br />[# x #]<br />{{pgn|e4}}"),
        ),
        (
            "<<PRIVATE: x>>",
            p("<span class=\"literal-text\">PRIVATE: x</span>"),
        ),
    ]);
}
