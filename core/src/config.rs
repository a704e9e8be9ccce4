//! The configuration file (TOML) and its defaults.
//!
//! Every key is optional: with no file at all the server listens on 127.0.0.1:2587 (STARTTLS)
//! and 127.0.0.1:2465 (implicit TLS, RFC 8314) and keeps its data in `./atacama-data`. Unknown
//! keys are errors, not warnings: a misspelt `max_recipents` must not silently keep a default.
//! Every error names the key (`limits.max_recipients`) or the file it is about.
//!
//! Relative paths are relative to the working directory of the process.
//!
//! Only the text is read here: reading the file, the machine's host name (the default of
//! `hostname`) and whether the TLS files exist are the server's (`atacama_server::config`).

use std::fmt;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::channels::{Channels, DEFAULT_CHANNEL};
use crate::smtp::{BareNewline, SessionConfig};

/// The default free-space floor, `limits.min_free_space_mb`.
pub const DEFAULT_MIN_FREE_SPACE_MB: u64 = 64;

/// The largest `limits.min_free_space_mb`: 1 TiB.
pub const MAX_MIN_FREE_SPACE_MB: u64 = 1 << 20;

/// The web side's default address, `http.listen`.
pub const DEFAULT_HTTP_LISTEN: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::LOCALHOST,
    2580,
));

/// The longest `http.public_url`, in bytes.
pub const MAX_PUBLIC_URL: usize = 2048;

/// The longest `http.site_name`, in characters.
pub const MAX_SITE_NAME: usize = 200;

/// The default `store.pool_size`: PostgreSQL connections one daemon keeps open.
pub const DEFAULT_POOL_SIZE: u32 = 8;

/// The largest `store.pool_size`.
pub const MAX_POOL_SIZE: u32 = 256;

/// The host name of [`Config::default`], and the machine's when its own cannot be read.
pub const DEFAULT_HOSTNAME: &str = "localhost";

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Our name in the greeting, EHLO reply and `Received:` header; default: the machine's.
    pub hostname: String,
    /// Where the database (and a generated certificate) live.
    pub data_dir: PathBuf,
    /// Certificate and key; `None` means a self-signed pair generated in `data_dir`.
    pub tls: Option<TlsPaths>,
    /// Addresses to listen on.
    pub listen: Listen,
    /// Sizes, counts and timeouts.
    pub limits: Limits,
    /// Authentication policy.
    pub auth: Auth,
    /// The web side: where it listens and how it names itself.
    pub http: Http,
    /// Where messages go, and who may read them.
    pub channels: ChannelsConfig,
    /// Which database holds users and messages.
    pub store: StoreConfig,
}

/// `[store]`: the database. redb (one file in `data_dir`) unless `backend = "postgres"`.
///
/// The PostgreSQL keys are `Option`s so that one given with redb, where it would be silently
/// ignored, is refused instead ([`Config::validate`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Which database.
    pub backend: StoreBackend,
    /// PostgreSQL's connection URL, `postgres://` or `postgresql://`; required with it.
    pub url: Option<String>,
    /// A file holding the database password (one trailing newline is not part of it); read by
    /// the server, which refuses it unless only its owner may read it.
    pub password_file: Option<PathBuf>,
    /// Connections to PostgreSQL one daemon keeps, 1..=256; default [`DEFAULT_POOL_SIZE`].
    pub pool_size: Option<u32>,
}

/// `store.backend`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreBackend {
    /// One redb file in `data_dir`, held by one process.
    #[default]
    Redb,
    /// A PostgreSQL database that several daemons may share.
    Postgres,
}

/// `[http]`: the web read side.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Http {
    /// Addresses to serve HTTP on; empty turns the web side off. One address or a list.
    #[serde(deserialize_with = "addresses")]
    pub listen: Vec<SocketAddr>,
    /// Where `/` is reached from outside: an absolute `http` or `https` URL, perhaps with a
    /// path prefix, without query or fragment. Held normalised: scheme in lower case, no
    /// trailing `/`. Default (filled in by [`Config::parse`]): `http://` and the first
    /// `listen` address.
    pub public_url: String,
    /// The title of pages and feeds.
    pub site_name: String,
    /// Seconds an idle keep-alive connection stays open between requests.
    pub idle_timeout_secs: u64,
    /// Web connections open at once, idle ones included; counted apart from SMTP's.
    pub max_connections: usize,
}

