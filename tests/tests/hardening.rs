//! Issue 24, the session and policy items, end to end on both binaries: no client can outlast
//! the limits before login (5), outrun the login throttle with parallel guesses (6), keep
//! sending after its login was disabled or deleted (7), hold a slot by trickling a message
//! or be cut while sending steadily (8), or start the server with a timeout that overflows
//! the clock (14); MAIL is refused below the free-space floor (2); IPv6 clients are capped
//! by prefix (4).

use std::time::{Duration, Instant};

use atacama_tests::client::plain;
use atacama_tests::{
    Binary, Client, Server, Settings, StoreKind, logged_in, server_with, store_of_this_test,
};
use serde_json::Value;

/// Sends one message on a logged-in session and returns the reply to its final dot.
fn send_message(c: &mut Client, subject: &str) -> u16 {
    c.command("MAIL FROM:<alice@example.org>", 250);
    c.command("RCPT TO:<bob@example.org>", 250);
    c.command("DATA", 354);
    c.send(format!("Subject: {subject}\r\n\r\nhello\r\n.\r\n"))
        .expect("send");
    c.reply().expect("a reply to the message").code
}

/// Whether `condition` holds within 5 s (a log line follows the close it reports).
fn eventually(condition: impl FnMut() -> bool) -> bool {
    atacama_tests::eventually(Duration::from_secs(5), condition)
}

fn stored_count(server: &Server) -> usize {
    let run = server.cli(&["messages", "list", "--json"], None).success();
    let list: Value = serde_json::from_slice(&run.stdout).expect("JSON output");
    list.as_array().map_or(0, Vec::len)
}

// --- 5: before login ----------------------------------------------------------------------

fn preauth_noops_get_421_after_the_command_budget(binary: Binary) {
    let server = server_with(binary, Settings::default());
    let mut c = Client::connect(server.submission).expect("connect");
    c.expect(220);
    for _ in 0..20 {
        c.command("NOOP", 250);
    }
    let refusal = c.command("NOOP", 421);
    assert!(
        refusal.starts_with("4.7.0 mail.example.test Error: too many commands before"),
        "{refusal}"
    );
    assert!(c.closed_within(Duration::from_secs(5)));
    assert!(
        eventually(|| server.log().contains("outcome=preauth_limit")),
        "{}",
        server.log()
    );
}

