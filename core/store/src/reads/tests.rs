//! Channels, pages, chains and tokens; the schema-5 migration.

use std::time::{Duration, UNIX_EPOCH};

use super::super::testing::new_message;
use super::super::tests::{crash_copy, temp_db};
use super::super::*;
use atacama_core::smtp::MessageId;

const COST: u32 = 4;

/// A message in `channel`, with a Message-ID and perhaps a parent's.
fn post(channel: &str, message_id: &str, in_reply_to: Option<&str>) -> NewMessage {
    let mut message = new_message("alice", Some(message_id), in_reply_to);
    message.channel = channel.into();
    message
}

fn ids(page: &Page) -> Vec<u64> {
    page.messages.iter().map(|m| m.id.0).collect()
}

#[test]
fn every_message_keeps_the_channel_it_was_given() {
    let t = temp_db();
    let store = Store::open(&t.path, COST).unwrap();
    store.insert_message(&post("general", "a@x", None)).unwrap();
    store.insert_message(&post("travel", "b@x", None)).unwrap();
    assert_eq!(store.message(MessageId(1)).unwrap().channel, "general");
    assert_eq!(store.message(MessageId(2)).unwrap().channel, "travel");
    let listed: Vec<String> = store
        .messages(None, None)
        .unwrap()
        .into_iter()
        .map(|m| m.channel)
        .collect();
    assert_eq!(listed, ["travel", "general"]);
    assert_eq!(
        store.message_channel(MessageId(2)).unwrap().as_deref(),
        Some("travel")
    );
    assert_eq!(store.message_channel(MessageId(9)).unwrap(), None);
    // Not a channel name: refused before anything is written.
    for bad in ["", "Travel", "a b"] {
        assert!(matches!(
            store.insert_message(&post(bad, "c@x", None)),
            Err(StoreError::InvalidChannel(_))
        ));
    }
    assert_eq!(store.messages(None, None).unwrap().len(), 2);
}

#[test]
fn pages_of_channels_go_newest_first_with_before_and_more() {
    let t = temp_db();
    let store = Store::open(&t.path, COST).unwrap();
    // 1 a, 2 b, 3 c, 4 a, 5 b, … 12 c
    let batch: Vec<NewMessage> = (1..=12)
        .map(|n| post(["a", "b", "c"][(n - 1) % 3], &format!("{n}@x"), None))
        .collect();
    store.insert_messages(&batch).unwrap();

    let page = store.page(&["a"], None, 2).unwrap();
    assert_eq!((ids(&page), page.more), (vec![10, 7], true));
    let page = store.page(&["a"], Some(MessageId(7)), 2).unwrap();
    assert_eq!((ids(&page), page.more), (vec![4, 1], false));
    let page = store.page(&["a"], Some(MessageId(1)), 2).unwrap();
    assert_eq!((ids(&page), page.more), (vec![], false));

    let page = store.page(&["a", "c"], None, 5).unwrap();
    assert_eq!((ids(&page), page.more), (vec![12, 10, 9, 7, 6], true));
    let page = store.page(&["c", "a", "c"], Some(MessageId(6)), 5).unwrap();
    assert_eq!((ids(&page), page.more), (vec![4, 3, 1], false));
    // Exactly `limit` left: no more.
    let page = store.page(&["b"], None, 4).unwrap();
    assert_eq!((ids(&page), page.more), (vec![11, 8, 5, 2], false));
    // The feed: the newest 20 of the visible channels, bodies included.
    let feed = store.page(&["a", "b", "c"], None, 20).unwrap();
    assert_eq!(ids(&feed), (1..=12).rev().collect::<Vec<_>>());
    assert_eq!(feed.messages[0].html, "<p>Hi <b>there</b></p>");
    assert_eq!(feed.messages[0].text, "Hi *there*");

    assert_eq!(
        ids(&store.page(&["nope"], None, 5).unwrap()),
        Vec::<u64>::new()
    );
    assert_eq!(ids(&store.page(&[], None, 5).unwrap()), Vec::<u64>::new());
    let none = store.page(&["a"], None, 0).unwrap();
    assert_eq!((ids(&none), none.more), (vec![], true));
    assert_eq!(
        store
            .page(&["a", "b", "c"], None, usize::MAX)
            .unwrap()
            .messages
            .len(),
        12
    );
}