/// `[channels]` as written; [`Config::channels`] checks it and fills in the default.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChannelsConfig {
    /// Where a message goes when no recipient names a channel; unset: the first public one.
    pub default: Option<String>,
    /// Channels anyone may read.
    pub public: Vec<String>,
    /// Channels only a token holder may read.
    pub private: Vec<String>,
}

/// PEM files of the server certificate chain and its private key.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsPaths {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key.
    pub key: PathBuf,
}

/// Listening addresses by port kind. Each key takes one address (`"127.0.0.1:2587"`) or a
/// list of them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Listen {
    /// Plaintext with STARTTLS (RFC 6409, port 587).
    #[serde(deserialize_with = "addresses")]
    pub submission: Vec<SocketAddr>,
    /// TLS from the first byte (RFC 8314 §3.3, port 465).
    #[serde(deserialize_with = "addresses")]
    pub submissions: Vec<SocketAddr>,
}

/// Limits on messages, connections and time.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest message accepted, in octets.
    pub max_message_size: usize,
    /// Recipients per message.
    pub max_recipients: usize,
    /// Connections open at once, over all addresses.
    pub max_connections: usize,
    /// Connections open at once from one client address.
    pub max_connections_per_ip: usize,
    /// Seconds a client may take to send the next command.
    pub command_timeout_secs: u64,
    /// Seconds a client may stay silent in the middle of a message (RFC 5321 §4.5.3.2.5).
    pub data_timeout_secs: u64,
    /// The slowest average a message may arrive at, in bytes per second, once
    /// `min_data_rate_grace_secs` have passed after `354`; 0 turns the check off.
    pub min_data_rate: u64,
    /// Seconds after `354` before `min_data_rate` applies.
    pub min_data_rate_grace_secs: u64,
    /// Commands a client may send before it has logged in; the next gets `421 4.7.0`.
    pub preauth_commands: u32,
    /// Seconds a client may stay connected without logging in, then `421 4.7.0`.
    pub preauth_timeout_secs: u64,
    /// The prefix length an IPv6 client is counted by, in the per-address connection cap
    /// and the failed-login throttle: one host usually holds a whole /64.
    pub ipv6_prefix: u8,
    /// What to do with bare LF / bare CR in a message.
    pub bare_newline: BareNewline,
    /// Store the messages that arrive together in one durable transaction (one fsync for
    /// many); each `250` still waits for the commit holding its message. `false`: one
    /// transaction per message.
    pub group_commit: bool,
    /// MiB that must stay free on the data directory's file system: below it MAIL gets
    /// `452 4.3.1` before any byte of a message is written (Postfix's `queue_minfree`).
    /// 0..=1048576 (1 TiB); 0 turns the floor off.
    pub min_free_space_mb: u64,
    /// Seconds the store keeps trying to reopen its database after an I/O error (a full disk
    /// aside: that waits for room) before the server exits non-zero for systemd to restart
    /// it. 1..=3600.
    pub store_reopen_timeout_secs: u64,
    /// Seconds a session waits for the store, MAIL for its check of the login and a delivery
    /// for the commit that holds its message, before it answers `451 4.3.0` (a database
    /// that stopped answering: the client tries again later; `/healthz` says `503` while a
    /// commit or a probe of the database runs longer). 1..=3600.
    pub store_timeout_secs: u64,
}

/// Authentication policy.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Auth {
    /// bcrypt cost of new password hashes (4..=31; 12 takes about 0.2 s per check).
    pub bcrypt_cost: u32,
    /// AUTH, MAIL, RCPT and DATA only over TLS.
    pub require_tls: bool,
    /// Failed AUTH attempts before the connection is closed.
    pub max_failures_per_connection: u32,
    /// MAIL FROM must be the login name.
    pub sender_must_match_user: bool,
}

