//! The conformance suite: what every [`Backend`] must do alike, each test a function given a
//! way to make a fresh, empty store. [`crate::conformance_tests!`] makes a `#[test]` of each
//! for one backend; `core/store/tests/conformance.rs` runs them on redb and on PostgreSQL.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use atacama_core::smtp::MessageId;

use super::new_message;
use crate::{Backend, NewMessage, StoreError};

/// The bcrypt cost of the suite's stores: the lowest, the suite checks behaviour, not cost.
pub const COST: u32 = 4;

/// A fresh store, and whatever must live as long as it (a temporary directory).
pub struct Fresh {
    backend: Box<dyn Backend>,
    _keep: Box<dyn std::any::Any>,
}

impl Fresh {
    /// `backend`, keeping `keep` until it is dropped (after the backend).
    pub fn new(backend: Box<dyn Backend>, keep: impl std::any::Any) -> Fresh {
        Fresh {
            backend,
            _keep: Box::new(keep),
        }
    }
}

impl std::ops::Deref for Fresh {
    type Target = dyn Backend;

    fn deref(&self) -> &Self::Target {
        self.backend.as_ref()
    }
}

/// Makes a fresh, empty store.
pub type Make<'a> = &'a dyn Fn() -> Fresh;

/// One `#[test]` per conformance test, each calling it with `$make` (a `fn() -> Fresh`).
#[macro_export]
macro_rules! conformance_tests {
    ($make:path) => {
        $crate::conformance_tests!(
            $make;
            users_are_added_listed_by_name_and_refused_when_invalid,
            verification_follows_password_and_status_changes,
            mail_checks_see_status_changes_made_through_the_store_at_once,
            tokens_are_43_url_safe_characters_valid_until_revoked,
            batch_ids_ascend_and_are_unique,
            a_batch_with_an_invalid_channel_stores_nothing,
            threading_follows_the_first_stored_message_id,
            a_message_round_trips_with_every_field,
            a_large_body_round_trips_byte_for_byte,
            the_list_pages_newest_first_and_filters_by_user,
            a_page_of_channels_says_whether_there_are_more,
            a_chain_skips_hidden_ancestors_and_lists_replies_oldest_first,
            missing_messages_and_users_are_named
        );
    };
    ($make:path; $($test:ident),* $(,)?) => {$(
        #[test]
        fn $test() {
            $crate::testing::conformance::$test(&$make);
        }
    )*};
}

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn message(user: &str, message_id: Option<&str>, in_reply_to: Option<&str>) -> NewMessage {
    new_message(user, message_id, in_reply_to)
}

fn in_channel(channel: &str, message_id: &str, in_reply_to: Option<&str>) -> NewMessage {
    let mut new = new_message("alice", Some(message_id), in_reply_to);
    new.channel = channel.into();
    new
}

/// Adds, duplicates, bad names and passwords; the list in byte order of the names.
pub fn users_are_added_listed_by_name_and_refused_when_invalid(make: Make<'_>) {
    let store = make();
    store.add_user("bob", "pw-b", at(100)).unwrap();
    store.add_user("alice", "pw-a", at(200)).unwrap();
    store.add_user("Zed", "pw-z", at(300)).unwrap();
    assert_eq!(
        store.add_user("alice", "other", at(400)),
        Err(StoreError::UserExists("alice".into()))
    );
    for bad in ["", "a b", "tab\there", "nul\0", &"x".repeat(255)] {
        assert!(
            matches!(
                store.add_user(bad, "pw", at(1)),
                Err(StoreError::InvalidUserName(_))
            ),
            "{bad:?}"
        );
    }
    assert_eq!(
        store.add_user("carol", "", at(1)),
        Err(StoreError::PasswordEmpty)
    );
    assert_eq!(
        store.add_user("carol", &"p".repeat(72), at(1)),
        Err(StoreError::PasswordTooLong)
    );
    store.add_user("carol", &"p".repeat(71), at(1)).unwrap();
    let users = store.users().unwrap();
    let names: Vec<&str> = users.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(names, ["Zed", "alice", "bob", "carol"]);
    let alice = store.user("alice").unwrap();
    assert_eq!(
        (alice.active, alice.created, alice.updated),
        (true, 200, 200)
    );
    assert!(store.verify_user("carol", &"p".repeat(71)).unwrap());
}

