//! Greeting, EHLO/HELO, simple commands, line limits, bad commands, timeouts, shutdown.

use std::time::Duration;

use atacama_core::smtp::SessionConfig;
use atacama_core::testing::{Harness, test_config};

#[test]
fn greeting_names_the_host() {
    let mut h = Harness::new(test_config(), atacama_core::smtp::Channel::Plain);
    h.expect_line("220 mx.test ESMTP");
    h.expect_idle();
}

#[test]
fn ehlo_on_plaintext_offers_starttls_not_auth() {
    let mut h = Harness::submission();
    let lines = h.ehlo();
    assert_eq!(
        lines,
        [
            "mx.test",
            "PIPELINING",
            "SIZE 26214400",
            "8BITMIME",
            "ENHANCEDSTATUSCODES",
            "SMTPUTF8",
            "STARTTLS"
        ]
    );
}

#[test]
fn ehlo_on_tls_offers_auth_not_starttls() {
    let mut h = Harness::implicit();
    let lines = h.ehlo();
    assert_eq!(
        lines,
        [
            "mx.test",
            "PIPELINING",
            "SIZE 26214400",
            "8BITMIME",
            "ENHANCEDSTATUSCODES",
            "SMTPUTF8",
            "AUTH PLAIN LOGIN"
        ]
    );
}

#[test]
fn ehlo_on_plaintext_offers_auth_when_tls_not_required() {
    let mut h = Harness::submission_with(SessionConfig {
        require_tls: false,
        ..test_config()
    });
    let lines = h.ehlo();
    assert!(lines.contains(&"STARTTLS".to_string()));
    assert!(lines.contains(&"AUTH PLAIN LOGIN".to_string()));
}

#[test]
fn helo_gets_one_line() {
    let mut h = Harness::submission();
    h.client("HELO client.test\r\n");
    h.expect_line("250 mx.test");
    h.expect_idle();
}

#[test]
fn e13_bad_helo_names_are_refused() {
    let mut h = Harness::submission();
    for name in ["a(b", "x;y", "caf\u{e9}", &"a".repeat(256)] {
        h.client(format!("EHLO {name}\r\n"));
        h.expect_line("501 5.5.2 Error: invalid HELO/EHLO name");
    }
    h.client("EHLO\r\n");
    h.expect_line("501 5.5.4 Syntax: EHLO hostname");
    h.client("EHLO ok.test\r\n");
    h.expect_reply(250);
}

#[test]
fn noop_rset_help_vrfy() {
    let mut h = Harness::implicit();
    h.client("NOOP\r\nNOOP hello\r\nRSET\r\nHELP\r\nVRFY bob\r\nEXPN list\r\n");
    h.expect_line("250 2.0.0 Ok");
    h.expect_line("250 2.0.0 Ok");
    h.expect_line("250 2.0.0 Ok");
    h.expect_line("214 2.0.0 See RFC 5321 and RFC 6409");
    h.expect_line("252 2.5.0 Cannot VRFY user, but will accept message and attempt delivery");
    h.expect_line("252 2.5.0 Cannot VRFY user, but will accept message and attempt delivery");
    h.expect_idle();
}

#[test]
fn l10_vrfy_never_reveals_users() {
    let mut h = Harness::implicit();
    h.client("VRFY alice\r\nVRFY nobody-at-all\r\n");
    let a = h.expect_reply(252);
    let b = h.expect_reply(252);
    assert_eq!(a, b);
}

#[test]
fn quit_says_bye_and_closes() {
    let mut h = Harness::submission();
    h.client("QUIT\r\n");
    h.expect_line("221 2.0.0 mx.test Bye");
    h.expect_close();
}

#[test]
fn commands_are_case_insensitive_and_bare_lf_is_accepted() {
    let mut h = Harness::submission();
    h.client("noop\nNoOp\r\n");
    h.expect_line("250 2.0.0 Ok");
    h.expect_line("250 2.0.0 Ok");
}

#[test]
fn l8_unknown_command_then_session_goes_on() {
    let mut h = Harness::submission();
    h.client("FOO bar\r\nNOOP\r\n");
    h.expect_line("500 5.5.2 Error: command not recognized");
    h.expect_line("250 2.0.0 Ok");
}

