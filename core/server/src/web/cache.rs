//! Built message pages, kept for the next reader: `/messages/{id}` is most of a read side's
//! traffic (links shared, feed readers following items), and building it is most of a
//! request's CPU (decompressing the text and HTML, escaping 10 KB into JSON).
//!
//! A message's page never changes once built: a message is never edited, its parent (and
//! that parent's channel) is fixed when it is stored, and the channels a reader sees are fixed
//! for the life of the process (the config is read once). So a page is keyed by what it
//! depends on — the id, the form, and whether the reader has a token — and needs no
//! invalidation, even with other daemons writing to a shared database. Only pages are kept,
//! never a `404`: a missing message may arrive a moment later.
//!
//! The bound is in bytes, over two generations: new pages go into the young one; once it
//! holds half the budget it becomes the old one and the previous old one is dropped. A page
//! read from the old generation moves back to the young one, so what is read often stays and
//! the rest ages out, at one hash lookup or two per request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use atacama_core::web::{Negotiated, Page};

/// Bytes of built pages kept, both generations together.
pub const CACHE_BYTES: usize = 8 << 20;

/// Pages larger than this are built for each request: one long post must not push out
/// hundreds of ordinary ones.
const MAX_PAGE_BYTES: usize = CACHE_BYTES / 16;

/// What a message page depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PageKey {
    /// The message id.
    pub id: u64,
    /// JSON or HTML.
    pub html: bool,
    /// The reader has a valid token (sees private channels, and so perhaps the parent).
    pub with_token: bool,
}

impl PageKey {
    /// The key of message `id`'s page in `form` for a reader with or without a token.
    pub fn new(id: u64, form: Negotiated, with_token: bool) -> PageKey {
        PageKey {
            id,
            html: form == Negotiated::Html,
            with_token,
        }
    }
}

/// The two generations of built pages.
#[derive(Debug, Default)]
pub struct PageCache {
    generations: Mutex<Generations>,
}

#[derive(Debug, Default)]
struct Generations {
    young: HashMap<PageKey, Arc<Page>>,
    young_bytes: usize,
    old: HashMap<PageKey, Arc<Page>>,
}

impl PageCache {
    /// An empty cache.
    pub fn new() -> PageCache {
        PageCache::default()
    }

    /// The page kept under `key`, if any.
    pub fn get(&self, key: &PageKey) -> Option<Arc<Page>> {
        let mut generations = self.lock();
        if let Some(page) = generations.young.get(key) {
            return Some(Arc::clone(page));
        }
        let page = generations.old.remove(key)?;
        generations.insert(*key, Arc::clone(&page));
        Some(page)
    }

    /// Keeps `page` under `key`, unless it is too large to.
    pub fn put(&self, key: PageKey, page: Arc<Page>) {
        if page.body.len() > MAX_PAGE_BYTES {
            return;
        }
        self.lock().insert(key, page);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Generations> {
        self.generations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Generations {
    fn insert(&mut self, key: PageKey, page: Arc<Page>) {
        let bytes = page.body.len();
        if self.young_bytes.saturating_add(bytes) > CACHE_BYTES / 2 {
            self.old = std::mem::take(&mut self.young);
            self.young_bytes = 0;
        }
        if let Some(previous) = self.young.insert(key, page) {
            // Two requests built the same page at once: count it once.
            self.young_bytes = self.young_bytes.saturating_sub(previous.body.len());
        }
        self.young_bytes = self.young_bytes.saturating_add(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(bytes: usize) -> Arc<Page> {
        Arc::new(Page {
            status: 200,
            content_type: "application/json",
            body: vec![b'x'; bytes],
            etag: None,
            vary_accept: true,
            html: false,
        })
    }

    fn key(id: u64) -> PageKey {
        PageKey::new(id, Negotiated::Json, false)
    }

    #[test]
    fn a_page_is_found_under_its_own_key_only() {
        let cache = PageCache::new();
        cache.put(key(1), page(10));
        assert_eq!(cache.get(&key(1)).map(|p| p.body.len()), Some(10));
        assert!(cache.get(&key(2)).is_none());
        assert!(
            cache
                .get(&PageKey::new(1, Negotiated::Html, false))
                .is_none()
        );
        assert!(
            cache
                .get(&PageKey::new(1, Negotiated::Json, true))
                .is_none()
        );
    }

    #[test]
    fn the_cache_holds_at_most_its_budget_and_keeps_what_is_read() {
        let cache = PageCache::new();
        let size = MAX_PAGE_BYTES;
        let per_generation = CACHE_BYTES / 2 / size;
        // Page 0 is read after every put: it must survive generations of others.
        cache.put(key(0), page(size));
        for id in 1..(per_generation as u64 * 5) {
            cache.put(key(id), page(size));
            assert!(cache.get(&key(0)).is_some(), "page 0 aged out at {id}");
            let generations = cache.lock();
            let held: usize = generations
                .young
                .values()
                .chain(generations.old.values())
                .map(|p| p.body.len())
                .sum();
            assert!(held <= CACHE_BYTES, "{held} bytes held");
        }
        // Pages nobody read again are gone.
        assert!(cache.get(&key(1)).is_none());
    }

    #[test]
    fn a_page_too_large_is_not_kept() {
        let cache = PageCache::new();
        cache.put(key(1), page(MAX_PAGE_BYTES + 1));
        assert!(cache.get(&key(1)).is_none());
    }
}
