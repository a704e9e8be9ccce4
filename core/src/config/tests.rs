//! Config tests: defaults, every key, and errors that name the key or file.

use super::*;

/// What the tests pass as the machine's name.
const HOST: &str = "mail.example";

fn invalid(text: &str) -> (String, String) {
    match Config::parse(text, HOST) {
        Err(ConfigError::Invalid { key, problem }) => (key, problem),
        other => panic!("expected Invalid for {text:?}, got {other:?}"),
    }
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
        ("[auth]\nrequire_tls = \"yes\"", "auth.require_tls"),
        ("[tls]\ncert = \"/c\"", "tls.key"),
        ("tls = 3", "tls"),
    ] {
        let (found, _) = invalid(text);
        assert_eq!(found, key, "{text}");
    }
}

#[test]
fn a_listen_key_takes_one_address_or_a_list() {
    let config = Config::parse(
        "[listen]\nsubmission = \"127.0.0.1:2587\"\nsubmissions = [\"127.0.0.1:2465\", \"[::1]:2465\"]",
        HOST,
    )
    .unwrap();
    assert_eq!(
        config.listen.submission,
        [SocketAddr::from(([127, 0, 0, 1], 2587))]
    );
    assert_eq!(
        config.listen.submissions,
        [
            SocketAddr::from(([127, 0, 0, 1], 2465)),
            "[::1]:2465".parse().unwrap()
        ]
    );
    let config = Config::parse("[listen]\nsubmissions = \"0.0.0.0:465\"", HOST).unwrap();
    assert_eq!(config.listen.submissions, [SocketAddr::from(([0; 4], 465))]);
    assert_eq!(config.listen.submission, Listen::default().submission);
}

