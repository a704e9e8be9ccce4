//! What the read side says (issue 26): the route table, content negotiation, and every body
//! served over HTTP, as pure functions from the store's values to a [`Page`].
//!
//! The glue reads the store and calls one function per route; the HTTP layer
//! (`atacama_core::http`) frames the [`Page`]: status line, `Date`, `Content-Length`, the
//! `ETag`/`If-None-Match` check, `Vary: Accept` when [`Page::vary_accept`], the
//! Content-Security-Policy when [`Page::html`], and the safety headers on every response.
//!
//! - [`route`]: the request path to a [`Route`] (`None` = 404).
//! - [`Negotiated::from_accept`]: Atacama's rule, HTML when `Accept` starts with `text/html`.
//! - [`Credentials::from_authorization`]: no header, a Bearer token to check, or a `401`.
//! - [`message`], [`chain`], [`stream`]: JSON or HTML by that rule ([`json`], [`html`]).
//! - [`rss`], [`atom`]: RSS 2.0 and Atom 1.0 (RFC 4287), written by one escaping function that
//!   drops what XML 1.0 forbids ([`feed`]).
//! - [`style`], [`health`], [`metrics`], and the error bodies [`error`].
//!
//! Nothing here reads a clock: every time is a [`Post::created_at`] handed in. Every stored
//! string is escaped where it is written (maud escapes by default, serde_json and
//! `feed::push_escaped` by construction); only the markup renderer's own HTML
//! ([`Post::processed_content`]) goes into pages unescaped, and into feeds escaped once.
//!
//! Links: pages link by absolute path, `public_url`'s path prefix included (`/blog/messages/7`
//! for `https://example.org/blog`); feeds, which are read elsewhere, by absolute URL.

mod auth;
mod etag;
pub mod feed;
pub mod html;
pub mod json;
mod metrics;
mod route;
mod style;
mod time;

pub use auth::Credentials;
pub use etag::strong_etag;
pub use metrics::{Counters, HttpRequests, health, metrics};
pub use route::{FeedFormat, Route, route};
pub use style::{ICON, STYLESHEET, icon, style};
pub use time::{rfc822, rfc3339};

/// Messages per stream page (`/`, `/stream…`).
pub const STREAM_PAGE_SIZE: usize = 10;

/// Messages per feed: the newest visible ones.
pub const FEED_SIZE: usize = 20;

/// `Content-Type` of each form we serve.
pub mod content_type {
    /// Pages.
    pub const HTML: &str = "text/html; charset=utf-8";
    /// Messages, chains, streams and errors for programs (RFC 8259 §11: no charset).
    pub const JSON: &str = "application/json";
    /// `/feed.xml`, `/rss`, `/channel/{c}/feed.xml`.
    pub const RSS: &str = "application/rss+xml; charset=utf-8";
    /// `/feed.atom`, `/channel/{c}/feed.atom`.
    pub const ATOM: &str = "application/atom+xml; charset=utf-8";
    /// `/style.css`.
    pub const CSS: &str = "text/css; charset=utf-8";
    /// `/favicon.svg`.
    pub const SVG: &str = "image/svg+xml";
    /// `/healthz` and the plain error of the framing layer.
    pub const TEXT: &str = "text/plain; charset=utf-8";
    /// `/metrics`: the Prometheus text exposition format, version 0.0.4.
    pub const PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";
}

/// One response's status, headers that depend on what it says, and body. HEAD gets the same
/// value; the framing layer leaves the body out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// 200, 404, 401, 405 or 503.
    pub status: u16,
    /// The `Content-Type` header (one of [`content_type`]).
    pub content_type: &'static str,
    /// The body, whole.
    pub body: Vec<u8>,
    /// A strong `ETag`, quoted (`"89abcdef-2a10"`), for messages, chains, stream pages,
    /// feeds and the stylesheet; `None` for errors, `/healthz` and `/metrics`.
    pub etag: Option<String>,
    /// The body depends on `Accept`: send `Vary: Accept`.
    pub vary_accept: bool,
    /// An HTML page: send the Content-Security-Policy.
    pub html: bool,
}

impl Page {
    /// A 200 with a strong ETag over its form and body.
    fn ok(content_type: &'static str, body: Vec<u8>, vary_accept: bool) -> Page {
        Page {
            status: 200,
            etag: Some(strong_etag(content_type, &body)),
            html: content_type == content_type::HTML,
            content_type,
            body,
            vary_accept,
        }
    }
}

