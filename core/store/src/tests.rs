//! Store tests: round trips, reopen, threading, schema version, users, concurrency.

use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::testing::new_message;
use super::users::{dummy_hash, tests::take_verified};
use super::*;

use atacama_core::message::Headers;
use atacama_core::smtp::MessageId;

const COST: u32 = 4;

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

pub(crate) struct Temp {
    _dir: tempfile::TempDir,
    pub(crate) path: PathBuf,
}

pub(crate) fn temp_db() -> Temp {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(DATABASE_FILE);
    Temp { _dir: dir, path }
}

#[test]
fn message_round_trips_with_every_field() {
    let t = temp_db();
    let store = Store::open(&t.path, COST).unwrap();
    let new = new_message("alice", Some("one@example.test"), None);
    let id = store.insert_message(&new).unwrap();
    assert_eq!(id, MessageId(1));

    let stored = store.message(id).unwrap();
    let raw = store.raw_message(id).unwrap();
    let header = new.trace.header(1, 1_772_546_709);
    assert_eq!(raw, [header.as_bytes(), &new.data].concat());
    assert!(header.contains("with ESMTPSA id 1;"));
    let expected = StoredMessage {
        id,
        received_at: 1_772_546_709,
        user: "alice".into(),
        mail_from: "alice@example.test".into(),
        rcpt_to: new.rcpt_to.clone(),
        headers: Headers {
            subject: Some("Hello".into()),
            from: Some("alice@example.test".into()),
            to: Some("bob@example.test".into()),
            date: Some("2026-03-03T14:05:00Z".into()),
            message_id: Some("one@example.test".into()),
            in_reply_to: None,
        },
        text: "Hi *there*".into(),
        html: "<p>Hi <b>there</b></p>".into(),
        attachments: new.parsed.attachments.clone(),
        problems: vec![],
        size: raw.len() as u64,
        parent_id: None,
        channel: "general".into(),
    };
    assert_eq!(stored, expected);
}

#[test]
fn large_messages_are_written_in_rows_and_read_back_whole() {
    let t = temp_db();
    let store = Store::open(&t.path, COST).unwrap();
    // Text that repeats (3 MB, 20 MB), and 20 MB lz4 cannot shrink; the last replies to the
    // first. Each is read back now and after a reopen, which replays nothing for them.
    let mut ids = Vec::new();
    let mut sent = Vec::new();
    for (n, size) in [(1u64, 3 << 20), (2, 20 << 20), (3, 20 << 20)] {
        let in_reply_to = (n == 3).then_some("big1@example.test");
        let mut new = new_message("alice", Some(&format!("big{n}@example.test")), in_reply_to);
        let body = if n == 3 {
            String::from_utf8(noise(size, n).iter().map(|b| b'a' + b % 26).collect()).unwrap()
        } else {
            let line = format!("line {n} of a large message, with its own words\r\n");
            line.repeat(size / line.len())
        };
        new.data = format!("Subject: big\r\n\r\n{body}").into_bytes();
        new.parsed.text = body.replace("\r\n", "\n");
        new.html = format!("<p>{}</p>", new.parsed.text.replace('\n', "<br />"));
        ids.push(store.insert_message(&new).unwrap());
        sent.push(new);
    }
    let check = |store: &Store| {
        for (id, new) in ids.iter().zip(&sent) {
            let stored = store.message(*id).unwrap();
            assert_eq!(stored.text, new.parsed.text);
            assert_eq!(stored.html, new.html);
            let raw = store.raw_message(*id).unwrap();
            let header = new.trace.header(id.0, 1_772_546_709);
            assert_eq!(raw, [header.as_bytes(), &new.data].concat());
            assert_eq!(stored.size, raw.len() as u64);
        }
        assert_eq!(store.message(ids[2]).unwrap().parent_id, Some(ids[0]));
        let listed: Vec<u64> = store
            .messages(Some("alice"), None)
            .unwrap()
            .iter()
            .map(|m| m.id.0)
            .collect();
        assert_eq!(listed, [3, 2, 1]);
    };
    check(&store);
    drop(store);
    check(&Store::open(&t.path, COST).unwrap());
}

/// A body whose payload (data, text, HTML and 8 bytes of lengths) is at most the bound stays
/// in its value and goes through the journal; one byte more goes into rows and commits durably.
#[test]
fn bodies_at_and_around_the_row_bound_round_trip() {
    let t = temp_db();
    let store = Store::open(&t.path, COST).unwrap();
    let mut sent = Vec::new();
    for (n, payload) in [
        (1u64, packed::INLINE_MAX - 1),
        (2, packed::INLINE_MAX),
        (3, packed::INLINE_MAX + 1),
        (4, 2 * packed::ROW + 8),
        (5, 3 * packed::ROW + 9),
    ] {
        let mut new = new_message("alice", None, None);
        new.parsed.text = "abc".into();
        new.html = "<p>abc</p>".into();
        let data_len = payload - 8 - new.parsed.text.len() - new.html.len();
        new.data = noise(data_len, n);
        let id = store.insert_message(&new).unwrap();
        assert_eq!(id, MessageId(n));
        sent.push(new);
    }
    // The first two were journaled; the third's durable commit took them along.
    let durable = Store::open(&crash_copy(&t, false).path, COST).unwrap();
    for store in [&store, &durable] {
        for (n, new) in (1u64..).zip(&sent) {
            let raw = store.raw_message(MessageId(n)).unwrap();
            assert!(raw.ends_with(&new.data), "message {n}");
            let stored = store.message(MessageId(n)).unwrap();
            assert_eq!(
                (stored.text.as_str(), stored.html.as_str()),
                ("abc", "<p>abc</p>")
            );
        }
    }
    let rows = store
        .with_db(|db| {
            let tx = db.begin_read()?;
            let body = tx.open_table(schema::BODY)?;
            Ok(body
                .iter()?
                .map(|row| row.unwrap().0.value())
                .collect::<Vec<_>>())
        })
        .unwrap();
    let firsts: Vec<(u64, u32)> = rows.iter().copied().filter(|(_, n)| *n == 0).collect();
    assert_eq!(
        firsts,
        [(3, 0), (4, 0), (5, 0)],
        "only the last three are in rows"
    );
}

