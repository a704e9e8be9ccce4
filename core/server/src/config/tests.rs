//! Reading the configuration: defaults with the machine's name, files named in errors, and
//! the TLS files that must exist.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

use atacama_core::config::{Auth, ChannelsConfig, Http, Limits, Listen, TlsPaths};
use atacama_core::smtp::{BareNewline, SessionConfig};

use super::*;

/// [`load`] of a file holding `text`.
fn load_text(text: &str) -> Result<Config, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("atacama.toml");
    std::fs::write(&path, text).unwrap();
    load(Some(&path))
}

#[test]
fn no_file_gives_the_documented_defaults() {
    let config = load(None).unwrap();
    assert_eq!(config, Config::parse("", &machine_hostname()).unwrap());
    assert_eq!(config.hostname, machine_hostname());
    assert_eq!(config.data_dir, PathBuf::from("./atacama-data"));
    assert_eq!(config.tls, None);
    assert_eq!(
        config.listen.submission,
        ["127.0.0.1:2587".parse().unwrap()]
    );
    assert_eq!(
        config.listen.submissions,
        ["127.0.0.1:2465".parse().unwrap()]
    );
    let l = &config.limits;
    assert_eq!(
        (
            l.max_message_size,
            l.max_recipients,
            l.max_connections,
            l.max_connections_per_ip
        ),
        (26_214_400, 100, 1000, 50)
    );
    assert_eq!((l.command_timeout_secs, l.data_timeout_secs), (300, 180));
    assert_eq!((l.min_data_rate, l.min_data_rate_grace_secs), (1024, 30));
    assert_eq!((l.preauth_commands, l.preauth_timeout_secs), (20, 60));
    assert_eq!(l.ipv6_prefix, 64);
    assert_eq!(l.bare_newline, BareNewline::Reject);
    assert!(l.group_commit);
    assert_eq!((l.min_free_space_mb, l.store_reopen_timeout_secs), (64, 60));
    assert_eq!(
        config.auth,
        Auth {
            bcrypt_cost: 12,
            require_tls: true,
            max_failures_per_connection: 3,
            sender_must_match_user: true
        }
    );
    let session = config.session_config();
    assert_eq!(
        session,
        SessionConfig {
            hostname: config.hostname.clone(),
            ..Default::default()
        }
    );
}

#[test]
fn machine_hostname_is_a_usable_name() {
    let name = machine_hostname();
    assert_eq!(hostname_problem(&name), None, "{name:?}");
}

#[test]
fn every_key_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, "cert").unwrap();
    std::fs::write(&key, "key").unwrap();
    let text = format!(
        r#"
        hostname = "mail.example.test"
        data_dir = "/var/lib/atacama"
        [tls]
        cert = "{}"
        key = "{}"
        [listen]
        submission = ["0.0.0.0:587", "[::]:587"]
        submissions = []
        [limits]
        max_message_size = 1000
        max_recipients = 5
        max_connections = 10
        max_connections_per_ip = 2
        command_timeout_secs = 30
        data_timeout_secs = 60
        min_data_rate = 500
        min_data_rate_grace_secs = 10
        preauth_commands = 8
        preauth_timeout_secs = 15
        ipv6_prefix = 56
        bare_newline = "normalize"
        group_commit = false
        min_free_space_mb = 0
        store_reopen_timeout_secs = 5
        store_timeout_secs = 9
        [auth]
        bcrypt_cost = 4
        require_tls = false
        max_failures_per_connection = 7
        sender_must_match_user = false
        "#,
        cert.display(),
        key.display()
    );
    let path = dir.path().join("atacama.toml");
    std::fs::write(&path, text).unwrap();
    let config = load(Some(&path)).unwrap();
    let expected = Config {
        hostname: "mail.example.test".into(),
        data_dir: "/var/lib/atacama".into(),
        tls: Some(TlsPaths { cert, key }),
        listen: Listen {
            submission: vec!["0.0.0.0:587".parse().unwrap(), "[::]:587".parse().unwrap()],
            submissions: vec![],
        },
        limits: Limits {
            max_message_size: 1000,
            max_recipients: 5,
            max_connections: 10,
            max_connections_per_ip: 2,
            command_timeout_secs: 30,
            data_timeout_secs: 60,
            min_data_rate: 500,
            min_data_rate_grace_secs: 10,
            preauth_commands: 8,
            preauth_timeout_secs: 15,
            ipv6_prefix: 56,
            bare_newline: BareNewline::Normalize,
            group_commit: false,
            min_free_space_mb: 0,
            store_reopen_timeout_secs: 5,
            store_timeout_secs: 9,
        },
        auth: Auth {
            bcrypt_cost: 4,
            require_tls: false,
            max_failures_per_connection: 7,
            sender_must_match_user: false,
        },
        http: Http::default(),
        channels: ChannelsConfig::default(),
        store: StoreConfig::default(),
    };
    assert_eq!(config, expected);
    let session = config.session_config();
    assert_eq!(
        session,
        SessionConfig {
            hostname: "mail.example.test".into(),
            max_message_size: 1000,
            max_recipients: 5,
            command_timeout: Duration::from_secs(30),
            data_timeout: Duration::from_secs(60),
            min_data_rate: 500,
            data_rate_grace: Duration::from_secs(10),
            preauth_commands: 8,
            preauth_timeout: Duration::from_secs(15),
            bare_newline: BareNewline::Normalize,
            require_tls: false,
            max_auth_failures: 7,
            sender_must_match_user: false,
            ..SessionConfig::default()
        }
    );
}