#[test]
fn a_page_asks_for_no_more_than_max_page() {
    let t = temp_db();
    let store = Store::open(&t.path, COST).unwrap();
    let batch: Vec<NewMessage> = (0..MAX_PAGE + 3)
        .map(|n| post("a", &format!("{n}@x"), None))
        .collect();
    store.insert_messages(&batch).unwrap();
    let page = store.page(&["a"], None, usize::MAX).unwrap();
    assert_eq!((page.messages.len(), page.more), (MAX_PAGE, true));
}

#[test]
fn a_chain_is_the_ancestors_from_the_root_the_message_then_its_replies_oldest_first() {
    let t = temp_db();
    let store = Store::open(&t.path, COST).unwrap();
    store
        .insert_messages(&[
            post("general", "root@x", None),               // 1
            post("secret", "mid@x", Some("root@x")),       // 2, private
            post("general", "target@x", Some("mid@x")),    // 3
            post("general", "r1@x", Some("target@x")),     // 4
            post("secret", "r2@x", Some("target@x")),      // 5, private
            post("travel", "r3@x", Some("target@x")),      // 6
            post("general", "grandchild@x", Some("r1@x")), // 7: not a direct reply
            post("general", "other@x", None),              // 8
        ])
        .unwrap();
    let ids = |list: &[StoredMessage]| list.iter().map(|m| m.id.0).collect::<Vec<_>>();

    let all = store
        .chain(MessageId(3), &["general", "secret", "travel"])
        .unwrap();
    assert_eq!(ids(&all.ancestors), [1, 2]);
    assert_eq!(all.message.id, MessageId(3));
    assert_eq!(ids(&all.replies), [4, 5, 6]);
    assert_eq!(all.replies[0].html, "<p>Hi <b>there</b></p>");

    // Without the private channel: the walk goes on above the hidden parent.
    let public = store.chain(MessageId(3), &["general", "travel"]).unwrap();
    assert_eq!(
        (ids(&public.ancestors), ids(&public.replies)),
        (vec![1], vec![4, 6])
    );

    let root = store.chain(MessageId(1), &["general"]).unwrap();
    assert_eq!((ids(&root.ancestors), ids(&root.replies)), (vec![], vec![]));
    let lone = store.chain(MessageId(8), &["general"]).unwrap();
    assert_eq!((ids(&lone.ancestors), ids(&lone.replies)), (vec![], vec![]));

    for (id, channels) in [(2, &["general"][..]), (99, &["general"][..]), (3, &[][..])] {
        assert_eq!(
            store.chain(MessageId(id), channels),
            Err(StoreError::NoSuchMessage(id))
        );
    }
}

#[test]
fn a_chain_follows_at_most_max_chain_depth_ancestors_and_lists_at_most_max_chain_replies() {
    let t = temp_db();
    let store = Store::open(&t.path, COST).unwrap();
    let depth = MAX_CHAIN_DEPTH + 5;
    let mut batch = vec![post("a", "0@x", None)];
    for n in 1..=depth {
        batch.push(post("a", &format!("{n}@x"), Some(&format!("{}@x", n - 1))));
    }
    store.insert_messages(&batch).unwrap();
    let last = MessageId(depth as u64 + 1);
    let chain = store.chain(last, &["a"]).unwrap();
    assert_eq!(chain.ancestors.len(), MAX_CHAIN_DEPTH);
    // The nearest ones, from the highest reached down to the parent.
    assert_eq!(chain.ancestors.last().unwrap().id, MessageId(last.0 - 1));
    assert_eq!(
        chain.ancestors[0].id,
        MessageId(last.0 - MAX_CHAIN_DEPTH as u64)
    );

    let replies: Vec<NewMessage> = (0..MAX_CHAIN_REPLIES + 2)
        .map(|n| post("a", &format!("reply{n}@x"), Some("0@x")))
        .collect();
    store.insert_messages(&replies).unwrap();
    let root = store.chain(MessageId(1), &["a"]).unwrap();
    assert_eq!(root.replies.len(), MAX_CHAIN_REPLIES);
    // Oldest first: the chain's own message 2, then the first replies.
    assert_eq!(root.replies[0].id, MessageId(2));
    assert_eq!(root.replies[1].id, MessageId(last.0 + 1));
}

