//! Every command-line subcommand, run as a process of both binaries against a temporary data
//! directory. The running daemon's stand-in is what the daemon itself holds: the store, opened
//! by the test process, and the control socket serving it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use atacama_core::smtp::{Delivery, MessageId, TlsInfo};
use atacama_server::control::ControlServer;
use atacama_server::service::Services;
use atacama_store::pg::{PG_SCHEMA_VERSION, PgConfig, PgStore};
use atacama_store::testing::Postgres;
use atacama_store::{Backend, Store, rfc3339_utc};
use atacama_tests::{Binary, Run};
use serde_json::{Value, json};

/// A data directory and a config file with bcrypt cost 4.
struct Env {
    _dir: tempfile::TempDir,
    config: PathBuf,
    data: PathBuf,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("atacama.toml");
        std::fs::write(
            &config,
            "hostname = \"mail.example.test\"\n[auth]\nbcrypt_cost = 4\n",
        )
        .unwrap();
        let data = dir.path().join("data");
        Env {
            _dir: dir,
            config,
            data,
        }
    }

    /// Runs `bin --config … --data-dir … args`.
    fn run(&self, bin: Binary, args: &[&str], stdin: Option<&[u8]>) -> Run {
        bin.run(self.args(args), stdin)
    }

    /// `--config … --data-dir … args`.
    fn args(&self, args: &[&str]) -> Vec<String> {
        let mut all = vec![
            "--config".to_string(),
            self.config.display().to_string(),
            "--data-dir".to_string(),
            self.data.display().to_string(),
        ];
        all.extend(args.iter().map(|a| a.to_string()));
        all
    }

    /// What the daemon holds: the database, and the control socket the command line uses
    /// while it does.
    fn daemon(&self) -> Daemon {
        self.daemon_on(Arc::new(Store::open_in(&self.data, 4).unwrap()))
    }

    /// A daemon's services and control socket over `store`.
    fn daemon_on(&self, store: Arc<dyn atacama_store::Backend>) -> Daemon {
        // On PostgreSQL nothing has made the data dir yet; the daemon's serve would.
        std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
            .create(&self.data)
            .unwrap();
        let services = Arc::new(Services::new(store, "mail.example.test"));
        let control = ControlServer::start(&self.data, Arc::clone(&services)).unwrap();
        Daemon {
            services,
            _control: control,
        }
    }
}

/// The stand-in for a running daemon.
struct Daemon {
    services: Arc<Services>,
    _control: ControlServer,
}

impl std::ops::Deref for Daemon {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.services
    }
}

/// `count` processes of `user add userI --password-stdin` (password `pwI`), started at once.
fn parallel_user_adds(env: &Env, bin: Binary, count: usize) -> Vec<std::thread::JoinHandle<Run>> {
    (0..count)
        .map(|i| {
            let args = env.args(&["user", "add", &format!("user{i}"), "--password-stdin"]);
            std::thread::spawn(move || bin.run(args, Some(format!("pw{i}\n").as_bytes())))
        })
        .collect()
}

/// Exit status 1 or 2 and exactly one line on stderr: `<name>: error: <message>`.
fn assert_error(run: &Run, bin: Binary, code: i32, message: &str) {
    assert_eq!(run.code, Some(code), "{run:?}");
    assert_eq!(
        run.stderr,
        format!("{}: error: {message}\n", bin.name()),
        "{run:?}"
    );
}

/// The time the tests' deliveries are received at.
fn t0() -> std::time::SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_772_546_709)
}

/// A fresh environment with the user alice (password `pw`), added through `bin`.
fn with_alice(bin: Binary) -> Env {
    let env = Env::new();
    env.run(
        bin,
        &["user", "add", "alice", "--password-stdin"],
        Some(b"pw\n"),
    )
    .success();
    env
}

fn delivery(user: &str, body: &str) -> Delivery {
    Delivery {
        user: user.into(),
        helo: "client.example".into(),
        peer: "192.0.2.7:40000".parse().unwrap(),
        tls: Some(TlsInfo {
            version: "TLSv1.3".into(),
            cipher: "TLS13_AES_256_GCM_SHA384".into(),
        }),
        mail_from: format!("{user}@example.test"),
        rcpt_to: vec!["bob@example.test".into(), "carol@example.test".into()],
        data: body.as_bytes().to_vec(),
    }
}

fn json_of(run: &Run) -> Value {
    serde_json::from_slice(&run.stdout).unwrap_or_else(|e| panic!("{e}: {run:?}"))
}

/// The ids `messages list --json` printed, in order.
fn listed_ids(run: &Run) -> Vec<u64> {
    json_of(run)
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_u64().unwrap())
        .collect()
}

#[test]
fn help_at_every_level_exits_zero() {
    for bin in Binary::ALL {
        for args in [
            &["--help"][..],
            &["-h"],
            &["serve", "--help"],
            &["render", "--help"],
            &["user", "--help"],
            &["user", "add", "--help"],
            &["messages", "--help"],
            &["messages", "show", "--help"],
            &["token", "--help"],
            &["token", "add", "--help"],
        ] {
            let run = bin.run(args, None).success();
            assert!(run.stdout_text().contains("Usage: "), "{args:?}: {run:?}");
            assert!(run.stdout_text().contains(bin.name()), "{args:?}: {run:?}");
            assert_eq!(run.stderr, "");
        }
    }
}

