//! Properties of the session that hold for any input (proptest).

use atacama_core::smtp::{
    BareNewline, Channel, Command, DataReader, DataStatus, Event, SessionConfig, dot_stuff,
};
use atacama_core::testing::{
    PASSWORD, ScriptedRuntime, plain, run_chunks, split_at_points, test_config, tls_info,
};
use proptest::prelude::*;

/// Command lines a client might send, good and bad, on an implicit-TLS channel.
fn line() -> impl Strategy<Value = String> {
    let fixed = prop_oneof![
        Just("EHLO client.test".to_string()),
        Just("HELO client.test".to_string()),
        Just(format!("AUTH PLAIN {}", plain("alice", PASSWORD))),
        Just(format!("AUTH PLAIN {}", plain("alice", "wrong"))),
        Just("AUTH LOGIN".to_string()),
        Just("YWxpY2U=".to_string()),
        Just("czNjcmV0".to_string()),
        Just("*".to_string()),
        Just("MAIL FROM:<alice@example.org>".to_string()),
        Just("MAIL FROM:<bob@example.org> SIZE=10".to_string()),
        Just("RCPT TO:<bob@example.org>".to_string()),
        Just("RCPT TO:<bad>".to_string()),
        Just("DATA".to_string()),
        Just(".".to_string()),
        Just("..stuffed".to_string()),
        Just("Subject: hi".to_string()),
        Just("FAIL-STORE".to_string()),
        Just("RSET".to_string()),
        Just("NOOP".to_string()),
        Just("VRFY x".to_string()),
        Just("FOO".to_string()),
        Just("QUIT".to_string()),
    ];
    prop_oneof![8 => fixed, 1 => "[ -~]{0,40}"]
}

fn conversation() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        (line(), prop_oneof![Just("\r\n"), Just("\n"), Just("\r")]),
        0..40,
    )
    .prop_map(|lines| {
        lines
            .into_iter()
            .flat_map(|(l, end)| format!("{l}{end}").into_bytes())
            .collect()
    })
}

fn config() -> SessionConfig {
    SessionConfig {
        max_message_size: 200,
        max_recipients: 3,
        ..test_config()
    }
}

fn implicit() -> Channel {
    Channel::Implicit(tls_info())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn any_split_gives_the_same_events(input in conversation(), points in prop::collection::vec(any::<usize>(), 0..8)) {
        let whole = run_chunks(config(), implicit(), [&input[..]]).map_err(|v| TestCaseError::fail(v.0))?;
        let chunked = run_chunks(config(), implicit(), split_at_points(&input, points)).map_err(|v| TestCaseError::fail(v.0))?;
        prop_assert_eq!(whole, chunked);
    }

    #[test]
    fn bytewise_feeding_gives_the_same_events(input in conversation()) {
        let whole = run_chunks(config(), implicit(), [&input[..]]).map_err(|v| TestCaseError::fail(v.0))?;
        let bytewise = run_chunks(config(), implicit(), input.chunks(1)).map_err(|v| TestCaseError::fail(v.0))?;
        prop_assert_eq!(whole, bytewise);
    }

    #[test]
    fn arbitrary_bytes_never_panic_nor_overflow(chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..2000), 0..20), plaintext in any::<bool>()) {
        let small = SessionConfig { input_buffer: 1024, max_auth_line: 600, max_message_size: 500, ..test_config() };
        let channel = if plaintext { Channel::Plain } else { implicit() };
        let mut runtime = ScriptedRuntime::new(small, channel);
        for chunk in &chunks {
            runtime.feed(chunk).map_err(|v| TestCaseError::fail(v.0))?;
            prop_assert!(runtime.session.buffered() <= 1024);
        }
    }

    #[test]
    fn stuffing_then_unstuffing_is_the_identity(
        lines in prop::collection::vec("[ -~\u{80}-\u{10FFFF}&&[^\r\n]]{0,30}|\\.{1,3}[a-z]{0,3}", 0..20),
        points in prop::collection::vec(any::<usize>(), 0..6),
    ) {
        let body: Vec<u8> = lines.iter().flat_map(|l| format!("{l}\r\n").into_bytes()).collect();
        let wire = dot_stuff(&body);
        let mut reader = DataReader::new(1 << 20, BareNewline::Reject);
        let mut pending = Vec::new();
        let mut done = false;
        for chunk in split_at_points(&wire, points) {
            pending.extend_from_slice(chunk);
            let (used, status) = reader.feed(&pending);
            pending.drain(..used);
            if status == DataStatus::Done {
                done = true;
                break;
            }
        }
        prop_assert!(done);
        prop_assert!(pending.is_empty());
        prop_assert_eq!(reader.finish(), atacama_core::smtp::DataOutcome::Complete(body));
    }

    #[test]
    fn pipelined_and_lock_step_clients_get_the_same_replies(lines in prop::collection::vec(line(), 0..30)) {
        let input: Vec<u8> = lines.iter().flat_map(|l| format!("{l}\r\n").into_bytes()).collect();
        let pipelined = run_chunks(config(), implicit(), [&input[..]]).map_err(|v| TestCaseError::fail(v.0))?;
        let mut runtime = ScriptedRuntime::new(config(), implicit());
        for l in &lines {
            runtime.feed(format!("{l}\r\n").as_bytes()).map_err(|v| TestCaseError::fail(v.0))?;
        }
        runtime.drain().map_err(|v| TestCaseError::fail(v.0))?;
        prop_assert_eq!(pipelined, runtime.into_recording());
    }

    #[test]
    fn command_display_parses_back(line in line()) {
        if let Ok(command) = Command::parse(line.as_bytes()) {
            prop_assert_eq!(Command::parse(command.to_string().as_bytes()), Ok(command));
        }
    }

    #[test]
    fn every_transmit_is_well_formed_and_nothing_follows_close(input in conversation()) {
        let recording = run_chunks(config(), Channel::Plain, [&input[..]]).map_err(|v| TestCaseError::fail(v.0))?;
        if let Some(pos) = recording.iter().position(|e| matches!(e, Event::Close)) {
            prop_assert_eq!(pos, recording.len() - 1);
        }
    }
}