/// redb gives a value the next power of two of pages: a row must fit 1 MiB with its key and
/// the leaf's header, or the body would take twice its size on disk and in memory.
#[test]
fn a_body_in_rows_takes_pages_of_about_its_size() {
    let t = temp_db();
    let store = Store::open(&t.path, COST).unwrap();
    let mut new = new_message("alice", None, None);
    new.data = noise(24 << 20, 9);
    store.insert_message(&new).unwrap();
    let (stored, fragmented) = store
        .with_db(|db| {
            let tx = db.begin_read()?;
            let stats = tx.open_table(schema::BODY)?.stats()?;
            Ok((stats.stored_bytes(), stats.fragmented_bytes()))
        })
        .unwrap();
    assert!(stored > 24 << 20);
    assert!(
        fragmented < stored / 20,
        "{fragmented} bytes of pages unused for {stored}"
    );
}

/// A message in rows between two journaled ones: a crash after the third loses nothing, and
/// the database alone holds the first two (the second's durable commit took the first along).
#[test]
fn a_crash_after_a_message_in_rows_loses_nothing() {
    let t = temp_db();
    let store = Store::open(&t.path, COST).unwrap();
    let small = new_message("alice", Some("small@x"), None);
    let mut big = new_message("alice", Some("big@x"), Some("small@x"));
    big.data = noise(6 << 20, 3);
    big.html =
        String::from_utf8(noise(3 << 20, 4).iter().map(|b| b'a' + b % 26).collect()).unwrap();
    let after = new_message("bob", None, Some("big@x"));
    let ids: Vec<MessageId> = [&small, &big, &after]
        .into_iter()
        .map(|message| store.insert_message(message).unwrap())
        .collect();
    assert_eq!(ids, [MessageId(1), MessageId(2), MessageId(3)]);
    let before: Vec<_> = ids.iter().map(|id| store.message(*id).unwrap()).collect();
    let raw_before = store.raw_message(MessageId(2)).unwrap();

    let without = Store::open(&crash_copy(&t, false).path, COST).unwrap();
    assert_eq!(stored_ids(&without), [1, 2]);
    assert_eq!(without.raw_message(MessageId(2)).unwrap(), raw_before);

    let crashed = crash_copy(&t, true);
    let recovered = Store::open(&crashed.path, COST).unwrap();
    assert_eq!(recovered.recovered(), 1);
    let after_crash: Vec<_> = ids
        .iter()
        .map(|id| recovered.message(*id).unwrap())
        .collect();
    assert_eq!(after_crash, before, "every field, the threading included");
    assert_eq!(after_crash[2].parent_id, Some(MessageId(2)));
    assert_eq!(recovered.raw_message(MessageId(2)).unwrap(), raw_before);
}

#[test]
fn ids_increase_and_survive_reopen() {
    let t = temp_db();
    {
        let store = Store::open(&t.path, COST).unwrap();
        assert_eq!(
            store.insert_message(&new_message("a", None, None)).unwrap(),
            MessageId(1)
        );
        assert_eq!(
            store.insert_message(&new_message("b", None, None)).unwrap(),
            MessageId(2)
        );
        store.add_user("alice", "secret", at(100)).unwrap();
    }
    let store = Store::open(&t.path, COST).unwrap();
    assert_eq!(
        store.insert_message(&new_message("c", None, None)).unwrap(),
        MessageId(3)
    );
    let users: Vec<String> = store.users().unwrap().into_iter().map(|u| u.name).collect();
    assert_eq!(users, ["alice"]);
    assert!(store.verify_user("alice", "secret").unwrap());
    assert_eq!(store.message(MessageId(2)).unwrap().user, "b");
}

#[test]
fn batch_insert_is_one_transaction_and_threads_inside_itself() {
    let t = temp_db();
    let store = Store::open(&t.path, COST).unwrap();
    let batch = [
        new_message("alice", Some("root@x"), None),
        new_message("bob", Some("reply@x"), Some("root@x")),
        new_message("alice", None, Some("reply@x")),
    ];
    let ids = store.insert_messages(&batch).unwrap();
    assert_eq!(ids, [MessageId(1), MessageId(2), MessageId(3)]);
    assert_eq!(
        store.message(MessageId(2)).unwrap().parent_id,
        Some(MessageId(1))
    );
    assert_eq!(
        store.message(MessageId(3)).unwrap().parent_id,
        Some(MessageId(2))
    );
    assert_eq!(store.insert_messages(&[]).unwrap(), []);
}