#[test]
fn bad_arguments_exit_2_with_one_line() {
    for bin in Binary::ALL {
        let name = bin.name();
        assert_error(
            &bin.run(["frobnicate"], None),
            bin,
            2,
            &format!("unknown command \"frobnicate\" (see {name} --help)"),
        );
        assert_error(
            &bin.run::<[&str; 0], &str>([], None),
            bin,
            2,
            &format!("no command given (see {name} --help)"),
        );
        assert_error(
            &bin.run(["messages", "show", "abc"], None),
            bin,
            2,
            "message ID \"abc\" is not a number",
        );
        assert_error(
            &bin.run(["user", "list", "--frob"], None),
            bin,
            2,
            "'user list' does not take --frob",
        );
    }
}

#[test]
fn serve_on_a_busy_address_fails_with_one_line_naming_it() {
    // Held by the test: the server must give up on it, never serve half its listeners.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = busy.local_addr().unwrap();
    for bin in Binary::ALL {
        let env = Env::new();
        std::fs::write(
            &env.config,
            format!(
                "hostname = \"mail.example.test\"\n[listen]\nsubmission = [\"{address}\"]\n\
                 submissions = []\n[http]\nlisten = []\n[auth]\nbcrypt_cost = 4\n"
            ),
        )
        .unwrap();
        let run = env.run(bin, &["serve"], None);
        assert_eq!(run.code, Some(1), "{run:?}");
        let last = run.stderr.lines().last().unwrap_or_default();
        assert!(
            last.starts_with(&format!(
                "{}: error: cannot listen on {address}: ",
                bin.name()
            )),
            "{run:?}"
        );
    }
}

#[test]
fn render_reads_a_file_or_stdin() {
    let markup = "Hello <world> & \"friends\"\n* one\n";
    let expected = atacama_core::markup::render(markup);
    for bin in Binary::ALL {
        let env = Env::new();
        let run = bin.run(["render"], Some(markup.as_bytes())).success();
        assert_eq!(run.stdout_text(), expected);
        let file = env.data.with_file_name("note.txt");
        std::fs::write(&file, markup).unwrap();
        let run = bin
            .run(["render".as_ref(), file.as_os_str()], None)
            .success();
        assert_eq!(run.stdout_text(), expected);
        let missing = env.data.with_file_name("missing.txt");
        let run = bin.run(["render".as_ref(), missing.as_os_str()], None);
        assert_eq!(run.code, Some(1));
        assert!(
            run.stderr.starts_with(&format!(
                "{}: error: cannot read {}: ",
                bin.name(),
                missing.display()
            )),
            "{run:?}"
        );
        assert_error(
            &bin.run(["render"], Some(b"\xff\xfe")),
            bin,
            1,
            "standard input is not valid UTF-8",
        );
    }
}

#[test]
fn user_lifecycle_through_every_subcommand() {
    for bin in Binary::ALL {
        let env = Env::new();
        let run = env
            .run(
                bin,
                &["user", "add", "alice@example.test", "--password-stdin"],
                Some(b"first pw\n"),
            )
            .success();
        assert_eq!(run.stdout_text(), "added user alice@example.test\n");
        // That command opened the file itself; from here on a daemon holds it, and the
        // commands go through its socket.
        let daemon = env.daemon();
        let store = daemon.store();
        assert!(store.verify_user("alice@example.test", "first pw").unwrap());

        // CR LF from a Windows-made file is not part of the password.
        env.run(
            bin,
            &["user", "passwd", "alice@example.test", "--password-stdin"],
            Some(b"second pw\r\nignored\n"),
        )
        .success();
        assert!(!store.verify_user("alice@example.test", "first pw").unwrap());
        assert!(
            store
                .verify_user("alice@example.test", "second pw")
                .unwrap()
        );

        env.run(
            bin,
            &["user", "add", "bob", "--password-stdin"],
            Some(b"pw"),
        )
        .success();
        env.run(bin, &["user", "disable", "bob"], None).success();
        assert!(!store.verify_user("bob", "pw").unwrap());

        let list = json_of(&env.run(bin, &["user", "list", "--json"], None).success());
        let users = store.users().unwrap();
        let expected: Vec<Value> = users
            .iter()
            .map(|u| {
                json!({
                    "name": u.name,
                    "active": u.active,
                    "created": rfc3339_utc(u.created),
                    "updated": rfc3339_utc(u.updated),
                })
            })
            .collect();
        assert_eq!(list, Value::Array(expected));
        assert_eq!(list[0]["name"], "alice@example.test");
        assert_eq!(list[1]["active"], false);

        let table = env
            .run(bin, &["user", "list"], None)
            .success()
            .stdout_text();
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3, "{table}");
        assert!(lines[0].starts_with("NAME"), "{table}");
        assert!(
            lines[1].starts_with("alice@example.test  active"),
            "{table}"
        );
        assert!(
            lines[2].starts_with("bob                 disabled"),
            "{table}"
        );

        env.run(bin, &["user", "enable", "bob"], None).success();
        assert!(store.verify_user("bob", "pw").unwrap());
        env.run(bin, &["user", "del", "bob"], None).success();
        assert!(!store.verify_user("bob", "pw").unwrap());
        let list = json_of(&env.run(bin, &["user", "list", "--json"], None).success());
        assert_eq!(list.as_array().map(Vec::len), Some(1));
    }
}

