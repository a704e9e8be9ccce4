//! DATA (RFC 5321 §4.1.1.4, §4.5.2) and the smuggling cases S1–S11, E7, L3–L5.

use atacama_core::smtp::{BareNewline, DeliveryError, SessionConfig};
use atacama_core::testing::{Harness, test_config};

/// An authenticated session that has just received `354`.
fn in_data(config: SessionConfig) -> Harness {
    let mut h = Harness::authenticated_with(config);
    h.client("MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n");
    h.expect_line("250 2.1.0 Ok");
    h.expect_line("250 2.1.5 Ok");
    h.expect_line("354 End data with <CR><LF>.<CR><LF>");
    h
}

#[test]
fn message_is_delivered_then_acknowledged_with_its_id() {
    let mut h = in_data(test_config());
    h.client("Subject: hi\r\n\r\n<red>hello\r\n.\r\n");
    let d = h.expect_delivery();
    assert_eq!(d.user, "alice");
    assert_eq!(d.helo, "client.test");
    assert_eq!(d.mail_from, "alice@example.org");
    assert_eq!(d.rcpt_to, ["bob@example.org"]);
    assert_eq!(d.data, b"Subject: hi\r\n\r\n<red>hello\r\n");
    assert!(d.tls.is_some());
    assert_eq!(
        h.session.poll_timeout(),
        None,
        "no timeout while the store works"
    );
    h.complete_delivery(Ok(42));
    h.expect_line("250 2.0.0 Ok: queued as 42");
    h.client("MAIL FROM:<alice@example.org>\r\n");
    h.expect_reply(250);
}

#[test]
fn a_full_disk_is_452_4_3_1_and_the_session_goes_on() {
    let mut h = in_data(test_config());
    h.client("x\r\n.\r\n");
    h.expect_delivery();
    h.fail_delivery(DeliveryError::no_space(
        "No space left on device (os error 28)",
    ));
    h.expect_line("452 4.3.1 Error: insufficient system storage, try again later");
    h.client("MAIL FROM:<alice@example.org>\r\n");
    h.expect_reply(250);
}

#[test]
fn store_failure_is_451_and_the_session_goes_on() {
    let mut h = in_data(test_config());
    h.client("x\r\n.\r\n");
    h.expect_delivery();
    h.complete_delivery(Err("disk full"));
    h.expect_line("451 4.3.0 Error: local error in processing, try again later");
    h.client("NOOP\r\n");
    h.expect_reply(250);
}

/// The smuggling probe: one message whose body holds a fake end-of-data and a second
/// transaction; the only real end is the final CR LF . CR LF.
fn smuggle(eod: &str) -> Harness {
    let mut h = in_data(test_config());
    h.client(format!(
        "Subject: one\r\n\r\nbody{eod}MAIL FROM:<ceo@example.org>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n\r\nsmuggled\r\n.\r\n"
    ));
    h
}

#[test]
fn s1_to_s7_fake_ends_of_data_are_content_and_refused_once() {
    for eod in [
        "\n.\r\n", "\n.\n", "\r\n.\n", "\r.\r", "\r.\n", "\n.\r", "\r.\r\n", "\r\n.\r",
    ] {
        let mut h = smuggle(eod);
        h.expect_line("550 5.5.2 Error: bare <CR> or <LF> received");
        h.expect_idle();
    }
}

#[test]
fn s6_crlf_dot_cr_crlf_is_content() {
    let mut h = in_data(SessionConfig {
        bare_newline: BareNewline::Normalize,
        ..test_config()
    });
    h.client("a\r\n.\r\r\nMAIL FROM:<x@y>\r\n.\r\n");
    let d = h.expect_delivery();
    // The stuffed dot goes, the bare CR becomes CR LF: content, never an end.
    assert_eq!(d.data, b"a\r\n\r\n\r\nMAIL FROM:<x@y>\r\n");
}

#[test]
fn s7_nul_before_the_dot_is_content() {
    let mut h = in_data(test_config());
    h.client("a\r\n\0.\r\nb\r\n.\r\n");
    assert_eq!(h.expect_delivery().data, b"a\r\n\0.\r\nb\r\n");
}

