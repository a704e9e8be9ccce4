//! The fuzz targets, one function each, taking libFuzzer's bytes and panicking when an
//! invariant fails.
//!
//! `fuzz/fuzz_targets/*.rs` are one line each into these functions, and
//! `tests/fuzz_replay.rs` runs `fuzz/corpus` and `fuzz/regressions` through them, so CI
//! checks every saved input exactly as the fuzzer did.

mod session;

pub use session::{Limits, Script, Step};

use std::sync::Once;

use super::http::StreamEnd;
use crate::http::HttpConfig;
use crate::markup::{check_output_allowlist, render};
use crate::sasl::{self, Credentials, MAX_FIELD, SaslError};
use crate::smtp::Command;
use crate::testing::check_reply_bytes;

/// Runs a whole session: limits, then steps (see [`Step`]), checking the session's
/// invariants after every event and every step.
pub fn session(data: &[u8]) {
    if let Err(violation) = session::run(data) {
        panic!("session invariant violated: {violation}");
    }
}

/// Feeds `data` to an HTTP connection (small limits, so that short inputs reach them) whole,
/// byte by byte and in chunks of 7, the scripted application answering every request; every
/// event must pass the checks of `testing::http`, the three runs must do the same, and the
/// connection must close at the end: the client closes, goes silent or the server stops,
/// by the input's length modulo 3.
pub fn http(data: &[u8]) {
    let config = HttpConfig {
        max_head: 512,
        max_headers: 8,
        max_target: 128,
        max_skipped_body: 64,
        ..HttpConfig::default()
    };
    let end = match data.len() % 3 {
        0 => StreamEnd::PeerClose,
        1 => StreamEnd::Silence,
        _ => StreamEnd::Shutdown,
    };
    let run = |chunks: Vec<&[u8]>| match super::http::run_http(config, chunks, end) {
        Ok(recording) => recording,
        Err(violation) => panic!("http invariant violated: {violation}"),
    };
    let whole = run(vec![data]);
    assert_eq!(
        whole.last(),
        Some(&crate::http::HttpEvent::Close),
        "no close at the end"
    );
    assert!(run(data.chunks(1).collect()) == whole, "bytewise differs");
    assert!(run(data.chunks(7).collect()) == whole, "chunks of 7 differ");
}

/// Parses one command line; a command must format to a line that parses back to it, and an
/// error must have a well-formed reply.
pub fn command(data: &[u8]) {
    match Command::parse(data) {
        Ok(command) => {
            let line = command.to_string();
            assert!(
                !line.contains(['\r', '\n']),
                "{command:?} formats with a line break"
            );
            assert_eq!(
                Command::parse(line.as_bytes()).as_ref(),
                Ok(&command),
                "{:?} formats as {line:?}, which parses differently",
                String::from_utf8_lossy(data)
            );
        }
        Err(error) => {
            if let Err(violation) = check_reply_bytes(&error.reply().to_bytes()) {
                panic!("reply to {error:?}: {violation}");
            }
        }
    }
}

/// Decodes `data` as a SASL response line, then as PLAIN and LOGIN messages; decodes the
/// raw bytes as PLAIN and LOGIN too, so the fuzzer need not get through base64 first.
pub fn sasl(data: &[u8]) {
    let line = String::from_utf8_lossy(data);
    match sasl::decode_response(&line) {
        Ok(decoded) => {
            // Base64 has one spelling per byte string (padded, no stray bits), so no two
            // lines stand for the same credentials; `=` is the spelling of empty.
            let canonical = if decoded.is_empty() && line == "=" {
                "=".to_string()
            } else {
                sasl::encode(&decoded)
            };
            assert_eq!(canonical, line, "non-canonical base64 accepted");
            check_plain(&decoded);
            check_login_field(&decoded);
        }
        Err(SaslError::Cancelled) => assert_eq!(line, "*", "only `*` cancels"),
        Err(error) => assert_eq!(error, SaslError::Base64, "{line:?}"),
    }
    assert_eq!(
        sasl::decode_response(&sasl::encode(data)).as_deref(),
        Ok(data),
        "encode then decode"
    );
    check_plain(data);
    check_login_field(data);
}

/// Renders `data` (lossy UTF-8) as Atacama markup; the HTML must pass the allowlist.
pub fn markup(data: &[u8]) {
    check_rendered(&String::from_utf8_lossy(data));
}