/// Why the configuration could not be loaded. Each variant names the key or file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// The config file could not be read.
    Read {
        /// The config file.
        path: PathBuf,
        /// What the OS said.
        problem: String,
    },
    /// The file is not valid TOML.
    Syntax {
        /// The config file.
        path: PathBuf,
        /// Line, column and what is wrong.
        problem: String,
    },
    /// A key is unknown, has the wrong type, or a value out of range.
    Invalid {
        /// The dotted key, e.g. `limits.max_recipients`.
        key: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A file named by the configuration does not exist.
    MissingFile {
        /// The dotted key, e.g. `tls.cert`.
        key: String,
        /// The file it names.
        path: PathBuf,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Read { path, problem } => {
                write!(f, "cannot read config file {}: {problem}", path.display())
            }
            ConfigError::Syntax { path, problem } => {
                write!(f, "config file {}: {problem}", path.display())
            }
            ConfigError::Invalid { key, problem } => write!(f, "config key {key}: {problem}"),
            ConfigError::MissingFile { key, path } => {
                write!(
                    f,
                    "config key {key}: file {} does not exist",
                    path.display()
                )
            }
        }
    }
}

impl std::error::Error for ConfigError {}

/// The built-in defaults, with [`DEFAULT_HOSTNAME`] for our name: a server puts in the
/// machine's ([`Config::parse`]).
impl Default for Config {
    fn default() -> Self {
        Config {
            hostname: DEFAULT_HOSTNAME.to_string(),
            data_dir: PathBuf::from("./atacama-data"),
            tls: None,
            listen: Listen::default(),
            limits: Limits::default(),
            auth: Auth::default(),
            http: Http::default(),
            channels: ChannelsConfig::default(),
            store: StoreConfig::default(),
        }
    }
}

impl Default for Http {
    fn default() -> Self {
        Http {
            listen: vec![DEFAULT_HTTP_LISTEN],
            public_url: format!("http://{DEFAULT_HTTP_LISTEN}"),
            site_name: "Atacama".to_string(),
            idle_timeout_secs: 30,
            max_connections: 512,
        }
    }
}

impl Default for ChannelsConfig {
    fn default() -> Self {
        ChannelsConfig {
            default: None,
            public: vec![DEFAULT_CHANNEL.to_string()],
            private: Vec::new(),
        }
    }
}

impl Default for Listen {
    fn default() -> Self {
        Listen {
            submission: vec![SocketAddr::from(([127, 0, 0, 1], 2587))],
            submissions: vec![SocketAddr::from(([127, 0, 0, 1], 2465))],
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        let session = SessionConfig::default();
        Limits {
            max_message_size: session.max_message_size,
            max_recipients: session.max_recipients,
            max_connections: 1000,
            max_connections_per_ip: 50,
            command_timeout_secs: session.command_timeout.as_secs(),
            data_timeout_secs: session.data_timeout.as_secs(),
            min_data_rate: session.min_data_rate,
            min_data_rate_grace_secs: session.data_rate_grace.as_secs(),
            preauth_commands: session.preauth_commands,
            preauth_timeout_secs: session.preauth_timeout.as_secs(),
            ipv6_prefix: 64,
            bare_newline: session.bare_newline,
            group_commit: true,
            min_free_space_mb: DEFAULT_MIN_FREE_SPACE_MB,
            store_reopen_timeout_secs: 60,
            store_timeout_secs: 60,
        }
    }
}

impl Default for Auth {
    fn default() -> Self {
        Auth {
            bcrypt_cost: 12,
            require_tls: true,
            max_failures_per_connection: 3,
            sender_must_match_user: true,
        }
    }
}

impl Config {
    /// Parses and checks TOML text; a text without `hostname` gets `machine_hostname`, which
    /// the caller reads (the machine's name). Syntax errors carry an empty path, for the
    /// caller that read the file to fill in. Whether the TLS files exist is not checked here.
    pub fn parse(text: &str, machine_hostname: &str) -> Result<Config, ConfigError> {
        // Syntax first, so that a type error is never reported for a file that is not TOML.
        let document = toml::de::DeTable::parse(text).map_err(|e| syntax_error(text, &e))?;
        let mut config: Config = toml::from_str(text).map_err(|e| {
            let key = e
                .span()
                .and_then(|span| key_at(document.get_ref(), span.start))
                .unwrap_or_default();
            invalid_key(key, e.message())
        })?;
        let names_host = document
            .get_ref()
            .keys()
            .any(|key| &**key.get_ref() == "hostname");
        if !names_host {
            config.hostname = machine_hostname.to_string();
        }
        let names_public_url = document.get_ref().iter().any(|(key, value)| {
            &**key.get_ref() == "http"
                && matches!(value.get_ref(), toml::de::DeValue::Table(http)
                    if http.keys().any(|key| &**key.get_ref() == "public_url"))
        });
        if names_public_url {
            config.http.public_url = normalise_public_url(&config.http.public_url)
                .map_err(|problem| invalid_key("http.public_url".into(), &problem))?;
        } else if let Some(first) = config.http.listen.first() {
            config.http.public_url = format!("http://{first}");
        }
        config.validate()?;
        Ok(config)
    }