/// What MAIL asks of its login, after each change made through this store (a change made
/// elsewhere reaches a PostgreSQL store by notification: `pg::tests`).
pub fn mail_checks_see_status_changes_made_through_the_store_at_once(make: Make<'_>) {
    let store = make();
    store.add_user("alice", "secret", at(100)).unwrap();
    let active = |store: &Fresh| {
        let asked = store.login_active("alice").unwrap();
        if let Some(now) = store.login_active_now("alice") {
            assert_eq!(now.unwrap(), asked, "the answer without a wait agrees");
        }
        asked
    };
    for _ in 0..3 {
        assert!(active(&store));
        store.disable_user("alice", at(200)).unwrap();
        assert!(!active(&store));
        store.enable_user("alice", at(300)).unwrap();
        assert!(active(&store));
    }
    store.delete_user("alice").unwrap();
    assert!(!active(&store));
    assert!(!store.login_active("nobody").unwrap());
    assert!(!store.login_active("nul\0").unwrap());
}

/// Right, wrong, unknown and disabled; enable, a new password, delete.
pub fn verification_follows_password_and_status_changes(make: Make<'_>) {
    let store = make();
    store.add_user("alice", "secret", at(100)).unwrap();
    assert!(store.verify_user("alice", "secret").unwrap());
    assert!(!store.verify_user("alice", "wrong").unwrap());
    assert!(!store.verify_user("nobody", "secret").unwrap());
    assert!(!store.verify_user("nul\0", "secret").unwrap());
    store.disable_user("alice", at(200)).unwrap();
    assert!(!store.verify_user("alice", "secret").unwrap());
    let alice = store.user("alice").unwrap();
    assert_eq!(
        (alice.active, alice.created, alice.updated),
        (false, 100, 200)
    );
    store.enable_user("alice", at(300)).unwrap();
    assert!(store.verify_user("alice", "secret").unwrap());
    store.set_password("alice", "new secret", at(400)).unwrap();
    assert!(!store.verify_user("alice", "secret").unwrap());
    assert!(store.verify_user("alice", "new secret").unwrap());
    assert_eq!(store.user("alice").unwrap().updated, 400);
    assert_eq!(
        store.set_password("alice", "", at(500)),
        Err(StoreError::PasswordEmpty)
    );
    store.delete_user("alice").unwrap();
    assert!(!store.verify_user("alice", "new secret").unwrap());
    assert_eq!(store.users().unwrap(), vec![]);
}

/// A token is shown once, 43 URL-safe characters; valid until revoked.
pub fn tokens_are_43_url_safe_characters_valid_until_revoked(make: Make<'_>) {
    let store = make();
    let reader = store.add_token("reader", at(100)).unwrap();
    assert_eq!(reader.len(), 43);
    assert!(
        reader
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "{reader}"
    );
    let phone = store.add_token("phone.2", at(200)).unwrap();
    assert_ne!(reader, phone);
    assert!(store.token_valid(&reader).unwrap());
    assert!(store.token_valid(&phone).unwrap());
    assert!(!store.token_valid("").unwrap());
    assert!(!store.token_valid(&"A".repeat(43)).unwrap());
    assert!(!store.token_valid(&"A".repeat(10_000)).unwrap());
    assert_eq!(
        store.add_token("reader", at(300)),
        Err(StoreError::TokenExists("reader".into()))
    );
    for bad in ["", "a b", "a/b", &"x".repeat(65)] {
        assert!(
            matches!(
                store.add_token(bad, at(1)),
                Err(StoreError::InvalidTokenName(_))
            ),
            "{bad:?}"
        );
    }
    let listed: Vec<(String, u64)> = store
        .tokens()
        .unwrap()
        .into_iter()
        .map(|t| (t.name, t.created))
        .collect();
    assert_eq!(listed, [("phone.2".into(), 200), ("reader".into(), 100)]);
    store.revoke_token("reader").unwrap();
    assert!(!store.token_valid(&reader).unwrap());
    assert!(store.token_valid(&phone).unwrap());
    assert_eq!(
        store.revoke_token("reader"),
        Err(StoreError::NoSuchToken("reader".into()))
    );
}