/// Parses `data` as a raw message and renders its text; the HTML must pass the allowlist,
/// and the fields must keep the shape `message::parse` documents.
pub fn message(data: &[u8]) {
    tolerate_mail_parser_panics();
    let parsed = crate::message::parse(data);
    // An unreadable message keeps the whole input as its text; a readable one has LF line
    // ends and no line break at the very end.
    if parsed.text != String::from_utf8_lossy(data) {
        assert!(
            !parsed.text.contains("\r\n") && !parsed.text.ends_with(['\r', '\n']),
            "text of {:?} has CR LF or a final line break: {:?}",
            String::from_utf8_lossy(data),
            parsed.text
        );
    }
    let headers = &parsed.headers;
    let trimmed = [&headers.subject, &headers.message_id, &headers.in_reply_to];
    for value in trimmed.into_iter().flatten() {
        assert!(
            !value.is_empty() && value.trim() == value,
            "untrimmed field {value:?}"
        );
    }
    check_rendered(&parsed.text);
}

fn check_rendered(text: &str) {
    let html = render(text);
    if let Err(problem) = check_output_allowlist(&html) {
        panic!("{text:?} renders as {html:?}: {problem}");
    }
}

/// PLAIN (RFC 4616 §2): `Ok` exactly for `[authzid] NUL authcid NUL passwd` with both
/// fields valid and the authzid empty or equal to the authcid.
fn check_plain(message: &[u8]) {
    let result = sasl::decode_plain(message);
    let parts: Vec<&[u8]> = message.split(|&b| b == 0).collect();
    let [authzid, authcid, password] = parts.as_slice() else {
        assert_eq!(result, Err(SaslError::Malformed), "{message:?}");
        return;
    };
    let acceptable =
        (authzid.is_empty() || authzid == authcid) && valid_field(authcid) && valid_field(password);
    match result {
        Ok(Credentials {
            username,
            password: pass,
        }) => {
            assert!(acceptable, "accepted {message:?}");
            assert_eq!(username.as_bytes(), *authcid);
            assert_eq!(pass.expose().as_bytes(), *password);
        }
        Err(error) => {
            assert!(!acceptable, "refused {message:?}: {error:?}");
            assert_eq!(error, SaslError::Invalid, "{message:?}");
        }
    }
}

/// A LOGIN field is taken as is when valid, and refused as `Invalid` otherwise.
fn check_login_field(field: &[u8]) {
    match sasl::decode_login_field(field) {
        Ok(text) => assert!(valid_field(field) && text.as_bytes() == field, "{field:?}"),
        Err(error) => {
            assert!(!valid_field(field), "refused {field:?}");
            assert_eq!(error, SaslError::Invalid);
        }
    }
}

/// A user name or password we pass on: 1 to 255 octets of UTF-8.
fn valid_field(field: &[u8]) -> bool {
    !field.is_empty() && field.len() <= MAX_FIELD && std::str::from_utf8(field).is_ok()
}

/// `message::parse` catches panics of mail-parser, so that a message the client already sent
/// is kept. libFuzzer's panic hook aborts on every panic, caught or not; this hook lets
/// mail-parser's own panics unwind to that catch. A panic elsewhere, or one that escapes,
/// still fails the target.
fn tolerate_mail_parser_panics() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let in_mail_parser = info
                .location()
                .is_some_and(|at| at.file().contains("mail-parser"));
            if !in_mail_parser {
                previous(info);
            }
        }));
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sasl_accepts_the_spec_examples() {
        for input in [
            &b"AGFsaWNlAHMzY3JldA=="[..],
            b"\0alice\0s3cret",
            b"alice\0alice\0pw",
            b"=",
            b"*",
            b"",
            b"\xff\xfe",
        ] {
            sasl(input);
        }
    }

    #[test]
    fn command_round_trips_each_verb() {
        for line in [
            "EHLO client.test",
            "MAIL FROM:<\"a b\"@x.test> SIZE=10 BODY=8BITMIME",
            "RCPT TO:<postmaster>",
            "VRFY bob",
            "AUTH LOGIN =",
            "bogus",
        ] {
            command(line.as_bytes());
        }
    }

    #[test]
    fn http_takes_requests_and_garbage() {
        http(b"GET / HTTP/1.1\r\nHost: h\r\n\r\nPOST /x HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi");
        http(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        http(b"\xff\r\n\r\n");
        http(b"");
    }

    #[test]
    fn markup_and_message_render_safely() {
        markup(b"(<red>x) [[a]] <<b>> *c*\n* d");
        message(b"Subject: hi\r\n\r\n<script>alert(1)</script>\r\n");
    }
}