    /// The settings of one SMTP session under this configuration.
    pub fn session_config(&self) -> SessionConfig {
        SessionConfig {
            hostname: self.hostname.clone(),
            max_message_size: self.limits.max_message_size,
            max_recipients: self.limits.max_recipients,
            command_timeout: Duration::from_secs(self.limits.command_timeout_secs),
            data_timeout: Duration::from_secs(self.limits.data_timeout_secs),
            min_data_rate: self.limits.min_data_rate,
            data_rate_grace: Duration::from_secs(self.limits.min_data_rate_grace_secs),
            preauth_commands: self.limits.preauth_commands,
            preauth_timeout: Duration::from_secs(self.limits.preauth_timeout_secs),
            bare_newline: self.limits.bare_newline,
            require_tls: self.auth.require_tls,
            max_auth_failures: self.auth.max_failures_per_connection,
            sender_must_match_user: self.auth.sender_must_match_user,
            ..SessionConfig::default()
        }
    }

    /// The checked `[channels]`, the default filled in; the error names the key.
    pub fn channels(&self) -> Result<Channels, ConfigError> {
        let c = &self.channels;
        Channels::new(c.default.as_deref(), &c.public, &c.private).map_err(|e| {
            ConfigError::Invalid {
                key: e.key.to_string(),
                problem: e.problem,
            }
        })
    }

