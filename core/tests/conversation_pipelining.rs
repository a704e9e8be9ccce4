//! PIPELINING (RFC 2920): replies in command order, nothing processed past a pending
//! request. Cases P1–P6.

use atacama_core::smtp::AuthOutcome;
use atacama_core::testing::{Harness, plain};

#[test]
fn p1_envelope_in_one_write_gets_replies_in_order() {
    let mut h = Harness::authenticated();
    h.client(
        "MAIL FROM:<alice@example.org>\r\nRCPT TO:<a@example.org>\r\nRCPT TO:<bad>\r\nRCPT TO:<c@example.org>\r\nDATA\r\nbody\r\n.\r\n",
    );
    h.expect_line("250 2.1.0 Ok");
    h.expect_line("250 2.1.5 Ok");
    h.expect_reply(501);
    h.expect_line("250 2.1.5 Ok");
    h.expect_line("354 End data with <CR><LF>.<CR><LF>");
    assert_eq!(
        h.expect_delivery().rcpt_to,
        ["a@example.org", "c@example.org"]
    );
}

#[test]
fn p2_all_recipients_refused_then_pipelined_body_closes_on_the_header() {
    let mut h = Harness::authenticated();
    h.client("MAIL FROM:<alice@example.org>\r\nRCPT TO:<bjørn@example.org>\r\nDATA\r\nSubject: x\r\n\r\nhi\r\n.\r\n");
    h.expect_reply(250);
    h.expect_reply(553);
    h.expect_line("554 5.5.1 Error: no valid recipients");
    h.expect_reply(421);
    h.expect_close();
}

#[test]
fn p3_a_flood_of_noops_is_answered_in_bounded_pieces() {
    let mut h = Harness::submission();
    let flood = "NOOP\r\n".repeat(10_000);
    // Like a runtime that never reads replies: buffered input stays bounded.
    let taken = flood.len().min(h.session.read_capacity());
    h.session.receive(h.now, &flood.as_bytes()[..taken]);
    assert!(h.session.buffered() <= 64 * 1024);
    let first = h.session.poll_event();
    match first {
        Some(atacama_core::smtp::Event::Transmit(bytes)) => assert!(bytes.len() <= 20 * 1024),
        other => panic!("expected a Transmit, got {other:?}"),
    }
}

#[test]
fn p5_nothing_is_answered_while_auth_is_pending() {
    let mut h = Harness::implicit();
    h.ehlo();
    h.client(format!(
        "AUTH PLAIN {}\r\nNOOP\r\nMAIL FROM:<alice@example.org>\r\n",
        plain("alice", "pw")
    ));
    h.expect_auth();
    h.expect_idle();
    h.complete_auth(AuthOutcome::Accepted);
    h.expect_line("235 2.7.0 Authentication successful");
    h.expect_line("250 2.0.0 Ok");
    h.expect_line("250 2.1.0 Ok");
}

#[test]
fn p5_nothing_is_answered_while_delivery_is_pending() {
    let mut h = Harness::authenticated();
    h.client("MAIL FROM:<alice@example.org>\r\nRCPT TO:<b@example.org>\r\nDATA\r\nx\r\n.\r\nMAIL FROM:<alice@example.org>\r\nQUIT\r\n");
    h.expect_reply(250);
    h.expect_reply(250);
    h.expect_reply(354);
    h.expect_delivery();
    h.expect_idle();
    h.complete_delivery(Ok(1));
    h.expect_line("250 2.0.0 Ok: queued as 1");
    h.expect_line("250 2.1.0 Ok");
    h.expect_reply(221);
    h.expect_close();
}

#[test]
fn p6_mail_after_pipelined_auth_is_judged_after_auth() {
    let mut h = Harness::implicit();
    h.ehlo();
    h.client(format!(
        "AUTH PLAIN {}\r\nMAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n",
        plain("alice", "s3cret")
    ));
    h.expect_auth();
    h.complete_auth(AuthOutcome::Accepted);
    h.expect_reply(235);
    h.expect_reply(250);
    h.expect_reply(250);
    h.expect_reply(354);
}

#[test]
fn p6_with_a_wrong_password_the_body_is_never_stored() {
    let mut h = Harness::implicit();
    h.ehlo();
    h.client(format!(
        "AUTH PLAIN {}\r\nMAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\nhello\r\n.\r\n",
        plain("alice", "wrong")
    ));
    h.expect_auth();
    h.complete_auth(AuthOutcome::Rejected);
    h.expect_line("535 5.7.8 Authentication credentials invalid");
    h.expect_line("530 5.7.0 Authentication required");
    h.expect_line("503 5.5.1 Error: need MAIL command");
    h.expect_line("503 5.5.1 Error: need MAIL command");
    h.expect_reply(500);
    h.expect_reply(500);
    h.expect_idle();
}
