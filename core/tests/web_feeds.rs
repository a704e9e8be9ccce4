//! The feeds of `core::web`, parsed back with real feed parsers (`rss`, `atom_syndication`)
//! and a strict XML 1.0 parser (`roxmltree`), for ordinary and hostile subjects and bodies.

use atacama_core::markup;
use atacama_core::web::{self, Post, Site, content_type};
use proptest::prelude::*;

const HOSTILE: &str = "a\u{1}b\u{B}c\u{FFFE}d\u{FFFF}e]]>f<g>&h;\"'i\u{0}\u{7F}\u{1F}j\r\nk\t";
/// HOSTILE as XML can carry it: the characters XML 1.0 forbids dropped.
const HOSTILE_KEPT: &str = "abcde]]>f<g>&h;\"'i\u{7F}j\r\nk\t";

fn post(id: u64, subject: Option<&str>, text: &str, channel: &str) -> Post {
    Post {
        id,
        subject: subject.map(str::to_owned),
        content: text.to_owned(),
        processed_content: markup::render(text),
        created_at: 1_796_591_439 + id,
        parent_id: None,
        channel: channel.to_owned(),
    }
}

fn site() -> Site {
    Site::new("Atacama <&> \u{1}", "https://blog.example.org/blog/")
}

fn strict(xml: &[u8]) -> roxmltree::Document<'_> {
    let text = std::str::from_utf8(xml).expect("UTF-8");
    roxmltree::Document::parse(text).unwrap_or_else(|error| panic!("{error}:\n{text}"))
}

#[test]
fn the_strict_parser_refuses_what_xml_forbids() {
    // Otherwise the hostile tests below would prove nothing.
    assert!(roxmltree::Document::parse("<a>\u{1}</a>").is_err());
    assert!(roxmltree::Document::parse("<a>&#1;</a>").is_err());
    assert!(roxmltree::Document::parse("<a>\u{FFFE}</a>").is_err());
    assert!(roxmltree::Document::parse("<a>]]></a>").is_err());
}

#[test]
fn rss_carries_every_field() {
    let posts = [
        post(2, Some("Second <b>post</b>"), "<red>hot & ready", "travel"),
        post(1, None, "first", "general"),
    ];
    let page = web::rss(&site(), None, &posts);
    assert_eq!((page.status, page.content_type), (200, content_type::RSS));
    assert!(page.etag.is_some() && !page.vary_accept && !page.html);

    let channel = rss::Channel::read_from(&page.body[..]).expect("rss parses it");
    // `rss` trims the ends of text; the control character is dropped.
    assert_eq!(channel.title(), "Atacama <&>");
    assert_eq!(channel.link(), "https://blog.example.org/blog/");
    let items = channel.items();
    assert_eq!(items.len(), 2);
    let first = &items[0];
    assert_eq!(first.title(), Some("Second <b>post</b>"));
    let permalink = "https://blog.example.org/blog/messages/2";
    assert_eq!(first.link(), Some(permalink));
    let guid = first.guid().expect("guid");
    assert_eq!((guid.value(), guid.is_permalink()), (permalink, true));
    assert_eq!(first.pub_date(), Some("Sun, 06 Dec 2026 21:10:41 +0000"));
    assert_eq!(
        first.description(),
        Some(posts[0].processed_content.as_str())
    );
    assert_eq!(first.content(), Some(posts[0].processed_content.as_str()));
    assert!(
        first
            .description()
            .unwrap()
            .contains("<span class=\"colorblock color-red\">")
    );
    let categories: Vec<&str> = first.categories().iter().map(|c| c.name()).collect();
    assert_eq!(categories, ["travel"]);
    assert_eq!(items[1].title(), Some("(no subject)"));

    let doc = strict(&page.body);
    let self_link = doc
        .descendants()
        .find(|n| n.has_tag_name(("http://www.w3.org/2005/Atom", "link")))
        .expect("atom:link");
    assert_eq!(self_link.attribute("rel"), Some("self"));
    assert_eq!(
        self_link.attribute("href"),
        Some("https://blog.example.org/blog/feed.xml")
    );
}

#[test]
fn atom_carries_every_field() {
    let posts = [post(5, Some("Five"), "(<teal>bot) text", "general")];
    let page = web::atom(&site(), Some("general"), &posts);
    assert_eq!((page.status, page.content_type), (200, content_type::ATOM));

    let feed = atom_syndication::Feed::read_from(&page.body[..]).expect("atom parses it");
    assert_eq!(feed.title().as_str(), "Atacama <&>  #general");
    let self_url = "https://blog.example.org/blog/channel/general/feed.atom";
    assert_eq!(feed.id(), self_url);
    assert!(
        feed.links()
            .iter()
            .any(|l| l.rel() == "self" && l.href() == self_url)
    );
    assert_eq!(feed.updated().timestamp(), 1_796_591_444);
    let entry = &feed.entries()[0];
    let permalink = "https://blog.example.org/blog/messages/5";
    assert_eq!(entry.title().as_str(), "Five");
    assert_eq!(entry.id(), permalink);
    assert_eq!(entry.links()[0].href(), permalink);
    assert_eq!(entry.published().unwrap().timestamp(), 1_796_591_444);
    let content = entry.content().expect("content");
    assert_eq!(content.content_type(), Some("html"));
    assert_eq!(content.value(), Some(posts[0].processed_content.as_str()));
    assert_eq!(entry.categories()[0].term(), "general");
    strict(&page.body);
}

