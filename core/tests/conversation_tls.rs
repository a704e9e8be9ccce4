//! STARTTLS (RFC 3207) and the plaintext gate (RFC 8314). Cases T1–T11 of SECURITY-CASES.md.

use std::time::Duration;

use atacama_core::testing::{Harness, plain};

#[test]
fn starttls_then_session_starts_over() {
    let mut h = Harness::submission();
    h.ehlo();
    h.client("STARTTLS\r\n");
    h.expect_line("220 2.0.0 Ready to start TLS");
    h.expect_start_tls_then_establish();
    h.expect_idle();
    let lines = h.ehlo();
    assert!(lines.contains(&"AUTH PLAIN LOGIN".to_string()));
    assert!(!lines.contains(&"STARTTLS".to_string()));
}

#[test]
fn t1_starttls_discards_pipelined_plaintext() {
    let mut h = Harness::submission();
    h.client("EHLO c.test\r\nSTARTTLS\r\nNOOP injected\r\nMAIL FROM:<evil@x.test>\r\n");
    h.expect_reply(250);
    h.expect_line("220 2.0.0 Ready to start TLS");
    // Bytes that trickle in before the handshake completes are injected plaintext too.
    h.client("RSET\r\n");
    h.expect_start_tls_then_establish();
    h.expect_idle();
    h.client("EHLO c.test\r\n");
    h.expect_reply(250);
    h.expect_idle();
}

#[test]
fn t1_no_read_capacity_while_handshake_pending() {
    let mut h = Harness::submission();
    h.client("STARTTLS\r\n");
    h.expect_reply(220);
    assert_eq!(h.session.read_capacity(), 0);
    h.expect_start_tls_then_establish();
    assert!(h.session.read_capacity() > 0);
}

#[test]
fn t2_state_before_starttls_is_forgotten() {
    let mut h = Harness::submission();
    h.ehlo();
    h.client("STARTTLS\r\n");
    h.expect_reply(220);
    h.expect_start_tls_then_establish();
    h.client(format!("AUTH PLAIN {}\r\n", plain("alice", "pw")));
    h.expect_line("503 5.5.1 Error: send HELO/EHLO first");
    h.client("MAIL FROM:<alice@example.org>\r\n");
    h.expect_line("503 5.5.1 Error: send HELO/EHLO first");
    h.client("RCPT TO:<bob@example.org>\r\n");
    h.expect_line("503 5.5.1 Error: need MAIL command");
}

#[test]
fn t3_starttls_with_an_argument() {
    let mut h = Harness::submission();
    h.client("STARTTLS now\r\n");
    h.expect_line("501 5.5.4 Syntax: STARTTLS");
    h.expect_idle();
}

#[test]
fn t4_starttls_when_tls_is_active() {
    let mut h = Harness::implicit();
    h.client("EHLO c.test\r\nSTARTTLS\r\n");
    h.expect_reply(250);
    h.expect_line("503 5.5.1 Error: TLS already active");
    let mut h = Harness::submission();
    h.client("STARTTLS\r\n");
    h.expect_reply(220);
    h.expect_start_tls_then_establish();
    h.client("STARTTLS\r\n");
    h.expect_line("503 5.5.1 Error: TLS already active");
}

#[test]
fn t6_tls_client_hello_on_the_plaintext_port_closes() {
    let mut h = Harness::submission();
    h.client([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00]);
    h.expect_close();
}

#[test]
fn t8_envelope_commands_need_starttls_first() {
    let mut h = Harness::submission();
    h.ehlo();
    for line in [
        "MAIL FROM:<alice@example.org>",
        "RCPT TO:<bob@example.org>",
        "DATA",
        "VRFY bob",
        "HELP",
    ] {
        h.client(format!("{line}\r\n"));
        h.expect_line("530 5.7.0 Must issue a STARTTLS command first");
    }
    // Arguments do not matter: the gate comes first.
    h.client("MAIL FROM:garbage\r\n");
    h.expect_line("530 5.7.0 Must issue a STARTTLS command first");
    for line in ["NOOP", "RSET"] {
        h.client(format!("{line}\r\n"));
        h.expect_reply(250);
    }
}

#[test]
fn a1_auth_on_plaintext_needs_encryption_and_is_never_evaluated() {
    let mut h = Harness::submission();
    h.ehlo();
    h.client(format!("AUTH PLAIN {}\r\n", plain("alice", "s3cret")));
    h.expect_line("538 5.7.11 Encryption required for requested authentication mechanism");
    h.client("AUTH LOGIN\r\n");
    h.expect_reply(538);
    h.expect_idle();
}

#[test]
fn t9_stripped_starttls_leaves_only_refusals() {
    let mut h = Harness::submission();
    let lines = h.ehlo();
    assert!(!lines.iter().any(|l| l.starts_with("AUTH")));
    h.client("MAIL FROM:<alice@example.org>\r\n");
    h.expect_reply(530);
}

#[test]
fn t11_handshake_that_never_finishes_is_closed_silently() {
    let mut h = Harness::submission();
    h.client("STARTTLS\r\n");
    h.expect_reply(220);
    assert!(
        h.session.poll_timeout().is_some(),
        "the handshake has a deadline"
    );
    h.advance(Duration::from_secs(301));
    assert!(h.session.is_closed());
    assert_eq!(h.take_output(), "", "never a plaintext reply after 220");
}