/// Ids ascend within a batch and across batches, none repeated.
pub fn batch_ids_ascend_and_are_unique(make: Make<'_>) {
    let store = make();
    let batch: Vec<NewMessage> = (0..5).map(|_| message("alice", None, None)).collect();
    let first = store.insert_messages(&batch).unwrap();
    let second = store.insert_messages(&batch[..2]).unwrap();
    let one = store.insert_message(&batch[0]).unwrap();
    let all: Vec<u64> = first
        .iter()
        .chain(&second)
        .chain([&one])
        .map(|id| id.0)
        .collect();
    assert_eq!(all.len(), 8);
    assert!(all.windows(2).all(|w| w[0] < w[1]), "{all:?}");
    assert_eq!(store.insert_messages(&[]).unwrap(), vec![]);
    assert_eq!(store.messages(None, None).unwrap().len(), 8);
}

/// One message with a channel that is not a channel name fails the whole batch.
pub fn a_batch_with_an_invalid_channel_stores_nothing(make: Make<'_>) {
    let store = make();
    let mut bad = message("alice", Some("b@x"), None);
    bad.channel = "Not A Channel".into();
    let batch = [message("alice", Some("a@x"), None), bad];
    assert!(matches!(
        store.insert_messages(&batch),
        Err(StoreError::InvalidChannel(_))
    ));
    assert_eq!(store.messages(None, None).unwrap(), vec![]);
}

/// In a batch and across batches; the first stored of a repeated Message-ID keeps the
/// replies; a message never threads under itself.
pub fn threading_follows_the_first_stored_message_id(make: Make<'_>) {
    let store = make();
    let ids = store
        .insert_messages(&[
            message("alice", Some("a@x"), None),
            message("bob", Some("b@x"), Some("a@x")),
            message("bob", Some("a@x"), None), // a resent copy of a@x
            message("carol", Some("self@x"), Some("self@x")),
        ])
        .unwrap();
    let parent = |id: MessageId| store.message(id).unwrap().parent_id;
    assert_eq!(parent(ids[0]), None);
    assert_eq!(parent(ids[1]), Some(ids[0]));
    assert_eq!(parent(ids[2]), None);
    assert_eq!(parent(ids[3]), None);
    let later = store
        .insert_messages(&[
            message("dave", None, Some("a@x")),
            message("dave", None, Some("self@x")),
            message("dave", None, Some("unknown@x")),
        ])
        .unwrap();
    assert_eq!(parent(later[0]), Some(ids[0]));
    assert_eq!(parent(later[1]), Some(ids[3]));
    assert_eq!(parent(later[2]), None);
    let listed = store.messages(Some("dave"), None).unwrap();
    assert_eq!(listed[2].parent_id, Some(ids[0]));
}