/// A file as schema 4 wrote it (envelopes without a channel, no channel or reply index) is
/// migrated when opened: its messages get the opener's default channel, for good.
#[test]
fn a_schema_4_file_is_migrated_on_open_into_the_default_channel() {
    let t = temp_db();
    {
        let store = Store::open(&t.path, COST).unwrap();
        store
            .insert_messages(&[
                post("general", "root@x", None),
                post("general", "reply@x", Some("root@x")),
            ])
            .unwrap();
        let mut big = post("general", "big@x", None);
        big.data = super::super::tests::noise(3 << 20, 1);
        store.insert_message(&big).unwrap();
        store.with_db(schema::downgrade_to_schema_4).unwrap();
        assert_eq!(store.with_db(schema::stored_version).unwrap(), Some(4));
        assert_eq!(store.with_db(schema::legacy_channel).unwrap(), None);
    }
    let store = Store::open_with_channel(&t.path, COST, "travel").unwrap();
    assert_eq!(
        store.with_db(schema::stored_version).unwrap(),
        Some(SCHEMA_VERSION)
    );
    assert_eq!(store.legacy_channel(), "travel");
    for id in 1..=3 {
        assert_eq!(store.message(MessageId(id)).unwrap().channel, "travel");
    }
    assert_eq!(ids(&store.page(&["travel"], None, 10).unwrap()), [3, 2, 1]);
    assert_eq!(
        ids(&store.page(&["general"], None, 10).unwrap()),
        Vec::<u64>::new()
    );
    let chain = store.chain(MessageId(1), &["travel"]).unwrap();
    assert_eq!(chain.replies.len(), 1);
    assert_eq!(chain.replies[0].id, MessageId(2));
    assert!(store.raw_message(MessageId(3)).unwrap().len() > 3 << 20);
    // New messages have their own channel beside the old ones.
    store
        .insert_message(&post("general", "new@x", Some("root@x")))
        .unwrap();
    assert_eq!(ids(&store.page(&["general"], None, 10).unwrap()), [4]);
    let chain = store.chain(MessageId(1), &["travel", "general"]).unwrap();
    assert_eq!(
        chain.replies.iter().map(|m| m.id.0).collect::<Vec<_>>(),
        [2, 4]
    );
    drop(store);
    // Migrated once: a later default moves nothing.
    let store = Store::open_with_channel(&t.path, COST, "other").unwrap();
    assert_eq!(store.legacy_channel(), "travel");
    assert_eq!(store.message(MessageId(1)).unwrap().channel, "travel");
    assert_eq!(ids(&store.page(&["travel"], None, 10).unwrap()), [3, 2, 1]);
}

#[test]
fn a_default_channel_that_is_not_a_channel_name_is_refused() {
    let t = temp_db();
    assert!(matches!(
        Store::open_with_channel(&t.path, COST, "Not one"),
        Err(StoreError::InvalidChannel(_))
    ));
}

/// A journal replay indexes what it applies, by the channel and parent in its values.
#[test]
fn messages_recovered_from_the_journal_are_in_their_channel_and_under_their_parent() {
    let t = temp_db();
    let store = Store::open(&t.path, COST).unwrap();
    store.insert_message(&post("a", "root@x", None)).unwrap();
    store.checkpoint().unwrap();
    store
        .insert_message(&post("b", "reply@x", Some("root@x")))
        .unwrap();
    let copy = crash_copy(&t, true);
    let recovered = Store::open(&copy.path, COST).unwrap();
    assert_eq!(recovered.recovered(), 1);
    assert_eq!(ids(&recovered.page(&["b"], None, 10).unwrap()), [2]);
    let chain = recovered.chain(MessageId(1), &["a", "b"]).unwrap();
    assert_eq!(chain.replies.len(), 1);
}

