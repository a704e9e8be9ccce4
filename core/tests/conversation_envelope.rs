//! MAIL FROM and RCPT TO (RFC 5321 §3.3, RFC 6409, RFC 1870, RFC 6531). Cases E1–E11.

use atacama_core::smtp::{CloseReason, MailVerdict, SessionConfig};
use atacama_core::testing::{Harness, test_config};

#[test]
fn e1_mail_before_auth() {
    let mut h = Harness::implicit();
    h.ehlo();
    h.client("MAIL FROM:<alice@example.org>\r\n");
    h.expect_line("530 5.7.0 Authentication required");
}

#[test]
fn mail_before_ehlo() {
    let mut h = Harness::implicit();
    h.client("MAIL FROM:<alice@example.org>\r\n");
    h.expect_line("503 5.5.1 Error: send HELO/EHLO first");
}

#[test]
fn e2_sender_must_be_the_login() {
    let mut h = Harness::authenticated();
    h.client("MAIL FROM:<bob@example.org>\r\n");
    h.expect_line("553 5.7.1 <bob@example.org>: Sender address rejected: not owned by user alice");
    h.client("MAIL FROM:<Alice@example.org>\r\n");
    h.expect_line("250 2.1.0 Ok");
}

#[test]
fn e2_login_with_a_domain_owns_exactly_that_address() {
    let mut h = Harness::implicit();
    h.ehlo();
    h.login("alice@example.org", "pw");
    h.client("MAIL FROM:<alice@example.net>\r\n");
    h.expect_reply(553);
    h.client("MAIL FROM:<alice@EXAMPLE.org>\r\n");
    h.expect_reply(250);
}

#[test]
fn e2_sender_check_can_be_turned_off() {
    let mut h = Harness::authenticated_with(SessionConfig {
        sender_must_match_user: false,
        ..test_config()
    });
    h.client("MAIL FROM:<bob@example.org>\r\n");
    h.expect_reply(250);
}

#[test]
fn e3_null_sender_is_not_owned_by_anyone() {
    let mut h = Harness::authenticated();
    h.client("MAIL FROM:<>\r\n");
    h.expect_line("553 5.7.1 <>: Sender address rejected: not owned by user alice");
    let mut h = Harness::authenticated_with(SessionConfig {
        sender_must_match_user: false,
        ..test_config()
    });
    h.client("MAIL FROM:<>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n.\r\n");
    h.expect_reply(250);
    h.expect_reply(250);
    h.expect_reply(354);
    assert_eq!(h.expect_delivery().mail_from, "");
}

#[test]
fn e4_recipient_limit() {
    let mut h = Harness::authenticated_with(SessionConfig {
        max_recipients: 100,
        ..test_config()
    });
    h.client("MAIL FROM:<alice@example.org>\r\n");
    h.expect_reply(250);
    for i in 0..100 {
        h.client(format!("RCPT TO:<r{i}@example.org>\r\n"));
        h.expect_line("250 2.1.5 Ok");
    }
    h.client("RCPT TO:<r100@example.org>\r\n");
    h.expect_line("452 4.5.3 Error: too many recipients");
    h.client("DATA\r\nx\r\n.\r\n");
    h.expect_reply(354);
    assert_eq!(h.expect_delivery().rcpt_to.len(), 100);
}

#[test]
fn e5_sequence_errors() {
    let mut h = Harness::authenticated();
    h.client("RCPT TO:<bob@example.org>\r\n");
    h.expect_line("503 5.5.1 Error: need MAIL command");
    h.client("DATA\r\n");
    h.expect_line("503 5.5.1 Error: need MAIL command");
    h.client("MAIL FROM:<alice@example.org>\r\n");
    h.expect_reply(250);
    h.client("DATA\r\n");
    h.expect_line("503 5.5.1 Error: need RCPT command");
    h.client("MAIL FROM:<alice@example.org>\r\n");
    h.expect_line("503 5.5.1 Error: nested MAIL command");
}

