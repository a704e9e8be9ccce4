//! What a message's content can do to the daemon and the command line (issue 24, items 1,
//! 3 and 13), end to end on both binaries: nesting that once overflowed the processing
//! thread's stack, rendering that multiplied memory, escape sequences for the terminal.

use atacama_tests::{Binary, Client, Server, Settings, logged_in, server_with};
use serde_json::Value;

// --- helpers ------------------------------------------------------------------------------

/// Sends one message on a logged-in session; returns the reply to its final dot. `data`
/// must end with CR LF and hold no line starting with a dot.
fn send(c: &mut Client, data: &[u8]) -> u16 {
    c.command("MAIL FROM:<alice@example.org>", 250);
    c.command("RCPT TO:<bob@example.org>", 250);
    c.command("DATA", 354);
    c.send(data).expect("send the data");
    c.send(b".\r\n").expect("send the final dot");
    c.reply().expect("a reply to the data").code
}

fn show_json(server: &Server, id: u64) -> Value {
    let run = server
        .cli(&["messages", "show", &id.to_string(), "--json"], None)
        .success();
    serde_json::from_slice(&run.stdout).expect("JSON output")
}

const HEADER: &str = "From: Mallory <m@x.test>\r\nTo: bob@example.org\r\nSubject: deep\r\n";

/// `levels` plain message/rfc822 levels, one inside the other.
fn nested(levels: usize) -> String {
    let mut raw = "Content-Type: message/rfc822\r\n\r\n".repeat(levels);
    raw.push_str("Subject: innermost\r\n\r\nHello from the bottom.\r\n");
    raw
}

/// The two shapes of issue 24 item 1: 50 000 plain levels (1.6 MB), and 3 000 levels inside
/// one base64 part (131 KB).
fn nested_shapes() -> [(&'static str, Vec<u8>); 2] {
    let plain = format!("{HEADER}{}", nested(50_000)).into_bytes();
    let encoded = atacama_core::sasl::encode(nested(3_000).as_bytes());
    let mut wrapped = format!(
        "{HEADER}Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    );
    for line in encoded.as_bytes().chunks(76) {
        wrapped.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        wrapped.push_str("\r\n");
    }
    [("plain", plain), ("base64", wrapped.into_bytes())]
}

// --- item 1: nesting ----------------------------------------------------------------------

fn nested_mime_is_stored_with_a_problem_and_the_session_goes_on(binary: Binary) {
    // Group commit (prepare and commit threads) and direct deliveries (a thread per
    // delivery) parse on different threads: both must survive.
    for group_commit in [true, false] {
        let server = server_with(
            binary,
            Settings::default().limit("group_commit", group_commit),
        );
        let mut c = logged_in(&server);
        let mut id = 0;
        for (shape, data) in nested_shapes() {
            assert_eq!(
                send(&mut c, &data),
                250,
                "{shape}, group_commit={group_commit}"
            );
            id += 1;
            let shown = show_json(&server, id);
            assert_eq!(shown["subject"], "deep", "{shape}: {shown:#}");
            assert_eq!(shown["from"], "Mallory <m@x.test>", "{shape}");
            assert_eq!(shown["text"], "", "{shape}");
            let problems = shown["problems"].as_array().expect("problems is an array");
            assert_eq!(problems.len(), 1, "{shape}: {problems:?}");
            let problem = problems[0].as_str().unwrap_or_default();
            assert!(
                problem.contains("at least 33 levels deep, beyond the limit of 32"),
                "{shape}: {problem}"
            );
            // The bytes are kept as received.
            let raw = server
                .cli(&["messages", "show", &id.to_string(), "--raw"], None)
                .success()
                .stdout;
            assert!(
                raw.ends_with(&data),
                "{shape}: the raw message is stored whole"
            );

            // The same session goes on with an ordinary message.
            let ordinary = b"Subject: after\r\n\r\nStill here.\r\n";
            assert_eq!(send(&mut c, ordinary), 250, "{shape}: the next message");
            id += 1;
            let shown = show_json(&server, id);
            assert_eq!(shown["text"], "Still here.", "{shape}");
            assert_eq!(shown["problems"], serde_json::json!([]), "{shape}");
        }
        c.command("QUIT", 221);
    }
}

// --- item 3: rendering memory -------------------------------------------------------------

fn html_past_its_limit_is_cut_and_the_cut_recorded(binary: Binary) {
    let server = server_with(binary, Settings::default());
    let mut c = logged_in(&server);
    // 1 MB of wikilinks renders to 16 MB; the limit is twice the text and 1 MiB.
    let body = "[[a]]\r\n".repeat(150_000);
    let data = format!("Subject: links\r\n\r\n{body}");
    assert_eq!(send(&mut c, data.as_bytes()), 250);
    // The session goes on.
    assert_eq!(send(&mut c, b"Subject: after\r\n\r\n[[b]]\r\n"), 250);
    c.command("QUIT", 221);

    let shown = show_json(&server, 1);
    let text = shown["text"].as_str().expect("text");
    assert_eq!(
        text.len(),
        body.len() - 150_000 - 1,
        "the text is whole (LF, last one dropped)"
    );
    let html = shown["html"].as_str().expect("html");
    let limit = atacama_core::markup::html_limit(text.len());
    assert!(
        html.len() <= limit && html.len() > limit / 2,
        "{} of {limit}",
        html.len()
    );
    assert!(html.starts_with("<p><a href=") && html.ends_with("</p>"));
    assert_eq!(atacama_core::markup::check_output_allowlist(html), Ok(()));
    let problems = shown["problems"].as_array().expect("problems is an array");
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0]
            .as_str()
            .unwrap_or_default()
            .starts_with(&format!("the HTML reached its limit ({limit} bytes for")),
        "{problems:?}"
    );
    let printed = server
        .cli(&["messages", "show", "1", "--html"], None)
        .success();
    assert_eq!(printed.stdout, html.as_bytes());
    assert_eq!(show_json(&server, 2)["problems"], serde_json::json!([]));
}

