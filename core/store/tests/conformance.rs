//! The store conformance suite (`atacama_store::testing::conformance`) against each backend:
//! redb in a temporary directory, PostgreSQL on one server for the whole binary with a fresh
//! database per test; and the PostgreSQL-only tests (two daemons on one database, migrations,
//! a killed server).

use atacama_store::testing::Postgres;

#[test]
fn the_harness_serves_fresh_databases_and_survives_a_kill() {
    let server = Postgres::start();
    let url = server.fresh_database();
    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    client
        .batch_execute("CREATE TABLE t (n int); INSERT INTO t VALUES (7)")
        .unwrap();
    server.kill();
    assert!(client.query_one("SELECT n FROM t", &[]).is_err());
    server.start_again();
    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let n: i32 = client.query_one("SELECT n FROM t", &[]).unwrap().get(0);
    assert_eq!(n, 7);
    let shared = Postgres::shared().fresh_database();
    postgres::Client::connect(&shared, postgres::NoTls).unwrap();
}