/// The form of a negotiated response (messages, chains, streams, errors).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Negotiated {
    /// A page for a browser.
    Html,
    /// JSON for a program: the default.
    Json,
}

impl Negotiated {
    /// Atacama's rule: HTML when the `Accept` value starts with `text/html` (ASCII case and
    /// leading spaces ignored), JSON otherwise, a missing header included. Browsers send
    /// `text/html,…` first; `*/*` and `application/json` get JSON.
    pub fn from_accept(accept: Option<&[u8]>) -> Negotiated {
        let value = accept.unwrap_or_default();
        let value = value.trim_ascii_start();
        match value.get(..b"text/html".len()) {
            Some(start) if start.eq_ignore_ascii_case(b"text/html") => Negotiated::Html,
            _ => Negotiated::Json,
        }
    }
}

/// The site a page belongs to: its name and where it is reached from outside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    name: String,
    public_url: String,
    path_prefix_at: usize,
}

impl Site {
    /// `public_url` as `http[s]://host[:port][/prefix]`; trailing slashes are dropped, so
    /// `https://example.org/` and `https://example.org` are one site.
    ///
    /// The prefix is for the links we print. Routing does not strip it: [`route`] takes the
    /// path as the server receives it, so a proxy serving the site under `/blog` forwards
    /// `/blog/messages/7` as `/messages/7` (nginx: `location /blog/ { proxy_pass
    /// http://127.0.0.1:2580/; }`).
    pub fn new(name: impl Into<String>, public_url: &str) -> Site {
        let public_url = public_url.trim_end_matches('/').to_owned();
        let after_scheme = public_url.find("://").map_or(0, |at| at + "://".len());
        let path_prefix_at = public_url
            .get(after_scheme..)
            .and_then(|rest| rest.find('/'))
            .map_or(public_url.len(), |at| after_scheme + at);
        Site {
            name: name.into(),
            public_url,
            path_prefix_at,
        }
    }

    /// The page and feed title (`http.site_name`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `http.public_url`, without a trailing slash.
    pub fn public_url(&self) -> &str {
        &self.public_url
    }

    /// The path part of `public_url`: `""` or `/prefix`, never ending in `/`.
    pub fn path_prefix(&self) -> &str {
        self.public_url
            .get(self.path_prefix_at..)
            .unwrap_or_default()
    }

    /// The path of a page of this site, prefix included: `path` starts with `/`.
    pub fn path(&self, path: &str) -> String {
        format!("{}{path}", self.path_prefix())
    }

    /// The absolute URL of a page of this site: `path` starts with `/`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.public_url)
    }
}

/// One stored message as the read side shows it; the glue fills it from the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Post {
    /// The store's message id.
    pub id: u64,
    /// The decoded `Subject`, if the message had one.
    pub subject: Option<String>,
    /// The text as written, markup included.
    pub content: String,
    /// The renderer's HTML (`markup::render` of `content`): the one string pages do not escape.
    pub processed_content: String,
    /// When the message was received, in seconds since the Unix epoch (UTC).
    pub created_at: u64,
    /// The message it replies to, `None` when there is none or the reader may not see it.
    pub parent_id: Option<u64>,
    /// Its channel (`[a-z0-9-]{1,32}`).
    pub channel: String,
}

impl Post {
    /// The subject as pages and feeds title the post: `(no subject)` when it has none or it
    /// is blank. JSON keeps [`Post::subject`] as stored.
    pub fn title(&self) -> &str {
        match self.subject.as_deref() {
            Some(subject) if !subject.trim().is_empty() => subject,
            _ => "(no subject)",
        }
    }
}

/// Which stream page: the channel (`None`: all visible channels) and the id the page starts
/// below (`None`: the newest).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StreamPage {
    /// `/stream/channel/{c}…`.
    pub channel: Option<String>,
    /// `…/older/{id}`: only ids below it.
    pub before: Option<u64>,
}

impl StreamPage {
    /// The path of the page after this one, which starts below `last_id`, prefix included.
    pub fn older_path(&self, site: &Site, last_id: u64) -> String {
        match &self.channel {
            Some(channel) => site.path(&format!("/stream/channel/{channel}/older/{last_id}")),
            None => site.path(&format!("/stream/older/{last_id}")),
        }
    }
}

/// `/messages/{id}` in the negotiated form.
pub fn message(site: &Site, form: Negotiated, post: &Post) -> Page {
    match form {
        Negotiated::Json => Page::ok(content_type::JSON, json::message(post), true),
        Negotiated::Html => Page::ok(content_type::HTML, html::message(site, post), true),
    }
}

