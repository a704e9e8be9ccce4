//! `store migrate` and `store copy|verify --to postgres|redb`: what an operator runs to
//! bring a schema up to date, to move a site between backends, and to back PostgreSQL up
//! into a redb file. The source is always the configured `[store]`; the target is named on
//! the command line. The copy itself is `atacama_store::copy`.
//!
//! These commands open the stores themselves, never through a daemon: a redb file that a
//! server holds is refused ([`StoreError::InUse`]) rather than copied while it changes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use atacama_core::config::{Config, StoreBackend};
use atacama_store::copy::{self, CopyError};
use atacama_store::data_dir::DataDir;
use atacama_store::pg::{Migration, PgStore};
use atacama_store::{Backend, Store, StoreError};

use super::CliError;
use super::args::{CopyMode, CopyTo, StoreCommand};
use super::output::write_stdout;
use crate::store;

/// Connections the copy's PostgreSQL target keeps: it writes one batch at a time.
const COPY_POOL_SIZE: usize = 2;

/// Runs one `store` subcommand. `data_dirs` are the command line's `--data-dir`s, the one
/// before the last and the last: the last is the source's as for every command, but the
/// target's for `--to redb`, whose source is then the one before it.
pub(super) fn run(
    config: Config,
    data_dirs: (Option<PathBuf>, Option<PathBuf>),
    command: StoreCommand,
) -> Result<(), CliError> {
    let (earlier, data_dir) = data_dirs;
    match command {
        StoreCommand::Migrate => migrate(&with_data_dir(config, data_dir)),
        StoreCommand::Copy {
            to: CopyTo::Redb,
            mode,
        } => {
            let target = data_dir.unwrap_or_else(|| config.data_dir.clone());
            let config = with_data_dir(config, earlier);
            copy_to(&config, Target::Redb(target), mode)
        }
        StoreCommand::Copy {
            to: CopyTo::Postgres { url },
            mode,
        } => copy_to(
            &with_data_dir(config, data_dir),
            Target::Postgres(url),
            mode,
        ),
    }
}

/// Where a copy goes.
enum Target {
    Redb(PathBuf),
    /// `--url`, if given.
    Postgres(Option<String>),
}

/// `store migrate`: PostgreSQL's migrations, or redb's open (which migrates the file).
fn migrate(config: &Config) -> Result<(), CliError> {
    let (location, migration) = match config.store.backend {
        StoreBackend::Postgres => {
            let url = config.store.url.clone().ok_or_else(|| {
                CliError::Failed("store.url: missing, and store.backend is \"postgres\"".into())
            })?;
            let pg = store::pg_config(config, url)?;
            let migration = PgStore::migrate(&pg)?;
            (PgStore::location_of(&pg)?, migration)
        }
        StoreBackend::Redb => {
            let redb = open_redb(config, &config.data_dir)?;
            (redb.location(), redb.migration())
        }
    };
    let Migration { from, to } = migration;
    let said = if from == to {
        format!("{location}: schema is at version {to}\n")
    } else {
        format!("{location}: schema migrated from version {from} to {to}\n")
    };
    write_stdout(said.as_bytes())
}

/// `store copy [--resume]` or `store verify`.
fn copy_to(config: &Config, target: Target, mode: CopyMode) -> Result<(), CliError> {
    let started = Instant::now();
    let from = open_source(config)?;
    let to: Arc<dyn Backend> = match target {
        Target::Redb(dir) => {
            if config.store.backend == StoreBackend::Redb && same_dir(&dir, &config.data_dir) {
                return Err(CliError::Failed(format!(
                    "{} is the configured store's data directory: name the target with \
                     --data-dir DIR",
                    dir.display()
                )));
            }
            Arc::new(open_redb(config, &dir)?)
        }
        Target::Postgres(url) => {
            let url = url.or_else(|| config.store.url.clone()).ok_or_else(|| {
                CliError::Usage(
                    "--to postgres needs --url URL, or store.url in the configuration".into(),
                )
            })?;
            let mut pg = store::pg_config(config, url)?;
            pg.pool_size = COPY_POOL_SIZE;
            Arc::new(PgStore::open(
                &pg,
                config.auth.bcrypt_cost,
                &default_channel(config)?,
            )?)
        }
    };
    if from.location() == to.location() {
        return Err(CliError::Failed(format!(
            "{} is both the source and the target",
            to.location()
        )));
    }
    let failed = |error: CopyError| CliError::Failed(error.to_string());
    let mut said = String::new();
    let copied = match mode {
        CopyMode::Copy => Some(copy::copy(&*from, &*to).map_err(failed)?),
        CopyMode::Resume => Some(copy::resume(&*from, &*to).map_err(failed)?),
        CopyMode::Verify => None,
    };
    if let Some(copied) = copied {
        said.push_str(&format!(
            "copied {} users, {} tokens and {} messages ({} as stored) from {} to {} in {}\n",
            copied.users,
            copied.tokens,
            copied.messages,
            megabytes(copied.stored_bytes),
            from.location(),
            to.location(),
            seconds(started.elapsed()),
        ));
        write_stdout(said.as_bytes())?;
    }
    let verifying = Instant::now();
    let verified = copy::verify(&*from, &*to).map_err(failed)?;
    let said = format!(
        "verified in {}: {} users, {} tokens and {} messages ({} raw) equal on both sides, \
         SHA-256 {}\n",
        seconds(verifying.elapsed()),
        verified.users,
        verified.tokens,
        verified.messages,
        megabytes(verified.raw_bytes),
        verified.sha256,
    );
    write_stdout(said.as_bytes())
}

/// The configured store, opened by this process alone: a redb file a server holds is
/// refused, not waited for.
fn open_source(config: &Config) -> Result<Arc<dyn Backend>, CliError> {
    match config.store.backend {
        StoreBackend::Redb => Ok(Arc::new(open_redb(config, &config.data_dir)?)),
        StoreBackend::Postgres => Ok(store::open(config, Duration::ZERO)?),
    }
}

/// The redb store in `dir` (created 0700 if missing), with the configuration's bcrypt cost
/// and default channel; one that another process holds is refused, saying why.
fn open_redb(config: &Config, dir: &Path) -> Result<Store, CliError> {
    DataDir::prepare(dir).map_err(|e| CliError::Failed(e.to_string()))?;
    let opened =
        Store::open_in_with_channel(dir, config.auth.bcrypt_cost, &default_channel(config)?);
    opened.map_err(|error| match error {
        StoreError::InUse(_) => CliError::Failed(format!(
            "{error}: a running server holds it; stop the server first (the store commands \
             open the file themselves)"
        )),
        error => error.into(),
    })
}

/// `channels.default`: the channel of messages a redb file stored before channels existed.
fn default_channel(config: &Config) -> Result<String, CliError> {
    let channels = config.channels()?;
    Ok(channels.default_channel().to_string())
}

/// `config` with the command line's `--data-dir`.
fn with_data_dir(mut config: Config, data_dir: Option<PathBuf>) -> Config {
    if let Some(dir) = data_dir {
        config.data_dir = dir;
    }
    config
}

/// Whether two paths name one directory (a missing one only by its name).
fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

fn seconds(elapsed: Duration) -> String {
    format!("{:.1} s", elapsed.as_secs_f64())
}