/// `bench-memory` (`tests/bench.sh memory`) on a small limit: every field there, and each
/// consistent with the others. No figure is judged here.
fn memory_benchmark_prints_consistent_fields(binary: Binary) {
    let max = 256 * 1024;
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_bench-memory"))
        .arg("--binary")
        .arg(binary.path())
        .args([
            "--max-message-size",
            &max.to_string(),
            "--json",
            "--timeout",
            "60",
        ])
        .args(["--shape", "wikilinks", "--shape", "incompressible"])
        .output()
        .expect("run bench-memory");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let rows: Vec<Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect();
    let shapes: Vec<&str> = rows
        .iter()
        .map(|r| r["shape"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(shapes, ["wikilinks", "incompressible"]);
    for row in &rows {
        let number = |key: &str| {
            row[key]
                .as_u64()
                .unwrap_or_else(|| panic!("{key} is a number: {row}"))
        };
        assert_eq!(row["binary"], binary.name(), "{row}");
        assert_eq!(number("reply"), 250, "{row}");
        assert_eq!(number("max_message_size"), max, "{row}");
        assert_eq!(number("message_bytes"), max, "{row}");
        let (idle, peak) = (number("idle_rss_kib"), number("peak_rss_kib"));
        assert!(idle > 0 && peak >= idle, "{row}");
        assert_eq!(number("peak_over_idle_kib"), peak - idle, "{row}");
        let per_max = row["peak_over_idle_per_max"].as_f64().expect("a ratio");
        assert!(
            (per_max - (peak - idle) as f64 * 1024.0 / max as f64).abs() < 1e-6,
            "{row}"
        );
        assert!(number("show_daemon_peak_kib") > 0, "{row}");
        assert_eq!(
            number("show_daemon_over_idle_kib"),
            number("show_daemon_peak_kib").saturating_sub(idle),
            "{row}"
        );
        assert!(number("show_cli_peak_kib") > 0, "{row}");
        assert!(number("show_output_bytes") > 0, "{row}");
        let _ = number("deliver_ms");
    }
}

// --- item 13: control characters ----------------------------------------------------------

fn control_characters_in_a_body_never_reach_the_terminal(binary: Binary) {
    let server = server_with(binary, Settings::default());
    let mut c = logged_in(&server);
    // OSC 52 (write the clipboard) ended by BEL, a CSI in its C1 form (U+009B, UTF-8 C2 9B),
    // and ESC [ in a colour run and in a link.
    let body = "Subject: =?utf-8?q?hi=1B]0;title=07?=\r\n\
                Content-Type: text/plain; charset=utf-8\r\n\r\n\
                before\x1b]52;c;ZWNobyBwd25lZA==\x07after\r\n\
                \u{9b}2J cleared\r\n\
                <red>\x1b[31mred https://a.example/\x1b[0m\r\n";
    assert_eq!(send(&mut c, body.as_bytes()), 250);
    c.command("QUIT", 221);

    let is_control = |c: char| c.is_control() && c != '\n' && c != '\t';
    for (args, shows) in [
        (&["messages", "show", "1", "--html"][..], "cleared"),
        (&["messages", "show", "1"][..], "cleared"),
        (&["messages", "list"][..], "hi"),
    ] {
        let out = server.cli(args, None).success();
        let text = String::from_utf8(out.stdout).expect("UTF-8 output");
        assert!(!text.contains(is_control), "{args:?} printed {text:?}");
        assert!(text.contains(shows), "{args:?} shows the message: {text:?}");
    }
    // The stored text keeps what was sent; only what is shown is cleaned.
    let shown = show_json(&server, 1);
    assert!(
        shown["text"]
            .as_str()
            .unwrap_or_default()
            .contains('\u{1b}')
    );
}

atacama_tests::end_to_end!(
    nested_mime_is_stored_with_a_problem_and_the_session_goes_on,
    html_past_its_limit_is_cut_and_the_cut_recorded,
    control_characters_in_a_body_never_reach_the_terminal;
    // bench-memory starts servers of its own, on redb.
    redb_only:
    memory_benchmark_prints_consistent_fields,
);