/// `/messages/{id}/chain`: `posts` are the visible ancestors from the root down, the message
/// `target`, then its visible direct replies oldest first, as the glue found them.
pub fn chain(site: &Site, form: Negotiated, posts: &[Post], target: u64) -> Page {
    match form {
        Negotiated::Json => Page::ok(content_type::JSON, json::chain(posts, target), true),
        Negotiated::Html => Page::ok(content_type::HTML, html::chain(site, posts, target), true),
    }
}

/// A stream page. `posts`: the visible messages of `page`, newest first, up to
/// [`STREAM_PAGE_SIZE`]` + 1`; the one past the page size is not shown, it only says that
/// an older page exists, which then starts below the last one shown. More are ignored.
pub fn stream(site: &Site, form: Negotiated, page: &StreamPage, posts: &[Post]) -> Page {
    let shown = posts.get(..STREAM_PAGE_SIZE).unwrap_or(posts);
    let older = match (posts.len() > STREAM_PAGE_SIZE, shown.last()) {
        (true, Some(last)) => Some(page.older_path(site, last.id)),
        _ => None,
    };
    let older = older.as_deref();
    match form {
        Negotiated::Json => Page::ok(content_type::JSON, json::stream(shown, older), true),
        Negotiated::Html => Page::ok(
            content_type::HTML,
            html::stream(site, page, shown, older),
            true,
        ),
    }
}

/// The RSS 2.0 feed of `channel` (`None`: `/feed.xml`), from the newest visible `posts`,
/// newest first; only the first [`FEED_SIZE`] are used.
pub fn rss(site: &Site, channel: Option<&str>, posts: &[Post]) -> Page {
    let posts = posts.get(..FEED_SIZE).unwrap_or(posts);
    Page::ok(content_type::RSS, feed::rss(site, channel, posts), false)
}

/// The Atom 1.0 feed of `channel` (`None`: `/feed.atom`); as [`rss`].
pub fn atom(site: &Site, channel: Option<&str>, posts: &[Post]) -> Page {
    let posts = posts.get(..FEED_SIZE).unwrap_or(posts);
    Page::ok(content_type::ATOM, feed::atom(site, channel, posts), false)
}

/// The errors the read side answers with a body of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// 404: an unknown route, a missing id, or a private one without a token.
    NotFound,
    /// 401: a wrong or revoked token. The glue adds `WWW-Authenticate: Bearer`.
    Unauthorized,
    /// 405: not GET or HEAD. The glue adds `Allow: GET, HEAD`.
    MethodNotAllowed,
    /// 503: the store cannot be read, or too many connections (the glue adds `Retry-After`).
    Unavailable,
}

impl ErrorKind {
    /// The HTTP status.
    pub fn status(self) -> u16 {
        match self {
            ErrorKind::NotFound => 404,
            ErrorKind::Unauthorized => 401,
            ErrorKind::MethodNotAllowed => 405,
            ErrorKind::Unavailable => 503,
        }
    }

    /// The JSON `error` code.
    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not_found",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::MethodNotAllowed => "method_not_allowed",
            ErrorKind::Unavailable => "unavailable",
        }
    }

    /// The sentence a reader sees.
    pub fn message(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "Nothing is published at this address.",
            ErrorKind::Unauthorized => "The token is wrong or has been revoked.",
            ErrorKind::MethodNotAllowed => "Only GET and HEAD are served here.",
            ErrorKind::Unavailable => "The server cannot answer now; try again later.",
        }
    }
}

/// An error in the negotiated form: `{"error":"not_found","message":"…"}` or a page.
/// Carries `Vary: Accept` and no ETag.
pub fn error(site: &Site, form: Negotiated, kind: ErrorKind) -> Page {
    let (content_type, body) = match form {
        Negotiated::Json => (content_type::JSON, json::error(kind)),
        Negotiated::Html => (content_type::HTML, html::error(site, kind)),
    };
    Page {
        status: kind.status(),
        content_type,
        body,
        etag: None,
        vary_accept: true,
        html: form == Negotiated::Html,
    }
}