#[test]
fn in_reply_to_a_stored_message_sets_parent_id() {
    let t = temp_db();
    let store = Store::open(&t.path, COST).unwrap();
    let root = store
        .insert_message(&new_message("a", Some("root@x"), None))
        .unwrap();
    let reply = store
        .insert_message(&new_message("b", Some("r@x"), Some("root@x")))
        .unwrap();
    let stray = store
        .insert_message(&new_message("b", None, Some("unknown@x")))
        .unwrap();
    // A resent copy of the root must not take over its replies.
    let copy = store
        .insert_message(&new_message("a", Some("root@x"), None))
        .unwrap();
    let late = store
        .insert_message(&new_message("c", None, Some("root@x")))
        .unwrap();
    let self_ref = store
        .insert_message(&new_message("c", Some("me@x"), Some("me@x")))
        .unwrap();
    assert_eq!(store.message(root).unwrap().parent_id, None);
    assert_eq!(store.message(reply).unwrap().parent_id, Some(root));
    assert_eq!(store.message(stray).unwrap().parent_id, None);
    assert_eq!(store.message(copy).unwrap().parent_id, None);
    assert_eq!(store.message(late).unwrap().parent_id, Some(root));
    assert_eq!(store.message(self_ref).unwrap().parent_id, None);
}

#[test]
fn list_is_newest_first_filtered_by_user_and_limited() {
    let t = temp_db();
    let store = Store::open(&t.path, COST).unwrap();
    for user in ["alice", "bob", "alice", "alice", "bob"] {
        store
            .insert_message(&new_message(user, None, None))
            .unwrap();
    }
    let ids = |list: Vec<MessageSummary>| list.into_iter().map(|m| m.id.0).collect::<Vec<_>>();
    assert_eq!(ids(store.messages(None, None).unwrap()), [5, 4, 3, 2, 1]);
    assert_eq!(ids(store.messages(None, Some(2)).unwrap()), [5, 4]);
    assert_eq!(ids(store.messages(Some("alice"), None).unwrap()), [4, 3, 1]);
    assert_eq!(ids(store.messages(Some("alice"), Some(1)).unwrap()), [4]);
    assert_eq!(
        ids(store.messages(Some("nobody"), None).unwrap()),
        Vec::<u64>::new()
    );
    // A user whose name is a prefix of another's sees only their own messages.
    store
        .insert_message(&new_message("ali", None, None))
        .unwrap();
    assert_eq!(ids(store.messages(Some("ali"), None).unwrap()), [6]);
    let first = store.messages(None, Some(1)).unwrap().remove(0);
    assert_eq!(first.subject.as_deref(), Some("Hello"));
    assert_eq!(first.rcpt_to.len(), 2);
}

#[test]
fn a_page_is_the_newest_messages_below_before_and_says_whether_there_are_more() {
    let t = temp_db();
    let store = Store::open(&t.path, COST).unwrap();
    for user in ["alice", "bob", "alice", "alice", "bob", "ali"] {
        store
            .insert_message(&new_message(user, None, None))
            .unwrap();
    }
    let page = |user: Option<&str>, before: Option<u64>, limit: usize| {
        let page = store
            .messages_page(user, before.map(MessageId), limit)
            .unwrap();
        let ids: Vec<u64> = page.messages.iter().map(|m| m.id.0).collect();
        (ids, page.more)
    };
    assert_eq!(page(None, None, 2), (vec![6, 5], true));
    assert_eq!(page(None, Some(5), 2), (vec![4, 3], true));
    assert_eq!(page(None, Some(3), 2), (vec![2, 1], false));
    assert_eq!(page(None, Some(1), 2), (vec![], false));
    assert_eq!(page(None, None, 6), (vec![6, 5, 4, 3, 2, 1], false));
    assert_eq!(page(None, None, usize::MAX).0.len(), 6);
    assert_eq!(page(None, Some(100), 1), (vec![6], true));
    assert_eq!(page(None, None, 0), (vec![], true));
    // By user: the index range stops at the user's name and at `before`.
    assert_eq!(page(Some("alice"), None, 2), (vec![4, 3], true));
    assert_eq!(page(Some("alice"), Some(3), 2), (vec![1], false));
    assert_eq!(page(Some("alice"), Some(4), 1), (vec![3], true));
    assert_eq!(page(Some("ali"), None, 5), (vec![6], false));
    assert_eq!(page(Some("ali"), Some(6), 5), (vec![], false));
    assert_eq!(page(Some("nobody"), Some(3), 5), (vec![], false));
    let t = temp_db();
    let empty = Store::open(&t.path, COST).unwrap();
    let nothing = empty.messages_page(None, None, 50).unwrap();
    assert_eq!((nothing.messages.len(), nothing.more), (0, false));
}

