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
use atacama_store::pg::{PgConfig, PgStore};
use atacama_store::{Backend, Store, StoreError};

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
        StoreBackend::Postgres => {
            let url = config.store.url.clone().ok_or_else(|| {
                StoreError::Database("store.url: missing, and store.backend is \"postgres\"".into())
            })?;
            Ok(Arc::new(PgStore::open(
                &pg_config(config, url)?,
                config.auth.bcrypt_cost,
                channels.default_channel(),
            )?))
        }
    }
}

/// How to reach the PostgreSQL database at `url` with the rest of `[store]`: its password
/// file, its pool size.
pub fn pg_config(config: &Config, url: String) -> Result<PgConfig, StoreError> {
    // Read again here (the config's load checked it): the password is kept nowhere else.
    let password = crate::config::store_password(&config.store)
        .map_err(|error| StoreError::Database(error.to_string()))?;
    Ok(PgConfig {
        url,
        password,
        pool_size: usize::try_from(config.store.pool_size()).unwrap_or(usize::MAX),
    })
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
    fn postgres_opens_the_database_and_makes_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let url = atacama_store::testing::Postgres::shared().fresh_database();
        let postgres = StoreConfig {
            backend: StoreBackend::Postgres,
            url: Some(url),
            pool_size: Some(2),
            ..StoreConfig::default()
        };
        let config = config(&dir.path().join("data"), postgres);
        let store = open(&config, Duration::ZERO).unwrap();
        store
            .add_user("alice", "s3cret", std::time::UNIX_EPOCH)
            .unwrap();
        // Shared: a second open (another daemon, the command line) sees the same users.
        let again = open(&config, Duration::ZERO).unwrap();
        assert!(again.verify_user("alice", "s3cret").unwrap());
        assert!(!dir.path().join("data").exists(), "no redb file made");
        assert!(is_shared(&config));
        assert_eq!(local_dir(&config), None);
    }

    #[test]
    fn an_unreachable_postgres_is_an_error_naming_it_not_redb() {
        let dir = tempfile::tempdir().unwrap();
        let postgres = StoreConfig {
            backend: StoreBackend::Postgres,
            url: Some(format!(
                "postgresql://nobody@/atacama?host={}",
                dir.path().display()
            )),
            ..StoreConfig::default()
        };
        let config = config(&dir.path().join("data"), postgres);
        let error = open(&config, Duration::ZERO).unwrap_err();
        assert!(!error.to_string().is_empty());
        assert!(!dir.path().join("data").exists(), "no redb file made");
    }
}
