//! AUTH PLAIN and LOGIN (RFC 4954). Cases A2–A16 of SECURITY-CASES.md.

use atacama_core::sasl::encode;
use atacama_core::smtp::{AuthOutcome, Mechanism, SessionConfig};
use atacama_core::testing::{Harness, plain, test_config};

fn greeted() -> Harness {
    let mut h = Harness::implicit();
    h.ehlo();
    h
}

#[test]
fn plain_with_initial_response() {
    let mut h = greeted();
    h.client(format!("AUTH PLAIN {}\r\n", plain("alice", "s3cret")));
    let request = h.expect_auth();
    assert_eq!(
        (
            request.mechanism,
            request.username.as_str(),
            request.password.expose()
        ),
        (Mechanism::Plain, "alice", "s3cret")
    );
    let shown = format!("{request:?}");
    assert!(
        !shown.contains("s3cret") && shown.contains("alice"),
        "{shown}"
    );
    h.complete_auth(AuthOutcome::Accepted);
    h.expect_line("235 2.7.0 Authentication successful");
    assert_eq!(h.session.user(), Some("alice"));
}

#[test]
fn plain_with_continuation() {
    let mut h = greeted();
    h.client("AUTH PLAIN\r\n");
    h.expect_line("334 ");
    h.client(format!("{}\r\n", plain("alice", "s3cret")));
    assert_eq!(h.expect_auth().username, "alice");
    h.complete_auth(AuthOutcome::Accepted);
    h.expect_reply(235);
}

#[test]
fn login_with_prompts() {
    let mut h = greeted();
    h.client("AUTH LOGIN\r\n");
    h.expect_line("334 VXNlcm5hbWU6");
    h.client(format!("{}\r\n", encode(b"alice")));
    h.expect_line("334 UGFzc3dvcmQ6");
    h.client(format!("{}\r\n", encode(b"s3cret")));
    let request = h.expect_auth();
    assert_eq!(
        (
            request.mechanism,
            request.username.as_str(),
            request.password.expose()
        ),
        (Mechanism::Login, "alice", "s3cret")
    );
    h.complete_auth(AuthOutcome::Accepted);
    h.expect_reply(235);
}

#[test]
fn login_with_initial_response_is_the_user_name() {
    let mut h = greeted();
    h.client(format!("AUTH LOGIN {}\r\n", encode(b"alice")));
    h.expect_line("334 UGFzc3dvcmQ6");
    h.client(format!("{}\r\n", encode(b"pw")));
    assert_eq!(h.expect_auth().username, "alice");
}

#[test]
fn wrong_password_is_535_and_the_session_goes_on() {
    let mut h = greeted();
    h.client(format!("AUTH PLAIN {}\r\n", plain("alice", "wrong")));
    h.expect_auth();
    h.complete_auth(AuthOutcome::Rejected);
    h.expect_line("535 5.7.8 Authentication credentials invalid");
    h.client("NOOP\r\n");
    h.expect_reply(250);
    assert_eq!(h.session.user(), None);
}

#[test]
fn temporary_failure_is_454() {
    let mut h = greeted();
    h.client(format!("AUTH PLAIN {}\r\n", plain("alice", "x")));
    h.expect_auth();
    h.complete_auth(AuthOutcome::TemporaryFailure);
    h.expect_line("454 4.7.0 Temporary authentication failure");
}

#[test]
fn a2_auth_before_ehlo() {
    let mut h = Harness::implicit();
    h.client(format!("AUTH PLAIN {}\r\n", plain("alice", "x")));
    h.expect_line("503 5.5.1 Error: send HELO/EHLO first");
}

#[test]
fn a3_auth_after_success() {
    let mut h = Harness::authenticated();
    h.client(format!("AUTH PLAIN {}\r\n", plain("alice", "x")));
    h.expect_line("503 5.5.1 Error: already authenticated");
}