#[test]
fn missing_message_is_named() {
    let t = temp_db();
    let store = Store::open(&t.path, COST).unwrap();
    assert_eq!(
        store.message(MessageId(9)),
        Err(StoreError::NoSuchMessage(9))
    );
    assert_eq!(
        store.raw_message(MessageId(9)),
        Err(StoreError::NoSuchMessage(9))
    );
}

#[test]
fn another_schema_version_is_refused() {
    let t = temp_db();
    {
        let store = Store::open(&t.path, COST).unwrap();
        store
            .with_db(|db| schema::set_version(db, SCHEMA_VERSION + 1))
            .unwrap();
    }
    let error = Store::open(&t.path, COST).unwrap_err();
    assert_eq!(
        error,
        StoreError::SchemaVersion {
            found: SCHEMA_VERSION + 1,
            expected: SCHEMA_VERSION
        }
    );
    assert_eq!(
        error.to_string(),
        "database schema version 6 is not supported by this build (expected 5)"
    );
}

#[test]
fn schema_zero_is_refused_too() {
    let t = temp_db();
    {
        let store = Store::open(&t.path, COST).unwrap();
        store.with_db(|db| schema::set_version(db, 0)).unwrap();
    }
    assert_eq!(
        Store::open(&t.path, COST).unwrap_err(),
        StoreError::SchemaVersion {
            found: 0,
            expected: SCHEMA_VERSION
        }
    );
}

/// A schema-2 file (no journal yet) opens, gets a journal, and is stamped with the current
/// schema, so a schema-2 build, which would not replay the journal, refuses it from then on.
#[test]
fn a_schema_2_file_is_stamped_current_when_opened() {
    let t = temp_db();
    {
        let store = Store::open(&t.path, COST).unwrap();
        store
            .insert_message(&new_message("alice", None, None))
            .unwrap();
        store.checkpoint().unwrap();
        store.with_db(|db| schema::set_version(db, 2)).unwrap();
    }
    let store = Store::open(&t.path, COST).unwrap();
    assert_eq!(
        store.with_db(schema::stored_version).unwrap(),
        Some(SCHEMA_VERSION)
    );
    assert_eq!(stored_ids(&store), [1]);
}

/// A schema-3 file, whose bodies are all one block, opens and is stamped 4, so a schema-3
/// build, which knows no chunked body, refuses it from then on.
#[test]
fn a_schema_3_file_is_stamped_4_when_opened() {
    let t = temp_db();
    {
        let store = Store::open(&t.path, COST).unwrap();
        store
            .insert_message(&new_message("alice", None, None))
            .unwrap();
        store.with_db(|db| schema::set_version(db, 3)).unwrap();
    }
    let store = Store::open(&t.path, COST).unwrap();
    assert_eq!(
        store.with_db(schema::stored_version).unwrap(),
        Some(SCHEMA_VERSION)
    );
    assert_eq!(stored_ids(&store), [1]);
    // A body in rows goes beside the old message, and both read back after a reopen.
    let mut big = new_message("alice", None, None);
    big.data = noise(3 << 20, 5);
    assert_eq!(store.insert_message(&big).unwrap(), MessageId(2));
    drop(store);
    let store = Store::open(&t.path, COST).unwrap();
    assert!(
        store
            .raw_message(MessageId(2))
            .unwrap()
            .ends_with(&big.data)
    );
    assert_eq!(
        store.message(MessageId(1)).unwrap().html,
        "<p>Hi <b>there</b></p>"
    );
}

/// A file written by schema 1 (JSON records, the bytes in their own table) opens, is stamped
/// 3 so a schema-1 build stops writing to it, and its messages read back beside new ones.
#[test]
fn a_schema_1_file_is_read_and_upgraded_in_place() {
    let t = temp_db();
    let old = new_message("alice", Some("old@example.test"), None);
    let old_raw = [old.trace.header(1, 1_772_546_709).as_bytes(), &old.data].concat();
    let record = schema::MessageRecord {
        received_at: 1_772_546_709,
        user: old.user.clone(),
        mail_from: old.mail_from.clone(),
        rcpt_to: old.rcpt_to.clone(),
        headers: old.parsed.headers.clone(),
        text: old.parsed.text.clone(),
        html: old.html.clone(),
        attachments: old.parsed.attachments.clone(),
        problems: vec![],
        // Schema 1 wrote one problem, the sentences joined.
        problem: Some("first; second".into()),
        size: old_raw.len() as u64,
        parent_id: None,
        channel: None,
    };
    {
        let store = Store::open(&t.path, COST).unwrap();
        store
            .with_db(|db| schema::insert_schema_1_message(db, 1, &record, &old_raw))
            .unwrap();
        store.with_db(|db| schema::set_version(db, 1)).unwrap();
    }
    let store = Store::open(&t.path, COST).unwrap();
    assert_eq!(
        store.with_db(schema::stored_version).unwrap(),
        Some(SCHEMA_VERSION)
    );

    let stored = store.message(MessageId(1)).unwrap();
    assert_eq!(
        (stored.text.as_str(), stored.html.as_str()),
        (old.parsed.text.as_str(), old.html.as_str())
    );
    assert_eq!(stored.size, old_raw.len() as u64);
    assert_eq!(stored.problems, ["first; second"]);
    assert_eq!(stored.channel, "general");
    assert_eq!(store.raw_message(MessageId(1)).unwrap(), old_raw);

    // A new message goes after it, packed, and threads under it across the two schemas.
    let reply = new_message("alice", Some("new@example.test"), Some("old@example.test"));
    assert_eq!(store.insert_message(&reply).unwrap(), MessageId(2));
    let stored_reply = store.message(MessageId(2)).unwrap();
    assert_eq!(stored_reply.parent_id, Some(MessageId(1)));
    assert_eq!(stored_reply.html, reply.html);
    let listed: Vec<u64> = store
        .messages(Some("alice"), None)
        .unwrap()
        .iter()
        .map(|m| m.id.0)
        .collect();
    assert_eq!(listed, [2, 1]);

    // A copy packs the schema-1 message: the same fields and bytes, and the channel it had,
    // though the copy's default channel is another.
    let dir = tempfile::tempdir().unwrap();
    let copied = Store::open_in_with_channel(dir.path(), COST, "other").unwrap();
    crate::copy::copy(&store, &copied).unwrap();
    crate::copy::verify(&store, &copied).unwrap();
    for id in [MessageId(1), MessageId(2)] {
        assert_eq!(copied.message(id).unwrap(), store.message(id).unwrap());
    }
}