fn preauth_a_session_that_never_logs_in_is_cut_at_the_preauth_timeout(binary: Binary) {
    let server = server_with(
        binary,
        Settings::default()
            .limit("preauth_timeout_secs", 2)
            .limit("preauth_commands", 1000),
    );
    let mut c = Client::connect(server.submission).expect("connect");
    c.expect(220);
    let started = Instant::now();
    // A NOOP every 300 ms restarts the command timer, never the time allowed without login.
    let refusal = loop {
        assert!(started.elapsed() < Duration::from_secs(10), "never cut");
        c.send("NOOP\r\n").expect("send");
        let reply = c.reply().expect("a reply");
        if reply.code != 250 {
            break reply;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    assert_eq!(refusal.code, 421, "{refusal:?}");
    assert!(refusal.lines[0].starts_with("4.7.0 "), "{refusal:?}");
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(1500), "cut after {took:?}");
    assert!(c.closed_within(Duration::from_secs(5)));
}

// --- 6: parallel guesses ------------------------------------------------------------------

fn parallel_wrong_passwords_are_checked_at_most_up_to_the_budget(binary: Binary) {
    // Cost 10: each check takes tens of milliseconds, so the 20 guesses are in flight at once.
    let server = server_with(binary, Settings::default().auth("bcrypt_cost", 10));
    let mut clients: Vec<Client> = (0..20)
        .map(|_| {
            let mut c =
                Client::connect_tls(server.submissions, &server.cert_pem()).expect("connect");
            c.expect(220);
            c.command("EHLO guesser.test", 250);
            c
        })
        .collect();
    for (n, c) in clients.iter_mut().enumerate() {
        c.send(format!(
            "AUTH PLAIN {}\r\n",
            plain("alice", &format!("guess{n}"))
        ))
        .expect("send");
    }
    let codes: Vec<u16> = clients
        .iter_mut()
        .map(|c| c.reply().expect("one reply per AUTH").code)
        .collect();
    let checked = codes.iter().filter(|&&code| code == 535).count();
    let refused = codes.iter().filter(|&&code| code == 454).count();
    assert_eq!(checked + refused, 20, "{codes:?}");
    assert!(checked <= 5, "{checked} guesses were checked: {codes:?}");
    // Every one was either checked or refused at once; none waited for a verifier.
    assert!(refused >= 15, "{codes:?}");
}

// --- 7: a login disabled or deleted mid-session -------------------------------------------

/// Sends MAIL until it is refused: the first MAIL after the change on redb; on PostgreSQL
/// the change reaches the daemon by a notification from the database, milliseconds after
/// the command line's commit, and a MAIL checked before it arrives still passes (and is
/// reset here). Returns the refusal and how many MAILs it took.
fn mail_until_refused(c: &mut Client) -> (String, usize) {
    let deadline = Instant::now() + Duration::from_secs(5);
    for tries in 1.. {
        c.send("MAIL FROM:<alice@example.org>\r\n").expect("send");
        let reply = c.reply().expect("a reply to MAIL");
        if reply.code != 250 {
            assert_eq!(reply.code, 421, "{reply:?}");
            return (reply.lines.into_iter().next().unwrap_or_default(), tries);
        }
        assert!(
            Instant::now() < deadline,
            "MAIL still accepted 5 s after the change"
        );
        c.command("RSET", 250);
        std::thread::sleep(Duration::from_millis(20));
    }
    unreachable!()
}

fn a_disabled_user_is_cut_at_the_next_mail(binary: Binary) {
    let server = server_with(binary, Settings::default());
    let mut c = logged_in(&server);
    assert_eq!(send_message(&mut c, "before"), 250);
    server.cli(&["user", "disable", "alice"], None).success();
    let (refusal, tries) = mail_until_refused(&mut c);
    assert_eq!(
        refusal,
        "4.7.0 mail.example.test Error: the login is no longer valid"
    );
    if store_of_this_test() == StoreKind::Redb {
        assert_eq!(tries, 1, "redb is read at every MAIL");
    }
    assert!(c.closed_within(Duration::from_secs(5)));
    assert_eq!(stored_count(&server), 1);
}

fn a_deleted_user_is_cut_at_the_next_mail(binary: Binary) {
    let server = server_with(binary, Settings::default());
    let mut c = logged_in(&server);
    // Known to the daemon before the change: on PostgreSQL, remembered.
    assert_eq!(send_message(&mut c, "before"), 250);
    server.cli(&["user", "del", "alice"], None).success();
    if store_of_this_test() == StoreKind::Redb {
        // Pipelined: the refused MAIL ends the session, RCPT and DATA are never read.
        c.send("MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n")
            .expect("send");
        assert_eq!(c.reply().expect("a reply").code, 421);
    } else {
        mail_until_refused(&mut c);
    }
    assert!(c.closed_within(Duration::from_secs(5)));
    assert_eq!(stored_count(&server), 1);
    assert!(
        eventually(|| server.log().contains("outcome=login_revoked")),
        "{}",
        server.log()
    );
}

// --- 8: DATA timing -----------------------------------------------------------------------

fn a_2_mib_message_sent_steadily_over_20_s_is_accepted(binary: Binary) {
    // The inactivity timeout is 10 s: before, it was a deadline for the whole message.
    let server = server_with(binary, Settings::default().limit("data_timeout_secs", 10));
    let mut c = logged_in(&server);
    c.command("MAIL FROM:<alice@example.org>", 250);
    c.command("RCPT TO:<bob@example.org>", 250);
    c.command("DATA", 354);
    c.send("Subject: steady\r\n\r\n").expect("send");
    let line = format!("{}\r\n", "x".repeat(1022));
    let started = Instant::now();
    // 105 lines of 1 KiB a second, in five writes: 2 100 KiB (over 2 MiB) in 20 s.
    for second in 1..=20u32 {
        for _ in 0..5 {
            c.send(line.repeat(21)).expect("send");
        }
        let next = started + Duration::from_secs(u64::from(second));
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    c.send(".\r\n").expect("send");
    assert_eq!(c.reply().expect("a reply").code, 250);
    assert!(started.elapsed() >= Duration::from_secs(20));
    assert_eq!(stored_count(&server), 1);
}

fn a_client_trickling_a_byte_a_second_is_cut_with_421_4_4_2(binary: Binary) {
    let server = server_with(
        binary,
        Settings::default().limit("min_data_rate_grace_secs", 2),
    );
    let mut c = logged_in(&server);
    c.command("MAIL FROM:<alice@example.org>", 250);
    c.command("RCPT TO:<bob@example.org>", 250);
    c.command("DATA", 354);
    let started = Instant::now();
    let mut got = Vec::new();
    while started.elapsed() < Duration::from_secs(10) {
        if c.send("x").is_err() {
            break;
        }
        got.extend(c.read_for(Duration::from_secs(1)).unwrap_or_default());
        if got.windows(2).any(|w| w == b"\r\n") {
            break;
        }
    }
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.starts_with("421 4.4.2 mail.example.test Error: message data arrived too slowly"),
        "{text:?} after {:?}",
        started.elapsed()
    );
    assert!(c.closed_within(Duration::from_secs(5)));
    assert_eq!(stored_count(&server), 0);
}

// --- 2: the free-space floor --------------------------------------------------------------

fn mail_below_the_free_space_floor_gets_452_before_any_byte_is_written(binary: Binary) {
    // A floor no filesystem here reaches: 1 TiB.
    let server = server_with(
        binary,
        Settings::default().limit("min_free_space_mb", 1 << 20),
    );
    let mut c = logged_in(&server);
    c.send("MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n")
        .expect("send");
    let reply = c.reply().expect("a reply");
    assert_eq!(
        (reply.code, reply.lines[0].as_str()),
        (
            452,
            "4.3.1 Error: insufficient system storage, try again later"
        )
    );
    // Neither RCPT nor DATA started a transaction: no 354, no message.
    assert_eq!(c.reply().expect("RCPT's reply").code, 503);
    assert_eq!(c.reply().expect("DATA's reply").code, 503);
    c.command("NOOP", 250);
    assert_eq!(stored_count(&server), 0);
    assert_eq!(
        server.log().matches("under the floor").count(),
        1,
        "logged once, not per MAIL: {}",
        server.log()
    );
}

// --- 4: IPv6 clients by prefix ------------------------------------------------------------

fn ipv6_clients_are_capped_per_prefix(binary: Binary) {
    let server = server_with(
        binary,
        Settings::default()
            .ipv6()
            .limit("max_connections_per_ip", 2)
            .limit("ipv6_prefix", 48),
    );
    let mut held: Vec<Client> = (0..2)
        .map(|_| {
            let mut c = Client::connect(server.submission).expect("connect");
            c.expect(220);
            c
        })
        .collect();
    let mut third = Client::connect(server.submission).expect("connect");
    let refusal = third.expect(421);
    assert_eq!(
        refusal,
        "4.7.0 mail.example.test Error: too many connections from ::1"
    );
    assert!(third.closed_within(Duration::from_secs(5)));
    held[0].command("NOOP", 250);
    drop(held.remove(0));
    // Its place is free once the server has seen the close.
    let started = Instant::now();
    loop {
        let mut again = Client::connect(server.submission).expect("connect");
        match again.reply() {
            Ok(reply) if reply.code == 220 => break,
            other => assert!(
                started.elapsed() < Duration::from_secs(5),
                "never admitted again: {other:?}"
            ),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

// --- 14: numbers with a range --------------------------------------------------------------

fn a_timeout_that_would_overflow_the_clock_is_refused_naming_the_key(binary: Binary) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let config = dir.path().join("atacama.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\n[limits]\ncommand_timeout_secs = 18446744073709551615\n",
            dir.path().join("data").display().to_string()
        ),
    )
    .expect("write config");
    let run = binary.run(
        ["--config".as_ref(), config.as_os_str(), "serve".as_ref()],
        None,
    );
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stderr.contains(
            "config key limits.command_timeout_secs: must be between 1 and 86400, \
             not 18446744073709551615"
        ),
        "{}",
        run.stderr
    );
}

atacama_tests::end_to_end!(
    preauth_noops_get_421_after_the_command_budget,
    preauth_a_session_that_never_logs_in_is_cut_at_the_preauth_timeout,
    parallel_wrong_passwords_are_checked_at_most_up_to_the_budget,
    a_disabled_user_is_cut_at_the_next_mail,
    a_deleted_user_is_cut_at_the_next_mail,
    a_2_mib_message_sent_steadily_over_20_s_is_accepted,
    a_client_trickling_a_byte_a_second_is_cut_with_421_4_4_2,
    ipv6_clients_are_capped_per_prefix;
    redb_only:
    // The floor is on the data directory's file system, where only redb writes.
    mail_below_the_free_space_floor_gets_452_before_any_byte_is_written,
    // A config refused before any store is opened.
    a_timeout_that_would_overflow_the_clock_is_refused_naming_the_key,
);
