//! RSS 2.0 and Atom 1.0 (RFC 4287) feeds, written with one escaping function.
//!
//! Every piece of text goes through [`push_escaped`], which escapes the five XML
//! metacharacters and drops what XML 1.0 §2.2 forbids anywhere in a document (C0 controls
//! but tab, LF and CR; U+FFFE; U+FFFF; a Rust string holds no lone surrogate). So any
//! subject and body give a well-formed feed: a control character in a subject used to make
//! a strict parser refuse the whole feed, not just the item. No CDATA: with `>` escaped, a
//! `]]>` in the text is inert.
//!
//! The HTML (`description` and `content:encoded` in RSS, `content type="html"` in Atom) is
//! the renderer's, escaped once, as both formats specify for HTML in text.

use super::{Post, Site, time};
use crate::markup::byte_set::ByteSet;

/// The RSS 2.0 document for `posts` (newest first), `channel` `None` for the whole site.
pub fn rss(site: &Site, channel: Option<&str>, posts: &[Post]) -> Vec<u8> {
    let mut x = String::with_capacity(feed_capacity(posts));
    let self_url = site.url(&feed_path(channel, "feed.xml"));
    x.push_str(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <rss version=\"2.0\" xmlns:atom=\"http://www.w3.org/2005/Atom\" \
         xmlns:content=\"http://purl.org/rss/1.0/modules/content/\">\n<channel>\n",
    );
    element(&mut x, "title", &feed_title(site, channel));
    element(&mut x, "link", &site.url(&stream_path(channel)));
    element(&mut x, "description", &feed_title(site, channel));
    x.push_str("<atom:link rel=\"self\" type=\"application/rss+xml\" href=\"");
    push_escaped(&mut x, &self_url);
    x.push_str("\"/>\n");
    if let Some(newest) = posts.first() {
        element(&mut x, "lastBuildDate", &time::rfc822(newest.created_at));
    }
    for post in posts {
        let link = site.url(&format!("/messages/{}", post.id));
        x.push_str("<item>\n");
        element(&mut x, "title", post.title());
        element(&mut x, "link", &link);
        x.push_str("<guid isPermaLink=\"true\">");
        push_escaped(&mut x, &link);
        x.push_str("</guid>\n");
        element(&mut x, "pubDate", &time::rfc822(post.created_at));
        element(&mut x, "category", &post.channel);
        element(&mut x, "description", &post.processed_content);
        element(&mut x, "content:encoded", &post.processed_content);
        x.push_str("</item>\n");
    }
    x.push_str("</channel>\n</rss>\n");
    x.into_bytes()
}

/// The Atom 1.0 document for `posts` (newest first), `channel` `None` for the whole site.
pub fn atom(site: &Site, channel: Option<&str>, posts: &[Post]) -> Vec<u8> {
    let mut x = String::with_capacity(feed_capacity(posts));
    let self_url = site.url(&feed_path(channel, "feed.atom"));
    // RFC 4287 §4.1.1: a feed's `updated` is its newest change; an empty feed's is the epoch,
    // which keeps the body, and so its ETag, a function of the posts alone.
    let updated = posts.first().map_or(0, |newest| newest.created_at);
    x.push_str(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <feed xmlns=\"http://www.w3.org/2005/Atom\">\n",
    );
    element(&mut x, "title", &feed_title(site, channel));
    element(&mut x, "id", &self_url);
    element(&mut x, "updated", &time::rfc3339(updated));
    x.push_str("<link rel=\"self\" type=\"application/atom+xml\" href=\"");
    push_escaped(&mut x, &self_url);
    x.push_str("\"/>\n<link rel=\"alternate\" type=\"text/html\" href=\"");
    push_escaped(&mut x, &site.url(&stream_path(channel)));
    // §4.1.1: every entry needs an author; the feed's covers them all.
    x.push_str("\"/>\n<author>");
    element(&mut x, "name", site.name());
    x.push_str("</author>\n");
    for post in posts {
        let link = site.url(&format!("/messages/{}", post.id));
        x.push_str("<entry>\n");
        element(&mut x, "title", post.title());
        element(&mut x, "id", &link);
        x.push_str("<link rel=\"alternate\" type=\"text/html\" href=\"");
        push_escaped(&mut x, &link);
        x.push_str("\"/>\n");
        element(&mut x, "published", &time::rfc3339(post.created_at));
        element(&mut x, "updated", &time::rfc3339(post.created_at));
        x.push_str("<category term=\"");
        push_escaped(&mut x, &post.channel);
        x.push_str("\"/>\n<content type=\"html\">");
        push_escaped(&mut x, &post.processed_content);
        x.push_str("</content>\n</entry>\n");
    }
    x.push_str("</feed>\n");
    x.into_bytes()
}