/// The JSON of a message record, byte for byte as every schema has written it: the header
/// fields sit among the others under their own names, so old records read and new ones are
/// written the same way.
#[test]
fn a_message_record_keeps_its_json_format() {
    let json = concat!(
        r#"{"received_at":1772546709,"user":"alice","mail_from":"alice@example.test","#,
        r#""rcpt_to":["bob@example.test"],"subject":"Hello","from":"Alice <alice@example.test>","#,
        r#""to":"bob@example.test","date":"2026-03-03T14:05:00Z","message_id":"one@example.test","#,
        r#""in_reply_to":null,"text":"Hi","html":"<p>Hi</p>","#,
        r#""attachments":[{"name":null,"media_type":"image/png","size":3}],"#,
        r#""problem":"first; second","size":120,"parent_id":7}"#
    );
    let record: schema::MessageRecord = schema::decode(json.as_bytes(), "message").unwrap();
    assert_eq!(
        record.headers,
        Headers {
            subject: Some("Hello".into()),
            from: Some("Alice <alice@example.test>".into()),
            to: Some("bob@example.test".into()),
            date: Some("2026-03-03T14:05:00Z".into()),
            message_id: Some("one@example.test".into()),
            in_reply_to: None,
        }
    );
    assert_eq!(
        (record.size, record.parent_id, record.problem.as_deref()),
        (120, Some(7), Some("first; second"))
    );
    assert_eq!(schema::encode(&record).unwrap(), json.as_bytes());
    // A record from before `problems` and without optional fields still reads.
    let sparse = r#"{"received_at":1,"user":"a","mail_from":"","rcpt_to":[],"attachments":[],"size":0,"parent_id":null}"#;
    let record: schema::MessageRecord = schema::decode(sparse.as_bytes(), "message").unwrap();
    assert_eq!(record.headers, Headers::default());
}

#[test]
fn a_file_that_is_not_a_database_is_a_clear_error() {
    let t = temp_db();
    std::fs::write(
        &t.path,
        b"this is not a redb file, not even close to one....",
    )
    .unwrap();
    match Store::open(&t.path, COST) {
        Err(StoreError::Database(message)) => {
            assert!(
                message.starts_with(&t.path.display().to_string()),
                "{message}"
            )
        }
        other => panic!("expected a database error, got {other:?}"),
    }
}

#[test]
fn user_lifecycle() {
    let t = temp_db();
    let store = Store::open(&t.path, COST).unwrap();
    store
        .add_user("alice@example.test", "pw1", at(100))
        .unwrap();
    assert_eq!(
        store.user("alice@example.test").unwrap(),
        User {
            name: "alice@example.test".into(),
            active: true,
            created: 100,
            updated: 100
        }
    );
    assert!(store.verify_user("alice@example.test", "pw1").unwrap());
    assert!(!store.verify_user("alice@example.test", "pw2").unwrap());

    store
        .set_password("alice@example.test", "pw2", at(200))
        .unwrap();
    assert!(!store.verify_user("alice@example.test", "pw1").unwrap());
    assert!(store.verify_user("alice@example.test", "pw2").unwrap());

    store.disable_user("alice@example.test", at(300)).unwrap();
    assert!(!store.verify_user("alice@example.test", "pw2").unwrap());
    let user = store.user("alice@example.test").unwrap();
    assert_eq!((user.active, user.created, user.updated), (false, 100, 300));

    store.enable_user("alice@example.test", at(400)).unwrap();
    assert!(store.verify_user("alice@example.test", "pw2").unwrap());

    store.delete_user("alice@example.test").unwrap();
    assert!(!store.verify_user("alice@example.test", "pw2").unwrap());
    assert_eq!(store.users().unwrap(), []);
}

