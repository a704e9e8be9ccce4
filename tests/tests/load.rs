//! The load generator (`smtp-load`, issue 9's measuring tool) against both runtimes: what it
//! reports is what happened, failures are counted by reply code, and its report survives a
//! reader that went away.

use std::process::{Command, Output, Stdio};

use atacama_tests::{Binary, Server, Settings};
use serde_json::Value;

fn smtp_load(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_smtp-load"))
        .args(args)
        .output()
        .expect("smtp-load runs")
}

/// Runs a bounded smtp-load with `--json`; its report.
fn report(args: &[&str]) -> Value {
    let mut all = vec!["--json", "--deadline", "60", "--io-timeout", "20"];
    all.extend_from_slice(args);
    let output = smtp_load(&all);
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "{e}: not one JSON line: {stdout}\nstderr: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

fn stored(server: &Server) -> usize {
    let list = server
        .cli(&["messages", "list", "--json"], None)
        .success()
        .stdout_text();
    let list: Value = serde_json::from_str(&list).expect("messages list --json");
    list.as_array().expect("a list").len()
}

fn counts_what_it_sends_over_both_tls_modes_and_fails_by_reply_code(binary: Binary) {
    let server = Server::start_with(binary, Settings::default());
    server.add_user("alice", "s3cret");
    let ca = server.scratch().join("ca.pem");
    std::fs::write(&ca, server.cert_pem()).expect("write the certificate");
    let ca = ca.to_str().expect("a UTF-8 path");

    let starttls = server.submission.to_string();
    let r = report(&[
        "--addr", &starttls, "--ca", ca, "-c", "3", "-m", "4", "-s", "2048",
    ]);
    assert_eq!(r["tls"], "starttls");
    assert_eq!(r["connections_ok"], 3, "{r}");
    assert_eq!(r["connections_failed"], 0, "{r}");
    assert_eq!(r["messages_ok"], 12, "{r}");
    assert_eq!(r["failures"], serde_json::json!({}), "{r}");
    let ms = |section: &str, q: &str| r[section][q].as_f64().expect("a latency");
    assert!(ms("latency_ms", "p50") > 0.0, "{r}");
    assert!(ms("latency_ms", "p50") <= ms("latency_ms", "p99"), "{r}");
    assert!(ms("latency_ms", "p99") <= ms("latency_ms", "max"), "{r}");
    assert!(ms("login_ms", "p50") > 0.0, "{r}");
    assert!(r["msg_per_s"].as_f64().expect("msg/s") > 0.0, "{r}");
    assert_eq!(stored(&server), 12, "every message it counted is stored");

    let implicit = server.submissions.to_string();
    let r = report(&[
        "--addr",
        &implicit,
        "--implicit",
        "--ca",
        ca,
        "-m",
        "2",
        "--pipelined",
    ]);
    assert_eq!(r["tls"], "implicit");
    assert_eq!(
        (&r["messages_ok"], &r["pipelined"]),
        (&2.into(), &true.into()),
        "{r}"
    );
    assert_eq!(stored(&server), 14);

    // A wrong password: each connection fails at AUTH, counted under the server's 535.
    let r = report(&[
        "--addr",
        &starttls,
        "--ca",
        ca,
        "-c",
        "2",
        "--password",
        "wrong",
    ]);
    assert_eq!(
        (&r["connections_ok"], &r["connections_failed"]),
        (&0.into(), &2.into()),
        "{r}"
    );
    assert_eq!(r["failures"]["535"], 2, "{r}");
    assert_eq!(stored(&server), 14);

    // A certificate it was not told to trust fails the handshake: nothing is sent.
    let other = Server::start_with(binary, Settings::default());
    let r = report(&["--addr", &other.submission.to_string(), "--ca", ca]);
    assert_eq!(r["connections_failed"], 1, "{r}");
    assert_eq!(r["messages_ok"], 0, "{r}");
}

/// `smtp-load … | head -1`: the reader is gone before the report is written (bench-machine's
/// output too).
#[test]
fn a_closed_stdout_is_not_a_crash() {
    let tools = [
        (env!("CARGO_BIN_EXE_smtp-load"), &["--help"][..], 0),
        (
            env!("CARGO_BIN_EXE_smtp-load"),
            &["--addr", "127.0.0.1:9", "--deadline", "5"][..],
            1,
        ),
        (env!("CARGO_BIN_EXE_bench-machine"), &["--help"][..], 0),
    ];
    for (tool, args, expected) in tools {
        let (reader, writer) = std::io::pipe().expect("a pipe");
        drop(reader);
        let output = Command::new(tool)
            .args(args)
            .stdout(Stdio::from(writer))
            .stderr(Stdio::piped())
            .output()
            .expect("the tool runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!stderr.contains("panicked"), "{tool} {args:?}: {stderr}");
        // --help succeeds; a run with nothing listening fails; neither is a panic's 101.
        assert_eq!(
            output.status.code(),
            Some(expected),
            "{tool} {args:?}: {stderr}"
        );
    }
}

/// Only loopback addresses are ever targets of its traffic.
#[test]
fn a_target_off_loopback_is_refused_before_any_connection() {
    let output = smtp_load(&["--addr", "192.0.2.1:587", "--deadline", "5"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("only loopback targets are allowed"),
        "{stderr}"
    );
}

#[test]
fn smol_counts_what_it_sends_over_both_tls_modes_and_fails_by_reply_code() {
    counts_what_it_sends_over_both_tls_modes_and_fails_by_reply_code(Binary::Smol);
}

#[test]
fn std_counts_what_it_sends_over_both_tls_modes_and_fails_by_reply_code() {
    counts_what_it_sends_over_both_tls_modes_and_fails_by_reply_code(Binary::Std);
}

/// `bench-machine`, which `tests/bench.sh` runs before and after its scenarios: every figure
/// is there, and they agree with one another (none is judged: they are this machine's).
#[test]
fn bench_machine_reports_the_machine_it_ran_on() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let output = Command::new(env!("CARGO_BIN_EXE_bench-machine"))
        .args(["--cost", "4", "--dir"])
        .arg(dir.path())
        .output()
        .expect("bench-machine runs");
    assert!(output.status.success(), "{output:?}");
    let m: Value = serde_json::from_slice(&output.stdout).expect("one JSON line");
    let f = |pointer: &str| m.pointer(pointer).and_then(Value::as_f64).unwrap_or(-1.0);
    assert_eq!(m["bcrypt_cost"], 4);
    assert!(f("/verify_ms") > 0.0, "{m}");
    let bound = f("/cores") * 1000.0 / f("/verify_ms");
    assert!((f("/login_bound_per_s") / bound - 1.0).abs() < 0.01, "{m}");
    assert!(
        f("/process_us/back_to_back") > 0.0 && f("/process_us/after_idle") > 0.0,
        "{m}"
    );
    assert_eq!(f("/process_us/idle_us"), 200.0);
    assert!(
        0.0 < f("/fsync_11k_us/p50") && f("/fsync_11k_us/p50") <= f("/fsync_11k_us/p99"),
        "{m}"
    );
    assert!(f("/round_trip_us/channel") > 0.0, "{m}");
    assert!(f("/round_trip_us/loopback_tcp") > 0.0, "{m}");
    // Its scratch files go with it.
    assert_eq!(std::fs::read_dir(dir.path()).expect("the dir").count(), 0);

    let refused = Command::new(env!("CARGO_BIN_EXE_bench-machine"))
        .args(["--cost", "many"])
        .output()
        .expect("bench-machine runs");
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--cost"));
}