#[test]
fn user_errors_exit_1_with_one_line() {
    // The same errors whether the command opens the file or asks a daemon that holds it.
    for (bin, with_daemon) in Binary::ALL
        .into_iter()
        .flat_map(|b| [(b, false), (b, true)])
    {
        let env = with_alice(bin);
        let _daemon = with_daemon.then(|| env.daemon());
        let run = env.run(
            bin,
            &["user", "add", "alice", "--password-stdin"],
            Some(b"pw\n"),
        );
        assert_error(&run, bin, 1, "user \"alice\" already exists");
        for sub in ["passwd", "disable", "enable", "del"] {
            let run = env.run(
                bin,
                &["user", sub, "nobody", "--password-stdin"][..if sub == "passwd" { 4 } else { 3 }],
                Some(b"pw\n"),
            );
            assert_error(&run, bin, 1, "no user named \"nobody\"");
        }
        let long = format!("{}\n", "x".repeat(72));
        let run = env.run(
            bin,
            &["user", "add", "carol", "--password-stdin"],
            Some(long.as_bytes()),
        );
        assert_error(
            &run,
            bin,
            1,
            "password is longer than 71 bytes (bcrypt would ignore the rest)",
        );
        let run = env.run(bin, &["user", "add", "carol", "--password-stdin"], None);
        assert_error(&run, bin, 1, "no password on standard input");
        let run = env.run(
            bin,
            &["user", "add", "carol", "--password-stdin"],
            Some(b"\n"),
        );
        assert_error(&run, bin, 1, "password is empty");
        let run = env.run(
            bin,
            &["user", "add", "bad name", "--password-stdin"],
            Some(b"pw\n"),
        );
        assert_error(
            &run,
            bin,
            1,
            "invalid user name: \"bad name\": it contains whitespace or control characters",
        );
        // Without --password-stdin and without a terminal, the prompt fails clearly.
        let run = env.run(bin, &["user", "add", "carol"], None);
        assert_eq!(run.code, Some(1), "{run:?}");
        assert!(run.stderr.contains("use --password-stdin"), "{run:?}");
        assert_eq!(run.stderr.lines().count(), 1, "{run:?}");
    }
}

/// `token add|list|revoke`, on the file and through a daemon: the token is printed once,
/// alone on the first line, and only its hash is kept.
#[test]
fn token_lifecycle_through_every_subcommand() {
    for bin in Binary::ALL {
        let env = Env::new();
        let run = env.run(bin, &["token", "add", "phone"], None).success();
        let text = run.stdout_text();
        let first = text.lines().next().unwrap().to_string();
        assert!(first.len() >= 22, "{text}");
        assert!(
            first
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "{text}"
        );
        // From here on a daemon holds the file.
        let daemon = env.daemon();
        let store = daemon.store();
        assert!(store.token_valid(&first).unwrap());
        let second = env.run(bin, &["token", "add", "reader"], None).success();
        let second = second.stdout_text().lines().next().unwrap().to_string();
        assert_ne!(first, second);
        assert!(store.token_valid(&second).unwrap());

        let list = env
            .run(bin, &["token", "list"], None)
            .success()
            .stdout_text();
        let lines: Vec<&str> = list.lines().collect();
        assert_eq!(lines.len(), 3, "{list}");
        assert!(lines[0].starts_with("NAME"), "{list}");
        assert!(lines[1].starts_with("phone "), "{list}");
        assert!(lines[2].starts_with("reader "), "{list}");
        assert!(!list.contains(&first) && !list.contains(&second), "{list}");
        let json = json_of(&env.run(bin, &["token", "list", "--json"], None).success());
        let tokens = store.tokens().unwrap();
        assert_eq!(
            json,
            json!([
                {"created": rfc3339_utc(tokens[0].created), "name": "phone"},
                {"created": rfc3339_utc(tokens[1].created), "name": "reader"},
            ])
        );

        let run = env.run(bin, &["token", "revoke", "phone"], None).success();
        assert_eq!(run.stdout_text(), "revoked token phone\n");
        assert!(!store.token_valid(&first).unwrap());
        assert!(store.token_valid(&second).unwrap());
        drop(daemon);

        // The errors, on the file this time.
        assert_error(
            &env.run(bin, &["token", "add", "reader"], None),
            bin,
            1,
            "token \"reader\" already exists",
        );
        assert_error(
            &env.run(bin, &["token", "revoke", "phone"], None),
            bin,
            1,
            "no token named \"phone\"",
        );
        assert_error(
            &env.run(bin, &["token", "add", "a/b"], None),
            bin,
            1,
            "invalid token name: \"a/b\" may hold only ASCII letters, digits, '-', '_' and '.'",
        );
        let run = env.run(bin, &["token", "add"], None);
        assert_eq!(run.code, Some(2), "{run:?}");
        let run = env.run(bin, &["token", "bogus"], None);
        assert_eq!(run.code, Some(2), "{run:?}");
        // And through a daemon.
        let _daemon = env.daemon();
        assert_error(
            &env.run(bin, &["token", "add", "reader"], None),
            bin,
            1,
            "token \"reader\" already exists",
        );
        assert_error(
            &env.run(bin, &["token", "revoke", "nobody"], None),
            bin,
            1,
            "no token named \"nobody\"",
        );
    }
}