#[test]
fn user_errors_name_the_user() {
    let t = temp_db();
    let store = Store::open(&t.path, COST).unwrap();
    store.add_user("alice", "pw", at(1)).unwrap();
    let no = |name: &str| Err(StoreError::NoSuchUser(name.into()));
    assert_eq!(
        store.add_user("alice", "x", at(2)),
        Err(StoreError::UserExists("alice".into()))
    );
    assert_eq!(store.set_password("bob", "x", at(2)), no("bob"));
    assert_eq!(store.enable_user("bob", at(2)), no("bob"));
    assert_eq!(store.disable_user("bob", at(2)), no("bob"));
    assert_eq!(store.delete_user("bob"), no("bob"));
    assert_eq!(store.user("bob"), Err(StoreError::NoSuchUser("bob".into())));
    assert_eq!(
        StoreError::UserExists("alice".into()).to_string(),
        "user \"alice\" already exists"
    );
    assert_eq!(
        StoreError::NoSuchUser("bob".into()).to_string(),
        "no user named \"bob\""
    );
}

#[test]
fn bad_user_names_are_refused() {
    let t = temp_db();
    let store = Store::open(&t.path, COST).unwrap();
    let long = "a".repeat(MAX_USER_NAME_BYTES + 1);
    for name in [
        "",
        "al ice",
        "tab\there",
        "nl\n",
        "nul\0",
        "\u{85}next-line",
        long.as_str(),
    ] {
        match store.add_user(name, "pw", at(1)) {
            Err(StoreError::InvalidUserName(_)) => {}
            other => panic!("{name:?}: {other:?}"),
        }
    }
    store
        .add_user(&"a".repeat(MAX_USER_NAME_BYTES), "pw", at(1))
        .unwrap();
    store.add_user("josé@exämple.test", "pw", at(1)).unwrap();
}

#[test]
fn passwords_bcrypt_would_truncate_are_refused() {
    let t = temp_db();
    let store = Store::open(&t.path, COST).unwrap();
    assert_eq!(MAX_PASSWORD_BYTES, 71);
    let long = "p".repeat(73);
    assert_eq!(
        store.add_user("alice", &long, at(1)),
        Err(StoreError::PasswordTooLong)
    );
    let seventy_two = "p".repeat(72);
    assert_eq!(
        store.add_user("alice", &seventy_two, at(1)),
        Err(StoreError::PasswordTooLong)
    );
    let exact = "p".repeat(MAX_PASSWORD_BYTES);
    store.add_user("alice", &exact, at(1)).unwrap();
    assert_eq!(
        store.set_password("alice", &long, at(2)),
        Err(StoreError::PasswordTooLong)
    );
    assert!(store.verify_user("alice", &exact).unwrap());
    // Plain bcrypt would accept both: it keys on 72 bytes, and the password fills them.
    assert!(!store.verify_user("alice", &long).unwrap());
    assert!(!store.verify_user("alice", &format!("{exact}p")).unwrap());
    // 72 bytes (the limit is in bytes, not characters).
    let multibyte = "é".repeat(36);
    assert_eq!(
        store.set_password("alice", &multibyte, at(3)),
        Err(StoreError::PasswordTooLong)
    );
    assert_eq!(
        store.add_user("bob", "", at(1)),
        Err(StoreError::PasswordEmpty)
    );
}

#[test]
fn dummy_hash_is_well_formed_and_matches_nothing() {
    for cost in [4, 5, 12, 31] {
        let hash = dummy_hash(cost);
        assert_eq!(hash.len(), 60);
        assert_eq!(&hash[..7], format!("$2b${cost:02}$"));
    }
    assert!(matches!(bcrypt::verify("", &dummy_hash(4)), Ok(false)));
    assert!(matches!(
        bcrypt::verify("password", &dummy_hash(4)),
        Ok(false)
    ));
}

#[test]
fn verify_does_one_bcrypt_of_the_configured_cost_whoever_asks() {
    let t = temp_db();
    let store = Store::open(&t.path, 5).unwrap();
    store.add_user("alice", "pw", at(1)).unwrap();
    store.add_user("dora", "pw", at(1)).unwrap();
    store.disable_user("dora", at(2)).unwrap();
    take_verified();
    assert!(store.verify_user("alice", "pw").unwrap());
    assert!(!store.verify_user("alice", "wrong").unwrap());
    assert!(!store.verify_user("nobody", "pw").unwrap());
    assert!(!store.verify_user("dora", "pw").unwrap());
    // Each call verified exactly one hash, and every hash had the configured cost.
    assert_eq!(take_verified(), ["05", "05", "05", "05"]);
}

#[test]
fn bcrypt_cost_outside_the_range_is_refused() {
    let t = temp_db();
    assert!(matches!(Store::open(&t.path, 3), Err(StoreError::Hash(_))));
    assert!(matches!(Store::open(&t.path, 32), Err(StoreError::Hash(_))));
}

/// The daemon holds the file alone (one fsync per commit); a second handle, here or in another
/// process, is refused by name until the first is dropped.
#[test]
fn a_second_handle_is_refused_while_the_first_is_open() {
    let t = temp_db();
    let daemon = Store::open(&t.path, COST).unwrap();
    daemon
        .insert_message(&new_message("alice", None, None))
        .unwrap();
    assert_eq!(
        Store::open(&t.path, COST).unwrap_err(),
        StoreError::InUse(t.path.display().to_string())
    );
    assert_eq!(
        StoreError::InUse("/d/atacama.redb".into()).to_string(),
        "/d/atacama.redb is open in another process"
    );
    drop(daemon);
    let next = Store::open(&t.path, COST).unwrap();
    assert_eq!(next.messages(None, None).unwrap().len(), 1);
}

