//! The store on a file system that fills up, then grows: a real tmpfs, mounted by the test
//! (root only; CI runs as root).

use std::time::{Duration, Instant};

use super::testing::{Tmpfs, new_message};
use super::tests::noise;
use super::*;
use atacama_core::smtp::MessageId;

/// A message of `len` bytes lz4 cannot shrink.
fn big_message(seed: u64, len: usize) -> NewMessage {
    let mut message = new_message("alice", None, None);
    message.data = noise(len, seed);
    message
}

/// Stores messages until one fails (at most `limit`); returns the ids acknowledged, and the
/// error that ended it.
fn fill(store: &Store, limit: u64) -> (Vec<(MessageId, u64)>, StoreError) {
    let mut acknowledged = Vec::new();
    for seed in 0..limit {
        match store.insert_message(&big_message(seed, 200_000)) {
            Ok(id) => acknowledged.push((id, seed)),
            Err(error) => return (acknowledged, error),
        }
    }
    panic!("{limit} messages of 200 KB fitted in the file system");
}

#[test]
fn a_full_disk_is_no_space_and_the_store_reopens_itself_once_there_is_room() {
    let fs = Tmpfs::mount(40);
    let path = fs.path().join(DATABASE_FILE);
    let store = Store::open(&path, 4).unwrap();
    let (mut acknowledged, error) = fill(&store, 1000);
    assert!(
        matches!(error, StoreError::NoSpace(_)),
        "a full tmpfs is NoSpace, not {error:?}"
    );
    assert!(
        acknowledged.len() > 10,
        "only {} fitted",
        acknowledged.len()
    );
    assert_eq!(store.health(), Health::Recovering);
    // The first delivery after it reopens the database (on a disk still full), the others in
    // the same second fail at once with the cause; none is lost if it does get through.
    let mut refused = 0;
    for seed in 10_000..10_100 {
        match store.insert_message(&big_message(seed, 200_000)) {
            Ok(id) => acknowledged.push((id, seed)),
            Err(StoreError::NoSpace(_)) => refused += 1,
            Err(error) => panic!("a full disk is NoSpace, not {error:?}"),
        }
    }
    assert!(refused >= 99, "{refused} refused");

    fs.resize(160);
    let deadline = Instant::now() + Duration::from_secs(10);
    let recovered = loop {
        match store.insert_message(&big_message(20_000, 1000)) {
            Ok(id) => break id,
            Err(error) => {
                assert!(Instant::now() < deadline, "not recovered: {error}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    };
    assert_eq!(store.health(), Health::Working);
    // Every acknowledged message is there, whole, and the new one after them.
    let last = acknowledged.last().unwrap().0;
    assert!(recovered > last, "{recovered} after {last}");
    for &(id, seed) in &acknowledged {
        assert!(
            store
                .raw_message(id)
                .unwrap()
                .ends_with(&noise(200_000, seed)),
            "message {id}"
        );
    }
    // And durably so: a new open of the files finds them too.
    drop(store);
    let store = Store::open(&path, 4).unwrap();
    for &(id, seed) in &acknowledged {
        assert!(
            store
                .raw_message(id)
                .unwrap()
                .ends_with(&noise(200_000, seed))
        );
    }
    assert!(store.message(recovered).is_ok());
}

#[test]
fn an_idle_store_is_reopened_by_recover_and_a_checkpoint_waits_its_turn() {
    let fs = Tmpfs::mount(40);
    let store = Store::open(&fs.path().join(DATABASE_FILE), 4).unwrap();
    let (acknowledged, _) = fill(&store, 1000);
    fs.resize(160);
    // The reopen the failure allows at once: nothing else writes meanwhile.
    assert_eq!(store.recover(), Health::Working);
    assert_eq!(
        store.messages(None, None).unwrap().len(),
        acknowledged.len()
    );
    assert_eq!(
        store.checkpoint(),
        Ok(false),
        "the reopen left nothing to checkpoint"
    );
}
