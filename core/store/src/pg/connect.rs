//! How to reach the database: `store.url` read as libpq reads it, as far as the `postgres`
//! crate does not, and TLS through rustls.
//!
//! # TLS
//! `sslmode=require`, `verify-ca` or `verify-full` in `store.url`: the connection is TLS, and
//! the server's certificate is always verified, name included (what libpq calls
//! `verify-full`; a certificate nobody can check protects from no one on the path), against
//! the CA file `sslrootcert=` names, else the system's CAs (`SSL_CERT_FILE`,
//! `/etc/ssl/certs`). `prefer` (libpq's default) and `disable` connect without TLS: `prefer`
//! cannot be both verified and lenient. A Unix socket never has TLS. The `postgres` crate
//! knows neither `sslrootcert` nor the `verify-*` modes, so they are taken out of the URL
//! before it reads the rest.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use postgres::config::{Host, SslMode};
use postgres::{Client, NoTls};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::{CONNECT_TIMEOUT, PgConfig, pgpass};
use crate::StoreError;

/// What a connection is made with: the client's config, and TLS if asked for.
#[derive(Clone)]
pub(super) struct Connector {
    config: postgres::Config,
    tls: Option<MakeRustlsConnect>,
}

impl Connector {
    /// `store.url` with the password file's password (else the URL's, else libpq's password
    /// file's: [`pgpass`]), a connect timeout unless the URL sets one, and TLS if it asks.
    pub fn new(config: &PgConfig) -> Result<Connector, StoreError> {
        let bad_url = |problem: String| StoreError::Database(format!("store.url: {problem}"));
        let libpq = LibpqParams::take(&config.url);
        // Not the URL itself in errors: it may hold a password.
        let mut client_config =
            postgres::Config::from_str(&libpq.rest).map_err(|e| bad_url(e.to_string()))?;
        if libpq.verify {
            client_config.ssl_mode(SslMode::Require);
        }
        if let Some(millis) = &libpq.tcp_user_timeout {
            let millis: u64 = millis.parse().map_err(|_| {
                bad_url(format!(
                    "tcp_user_timeout must be a whole number of milliseconds, not {millis:?}"
                ))
            })?;
            // 0: the system's default, as in libpq.
            if millis > 0 {
                client_config.tcp_user_timeout(Duration::from_millis(millis));
            }
        }
        if let Some(password) = &config.password {
            client_config.password(password);
        } else if client_config.get_password().is_none()
            && let Some(file) = pgpass::default_file()
            && let Some(password) = pgpass::lookup(&file, &client_config)
        {
            client_config.password(password);
        }
        if client_config.get_connect_timeout().is_none() {
            client_config.connect_timeout(CONNECT_TIMEOUT);
        }
        dead_peer_timeouts(&mut client_config, libpq.tcp_user_timeout.is_some());
        let tls = match client_config.get_ssl_mode() {
            SslMode::Require => Some(rustls_connector(libpq.root_cert.as_deref())?),
            _ if libpq.root_cert.is_some() => {
                return Err(bad_url(
                    "sslrootcert is given but sslmode is not require, verify-ca or verify-full"
                        .into(),
                ));
            }
            // Unencrypted, as `prefer` is when the client has no TLS.
            _ => {
                client_config.ssl_mode(SslMode::Disable);
                None
            }
        };
        Ok(Connector {
            config: client_config,
            tls,
        })
    }

    /// A new connection.
    pub fn connect(&self) -> Result<Client, postgres::Error> {
        match &self.tls {
            Some(tls) => self.config.connect(tls.clone()),
            None => self.config.connect(NoTls),
        }
    }

    /// `postgresql://user@host:port/dbname`, never the password: for the log and the command
    /// line.
    pub fn location(&self) -> String {
        let config = &self.config;
        let hosts: Vec<String> = config
            .get_hosts()
            .iter()
            .enumerate()
            .map(|(n, host)| {
                let host = match host {
                    Host::Tcp(name) => name.clone(),
                    Host::Unix(path) => path.display().to_string(),
                };
                match config.get_ports().get(n).or(config.get_ports().first()) {
                    Some(port) => format!("{host}:{port}"),
                    None => host,
                }
            })
            .collect();
        format!(
            "postgresql://{}@{}/{}",
            config.get_user().unwrap_or_default(),
            hosts.join(","),
            config.get_dbname().unwrap_or_default()
        )
    }
}

