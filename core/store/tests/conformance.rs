//! The store conformance suite (`atacama_store::testing::conformance`) against each backend:
//! redb in a temporary directory, PostgreSQL on one server for the whole binary with a fresh
//! database per test; then what only PostgreSQL does (several stores on one database,
//! migrations, a server killed and started again).

use std::sync::Arc;
use std::time::{Duration, Instant};

use atacama_store::pg::{PG_SCHEMA_VERSION, PgConfig, PgStore};
use atacama_store::testing::conformance::{self, COST, Fresh};
use atacama_store::testing::{Postgres, new_message};
use atacama_store::{Backend, Health, Store, StoreError};

mod redb {
    use super::*;

    pub(super) fn fresh() -> Fresh {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_in(dir.path(), COST).unwrap();
        Fresh::new(Box::new(store), dir)
    }

    atacama_store::conformance_tests!(fresh);

    #[test]
    fn a_copy_to_postgres_and_back_reads_the_same() {
        conformance::a_copy_to_another_backend_and_back_reads_the_same(&fresh, &postgres::fresh);
    }

    #[test]
    fn a_stopped_copy_to_postgres_goes_on_with_resume() {
        conformance::a_stopped_copy_goes_on_with_resume(&fresh, &postgres::fresh);
    }
}

mod postgres {
    use super::*;

    pub(super) fn fresh() -> Fresh {
        Fresh::new(Box::new(open(&Postgres::shared().fresh_database())), ())
    }

    atacama_store::conformance_tests!(fresh);

    #[test]
    fn a_copy_to_redb_and_back_reads_the_same() {
        conformance::a_copy_to_another_backend_and_back_reads_the_same(&fresh, &redb::fresh);
    }

    #[test]
    fn a_stopped_copy_to_redb_goes_on_with_resume() {
        conformance::a_stopped_copy_goes_on_with_resume(&fresh, &redb::fresh);
    }
}

fn config(url: &str) -> PgConfig {
    PgConfig {
        url: url.into(),
        password: None,
        pool_size: 4,
    }
}

fn open(url: &str) -> PgStore {
    PgStore::open(&config(url), COST, "general").unwrap()
}

#[test]
fn two_stores_on_one_database_share_users_at_once_and_never_an_id() {
    let url = Postgres::shared().fresh_database();
    let (one, two) = (Arc::new(open(&url)), Arc::new(open(&url)));
    one.add_user("alice", "secret", std::time::SystemTime::now())
        .unwrap();
    assert!(two.verify_user("alice", "secret").unwrap());
    let threads: Vec<_> = (0..4)
        .map(|n| {
            let store = if n % 2 == 0 { one.clone() } else { two.clone() };
            std::thread::spawn(move || {
                let batch = vec![new_message("alice", None, None); 3];
                (0..10)
                    .flat_map(|_| store.insert_messages(&batch).unwrap())
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut ids: Vec<u64> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .map(|id| id.0)
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 120);
    assert_eq!(one.messages(None, None).unwrap().len(), 120);
    // A reply through one store threads under its parent stored through the other.
    let parent = one
        .insert_message(&new_message("alice", Some("p@x"), None))
        .unwrap();
    let reply = two
        .insert_message(&new_message("alice", None, Some("p@x")))
        .unwrap();
    assert_eq!(two.message(reply).unwrap().parent_id, Some(parent));
}

#[test]
fn a_schema_newer_than_this_build_is_refused() {
    let url = Postgres::shared().fresh_database();
    drop(open(&url));
    let mut client = ::postgres::Client::connect(&url, ::postgres::NoTls).unwrap();
    let newer = PG_SCHEMA_VERSION as i64 + 1;
    client
        .execute(
            "INSERT INTO atacama_schema (version) VALUES ($1)",
            &[&newer],
        )
        .unwrap();
    assert_eq!(
        PgStore::open(&config(&url), COST, "general").unwrap_err(),
        StoreError::SchemaVersion {
            found: PG_SCHEMA_VERSION + 1,
            expected: PG_SCHEMA_VERSION
        }
    );
}

#[test]
fn opens_racing_on_an_empty_database_migrate_it_once() {
    let url = Postgres::shared().fresh_database();
    let opens: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || PgStore::open(&config(&url), COST, "general").map(drop))
        })
        .collect();
    for open in opens {
        open.join().unwrap().unwrap();
    }
    let mut client = ::postgres::Client::connect(&url, ::postgres::NoTls).unwrap();
    let rows: i64 = client
        .query_one("SELECT count(*) FROM atacama_schema", &[])
        .unwrap()
        .get(0);
    assert_eq!(rows as u64, PG_SCHEMA_VERSION);
    let migration = PgStore::migrate(&config(&url)).unwrap();
    assert_eq!(
        (migration.from, migration.to),
        (PG_SCHEMA_VERSION, PG_SCHEMA_VERSION)
    );
}

#[test]
fn a_bad_url_names_store_url_and_the_location_hides_the_password() {
    let error = PgStore::open(
        &config("postgresql://a@b/c?sslmode=nonsense"),
        COST,
        "general",
    )
    .unwrap_err();
    assert!(error.to_string().contains("store.url"), "{error}");
    let url = Postgres::shared().fresh_database();
    let mut with_password = config(&url);
    with_password.password = Some("hunter2".into());
    let store = PgStore::open(&with_password, COST, "general").unwrap();
    assert!(!store.location().contains("hunter2"));
    assert!(
        store.location().starts_with("postgresql://postgres@"),
        "{}",
        store.location()
    );
    assert!(!format!("{with_password:?}").contains("hunter2"));
}