/// A starting server waits for a command line that holds the file for one command.
#[test]
fn open_in_waiting_waits_for_the_file_to_be_let_go() {
    let dir = tempfile::tempdir().unwrap();
    let held = Store::open_in(dir.path(), COST).unwrap();
    let released = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        drop(held);
    });
    let waited = Store::open_in_waiting(dir.path(), COST, "general", Duration::from_secs(10));
    released.join().unwrap();
    assert!(waited.is_ok(), "{waited:?}");
    // Still held after the wait: the refusal, not a hang.
    let waited = waited.unwrap();
    let refused = Store::open_in_waiting(dir.path(), COST, "general", Duration::from_millis(50));
    assert!(matches!(refused, Err(StoreError::InUse(_))), "{refused:?}");
    drop(waited);
}

#[cfg(unix)]
#[test]
fn new_files_are_private_to_their_owner() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let _store = Store::open_in(&data, COST).unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join(DATABASE_FILE)), 0o600);
}

/// What a crash of the process would leave: the files as they are now, copied while the store
/// is open. redb writes a non-durable commit's pages but not its header, so the copy opens at
/// the last durable commit, as after a `kill -9`. Without `journal` the copy is the database
/// alone, to show what only the journal held.
pub(crate) fn crash_copy(t: &Temp, journal: bool) -> Temp {
    let copy = temp_db();
    std::fs::copy(&t.path, &copy.path).unwrap();
    if journal {
        std::fs::copy(
            t.path.with_extension(JOURNAL_EXTENSION),
            copy.path.with_extension(JOURNAL_EXTENSION),
        )
        .unwrap();
    }
    copy
}

/// `len` bytes lz4 cannot shrink (xorshift), different for each `seed`.
pub(crate) fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

fn stored_ids(store: &Store) -> Vec<u64> {
    let mut ids: Vec<u64> = store
        .messages(None, None)
        .unwrap()
        .into_iter()
        .map(|m| m.id.0)
        .collect();
    ids.sort();
    ids
}

#[test]
fn messages_stored_before_a_crash_are_recovered_from_the_journal() {
    let t = temp_db();
    let store = Store::open(&t.path, COST).unwrap();
    store.add_user("alice", "secret", at(100)).unwrap(); // a durable commit before the mail
    // Batches of one message: what the journal takes (JOURNAL_BATCH_MAX).
    let ids: Vec<MessageId> = [
        new_message("alice", Some("root@x"), None),
        new_message("bob", Some("reply@x"), Some("root@x")),
        new_message("alice", None, Some("reply@x")),
    ]
    .iter()
    .map(|message| store.insert_message(message).unwrap())
    .collect();
    assert_eq!(ids, [MessageId(1), MessageId(2), MessageId(3)]);
    let before: Vec<_> = (1..=3)
        .map(|id| store.message(MessageId(id)).unwrap())
        .collect();
    let raw_before = store.raw_message(MessageId(2)).unwrap();

    // The database alone has none of them: they were durable in the journal only.
    let without = crash_copy(&t, false);
    assert_eq!(
        stored_ids(&Store::open(&without.path, COST).unwrap()),
        Vec::<u64>::new()
    );

    let crashed = crash_copy(&t, true);
    let recovered = Store::open(&crashed.path, COST).unwrap();
    assert_eq!(recovered.recovered(), 3);
    assert_eq!(store.recovered(), 0);
    let after: Vec<_> = (1..=3)
        .map(|id| recovered.message(MessageId(id)).unwrap())
        .collect();
    assert_eq!(after, before, "every field, the threading included");
    assert_eq!(recovered.raw_message(MessageId(2)).unwrap(), raw_before);
    let alices: Vec<u64> = recovered
        .messages(Some("alice"), None)
        .unwrap()
        .into_iter()
        .map(|m| m.id.0)
        .collect();
    assert_eq!(alices, [3, 1], "the by-user index came back too");
    // The Message-ID index too: a new reply threads under a recovered message.
    let reply = recovered
        .insert_message(&new_message("carol", None, Some("root@x")))
        .unwrap();
    assert_eq!(reply, MessageId(4));
    assert_eq!(
        recovered.message(reply).unwrap().parent_id,
        Some(MessageId(1))
    );
    assert!(recovered.verify_user("alice", "secret").unwrap());
}

#[test]
fn a_recovered_store_crashing_again_loses_nothing_and_replays_nothing_twice() {
    let t = temp_db();
    let store = Store::open(&t.path, COST).unwrap();
    store.insert_message(&new_message("a", None, None)).unwrap();
    let once = crash_copy(&t, true);
    let recovered = Store::open(&once.path, COST).unwrap();
    assert_eq!(stored_ids(&recovered), [1]);
    recovered
        .insert_message(&new_message("b", None, None))
        .unwrap();
    recovered
        .insert_message(&new_message("c", None, None))
        .unwrap();
    let twice = crash_copy(&once, true);
    let again = Store::open(&twice.path, COST).unwrap();
    assert_eq!(stored_ids(&again), [1, 2, 3]);
    assert_eq!(again.message(MessageId(3)).unwrap().user, "c");
}