#[test]
fn s8_normalize_stores_bare_endings_as_crlf_in_one_message() {
    let mut h = in_data(SessionConfig {
        bare_newline: BareNewline::Normalize,
        ..test_config()
    });
    h.client("Subject: one\r\n\r\nbody\n.\r\nMAIL FROM:<ceo@example.org>\r\n.\r\n");
    let d = h.expect_delivery();
    assert_eq!(
        d.data,
        b"Subject: one\r\n\r\nbody\r\n.\r\nMAIL FROM:<ceo@example.org>\r\n"
    );
    h.complete_delivery(Ok(1));
    h.expect_reply(250);
    h.expect_idle();
}

#[test]
fn s9_dot_stuffing_including_the_first_line() {
    let mut h = in_data(test_config());
    h.client("..first\r\nmiddle\r\n..\r\n.x\r\n.\r\n");
    assert_eq!(h.expect_delivery().data, b".first\r\nmiddle\r\n.\r\nx\r\n");
}

#[test]
fn s10_dot_right_after_354_is_an_empty_message() {
    let mut h = in_data(test_config());
    h.client(".\r\n");
    assert_eq!(h.expect_delivery().data, b"");
}

#[test]
fn e7_oversized_data_is_read_to_the_end_then_refused() {
    let mut h = in_data(SessionConfig {
        max_message_size: 1000,
        ..test_config()
    });
    let line = format!("{}\r\n", "x".repeat(98));
    for _ in 0..50 {
        h.client(&line);
        assert!(h.session.buffered() < 200, "the body is not buffered");
    }
    h.client(".\r\nNOOP\r\n");
    h.expect_line("552 5.3.4 Message size exceeds fixed maximum message size");
    h.expect_line("250 2.0.0 Ok");
    h.client("RCPT TO:<bob@example.org>\r\n");
    h.expect_line("503 5.5.1 Error: need MAIL command");
}

#[test]
fn l3_long_data_lines_are_kept_whole() {
    let mut h = in_data(test_config());
    let long = "y".repeat(100_000);
    h.client(format!("{long}\r\n.\r\n"));
    assert_eq!(h.expect_delivery().data.len(), 100_002);
}

#[test]
fn l4_oversized_header_section() {
    let mut h = in_data(SessionConfig {
        max_header_size: 1024,
        ..test_config()
    });
    let header = format!("X-Big: {}\r\n", "h".repeat(2000));
    h.client(format!("{header}\r\nbody\r\n.\r\n"));
    h.expect_line("552 5.3.4 Message header too large");
}

#[test]
fn l5_too_many_received_headers_is_a_loop() {
    let mut h = in_data(test_config());
    let hops = "Received: from a by b; Mon, 1 Jan 2024 00:00:00 +0000\r\n".repeat(51);
    h.client(format!("{hops}\r\nbody\r\n.\r\n"));
    h.expect_line("554 5.4.6 Too many hops: possible mail loop");
    let mut h = in_data(test_config());
    let hops = "Received: from a by b; Mon, 1 Jan 2024 00:00:00 +0000\r\n".repeat(50);
    h.client(format!("{hops}\r\nbody\r\n.\r\n"));
    h.expect_delivery();
}

#[test]
fn data_with_an_argument() {
    let mut h = Harness::authenticated();
    h.client("MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@example.org>\r\nDATA now\r\n");
    h.expect_reply(250);
    h.expect_reply(250);
    h.expect_line("501 5.5.4 Syntax: DATA");
}

// --- DATA timing (issue 24 item 8, R2) ----------------------------------------------------

#[test]
fn r2_data_timeout_is_per_read_not_for_the_whole_message() {
    use std::time::Duration;
    let mut h = in_data(SessionConfig {
        data_timeout: Duration::from_secs(10),
        min_data_rate: 0,
        ..test_config()
    });
    // 100 s of a line every 9 s: each read restarts the timer, and nothing caps the whole.
    for _ in 0..11 {
        h.advance(Duration::from_secs(9));
        h.client("slow but steady\r\n");
    }
    h.expect_idle();
    h.advance(Duration::from_secs(9));
    h.expect_idle();
    h.advance(Duration::from_secs(1));
    h.expect_line("421 4.4.2 mx.test Error: timeout exceeded");
    h.expect_close();
}