/// Every field as stored, and the bytes: our `Received:` header, then the data.
pub fn a_message_round_trips_with_every_field(make: Make<'_>) {
    let store = make();
    let mut new = message("alice", Some("one@example.test"), None);
    new.parsed.problems = vec!["an attachment could not be read".into()];
    let id = store.insert_message(&new).unwrap();
    let raw = store.raw_message(id).unwrap();
    let header = new.trace.header(id.0, 1_772_546_709);
    assert_eq!(raw, [header.as_bytes(), &new.data].concat());
    let stored = store.message(id).unwrap();
    assert_eq!(stored.id, id);
    assert_eq!(stored.received_at, 1_772_546_709);
    assert_eq!(stored.user, "alice");
    assert_eq!(stored.mail_from, new.mail_from);
    assert_eq!(stored.rcpt_to, new.rcpt_to);
    assert_eq!(stored.headers, new.parsed.headers);
    assert_eq!(stored.text, new.parsed.text);
    assert_eq!(stored.html, new.html);
    assert_eq!(stored.attachments, new.parsed.attachments);
    assert_eq!(stored.problems, new.parsed.problems);
    assert_eq!(stored.size, raw.len() as u64);
    assert_eq!(stored.parent_id, None);
    assert_eq!(stored.channel, "general");
    let summary = &store.messages(None, None).unwrap()[0];
    assert_eq!(
        (summary.id, summary.subject.as_deref(), summary.size),
        (id, Some("Hello"), raw.len() as u64)
    );
}

/// A body past 1 MiB (in rows, in redb) comes back byte for byte, text and HTML too.
pub fn a_large_body_round_trips_byte_for_byte(make: Make<'_>) {
    let store = make();
    let mut new = message("alice", Some("big@x"), None);
    // Letters lz4 can hardly shrink, and every byte value in the data.
    let mut state = 0x2545_f491_u32;
    let mut letter = || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        b'a' + (state % 26) as u8
    };
    let text: String = (0..(3 << 20)).map(|_| char::from(letter())).collect();
    new.data = (0..(3 << 20) + 17).map(|n| (n % 251) as u8).collect();
    new.data.extend((0..=255u8).rev());
    new.parsed.text = text.clone();
    new.html = format!("<p>{text}</p>");
    let small = message("alice", Some("small@x"), Some("big@x"));
    let ids = store.insert_messages(&[new.clone(), small]).unwrap();
    let raw = store.raw_message(ids[0]).unwrap();
    let header = new.trace.header(ids[0].0, 1_772_546_709);
    assert!(
        raw == [header.as_bytes(), &new.data].concat(),
        "raw bytes differ"
    );
    let stored = store.message(ids[0]).unwrap();
    assert!(
        stored.text == text && stored.html == new.html,
        "text or HTML differ"
    );
    assert_eq!(stored.size, raw.len() as u64);
    assert_eq!(store.message(ids[1]).unwrap().parent_id, Some(ids[0]));
}

/// `messages_page`: newest first, `before`, `more`, only one user's.
pub fn the_list_pages_newest_first_and_filters_by_user(make: Make<'_>) {
    let store = make();
    let batch: Vec<NewMessage> = ["alice", "bob", "alice", "alice", "bob"]
        .iter()
        .map(|user| message(user, None, None))
        .collect();
    let ids = store.insert_messages(&batch).unwrap();
    let listed = |page: crate::MessagePage| -> (Vec<MessageId>, bool) {
        (page.messages.iter().map(|m| m.id).collect(), page.more)
    };
    let first = listed(store.messages_page(None, None, 2).unwrap());
    assert_eq!(first, (vec![ids[4], ids[3]], true));
    let second = listed(store.messages_page(None, Some(ids[3]), 2).unwrap());
    assert_eq!(second, (vec![ids[2], ids[1]], true));
    let last = listed(store.messages_page(None, Some(ids[1]), 2).unwrap());
    assert_eq!(last, (vec![ids[0]], false));
    let alice = listed(store.messages_page(Some("alice"), None, 2).unwrap());
    assert_eq!(alice, (vec![ids[3], ids[2]], true));
    let alice = listed(store.messages_page(Some("alice"), Some(ids[2]), 2).unwrap());
    assert_eq!(alice, (vec![ids[0]], false));
    let nobody = listed(store.messages_page(Some("nobody"), None, 2).unwrap());
    assert_eq!(nobody, (vec![], false));
    assert_eq!(store.messages(Some("bob"), Some(1)).unwrap()[0].id, ids[4]);
    assert_eq!(store.messages(None, None).unwrap().len(), 5);
}