#[test]
fn a_torn_last_record_loses_only_its_own_batch() {
    let t = temp_db();
    let store = Store::open(&t.path, COST).unwrap();
    store.insert_message(&new_message("a", None, None)).unwrap();
    store.insert_message(&new_message("b", None, None)).unwrap();
    let crashed = crash_copy(&t, true);
    // The crash came while the second record was being written: its last byte never landed.
    let journal = crashed.path.with_extension(JOURNAL_EXTENSION);
    let mut bytes = std::fs::read(&journal).unwrap();
    let end = bytes.iter().rposition(|&b| b != 0).unwrap();
    bytes[end] ^= 0xFF;
    std::fs::write(&journal, &bytes).unwrap();
    let recovered = Store::open(&crashed.path, COST).unwrap();
    assert_eq!(stored_ids(&recovered), [1]);
    // Its id is given again; nothing collides.
    assert_eq!(
        recovered
            .insert_message(&new_message("c", None, None))
            .unwrap(),
        MessageId(2)
    );
}

#[test]
fn checkpoints_make_the_journaled_messages_durable_in_the_database() {
    let t = temp_db();
    let store = Store::open(&t.path, COST).unwrap();
    store.insert_message(&new_message("a", None, None)).unwrap();
    assert!(store.checkpoint().unwrap());
    assert!(!store.checkpoint().unwrap(), "nothing left to checkpoint");
    assert_eq!(
        stored_ids(&Store::open(&crash_copy(&t, false).path, COST).unwrap()),
        [1]
    );

    // Past CHECKPOINT_AT of journal the batch that crosses it checkpoints by itself.
    let mut big = new_message("big", None, None);
    // Each record is a little over 900 KiB (a body still inside its value, so journaled):
    // the last of these crosses CHECKPOINT_AT.
    let size = 900 << 10;
    let batches = (CHECKPOINT_AT as usize).div_ceil(size);
    for seed in 1..=batches as u64 {
        big.data = noise(size, seed); // lz4 cannot shrink it
        store.insert_message(&big).unwrap();
        let durable = stored_ids(&Store::open(&crash_copy(&t, false).path, COST).unwrap());
        let expected = if seed < batches as u64 {
            1
        } else {
            1 + batches
        };
        assert_eq!(durable.len(), expected, "the last batch checkpointed all");
    }
    store
        .insert_message(&new_message("after", None, None))
        .unwrap();
    let crashed = crash_copy(&t, true);
    assert_eq!(
        stored_ids(&Store::open(&crashed.path, COST).unwrap()).len(),
        2 + batches
    );
}

#[test]
fn a_batch_of_several_messages_commits_durably_and_takes_the_journaled_ones_along() {
    assert_eq!(JOURNAL_BATCH_MAX, 1, "this test sends batches of 1 and 2");
    let t = temp_db();
    let store = Store::open(&t.path, COST).unwrap();
    store.insert_message(&new_message("a", None, None)).unwrap();
    assert_eq!(
        stored_ids(&Store::open(&crash_copy(&t, false).path, COST).unwrap()),
        Vec::<u64>::new(),
        "the lone message is in the journal only"
    );
    store
        .insert_messages(&[new_message("b", None, None), new_message("c", None, None)])
        .unwrap();
    assert_eq!(
        stored_ids(&Store::open(&crash_copy(&t, false).path, COST).unwrap()),
        [1, 2, 3],
        "the batch's durable commit holds the journaled message too"
    );
    assert!(
        !store.checkpoint().unwrap(),
        "and the journal started again"
    );
    // A lone message after it goes to the journal again, and comes back after a crash.
    store.insert_message(&new_message("d", None, None)).unwrap();
    let crashed = crash_copy(&t, true);
    assert_eq!(
        stored_ids(&Store::open(&crashed.path, COST).unwrap()),
        [1, 2, 3, 4]
    );
}

#[test]
fn a_batch_too_large_for_the_journal_commits_durably_in_the_database() {
    let t = temp_db();
    let store = Store::open(&t.path, COST).unwrap();
    store
        .insert_message(&new_message("small", None, None))
        .unwrap();
    let mut huge = new_message("huge", None, None);
    huge.data = noise(JOURNAL_BYTES as usize + 1024, 7);
    assert_eq!(store.insert_message(&huge).unwrap(), MessageId(2));
    // The durable commit took the journaled message with it.
    let durable = Store::open(&crash_copy(&t, false).path, COST).unwrap();
    assert_eq!(stored_ids(&durable), [1, 2]);
    assert!(
        durable
            .raw_message(MessageId(2))
            .unwrap()
            .ends_with(&huge.data)
    );
}

#[test]
fn a_clean_close_leaves_nothing_to_replay() {
    let t = temp_db();
    {
        let store = Store::open(&t.path, COST).unwrap();
        store.insert_message(&new_message("a", None, None)).unwrap();
    }
    // The database alone holds it after the close.
    let copy = crash_copy(&t, false);
    assert_eq!(stored_ids(&Store::open(&copy.path, COST).unwrap()), [1]);
}