#[test]
fn a4_auth_inside_a_transaction() {
    // Only reachable when authenticated; the "already authenticated" check comes first.
    let mut h = Harness::authenticated();
    h.client("MAIL FROM:<alice@example.org>\r\nAUTH LOGIN\r\n");
    h.expect_reply(250);
    h.expect_reply(503);
}

#[test]
fn a5_unknown_mechanisms_and_lower_case_names() {
    let mut h = greeted();
    for mech in ["CRAM-MD5", "SCRAM-SHA-256", "XOAUTH2"] {
        h.client(format!("AUTH {mech}\r\n"));
        h.expect_line("504 5.5.4 Unrecognized authentication type");
    }
    h.client(format!("auth plain {}\r\n", plain("alice", "x")));
    assert_eq!(h.expect_auth().mechanism, Mechanism::Plain);
}

#[test]
fn a6_invalid_base64_in_initial_response_and_continuation() {
    let mut h = greeted();
    for bad in ["!!!", "YQ", "YWxp Y2U="] {
        h.client(format!("AUTH PLAIN {bad}\r\n"));
        if bad.contains(' ') {
            h.expect_reply(501);
            continue;
        }
        h.expect_line("501 5.5.2 Cannot decode base64");
    }
    h.client("AUTH LOGIN\r\n");
    h.expect_reply(334);
    h.client("@@@\r\n");
    h.expect_line("501 5.5.2 Cannot decode base64");
    h.client("NOOP\r\n");
    h.expect_reply(250);
}

#[test]
fn a7_star_cancels_at_any_prompt() {
    let mut h = greeted();
    h.client("AUTH PLAIN\r\n*\r\n");
    h.expect_line("334 ");
    h.expect_line("501 5.7.0 Authentication aborted");
    h.client(format!("AUTH LOGIN\r\n{}\r\n*\r\n", encode(b"alice")));
    h.expect_reply(334);
    h.expect_reply(334);
    h.expect_line("501 5.7.0 Authentication aborted");
    h.client("NOOP\r\n");
    h.expect_reply(250);
}

#[test]
fn a8_empty_initial_response() {
    let mut h = greeted();
    h.client("AUTH PLAIN =\r\n");
    h.expect_line("501 5.5.2 Cannot parse authentication message");
    h.expect_idle();
}

#[test]
fn a9_plain_message_variants() {
    let ok: &[&[u8]] = &[b"\0alice\0pw", b"alice\0alice\0pw"];
    for message in ok {
        let mut h = greeted();
        h.client(format!("AUTH PLAIN {}\r\n", encode(message)));
        assert_eq!(h.expect_auth().username, "alice");
    }
    let refused: &[(&[u8], &str)] = &[
        (
            b"bob\0alice\0pw",
            "535 5.7.8 Authentication credentials invalid",
        ),
        (
            b"alice\0pw",
            "501 5.5.2 Cannot parse authentication message",
        ),
        (b"\0\0\0", "501 5.5.2 Cannot parse authentication message"),
        (
            b"\0alice\0pw\0x",
            "501 5.5.2 Cannot parse authentication message",
        ),
        (b"\0\0pw", "535 5.7.8 Authentication credentials invalid"),
        (b"\0alice\0", "535 5.7.8 Authentication credentials invalid"),
        (
            b"\0alice\0\xff\xfe",
            "535 5.7.8 Authentication credentials invalid",
        ),
    ];
    for (message, reply) in refused {
        let mut h = greeted();
        h.client(format!("AUTH PLAIN {}\r\n", encode(message)));
        h.expect_line(reply);
        h.expect_idle();
    }
    let mut long = b"\0".to_vec();
    long.extend_from_slice(&[b'a'; 256]);
    long.extend_from_slice(b"\0pw");
    let mut h = greeted();
    h.client(format!("AUTH PLAIN {}\r\n", encode(&long)));
    h.expect_reply(535);
}

