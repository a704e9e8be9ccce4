//! Config tests: defaults, every key, and errors that name the key or file.

use super::*;

fn invalid(text: &str) -> (String, String) {
    match Config::parse(text) {
        Err(ConfigError::Invalid { key, problem }) => (key, problem),
        other => panic!("expected Invalid for {text:?}, got {other:?}"),
    }
}

#[test]
fn no_file_gives_the_documented_defaults() {
    let config = Config::load(None).unwrap();
    assert_eq!(config, Config::parse("").unwrap());
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
    let config = Config::load(Some(&path)).unwrap();
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
        },
        auth: Auth {
            bcrypt_cost: 4,
            require_tls: false,
            max_failures_per_connection: 7,
            sender_must_match_user: false,
        },
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
fn unknown_keys_are_named() {
    for (text, key) in [
        ("hostnme = \"x\"", "hostnme"),
        ("[limits]\nmax_recipents = 5", "limits.max_recipents"),
        (
            "[auth]\nbcrypt_cost = 10\nrequire_tls = true\nbogus = 1",
            "auth.bogus",
        ),
        ("[listen]\nsubmision = []", "listen.submision"),
        ("[limits.deep]\nx = 1", "limits.deep"),
        ("[logging]\nlevel = \"info\"", "logging"),
    ] {
        let (found, problem) = invalid(text);
        assert_eq!(found, key, "{text}");
        assert!(problem.contains("unknown field"), "{problem}");
    }
}

#[test]
fn bad_values_are_named() {
    for (text, key) in [
        ("hostname = 5", "hostname"),
        (
            "[limits]\nmax_recipients = \"lots\"",
            "limits.max_recipients",
        ),
        ("[limits]\nmax_message_size = -1", "limits.max_message_size"),
        ("[limits]\nbare_newline = \"allow\"", "limits.bare_newline"),
        ("[limits]\ngroup_commit = \"yes\"", "limits.group_commit"),
        (
            "[listen]\nsubmission = [\"localhost:587\"]",
            "listen.submission",
        ),
        (
            "[listen]\nsubmissions = \"127.0.0.1:465\"",
            "listen.submissions",
        ),
        ("[auth]\nrequire_tls = \"yes\"", "auth.require_tls"),
        ("[tls]\ncert = \"/c\"", "tls.key"),
        ("tls = 3", "tls"),
    ] {
        let (found, _) = invalid(text);
        assert_eq!(found, key, "{text}");
    }
}

#[test]
fn out_of_range_values_are_named() {
    for (text, key, problem) in [
        (
            "[auth]\nbcrypt_cost = 3",
            "auth.bcrypt_cost",
            "must be between 4 and 31, not 3",
        ),
        (
            "[auth]\nbcrypt_cost = 32",
            "auth.bcrypt_cost",
            "must be between 4 and 31, not 32",
        ),
        (
            "[limits]\nmin_free_space_mb = 1048577",
            "limits.min_free_space_mb",
            "must be between 0 and 1048576, not 1048577",
        ),
        (
            "[limits]\nstore_reopen_timeout_secs = 0",
            "limits.store_reopen_timeout_secs",
            "must be between 1 and 3600, not 0",
        ),
        (
            "[limits]\nmax_recipients = 0",
            "limits.max_recipients",
            "must be between 1 and 100000, not 0",
        ),
        (
            "[limits]\ncommand_timeout_secs = 0",
            "limits.command_timeout_secs",
            "must be between 1 and 86400, not 0",
        ),
        (
            // Issue 24 item 14: this panicked every smol connection (Instant + Duration).
            "[limits]\ncommand_timeout_secs = 18446744073709551615",
            "limits.command_timeout_secs",
            "must be between 1 and 86400, not 18446744073709551615",
        ),
        (
            "[limits]\ndata_timeout_secs = 0",
            "limits.data_timeout_secs",
            "must be between 1 and 86400, not 0",
        ),
        (
            "[limits]\nmax_connections = 0",
            "limits.max_connections",
            "must be between 1 and 1000000, not 0",
        ),
        (
            "[limits]\nmax_message_size = 2000000000",
            "limits.max_message_size",
            "must be between 1 and 1073741824, not 2000000000",
        ),
        (
            "[limits]\nmin_data_rate_grace_secs = 100000",
            "limits.min_data_rate_grace_secs",
            "must be between 0 and 86400, not 100000",
        ),
        (
            "[limits]\npreauth_commands = 0",
            "limits.preauth_commands",
            "must be between 1 and 100000, not 0",
        ),
        (
            "[limits]\npreauth_timeout_secs = 86401",
            "limits.preauth_timeout_secs",
            "must be between 1 and 86400, not 86401",
        ),
        (
            "[limits]\nipv6_prefix = 0",
            "limits.ipv6_prefix",
            "must be between 1 and 128, not 0",
        ),
        (
            "[limits]\nipv6_prefix = 129",
            "limits.ipv6_prefix",
            "must be between 1 and 128, not 129",
        ),
        (
            "[limits]\nmin_data_rate = 1073741825",
            "limits.min_data_rate",
            "must be between 0 and 1073741824, not 1073741825",
        ),
        (
            "[auth]\nmax_failures_per_connection = 0",
            "auth.max_failures_per_connection",
            "must be between 1 and 1000, not 0",
        ),
        (
            "hostname = \"bad host\"",
            "hostname",
            "\"bad host\" may hold only ASCII letters, digits, '-' and '.'",
        ),
        ("hostname = \"\"", "hostname", "\"\" is empty"),
        ("data_dir = \"\"", "data_dir", "must not be empty"),
        (
            "[listen]\nsubmission = []\nsubmissions = []",
            "listen",
            "at least one of listen.submission and listen.submissions must list an address",
        ),
    ] {
        assert_eq!(
            invalid(text),
            (key.to_string(), problem.to_string()),
            "{text}"
        );
    }
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
    let error = Config::parse(&text).unwrap_err();
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
        Config::parse(&text),
        Err(ConfigError::MissingFile { key, .. }) if key == "tls.key"
    ));
}

#[test]
fn syntax_errors_give_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "hostname = \"a\"\n[limits\n").unwrap();
    match Config::load(Some(&path)) {
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
    let error = Config::load(Some(file)).unwrap_err();
    assert!(matches!(&error, ConfigError::Read { path, .. } if path == file));
    assert!(
        error
            .to_string()
            .starts_with("cannot read config file /nonexistent/atacama.toml: ")
    );
}

#[test]
fn invalid_errors_display_on_one_line() {
    let (key, problem) = invalid("[limits]\nmax_recipients = \"lots\"");
    let line = ConfigError::Invalid { key, problem }.to_string();
    assert!(!line.contains('\n'), "{line}");
    assert!(
        line.starts_with("config key limits.max_recipients: "),
        "{line}"
    );
}