/// TCP's own defaults notice a database host that vanished (powered off, cut off) only
/// after about 15 minutes of retransmissions, or 2 hours of silence: meanwhile every commit
/// thread waits, and no delivery gets its `451`. These make a connection that hears nothing
/// fail within about half a minute, unless `store.url` sets them (libpq's names). A Unix
/// socket has neither; a server that is merely slow is not affected (it acknowledges).
fn dead_peer_timeouts(config: &mut postgres::Config, user_timeout_given: bool) {
    if !user_timeout_given {
        config.tcp_user_timeout(TCP_USER_TIMEOUT);
    }
    if config.get_keepalives_idle() == LIBPQ_KEEPALIVES_IDLE {
        config.keepalives_idle(KEEPALIVES_IDLE);
    }
    if config.get_keepalives_interval().is_none() {
        config.keepalives_interval(KEEPALIVES_INTERVAL);
    }
    if config.get_keepalives_retries().is_none() {
        config.keepalives_retries(KEEPALIVES_RETRIES);
    }
}

/// How long sent data may stay unacknowledged before the connection fails.
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(30);
/// Silence before the first keepalive probe, then between probes, and probes unanswered
/// before the connection fails: 10 + 3 × 5 = 25 s.
const KEEPALIVES_IDLE: Duration = Duration::from_secs(10);
const KEEPALIVES_INTERVAL: Duration = Duration::from_secs(5);
const KEEPALIVES_RETRIES: u32 = 3;
/// The crate's default idle time, which is libpq's: a URL that leaves it unset reads as this.
const LIBPQ_KEEPALIVES_IDLE: Duration = Duration::from_secs(2 * 60 * 60);

/// What libpq reads from a URL that the `postgres` crate does not.
#[derive(Debug, PartialEq, Eq)]
struct LibpqParams {
    /// The URL without them.
    rest: String,
    /// `sslrootcert`: the CA file to verify the server with.
    root_cert: Option<PathBuf>,
    /// `sslmode=verify-ca` or `verify-full`.
    verify: bool,
    /// `tcp_user_timeout`, which libpq reads in milliseconds and the crate in seconds: the
    /// value as written, read as libpq would.
    tcp_user_timeout: Option<String>,
}

impl LibpqParams {
    /// Takes `sslrootcert` and the `verify-*` sslmodes out of a URL (`postgresql://…?a=b&…`)
    /// or a key=value string (unquoted values only; a quoted one is left to the crate, which
    /// refuses it by name).
    fn take(url: &str) -> LibpqParams {
        let mut params = LibpqParams {
            rest: String::new(),
            root_cert: None,
            verify: false,
            tcp_user_timeout: None,
        };
        let is_url = url.starts_with("postgres://") || url.starts_with("postgresql://");
        let (head, tail, separator) = match (is_url, url.split_once('?')) {
            (true, Some((head, query))) => (format!("{head}?"), query, '&'),
            (true, None) => {
                return LibpqParams {
                    rest: url.into(),
                    ..params
                };
            }
            (false, _) => (String::new(), url, ' '),
        };
        let kept: Vec<&str> = tail
            .split(separator)
            .filter(|param| match param.split_once('=') {
                Some(("sslrootcert", path)) => {
                    params.root_cert = Some(PathBuf::from(path));
                    false
                }
                Some(("sslmode", "verify-ca" | "verify-full")) => {
                    params.verify = true;
                    false
                }
                Some(("tcp_user_timeout", millis)) => {
                    params.tcp_user_timeout = Some(millis.to_string());
                    false
                }
                _ => true,
            })
            .collect();
        params.rest = head + &kept.join(&separator.to_string());
        params
    }
}

