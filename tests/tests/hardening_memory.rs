//! What storing the largest message costs the daemon (issue 24, item 3), end to end on both
//! binaries: a body lz4 cannot shrink once took a power-of-two page of redb beside its packed
//! copy (8 times the message); it now goes into rows of just under 1 MiB, and a kill -9 after
//! it loses nothing acknowledged. What it costs is printed by `tests/bench.sh memory` (a
//! figure is a benchmark's to print, not a test's to judge).

use atacama_tests::{Binary, Client, Server, Settings, logged_in, server_with};
use serde_json::Value;

/// Sends one message on a logged-in session; returns the reply to its final dot. `data`
/// must end with CR LF and hold no line starting with a dot.
fn send(c: &mut Client, data: &[u8]) -> u16 {
    c.command("MAIL FROM:<alice@example.org>", 250);
    c.command("RCPT TO:<bob@example.org>", 250);
    c.command("DATA", 354);
    c.send(data).expect("send the data");
    c.send(b".\r\n").expect("send the final dot");
    let started = std::time::Instant::now();
    loop {
        match c.reply() {
            Ok(reply) => return reply.code,
            // A large message in a debug build takes a few seconds to store.
            Err(e) if started.elapsed().as_secs() < 120 => {
                assert!(
                    matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ),
                    "reply to the data: {e}"
                );
            }
            Err(e) => panic!("no reply to the data: {e}"),
        }
    }
}

/// `len` random lowercase letters in lines of 76 (xorshift: the same on every run), which lz4
/// cannot shrink.
fn letters(len: usize, seed: u64) -> String {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = String::with_capacity(len + len / 38);
    while out.len() < len {
        for _ in 0..76 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            out.push(char::from(b'a' + (state % 26) as u8));
        }
        out.push_str("\r\n");
    }
    out
}

fn show(server: &Server, id: u64, format: &str) -> Vec<u8> {
    server
        .cli(&["messages", "show", &id.to_string(), format], None)
        .success()
        .stdout
}

/// A small message (journaled), one of 6 MB (in rows, a durable commit), another small one,
/// then kill -9: all three come back whole, and thread as they did.
fn a_large_message_in_rows_reads_back_whole_after_a_kill(binary: Binary) {
    let mut server = server_with(binary, Settings::default());
    let mut c = logged_in(&server);
    let small = |id: &str, reply_to: &str| {
        format!(
            "Subject: small\r\nMessage-ID: <{id}>\r\nIn-Reply-To: <{reply_to}>\r\n\r\nhello\r\n"
        )
    };
    let first = small("one@x", "none@x");
    let body = letters(6 << 20, 7);
    let big = format!(
        "Subject: big\r\nMessage-ID: <big@x>\r\nIn-Reply-To: <one@x>\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\n{body}"
    );
    let last = small("three@x", "big@x");
    for data in [&first, &big, &last] {
        assert_eq!(send(&mut c, data.as_bytes()), 250);
    }
    drop(c);
    server.restart(); // SIGKILL: no clean-stop checkpoint
    for (id, data) in [(1, &first), (2, &big), (3, &last)] {
        let raw = show(&server, id, "--raw");
        assert!(raw.starts_with(b"Received: "), "message {id}");
        assert!(raw.ends_with(data.as_bytes()), "message {id} whole");
    }
    let json: Value = serde_json::from_slice(&show(&server, 2, "--json")).expect("JSON");
    assert_eq!(json["text"], body.trim_end().replace("\r\n", "\n"));
    let html = json["html"].as_str().unwrap_or_default();
    assert!(
        html.starts_with("<p>") && html.ends_with("</p>"),
        "{}",
        html.len()
    );
    assert_eq!(json["parent_id"], 1);
    let last: Value = serde_json::from_slice(&show(&server, 3, "--json")).expect("JSON");
    assert_eq!(last["parent_id"], 2);
}

// How redb lays out a large message, read back after the daemon is killed.
atacama_tests::end_to_end!(; redb_only: a_large_message_in_rows_reads_back_whole_after_a_kill);