    /// The range checks serde cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, problem: String| ConfigError::Invalid {
            key: key.to_string(),
            problem,
        };
        if let Some(problem) = hostname_problem(&self.hostname) {
            return Err(invalid(
                "hostname",
                format!("{:?} {problem}", self.hostname),
            ));
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(invalid("data_dir", "must not be empty".into()));
        }
        if self.listen.submission.is_empty() && self.listen.submissions.is_empty() {
            return Err(invalid(
                "listen",
                "at least one of listen.submission and listen.submissions must list an address"
                    .into(),
            ));
        }
        if let Err(problem) = normalise_public_url(&self.http.public_url) {
            return Err(invalid("http.public_url", problem));
        }
        let name = &self.http.site_name;
        if name.trim().is_empty() || name.chars().count() > MAX_SITE_NAME {
            return Err(invalid(
                "http.site_name",
                format!("must hold 1 to {MAX_SITE_NAME} characters, not only spaces"),
            ));
        }
        if name.chars().any(char::is_control) {
            return Err(invalid(
                "http.site_name",
                "must not hold control characters".into(),
            ));
        }
        self.channels()?;
        self.store.validate()?;
        for (key, value, range) in self.numbers() {
            if !range.contains(&value) {
                return Err(invalid(
                    key,
                    format!(
                        "must be between {} and {}, not {value}",
                        range.start(),
                        range.end()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Every numeric key with its value and the range it must lie in. The bounds keep every
    /// duration addable to a clock and every size allocatable; none is a tuning advice.
    fn numbers(&self) -> [(&'static str, u64, RangeInclusive<u64>); 18] {
        const DAY: u64 = 24 * 3600;
        const GIB: u64 = 1 << 30;
        let (l, a, h) = (&self.limits, &self.auth, &self.http);
        let size = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
        [
            ("limits.max_message_size", size(l.max_message_size), 1..=GIB),
            ("limits.max_recipients", size(l.max_recipients), 1..=100_000),
            (
                "limits.max_connections",
                size(l.max_connections),
                1..=1_000_000,
            ),
            (
                "limits.max_connections_per_ip",
                size(l.max_connections_per_ip),
                1..=1_000_000,
            ),
            (
                "limits.command_timeout_secs",
                l.command_timeout_secs,
                1..=DAY,
            ),
            ("limits.data_timeout_secs", l.data_timeout_secs, 1..=DAY),
            ("limits.min_data_rate", l.min_data_rate, 0..=GIB),
            (
                "limits.min_data_rate_grace_secs",
                l.min_data_rate_grace_secs,
                0..=DAY,
            ),
            (
                "limits.preauth_commands",
                u64::from(l.preauth_commands),
                1..=100_000,
            ),
            (
                "limits.preauth_timeout_secs",
                l.preauth_timeout_secs,
                1..=DAY,
            ),
            ("limits.ipv6_prefix", u64::from(l.ipv6_prefix), 1..=128),
            (
                "limits.min_free_space_mb",
                l.min_free_space_mb,
                0..=MAX_MIN_FREE_SPACE_MB,
            ),
            (
                "limits.store_reopen_timeout_secs",
                l.store_reopen_timeout_secs,
                1..=3600,
            ),
            ("limits.store_timeout_secs", l.store_timeout_secs, 1..=3600),
            ("auth.bcrypt_cost", u64::from(a.bcrypt_cost), 4..=31),
            (
                "auth.max_failures_per_connection",
                u64::from(a.max_failures_per_connection),
                1..=1000,
            ),
            ("http.idle_timeout_secs", h.idle_timeout_secs, 1..=DAY),
            (
                "http.max_connections",
                size(h.max_connections),
                1..=1_000_000,
            ),
        ]
    }
}

impl StoreConfig {
    /// `pool_size`, or its default.
    pub fn pool_size(&self) -> u32 {
        self.pool_size.unwrap_or(DEFAULT_POOL_SIZE)
    }

    /// The checks of `[store]`: the keys its backend needs, none that it would ignore.
    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, problem: String| ConfigError::Invalid {
            key: key.to_string(),
            problem,
        };
        match self.backend {
            StoreBackend::Redb => {
                let given = [
                    ("store.url", self.url.is_some()),
                    ("store.password_file", self.password_file.is_some()),
                    ("store.pool_size", self.pool_size.is_some()),
                ];
                if let Some((key, _)) = given.iter().find(|(_, given)| *given) {
                    return Err(invalid(
                        key,
                        "is only for store.backend = \"postgres\", and the backend is redb".into(),
                    ));
                }
            }
            StoreBackend::Postgres => {
                let Some(url) = &self.url else {
                    return Err(invalid(
                        "store.url",
                        "is missing: store.backend = \"postgres\" needs the database's URL".into(),
                    ));
                };
                if let Some(problem) = postgres_url_problem(url) {
                    return Err(invalid("store.url", problem));
                }
                if self
                    .password_file
                    .as_ref()
                    .is_some_and(|path| path.as_os_str().is_empty())
                {
                    return Err(invalid("store.password_file", "must not be empty".into()));
                }
                let size = self.pool_size();
                if !(1..=MAX_POOL_SIZE).contains(&size) {
                    return Err(invalid(
                        "store.pool_size",
                        format!("must be between 1 and {MAX_POOL_SIZE}, not {size}"),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Why `url` is not a PostgreSQL connection URL we take. Only the scheme is checked here: the
/// client library reads the rest, and its errors name `store.url` where it is opened.
fn postgres_url_problem(url: &str) -> Option<String> {
    // The URL can hold a password: it is never quoted back.
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        Some("must start with postgres:// or postgresql://".into())
    } else if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        Some("must not hold spaces or control characters".into())
    } else if url.len() > MAX_PUBLIC_URL {
        Some(format!("is longer than {MAX_PUBLIC_URL} bytes"))
    } else {
        None
    }
}

/// Why `name` cannot be our host name: it goes into replies and `Received:` headers verbatim.
pub fn hostname_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("is empty")
    } else if name.len() > 253 {
        Some("is longer than 253 characters")
    } else if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
    {
        Some("may hold only ASCII letters, digits, '-' and '.'")
    } else if name.starts_with(['.', '-']) || name.contains("..") {
        Some("is not a domain name")
    } else {
        None
    }
}

/// `http.public_url` as held: an absolute `http` or `https` URL with a host, perhaps a path,
/// no user, query or fragment; scheme in lower case, trailing `/` removed. The error says
/// what is wrong.
pub fn normalise_public_url(url: &str) -> Result<String, String> {
    if url.len() > MAX_PUBLIC_URL {
        return Err(format!("is longer than {MAX_PUBLIC_URL} bytes"));
    }
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("{url:?} is not an absolute http:// or https:// URL"))?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return Err(format!(
            "{url:?} is not an absolute http:// or https:// URL"
        ));
    }
    if rest.contains(['?', '#']) {
        return Err(format!("{url:?} must not have a query or fragment"));
    }
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let host_ok = |b: u8| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b);
    if host.is_empty() || !host.bytes().all(host_ok) {
        return Err(format!(
            "{url:?} needs a host name or address, without user"
        ));
    }
    // RFC 3986 pchar and '/': what may stand in a link unescaped.
    let path_ok = |b: u8| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@%/".contains(&b);
    if !path.bytes().all(path_ok) {
        return Err(format!(
            "{url:?} has a character in its path that must be percent-encoded"
        ));
    }
    Ok(format!("{scheme}://{host}{}", path.trim_end_matches('/')))
}

/// A `[listen]` value: one address, or a list of them (a new user writes the one address
/// they have in mind; a list is what the key holds).
fn addresses<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<SocketAddr>, D::Error> {
    struct Addresses;

    impl<'de> serde::de::Visitor<'de> for Addresses {
        type Value = Vec<SocketAddr>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an address such as \"127.0.0.1:587\", or a list of them")
        }

        fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Self::Value, E> {
            let address = text
                .parse::<SocketAddr>()
                .map_err(|_| E::custom(format!("{text:?} is not an IP address and port")))?;
            Ok(vec![address])
        }

        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            let mut addresses = Vec::new();
            while let Some(address) = seq.next_element()? {
                addresses.push(address);
            }
            Ok(addresses)
        }
    }

    deserializer.deserialize_any(Addresses)
}

fn invalid_key(key: String, message: &str) -> ConfigError {
    // serde says "missing field `key`" about the table that lacks it: name the key itself.
    let missing = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next());
    let key = match missing {
        Some(field) if key.is_empty() => field.to_string(),
        Some(field) => format!("{key}.{field}"),
        None if key.is_empty() => "(top level)".to_string(),
        None => key,
    };
    ConfigError::Invalid {
        key,
        problem: message.trim().to_string(),
    }
}

fn syntax_error(text: &str, error: &toml::de::Error) -> ConfigError {
    let message = error.message().trim();
    let problem = match error.span() {
        Some(span) => {
            let before = text.get(..span.start).unwrap_or(text);
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!("line {line}, column {column}: {message}")
        }
        None => message.to_string(),
    };
    ConfigError::Syntax {
        path: PathBuf::new(),
        problem,
    }
}

/// The dotted path of the deepest key whose name or value covers byte `offset`.
///
/// Searches every table, not only those whose span covers `offset`: the span of a `[section]`
/// table is its header, not its body.
fn key_at(table: &toml::de::DeTable<'_>, offset: usize) -> Option<String> {
    let mut best: Option<(usize, String)> = None;
    walk(table, "", offset, &mut best);
    best.map(|(_, key)| key)
}

fn walk(
    table: &toml::de::DeTable<'_>,
    prefix: &str,
    offset: usize,
    best: &mut Option<(usize, String)>,
) {
    use toml::de::DeValue;
    for (key, value) in table {
        let path = if prefix.is_empty() {
            key.get_ref().to_string()
        } else {
            format!("{prefix}.{}", key.get_ref())
        };
        let covers = |span: std::ops::Range<usize>| span.start <= offset && offset < span.end;
        if covers(key.span()) || covers(value.span()) {
            let depth = path.matches('.').count();
            if best.as_ref().is_none_or(|(d, _)| depth >= *d) {
                *best = Some((depth, path.clone()));
            }
        }
        if let DeValue::Table(inner) = value.get_ref() {
            walk(inner, &path, offset, best);
        }
    }
}

#[cfg(test)]
mod tests;
