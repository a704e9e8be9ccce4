//! The HTML pages, with maud: every `(value)` is escaped, and only the renderer's own HTML
//! goes in as `PreEscaped` (its output vocabulary is fixed, spec §7).
//!
//! HTML5 with `lang`, a `<title>`, a viewport meta and one stylesheet, `/style.css`; no
//! script, no inline style and no `style` attribute, so the Content-Security-Policy
//! `default-src 'none'; style-src 'self'` holds. Links are absolute paths carrying
//! `public_url`'s prefix.

use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::{ErrorKind, Post, Site, StreamPage, time};

/// `/messages/{id}`.
pub fn message(site: &Site, post: &Post) -> Vec<u8> {
    let title = format!("{} · {}", post.title(), site.name());
    let body = html! {
        (post_article(site, post, Heading::Page, false))
        nav.links {
            a href=(site.path(&format!("/messages/{}/chain", post.id))) { "Conversation" }
            @if let Some(parent) = post.parent_id {
                " · "
                a href=(site.path(&format!("/messages/{parent}"))) rel="prev" { "In reply to" }
            }
        }
    };
    layout(site, &title, None, body)
}

/// `/messages/{id}/chain`: `posts` in chain order, the one whose id is `target` marked.
pub fn chain(site: &Site, posts: &[Post], target: u64) -> Vec<u8> {
    let target_subject = posts
        .iter()
        .find(|post| post.id == target)
        .map_or("Conversation", Post::title);
    let title = format!("Conversation: {target_subject} · {}", site.name());
    let body = html! {
        h1 { "Conversation" }
        ol.chain {
            @for post in posts {
                li { (post_article(site, post, Heading::Link, post.id == target)) }
            }
        }
    };
    layout(site, &title, None, body)
}

/// A stream page: `posts` newest first, and the path of the older page if there is one.
pub fn stream(site: &Site, page: &StreamPage, posts: &[Post], older: Option<&str>) -> Vec<u8> {
    let heading = match &page.channel {
        Some(channel) => format!("#{channel}"),
        None => "Latest posts".to_owned(),
    };
    let title = match (&page.channel, page.before) {
        (None, None) => site.name().to_owned(),
        _ => format!("{heading} · {}", site.name()),
    };
    let body = html! {
        h1 { (heading) }
        @if posts.is_empty() {
            p.empty { "Nothing here yet." }
        }
        @for post in posts {
            (post_article(site, post, Heading::Link, false))
        }
        @if let Some(older) = older {
            nav.pager {
                a.older href=(older) rel="next" { "Older posts" }
            }
        }
    };
    layout(site, &title, page.channel.as_deref(), body)
}

/// The page of an error.
pub fn error(site: &Site, kind: ErrorKind) -> Vec<u8> {
    let heading = match kind {
        ErrorKind::NotFound => "Not found",
        ErrorKind::Unauthorized => "Unauthorized",
        ErrorKind::MethodNotAllowed => "Method not allowed",
        ErrorKind::Unavailable => "Unavailable",
    };
    let title = format!("{} {heading} · {}", kind.status(), site.name());
    let body = html! {
        h1 { (kind.status()) " " (heading) }
        p { (kind.message()) }
        p { a href=(site.path("/")) { "Latest posts" } }
    };
    layout(site, &title, None, body)
}

/// How a post's subject is shown.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Heading {
    /// The page's `h1`.
    Page,
    /// An `h2` linking to the post's page.
    Link,
}

fn post_article(site: &Site, post: &Post, heading: Heading, is_target: bool) -> Markup {
    let href = site.path(&format!("/messages/{}", post.id));
    let created = time::rfc3339(post.created_at);
    html! {
        article.post.target[is_target] id=(format!("m{}", post.id))
            aria-current=[is_target.then_some("page")] {
            header {
                @match heading {
                    Heading::Page => h1 { (post.title()) },
                    Heading::Link => h2 { a href=(href) { (post.title()) } },
                }
                p.meta {
                    time datetime=(created) { (readable(&created)) }
                    " in "
                    a.channel href=(site.path(&format!("/stream/channel/{}", post.channel))) {
                        "#" (post.channel)
                    }
                }
            }
            div.content { (PreEscaped(&post.processed_content)) }
        }
    }
}

/// The page around `main`. `channel`: the channel whose feeds the page advertises (`None`:
/// the whole site's).
fn layout(site: &Site, title: &str, channel: Option<&str>, main: Markup) -> Vec<u8> {
    let (rss, atom, feed_title) = match channel {
        Some(channel) => (
            site.path(&format!("/channel/{channel}/feed.xml")),
            site.path(&format!("/channel/{channel}/feed.atom")),
            format!("{} #{channel}", site.name()),
        ),
        None => (
            site.path("/feed.xml"),
            site.path("/feed.atom"),
            site.name().to_owned(),
        ),
    };
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) }
                link rel="stylesheet" href=(site.path("/style.css"));
                link rel="icon" type="image/svg+xml" href=(site.path("/favicon.svg"));
                link rel="alternate" type="application/rss+xml" title=(feed_title) href=(rss);
                link rel="alternate" type="application/atom+xml" title=(feed_title) href=(atom);
            }
            body {
                header.site {
                    a.site-name href=(site.path("/")) { (site.name()) }
                    nav { a href=(rss) { "RSS" } " " a href=(atom) { "Atom" } }
                }
                main { (main) }
            }
        }
    };
    page.into_string().into_bytes()
}

/// `2026-12-06T21:10:39Z` as `2026-12-06 21:10 UTC`.
fn readable(rfc3339: &str) -> String {
    match (rfc3339.get(..10), rfc3339.get(11..16)) {
        (Some(date), Some(time)) => format!("{date} {time} UTC"),
        _ => rfc3339.to_owned(),
    }
}