/// Appends `text` as XML character data or an attribute value: `&`, `<`, `>`, `"` and `'`
/// escaped, CR kept as `&#xD;` (a parser would turn a raw one into LF), and every character
/// XML 1.0 forbids dropped.
///
/// A feed is mostly the HTML of twenty posts, so this scans bytes with a table and copies
/// the runs between special bytes whole. Every special byte is ASCII or the lead byte 0xEF of
/// U+FFFE and U+FFFF, so each cut falls on a character boundary.
pub fn push_escaped(out: &mut String, text: &str) {
    let bytes = text.as_bytes();
    let mut clean_from = 0;
    let mut at = 0;
    while let Some(offset) = bytes
        .get(at..)
        .and_then(|rest| rest.iter().position(|&b| SPECIAL.contains(b)))
    {
        at += offset;
        let (replacement, len) = match bytes.get(at..).unwrap_or_default() {
            [b'&', ..] => ("&amp;", 1),
            [b'<', ..] => ("&lt;", 1),
            [b'>', ..] => ("&gt;", 1),
            [b'"', ..] => ("&quot;", 1),
            [b'\'', ..] => ("&apos;", 1),
            [b'\r', ..] => ("&#xD;", 1),
            [0xEF, 0xBF, 0xBE | 0xBF, ..] => ("", 3), // U+FFFE, U+FFFF
            [0xEF, ..] => {
                at += 1; // another character from U+F000 to U+FFFD: kept
                continue;
            }
            _ => ("", 1), // a C0 control other than tab, LF and CR
        };
        out.push_str(text.get(clean_from..at).unwrap_or_default());
        out.push_str(replacement);
        at += len;
        clean_from = at;
    }
    out.push_str(text.get(clean_from..).unwrap_or_default());
}

/// The bytes [`push_escaped`] stops at.
static SPECIAL: ByteSet = ByteSet::of(&[
    (0x00, 0x08),
    (0x0B, 0x1F), // CR among them
    (b'"', b'"'),
    (b'&', b'\''),
    (b'<', b'<'),
    (b'>', b'>'),
    (0xEF, 0xEF),
]);

/// XML 1.0 §2.2 `Char`, negated, for characters a Rust string can hold.
pub fn is_forbidden_in_xml(c: char) -> bool {
    matches!(c, '\0'..='\u{8}' | '\u{B}' | '\u{C}' | '\u{E}'..='\u{1F}' | '\u{FFFE}' | '\u{FFFF}')
}

/// `<name>text</name>` and a newline.
fn element(out: &mut String, name: &str, text: &str) {
    out.push('<');
    out.push_str(name);
    out.push('>');
    push_escaped(out, text);
    out.push_str("</");
    out.push_str(name);
    out.push_str(">\n");
}

fn feed_title(site: &Site, channel: Option<&str>) -> String {
    match channel {
        Some(channel) => format!("{} #{channel}", site.name()),
        None => site.name().to_owned(),
    }
}

fn feed_path(channel: Option<&str>, file: &str) -> String {
    match channel {
        Some(channel) => format!("/channel/{channel}/{file}"),
        None => format!("/{file}"),
    }
}

fn stream_path(channel: Option<&str>) -> String {
    match channel {
        Some(channel) => format!("/stream/channel/{channel}"),
        None => "/".to_owned(),
    }
}

/// Roughly what the feed takes: the HTML twice, escaped (about 1.2 times), and 512 bytes an
/// item.
fn feed_capacity(posts: &[Post]) -> usize {
    posts.iter().fold(1024, |total, post| {
        total.saturating_add(post.processed_content.len().saturating_mul(5) / 2 + 512)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_drops() {
        let table = [
            ("plain", "plain"),
            ("a & b < c > d", "a &amp; b &lt; c &gt; d"),
            ("\"q\" 'a'", "&quot;q&quot; &apos;a&apos;"),
            ("]]>", "]]&gt;"),
            ("\u{0}\u{1}x\u{8}\u{B}\u{C}\u{1F}y", "xy"),
            ("t\tl\nc\r", "t\tl\nc&#xD;"),
            ("\u{FFFE}\u{FFFF}\u{FFFD}", "\u{FFFD}"),
            ("\u{7F}\u{85}\u{10FFFF}é", "\u{7F}\u{85}\u{10FFFF}é"),
            (
                "\u{F000}\u{FFFD}\u{FEFF}x\u{FFFE}",
                "\u{F000}\u{FFFD}\u{FEFF}x",
            ),
        ];
        for (text, expected) in table {
            let mut out = String::new();
            push_escaped(&mut out, text);
            assert_eq!(out, expected, "{text:?}");
        }
    }

    /// The rule, one character at a time.
    fn escaped_by_chars(text: &str) -> String {
        let mut out = String::new();
        for c in text.chars() {
            match c {
                '&' => out.push_str("&amp;"),
                '<' => out.push_str("&lt;"),
                '>' => out.push_str("&gt;"),
                '"' => out.push_str("&quot;"),
                '\'' => out.push_str("&apos;"),
                '\r' => out.push_str("&#xD;"),
                c if is_forbidden_in_xml(c) => {}
                c => out.push(c),
            }
        }
        out
    }

    proptest::proptest! {
        #[test]
        fn the_byte_scan_escapes_as_the_rule_says(
            text in "(\\PC|[\\x00-\\x1F&<>\"'\u{FFFE}\u{FFFF}\u{E000}-\u{F8FF}\u{FFF0}-\u{FFFD}])*"
        ) {
            let mut out = String::new();
            push_escaped(&mut out, &text);
            proptest::prop_assert_eq!(out, escaped_by_chars(&text));
        }
    }
}
