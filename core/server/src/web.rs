//! The web read side's service (issue 26): one parsed GET or HEAD in, one response out, read
//! from the store. The same call in both runtimes, after the HTTP layer
//! (`atacama_core::http`) has parsed a request and before it frames the answer.
//!
//! ```text
//! let request = WebRequest { path, accept, authorization };   // from the parsed head
//! let response = state.respond(&request);                     // Web::respond, store reads
//! frame response.page (status, Content-Type, ETag → 304, Vary: Accept, CSP when html)
//!   + response.headers()                                      // WWW-Authenticate: Bearer
//! state.services.counters().record(status actually sent)      // 304s included
//! ```
//!
//! What this layer decides, and nothing else (the bodies are `atacama_core::web`'s):
//! - **Who reads.** No `Authorization` header: the public channels. `Bearer TOKEN` with a
//!   token that is added and not revoked: the private channels too. Any other value (a wrong
//!   or revoked token, a malformed one, another scheme such as `Basic`, an empty header; see
//!   [`Credentials`]): `401` with `WWW-Authenticate: Bearer`, on every path, before routing,
//!   so a client whose credentials failed learns it instead of silently seeing the public
//!   view.
//! - **What is missing.** An unknown path, a missing id, and anything in a channel the reader
//!   may not see (a private one without a token, one no longer configured) are the same
//!   `404`, byte for byte: nothing tells a private message from an absent one. A visible
//!   message whose parent the reader may not see shows `parent_id: null`.
//! - **When the store fails.** A read error is `503` in the negotiated form (logged, repeats
//!   held back); `/healthz` is `503` while the store is not [`Health::Working`], or a
//!   commit or probe has run longer than `limits.store_timeout_secs`.
//!
//! Each read is the store's own read transaction, so a request never waits on the commit
//! thread. Message pages are kept once built ([`cache`]: they never change); the other
//! bodies are built per request.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use atacama_core::config::Config;
use atacama_core::logging::{self, Repeats};
use atacama_core::smtp::MessageId;
use atacama_core::web::{
    self, Counters, Credentials, ErrorKind, FeedFormat, Negotiated, Page, Post, Route,
    STREAM_PAGE_SIZE, Site,
};
use atacama_store::{Health, StoreError, StoredMessage};

use crate::server::ServerState;
use crate::service::Services;

pub mod cache;

use cache::{PageCache, PageKey};

/// The parts of a parsed GET or HEAD request the read side looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebRequest<'a> {
    /// The request target in origin form, as received: `/messages/7`; a query string
    /// (`?…`) is ignored.
    pub path: &'a str,
    /// The `Accept` header's value, if any (HTML when it starts with `text/html`).
    pub accept: Option<&'a [u8]>,
    /// The `Authorization` header's value, if any.
    pub authorization: Option<&'a [u8]>,
}

/// The answer to a [`WebRequest`]: the page, and the one header that depends on who asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebResponse {
    /// Status, content type, body, ETag, `Vary: Accept`, whether HTML (the CSP).
    pub page: Page,
    /// A `401`: send `WWW-Authenticate: Bearer` ([`WWW_AUTHENTICATE`]).
    pub www_authenticate: bool,
}

/// The challenge a `401` carries (RFC 6750 §3).
pub const WWW_AUTHENTICATE: (&str, &str) = ("WWW-Authenticate", "Bearer");

impl WebResponse {
    /// The headers to add to the framing layer's own: `WWW-Authenticate: Bearer` on a `401`,
    /// none otherwise.
    pub fn headers(&self) -> &'static [(&'static str, &'static str)] {
        if self.www_authenticate {
            &[WWW_AUTHENTICATE]
        } else {
            &[]
        }
    }
}

impl From<Page> for WebResponse {
    fn from(page: Page) -> WebResponse {
        WebResponse {
            page,
            www_authenticate: false,
        }
    }
}

/// The read side of one server: the site its pages name, and the log of failed reads.
#[derive(Debug)]
pub struct Web {
    site: Site,
    /// Failed-read lines, held back while they repeat (a broken disk fails every request).
    read_failures: Mutex<Repeats>,
    /// Message pages already built.
    pages: PageCache,
}

/// Why a route has no page of its own.
enum Miss {
    /// Missing, or not visible to this reader: the one `404`.
    NotFound,
    /// The store failed: `503`.
    Store(StoreError),
}

impl From<StoreError> for Miss {
    fn from(error: StoreError) -> Miss {
        match error {
            StoreError::NoSuchMessage(_) => Miss::NotFound,
            error => Miss::Store(error),
        }
    }
}

