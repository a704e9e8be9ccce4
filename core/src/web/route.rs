//! The route table: a request path to what it asks for.

use super::StreamPage;

/// What a GET or HEAD asks for. Every other path is a 404.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/messages/{id}`.
    Message {
        /// The message.
        id: u64,
    },
    /// `/messages/{id}/chain`.
    Chain {
        /// The message the chain is built around.
        id: u64,
    },
    /// `/`, `/stream`, `/stream/older/{id}`, `/stream/channel/{c}`,
    /// `/stream/channel/{c}/older/{id}`.
    Stream(StreamPage),
    /// `/feed.xml`, `/rss`, `/channel/{c}/feed.xml`, `/feed.atom`, `/channel/{c}/feed.atom`.
    Feed {
        /// RSS or Atom.
        format: FeedFormat,
        /// `None`: every visible channel.
        channel: Option<String>,
    },
    /// `/style.css`.
    Style,
    /// `/favicon.svg`: the pages name it, so a browser does not ask for a `/favicon.ico`
    /// that would be a `404` in its console.
    Icon,
    /// `/healthz`.
    Health,
    /// `/metrics`.
    Metrics,
}

/// The two feed formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedFormat {
    /// RSS 2.0.
    Rss,
    /// Atom 1.0 (RFC 4287).
    Atom,
}

impl Route {
    /// Whether the body depends on `Accept` (messages, chains, streams).
    pub fn is_negotiated(&self) -> bool {
        matches!(
            self,
            Route::Message { .. } | Route::Chain { .. } | Route::Stream(_)
        )
    }
}

/// The route of a request target in origin form (`/path?query`), `None` when there is none.
///
/// The query is ignored. The path is taken as received, relative to the server root:
/// `public_url`'s path prefix is for the links we print, and a proxy that serves the site
/// under a prefix strips it before forwarding (see `Site::new`). No percent-decoding and no
/// trailing slash (`/stream/` is a 404): each page has one address. Ids are decimal `u64`s,
/// digits only (`+7` and anything past `u64::MAX` are 404s; leading zeros name the same id);
/// channel names match `[a-z0-9-]{1,32}`.
pub fn route(target: &str) -> Option<Route> {
    let path = target.split_once('?').map_or(target, |(path, _)| path);
    let rest = path.strip_prefix('/')?;
    let segments: Vec<&str> = rest.split('/').take(6).collect();
    let route = match segments.as_slice() {
        [""] | ["stream"] => Route::Stream(StreamPage::default()),
        ["stream", "older", id] => Route::Stream(StreamPage {
            channel: None,
            before: Some(id_of(id)?),
        }),
        ["stream", "channel", channel] => Route::Stream(StreamPage {
            channel: Some(channel_of(channel)?),
            before: None,
        }),
        ["stream", "channel", channel, "older", id] => Route::Stream(StreamPage {
            channel: Some(channel_of(channel)?),
            before: Some(id_of(id)?),
        }),
        ["messages", id] => Route::Message { id: id_of(id)? },
        ["messages", id, "chain"] => Route::Chain { id: id_of(id)? },
        ["feed.xml"] | ["rss"] => feed(FeedFormat::Rss, None),
        ["feed.atom"] => feed(FeedFormat::Atom, None),
        ["channel", channel, "feed.xml"] => feed(FeedFormat::Rss, Some(channel_of(channel)?)),
        ["channel", channel, "feed.atom"] => feed(FeedFormat::Atom, Some(channel_of(channel)?)),
        ["style.css"] => Route::Style,
        ["favicon.svg"] => Route::Icon,
        ["healthz"] => Route::Health,
        ["metrics"] => Route::Metrics,
        _ => return None,
    };
    Some(route)
}

fn feed(format: FeedFormat, channel: Option<String>) -> Route {
    Route::Feed { format, channel }
}