#[test]
fn a_listen_value_of_the_wrong_type_is_named() {
    let expecting = "an address such as \"127.0.0.1:587\", or a list of them";
    for (text, key, problem) in [
        (
            "[listen]\nsubmission = 587",
            "listen.submission",
            format!("invalid type: integer `587`, expected {expecting}"),
        ),
        (
            "[listen]\nsubmissions = { address = \"127.0.0.1:465\" }",
            "listen.submissions",
            format!("invalid type: map, expected {expecting}"),
        ),
        (
            "[listen]\nsubmissions = \"localhost:465\"",
            "listen.submissions",
            "\"localhost:465\" is not an IP address and port".to_string(),
        ),
        (
            "[listen]\nsubmission = [587]",
            "listen.submission",
            "invalid type: integer `587`, expected socket address".to_string(),
        ),
    ] {
        assert_eq!(invalid(text), (key.to_string(), problem), "{text}");
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
            "[limits]\nstore_timeout_secs = 3601",
            "limits.store_timeout_secs",
            "must be between 1 and 3600, not 3601",
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
fn invalid_errors_display_on_one_line() {
    let (key, problem) = invalid("[limits]\nmax_recipients = \"lots\"");
    let line = ConfigError::Invalid { key, problem }.to_string();
    assert!(!line.contains('\n'), "{line}");
    assert!(
        line.starts_with("config key limits.max_recipients: "),
        "{line}"
    );
}

#[test]
fn a_text_without_hostname_gets_the_machine_s() {
    let config = Config::parse("", HOST).unwrap();
    assert_eq!(
        config,
        Config {
            hostname: HOST.into(),
            ..Config::default()
        }
    );
    assert_eq!(Config::default().hostname, DEFAULT_HOSTNAME);
    let named = Config::parse("hostname = \"mx.example.test\"", HOST).unwrap();
    assert_eq!(named.hostname, "mx.example.test");
}

#[test]
fn the_tls_files_are_not_looked_at_here() {
    let text = "[tls]\ncert = \"/nonexistent/cert.pem\"\nkey = \"/nonexistent/key.pem\"";
    let config = Config::parse(text, HOST).unwrap();
    assert_eq!(
        config.tls,
        Some(TlsPaths {
            cert: "/nonexistent/cert.pem".into(),
            key: "/nonexistent/key.pem".into()
        })
    );
}

#[test]
fn syntax_errors_give_line_and_column_and_no_path() {
    match Config::parse("hostname = \"a\"\n[limits\n", HOST) {
        Err(ConfigError::Syntax { path, problem }) => {
            assert_eq!(path, PathBuf::new());
            assert!(problem.starts_with("line 2, column "), "{problem}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_web_and_channel_keys_have_their_defaults() {
    let config = Config::parse("", HOST).unwrap();
    assert_eq!(config.http.listen, [DEFAULT_HTTP_LISTEN]);
    assert_eq!(config.http.public_url, "http://127.0.0.1:2580");
    assert_eq!(config.http.site_name, "Atacama");
    assert_eq!(config.http.idle_timeout_secs, 30);
    assert_eq!(config.http.max_connections, 512);
    let channels = config.channels().unwrap();
    assert_eq!(channels.default_channel(), "general");
    assert_eq!(channels.public(), ["general"]);
    assert!(channels.private().is_empty());
    assert_eq!(Config::default().http, config.http);
}

#[test]
fn the_web_keys_are_read() {
    let config = Config::parse(
        "[http]\nlisten = \"[::1]:8080\"\nsite_name = \"Travel notes\"\nidle_timeout_secs = 5\n\
         max_connections = 7\n[channels]\npublic = [\"travel\", \"general\"]\nprivate = [\"family\"]",
        HOST,
    )
    .unwrap();
    assert_eq!(config.http.listen, ["[::1]:8080".parse().unwrap()]);
    assert_eq!(config.http.public_url, "http://[::1]:8080");
    assert_eq!(config.http.site_name, "Travel notes");
    assert_eq!(
        (config.http.idle_timeout_secs, config.http.max_connections),
        (5, 7)
    );
    let channels = config.channels().unwrap();
    assert_eq!(channels.default_channel(), "travel");
    assert_eq!(channels.private(), ["family"]);
    let off = Config::parse("[http]\nlisten = []", HOST).unwrap();
    assert!(off.http.listen.is_empty());
    let named = Config::parse(
        "[channels]\ndefault = \"family\"\nprivate = [\"family\"]",
        HOST,
    )
    .unwrap();
    assert_eq!(named.channels().unwrap().default_channel(), "family");
}

#[test]
fn the_public_url_is_normalised() {
    for (given, held) in [
        ("https://blog.example.org", "https://blog.example.org"),
        ("https://blog.example.org/", "https://blog.example.org"),
        (
            "HTTPS://blog.example.org/atacama//",
            "https://blog.example.org/atacama",
        ),
        ("http://127.0.0.1:2580/a/b", "http://127.0.0.1:2580/a/b"),
    ] {
        let text = format!("[http]\npublic_url = \"{given}\"");
        assert_eq!(Config::parse(&text, HOST).unwrap().http.public_url, held);
    }
    for bad in [
        "blog.example.org",
        "ftp://blog.example.org",
        "https://",
        "https:///path",
        "https://user@blog.example.org",
        "https://blog.example.org/?q=1",
        "https://blog.example.org/#top",
        "https://blog.example.org/a b",
        "https://blog.example.org/<x>",
    ] {
        let text = format!("[http]\npublic_url = \"{bad}\"");
        assert_eq!(invalid(&text).0, "http.public_url", "{bad}");
    }
}

#[test]
fn bad_web_and_channel_values_are_named() {
    for (text, key) in [
        ("[http]\nlisten = \"localhost:80\"", "http.listen"),
        ("[http]\nidle_timeout_secs = 0", "http.idle_timeout_secs"),
        ("[http]\nmax_connections = 0", "http.max_connections"),
        ("[http]\nsite_name = \"\"", "http.site_name"),
        ("[http]\nsite_name = \"a\\u0007b\"", "http.site_name"),
        ("[http]\nport = 80", "http.port"),
        ("[channels]\ndefault = \"nope\"", "channels.default"),
        ("[channels]\npublic = []", "channels.default"),
        ("[channels]\npublic = [\"Big\"]", "channels.public"),
        ("[channels]\nprivate = [\"general\"]", "channels.private"),
        ("[channels]\npublic = [\"a\", \"a\"]", "channels.public"),
        ("[channels]\nprivate = [\"a-b_c\"]", "channels.private"),
        ("[channels]\nlisted = []", "channels.listed"),
    ] {
        assert_eq!(invalid(text).0, key, "{text}");
    }
}

#[test]
fn the_store_is_redb_unless_postgres_is_named() {
    let config = Config::parse("", HOST).unwrap();
    assert_eq!(config.store, StoreConfig::default());
    assert_eq!(config.store.backend, StoreBackend::Redb);
    let redb = Config::parse("[store]\nbackend = \"redb\"", HOST).unwrap();
    assert_eq!(redb.store, StoreConfig::default());
    let postgres = Config::parse(
        "[store]\nbackend = \"postgres\"\n\
         url = \"postgresql://atacama@db.example.org/atacama?sslmode=require\"\n\
         password_file = \"/etc/atacama/mail/pg-password\"\npool_size = 16",
        HOST,
    )
    .unwrap();
    assert_eq!(
        postgres.store,
        StoreConfig {
            backend: StoreBackend::Postgres,
            url: Some("postgresql://atacama@db.example.org/atacama?sslmode=require".into()),
            password_file: Some("/etc/atacama/mail/pg-password".into()),
            pool_size: Some(16),
        }
    );
    let defaults = Config::parse(
        "[store]\nbackend = \"postgres\"\nurl = \"postgres:///atacama\"",
        HOST,
    )
    .unwrap();
    assert_eq!(defaults.store.pool_size(), DEFAULT_POOL_SIZE);
    assert_eq!(defaults.store.password_file, None);
}

#[test]
fn an_unknown_backend_is_named_with_the_two_there_are() {
    let (key, problem) = invalid("[store]\nbackend = \"mysql\"");
    assert_eq!(key, "store.backend");
    assert!(
        problem.contains("redb") && problem.contains("postgres"),
        "{problem}"
    );
}

#[test]
fn postgres_without_a_url_is_refused_naming_store_url() {
    let (key, problem) = invalid("[store]\nbackend = \"postgres\"");
    assert_eq!(key, "store.url");
    assert!(problem.contains("missing"), "{problem}");
}

#[test]
fn a_url_of_another_scheme_is_refused_saying_which_it_needs() {
    for url in [
        "mysql://db.example.org/atacama",
        "db.example.org",
        "",
        "POSTGRES://db/x",
    ] {
        let text = format!("[store]\nbackend = \"postgres\"\nurl = {url:?}");
        let (key, problem) = invalid(&text);
        assert_eq!(key, "store.url", "{url}");
        assert!(
            problem.contains("postgres://") && problem.contains("postgresql://"),
            "{problem}"
        );
    }
    let (key, _) = invalid("[store]\nbackend = \"postgres\"\nurl = \"postgres://a b/c\"");
    assert_eq!(key, "store.url");
}

#[test]
fn the_url_is_never_quoted_back_it_may_hold_a_password() {
    let (_, problem) = invalid("[store]\nbackend = \"postgres\"\nurl = \"pg://u:secret@db/x\"");
    assert!(!problem.contains("secret"), "{problem}");
}

#[test]
fn pool_size_must_be_1_to_256() {
    let with = |size: &str| {
        format!("[store]\nbackend = \"postgres\"\nurl = \"postgres://db/x\"\npool_size = {size}")
    };
    for size in ["0", "257", "100000"] {
        let (key, problem) = invalid(&with(size));
        assert_eq!(key, "store.pool_size", "{size}");
        assert!(problem.contains("between 1 and 256"), "{problem}");
    }
    assert_eq!(invalid(&with("-1")).0, "store.pool_size");
    for size in [1, 256] {
        let config = Config::parse(&with(&size.to_string()), HOST).unwrap();
        assert_eq!(config.store.pool_size(), size);
    }
}

#[test]
fn postgres_keys_given_with_redb_are_refused_not_ignored() {
    for (keys, key) in [
        ("url = \"postgres://db/x\"", "store.url"),
        ("password_file = \"/p\"", "store.password_file"),
        ("pool_size = 4", "store.pool_size"),
    ] {
        for backend in ["", "backend = \"redb\"\n"] {
            let (found, problem) = invalid(&format!("[store]\n{backend}{keys}"));
            assert_eq!(found, key, "{keys}");
            assert!(problem.contains("postgres"), "{problem}");
        }
    }
}

#[test]
fn unknown_store_keys_and_an_empty_password_file_are_named() {
    assert_eq!(
        invalid("[store]\npasword_file = \"/p\"").0,
        "store.pasword_file"
    );
    let (key, _) =
        invalid("[store]\nbackend = \"postgres\"\nurl = \"postgres://db/x\"\npassword_file = \"\"");
    assert_eq!(key, "store.password_file");
}