#[test]
fn a_missing_certificate_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.pem");
    std::fs::write(&key, "key").unwrap();
    let text = format!(
        "[tls]\ncert = \"/nonexistent/cert.pem\"\nkey = \"{}\"",
        key.display()
    );
    let error = load_text(&text).unwrap_err();
    assert_eq!(
        error,
        ConfigError::MissingFile {
            key: "tls.cert".into(),
            path: "/nonexistent/cert.pem".into()
        }
    );
    assert_eq!(
        error.to_string(),
        "config key tls.cert: file /nonexistent/cert.pem does not exist"
    );
    let text = format!(
        "[tls]\ncert = \"{}\"\nkey = \"/nonexistent/key.pem\"",
        key.display()
    );
    assert!(matches!(
        load_text(&text),
        Err(ConfigError::MissingFile { key, .. }) if key == "tls.key"
    ));
}

#[test]
fn syntax_errors_give_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "hostname = \"a\"\n[limits\n").unwrap();
    match load(Some(&path)) {
        Err(ConfigError::Syntax { path: p, problem }) => {
            assert_eq!(p, path);
            assert!(problem.starts_with("line 2, column "), "{problem}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_unreadable_config_file_is_named() {
    let file = Path::new("/nonexistent/atacama.toml");
    let error = load(Some(file)).unwrap_err();
    assert!(matches!(&error, ConfigError::Read { path, .. } if path == file));
    assert!(
        error
            .to_string()
            .starts_with("cannot read config file /nonexistent/atacama.toml: ")
    );
}

/// A `[store]` for PostgreSQL whose password is in `path`.
fn postgres_with_password_file(path: &Path) -> String {
    format!(
        "[store]\nbackend = \"postgres\"\nurl = \"postgres://atacama@db.example.org/atacama\"\n\
         password_file = \"{}\"",
        path.display()
    )
}

/// Writes `contents` to `dir/name` with `mode`.
fn secret(dir: &Path, name: &str, contents: &str, mode: u32) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

#[test]
fn the_password_file_gives_the_password_less_one_trailing_newline() {
    let dir = tempfile::tempdir().unwrap();
    for (contents, password) in [
        ("s3cret\n", "s3cret"),
        ("s3cret", "s3cret"),
        ("s3cret\r\n", "s3cret"),
        ("s3cret\n\n", "s3cret\n"),
        (" with spaces \n", " with spaces "),
    ] {
        let path = secret(dir.path(), "pg-password", contents, 0o600);
        let config = load_text(&postgres_with_password_file(&path)).unwrap();
        assert_eq!(config.store.password_file.as_deref(), Some(path.as_path()));
        assert_eq!(
            store_password(&config.store).unwrap().as_deref(),
            Some(password),
            "{contents:?}"
        );
    }
    assert_eq!(store_password(&StoreConfig::default()).unwrap(), None);
}

#[test]
fn a_password_file_others_may_read_is_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    for mode in [0o640, 0o604, 0o660, 0o644] {
        let path = secret(dir.path(), "pg-password", "s3cret\n", mode);
        match load_text(&postgres_with_password_file(&path)) {
            Err(ConfigError::Invalid { key, problem }) => {
                assert_eq!(key, "store.password_file");
                assert!(problem.contains("chmod 600"), "{problem}");
                assert!(!problem.contains("s3cret"), "{problem}");
            }
            other => panic!("mode {mode:o}: {other:?}"),
        }
    }
}

#[test]
fn a_missing_empty_or_strange_password_file_is_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nonexistent");
    assert_eq!(
        load_text(&postgres_with_password_file(&missing)),
        Err(ConfigError::MissingFile {
            key: "store.password_file".into(),
            path: missing
        })
    );
    let empty = secret(dir.path(), "empty", "\n", 0o600);
    let long = secret(dir.path(), "long", &"x".repeat(5000), 0o600);
    let latin1 = dir.path().join("latin1");
    std::fs::write(&latin1, b"caf\xe9").unwrap();
    std::fs::set_permissions(&latin1, std::fs::Permissions::from_mode(0o600)).unwrap();
    let subdir = dir.path().join("subdir");
    std::fs::create_dir(&subdir).unwrap();
    std::fs::set_permissions(&subdir, std::fs::Permissions::from_mode(0o700)).unwrap();
    for (path, says) in [
        (&empty, "is empty"),
        (&long, "longer than 4096 bytes"),
        (&latin1, "UTF-8"),
        (&subdir, "not a regular file"),
    ] {
        match load_text(&postgres_with_password_file(path)) {
            Err(ConfigError::Invalid { key, problem }) => {
                assert_eq!(key, "store.password_file");
                assert!(problem.contains(says), "{problem}");
            }
            other => panic!("{}: {other:?}", path.display()),
        }
    }
}