#[test]
fn messages_list_and_show_beside_a_live_daemon() {
    for bin in Binary::ALL {
        let env = Env::new();
        // The daemon stand-in keeps its handle open for the whole test.
        let daemon = env.daemon();
        let t0 = t0();
        let first = daemon
            .deliver(
                delivery("alice", "Subject: one\r\n\r\nHello *world*\r\n"),
                t0,
            )
            .unwrap();
        let second = daemon
            .deliver(
                delivery("bob", "Subject: two\r\n\r\n<b>hi</b>\r\n"),
                t0 + Duration::from_secs(60),
            )
            .unwrap();
        let third = daemon
            .deliver(
                delivery("alice", "Subject: three\r\n\r\nbye\r\n"),
                SystemTime::now(),
            )
            .unwrap();
        let store = daemon.store();

        let list = json_of(
            &env.run(bin, &["messages", "list", "--json"], None)
                .success(),
        );
        let expected: Vec<Value> = [third, second, first]
            .iter()
            .map(|&id| {
                let m = store.message(id).unwrap();
                json!({
                    "channel": "general",
                    "id": id.0,
                    "received_at": rfc3339_utc(m.received_at),
                    "user": m.user,
                    "mail_from": m.mail_from,
                    "rcpt_to": ["bob@example.test", "carol@example.test"],
                    "subject": m.headers.subject,
                    "size": m.size,
                    "parent_id": null,
                })
            })
            .collect();
        assert_eq!(list, Value::Array(expected));
        assert_eq!(list[2]["received_at"], "2026-03-03T14:05:09Z");

        let ids = |run: Run| listed_ids(&run);
        assert_eq!(
            ids(env.run(
                bin,
                &["messages", "list", "--json", "--user", "alice"],
                None
            )),
            [3, 1]
        );
        assert_eq!(
            ids(env.run(bin, &["messages", "list", "--json", "--limit", "1"], None)),
            [3]
        );
        assert_eq!(
            ids(env.run(
                bin,
                &["messages", "list", "--json", "--user", "nobody"],
                None
            )),
            Vec::<u64>::new()
        );

        let table = env
            .run(bin, &["messages", "list"], None)
            .success()
            .stdout_text();
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4, "{table}");
        assert!(lines[0].starts_with("ID  RECEIVED"), "{table}");
        assert!(
            lines[3].starts_with("1   2026-03-03T14:05:09Z  alice  alice@example.test"),
            "{table}"
        );

        let raw = env
            .run(bin, &["messages", "show", "2", "--raw"], None)
            .success();
        assert_eq!(raw.stdout, store.raw_message(MessageId(2)).unwrap());
        assert!(
            raw.stdout
                .starts_with(b"Received: from client.example ([192.0.2.7])\r\n\t(using TLSv1.3")
        );
        assert!(raw.stdout.ends_with(b"Subject: two\r\n\r\n<b>hi</b>\r\n"));

        let html = env
            .run(bin, &["messages", "show", "2", "--html"], None)
            .success();
        assert_eq!(
            html.stdout_text(),
            store.message(MessageId(2)).unwrap().html
        );

        let shown = json_of(
            &env.run(bin, &["messages", "show", "1", "--json"], None)
                .success(),
        );
        let m = store.message(MessageId(1)).unwrap();
        let mut expected = list[2].clone();
        for (key, value) in [
            ("message_id", json!(m.headers.message_id)),
            ("in_reply_to", json!(m.headers.in_reply_to)),
            ("from", json!(m.headers.from)),
            ("to", json!(m.headers.to)),
            ("date", json!(m.headers.date)),
            ("text", json!(m.text)),
            ("html", json!(m.html)),
            ("attachments", json!([])),
            ("problems", json!(m.problems)),
        ] {
            expected[key] = value;
        }
        assert_eq!(shown, expected);

        let summary = env
            .run(bin, &["messages", "show", "1"], None)
            .success()
            .stdout_text();
        assert!(
            summary.starts_with(
                "Message:     1\nReceived:    2026-03-03T14:05:09Z\nUser:        alice\n"
            ),
            "{summary}"
        );
        assert!(
            summary.contains("Rcpt to:     bob@example.test, carol@example.test\n"),
            "{summary}"
        );
        assert!(summary.contains("Channel:     general\n"), "{summary}");
        let text = m.text.replace('\r', "");
        let text = text.trim_end_matches('\n');
        assert!(!text.is_empty());
        assert!(summary.ends_with(&format!("\n\n{text}\n")), "{summary}");

        assert_error(
            &env.run(bin, &["messages", "show", "99"], None),
            bin,
            1,
            "no message with id 99",
        );
        assert_error(
            &env.run(bin, &["messages", "show", "99", "--raw"], None),
            bin,
            1,
            "no message with id 99",
        );
    }
}