/// [`error`] with [`ErrorKind::NotFound`].
pub fn not_found(site: &Site, form: Negotiated) -> Page {
    error(site, form, ErrorKind::NotFound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_rule() {
        let table: &[(Option<&str>, Negotiated)] = &[
            (None, Negotiated::Json),
            (Some(""), Negotiated::Json),
            (Some("*/*"), Negotiated::Json),
            (Some("application/json"), Negotiated::Json),
            (Some("application/json, text/html"), Negotiated::Json),
            (Some("text/htm"), Negotiated::Json),
            (Some("text/html"), Negotiated::Html),
            (Some("TEXT/HTML;q=0.9"), Negotiated::Html),
            (
                Some(" text/html,application/xhtml+xml,*/*;q=0.8"),
                Negotiated::Html,
            ),
        ];
        for (accept, expected) in table {
            let got = Negotiated::from_accept(accept.map(str::as_bytes));
            assert_eq!(got, *expected, "{accept:?}");
        }
    }

    #[test]
    fn site_prefix() {
        let table = [
            ("https://blog.example.org", "https://blog.example.org", ""),
            ("https://blog.example.org/", "https://blog.example.org", ""),
            ("http://127.0.0.1:2580", "http://127.0.0.1:2580", ""),
            (
                "https://example.org/blog/",
                "https://example.org/blog",
                "/blog",
            ),
            ("https://example.org/a/b", "https://example.org/a/b", "/a/b"),
        ];
        for (given, url, prefix) in table {
            let site = Site::new("A", given);
            assert_eq!(
                (site.public_url(), site.path_prefix()),
                (url, prefix),
                "{given}"
            );
        }
        let site = Site::new("A", "https://example.org/blog");
        assert_eq!(site.path("/messages/1"), "/blog/messages/1");
        assert_eq!(
            site.url("/messages/1"),
            "https://example.org/blog/messages/1"
        );
    }

    fn post(id: u64) -> Post {
        Post {
            id,
            subject: Some(format!("post {id}")),
            content: "text".into(),
            processed_content: "<p>text</p>".into(),
            created_at: 1_700_000_000 + id,
            parent_id: None,
            channel: "general".into(),
        }
    }

    #[test]
    fn stream_links_older_only_when_a_post_is_past_the_page() {
        let site = Site::new("A", "https://example.org/blog");
        let posts: Vec<Post> = (1..=11).rev().map(post).collect();
        let page = StreamPage::default();
        let full = stream(&site, Negotiated::Json, &page, &posts);
        let value: serde_json::Value = serde_json::from_slice(&full.body).unwrap();
        assert_eq!(value["messages"].as_array().unwrap().len(), 10);
        assert_eq!(value["older"], "/blog/stream/older/2");
        let last = stream(&site, Negotiated::Json, &page, &posts[..10]);
        let value: serde_json::Value = serde_json::from_slice(&last.body).unwrap();
        assert_eq!(value["older"], serde_json::Value::Null);

        let channel = StreamPage {
            channel: Some("travel".into()),
            before: Some(12),
        };
        let html = stream(&site, Negotiated::Html, &channel, &posts);
        let body = String::from_utf8(html.body).unwrap();
        assert!(
            body.contains("href=\"/blog/stream/channel/travel/older/2\""),
            "{body}"
        );
        assert!(html.vary_accept && html.html);
    }

    #[test]
    fn json_and_html_of_one_message_have_different_strong_etags() {
        let site = Site::new("A", "http://127.0.0.1:2580");
        let json = message(&site, Negotiated::Json, &post(1));
        let html = message(&site, Negotiated::Html, &post(1));
        let (Some(a), Some(b)) = (&json.etag, &html.etag) else {
            panic!("no etag")
        };
        assert_ne!(a, b);
        assert!(a.starts_with('"') && a.ends_with('"') && !a.starts_with("W/"));
        assert_eq!(json.etag, message(&site, Negotiated::Json, &post(1)).etag);
        assert_ne!(json.etag, message(&site, Negotiated::Json, &post(2)).etag);
        assert_eq!((json.content_type, json.html), (content_type::JSON, false));
        assert_eq!((html.content_type, html.html), (content_type::HTML, true));
    }

    #[test]
    fn errors_by_the_accept_rule() {
        let site = Site::new("A", "http://127.0.0.1:2580");
        let json = not_found(&site, Negotiated::Json);
        assert_eq!(json.status, 404);
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&json.body).unwrap(),
            serde_json::json!({"error": "not_found", "message": ErrorKind::NotFound.message()})
        );
        for kind in [
            ErrorKind::NotFound,
            ErrorKind::Unauthorized,
            ErrorKind::MethodNotAllowed,
            ErrorKind::Unavailable,
        ] {
            let page = error(&site, Negotiated::Html, kind);
            assert_eq!(
                (page.status, page.html, page.etag.as_deref()),
                (kind.status(), true, None)
            );
            let body = String::from_utf8(page.body).unwrap();
            assert!(body.contains(&kind.status().to_string()), "{body}");
        }
    }
}
