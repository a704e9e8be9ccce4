//! Daemons sharing one PostgreSQL database, and the database failing under them: the smol and
//! the std daemon on one database see each other's users, messages and threads at once; and a
//! database killed with SIGKILL under load loses no acknowledged message, refuses deliveries
//! with `451 4.3.0` (never a `250` without a commit) and `/healthz` with `503` while it is
//! down, and is reconnected to without a restart once it is back; a database frozen with
//! SIGSTOP gets deliveries `451 4.3.0` after `limits.store_timeout_secs`, not a wait
//! without end.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use atacama_store::testing::Postgres;
use atacama_tests::client::{Client, plain};
use atacama_tests::http::get;
use atacama_tests::{
    Binary, Server, Settings, StoreSetting, eventually, login_code, mailer, send_retrying,
    server_with,
};
use lettre::Message;
use serde_json::Value;

/// Connections to each daemon sending at once.
const CONNECTIONS: usize = 20;
/// Messages each of them sends.
const MESSAGES: usize = 3;

/// A server of `binary` on the database at `url`.
fn on_database(binary: Binary, url: &str) -> Server {
    let settings = Settings::default()
        .store(StoreSetting::Postgres(url.to_string()))
        // Every connection of the test comes from 127.0.0.1.
        .limit("max_connections_per_ip", 4 * CONNECTIONS);
    Server::start_with(binary, settings)
}

fn email(subject: &str, message_id: &str) -> lettre::message::MessageBuilder {
    Message::builder()
        .from("Alice <alice@example.org>".parse().expect("address"))
        .to("bob@example.org".parse().expect("address"))
        .subject(subject)
        .message_id(Some(message_id.to_string()))
}

/// `messages list --json` of everything, through `server`'s config.
fn stored(server: &Server) -> Vec<Value> {
    let run = server
        .cli(&["messages", "list", "--json", "--limit", "100000"], None)
        .success();
    let list: Value = serde_json::from_slice(&run.stdout).expect("JSON output");
    list.as_array().expect("a JSON array").clone()
}