/// `messages list` pages: 50 by default, `--limit`, `--before`, and a last line (stderr with
/// `--json`) naming the next page; the same through the daemon and on the file.
#[test]
fn messages_list_pages_through_the_daemon_and_on_the_file() {
    for bin in Binary::ALL {
        let env = Env::new();
        let daemon = env.daemon();
        let t0 = t0();
        let batch = (0..53u64)
            .map(|i| {
                let user = if i % 3 == 0 { "alice" } else { "bob" };
                let body = format!("Subject: number {}\r\n\r\nhi\r\n", i + 1);
                (delivery(user, &body), t0 + Duration::from_secs(i))
            })
            .collect();
        for stored in daemon.deliver_batch(batch) {
            stored.unwrap();
        }
        let pages = [
            &["messages", "list"][..],
            &["messages", "list", "--before", "4"],
            &["messages", "list", "--limit", "2", "--before", "10"],
            &["messages", "list", "--user", "alice", "--limit", "3"],
            &[
                "messages", "list", "--json", "--limit", "2", "--before", "10",
            ],
            &["messages", "list", "--json", "--before", "3"],
            &["messages", "list", "--json", "--limit", "0"],
        ];
        let through_daemon: Vec<Run> = pages
            .iter()
            .map(|args| env.run(bin, args, None).success())
            .collect();
        drop(daemon);
        let on_the_file: Vec<Run> = pages
            .iter()
            .map(|args| env.run(bin, args, None).success())
            .collect();
        assert_eq!(through_daemon, on_the_file, "{bin:?}");

        let rows = |run: &Run| -> Vec<String> {
            run.stdout_text()
                .lines()
                .skip(1)
                .map(|line| line.split(' ').next().unwrap_or_default().to_string())
                .collect()
        };
        let [all, before_4, two, alice, json_two, json_rest, json_none] = &on_the_file[..] else {
            unreachable!("one run per page");
        };
        // 50 by default, newest first, then the line that says how to go on.
        let ids = rows(all);
        assert_eq!(ids.len(), 51, "{}", all.stdout_text());
        assert_eq!((ids[0].as_str(), ids[49].as_str()), ("53", "4"));
        assert!(
            all.stdout_text()
                .ends_with("\n(more: add --before 4 to list the next ones)\n"),
            "{all:?}"
        );
        assert_eq!(rows(before_4), ["3", "2", "1"]);
        assert_eq!(rows(two), ["9", "8", "(more:"], "{}", two.stdout_text());
        // alice sent 1, 4, 7 … 52.
        assert_eq!(rows(alice), ["52", "49", "46", "(more:"]);
        assert!(all.stderr.is_empty() && alice.stderr.is_empty(), "{all:?}");

        // With --json, stdout stays one JSON array and the hint goes to stderr.
        let ids = listed_ids;
        assert_eq!(ids(json_two), [9, 8]);
        assert_eq!(
            json_two.stderr,
            "(more: add --before 8 to list the next ones)\n"
        );
        assert_eq!(ids(json_rest), [2, 1]);
        assert_eq!(json_rest.stderr, "");
        assert_eq!(ids(json_none), Vec::<u64>::new());
        assert_eq!(json_none.stderr, "(more: raise --limit to list them)\n");
    }
}

#[test]
fn cli_writes_are_seen_by_a_live_daemon_and_parallel_cli_processes() {
    for bin in Binary::ALL {
        let env = Env::new();
        let daemon = env.daemon();
        // Several CLI processes at once, each a writer, while the daemon writes too.
        let children = parallel_user_adds(&env, bin, 4);
        for _ in 0..5 {
            daemon
                .deliver(delivery("alice", "hi\r\n"), SystemTime::now())
                .unwrap();
        }
        for child in children {
            child.join().unwrap().success();
        }
        for i in 0..4 {
            let request = atacama_core::smtp::AuthRequest {
                mechanism: atacama_core::smtp::Mechanism::Plain,
                username: format!("user{i}"),
                password: atacama_core::sasl::Password::new(format!("pw{i}")),
            };
            assert_eq!(
                daemon.authenticate(&request),
                atacama_core::smtp::AuthOutcome::Accepted
            );
        }
        let list = json_of(
            &env.run(bin, &["messages", "list", "--json"], None)
                .success(),
        );
        assert_eq!(list.as_array().map(Vec::len), Some(5));
    }
}

/// Without a daemon, command lines take turns at the file: each waits while another holds it.
#[test]
fn parallel_cli_processes_without_a_daemon_take_turns() {
    for bin in Binary::ALL {
        let env = Env::new();
        let children = parallel_user_adds(&env, bin, 4);
        for child in children {
            child.join().unwrap().success();
        }
        let store = Store::open_in(&env.data, 4).unwrap();
        for i in 0..4 {
            let name = format!("user{i}");
            assert!(store.verify_user(&name, &format!("pw{i}")).unwrap());
        }
    }
}

/// A file held by a process that serves no socket (a daemon of an older build, say): the
/// command waits a little for it, then says who holds what.
#[test]
fn a_file_held_without_a_socket_is_a_one_line_error() {
    for bin in Binary::ALL {
        let env = Env::new();
        let _held = Store::open_in(&env.data, 4).unwrap();
        let run = env.run(bin, &["user", "list"], None);
        let file = env.data.join("atacama.redb");
        let socket = env.data.join("control.sock");
        assert_error(
            &run,
            bin,
            1,
            &format!(
                "{} is open in another process, and no server answers on {}",
                file.display(),
                socket.display()
            ),
        );
    }
}

#[test]
fn unreadable_database_and_bad_config_are_one_line_errors() {
    for bin in Binary::ALL {
        let env = Env::new();
        // Private, as a data directory must be (a 0755 one is refused before the file is read).
        std::os::unix::fs::DirBuilderExt::mode(&mut std::fs::DirBuilder::new(), 0o700)
            .create(&env.data)
            .unwrap();
        let file = env.data.join("atacama.redb");
        std::fs::write(&file, vec![0x42; 8192]).unwrap();
        let run = env.run(bin, &["messages", "list"], None);
        assert_eq!(run.code, Some(1), "{run:?}");
        let prefix = format!(
            "{}: error: database error: {}: ",
            bin.name(),
            file.display()
        );
        assert!(run.stderr.starts_with(&prefix), "{run:?}");
        assert_eq!(run.stderr.lines().count(), 1, "{run:?}");

        std::fs::write(&env.config, "[limits]\nmax_recipents = 5\n").unwrap();
        let run = env.run(bin, &["user", "list"], None);
        assert_eq!(run.code, Some(1), "{run:?}");
        assert!(
            run.stderr.starts_with(&format!(
                "{}: error: config key limits.max_recipents: unknown field",
                bin.name()
            )),
            "{run:?}"
        );

        // A default channel listed nowhere: the command line and serve both refuse it.
        std::fs::write(&env.config, "[channels]\ndefault = \"travel\"\n").unwrap();
        for args in [&["token", "list"][..], &["serve"]] {
            assert_error(
                &env.run(bin, args, None),
                bin,
                1,
                "config key channels.default: channel \"travel\" is listed in neither \
                 channels.public nor channels.private",
            );
        }

        let missing = env.config.with_file_name("nope.toml");
        let run = bin.run(
            [
                "--config".as_ref(),
                missing.as_os_str(),
                "user".as_ref(),
                "list".as_ref(),
            ],
            None,
        );
        assert!(
            run.stderr.starts_with(&format!(
                "{}: error: cannot read config file {}: ",
                bin.name(),
                missing.display()
            )),
            "{run:?}"
        );
    }
}