#[test]
fn l8_ten_bad_commands_close_the_session() {
    let mut h = Harness::submission();
    for _ in 0..9 {
        h.client("FOO\r\n");
        h.expect_reply(500);
    }
    h.client("FOO\r\n");
    h.expect_line("421 4.7.0 mx.test Error: too many errors");
    h.expect_close();
}

#[test]
fn syntax_errors_count_as_bad_commands() {
    let mut h = Harness::implicit_with(SessionConfig {
        max_bad_commands: 3,
        ..test_config()
    });
    h.client("DATA x\r\nSTARTTLS now\r\n");
    h.expect_line("501 5.5.4 Syntax: DATA");
    h.expect_line("501 5.5.4 Syntax: STARTTLS");
    h.client("RSET x\r\n");
    h.expect_reply(421);
    h.expect_close();
}

#[test]
fn l1_long_command_line_is_refused_and_discarded() {
    let mut h = Harness::submission();
    let long = format!("NOOP {}\r\nNOOP\r\n", "x".repeat(600));
    h.client(long);
    h.expect_line("500 5.5.6 Error: line too long");
    h.expect_line("250 2.0.0 Ok");
    h.expect_idle();
}

#[test]
fn l1_line_of_exactly_512_octets_is_accepted() {
    let mut h = Harness::submission();
    let line = format!("NOOP {}\r\n", "x".repeat(512 - 7));
    assert_eq!(line.len(), 512);
    h.client(line);
    h.expect_line("250 2.0.0 Ok");
    h.client(format!("NOOP {}\r\n", "x".repeat(512 - 6)));
    h.expect_reply(500);
}

#[test]
fn l2_endless_line_never_grows_the_buffer() {
    let mut h = Harness::submission();
    let chunk = vec![b'x'; 64 * 1024];
    for _ in 0..32 {
        h.client(&chunk);
        assert!(h.session.buffered() <= 512);
    }
    h.expect_line("500 5.5.6 Error: line too long");
    h.client("\r\nNOOP\r\n");
    h.expect_line("250 2.0.0 Ok");
}

#[test]
fn l6_nul_in_a_command_is_refused() {
    let mut h = Harness::implicit();
    h.client("NOOP\0x\r\n");
    h.expect_line("500 5.5.2 Error: command not recognized");
    h.client("EHLO client.test\r\n");
    h.expect_reply(250);
}

#[test]
fn l7_invalid_utf8_in_a_command() {
    let mut h = Harness::implicit();
    h.client(b"NOOP \xff\xfe\r\n");
    h.expect_line("501 5.5.2 Error: command is not valid UTF-8");
}

#[test]
fn l9_http_and_header_lines_close_at_once() {
    for line in [
        "GET / HTTP/1.1\r\n",
        "POST /x HTTP/1.1\r\n",
        "CONNECT a:25 HTTP/1.1\r\n",
        "Subject: x\r\n",
    ] {
        let mut h = Harness::submission();
        h.client(line);
        h.expect_line(
            "421 4.7.0 mx.test Error: this is an SMTP server, not a web or header stream",
        );
        h.expect_close();
    }
}

#[test]
fn r1_idle_client_times_out() {
    // Logged in, so that only the command timeout applies (before a login, the preauth
    // limit comes first: see the `preauth_*` tests).
    let mut h = Harness::authenticated();
    assert_eq!(
        h.session.poll_timeout(),
        Some(h.now + Duration::from_secs(300))
    );
    h.advance(Duration::from_secs(299));
    h.expect_idle();
    h.advance(Duration::from_secs(1));
    h.expect_line("421 4.4.2 mx.test Error: timeout exceeded");
    h.expect_close();
}

#[test]
fn r2_trickling_a_command_does_not_extend_the_deadline() {
    let mut h = Harness::authenticated();
    for _ in 0..4 {
        h.advance(Duration::from_secs(70));
        h.client("N");
    }
    h.advance(Duration::from_secs(20));
    h.expect_line("421 4.4.2 mx.test Error: timeout exceeded");
    h.expect_close();
}