/// `page`: the newest of the channels asked for, below `before`, and whether more match.
pub fn a_page_of_channels_says_whether_there_are_more(make: Make<'_>) {
    let store = make();
    let batch: Vec<NewMessage> = ["general", "private", "news", "general", "news", "general"]
        .iter()
        .enumerate()
        .map(|(n, channel)| in_channel(channel, &format!("{n}@x"), None))
        .collect();
    let ids = store.insert_messages(&batch).unwrap();
    let page = |channels: &[&str], before: Option<MessageId>, limit: usize| {
        let page = store.page(channels, before, limit).unwrap();
        let ids: Vec<MessageId> = page.messages.iter().map(|m| m.id).collect();
        (ids, page.more)
    };
    assert_eq!(
        page(&["general", "news"], None, 3),
        (vec![ids[5], ids[4], ids[3]], true)
    );
    assert_eq!(
        page(&["general", "news", "general"], Some(ids[3]), 3),
        (vec![ids[2], ids[0]], false)
    );
    assert_eq!(page(&["private"], None, 10), (vec![ids[1]], false));
    assert_eq!(
        page(&["general"], None, 3),
        (vec![ids[5], ids[3], ids[0]], false)
    );
    assert_eq!(page(&["nowhere"], None, 3), (vec![], false));
    assert_eq!(page(&[], None, 3), (vec![], false));
    let full = store.page(&["general"], None, 1).unwrap();
    assert_eq!(full.messages[0].text, "Hi *there*");
    assert_eq!(full.messages[0].html, "<p>Hi <b>there</b></p>");
}

/// Ancestors root first, a hidden one skipped; replies oldest first, hidden ones left out;
/// a hidden message is no message.
pub fn a_chain_skips_hidden_ancestors_and_lists_replies_oldest_first(make: Make<'_>) {
    let store = make();
    let ids = store
        .insert_messages(&[
            in_channel("general", "root@x", None),
            in_channel("private", "hidden@x", Some("root@x")),
            in_channel("general", "middle@x", Some("hidden@x")),
            in_channel("general", "reply1@x", Some("middle@x")),
            in_channel("private", "reply2@x", Some("middle@x")),
            in_channel("general", "reply3@x", Some("middle@x")),
        ])
        .unwrap();
    let chain = store.chain(ids[2], &["general"]).unwrap();
    let of = |messages: &[crate::StoredMessage]| messages.iter().map(|m| m.id).collect::<Vec<_>>();
    assert_eq!(of(&chain.ancestors), [ids[0]]);
    assert_eq!(chain.message.id, ids[2]);
    assert_eq!(chain.message.text, "Hi *there*");
    assert_eq!(of(&chain.replies), [ids[3], ids[5]]);
    let all = store.chain(ids[2], &["general", "private"]).unwrap();
    assert_eq!(of(&all.ancestors), [ids[0], ids[1]]);
    assert_eq!(of(&all.replies), [ids[3], ids[4], ids[5]]);
    let root = store.chain(ids[0], &["general"]).unwrap();
    assert_eq!((of(&root.ancestors), of(&root.replies)), (vec![], vec![]));
    assert_eq!(
        store.chain(ids[1], &["general"]),
        Err(StoreError::NoSuchMessage(ids[1].0))
    );
    assert_eq!(
        store.message_channel(ids[1]).unwrap().as_deref(),
        Some("private")
    );
}

