//! An independent check of rendered HTML against the output vocabulary (spec §6, §7).
//!
//! It re-reads the HTML rather than trusting the generator: property tests and the fuzz
//! target run it on the renderer's output for arbitrary input.

/// The colour classes of §4.1, written out again on purpose: the checker does not share
/// the generator's table, so a wrong entry there is caught here.
const COLOUR_CLASSES: [&str; 13] = [
    "color-xantham",
    "color-red",
    "color-orange",
    "color-yellow",
    "color-quote",
    "color-green",
    "color-teal",
    "color-blue",
    "color-violet",
    "color-musicnote",
    "color-mogue",
    "color-gray",
    "color-hazel",
];

/// The span classes other than the colour block's own.
const SPAN_CLASSES: [&str; 5] = [
    "sigil",
    "colortext-content",
    "literal-text",
    "annotated-chinese",
    "mlq-collapse-icon",
];

const LI_CLASSES: [&str; 3] = ["bullet-list", "number-list", "arrow-list"];

const ENTITIES: [&str; 4] = ["&amp;", "&lt;", "&gt;", "&quot;"];

const WIKI_PREFIX: &str = "https://en.wikipedia.org/wiki/";

/// Checks that `html` uses only the tags, attributes and character references the
/// renderer may produce (§7), that every element is closed in order, that text holds no raw
/// `>` or `"`, and that no control character but tab and LF is left (see
/// `html::push_escaped`). The error names the first violation and its byte offset.
pub fn check_output_allowlist(html: &str) -> Result<(), String> {
    if let Some((at, control)) = html
        .char_indices()
        .find(|&(_, c)| c.is_control() && c != '\t' && c != '\n')
    {
        return Err(format!("at byte {at}: control character {control:?}"));
    }
    let mut open: Vec<&str> = Vec::new();
    let mut at = 0;
    while let Some(rest) = html.get(at..) {
        let Some(special) = rest.find(['<', '>', '&', '"']) else {
            break;
        };
        at += special;
        let rest = html.get(at..).unwrap_or_default();
        at += if rest.starts_with('<') {
            read_tag(rest, &mut open).map_err(|problem| format!("at byte {at}: {problem}"))?
        } else if rest.starts_with('&') {
            entity_len(rest).ok_or_else(|| format!("at byte {at}: bare `&`"))?
        } else {
            let raw = rest.chars().next().unwrap_or_default();
            return Err(format!("at byte {at}: raw {raw:?} in text"));
        };
    }
    match open.last() {
        Some(name) => Err(format!("unclosed <{name}>")),
        None => Ok(()),
    }
}

/// Reads the tag at the start of `rest`; returns its length.
fn read_tag<'h>(rest: &'h str, open: &mut Vec<&'h str>) -> Result<usize, String> {
    if let Some(after) = rest.strip_prefix("</") {
        let name_len = after.bytes().take_while(u8::is_ascii_lowercase).count();
        let name = after.get(..name_len).unwrap_or_default();
        if after.get(name_len..name_len + 1) != Some(">") {
            return Err(format!("malformed end tag </{name}"));
        }
        return match open.pop() {
            Some(top) if top == name => Ok(2 + name_len + 1),
            Some(top) => Err(format!("</{name}> closes <{top}>")),
            None => Err(format!("</{name}> closes nothing")),
        };
    }
    let after = rest.get(1..).unwrap_or_default();
    let name_len = after.bytes().take_while(u8::is_ascii_lowercase).count();
    let name = after.get(..name_len).unwrap_or_default();
    let mut cursor = 1 + name_len;
    let mut attributes: Vec<(&str, &str)> = Vec::new();
    let self_closing = loop {
        let tail = rest.get(cursor..).unwrap_or_default();
        if tail.starts_with('>') {
            cursor += 1;
            break false;
        }
        if tail.starts_with(" />") {
            cursor += 3;
            break true;
        }
        let (attribute, len) =
            read_attribute(tail).ok_or_else(|| format!("malformed attribute in <{name}"))?;
        attributes.push(attribute);
        cursor += len;
    };
    check_element(name, &attributes, self_closing)?;
    if !self_closing {
        open.push(name);
    }
    Ok(cursor)
}

/// Reads ` name="value"`; returns it and its length.
fn read_attribute(tail: &str) -> Option<((&str, &str), usize)> {
    let after_space = tail.strip_prefix(' ')?;
    let name_len = after_space
        .bytes()
        .take_while(|b| b.is_ascii_lowercase() || *b == b'-')
        .count();
    let name = after_space.get(..name_len)?;
    let value_and_more = after_space.get(name_len..)?.strip_prefix("=\"")?;
    let value_len = value_and_more.find('"')?;
    let value = value_and_more.get(..value_len)?;
    Some(((name, value), 1 + name_len + 2 + value_len + 1))
}