#[test]
fn rset_and_ehlo_end_the_transaction() {
    let mut h = Harness::authenticated();
    h.client("MAIL FROM:<alice@example.org>\r\nRSET\r\nRCPT TO:<bob@example.org>\r\n");
    h.expect_reply(250);
    h.expect_line("250 2.0.0 Ok");
    h.expect_line("503 5.5.1 Error: need MAIL command");
    h.client("MAIL FROM:<alice@example.org>\r\nEHLO again.test\r\nRCPT TO:<bob@example.org>\r\n");
    h.expect_reply(250);
    h.expect_reply(250);
    h.expect_reply(503);
    assert_eq!(h.session.user(), Some("alice"), "EHLO does not log out");
}

#[test]
fn e6_declared_size_over_the_limit() {
    let mut h = Harness::authenticated_with(SessionConfig {
        max_message_size: 1000,
        ..test_config()
    });
    h.client("MAIL FROM:<alice@example.org> SIZE=1001\r\n");
    h.expect_line("552 5.3.4 Message size exceeds fixed maximum message size");
    h.client("MAIL FROM:<alice@example.org> SIZE=1000\r\n");
    h.expect_reply(250);
}

#[test]
fn e8_bad_parameter_values() {
    let mut h = Harness::authenticated();
    for (params, what) in [
        ("SIZE=abc", "SIZE"),
        ("SIZE=-1", "SIZE"),
        ("SIZE=99999999999999999999", "SIZE"),
        ("BODY=9BIT", "BODY"),
        ("SIZE=1 SIZE=2", "SIZE"),
    ] {
        h.client(format!("MAIL FROM:<alice@example.org> {params}\r\n"));
        h.expect_line(&format!("501 5.5.4 Error: bad {what} parameter"));
    }
}

#[test]
fn e9_unknown_parameters() {
    let mut h = Harness::authenticated();
    h.client("MAIL FROM:<alice@example.org> RET=FULL\r\nMAIL FROM:<alice@example.org> FOO=bar\r\n");
    h.expect_line("555 5.5.4 MAIL FROM/RCPT TO parameters not recognized or not implemented");
    h.expect_reply(555);
    h.client("MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@example.org> NOTIFY=NEVER\r\n");
    h.expect_reply(250);
    h.expect_reply(555);
}

#[test]
fn known_parameters_are_accepted() {
    let mut h = Harness::authenticated();
    h.client("MAIL FROM:<alice@example.org> SIZE=100 BODY=8BITMIME SMTPUTF8\r\n");
    h.expect_line("250 2.1.0 Ok");
}

#[test]
fn e10_bad_and_overlong_paths() {
    let mut h = Harness::authenticated();
    let long_local = "a".repeat(65);
    let long_domain = format!("{}.test", "d".repeat(252));
    for path in [
        "alice@example.org".to_string(),
        "<alice example.org>".to_string(),
        "<alice@example.org".to_string(),
        format!("<{long_local}@example.org>"),
        format!("<alice@{long_domain}>"),
    ] {
        h.client(format!("MAIL FROM:{path}\r\n"));
        h.expect_line("501 5.1.7 Error: bad sender address syntax");
    }
    h.client("MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob>\r\nRCPT TO:bob@example.org\r\n");
    h.expect_reply(250);
    h.expect_line("501 5.1.3 Error: bad recipient address syntax");
    h.expect_line("501 5.1.3 Error: bad recipient address syntax");
}

#[test]
fn postmaster_and_quoted_recipients() {
    let mut h = Harness::authenticated();
    h.client("MAIL FROM:<alice@example.org>\r\nRCPT TO:<Postmaster>\r\nRCPT TO:<\"b o b\"@example.org>\r\nDATA\r\n.\r\n");
    h.expect_reply(250);
    h.expect_reply(250);
    h.expect_reply(250);
    h.expect_reply(354);
    assert_eq!(
        h.expect_delivery().rcpt_to,
        ["Postmaster", "\"b o b\"@example.org"]
    );
}

#[test]
fn e11_utf8_addresses_need_smtputf8() {
    let mut h = Harness::implicit();
    h.ehlo();
    h.login("jürgen", "pw");
    h.client("MAIL FROM:<jürgen@example.org>\r\n");
    h.expect_line("553 5.6.7 Non-ASCII addresses require SMTPUTF8");
    h.client("MAIL FROM:<jürgen@example.org> SMTPUTF8\r\n");
    h.expect_reply(250);
    h.client("RCPT TO:<bjørn@exämple.org>\r\n");
    h.expect_reply(250);
    let mut h = Harness::authenticated();
    h.client("MAIL FROM:<alice@example.org>\r\nRCPT TO:<bjørn@example.org>\r\n");
    h.expect_reply(250);
    h.expect_line("553 5.6.7 Non-ASCII addresses require SMTPUTF8");
}

