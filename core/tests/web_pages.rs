//! The HTML and JSON pages of `core::web`: the page skeleton, escaping of every stored
//! string, and the links (with `public_url`'s prefix) the glue and the browser test follow.

use atacama_core::markup;
use atacama_core::web::{self, ErrorKind, Negotiated, Post, Site, StreamPage, content_type};

const EVIL: &str = "<script>alert(1)</script>\"' onload=x &amp;";

fn post(id: u64, parent_id: Option<u64>) -> Post {
    let text = format!("<red>hot {EVIL}\n* item");
    Post {
        id,
        subject: Some(format!("Subject {id} {EVIL}")),
        processed_content: markup::render(&text),
        content: text,
        created_at: 1_796_591_439,
        parent_id,
        channel: "general".into(),
    }
}

fn site() -> Site {
    Site::new(format!("Site {EVIL}"), "https://example.org/blog")
}

fn text(page: &web::Page) -> &str {
    std::str::from_utf8(&page.body).unwrap()
}

/// What every page must be: HTML5 with lang, title, viewport, our stylesheet, nothing a
/// strict CSP would block, and no stored string unescaped.
fn assert_safe_page(page: &web::Page) {
    let body = text(page);
    assert_eq!((page.content_type, page.html), (content_type::HTML, true));
    assert!(body.starts_with("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"));
    assert!(
        body.contains("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">")
    );
    assert!(
        body.contains("<link rel=\"stylesheet\" href=\"/blog/style.css\">"),
        "{body}"
    );
    assert!(body.contains("<title>"));
    assert!(body.ends_with("</html>"));
    // Text escapes `<`, so every raw `<` opens a tag: look inside each for what a strict
    // CSP would block, or an attribute that escaped its quotes.
    for tag in body.split('<').skip(1) {
        let tag = tag.split('>').next().unwrap().to_ascii_lowercase();
        let name = tag.split([' ', '/']).next().unwrap();
        assert!(
            !["script", "style", "iframe", "object", "img"].contains(&name),
            "<{tag}>"
        );
        assert_eq!(tag.matches('"').count() % 2, 0, "<{tag}>");
        let names: String = tag.split('"').step_by(2).collect();
        assert!(
            !names.contains("style=") && !names.contains(" on"),
            "<{tag}>"
        );
        assert!(!tag.contains("javascript:"), "<{tag}>");
    }
    assert!(
        body.contains("&lt;script&gt;alert(1)&lt;/script&gt;&quot;"),
        "{body}"
    );
}

#[test]
fn message_page() {
    let post = post(7, Some(3));
    let page = web::message(&site(), Negotiated::Html, &post);
    assert_eq!(page.status, 200);
    assert!(page.vary_accept && page.etag.is_some());
    assert_safe_page(&page);
    let body = text(&page);
    // The renderer's HTML goes in as is (it escaped EVIL itself), the text as written not at all.
    assert!(body.contains(&post.processed_content));
    assert!(body.contains("<span class=\"colorblock color-red\">"));
    assert!(!body.contains("&lt;red&gt;"));
    assert!(body.contains("<h1>Subject 7 &lt;script&gt;"));
    assert!(body.contains("<time datetime=\"2026-12-06T21:10:39Z\">2026-12-06 21:10 UTC</time>"));
    assert!(body.contains("href=\"/blog/stream/channel/general\""));
    assert!(body.contains("href=\"/blog/messages/7/chain\""));
    assert!(body.contains("href=\"/blog/messages/3\""));
    assert!(body.contains("href=\"/blog/feed.xml\""));
}

#[test]
fn message_json() {
    let post = post(7, None);
    let page = web::message(&site(), Negotiated::Json, &post);
    assert_eq!(
        (page.status, page.content_type, page.html),
        (200, content_type::JSON, false)
    );
    let value: serde_json::Value = serde_json::from_slice(&page.body).unwrap();
    assert_eq!(value["content"], post.content.as_str());
    assert_eq!(value["processed_content"], post.processed_content.as_str());
    assert_eq!(value["created_at"], "2026-12-06T21:10:39Z");
    assert_eq!(value["parent_id"], serde_json::Value::Null);
}

#[test]
fn chain_page_marks_the_target() {
    let posts = [post(3, None), post(7, Some(3)), post(9, Some(7))];
    let page = web::chain(&site(), Negotiated::Html, &posts, 7);
    assert_safe_page(&page);
    let body = text(&page);
    assert_eq!(body.matches("<article class=\"post").count(), 3);
    assert_eq!(body.matches("class=\"post target\"").count(), 1);
    assert!(body.contains("<article class=\"post target\" id=\"m7\" aria-current=\"page\">"));
    let first = body.find("id=\"m3\"").unwrap();
    let target = body.find("id=\"m7\"").unwrap();
    let reply = body.find("id=\"m9\"").unwrap();
    assert!(first < target && target < reply);

    let json = web::chain(&site(), Negotiated::Json, &posts, 7);
    let value: serde_json::Value = serde_json::from_slice(&json.body).unwrap();
    assert_eq!(value["chain"][1]["is_target"], true);
    assert_eq!(value["chain"][0]["is_target"], false);
    assert_ne!(json.etag, page.etag);
}

#[test]
fn stream_page_pages_older() {
    let posts: Vec<Post> = (1..=11).rev().map(|id| post(id, None)).collect();
    let page = web::stream(&site(), Negotiated::Html, &StreamPage::default(), &posts);
    assert_safe_page(&page);
    let body = text(&page);
    assert_eq!(body.matches("<article").count(), web::STREAM_PAGE_SIZE);
    assert!(!body.contains("id=\"m1\""), "the 11th is not shown");
    assert!(body.contains("<a class=\"older\" href=\"/blog/stream/older/2\" rel=\"next\">"));
    assert!(body.contains("<h2><a href=\"/blog/messages/11\">Subject 11 &lt;script&gt;"));

    let last = web::stream(
        &site(),
        Negotiated::Html,
        &StreamPage::default(),
        &posts[..3],
    );
    assert!(!text(&last).contains("class=\"older\""));
    let empty = web::stream(&site(), Negotiated::Html, &StreamPage::default(), &[]);
    assert!(text(&empty).contains("Nothing here yet."));
}

#[test]
fn channel_stream_pages_older_and_advertises_its_feeds() {
    let posts: Vec<Post> = (1..=11).rev().map(|id| post(id, None)).collect();
    let travel = StreamPage {
        channel: Some("travel".into()),
        before: Some(40),
    };
    let page = web::stream(&site(), Negotiated::Html, &travel, &posts);
    assert_safe_page(&page);
    let body = text(&page);
    assert!(body.contains("<h1>#travel</h1>"));
    assert!(body.contains("href=\"/blog/stream/channel/travel/older/2\""));
    assert!(body.contains(
        "<link rel=\"alternate\" type=\"application/rss+xml\" title=\"Site &lt;script&gt;\
         alert(1)&lt;/script&gt;&quot;' onload=x &amp;amp; #travel\" \
         href=\"/blog/channel/travel/feed.xml\">"
    ));
    assert!(body.contains("href=\"/blog/channel/travel/feed.atom\""));

    let json = web::stream(&site(), Negotiated::Json, &travel, &posts);
    let value: serde_json::Value = serde_json::from_slice(&json.body).unwrap();
    assert_eq!(value["older"], "/blog/stream/channel/travel/older/2");
    assert_eq!(value["messages"][0]["id"], 11);
}

#[test]
fn error_pages() {
    let page = web::not_found(&site(), Negotiated::Html);
    assert_eq!(page.status, 404);
    assert_safe_page(&page);
    assert!(text(&page).contains("<h1>404 Not found</h1>"));
    for kind in [
        ErrorKind::Unauthorized,
        ErrorKind::MethodNotAllowed,
        ErrorKind::Unavailable,
    ] {
        let json = web::error(&site(), Negotiated::Json, kind);
        let value: serde_json::Value = serde_json::from_slice(&json.body).unwrap();
        assert_eq!(
            (json.status, value["error"].as_str()),
            (kind.status(), Some(kind.code()))
        );
        assert_safe_page(&web::error(&site(), Negotiated::Html, kind));
    }
}

#[test]
fn style_is_served_with_an_etag() {
    let page = web::style();
    assert_eq!((page.status, page.content_type), (200, content_type::CSS));
    assert_eq!(page.body, web::STYLESHEET.as_bytes());
    assert_eq!(page.etag, web::style().etag);
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    /// Text rich in what HTML treats specially.
    fn nasty_text() -> impl Strategy<Value = String> {
        let pieces = prop_oneof![
            Just("<script>".to_owned()),
            Just("\"".to_owned()),
            Just("'".to_owned()),
            Just("&amp;".to_owned()),
            Just("<red>".to_owned()),
            Just("</p>".to_owned()),
            any::<String>(),
        ];
        prop::collection::vec(pieces, 0..10).prop_map(|pieces| pieces.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn any_target_routes_without_panic(target in ".{0,80}") {
            let _ = web::route(&target);
        }

        #[test]
        fn stored_strings_never_open_a_tag(
            subject in prop::option::of(nasty_text()),
            written in nasty_text(),
            channel in nasty_text(),
            name in nasty_text(),
        ) {
            let site = Site::new(name, "http://127.0.0.1:2580");
            let post = Post {
                id: 1,
                subject,
                processed_content: markup::render(&written),
                content: written,
                created_at: 0,
                parent_id: Some(0),
                channel,
            };
            let pages = [
                web::message(&site, Negotiated::Html, &post),
                web::chain(&site, Negotiated::Html, std::slice::from_ref(&post), 1),
                web::stream(&site, Negotiated::Html, &StreamPage::default(), std::slice::from_ref(&post)),
            ];
            for page in pages {
                let body = text(&page);
                // Remove the renderer's HTML, checked by its own allowlist: what is left
                // holds only our tags, whatever the stored strings were.
                let ours = body.replace(&post.processed_content, "");
                for tag in ours.split('<').skip(1) {
                    let name: String = tag
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '/' || *c == '!')
                        .collect();
                    prop_assert!(
                        OUR_TAGS.contains(&name.trim_start_matches('/')),
                        "<{}", tag
                    );
                    let inside = tag.split('>').next().unwrap_or_default();
                    prop_assert_eq!(inside.matches('"').count() % 2, 0, "<{}>", inside);
                }
            }
            let json = web::message(&site, Negotiated::Json, &post);
            let value: serde_json::Value = serde_json::from_slice(&json.body).unwrap();
            prop_assert_eq!(value["content"].as_str(), Some(post.content.as_str()));
            prop_assert_eq!(value["subject"].as_str(), post.subject.as_deref());
        }
    }

    const OUR_TAGS: &[&str] = &[
        "!DOCTYPE", "html", "head", "meta", "title", "link", "body", "header", "nav", "a", "main",
        "h1", "h2", "article", "p", "time", "div", "ol", "li",
    ];
}
