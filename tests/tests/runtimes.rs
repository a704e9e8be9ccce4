//! What each runtime implements on its own, held to the same behaviour on both binaries:
//! the order of replies around completions, the end of the shutdown grace period, and the
//! wording of the per-connection log lines.

use std::time::{Duration, Instant};

use atacama_tests::client::plain;
use atacama_tests::{Binary, Client, Server, Settings, login_code};

/// A server with user alice / s3cret.
fn server(binary: Binary) -> Server {
    let server = Server::start_with(binary, Settings::default());
    server.add_user("alice", "s3cret");
    server
}

/// Implicit TLS, EHLO done.
fn greeted(server: &Server) -> Client {
    let mut c = Client::connect_tls(server.submissions, &server.cert_pem()).expect("connect");
    c.expect(220);
    c.command("EHLO client.test", 250);
    c
}

/// One write: AUTH PLAIN with `password`, MAIL, RCPT and DATA.
fn pipelined_login(server: &Server, password: &str) -> Client {
    let mut c = greeted(server);
    c.send(format!(
        "AUTH PLAIN {}\r\nMAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@example.org>\r\n\
         DATA\r\n",
        plain("alice", password)
    ))
    .expect("send");
    c
}

fn p6_pipelined_auth_and_envelope_are_answered_in_order(binary: Binary) {
    let server = server(binary);
    // MAIL is judged after the (slow) AUTH completes: never a spurious 530.
    let mut c = pipelined_login(&server, "s3cret");
    for code in [235, 250, 250, 354] {
        c.expect(code);
    }
    c.send("Subject: pipelined\r\n\r\nbody\r\n.\r\n")
        .expect("send");
    assert!(c.expect(250).starts_with("2.0.0 Ok: queued as 1"));
    c.command("QUIT", 221);

    let mut c = pipelined_login(&server, "wrong");
    for code in [535, 530, 503, 503] {
        c.expect(code);
    }
    c.command("QUIT", 221);
}

fn a_transaction_that_outlives_the_grace_period_is_cut_and_the_server_exits_0(binary: Binary) {
    let mut server = server(binary);
    let mut c = greeted(&server);
    c.command(&format!("AUTH PLAIN {}", plain("alice", "s3cret")), 235);
    c.command("MAIL FROM:<alice@example.org>", 250);
    c.command("RCPT TO:<bob@example.org>", 250);
    c.command("DATA", 354);
    c.send("Subject: never finished\r\n\r\nhalf\r\n")
        .expect("send");
    let signalled = Instant::now();
    server.signal("TERM");
    // The grace period is 5 s; the client keeps the transaction open past it.
    assert!(
        c.closed_within(Duration::from_secs(15)),
        "cut after the grace period"
    );
    let status = server.wait_exit(Duration::from_secs(15)).expect("exited");
    let took = signalled.elapsed();
    assert_eq!(status.code(), Some(0), "{}", server.log());
    assert!(took < Duration::from_secs(12), "{took:?}");
    // The cut connection still logs its end, and the store is closed before `stopped`.
    let log = server.log();
    let tail: Vec<&str> = log
        .lines()
        .skip_while(|l| !l.contains("SIGTERM received: shutting down"))
        .filter_map(|l| l.split_once("] ").map(|(_, message)| message))
        .collect();
    assert_eq!(
        tail.first().copied(),
        Some("SIGTERM received: shutting down"),
        "{log}"
    );
    assert!(
        tail.contains(&"1 connections still open after the grace period are aborted"),
        "{log}"
    );
    assert!(
        tail.iter().any(|l| l.starts_with("connection close ")
            && l.contains(" user=alice ")
            && l.ends_with(" outcome=aborted")),
        "{log}"
    );
    assert_eq!(tail.last().copied(), Some("stopped"), "{log}");
    assert!(!log.contains("store still in use"), "{log}");
    // Nothing half-received was stored, and the store opens cleanly afterwards.
    let run = server.cli(&["messages", "list", "--json"], None).success();
    assert_eq!(run.stdout_text().trim(), "[]");
}