/// A decimal `u64`, digits only: `str::parse` alone would take a leading `+`.
fn id_of(segment: &str) -> Option<u64> {
    if segment.is_empty() || !segment.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    segment.parse().ok()
}

/// A channel name, `[a-z0-9-]{1,32}`.
fn channel_of(segment: &str) -> Option<String> {
    let valid = (1..=32).contains(&segment.len())
        && segment
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    valid.then(|| segment.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(channel: Option<&str>, before: Option<u64>) -> Option<Route> {
        Some(Route::Stream(StreamPage {
            channel: channel.map(str::to_owned),
            before,
        }))
    }

    fn feed(format: FeedFormat, channel: Option<&str>) -> Option<Route> {
        Some(Route::Feed {
            format,
            channel: channel.map(str::to_owned),
        })
    }

    #[test]
    fn routes() {
        let max = "/messages/18446744073709551615";
        let table: &[(&str, Option<Route>)] = &[
            ("/", stream(None, None)),
            ("/?page=2", stream(None, None)),
            ("/stream", stream(None, None)),
            ("/stream/older/42", stream(None, Some(42))),
            ("/stream/channel/travel", stream(Some("travel"), None)),
            ("/stream/channel/a-1/older/7", stream(Some("a-1"), Some(7))),
            ("/messages/7", Some(Route::Message { id: 7 })),
            ("/messages/007", Some(Route::Message { id: 7 })),
            ("/messages/7?x=/y", Some(Route::Message { id: 7 })),
            (max, Some(Route::Message { id: u64::MAX })),
            ("/messages/7/chain", Some(Route::Chain { id: 7 })),
            ("/feed.xml", feed(FeedFormat::Rss, None)),
            ("/rss", feed(FeedFormat::Rss, None)),
            ("/feed.atom", feed(FeedFormat::Atom, None)),
            (
                "/channel/general/feed.xml",
                feed(FeedFormat::Rss, Some("general")),
            ),
            (
                "/channel/general/feed.atom",
                feed(FeedFormat::Atom, Some("general")),
            ),
            ("/style.css", Some(Route::Style)),
            ("/favicon.svg", Some(Route::Icon)),
            ("/favicon.ico", None),
            ("/healthz", Some(Route::Health)),
            ("/metrics", Some(Route::Metrics)),
            // not found
            ("", None),
            ("*", None),
            ("messages/7", None),
            ("http://host/messages/7", None),
            ("/messages/18446744073709551616", None),
            ("/messages/99999999999999999999999", None),
            ("/messages/+7", None),
            ("/messages/-7", None),
            ("/messages/", None),
            ("/messages/7/", None),
            ("/messages/7a", None),
            ("/messages/%37", None),
            ("/messages/7/chain/x", None),
            ("/messages/７", None),
            ("/stream/", None),
            ("/stream/older/", None),
            ("/stream/older/+1", None),
            ("/stream/channel/", None),
            ("/stream/channel/Travel", None),
            ("/stream/channel/a_b", None),
            ("/stream/channel/a.b", None),
            ("/stream/channel/abcdefghijklmnopqrstuvwxyz0123456", None),
            ("/stream/channel/x/older", None),
            ("/channel/x/feed.json", None),
            ("/channel//feed.xml", None),
            ("/feed.xml/", None),
            ("//", None),
            ("/Messages/7", None),
            ("/a/b/c/d/e/f/g/h", None),
        ];
        for (target, expected) in table {
            assert_eq!(&route(target), expected, "{target:?}");
        }
        assert_eq!(
            route("/stream/channel/abcdefghijklmnopqrstuvwxyz012345"),
            stream(Some("abcdefghijklmnopqrstuvwxyz012345"), None)
        );
    }

    #[test]
    fn negotiated_routes() {
        assert!(route("/messages/1").unwrap().is_negotiated());
        assert!(route("/").unwrap().is_negotiated());
        assert!(!route("/feed.xml").unwrap().is_negotiated());
        assert!(!route("/style.css").unwrap().is_negotiated());
    }
}