impl Web {
    /// The read side of `site`.
    pub fn new(site: Site) -> Web {
        Web {
            site,
            read_failures: Mutex::new(Repeats::new()),
            pages: PageCache::new(),
        }
    }

    /// The site of `http.site_name` and `http.public_url`.
    pub fn from_config(config: &Config) -> Web {
        Web::new(Site::new(
            config.http.site_name.clone(),
            &config.http.public_url,
        ))
    }

    /// The site pages and feeds name and link to.
    pub fn site(&self) -> &Site {
        &self.site
    }

    /// The error page of `kind` in the form `accept` asks for: what the framing layer sends
    /// for a `405` (with `Allow: GET, HEAD`) or a `503` over the connection cap (with
    /// `Retry-After`).
    pub fn error(&self, accept: Option<&[u8]>, kind: ErrorKind) -> Page {
        web::error(&self.site, Negotiated::from_accept(accept), kind)
    }

    /// The response to a GET (or HEAD: the same page, the framing layer leaves the body out)
    /// of `request`, read from `services`' store with its channels. `counters` is called
    /// only for `/metrics`. Blocks on store reads (read transactions, never on a commit);
    /// never panics.
    pub fn respond(
        &self,
        services: &Services,
        request: &WebRequest<'_>,
        counters: impl FnOnce() -> Counters,
    ) -> WebResponse {
        let form = Negotiated::from_accept(request.accept);
        let with_token = match authorize(services, request.authorization) {
            Ok(with_token) => with_token,
            Err(Refusal::Unauthorized) => {
                return WebResponse {
                    page: web::error(&self.site, form, ErrorKind::Unauthorized),
                    www_authenticate: true,
                };
            }
            Err(Refusal::Store(error)) => return self.unavailable(form, &error).into(),
        };
        let Some(route) = web::route(request.path) else {
            return web::not_found(&self.site, form).into();
        };
        let mut reader = Reader::new(services, with_token);
        // A panic below (a store or renderer bug) is a 503 like a failed read, not a lost
        // connection: every request gets its answer.
        let page = catch_unwind(AssertUnwindSafe(|| {
            self.page(&mut reader, route, form, counters)
        }))
        .unwrap_or_else(|_| {
            Err(Miss::Store(StoreError::Database(
                "panic while reading".into(),
            )))
        });
        match page {
            Ok(page) => page.into(),
            Err(Miss::NotFound) => web::not_found(&self.site, form).into(),
            Err(Miss::Store(error)) => self.unavailable(form, &error).into(),
        }
    }

    /// The page of `route` for `reader`.
    fn page(
        &self,
        reader: &mut Reader<'_>,
        route: Route,
        form: Negotiated,
        counters: impl FnOnce() -> Counters,
    ) -> Result<Page, Miss> {
        let site = &self.site;
        let store = reader.services.store();
        Ok(match route {
            Route::Message { id } => {
                let key = PageKey::new(id, form, reader.with_token);
                if let Some(page) = self.pages.get(&key) {
                    return Ok(Page::clone(&page));
                }
                // The channel first, from the envelope alone: a hidden message is turned away
                // as quickly as a missing one, its body never read.
                if !reader.sees_message(id)? {
                    return Err(Miss::NotFound);
                }
                let message = store.message(MessageId(id))?;
                let page = web::message(site, form, &reader.post(message)?);
                if page.status == 200 {
                    self.pages.put(key, Arc::new(page.clone()));
                }
                page
            }
            Route::Chain { id } => {
                let chain = store.chain(MessageId(id), &reader.visible)?;
                let messages: Vec<StoredMessage> = chain
                    .ancestors
                    .into_iter()
                    .chain([chain.message])
                    .chain(chain.replies)
                    .collect();
                web::chain(site, form, &reader.posts(messages)?, id)
            }
            Route::Stream(page) => {
                let channels = reader.channels(page.channel.as_deref())?;
                // One past the page: whether an older page exists, and where it starts.
                let read = store.page(
                    &channels,
                    page.before.map(MessageId),
                    STREAM_PAGE_SIZE.saturating_add(1),
                )?;
                web::stream(site, form, &page, &reader.posts(read.messages)?)
            }
            Route::Feed { format, channel } => {
                let channels = reader.channels(channel.as_deref())?;
                let read = store.page(&channels, None, web::FEED_SIZE)?;
                let posts = reader.posts(read.messages)?;
                match format {
                    FeedFormat::Rss => web::rss(site, channel.as_deref(), &posts),
                    FeedFormat::Atom => web::atom(site, channel.as_deref(), &posts),
                }
            }
            Route::Style => web::style(),
            Route::Icon => web::icon(),
            Route::Health => web::health(
                store.health() == Health::Working
                    && !reader.services.store_overdue(std::time::Instant::now()),
            ),
            Route::Metrics => web::metrics(&counters()),
        })
    }