#[test]
fn r2_a_message_at_the_minimum_rate_is_accepted() {
    use std::time::Duration;
    let mut h = in_data(SessionConfig {
        min_data_rate: 1024,
        data_rate_grace: Duration::from_secs(30),
        ..test_config()
    });
    // 2 MiB over 20 s, steadily (the issue's example).
    h.client("Subject: steady\r\n\r\n");
    let chunk = format!("{}\r\n", "x".repeat(1022));
    for _ in 0..20 {
        h.advance(Duration::from_secs(1));
        h.client(chunk.repeat(100));
    }
    h.expect_idle();
    h.client("\r\n.\r\n");
    assert_eq!(h.expect_delivery().data.len(), 19 + 20 * 100 * 1024 + 2);
}

#[test]
fn r2_a_trickle_is_cut_once_the_grace_period_is_over() {
    use atacama_core::smtp::CloseReason;
    use std::time::Duration;
    let mut h = in_data(SessionConfig {
        min_data_rate: 1024,
        data_rate_grace: Duration::from_secs(30),
        ..test_config()
    });
    // One byte a second: never silent long enough for the inactivity timeout.
    for _ in 0..29 {
        h.advance(Duration::from_secs(1));
        h.client("x");
    }
    h.expect_idle();
    h.advance(Duration::from_secs(1));
    h.expect_line("421 4.4.2 mx.test Error: message data arrived too slowly");
    h.expect_close();
    assert_eq!(h.session.close_reason(), Some(CloseReason::DataTooSlow));
}

#[test]
fn r2_bytes_ahead_of_the_rate_push_its_deadline_back() {
    use std::time::Duration;
    let mut h = in_data(SessionConfig {
        min_data_rate: 1000,
        data_rate_grace: Duration::from_secs(5),
        data_timeout: Duration::from_secs(180),
        ..test_config()
    });
    let start = h.now;
    h.client(format!("{}\r\n", "y".repeat(39_998))); // 40 000 bytes: 40 s at the rate
    assert_eq!(
        h.session.poll_timeout(),
        Some(start + Duration::from_secs(40))
    );
    h.advance(Duration::from_secs(39));
    h.client("z");
    assert_eq!(
        h.session.poll_timeout(),
        Some(start + Duration::from_millis(40_001))
    );
    h.advance(Duration::from_millis(1_001));
    h.expect_reply(421);
    h.expect_close();
}

#[test]
fn r2_the_rate_applies_to_each_message_from_its_own_354() {
    use std::time::Duration;
    let mut h = in_data(SessionConfig {
        min_data_rate: 1024,
        data_rate_grace: Duration::from_secs(30),
        ..test_config()
    });
    h.advance(Duration::from_secs(20));
    h.client("Subject: one\r\n\r\nbody\r\n.\r\n");
    h.expect_delivery();
    h.complete_delivery(Ok(1));
    h.expect_reply(250);
    // After the message, the command timeout rules again: no rate while idle.
    assert_eq!(
        h.session.poll_timeout(),
        Some(h.now + Duration::from_secs(300))
    );
    h.advance(Duration::from_secs(100));
    h.client("MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n");
    h.expect_reply(250);
    h.expect_reply(250);
    h.expect_reply(354);
    assert_eq!(
        h.session.poll_timeout(),
        Some(h.now + Duration::from_secs(30))
    );
}

#[test]
fn r2_a_rate_of_zero_turns_the_check_off() {
    use std::time::Duration;
    let mut h = in_data(SessionConfig {
        min_data_rate: 0,
        data_timeout: Duration::from_secs(180),
        ..test_config()
    });
    for _ in 0..10 {
        h.advance(Duration::from_secs(170));
        h.client("x");
    }
    h.expect_idle();
}