/// Missing messages and users are named in the error.
pub fn missing_messages_and_users_are_named(make: Make<'_>) {
    let store = make();
    let id = store.insert_message(&message("alice", None, None)).unwrap();
    let missing = MessageId(id.0 + 1000);
    assert_eq!(
        store.message(missing),
        Err(StoreError::NoSuchMessage(missing.0))
    );
    assert_eq!(
        store.raw_message(missing),
        Err(StoreError::NoSuchMessage(missing.0))
    );
    assert_eq!(
        store.message(MessageId(u64::MAX)),
        Err(StoreError::NoSuchMessage(u64::MAX))
    );
    assert_eq!(
        store.chain(missing, &["general"]),
        Err(StoreError::NoSuchMessage(missing.0))
    );
    assert_eq!(store.message_channel(missing), Ok(None));
    assert_eq!(
        store.message_channel(id).unwrap().as_deref(),
        Some("general")
    );
    let nobody = || StoreError::NoSuchUser("nobody".into());
    assert_eq!(store.user("nobody"), Err(nobody()));
    assert_eq!(store.delete_user("nobody"), Err(nobody()));
    assert_eq!(store.enable_user("nobody", at(1)), Err(nobody()));
    assert_eq!(store.disable_user("nobody", at(1)), Err(nobody()));
    assert_eq!(store.set_password("nobody", "pw", at(1)), Err(nobody()));
    assert_eq!(
        store.revoke_token("nobody"),
        Err(StoreError::NoSuchToken("nobody".into()))
    );
}

/// A store with users (one disabled), tokens (one revoked), a thread across channels and a
/// body past 1 MiB, copied into a fresh store of the other kind (`other`) and
/// back into one of this kind: every read answers the same on all three, the passwords and
/// the token still work, the next delivery gets a new id, and a second copy is refused.
pub fn a_copy_to_another_backend_and_back_reads_the_same(make: Make<'_>, other: Make<'_>) {
    use crate::copy::{copy, verify};

    let store = make();
    store.add_user("alice", "pw-a", at(100)).unwrap();
    store.add_user("bob", "pw-b", at(200)).unwrap();
    store.disable_user("bob", at(300)).unwrap();
    let reader = store.add_token("reader", at(400)).unwrap();
    let gone = store.add_token("gone", at(500)).unwrap();
    store.revoke_token("gone").unwrap();
    let mut large = in_channel("general", "large@x", Some("root@x"));
    // Bytes lz4 cannot shrink: the body stays past 1 MiB as stored, in rows.
    let mut state = 0x2545_f491_u32;
    large.data = (0..(3 << 19))
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as u8
        })
        .collect();
    large.parsed.text = "large ".repeat(1000);
    let mut ids = store
        .insert_messages(&[
            in_channel("general", "root@x", None),
            in_channel("private", "hidden@x", Some("root@x")),
            in_channel("general", "reply@x", Some("hidden@x")),
        ])
        .unwrap();
    ids.extend(store.insert_messages(&[large]).unwrap());
    ids.push(
        store
            .insert_message(&in_channel("general", "last@x", Some("large@x")))
            .unwrap(),
    );

    // Bounded batches: the large message comes alone, and ends a batch it does not fit.
    let batch = |after: MessageId| -> Vec<MessageId> {
        let batch = store.export_messages(Some(after), 64 << 10).unwrap();
        batch.iter().map(|m| m.id()).collect()
    };
    assert_eq!(batch(ids[0]), [ids[1], ids[2]]);
    assert_eq!(batch(ids[2]), [ids[3]]);
    assert_eq!(store.export_messages(None, 1).unwrap().len(), 1);

    let there = other();
    let copied = copy(&*store, &*there).unwrap();
    assert_eq!(
        (copied.users, copied.tokens, copied.messages),
        (2, 1, ids.len() as u64)
    );
    let verified = verify(&*store, &*there).unwrap();
    assert_eq!(verified.messages, ids.len() as u64);
    let back = make();
    copy(&*there, &*back).unwrap();
    assert_eq!(verify(&*there, &*back).unwrap(), verified);

    let all: &[&str] = &["general", "private"];
    for copy in [&there, &back] {
        for &id in &ids {
            assert_eq!(copy.message(id).unwrap(), store.message(id).unwrap());
            assert!(copy.raw_message(id).unwrap() == store.raw_message(id).unwrap());
            assert_eq!(copy.chain(id, all).unwrap(), store.chain(id, all).unwrap());
            assert_eq!(copy.chain(id, &["general"]), store.chain(id, &["general"]));
        }
        assert_eq!(
            copy.page(all, None, 10).unwrap(),
            store.page(all, None, 10).unwrap()
        );
        assert_eq!(copy.users().unwrap(), store.users().unwrap());
        assert_eq!(copy.tokens().unwrap(), store.tokens().unwrap());
        assert!(copy.verify_user("alice", "pw-a").unwrap());
        assert!(!copy.verify_user("bob", "pw-b").unwrap());
        assert!(copy.token_valid(&reader).unwrap());
        assert!(!copy.token_valid(&gone).unwrap());
    }
    let largest = ids.iter().map(|id| id.0).max().unwrap();
    let next = there.insert_message(&message("alice", None, None)).unwrap();
    assert!(next.0 > largest, "{next} after {largest}");
    let next = back.insert_message(&message("alice", None, None)).unwrap();
    assert!(next.0 > largest, "{next} after {largest}");
    a_copy_is_refused_and_differs(&*store, &*there);
}