fn subjects(messages: &[Value]) -> Vec<String> {
    messages
        .iter()
        .map(|m| m["subject"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// The id of the message whose subject is `subject`.
fn id_of(messages: &[Value], subject: &str) -> u64 {
    messages
        .iter()
        .find(|m| m["subject"] == subject)
        .and_then(|m| m["id"].as_u64())
        .unwrap_or_else(|| panic!("no message {subject:?} in {messages:?}"))
}

/// A user added through one daemon logs in on the other at once; 20 connections to each
/// send at once and every message is stored once under a unique id; a reply sent through
/// one daemon threads under its parent sent through the other.
#[test]
fn two_daemons_on_one_database_share_users_messages_and_threads() {
    let url = Postgres::shared().fresh_database();
    let smol = on_database(Binary::Smol, &url);
    let std = on_database(Binary::Std, &url);
    // Through smol's command line, logging in on std at once, and the other way round.
    smol.add_user("alice", "s3cret");
    assert_eq!(login_code(&std, "alice", "s3cret"), 235);
    std.add_user("bob", "hunter2");
    assert_eq!(login_code(&smol, "bob", "hunter2"), 235);
    smol.cli(&["user", "disable", "bob"], None).success();
    assert_eq!(login_code(&std, "bob", "hunter2"), 535);

    std::thread::scope(|scope| {
        let handles: Vec<_> = [&smol, &std]
            .into_iter()
            .flat_map(|server| (0..CONNECTIONS).map(move |c| (server, c)))
            .map(|(server, c)| {
                scope.spawn(move || {
                    let mailer = mailer(server);
                    let name = server.binary.name();
                    for n in 0..MESSAGES {
                        let subject = format!("{name} {c} {n}");
                        let message = email(&subject, &format!("<{c}.{n}@{name}.test>"))
                            .body("load\r\n".to_string())
                            .expect("message");
                        send_retrying(&mailer, &message)
                            .unwrap_or_else(|e| panic!("{subject}: {e:?}"));
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.join().expect("a client thread panicked");
        }
    });
    let messages = stored(&std);
    let expected: BTreeSet<String> = [&smol, &std]
        .iter()
        .flat_map(|server| {
            let name = server.binary.name();
            (0..CONNECTIONS)
                .flat_map(move |c| (0..MESSAGES).map(move |n| format!("{name} {c} {n}")))
        })
        .collect();
    assert_eq!(messages.len(), expected.len(), "each stored exactly once");
    let got: BTreeSet<String> = subjects(&messages).into_iter().collect();
    assert_eq!(got, expected);
    let ids: BTreeSet<u64> = messages.iter().filter_map(|m| m["id"].as_u64()).collect();
    assert_eq!(ids.len(), expected.len(), "ids unique");
    // Both command lines see the same.
    assert_eq!(stored(&smol), messages);

    // The parent through smol, the reply through std.
    let root = email("root", "<root@smol.test>")
        .body("first\r\n".to_string())
        .expect("message");
    send_retrying(&mailer(&smol), &root).expect("root sent");
    let reply = email("Re: root", "<reply@std.test>")
        .in_reply_to("<root@smol.test>".into())
        .body("second\r\n".to_string())
        .expect("message");
    send_retrying(&mailer(&std), &reply).expect("reply sent");
    let messages = stored(&smol);
    let (root, reply) = (id_of(&messages, "root"), id_of(&messages, "Re: root"));
    for server in [&smol, &std] {
        let json = get(server.http, &format!("/messages/{reply}"), &[]).json();
        assert_eq!(json["parent_id"], root, "{}: {json}", server.binary.name());
        let links = get(server.http, &format!("/messages/{root}/chain"), &[]).chain_links();
        assert_eq!(
            links,
            [(root, true), (reply, false)],
            "{}",
            server.binary.name()
        );
    }
}

// --- faults -----------------------------------------------------------------------------------

/// Clients sending while the database is killed.
const SENDERS: usize = 6;
/// How long the database stays down once the daemon has noticed.
const DOWN: Duration = Duration::from_secs(2);
/// The longest any phase may take.
const PHASE_LIMIT: Duration = Duration::from_secs(30);

/// What the clients heard: each transaction, whatever its end.
#[derive(Default)]
struct Heard {
    /// Those whose data got `250`.
    accepted: Vec<Answer>,
    /// Those refused (at MAIL, RCPT, DATA or after the data).
    refused: Vec<Answer>,
}

/// How one transaction ended.
#[derive(Debug)]
struct Answer {
    subject: String,
    /// When MAIL was sent.
    started: Instant,
    /// When the data was sent, if it was.
    data_sent: Option<Instant>,
    /// When the last reply came.
    replied: Instant,
    code: u16,
    /// The text of the last reply's first line.
    line: String,
}

/// PostgreSQL killed with SIGKILL while clients send, then started again: every message that
/// got `250` is stored, deliveries meanwhile got `451 4.3.0`, `/healthz` said `503` and then
/// `200`, and the daemon takes mail again without a restart.
fn a_database_killed_under_load_loses_no_acknowledged_message(binary: Binary) {
    let postgres = Postgres::start();
    let url = postgres.fresh_database();
    let server = server_with(
        binary,
        Settings::default().store(StoreSetting::Postgres(url)),
    );
    let heard = Mutex::new(Heard::default());
    let stop = AtomicBool::new(false);
    let (killing, killed, restarting, healthy) = std::thread::scope(|scope| {
        // Also when an assertion below fails: the senders stop, and the scope ends.
        let _stop = StopOnDrop(&stop);
        for sender in 0..SENDERS {
            let (server, heard, stop) = (&server, &heard, &stop);
            scope.spawn(move || send_until(server, sender, heard, stop));
        }
        let accepted = || heard.lock().expect("lock").accepted.len();
        assert!(
            eventually(PHASE_LIMIT, || accepted() >= SENDERS),
            "no mail flows"
        );
        let killing = Instant::now();
        postgres.kill();
        let killed = Instant::now();
        assert!(
            eventually(PHASE_LIMIT, || health(&server) == 503),
            "/healthz never said 503:\n{}",
            server.log()
        );
        assert!(
            eventually(PHASE_LIMIT, || !heard
                .lock()
                .expect("lock")
                .refused
                .is_empty()),
            "no delivery was refused while the database was down"
        );
        // A login that cannot be checked is a temporary failure, never a wrong password.
        assert_eq!(login_code(&server, "alice", "s3cret"), 454);
        std::thread::sleep(DOWN);
        let restarting = Instant::now();
        postgres.start_again();
        assert!(
            eventually(PHASE_LIMIT, || health(&server) == 200),
            "/healthz never said 200 again:\n{}",
            server.log()
        );
        let healthy = Instant::now();
        let before = accepted();
        assert!(
            eventually(PHASE_LIMIT, || accepted() >= before + SENDERS),
            "mail did not flow again:\n{}",
            server.log()
        );
        (killing, killed, restarting, healthy)
    });
    let heard = heard.into_inner().expect("lock");

    // Never a 250 without a commit: no message whose data came after the kill was answered
    // 250 before the database was back. (One that came before may be answered after.)
    let while_down: Vec<&Answer> = heard
        .accepted
        .iter()
        .filter(|a| a.data_sent.is_some_and(|sent| sent > killed) && a.replied < restarting)
        .collect();
    assert!(
        while_down.is_empty(),
        "250 while the database was down: {while_down:?}"
    );
    // Every refusal was 451 4.3.0, from the kill on.
    for answer in &heard.refused {
        assert!(
            answer.code == 451 && answer.line.starts_with("4.3.0"),
            "a delivery was answered {answer:?}"
        );
        assert!(
            answer.replied >= killing,
            "refused before the kill: {answer:?}"
        );
    }
    // Back to work at once: no transaction begun after /healthz said 200 again was refused.
    let after: Vec<&Answer> = heard
        .refused
        .iter()
        .filter(|a| a.started > healthy)
        .collect();
    assert!(after.is_empty(), "refused once healthy again: {after:?}");
    // Every 250 is stored, once.
    let stored = subjects(&stored(&server));
    let unique: BTreeSet<&String> = stored.iter().collect();
    assert_eq!(unique.len(), stored.len(), "a message stored twice");
    let missing: Vec<&String> = heard
        .accepted
        .iter()
        .map(|a| &a.subject)
        .filter(|subject| !unique.contains(subject))
        .collect();
    assert!(missing.is_empty(), "acknowledged, then lost: {missing:?}");
    let log = server.log();
    assert!(server_alive(&server), "the daemon exited:\n{log}");
    eprintln!(
        "{}: {} accepted, {} refused, {} stored",
        binary.name(),
        heard.accepted.len(),
        heard.refused.len(),
        stored.len()
    );
}

/// Tells the senders to stop when dropped.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// `/healthz`'s status, or 0 if it did not answer.
fn health(server: &Server) -> u16 {
    atacama_tests::http::HttpClient::connect(server.http)
        .and_then(|mut c| c.get("/healthz", &[]))
        .map_or(0, |response| response.status)
}

fn server_alive(server: &Server) -> bool {
    std::path::Path::new(&format!("/proc/{}", server.pid())).exists()
}

/// One client: logs in and sends numbered messages until `stop`, noting each reply; after a
/// broken connection (or a refused login) it connects again.
fn send_until(server: &Server, sender: usize, heard: &Mutex<Heard>, stop: &AtomicBool) {
    let cert = server.cert_pem();
    let mut n = 0usize;
    let started = Instant::now();
    while !stop.load(Ordering::Relaxed) && started.elapsed() < 4 * PHASE_LIMIT {
        let Some(mut client) = login(server, &cert) else {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        };
        while !stop.load(Ordering::Relaxed) && started.elapsed() < 4 * PHASE_LIMIT {
            let subject = format!("sender {sender} message {n}");
            n += 1;
            match deliver(&mut client, subject) {
                Ok(answer) if answer.code == 250 => {
                    heard.lock().expect("lock").accepted.push(answer);
                }
                Ok(answer) => {
                    heard.lock().expect("lock").refused.push(answer);
                    // Not a tight loop while the database is down.
                    std::thread::sleep(Duration::from_millis(20));
                }
                // The connection broke: a new one.
                Err(_) => break,
            }
        }
    }
}

/// Implicit TLS, EHLO and AUTH PLAIN as alice; `None` if any step fails (the login is
/// refused with `454` while the database is down, or while other logins are in flight).
fn login(server: &Server, cert: &[u8]) -> Option<Client> {
    let mut c = Client::connect_tls(server.submissions, cert).ok()?;
    let ok = |c: &mut Client, code| c.reply().ok().filter(|r| r.code == code).map(drop);
    ok(&mut c, 220)?;
    c.send("EHLO client.test\r\n").ok()?;
    ok(&mut c, 250)?;
    c.send(format!("AUTH PLAIN {}\r\n", plain("alice", "s3cret")))
        .ok()?;
    ok(&mut c, 235)?;
    Some(c)
}

/// One transaction.
fn deliver(c: &mut Client, subject: String) -> std::io::Result<Answer> {
    let started = Instant::now();
    let answer = |reply: atacama_tests::client::Reply, data_sent| Answer {
        subject: subject.clone(),
        started,
        data_sent,
        replied: Instant::now(),
        code: reply.code,
        line: reply.lines.into_iter().next().unwrap_or_default(),
    };
    let steps: [(String, u16); 3] = [
        ("MAIL FROM:<alice@example.org>\r\n".into(), 250),
        ("RCPT TO:<bob@example.org>\r\n".into(), 250),
        ("DATA\r\n".into(), 354),
    ];
    for (command, code) in steps {
        c.send(command)?;
        let reply = c.reply()?;
        if reply.code != code {
            if reply.code < 400 {
                return Err(std::io::Error::other(format!("{reply:?}")));
            }
            let refused = answer(reply, None);
            // The transaction may be half open: start afresh.
            c.send("RSET\r\n")?;
            c.reply()?;
            return Ok(refused);
        }
    }
    c.send(format!(
        "From: alice@example.org\r\nTo: bob@example.org\r\nSubject: {subject}\r\n\r\nx\r\n.\r\n"
    ))?;
    let data_sent = Instant::now();
    Ok(answer(c.reply()?, Some(data_sent)))
}

/// A database that stops answering without closing anything (SIGSTOP: its sockets still
/// accept, the kernel still acknowledges): a delivery waits `limits.store_timeout_secs` for
/// its commit and gets `451 4.3.0`, as does a MAIL whose login must be read, `/healthz` says
/// `503` while the commit hangs (or, with no delivery waiting, the keeper's probe), and once
/// the database goes on, mail flows again with every acknowledged message stored.
fn a_frozen_database_gets_451_after_the_store_timeout(binary: Binary) {
    const TIMEOUT: Duration = Duration::from_secs(2);
    let postgres = Postgres::start();
    let url = postgres.fresh_database();
    let server = server_with(
        binary,
        Settings::default()
            .store(StoreSetting::Postgres(url))
            .limit("store_timeout_secs", TIMEOUT.as_secs()),
    );
    let cert = server.cert_pem();
    let mut remembered = login(&server, &cert).expect("login");
    let mut accepted = Vec::new();
    // The first MAIL starts the listener, a later one is answered from memory.
    for n in 0..3 {
        let answer = deliver(&mut remembered, format!("before {n}")).expect("deliver");
        assert_eq!(answer.code, 250, "{answer:?}");
        accepted.push(answer.subject);
        std::thread::sleep(Duration::from_millis(200));
    }
    // Not known to this daemon: its MAIL must ask the database.
    server
        .cli(&["user", "add", "bob", "--password-stdin"], Some(b"pw\n"))
        .success();
    let mut asking = Client::connect_tls(server.submissions, &cert).expect("connect");
    asking.expect(220);
    asking.command("EHLO client.test", 250);
    asking.command(&format!("AUTH PLAIN {}", plain("bob", "pw")), 235);

    postgres.freeze();
    let _thaw = ThawOnDrop(&postgres);
    let frozen = Instant::now();
    let answer = deliver(&mut remembered, "while frozen".into()).expect("deliver");
    let waited = frozen.elapsed();
    assert!(
        answer.code == 451 && answer.line.starts_with("4.3.0"),
        "{answer:?}"
    );
    assert!(
        answer.data_sent.is_some(),
        "refused at the commit: {answer:?}"
    );
    assert!(
        waited >= TIMEOUT && waited < TIMEOUT + Duration::from_secs(5),
        "answered after {waited:?}"
    );
    assert_eq!(health(&server), 503, "the commit still hangs");
    let started = Instant::now();
    asking
        .send("MAIL FROM:<bob@example.org>\r\n")
        .expect("send");
    let reply = asking.reply().expect("a reply to MAIL");
    assert_eq!(reply.code, 451, "{reply:?}");
    assert!(started.elapsed() < TIMEOUT + Duration::from_secs(5));
    let log = server.log();
    assert!(
        log.contains("did not commit within 2 s") && log.contains("did not answer within 2 s"),
        "{log}"
    );

    postgres.thaw();
    assert!(
        eventually(PHASE_LIMIT, || health(&server) == 200),
        "/healthz never said 200 again:\n{}",
        server.log()
    );
    let answer = deliver(&mut remembered, "after".into()).expect("deliver");
    assert_eq!(answer.code, 250, "{answer:?}");
    accepted.push(answer.subject);
    asking.command("RSET", 250);
    asking.command("MAIL FROM:<bob@example.org>", 250);
    asking.command("RSET", 250);

    // Frozen again with no delivery waiting: the keeper's probe hangs, and /healthz tells.
    postgres.freeze();
    assert!(
        eventually(PHASE_LIMIT, || health(&server) == 503),
        "/healthz never said 503 with no delivery waiting:\n{}",
        server.log()
    );
    postgres.thaw();
    assert!(
        eventually(PHASE_LIMIT, || health(&server) == 200),
        "/healthz never said 200 again:\n{}",
        server.log()
    );
    // Every 250 is stored; the 451'd one may be too (its commit went on when the database
    // did): the client sends it again, a duplicate rather than a loss.
    let stored = subjects(&stored(&server));
    for subject in &accepted {
        assert!(stored.contains(subject), "{subject:?} lost: {stored:?}");
    }
    assert!(
        server_alive(&server),
        "the daemon exited:\n{}",
        server.log()
    );
}

/// Lets a frozen database go on, also when an assertion fails.
struct ThawOnDrop<'a>(&'a Postgres);

impl Drop for ThawOnDrop<'_> {
    fn drop(&mut self) {
        self.0.thaw();
    }
}

#[test]
fn smol_a_frozen_database_gets_451_after_the_store_timeout() {
    a_frozen_database_gets_451_after_the_store_timeout(Binary::Smol);
}

#[test]
fn std_a_frozen_database_gets_451_after_the_store_timeout() {
    a_frozen_database_gets_451_after_the_store_timeout(Binary::Std);
}

#[test]
fn smol_a_database_killed_under_load_loses_no_acknowledged_message() {
    a_database_killed_under_load_loses_no_acknowledged_message(Binary::Smol);
}

#[test]
fn std_a_database_killed_under_load_loses_no_acknowledged_message() {
    a_database_killed_under_load_loses_no_acknowledged_message(Binary::Std);
}