#[test]
fn a10_login_edge_cases() {
    let mut h = greeted();
    h.client("AUTH LOGIN =\r\n");
    h.expect_line("535 5.7.8 Authentication credentials invalid");
    h.client("AUTH LOGIN\r\n");
    h.expect_reply(334);
    h.client(format!("{}\r\n", encode(b"alice")));
    h.expect_reply(334);
    // The password never comes: the time allowed before a login runs out first.
    h.advance(std::time::Duration::from_secs(59));
    h.expect_idle();
    h.advance(std::time::Duration::from_secs(1));
    h.expect_line("421 4.7.0 mx.test Error: too long without authentication");
    h.expect_close();
}

#[test]
fn a11_auth_lines_may_reach_12288_octets_but_no_more() {
    let mut h = greeted();
    // 12 272 base64 characters: the line is 12 285 octets, within the limit.
    let ir = "A".repeat(12_272);
    h.client(format!("AUTH PLAIN {ir}\r\n"));
    h.expect_line("501 5.5.2 Cannot parse authentication message");
    h.client(format!("AUTH PLAIN {ir}AAAA\r\n"));
    h.expect_line("500 5.5.6 Authentication Exchange line is too long");
    h.client("AUTH PLAIN\r\n");
    h.expect_reply(334);
    h.client(format!("{}\r\n", "A".repeat(13_000)));
    h.expect_line("500 5.5.6 Authentication Exchange line is too long");
    h.client("NOOP\r\n");
    h.expect_reply(250);
}

#[test]
fn a12_every_refusal_reads_the_same() {
    // Unknown user, wrong password and disabled user are all the verifier's Rejected.
    let mut replies = Vec::new();
    for user in ["nobody", "alice", "disabled"] {
        let mut h = greeted();
        h.client(format!("AUTH PLAIN {}\r\n", plain(user, "wrong")));
        h.expect_auth();
        h.complete_auth(AuthOutcome::Rejected);
        replies.push(h.take_output());
    }
    assert!(
        replies
            .iter()
            .all(|r| r == "535 5.7.8 Authentication credentials invalid\r\n")
    );
}

#[test]
fn a13_too_many_failures_close_the_session() {
    let mut h = greeted();
    for _ in 0..2 {
        h.client(format!("AUTH PLAIN {}\r\n", plain("alice", "wrong")));
        h.expect_auth();
        h.complete_auth(AuthOutcome::Rejected);
        h.expect_reply(535);
    }
    h.client(format!("AUTH PLAIN {}\r\n", plain("alice", "wrong")));
    h.expect_auth();
    h.complete_auth(AuthOutcome::Rejected);
    h.expect_line("421 4.7.0 mx.test Error: too many authentication failures");
    h.expect_close();
}

#[test]
fn a13_failures_limit_is_configurable() {
    let mut h = Harness::implicit_with(SessionConfig {
        max_auth_failures: 1,
        ..test_config()
    });
    h.ehlo();
    h.client("AUTH PLAIN =\r\n");
    h.expect_reply(501);
    h.client(format!("AUTH PLAIN {}\r\n", encode(b"\0alice\0")));
    h.expect_reply(421);
    h.expect_close();
}

#[test]
fn a15_password_never_shows_in_debug_output() {
    let mut h = greeted();
    h.client(format!(
        "AUTH PLAIN {}\r\n",
        plain("alice", "hunter2-secret")
    ));
    let request = h.expect_auth();
    assert!(!format!("{request:?}").contains("hunter2-secret"));
    assert!(!format!("{:?}", h.session).contains("hunter2-secret"));
}

#[test]
fn a16_every_auth_ends_in_exactly_one_reply() {
    for outcome in [
        AuthOutcome::Accepted,
        AuthOutcome::Rejected,
        AuthOutcome::TemporaryFailure,
    ] {
        let mut h = greeted();
        h.client(format!("AUTH PLAIN {}\r\n", plain("alice", "x")));
        h.expect_auth();
        assert_eq!(
            h.session.poll_timeout(),
            None,
            "no timeout while the verifier works"
        );
        h.complete_auth(outcome);
        let out = h.take_output();
        assert_eq!(out.matches("\r\n").count(), 1, "{outcome:?}: {out:?}");
    }
}