    /// A `503` for a failed read, logged unless lines like it are held back.
    fn unavailable(&self, form: Negotiated, error: &StoreError) -> Page {
        let held = self
            .read_failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .admit(Instant::now());
        if let Some(held) = held {
            logging::web_read_failed(error, held);
        }
        web::error(&self.site, form, ErrorKind::Unavailable)
    }
}

impl ServerState {
    /// [`Web::respond`] with this server's store, channels, site and counters: the one call
    /// a runtime makes per parsed GET or HEAD.
    pub fn respond(&self, request: &WebRequest<'_>) -> WebResponse {
        self.web
            .respond(&self.services, request, || self.counters())
    }

    /// What `/metrics` reports now: the live counters and the SMTP connections the gate
    /// holds.
    pub fn counters(&self) -> Counters {
        let smtp = u64::try_from(self.gate.total()).unwrap_or(u64::MAX);
        self.services.counters().snapshot(smtp)
    }
}

/// Why a request is refused before its route is looked at.
enum Refusal {
    /// A credential that is not a valid token: `401`.
    Unauthorized,
    /// The token could not be checked: `503`.
    Store(StoreError),
}

/// Whether the request carries a valid token (`Ok(true)`) or no credential at all
/// (`Ok(false)`); anything else is refused.
fn authorize(services: &Services, authorization: Option<&[u8]>) -> Result<bool, Refusal> {
    let token = match Credentials::from_authorization(authorization) {
        Credentials::Anonymous => return Ok(false),
        Credentials::Bearer(token) => token,
        Credentials::Refused => return Err(Refusal::Unauthorized),
    };
    match services.store().token_valid(token) {
        Ok(true) => Ok(true),
        Ok(false) => Err(Refusal::Unauthorized),
        Err(error) => Err(Refusal::Store(error)),
    }
}

/// One request's reader: the channels it may see, and what it learnt of parents' channels.
struct Reader<'s> {
    services: &'s Services,
    /// The request carries a valid token.
    with_token: bool,
    visible: Vec<&'s str>,
    /// Parent id → whether the reader sees it; filled as parents are looked up.
    parents: HashMap<u64, bool>,
}

impl<'s> Reader<'s> {
    fn new(services: &'s Services, with_token: bool) -> Reader<'s> {
        Reader {
            services,
            with_token,
            visible: services.channels().visible(with_token),
            parents: HashMap::new(),
        }
    }

    /// Whether the reader may see `channel`.
    fn sees(&self, channel: &str) -> bool {
        self.visible.contains(&channel)
    }

    /// The channels of a stream or feed: all the visible ones, or the one asked for if the
    /// reader sees it (a private or unknown one is the one `404`).
    fn channels<'c>(&self, channel: Option<&'c str>) -> Result<Vec<&'c str>, Miss>
    where
        's: 'c,
    {
        match channel {
            None => Ok(self.visible.clone()),
            Some(channel) if self.sees(channel) => Ok(vec![channel]),
            Some(_) => Err(Miss::NotFound),
        }
    }

    /// `messages`, all of them visible to the reader, as posts.
    fn posts(&mut self, messages: Vec<StoredMessage>) -> Result<Vec<Post>, StoreError> {
        // A parent among them (a chain's, often a page's) needs no read to be seen.
        for message in &messages {
            self.parents.insert(message.id.0, true);
        }
        messages
            .into_iter()
            .map(|message| self.post(message))
            .collect()
    }

    /// `message` as the read side shows it: its parent only if the reader sees that too.
    fn post(&mut self, message: StoredMessage) -> Result<Post, StoreError> {
        let parent_id = match message.parent_id {
            Some(parent) if self.sees_message(parent.0)? => Some(parent.0),
            _ => None,
        };
        Ok(Post {
            id: message.id.0,
            subject: message.headers.subject,
            content: message.text,
            processed_content: message.html,
            created_at: message.received_at,
            parent_id,
            channel: message.channel,
        })
    }

    /// Whether message `id` exists in a channel the reader sees; one read of its envelope per
    /// id.
    fn sees_message(&mut self, id: u64) -> Result<bool, StoreError> {
        if let Some(&seen) = self.parents.get(&id) {
            return Ok(seen);
        }
        let channel = self.services.store().message_channel(MessageId(id))?;
        let seen = channel.is_some_and(|channel| self.sees(&channel));
        self.parents.insert(id, seen);
        Ok(seen)
    }
}

#[cfg(test)]
mod tests;