#[test]
fn each_command_restarts_the_command_timer() {
    let mut h = Harness::authenticated();
    h.advance(Duration::from_secs(200));
    h.client("NOOP\r\n");
    h.expect_reply(250);
    h.advance(Duration::from_secs(200));
    h.expect_idle();
    h.advance(Duration::from_secs(100));
    h.expect_reply(421);
}

#[test]
fn early_timeout_call_is_harmless() {
    let mut h = Harness::submission();
    h.advance(Duration::from_secs(1));
    h.advance(Duration::from_secs(0));
    h.expect_idle();
}

#[test]
fn shutdown_closes_an_idle_session() {
    let mut h = Harness::submission();
    h.shutdown();
    h.expect_line("421 4.3.0 mx.test Service shutting down");
    h.expect_close();
}

#[test]
fn shutdown_lets_a_transaction_finish() {
    let mut h = Harness::authenticated();
    h.client("MAIL FROM:<alice@example.org>\r\n");
    h.expect_reply(250);
    h.shutdown();
    h.expect_idle();
    h.client("RCPT TO:<bob@example.org>\r\nDATA\r\n");
    h.expect_reply(250);
    h.expect_reply(354);
    h.client("hi\r\n.\r\n");
    h.expect_delivery();
    h.complete_delivery(Ok(7));
    h.expect_line("250 2.0.0 Ok: queued as 7");
    h.expect_line("421 4.3.0 mx.test Service shutting down");
    h.expect_close();
}

#[test]
fn peer_close_after_pipelined_commands_answers_them_first() {
    let mut h = Harness::submission();
    h.session.receive(h.now, b"NOOP\r\n");
    h.peer_closed();
    h.expect_line("250 2.0.0 Ok");
    h.expect_close();
}

#[test]
fn nothing_is_emitted_after_close() {
    let mut h = Harness::submission();
    h.client("QUIT\r\nNOOP\r\n");
    h.expect_reply(221);
    h.expect_close();
    h.client("NOOP\r\n");
    h.advance(Duration::from_secs(1000));
    assert_eq!(h.session.poll_event(), None);
    assert_eq!(h.session.poll_timeout(), None);
    assert_eq!(h.session.read_capacity(), 0);
}

#[test]
fn completions_without_a_request_are_refused() {
    use atacama_core::smtp::{AuthOutcome, MessageId, NotPending};
    let mut h = Harness::submission();
    let now = h.now;
    assert_eq!(
        h.session.auth_result(now, AuthOutcome::Accepted),
        Err(NotPending)
    );
    assert_eq!(
        h.session.delivery_result(now, Ok(MessageId(1))),
        Err(NotPending)
    );
    assert_eq!(
        h.session
            .tls_established(now, atacama_core::testing::tls_info()),
        Err(NotPending)
    );
    h.client("NOOP\r\n");
    h.expect_reply(250);
}

#[test]
fn close_reasons_name_why_the_session_ended() {
    use atacama_core::smtp::CloseReason;
    let mut h = Harness::submission();
    h.client("QUIT\r\n");
    assert_eq!(h.session.close_reason(), Some(CloseReason::Quit));
    let mut h = Harness::authenticated();
    h.advance(Duration::from_secs(300));
    assert_eq!(h.session.close_reason(), Some(CloseReason::Timeout));
    let mut h = Harness::submission();
    h.advance(Duration::from_secs(60));
    assert_eq!(h.session.close_reason(), Some(CloseReason::PreauthLimit));
    let mut h = Harness::submission();
    h.shutdown();
    assert_eq!(h.session.close_reason(), Some(CloseReason::Shutdown));
    let mut h = Harness::submission();
    h.client("GET / HTTP/1.1\r\n");
    assert_eq!(
        h.session.close_reason(),
        Some(CloseReason::ForbiddenCommand)
    );
    let mut h = Harness::submission();
    h.peer_closed();
    assert_eq!(h.session.close_reason(), Some(CloseReason::PeerClosed));
    let h = Harness::submission();
    assert_eq!(h.session.close_reason(), None);
}

// --- Before login (issue 24 item 5) -------------------------------------------------------