#[test]
fn a_killed_server_fails_deliveries_until_it_is_back_and_loses_nothing_acknowledged() {
    let server = Postgres::start();
    let store = open(&server.fresh_database());
    let batch = vec![new_message("alice", None, None); 5];
    let mut acknowledged: Vec<_> = (0..4)
        .flat_map(|_| store.insert_messages(&batch).unwrap())
        .collect();
    server.kill();
    assert!(store.insert_messages(&batch).is_err());
    assert_eq!(store.health(), Health::Recovering);
    // Refused at once while a reconnect is not due, and failing while one is.
    let refused = Instant::now();
    assert!(matches!(
        store.insert_messages(&batch),
        Err(StoreError::Io(_))
    ));
    assert!(refused.elapsed() < Duration::from_secs(1));
    store.set_give_up_after(Duration::ZERO);
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.recover() != Health::Failed {
        assert!(Instant::now() < deadline, "never gave up");
        std::thread::sleep(Duration::from_millis(50));
    }
    store.set_give_up_after(Duration::from_secs(60));
    server.start_again();
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.recover() != Health::Working {
        assert!(Instant::now() < deadline, "never recovered");
        std::thread::sleep(Duration::from_millis(50));
    }
    acknowledged.extend(store.insert_messages(&batch).unwrap());
    // Killed while idle: the timer's probe finds out before a delivery does.
    server.kill();
    assert_eq!(store.recover(), Health::Recovering);
    server.start_again();
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.recover() != Health::Working {
        assert!(Instant::now() < deadline, "never recovered");
        std::thread::sleep(Duration::from_millis(50));
    }
    for id in &acknowledged {
        store.raw_message(*id).unwrap();
    }
    assert_eq!(
        store.messages(None, None).unwrap().len(),
        acknowledged.len()
    );
}

#[test]
fn the_password_is_sent_and_a_wrong_one_is_named() {
    let server = Postgres::start_with_password("s3cret");
    let mut with_password = config(&server.fresh_database());
    with_password.password = Some("s3cret".into());
    let store = PgStore::open(&with_password, COST, "general").unwrap();
    store
        .add_user("alice", "pw", std::time::SystemTime::now())
        .unwrap();
    with_password.password = Some("wrong".into());
    let error = PgStore::open(&with_password, COST, "general").unwrap_err();
    let problem = error.to_string();
    assert!(
        matches!(error, StoreError::Database(_)) && problem.contains("28P01"),
        "{problem}"
    );
    assert!(
        problem.contains("connecting to postgresql://postgres@"),
        "{problem}"
    );
}

/// A CA, and a certificate for `localhost` it signed: (CA PEM, server chain PEM, key PEM).
fn certificates() -> (String, String, String) {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "atacama test CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().unwrap())
        .unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    let cert = params.signed_by(&key, &ca).unwrap();
    (ca.pem(), cert.pem(), key.serialize_pem())
}

#[test]
fn tls_to_the_database_is_verified_against_the_named_ca() {
    let (ca, cert, key) = certificates();
    let server = Postgres::start_tls(&cert, &key);
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca).unwrap();
    let tcp = server.tcp_url("postgres").unwrap();
    let verified = format!(
        "{tcp}?sslmode=verify-full&sslrootcert={}",
        ca_file.display()
    );
    let store = PgStore::open(&config(&verified), COST, "general").unwrap();
    store
        .add_user("alice", "pw", std::time::SystemTime::now())
        .unwrap();
    let mut client =
        ::postgres::Client::connect(&server.url("postgres"), ::postgres::NoTls).unwrap();
    let encrypted: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid)
             WHERE ssl AND client_addr IS NOT NULL",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(encrypted >= 1, "the store's connection is not TLS");
    // The system's CAs do not know the test CA: refused, never unencrypted instead.
    let error =
        PgStore::open(&config(&format!("{tcp}?sslmode=require")), COST, "general").unwrap_err();
    assert!(error.to_string().contains("connecting to"), "{error}");
}

#[test]
fn verification_names_the_first_message_whose_bytes_differ() {
    use atacama_store::copy::{CopyError, copy, verify};
    let dir = tempfile::tempdir().unwrap();
    let redb = Store::open_in(dir.path(), COST).unwrap();
    redb.insert_messages(&vec![new_message("alice", None, None); 3])
        .unwrap();
    let url = Postgres::shared().fresh_database();
    let pg = open(&url);
    copy(&redb, &pg).unwrap();
    assert_eq!(verify(&redb, &pg).unwrap().messages, 3);
    let mut client = ::postgres::Client::connect(&url, ::postgres::NoTls).unwrap();
    client
        .execute(
            "UPDATE messages SET header = header || '\\x20'::bytea WHERE id >= 2",
            &[],
        )
        .unwrap();
    assert_eq!(
        verify(&redb, &pg),
        Err(CopyError::Differs(
            "the raw bytes of message 2 differ (SHA-256), and of 2 message(s) in all".into()
        ))
    );
}
