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
