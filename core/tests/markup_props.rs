//! Properties of the markup renderer over generated input: the output stays inside the
//! vocabulary of spec §7, input characters reach it escaped (§6), and line-end and
//! indentation differences that §2 normalises away change nothing.

use atacama_core::markup::{check_output_allowlist, render};
use proptest::prelude::*;

/// Fragments that exercise every construct and every way of leaving one unclosed.
const TOKENS: &[&str] = &[
    "(<red>",
    "( \t<blue>",
    "(<resource>",
    "(",
    ")",
    "<",
    ">",
    "<<",
    ">>",
    "<<<",
    ">>>",
    "[[",
    "]]",
    "[",
    "]",
    "*",
    "**",
    "https://",
    "http://a.example/(x)?q=1&r=2",
    ".",
    ",",
    "你好",
    "\n",
    "\n\n",
    "\r\n",
    "\r",
    " ",
    "\t",
    "* ",
    "# ",
    "> ",
    "----",
    "<script>",
    "\"",
    "&",
    "'",
    " onload=",
    "javascript:",
    "<teal>",
    "<music>",
    "<gray>",
    "<RED>",
    "</red>",
    "x",
    "word",
    "\0",
    "💡",
    "<red><<<",
    "<red> <<<",
    "-",
    ":",
    "é",
    "&amp;",
    "&lt;",
];

fn markup() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(TOKENS), 0..80).prop_map(|tokens| tokens.concat())
}

/// Characters that may follow a `<` or precede a `>` without forming markup: no letter
/// (so no colour tag) and no angle bracket (so no `<<`, `>>`, `<<<` or `>>>`).
const FILLERS: &[&str] = &[
    " ", "\t", "1", "&", "\"", "(", ")", "*", "[", "]", "/", "=", ":", ".", "é", "好", "💡",
];

/// Text whose `<` and `>` can never be consumed as syntax: every line starts with `z`
/// (so no `> ` list marker and no quote opener), and every angle bracket is paired with a
/// filler on its inner side.
fn angle_text() -> impl Strategy<Value = String> {
    let filler = prop::sample::select(FILLERS);
    let piece = prop_oneof![
        filler.clone().prop_map(|f| format!("<{f}")),
        filler.clone().prop_map(|f| format!("{f}>")),
        filler.prop_map(str::to_owned),
        Just("\nz".to_owned()),
        Just("[[".to_owned()),
        Just("]]".to_owned()),
        Just("https://a.example/?b=1&c=2".to_owned()),
    ];
    prop::collection::vec(piece, 0..60).prop_map(|pieces| format!("z{}", pieces.concat()))
}

fn assert_allowed(input: &str) -> Result<(), TestCaseError> {
    let out = render(input);
    prop_assert_eq!(check_output_allowlist(&out), Ok(()), "output {:?}", out);
    prop_assert!(!out.starts_with('\n') && !out.ends_with('\n'));
    Ok(())
}

proptest! {
    #[test]
    fn any_text_renders_inside_the_vocabulary(input in any::<String>()) {
        assert_allowed(&input)?;
    }

    #[test]
    fn any_markup_renders_inside_the_vocabulary(input in markup()) {
        assert_allowed(&input)?;
    }

    #[test]
    fn quotes_reach_the_output_escaped_exactly_once(input in markup()) {
        // `"` is never syntax and never part of a URL; in a wikilink the title carries it
        // escaped and the target percent-encoded.
        let out = render(&input);
        prop_assert_eq!(out.matches("&quot;").count(), input.matches('"').count());
        prop_assert_eq!(out.matches('"').count() % 2, 0, "attribute quotes come in pairs");
    }

    #[test]
    fn ampersands_reach_the_output_escaped(input in markup()) {
        // At least once each: a URL writes its `&` in both `href` and the link text.
        let out = render(&input);
        prop_assert!(out.matches("&amp;").count() >= input.matches('&').count());
        prop_assert_eq!(check_output_allowlist(&out), Ok(()));
    }

    #[test]
    fn angle_brackets_that_are_not_syntax_reach_the_output_escaped(input in angle_text()) {
        let out = render(&input);
        prop_assert_eq!(out.matches("&lt;").count(), input.matches('<').count(), "output {:?}", out);
        prop_assert_eq!(out.matches("&gt;").count(), input.matches('>').count(), "output {:?}", out);
        prop_assert_eq!(out.matches("&quot;").count(), input.matches('"').count());
    }

    #[test]
    fn line_ends_do_not_matter(input in markup()) {
        let lf = input.replace("\r\n", "\n").replace('\r', "\n");
        let expected = render(&lf);
        prop_assert_eq!(render(&lf.replace('\n', "\r\n")), expected.clone());
        prop_assert_eq!(render(&lf.replace('\n', "\r")), expected.clone());
        prop_assert_eq!(render(&input), expected);
    }

    #[test]
    fn spaces_and_tabs_around_lines_do_not_matter(input in markup()) {
        let lf = input.replace("\r\n", "\n").replace('\r', "\n");
        let padded: Vec<String> = lf.split('\n').map(|line| format!(" \t{line}\t ")).collect();
        prop_assert_eq!(render(&padded.join("\n")), render(&lf));
    }

    #[test]
    fn blank_input_and_only_blank_input_renders_empty(input in "[ \t\r\n]*") {
        prop_assert_eq!(render(&input), "");
    }

    #[test]
    fn nul_renders_as_the_replacement_character(input in markup()) {
        prop_assert_eq!(render(&input), render(&input.replace('\0', "\u{FFFD}")));
    }
}