/// A TLS connector that verifies the server against `root_cert`, else the system's CAs.
fn rustls_connector(root_cert: Option<&Path>) -> Result<MakeRustlsConnect, StoreError> {
    let mut roots = rustls::RootCertStore::empty();
    match root_cert {
        Some(path) => {
            let problem = |e: &dyn std::fmt::Display| {
                StoreError::Database(format!("store.url: sslrootcert {}: {e}", path.display()))
            };
            for cert in CertificateDer::pem_file_iter(path).map_err(|e| problem(&e))? {
                roots
                    .add(cert.map_err(|e| problem(&e))?)
                    .map_err(|e| problem(&e))?;
            }
            if roots.is_empty() {
                return Err(problem(&"holds no certificate"));
            }
        }
        None => {
            // A system store with a few unreadable certificates still verifies with the rest.
            let (added, _) =
                roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
            if added == 0 {
                return Err(StoreError::Database(
                    "store.url: sslmode asks for TLS, and the system has no CA certificates: \
                     name the database's CA with sslrootcert="
                        .into(),
                ));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::Database(format!("TLS to the database: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vanished_database_host_is_noticed_within_half_a_minute_unless_the_url_says() {
        let connector = |url: &str| {
            Connector::new(&PgConfig {
                url: url.into(),
                password: Some("x".into()),
                pool_size: 1,
            })
            .unwrap()
            .config
        };
        let ours = connector("postgresql://a@db.example.org/d");
        assert_eq!(ours.get_tcp_user_timeout(), Some(&TCP_USER_TIMEOUT));
        assert_eq!(ours.get_keepalives_idle(), KEEPALIVES_IDLE);
        assert_eq!(ours.get_keepalives_interval(), Some(KEEPALIVES_INTERVAL));
        assert_eq!(ours.get_keepalives_retries(), Some(KEEPALIVES_RETRIES));
        assert!(ours.get_keepalives());
        let theirs = connector(
            "postgresql://a@db.example.org/d?tcp_user_timeout=60000&keepalives_idle=120\
             &keepalives_interval=7&keepalives_retries=9",
        );
        assert_eq!(
            theirs.get_tcp_user_timeout(),
            Some(&Duration::from_secs(60))
        );
        assert_eq!(theirs.get_keepalives_idle(), Duration::from_secs(120));
        assert_eq!(
            theirs.get_keepalives_interval(),
            Some(Duration::from_secs(7))
        );
        assert_eq!(theirs.get_keepalives_retries(), Some(9));
        // 0 is the system's default, as in libpq; not a number is refused by name.
        let system = connector("postgresql://a@db.example.org/d?tcp_user_timeout=0");
        assert_eq!(system.get_tcp_user_timeout(), None);
        let refused = Connector::new(&PgConfig {
            url: "host=db user=a tcp_user_timeout=30s".into(),
            password: None,
            pool_size: 1,
        });
        assert!(
            matches!(&refused, Err(StoreError::Database(why)) if why == "store.url: \
                tcp_user_timeout must be a whole number of milliseconds, not \"30s\""),
            "{:?}",
            refused.err()
        );
    }

    #[test]
    fn libpq_only_params_are_taken_out_of_urls_and_key_value_strings() {
        let cases = [
            ("postgresql://a@h/d", "postgresql://a@h/d", None, false),
            (
                "postgresql://a@h/d?sslmode=verify-full&sslrootcert=/ca.pem&application_name=x",
                "postgresql://a@h/d?application_name=x",
                Some("/ca.pem"),
                true,
            ),
            (
                "postgres://a@h/d?sslmode=require&sslrootcert=/ca.pem",
                "postgres://a@h/d?sslmode=require",
                Some("/ca.pem"),
                false,
            ),
            (
                "host=h user=a sslmode=verify-ca sslrootcert=/ca.pem dbname=d",
                "host=h user=a dbname=d",
                Some("/ca.pem"),
                true,
            ),
        ];
        for (url, rest, root_cert, verify) in cases {
            let expected = LibpqParams {
                rest: rest.into(),
                root_cert: root_cert.map(PathBuf::from),
                verify,
                tcp_user_timeout: None,
            };
            assert_eq!(LibpqParams::take(url), expected, "{url}");
        }
    }

    #[test]
    fn tls_settings_that_cannot_work_name_store_url() {
        let config = |url: &str| PgConfig {
            url: url.into(),
            password: None,
            pool_size: 1,
        };
        let problem = |url: &str| match Connector::new(&config(url)) {
            Err(StoreError::Database(problem)) => problem,
            Err(other) => panic!("{url}: {other:?}"),
            Ok(_) => panic!("{url}: accepted"),
        };
        assert!(problem("postgresql://a@h/d?sslrootcert=/ca.pem").starts_with("store.url: "));
        let missing = problem("postgresql://a@h/d?sslmode=verify-full&sslrootcert=/no/ca.pem");
        assert!(
            missing.starts_with("store.url: sslrootcert /no/ca.pem: "),
            "{missing}"
        );
        assert!(problem("postgresql://a@h/d?sslmode=nonsense").starts_with("store.url: "));
        Connector::new(&config("postgresql://a@h/d?sslmode=prefer")).unwrap();
    }
}