#[test]
fn tokens_are_added_listed_checked_and_revoked() {
    let t = temp_db();
    let store = Store::open(&t.path, COST).unwrap();
    let now = UNIX_EPOCH + Duration::from_secs(1_772_546_709);
    let token = store.add_token("phone", now).unwrap();
    assert_eq!(token.len(), 43);
    assert!(
        token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    );
    let other = store.add_token("feed-reader", now).unwrap();
    assert_ne!(token, other);
    assert!(store.token_valid(&token).unwrap());
    assert!(store.token_valid(&other).unwrap());
    assert!(!store.token_valid("").unwrap());
    assert!(!store.token_valid(&token[1..]).unwrap());
    assert!(!store.token_valid(&"x".repeat(10_000)).unwrap());
    assert_eq!(
        store.tokens().unwrap(),
        [
            Token {
                name: "feed-reader".into(),
                created: 1_772_546_709
            },
            Token {
                name: "phone".into(),
                created: 1_772_546_709
            },
        ]
    );
    assert_eq!(
        store.add_token("phone", now),
        Err(StoreError::TokenExists("phone".into()))
    );
    assert!(matches!(
        store.add_token("a b", now),
        Err(StoreError::InvalidTokenName(_))
    ));
    store.revoke_token("phone").unwrap();
    assert!(!store.token_valid(&token).unwrap());
    assert!(store.token_valid(&other).unwrap());
    assert_eq!(
        store.revoke_token("phone"),
        Err(StoreError::NoSuchToken("phone".into()))
    );
    // Only the hash is stored: the token's text is nowhere in the file.
    drop(store);
    let file = std::fs::read(&t.path).unwrap();
    assert!(!file.windows(other.len()).any(|w| w == other.as_bytes()));
    let store = Store::open(&t.path, COST).unwrap();
    assert!(store.token_valid(&other).unwrap());
}

/// A journal written by a schema-4 build holds values without a channel: replayed after the
/// migration, they go to the legacy channel, under their parent.
#[test]
fn schema_4_journal_values_replay_into_the_legacy_channel() {
    use redb::ReadableDatabase;
    let old = temp_db();
    let values: Vec<Vec<u8>> = {
        let store = Store::open(&old.path, COST).unwrap();
        store
            .insert_messages(&[
                post("general", "root@x", None),
                post("general", "reply@x", Some("root@x")),
            ])
            .unwrap();
        store.with_db(schema::downgrade_to_schema_4).unwrap();
        store
            .with_db(|db| {
                let tx = db.begin_read()?;
                let table = tx.open_table(schema::MESSAGES)?;
                Ok((1..=2)
                    .map(|id| table.get(id).unwrap().unwrap().value().to_vec())
                    .collect())
            })
            .unwrap()
    };
    let t = temp_db();
    let store = Store::open_with_channel(&t.path, COST, "travel").unwrap();
    let entries = values
        .into_iter()
        .zip(1..)
        .map(|(value, id)| journal::Entry {
            id,
            value,
            user: "alice".into(),
            message_id: Some(format!("{id}@x")),
        })
        .collect();
    let records = [journal::Record { seq: 1, entries }];
    let (_, applied) = store
        .with_db(|db| messages::replay(db, &records, store.legacy_channel()))
        .unwrap();
    assert_eq!(applied, 2);
    assert_eq!(ids(&store.page(&["travel"], None, 10).unwrap()), [2, 1]);
    assert_eq!(store.message(MessageId(2)).unwrap().channel, "travel");
    let chain = store.chain(MessageId(1), &["travel"]).unwrap();
    assert_eq!(chain.replies.len(), 1);
}