#[test]
fn channel_rss_links_to_its_own_feed() {
    let page = web::rss(&site(), Some("travel"), &[]);
    let doc = strict(&page.body);
    let hrefs: Vec<&str> = doc
        .descendants()
        .filter_map(|n| n.attribute("href"))
        .collect();
    assert_eq!(
        hrefs,
        ["https://blog.example.org/blog/channel/travel/feed.xml"]
    );
    let channel = rss::Channel::read_from(&page.body[..]).unwrap();
    assert_eq!(
        channel.link(),
        "https://blog.example.org/blog/stream/channel/travel"
    );
    assert!(channel.items().is_empty());
}

#[test]
fn feeds_hold_the_twenty_newest_handed_in() {
    let posts: Vec<Post> = (1..=25)
        .rev()
        .map(|id| post(id, Some("p"), "x", "general"))
        .collect();
    let rss = rss::Channel::read_from(&web::rss(&site(), None, &posts).body[..]).unwrap();
    let links: Vec<&str> = rss.items().iter().filter_map(|i| i.link()).collect();
    assert_eq!(links.len(), web::FEED_SIZE);
    assert_eq!(links[0], "https://blog.example.org/blog/messages/25");
    assert_eq!(links[19], "https://blog.example.org/blog/messages/6");
    let atom = web::atom(&site(), None, &posts);
    let feed = atom_syndication::Feed::read_from(&atom.body[..]).unwrap();
    assert_eq!(feed.entries().len(), web::FEED_SIZE);
}

#[test]
fn hostile_subjects_and_bodies_give_feeds_that_parse() {
    let posts = [post(9, Some(HOSTILE), HOSTILE, "general")];
    // The renderer drops controls itself; hand feeds the worst processed HTML too.
    let raw = Post {
        processed_content: HOSTILE.to_owned(),
        ..posts[0].clone()
    };
    for posts in [&posts[..], &[raw][..]] {
        let rss_body = web::rss(&site(), None, posts).body;
        let atom_body = web::atom(&site(), None, posts).body;

        for body in [&rss_body, &atom_body] {
            let doc = strict(body);
            let title = doc
                .descendants()
                .filter(|n| n.has_tag_name("title"))
                .nth(1)
                .expect("the item's title");
            assert_eq!(title.text(), Some(HOSTILE_KEPT));
        }
        let channel = rss::Channel::read_from(&rss_body[..]).expect("rss parses it");
        // `rss` trims the ends of text, where roxmltree above keeps every character.
        let trimmed = HOSTILE_KEPT.trim_matches(['\t', '\r', '\n', ' ']);
        assert_eq!(channel.items()[0].title(), Some(trimmed));
        let feed = atom_syndication::Feed::read_from(&atom_body[..]).expect("atom parses it");
        assert_eq!(feed.entries()[0].title().as_str(), HOSTILE_KEPT);
        let kept_html: String = posts[0]
            .processed_content
            .chars()
            .filter(|&c| !web::feed::is_forbidden_in_xml(c))
            .collect();
        assert_eq!(
            feed.entries()[0].content().unwrap().value(),
            Some(kept_html.as_str())
        );
        let trimmed_html = kept_html.trim_matches(['\t', '\r', '\n', ' ']);
        assert_eq!(channel.items()[0].content(), Some(trimmed_html));
    }
}

/// Text rich in what XML and HTML treat specially.
fn nasty_text() -> impl Strategy<Value = String> {
    let pieces = prop_oneof![
        Just("]]>".to_owned()),
        Just("<![CDATA[".to_owned()),
        Just("&amp;".to_owned()),
        Just("<red>".to_owned()),
        Just("\r\n".to_owned()),
        prop::sample::select(vec![
            '\0', '\u{1}', '\u{B}', '\u{1F}', '\u{FFFE}', '\u{FFFF}', '<', '&', '"'
        ])
        .prop_map(String::from),
        any::<String>(),
    ];
    prop::collection::vec(pieces, 0..12).prop_map(|pieces| pieces.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_subject_and_body_give_feeds_that_parse(
        subject in prop::option::of(nasty_text()),
        body in nasty_text(),
    ) {
        let posts = [post(1, subject.as_deref(), &body, "general")];
        let rss_body = web::rss(&site(), None, &posts).body;
        let atom_body = web::atom(&site(), Some("general"), &posts).body;
        let expected_title: String = posts[0]
            .title()
            .chars()
            .filter(|&c| !web::feed::is_forbidden_in_xml(c))
            .collect();
        for xml in [&rss_body, &atom_body] {
            let text = std::str::from_utf8(xml).unwrap();
            let doc = roxmltree::Document::parse(text);
            prop_assert!(doc.is_ok(), "{:?}\n{}", doc.err(), text);
            let doc = doc.unwrap();
            let title = doc.descendants().filter(|n| n.has_tag_name("title")).nth(1);
            prop_assert_eq!(title.and_then(|t| t.text()).unwrap_or(""), expected_title.as_str());
        }
        prop_assert!(rss::Channel::read_from(&rss_body[..]).is_ok());
        prop_assert!(atom_syndication::Feed::read_from(&atom_body[..]).is_ok());
    }
}
