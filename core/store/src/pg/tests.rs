//! What the conformance suite cannot see from outside: the work verification does.

use crate::Backend;

use crate::pg::{PgConfig, PgStore};
use crate::testing::Postgres;
use crate::users::tests::take_verified;

#[test]
fn verify_does_one_bcrypt_of_the_configured_cost_whoever_asks() {
    let config = PgConfig {
        url: Postgres::shared().fresh_database(),
        password: None,
        pool_size: 2,
    };
    let store = PgStore::open(&config, 5, "general").unwrap();
    store
        .add_user("alice", "secret", std::time::SystemTime::now())
        .unwrap();
    store
        .disable_user("alice", std::time::SystemTime::now())
        .unwrap();
    take_verified();
    for name in ["alice", "nobody", "nul\0"] {
        assert!(!store.verify_user(name, "secret").unwrap());
    }
    assert_eq!(take_verified(), ["05", "05", "05"]);
}

fn eventually(mut done: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    done()
}

fn open(url: &str) -> PgStore {
    let config = PgConfig {
        url: url.to_string(),
        password: None,
        pool_size: 2,
    };
    PgStore::open(&config, 4, "general").unwrap()
}

/// What MAIL asks is answered from memory once the listener listens, and a change made
/// through another store (another daemon, the command line) reaches it by notification.
#[test]
fn a_login_is_remembered_until_a_change_made_elsewhere_is_notified() {
    let url = Postgres::shared().fresh_database();
    let (daemon, elsewhere) = (open(&url), open(&url));
    let now = std::time::SystemTime::now();
    elsewhere.add_user("alice", "secret", now).unwrap();
    // Nothing is known before a read, and nothing is read without a network wait.
    assert!(daemon.login_active_now("alice").is_none());
    // Reads before the listener listens are not remembered: read until one is.
    assert!(eventually(|| {
        daemon.login_active("alice").unwrap();
        matches!(daemon.login_active_now("alice"), Some(Ok(true)))
    }));
    elsewhere.disable_user("alice", now).unwrap();
    assert!(eventually(|| daemon.login_active_now("alice").is_none()));
    assert!(!daemon.login_active("alice").unwrap());
    assert!(matches!(daemon.login_active_now("alice"), Some(Ok(false))));
    elsewhere.enable_user("alice", now).unwrap();
    assert!(eventually(|| daemon.login_active_now("alice").is_none()));
    assert!(daemon.login_active("alice").unwrap());
    elsewhere.delete_user("alice").unwrap();
    assert!(eventually(|| daemon.login_active_now("alice").is_none()));
    assert!(!daemon.login_active("alice").unwrap());
    // A user not found is not remembered.
    assert!(daemon.login_active_now("alice").is_none());
}

/// A change made in SQL by hand notifies too, a `TRUNCATE` included: the trigger is on the
/// table, not in our code.
#[test]
fn a_change_made_in_sql_by_hand_is_notified_too() {
    let url = Postgres::shared().fresh_database();
    let daemon = open(&url);
    let now = std::time::SystemTime::now();
    daemon.add_user("alice", "secret", now).unwrap();
    daemon.add_user("bob", "secret", now).unwrap();
    assert!(eventually(|| {
        daemon.login_active("alice").unwrap();
        daemon.login_active("bob").unwrap();
        daemon.login_active_now("alice").is_some() && daemon.login_active_now("bob").is_some()
    }));
    let mut by_hand = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    by_hand
        .batch_execute("UPDATE users SET active = false WHERE name = 'alice'")
        .unwrap();
    assert!(eventually(|| daemon.login_active_now("alice").is_none()));
    assert!(matches!(daemon.login_active_now("bob"), Some(Ok(true))));
    by_hand.batch_execute("TRUNCATE users").unwrap();
    assert!(eventually(|| daemon.login_active_now("bob").is_none()));
    assert!(!daemon.login_active("bob").unwrap());
}

/// A lost listening connection forgets everything and stops the remembering (every check
/// asks the database) until it listens again, a second later.
#[test]
fn without_its_listening_connection_a_store_asks_the_database_each_time() {
    let url = Postgres::shared().fresh_database();
    let daemon = open(&url);
    daemon
        .add_user("alice", "secret", std::time::SystemTime::now())
        .unwrap();
    let remembered = |daemon: &PgStore| {
        eventually(|| {
            daemon.login_active("alice").unwrap();
            daemon.login_active_now("alice").is_some()
        })
    };
    assert!(remembered(&daemon));
    let mut admin = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let ended = admin
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = current_database() AND query = 'LISTEN atacama_users'",
            &[],
        )
        .unwrap();
    assert_eq!(ended.len(), 1, "one listener");
    assert!(eventually(|| daemon.login_active_now("alice").is_none()));
    daemon.login_active("alice").unwrap();
    assert!(remembered(&daemon), "listening again");
}