/// The allowlist of §7, one arm per element shape.
fn check_element(
    name: &str,
    attributes: &[(&str, &str)],
    self_closing: bool,
) -> Result<(), String> {
    for (attribute, value) in attributes {
        check_attribute_value(value).map_err(|problem| format!("{attribute}: {problem}"))?;
    }
    let allowed = match (name, attributes, self_closing) {
        ("p" | "ul" | "em", [], false) | ("br", [], true) => true,
        ("hr", [("class", "section-break")], true) => true,
        ("li", [("class", class)], false) => LI_CLASSES.contains(class),
        ("span", [("class", class)], false) => {
            SPAN_CLASSES.contains(class)
                || class
                    .strip_prefix("colorblock ")
                    .is_some_and(|colour| COLOUR_CLASSES.contains(&colour))
        }
        ("div", [("class", class)], false) => {
            *class == "mlq"
                || *class == "mlq-content"
                || class
                    .strip_prefix("mlq ")
                    .is_some_and(|colour| COLOUR_CLASSES.contains(&colour))
        }
        (
            "button",
            [
                ("type", "button"),
                ("class", "mlq-collapse"),
                ("aria-label", "Toggle visibility"),
            ],
            false,
        ) => true,
        (
            "a",
            [
                ("href", href),
                ("target", "_blank"),
                ("rel", "noopener noreferrer"),
            ],
            false,
        ) => (href.starts_with("http://") || href.starts_with("https://")) && is_graphic(href),
        (
            "a",
            [
                ("href", href),
                ("class", "wikilink"),
                ("target", "_blank"),
                ("rel", "noopener noreferrer"),
            ],
            false,
        ) => href.starts_with(WIKI_PREFIX) && href.len() > WIKI_PREFIX.len() && is_graphic(href),
        _ => false,
    };
    if allowed {
        Ok(())
    } else {
        Err(format!(
            "element <{name}> with {attributes:?} is not allowed"
        ))
    }
}

/// Attribute values hold no control character, `&` only as one of the four references,
/// and never `<` or `>`.
fn check_attribute_value(value: &str) -> Result<(), String> {
    let mut at = 0;
    while let Some(rest) = value.get(at..) {
        let Some(first) = rest.chars().next() else {
            break;
        };
        if first == '&' {
            at += entity_len(rest).ok_or("bare `&`")?;
        } else if first == '<' || first == '>' || first.is_ascii_control() {
            return Err(format!("{first:?} in attribute value"));
        } else {
            at += first.len_utf8();
        }
    }
    Ok(())
}

/// A URL written by the renderer is printable ASCII: no space, control or raw non-ASCII.
fn is_graphic(href: &str) -> bool {
    href.bytes().all(|b| b.is_ascii_graphic())
}

/// The length of the character reference at the start of `rest`, if it is one of the four.
fn entity_len(rest: &str) -> Option<usize> {
    ENTITIES
        .iter()
        .find(|entity| rest.starts_with(*entity))
        .map(|entity| entity.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_every_generated_shape() {
        let good = [
            "",
            "plain &amp; &lt;b&gt; &quot;q&quot; 'single'",
            "<p>a<br />b</p>\n<hr class=\"section-break\" />",
            "<ul>\n<li class=\"bullet-list\">a</li>\n<li class=\"arrow-list\">b</li>\n</ul>",
            "<span class=\"colorblock color-musicnote\"><span class=\"sigil\">🎵</span>\
             <span class=\"colortext-content\"><em>x</em></span></span>",
            "<span class=\"literal-text\">x</span><span class=\"annotated-chinese\">好</span>",
            "<a href=\"https://a.example/?a=1&amp;b=2\" target=\"_blank\" \
             rel=\"noopener noreferrer\">x</a>",
            "<a href=\"https://en.wikipedia.org/wiki/A_%22B%22\" class=\"wikilink\" \
             target=\"_blank\" rel=\"noopener noreferrer\">A</a>",
            "<div class=\"mlq color-teal\"><button type=\"button\" class=\"mlq-collapse\" \
             aria-label=\"Toggle visibility\"><span class=\"mlq-collapse-icon\">🤖</span>\
             </button><div class=\"mlq-content\"></div></div>",
        ];
        for html in good {
            assert_eq!(check_output_allowlist(html), Ok(()), "html {html:?}");
        }
    }

    #[test]
    fn rejects_everything_else() {
        let bad = [
            "<script>alert(1)</script>",
            "<p onclick=\"x\">a</p>",
            "<a href=\"javascript:alert(1)\" target=\"_blank\" rel=\"noopener noreferrer\">x</a>",
            "<a href=\"https://a.example\">x</a>",
            "<a href=\"https://a.example\" class=\"wikilink\" target=\"_blank\" \
             rel=\"noopener noreferrer\">x</a>",
            "<span class=\"colorblock color-purple\"></span>",
            "<span style=\"x\"></span>",
            "<span class='sigil'></span>",
            "<div class=\"mlq\">",
            "<p><em></p></em>",
            "</p>",
            "<br>",
            "<p />",
            "<!-- c -->",
            "a > b",
            "a \"b\"",
            "a & b",
            "&#60;",
            "&nbsp;",
            "<li class=\"bullet-list x\">a</li>",
            "<span class=\"sigil\" class=\"sigil\"></span>",
            "<a href=\"https://a.example/&x\" target=\"_blank\" rel=\"noopener noreferrer\"></a>",
            "<a href=\"https://a.example/\tx\" target=\"_blank\" rel=\"noopener noreferrer\"></a>",
            "<a href=\"https://a.example/ x\" target=\"_blank\" rel=\"noopener noreferrer\"></a>",
            "<P>a</P>",
            "<",
            "<p>\u{1b}]52;c;SGk=\u{7}</p>",
            "<p>\u{9b}31m</p>",
            "<p>a\rb</p>",
            "<p>\0</p>",
        ];
        for html in bad {
            assert!(check_output_allowlist(html).is_err(), "html {html:?}");
        }
    }
}