/// A bad `[store]` is refused by `serve` and by the command line alike, naming the key,
/// before anything is opened.
#[test]
fn a_bad_store_section_is_refused_naming_the_key() {
    for bin in Binary::ALL {
        let env = Env::new();
        for (store, message) in [
            (
                "backend = \"mysql\"",
                "config key store.backend: unknown variant `mysql`, expected `redb` or `postgres`",
            ),
            (
                "backend = \"postgres\"",
                "config key store.url: is missing: store.backend = \"postgres\" needs the \
                 database's URL",
            ),
            (
                "backend = \"postgres\"\nurl = \"mysql://db/atacama\"",
                "config key store.url: must start with postgres:// or postgresql://",
            ),
            (
                "backend = \"postgres\"\nurl = \"postgres://db/atacama\"\npool_size = 0",
                "config key store.pool_size: must be between 1 and 256, not 0",
            ),
            (
                "pool_size = 8",
                "config key store.pool_size: is only for store.backend = \"postgres\", and the \
                 backend is redb",
            ),
        ] {
            std::fs::write(
                &env.config,
                format!("[auth]\nbcrypt_cost = 4\n[store]\n{store}\n"),
            )
            .unwrap();
            for args in [&["user", "list"][..], &["serve"]] {
                assert_error(&env.run(bin, args, None), bin, 1, message);
            }
        }
        assert!(!env.data.exists(), "nothing was opened");
    }
}

/// A database that cannot be reached is refused at start, by `serve` and the command line
/// alike, with the same one line: never a redb file in its place.
#[test]
fn an_unreachable_postgres_is_refused_at_start_and_never_replaced_by_redb() {
    for bin in Binary::ALL {
        let env = Env::new();
        // Port 1 of loopback: nothing is there.
        std::fs::write(
            &env.config,
            "[auth]\nbcrypt_cost = 4\n[listen]\nsubmission = \"127.0.0.1:0\"\nsubmissions = []\n\
             [http]\nlisten = []\n[store]\nbackend = \"postgres\"\n\
             url = \"postgres://atacama@127.0.0.1:1/atacama\"\n",
        )
        .unwrap();
        let run = env.run(bin, &["user", "list"], None);
        assert_eq!(run.code, Some(1), "{run:?}");
        let said = run.stderr.trim_end().to_string();
        assert!(
            said.starts_with(&format!("{}: error: ", bin.name())),
            "{run:?}"
        );
        let run = env.run(bin, &["serve"], None);
        assert_eq!(run.code, Some(1), "{run:?}");
        assert_eq!(run.stderr.lines().last(), Some(said.as_str()), "{run:?}");
        assert!(!env.data.join("atacama.redb").exists(), "no redb file made");
    }
}

/// What one run of the user commands printed: each command's exit status, stdout and
/// stderr; first on the file, then through a daemon (on PostgreSQL, at `postgres`, the
/// command line goes to the database itself all along, the daemon running or not).
fn user_transcript(
    env: &Env,
    bin: Binary,
    postgres: Option<&str>,
) -> Vec<(Option<i32>, String, String)> {
    let on_file: [(&[&str], Option<&[u8]>); 6] = [
        (&["user", "add", "alice", "--password-stdin"], Some(b"pw\n")),
        (&["user", "add", "alice", "--password-stdin"], Some(b"pw\n")),
        (&["user", "add", "bob", "--password-stdin"], Some(b"pw\n")),
        (&["user", "disable", "bob"], None),
        (
            &["user", "passwd", "nobody", "--password-stdin"],
            Some(b"x\n"),
        ),
        (&["messages", "list"], None),
    ];
    let through_daemon: [(&[&str], Option<&[u8]>); 4] = [
        (&["user", "enable", "bob"], None),
        (&["user", "del", "bob"], None),
        (&["user", "del", "bob"], None),
        (&["token", "list"], None),
    ];
    let run = |(args, stdin): &(&[&str], Option<&[u8]>)| {
        let run = env.run(bin, args, *stdin);
        (run.code, run.stdout_text(), run.stderr.clone())
    };
    let names = |env: &Env| {
        let list = json_of(&env.run(bin, &["user", "list", "--json"], None).success());
        let names: Vec<String> = list
            .as_array()
            .unwrap()
            .iter()
            .map(|u| format!("{} {}", u["name"], u["active"]))
            .collect();
        (Some(0), names.join("\n"), String::new())
    };
    let mut transcript: Vec<_> = on_file.iter().map(run).collect();
    transcript.push(names(env));
    let daemon = match postgres {
        None => env.daemon(),
        Some(url) => {
            let config = PgConfig {
                url: url.to_string(),
                password: None,
                pool_size: 2,
            };
            env.daemon_on(Arc::new(PgStore::open(&config, 4, "general").unwrap()))
        }
    };
    transcript.extend(through_daemon.iter().map(run));
    transcript.push(names(env));
    assert!(daemon.store().verify_user("alice", "pw").unwrap());
    transcript
}

