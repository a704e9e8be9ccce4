//! Opening the store that `[store]` names: the one place that knows which backends there
//! are. Everything above it (services, committer, verifier, keeper, web side, control socket,
//! command line) holds an `Arc<dyn Backend>` and never asks which one it is.
//!
//! redb is one file in the data directory that one process holds: while a daemon runs, the
//! command line asks it over the control socket. A database that several processes share
//! (PostgreSQL) is opened by each of them, the command line included ([`is_shared`]).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use atacama_core::config::{Config, StoreBackend};
use atacama_store::{Backend, Store, StoreError};

/// What a start with `store.backend = "postgres"` says until this build opens PostgreSQL.
pub const POSTGRES_NOT_WIRED: &str = "store.backend = \"postgres\": this build does not have \
    the PostgreSQL backend wired yet; use store.backend = \"redb\"";

/// Opens the store of `config` with its bcrypt cost; messages stored before channels get
/// `channels.default`. A redb file that another process holds is waited for, up to
/// `in_use_wait` (zero: one try), then [`StoreError::InUse`].
pub fn open(config: &Config, in_use_wait: Duration) -> Result<Arc<dyn Backend>, StoreError> {
    // Checked when the config was loaded; an error here names the key all the same.
    let channels = config
        .channels()
        .map_err(|e| StoreError::InvalidChannel(e.to_string()))?;
    match config.store.backend {
        StoreBackend::Redb => Ok(Arc::new(Store::open_in_waiting(
            &config.data_dir,
            config.auth.bcrypt_cost,
            channels.default_channel(),
            in_use_wait,
        )?)),
        // To come: `PgStore::open` with `config.store.url`, the password of
        // `crate::config::store_password(&config.store)` and `config.store.pool_size()`.
        StoreBackend::Postgres => Err(StoreError::Database(POSTGRES_NOT_WIRED.into())),
    }
}

/// Whether other processes may open the store while a daemon holds it: the command line
/// then opens it itself instead of asking the daemon.
pub fn is_shared(config: &Config) -> bool {
    match config.store.backend {
        StoreBackend::Redb => false,
        StoreBackend::Postgres => true,
    }
}

/// The directory whose file system holds the database, where the free-space floor
/// (`limits.min_free_space_mb`) applies: the data directory for redb, none for a database
/// on another machine.
pub fn local_dir(config: &Config) -> Option<&Path> {
    match config.store.backend {
        StoreBackend::Redb => Some(&config.data_dir),
        StoreBackend::Postgres => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use atacama_core::config::StoreConfig;

    fn config(dir: &Path, store: StoreConfig) -> Config {
        Config {
            data_dir: dir.to_path_buf(),
            auth: atacama_core::config::Auth {
                bcrypt_cost: 4,
                ..Default::default()
            },
            store,
            ..Config::default()
        }
    }

    #[test]
    fn redb_opens_the_file_in_the_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path(), StoreConfig::default());
        let store = open(&config, Duration::ZERO).unwrap();
        let file = dir.path().join(atacama_store::DATABASE_FILE);
        assert_eq!(store.location(), file.display().to_string());
        assert_eq!(store.bcrypt_cost(), 4);
        assert!(!is_shared(&config));
        assert_eq!(local_dir(&config), Some(dir.path()));
        assert!(matches!(
            open(&config, Duration::ZERO),
            Err(StoreError::InUse(_))
        ));
    }

    #[test]
    fn postgres_is_refused_not_replaced_by_redb() {
        let dir = tempfile::tempdir().unwrap();
        let postgres = StoreConfig {
            backend: StoreBackend::Postgres,
            url: Some("postgres://db.example.org/atacama".into()),
            ..StoreConfig::default()
        };
        let config = config(&dir.path().join("data"), postgres);
        let error = open(&config, Duration::ZERO).unwrap_err();
        assert_eq!(error, StoreError::Database(POSTGRES_NOT_WIRED.into()));
        assert!(error.to_string().contains("PostgreSQL"), "{error}");
        assert!(!dir.path().join("data").exists(), "no redb file made");
        assert!(is_shared(&config));
        assert_eq!(local_dir(&config), None);
    }
}