#[test]
fn preauth_a_session_gets_twenty_commands_before_login_then_421() {
    let mut h = Harness::submission();
    for _ in 0..20 {
        h.client("NOOP\r\n");
        h.expect_reply(250);
    }
    h.client("NOOP\r\n");
    h.expect_line("421 4.7.0 mx.test Error: too many commands before authentication");
    h.expect_close();
}

#[test]
fn preauth_bad_and_overlong_lines_count_as_commands() {
    let mut h = Harness::submission_with(SessionConfig {
        preauth_commands: 3,
        max_bad_commands: 100,
        ..test_config()
    });
    h.client("FOO\r\n");
    h.expect_reply(500);
    h.client(format!("NOOP {}\r\n", "x".repeat(600)));
    h.expect_reply(500);
    h.client("NOOP\r\n");
    h.expect_reply(250);
    h.client("NOOP\r\n");
    h.expect_reply(421);
    h.expect_close();
}

#[test]
fn preauth_pipelined_commands_past_the_budget_are_not_answered() {
    let mut h = Harness::submission_with(SessionConfig {
        preauth_commands: 2,
        ..test_config()
    });
    h.client("NOOP\r\nNOOP\r\nNOOP\r\nNOOP\r\n");
    h.expect_reply(250);
    h.expect_reply(250);
    h.expect_line("421 4.7.0 mx.test Error: too many commands before authentication");
    h.expect_close();
}

#[test]
fn preauth_a_login_lifts_the_command_budget() {
    let mut h = Harness::implicit_with(SessionConfig {
        preauth_commands: 3,
        ..test_config()
    });
    h.ehlo();
    h.client("NOOP\r\n");
    h.expect_reply(250);
    h.login("alice", "s3cret"); // the third command
    for _ in 0..30 {
        h.client("NOOP\r\n");
        h.expect_reply(250);
    }
}

#[test]
fn preauth_noops_do_not_keep_a_session_alive_past_the_preauth_timeout() {
    let mut h = Harness::submission_with(SessionConfig {
        preauth_commands: 1000,
        ..test_config()
    });
    assert_eq!(
        h.session.poll_timeout(),
        Some(h.now + Duration::from_secs(60))
    );
    for _ in 0..5 {
        h.advance(Duration::from_secs(11));
        h.client("NOOP\r\n");
        h.expect_reply(250);
    }
    h.advance(Duration::from_secs(4));
    h.expect_idle();
    h.advance(Duration::from_secs(1));
    h.expect_line("421 4.7.0 mx.test Error: too long without authentication");
    h.expect_close();
}

#[test]
fn preauth_the_timeout_ends_with_the_login() {
    let mut h = Harness::authenticated();
    h.advance(Duration::from_secs(250));
    h.client("NOOP\r\n");
    h.expect_reply(250);
    assert_eq!(
        h.session.poll_timeout(),
        Some(h.now + Duration::from_secs(300))
    );
}

#[test]
fn preauth_a_failed_login_does_not_lift_the_limits() {
    let mut h = Harness::implicit_with(SessionConfig {
        preauth_commands: 2,
        ..test_config()
    });
    h.ehlo();
    h.client(format!(
        "AUTH PLAIN {}\r\n",
        atacama_core::testing::plain("alice", "no")
    ));
    h.expect_auth();
    h.complete_auth(atacama_core::smtp::AuthOutcome::Rejected);
    h.expect_reply(535);
    h.client("NOOP\r\n");
    h.expect_reply(421);
    h.expect_close();
}

#[test]
fn a_huge_configured_timeout_does_not_overflow_the_clock() {
    // Issue 24 item 14: `now + u64::MAX seconds` panicked every smol connection.
    let mut h = Harness::submission_with(SessionConfig {
        command_timeout: Duration::MAX,
        preauth_timeout: Duration::MAX,
        data_timeout: Duration::MAX,
        data_rate_grace: Duration::MAX,
        ..test_config()
    });
    h.client("NOOP\r\n");
    h.expect_reply(250);
    assert!(h.session.poll_timeout().is_some_and(|at| at > h.now));
    h.advance(Duration::from_secs(3600));
    h.expect_idle();
}
