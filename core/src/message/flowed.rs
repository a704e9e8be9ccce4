//! RFC 3676 `format=flowed`: Thunderbird and Apple Mail wrap plain text at about 72 columns
//! and mark the wraps with a trailing space. Joining them back gives the paragraphs the writer
//! typed, which Atacama markup would otherwise render with a forced break at every wrap.

/// Joins the soft line breaks of a `format=flowed` body; lines end with LF.
///
/// `delete_space` is the `DelSp=yes` parameter: the space that marks a soft break was added by
/// the sender and goes away with it.
pub(crate) fn unflow(text: &str, delete_space: bool) -> String {
    let mut out = String::with_capacity(text.len());
    // The quote depth of the paragraph being joined, while its last line was flowed.
    let mut open: Option<usize> = None;
    for line in text.lines() {
        let depth = line.bytes().take_while(|&b| b == b'>').count();
        let content = line.get(depth..).unwrap_or("");
        let content = content.strip_prefix(' ').unwrap_or(content); // §4.4 space-stuffing
        let flowed = content.ends_with(' ') && content != "-- "; // §4.3 signature separator
        if open.is_some_and(|open| open != depth) {
            out.push('\n'); // §4.5: a change of quote depth ends the paragraph
            open = None;
        }
        if open.is_none() && depth > 0 {
            out.extend(std::iter::repeat_n('>', depth));
            if !content.is_empty() {
                out.push(' ');
            }
        }
        if flowed {
            out.push_str(match content.strip_suffix(' ') {
                Some(joined) if delete_space => joined,
                _ => content,
            });
            open = Some(depth);
        } else {
            out.push_str(content);
            out.push('\n');
            open = None;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_soft_breaks() {
        let cases: &[(&str, bool, &str)] = &[
            ("", false, ""),
            ("Hello \r\nworld\r\n", false, "Hello world\n"),
            (
                "One \r\ntwo \r\nthree\r\n\r\nNext\r\n",
                false,
                "One two three\n\nNext\n",
            ),
            ("Hel \r\nlo\r\n", true, "Hello\n"),
            ("Hel \r\nlo\r\n", false, "Hel lo\n"),
            (
                "> quoted \r\n> text\r\nreply\r\n",
                false,
                "> quoted text\nreply\n",
            ),
            (">> deep \r\n>> er\r\n>\r\n", false, ">> deep er\n>\n"),
            ("> a \r\n>> b\r\n", false, "> a \n>> b\n"),
            ("-- \r\nBob\r\n", false, "-- \nBob\n"),
            ("  From me\r\n", false, " From me\n"),
            ("ends flowed \r\n", false, "ends flowed "),
            ("no line break", false, "no line break\n"),
            ("caf\u{e9} \nna\u{ef}ve\n", false, "caf\u{e9} na\u{ef}ve\n"),
        ];
        for (text, delete_space, joined) in cases {
            assert_eq!(unflow(text, *delete_space), *joined, "for {text:?}");
        }
    }
}