/// `there` holds some of `store` but not all: `copy` refuses it, and `verify` finds a
/// difference.
fn a_copy_is_refused_and_differs(store: &dyn Backend, there: &dyn Backend) {
    use crate::copy::{CopyError, copy, verify};

    assert!(matches!(
        copy(store, there),
        Err(CopyError::NotEmpty { .. })
    ));
    assert!(matches!(verify(store, there), Err(CopyError::Differs(_))));
}

/// A copy that stopped (here: the source got more messages after it) goes on with `resume`,
/// which copies only what the target lacks; `copy` refuses the target, and `resume` refuses
/// one that is not a copy of the source that stopped.
pub fn a_stopped_copy_goes_on_with_resume(make: Make<'_>, other: Make<'_>) {
    use crate::copy::{CopyError, copy, resume, verify};

    let store = make();
    store.add_user("alice", "pw-a", at(100)).unwrap();
    store.add_token("reader", at(200)).unwrap();
    let first = store
        .insert_messages(&[
            in_channel("general", "root@x", None),
            in_channel("general", "reply@x", Some("root@x")),
        ])
        .unwrap();
    let there = other();
    // Nothing there yet: a whole copy.
    let copied = resume(&*store, &*there).unwrap();
    assert_eq!((copied.users, copied.tokens, copied.messages), (1, 1, 2));
    let later = store
        .insert_messages(&[
            in_channel("general", "later@x", Some("reply@x")),
            in_channel("private", "last@x", None),
        ])
        .unwrap();
    a_copy_is_refused_and_differs(&*store, &*there);
    let copied = resume(&*store, &*there).unwrap();
    assert_eq!((copied.users, copied.tokens, copied.messages), (0, 0, 2));
    assert_eq!(verify(&*store, &*there).unwrap().messages, 4);
    for id in first.iter().chain(&later) {
        assert_eq!(there.message(*id).unwrap(), store.message(*id).unwrap());
    }
    assert_eq!(resume(&*store, &*there).unwrap().messages, 0);

    // Other users: not a copy of this store.
    let elsewhere = other();
    elsewhere.add_user("mallory", "pw-m", at(100)).unwrap();
    assert!(matches!(
        resume(&*store, &*elsewhere),
        Err(CopyError::Differs(why)) if why.contains("other users or tokens")
    ));
    // A message the source never had: not a copy of it either.
    let ahead = other();
    copy(&*store, &*ahead).unwrap();
    let extra = ahead
        .insert_message(&in_channel("general", "extra@x", None))
        .unwrap();
    assert!(matches!(
        resume(&*store, &*ahead),
        Err(CopyError::Differs(why)) if why.contains(&format!("message {extra}"))
    ));
}