/// `[store] backend = "redb"` written out is no `[store]` at all, and PostgreSQL is the
/// same again: the same commands give the same answers, on the file (or the database) and
/// with a daemon running.
#[test]
fn user_commands_answer_the_same_on_redb_default_explicit_and_on_postgres() {
    for bin in Binary::ALL {
        let url = Postgres::shared().fresh_database();
        let postgres = format!("[store]\nbackend = \"postgres\"\nurl = \"{url}\"\n");
        let stores = [("", None), ("[store]\nbackend = \"redb\"\n", None)];
        let [default, explicit, on_postgres] = [
            stores[0],
            stores[1],
            (postgres.as_str(), Some(url.as_str())),
        ]
        .map(|(store, url)| {
            let env = Env::new();
            std::fs::write(
                &env.config,
                format!("hostname = \"mail.example.test\"\n[auth]\nbcrypt_cost = 4\n{store}"),
            )
            .unwrap();
            let transcript = user_transcript(&env, bin, url);
            if url.is_some() {
                assert!(!env.data.join("atacama.redb").exists(), "no redb file made");
            }
            transcript
        });
        assert_eq!(default, explicit);
        assert_eq!(default, on_postgres);
        assert_eq!(
            default[0],
            (Some(0), "added user alice\n".into(), String::new())
        );
        assert_eq!(default[1].0, Some(1), "{:?}", default[1]);
        assert_eq!(default[6].1, "\"alice\" true\n\"bob\" false");
        assert_eq!(default[11].1, "\"alice\" true");
    }
}

impl Env {
    /// This environment's config with `[store]` on PostgreSQL at `url`.
    fn on_postgres(url: &str) -> Env {
        let env = Env::new();
        std::fs::write(
            &env.config,
            format!(
                "hostname = \"mail.example.test\"\n[auth]\nbcrypt_cost = 4\n\
                 [store]\nbackend = \"postgres\"\nurl = \"{url}\"\n"
            ),
        )
        .unwrap();
        env
    }
}

/// What the command line shows of a store: the users, the list, and each message as JSON
/// and as its raw bytes.
fn shown(env: &Env, bin: Binary, ids: &[MessageId]) -> Vec<Vec<u8>> {
    let mut shown = vec![
        env.run(bin, &["user", "list", "--json"], None)
            .success()
            .stdout,
        env.run(bin, &["token", "list", "--json"], None)
            .success()
            .stdout,
        env.run(bin, &["messages", "list", "--json"], None)
            .success()
            .stdout,
    ];
    for id in ids {
        let id = id.0.to_string();
        for format in ["--json", "--raw"] {
            let run = env.run(bin, &["messages", "show", &id, format], None);
            shown.push(run.success().stdout);
        }
    }
    shown
}