#[test]
fn e12_too_many_messages_in_one_session() {
    let mut h = Harness::authenticated_with(SessionConfig {
        max_messages_per_session: 2,
        ..test_config()
    });
    for id in 1..=2 {
        h.client("MAIL FROM:<alice@example.org>\r\nRCPT TO:<b@example.org>\r\nDATA\r\nx\r\n.\r\n");
        h.expect_reply(250);
        h.expect_reply(250);
        h.expect_reply(354);
        h.expect_delivery();
        h.complete_delivery(Ok(id));
        h.expect_reply(250);
    }
    h.client("MAIL FROM:<alice@example.org>\r\n");
    h.expect_line("452 4.4.5 Error: too many messages in this session, reconnect");
    h.client("QUIT\r\n");
    h.expect_reply(221);
}

// --- The MAIL check (issue 24 items 2 and 7) ------------------------------------------------

/// A logged-in session whose MAIL checks wait for the test's verdict.
fn checked_by_hand() -> Harness {
    let mut h = Harness::authenticated();
    h.mail_verdict = None;
    h
}

#[test]
fn mail_waits_for_its_check_and_pipelined_commands_wait_behind_it() {
    let mut h = checked_by_hand();
    h.client("MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n");
    let check = h.expect_mail_check();
    assert_eq!(check.user, "alice");
    assert_eq!(
        h.session.poll_timeout(),
        None,
        "no timeout while the runtime checks"
    );
    h.expect_idle();
    h.complete_mail_check(MailVerdict::Accepted);
    h.expect_line("250 2.1.0 Ok");
    h.expect_line("250 2.1.5 Ok");
    h.expect_line("354 End data with <CR><LF>.<CR><LF>");
}

#[test]
fn mail_from_a_login_disabled_since_auth_gets_421_and_the_session_closes() {
    let mut h = checked_by_hand();
    h.client("MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@example.org>\r\n");
    h.expect_mail_check();
    h.complete_mail_check(MailVerdict::LoginRevoked);
    h.expect_line("421 4.7.0 mx.test Error: the login is no longer valid");
    h.expect_close();
    assert_eq!(h.session.close_reason(), Some(CloseReason::LoginRevoked));
}

#[test]
fn mail_below_the_free_space_floor_gets_452_and_the_session_goes_on() {
    let mut h = checked_by_hand();
    h.client("MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@example.org>\r\n");
    h.expect_mail_check();
    h.complete_mail_check(MailVerdict::InsufficientStorage);
    h.expect_line("452 4.3.1 Error: insufficient system storage, try again later");
    // No transaction started: the pipelined RCPT is out of sequence.
    h.expect_line("503 5.5.1 Error: need MAIL command");
    h.client("MAIL FROM:<alice@example.org>\r\n");
    h.expect_mail_check();
    h.complete_mail_check(MailVerdict::Accepted);
    h.expect_line("250 2.1.0 Ok");
}

#[test]
fn mail_whose_check_fails_gets_451_and_the_session_goes_on() {
    let mut h = checked_by_hand();
    h.client("MAIL FROM:<alice@example.org>\r\n");
    h.expect_mail_check();
    h.complete_mail_check(MailVerdict::Unavailable);
    h.expect_reply(451);
    h.client("NOOP\r\n");
    h.expect_reply(250);
}

#[test]
fn mail_refused_by_policy_is_not_checked() {
    let mut h = checked_by_hand();
    h.client("MAIL FROM:<bob@example.org>\r\n");
    h.expect_reply(553);
    h.expect_idle();
}

#[test]
fn a_mail_check_nobody_asked_for_is_refused() {
    let mut h = Harness::authenticated();
    assert!(
        h.session
            .mail_checked(h.now, MailVerdict::Accepted)
            .is_err()
    );
    h.expect_idle();
}