/// The per-connection lines of `log` (connections, logins, messages), with what differs
/// between two runs (time, ports, durations) blanked out.
fn connection_lines(log: &str) -> Vec<String> {
    log.lines()
        // `2026-…Z LEVEL [target] message`: the time goes, the rest stays.
        .filter_map(|line| line.split_once(' ').map(|(_, rest)| rest))
        .filter(|line| {
            ["connection ", "auth ", "message ", "authentication "]
                .iter()
                .any(|p| line.split_once("] ").is_some_and(|(_, m)| m.starts_with(p)))
        })
        .map(|line| {
            line.split(' ')
                .map(|word| match word.split_once('=') {
                    Some((key @ ("peer" | "local"), _)) => format!("{key}=*"),
                    Some(("duration_ms", _)) => "duration_ms=*".to_string(),
                    _ => word.to_string(),
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

/// The same conversations against each binary: STARTTLS with a failed and a good login and
/// a message, then (if `hang_up`) an implicit-TLS client that hangs up without QUIT.
fn conversation_log(binary: Binary, hang_up: bool) -> Vec<String> {
    let server = server(binary);
    let mut c = Client::connect(server.submission).expect("connect");
    c.expect(220);
    c.command("EHLO client.test", 250);
    c.command("STARTTLS", 220);
    c.start_tls(&server.cert_pem()).expect("handshake");
    c.command("EHLO client.test", 250);
    c.command(&format!("AUTH PLAIN {}", plain("alice", "nope")), 535);
    c.command(&format!("AUTH PLAIN {}", plain("alice", "s3cret")), 235);
    c.command("MAIL FROM:<alice@example.org>", 250);
    c.command("RCPT TO:<bob@example.org>", 250);
    c.command("DATA", 354);
    c.command("Subject: logged\r\n\r\nbody\r\n.", 250);
    c.command("QUIT", 221);
    assert!(c.closed_within(Duration::from_secs(5)));
    drop(c);
    // The readiness probe's connection and ours.
    wait_for_closes(&server, 2);
    if hang_up {
        // Without QUIT or close_notify, having read every reply (so a FIN, not a reset).
        drop(greeted(&server));
        wait_for_closes(&server, 3);
    }
    connection_lines(&server.log())
}

/// Waits (at most 10 s) until `server` has logged the end of `connections` connections, so
/// that the next connection's lines come after them.
fn wait_for_closes(server: &Server, connections: usize) {
    let started = Instant::now();
    while connection_lines(&server.log())
        .iter()
        .filter(|l| l.contains("connection close "))
        .count()
        < connections
        && started.elapsed() < Duration::from_secs(10)
    {
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn both_binaries_write_the_same_connection_log_lines() {
    let smol = conversation_log(Binary::Smol, false);
    let std = conversation_log(Binary::Std, false);
    assert!(
        smol.iter().any(|l| l.contains("auth failure user=alice")),
        "{smol:#?}"
    );
    assert_eq!(smol, std);
}

#[test]
fn both_binaries_log_a_tls_hang_up_the_same() {
    let smol = conversation_log(Binary::Smol, true);
    let std = conversation_log(Binary::Std, true);
    assert!(
        std.last()
            .is_some_and(|l| l.ends_with("outcome=peer_closed")),
        "{std:#?}"
    );
    assert_eq!(smol, std);
}

/// The daemon holds the database alone; the command line works beside it through the control
/// socket, its changes take effect at once, and the socket goes with the daemon.
fn the_command_line_works_through_the_running_server(binary: Binary) {
    let mut server = server(binary);
    let socket = server.data_dir.join("control.sock");
    assert!(socket.exists());
    server.add_user("bob", "first");
    assert_eq!(login_code(&server, "bob", "first"), 235);
    server
        .cli(
            &["user", "passwd", "bob", "--password-stdin"],
            Some(b"second\n"),
        )
        .success();
    assert_eq!(login_code(&server, "bob", "first"), 535);
    assert_eq!(login_code(&server, "bob", "second"), 235);
    server.cli(&["user", "disable", "bob"], None).success();
    assert_eq!(login_code(&server, "bob", "second"), 535);
    let run = server.cli(&["user", "del", "nobody"], None);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert_eq!(
        run.stderr,
        format!("{}: error: no user named \"nobody\"\n", binary.name())
    );
    let log = server.log();
    assert!(log.contains("control: user add \"bob\": ok"), "{log}");
    assert!(
        log.contains("control: user del \"nobody\": no user named"),
        "{log}"
    );

    // A second server on the same data directory is refused by name, after a short wait.
    let second = server.cli(&["serve"], None);
    assert_eq!(second.code, Some(1), "{second:?}");
    assert!(
        second
            .stderr
            .contains("atacama.redb is open in another process"),
        "{second:?}"
    );

    server.signal("TERM");
    assert!(server.wait_exit(Duration::from_secs(10)).is_some());
    assert!(!socket.exists());
    // Everything that held the store let go of it before the exit.
    let log = server.log();
    assert!(!log.contains("store still in use"), "{log}");
    assert!(log.ends_with("stopped\n"), "{log}");
    // With no server, the command line opens the file itself.
    let list = server.cli(&["user", "list"], None).success().stdout_text();
    assert!(list.contains("bob"), "{list}");

    // A killed server leaves its socket behind; nobody answers it, so the file is opened.
    server.restart();
    server.kill();
    assert!(socket.exists());
    let list = server.cli(&["user", "list"], None).success().stdout_text();
    assert!(list.contains("alice"), "{list}");
}

atacama_tests::end_to_end!(
    p6_pipelined_auth_and_envelope_are_answered_in_order,
    a_transaction_that_outlives_the_grace_period_is_cut_and_the_server_exits_0;
    // The control socket and the file one process holds: on PostgreSQL the command line opens
    // the database itself (tests/tests/postgres.rs has two daemons on one).
    redb_only:
    the_command_line_works_through_the_running_server,
);