/// What a daemon of `bin` serving `env`'s store answers to `GET /messages/{id}` (JSON) and
/// `/messages/{id}/chain`, for each of `ids`; the daemon is stopped before this returns.
fn served(env: &Env, bin: Binary, ids: &[MessageId]) -> Vec<Value> {
    use atacama_tests::server::free_port;
    let (submission, submissions, http) = (free_port(), free_port(), free_port());
    let config = env._dir.path().join("serve.toml");
    let store = std::fs::read_to_string(&env.config).unwrap();
    std::fs::write(
        &config,
        format!(
            "{store}\n[listen]\nsubmission = \"{submission}\"\nsubmissions = \"{submissions}\"\n\
             [http]\nlisten = \"{http}\"\n"
        ),
    )
    .unwrap();
    let args = [
        "--config".to_string(),
        config.display().to_string(),
        "--data-dir".to_string(),
        env.data.display().to_string(),
        "serve".to_string(),
    ];
    let mut child = std::process::Command::new(bin.path())
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(http).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "{} never served",
            bin.name()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let json = [("Accept", "application/json")];
    let mut answers = Vec::new();
    for id in ids {
        for path in [format!("/messages/{id}"), format!("/messages/{id}/chain")] {
            let response = atacama_tests::http::get(http, &path, &json);
            answers.push(response.json());
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    answers
}

/// Mail that came after a copy leaves the target as a copy that stopped leaves it: `copy`
/// refuses it and says how to go on, `copy --resume` copies the one message it lacks and
/// verifies the whole.
#[test]
fn a_copy_that_stopped_goes_on_with_resume() {
    for bin in Binary::ALL {
        let env = with_alice(bin);
        let t0 = t0();
        let deliver = |subject: &str| {
            let daemon = env.daemon();
            let body = format!("Subject: {subject}\r\n\r\nHello\r\n");
            daemon.deliver(delivery("alice", &body), t0).unwrap()
        };
        deliver("one");
        deliver("two");
        let url = Postgres::shared().fresh_database();
        let to_postgres = ["store", "copy", "--to", "postgres", "--url", url.as_str()];
        env.run(bin, &to_postgres, None).success();
        // Mail that came after: the target is now what a copy that stopped leaves.
        let third = deliver("three");
        let again = env.run(bin, &to_postgres, None);
        assert_eq!(again.code, Some(1), "{again:?}");
        assert!(
            again.stderr.contains("is not empty") && again.stderr.contains("--resume"),
            "{again:?}"
        );
        let resume = [
            "store",
            "copy",
            "--resume",
            "--to",
            "postgres",
            "--url",
            url.as_str(),
        ];
        let resumed = env.run(bin, &resume, None).success();
        let said = resumed.stdout_text();
        assert!(
            said.starts_with("copied 0 users, 0 tokens and 1 messages ("),
            "{said}"
        );
        assert!(
            said.contains(" 1 users, 0 tokens and 3 messages ("),
            "{said}"
        );
        let postgres = Env::on_postgres(&url);
        assert_eq!(shown(&postgres, bin, &[third]), shown(&env, bin, &[third]));
    }
}

/// A site on redb moves to PostgreSQL and backs up into another redb data dir: every
/// message under its id with its bytes, threading and channel, users who log in with the
/// same password, tokens that still work; a target that holds anything is refused, a file a
/// server holds too, and a copy whose bytes changed fails verification naming the message.
#[test]
fn store_copy_moves_a_site_to_postgres_and_back() {
    for bin in Binary::ALL {
        let env = with_alice(bin);
        let token = env.run(bin, &["token", "add", "reader"], None).success();
        let token = token.stdout_text().lines().next().unwrap().to_string();
        let daemon = env.daemon();
        let t0 = t0();
        let mut ids = Vec::new();
        for body in [
            "Message-ID: <root@x>\r\nSubject: one\r\n\r\nHello *world*\r\n",
            "In-Reply-To: <root@x>\r\nSubject: two\r\n\r\nA reply\r\n",
            &format!("Subject: three\r\n\r\n{}\r\n", "long line ".repeat(200_000)),
        ] {
            ids.push(daemon.deliver(delivery("alice", body), t0).unwrap());
        }
        drop(daemon);
        let served_on_redb = served(&env, bin, &ids);
        assert_eq!(
            served_on_redb[0]["id"],
            json!(ids[0].0),
            "{served_on_redb:?}"
        );
        assert!(served_on_redb[3].to_string().contains("A reply"));
        let daemon = env.daemon();
        let url = Postgres::shared().fresh_database();
        let to_postgres = ["store", "copy", "--to", "postgres", "--url", url.as_str()];
        let held = env.run(bin, &to_postgres, None);
        assert_eq!(held.code, Some(1), "{held:?}");
        assert!(held.stderr.contains("stop the server first"), "{held:?}");
        drop(daemon);

        let migrated = env.run(bin, &["store", "migrate"], None).success();
        assert!(
            migrated
                .stdout_text()
                .ends_with(": schema is at version 5\n"),
            "{migrated:?}"
        );
        let copied = env.run(bin, &to_postgres, None).success();
        let said = copied.stdout_text();
        assert!(
            said.starts_with("copied 1 users, 1 tokens and 3 messages ("),
            "{said}"
        );
        assert!(
            said.contains("verified in ") && said.contains(" 1 users, 1 tokens and 3 messages ("),
            "{said}"
        );
        let again = env.run(bin, &to_postgres, None);
        assert_eq!(again.code, Some(1), "{again:?}");
        assert!(again.stderr.contains("is not empty"), "{again:?}");

        let postgres = Env::on_postgres(&url);
        let migrated = postgres.run(bin, &["store", "migrate"], None).success();
        assert!(
            migrated
                .stdout_text()
                .ends_with(&format!(": schema is at version {PG_SCHEMA_VERSION}\n")),
            "{migrated:?}"
        );
        let on_redb = shown(&env, bin, &ids);
        assert_eq!(shown(&postgres, bin, &ids), on_redb);
        assert_eq!(served(&postgres, bin, &ids), served_on_redb);
        let config = PgConfig {
            url: url.clone(),
            password: None,
            pool_size: 2,
        };
        let store = PgStore::open(&config, 4, "general").unwrap();
        assert!(store.verify_user("alice", "pw").unwrap());
        assert!(store.token_valid(&token).unwrap());
        assert_eq!(store.message(ids[1]).unwrap().parent_id, Some(ids[0]));
        let next = store
            .insert_message(&atacama_store::testing::new_message("alice", None, None))
            .unwrap();
        assert_eq!(next, MessageId(4));

        // And back, into a data dir of its own: --data-dir names the target.
        let backup = env._dir.path().join("backup");
        let backup_dir = backup.display().to_string();
        postgres
            .run(
                bin,
                &["store", "copy", "--to", "redb", "--data-dir", &backup_dir],
                None,
            )
            .success();
        let restored = Env::new();
        let restored_args = |args: &[&str]| {
            let mut all = restored.args(args);
            all.extend(["--data-dir".to_string(), backup_dir.clone()]);
            all
        };
        for (args, on_postgres) in [
            (
                &["messages", "show", "4", "--raw"][..],
                postgres.run(bin, &["messages", "show", "4", "--raw"], None),
            ),
            (
                &["messages", "list", "--json"],
                postgres.run(bin, &["messages", "list", "--json"], None),
            ),
        ] {
            assert_eq!(
                bin.run(restored_args(args), None).success().stdout,
                on_postgres.success().stdout
            );
        }

        // A byte changed in PostgreSQL: verifying the backup against it names the message.
        let mut client = ::postgres::Client::connect(&url, ::postgres::NoTls).unwrap();
        client
            .execute(
                "UPDATE messages SET header = header || '\\x20'::bytea WHERE id = 2",
                &[],
            )
            .unwrap();
        let verify = ["store", "verify", "--to", "postgres", "--url", url.as_str()];
        let run = bin.run(restored_args(&verify), None);
        assert_error(
            &run,
            bin,
            1,
            "verification failed: the raw bytes of message 2 differ (SHA-256), and of 1 \
             message(s) in all",
        );

        // A schema newer than this build: refused, naming both versions.
        client
            .execute("INSERT INTO atacama_schema (version) VALUES (99)", &[])
            .unwrap();
        let run = postgres.run(bin, &["store", "migrate"], None);
        assert_error(
            &run,
            bin,
            1,
            &format!(
                "database schema version 99 is not supported by this build (expected \
                 {PG_SCHEMA_VERSION})"
            ),
        );
    }
}
