//! Replays the fuzz seed corpora and every saved regression through the fuzz targets
//! (`atacama_core::testing::fuzz`), so CI checks them without a fuzzer.
//!
//! `fuzz/corpus/<target>/` must hold seeds for every target; `fuzz/regressions/<target>/`
//! holds the inputs the fuzzer found, named after what they caught.

use std::fs;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use atacama_core::smtp::{AuthOutcome, MailVerdict};
use atacama_core::testing::fuzz::{self, Limits, Script, Step};
use atacama_core::testing::plain;

type Target = fn(&[u8]);

const TARGETS: [(&str, Target); 6] = [
    ("session", fuzz::session),
    ("command", fuzz::command),
    ("sasl", fuzz::sasl),
    ("markup", fuzz::markup),
    ("message", fuzz::message),
    ("http", fuzz::http),
];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// The files of `dir`, sorted; panics if it is missing or empty, so a moved or deleted
/// corpus cannot make the replay pass vacuously.
fn files(dir: &Path) -> Vec<PathBuf> {
    let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} is empty", dir.display());
    files
}

/// Runs every file through `target`; returns the files that failed.
fn replay(target: Target, files: &[PathBuf]) -> Vec<String> {
    files
        .iter()
        .filter(|path| {
            let data = fs::read(path).unwrap();
            catch_unwind(AssertUnwindSafe(|| target(&data))).is_err()
        })
        .map(|path| path.display().to_string())
        .collect()
}

fn target(name: &str) -> Target {
    match TARGETS.iter().find(|(n, _)| *n == name) {
        Some((_, target)) => *target,
        None => panic!("no fuzz target {name}"),
    }
}

fn replay_corpus(name: &str) {
    let failed = replay(target(name), &files(&fuzz_dir().join("corpus").join(name)));
    assert!(failed.is_empty(), "seeds that fail: {failed:#?}");
}

#[test]
fn session_corpus_passes() {
    replay_corpus("session");
}

#[test]
fn command_corpus_passes() {
    replay_corpus("command");
}

#[test]
fn sasl_corpus_passes() {
    replay_corpus("sasl");
}

#[test]
fn markup_corpus_passes() {
    replay_corpus("markup");
}

#[test]
fn message_corpus_passes() {
    replay_corpus("message");
}

#[test]
fn http_corpus_passes() {
    replay_corpus("http");
}

#[test]
fn every_regression_passes() {
    let root = fuzz_dir().join("regressions");
    let mut failed = Vec::new();
    let mut count = 0;
    for dir in fs::read_dir(&root).unwrap_or_else(|e| panic!("{}: {e}", root.display())) {
        let dir = dir.unwrap().path();
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        // A directory named after no target would never be replayed.
        let files = files(&dir);
        count += files.len();
        failed.extend(replay(target(&name), &files));
    }
    assert!(count > 0, "no regressions under {}", root.display());
    assert!(
        failed.is_empty(),
        "regressions that fail again: {failed:#?}"
    );
}

/// Rewrites `fuzz/corpus/session/` from the conversations below:
/// `cargo test -p atacama-core --test fuzz_replay -- --ignored write_session_seeds`.
#[test]
#[ignore = "writes the seed corpus"]
fn write_session_seeds() {
    let dir = fuzz_dir().join("corpus/session");
    fs::create_dir_all(&dir).unwrap();
    for (name, script) in session_seeds() {
        fs::write(dir.join(format!("seed-{name}")), script.into_bytes()).unwrap();
    }
}

/// A short message as Thunderbird sends it.
const THUNDERBIRD: &str = "Message-ID: <3f1c2a9e-7b1d-4c55-9a0e-2d1f0c9b8e11@example.org>\r\n\
Date: Tue, 5 Mar 2024 09:15:02 +0100\r\n\
MIME-Version: 1.0\r\n\
User-Agent: Mozilla Thunderbird\r\n\
Content-Language: en-US\r\n\
To: Bob <bob@example.org>\r\n\
From: Alice <alice@example.org>\r\n\
Subject: Lunch on Friday?\r\n\
Content-Type: text/plain; charset=UTF-8; format=flowed\r\n\
Content-Transfer-Encoding: 7bit\r\n\
\r\n\
Hi Bob,\r\n\
\r\n\
(<green>yes) to the usual place at noon?\r\n\
\r\n\
.. Alice\r\n";

/// swaks' default test message.
const SWAKS: &str = "Date: Tue, 05 Mar 2024 09:20:11 +0000\r\n\
To: bob@example.org\r\n\
From: alice@example.org\r\n\
Subject: test Tue, 05 Mar 2024 09:20:11 +0000\r\n\
Message-Id: <20240305092011.012345@client.test>\r\n\
X-Mailer: swaks v20201014.0 jetmore.org/john/code/swaks/\r\n\
\r\n\
This is a test mailing\r\n\
\r\n";

/// A multipart message as Apple Mail sends it, trimmed.
const APPLE_MAIL: &str = "From: Alice <alice@example.org>\r\n\
Content-Type: multipart/alternative;\r\n\
\tboundary=\"Apple-Mail=_5B2E1C4A-0F3D\"\r\n\
Mime-Version: 1.0 (Mac OS X Mail 16.0)\r\n\
Subject: =?utf-8?Q?Caf=C3=A9?=\r\n\
Date: Tue, 5 Mar 2024 10:01:44 +0100\r\n\
To: bob@example.org\r\n\
\r\n\
--Apple-Mail=_5B2E1C4A-0F3D\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
\r\n\
Caf=C3=A9 at 3?\r\n\
--Apple-Mail=_5B2E1C4A-0F3D\r\n\
Content-Type: text/html; charset=utf-8\r\n\
\r\n\
<html><body>Caf&eacute; at 3?</body></html>\r\n\
--Apple-Mail=_5B2E1C4A-0F3D--\r\n";

fn implicit() -> Script {
    Script::new(&Limits::roomy(true))
}

fn plaintext() -> Script {
    Script::new(&Limits::roomy(false))
}

fn data(body: &str) -> String {
    format!("{body}.\r\n")
}

fn session_seeds() -> Vec<(&'static str, Script)> {
    let alice = plain("alice", "s3cret");
    let ir = format!("AUTH PLAIN {alice}\r\n");
    vec![
        (
            "thunderbird-465",
            implicit()
                .send("EHLO [192.168.1.23]\r\n")
                .send(&ir)
                .step(Step::Auth(AuthOutcome::Accepted))
                .send("MAIL FROM:<alice@example.org> SIZE=612\r\n")
                .send("RCPT TO:<bob@example.org>\r\n")
                .send("DATA\r\n")
                .send(data(THUNDERBIRD))
                .step(Step::Delivery(true))
                .send("QUIT\r\n"),
        ),
        (
            "swaks-starttls-login",
            plaintext()
                .send("EHLO client.test\r\n")
                .send("STARTTLS\r\n")
                .step(Step::TlsEstablished)
                .send("EHLO client.test\r\n")
                .send("AUTH LOGIN\r\n")
                .send("YWxpY2U=\r\n")
                .send("czNjcmV0\r\n")
                .step(Step::Auth(AuthOutcome::Accepted))
                .send("MAIL FROM:<alice@example.org>\r\n")
                .send("RCPT TO:<bob@example.org>\r\n")
                .send("DATA\r\n")
                .send(data(SWAKS))
                .step(Step::Delivery(true))
                .send("QUIT\r\n"),
        ),
        (
            "msmtp-pipelined",
            implicit()
                .send("EHLO laptop.example.org\r\n")
                .send(format!("AUTH PLAIN {alice}\r\n"))
                .step(Step::Auth(AuthOutcome::Accepted))
                .send(
                    "MAIL FROM:<alice@example.org> BODY=8BITMIME\r\n\
                     RCPT TO:<bob@example.org>\r\nRCPT TO:<carol@example.net>\r\nDATA\r\n",
                )
                .send(data(APPLE_MAIL))
                .step(Step::Delivery(true))
                .send("QUIT\r\n"),
        ),
        (
            "outlook-auth-plain-continuation",
            implicit()
                .send("EHLO DESKTOP-4KQ2M7T\r\n")
                .send("AUTH PLAIN\r\n")
                .send(format!("{alice}\r\n"))
                .step(Step::Auth(AuthOutcome::Accepted))
                .send("MAIL FROM:<Alice@Example.org>\r\nRCPT TO:<bob@example.org>\r\n")
                .send("DATA\r\n")
                .send(data(SWAKS))
                .step(Step::Delivery(false))
                .send("RSET\r\nQUIT\r\n"),
        ),
        (
            "lettre-smtputf8",
            implicit()
                .send("EHLO client.test\r\n")
                .send(&ir)
                .step(Step::Auth(AuthOutcome::Accepted))
                .send("MAIL FROM:<alice@example.org> SMTPUTF8 BODY=8BITMIME\r\n")
                .send("RCPT TO:<jörg@bücher.example>\r\nRCPT TO:<Postmaster>\r\n")
                .send("DATA\r\n")
                .send(data("Subject: Grüße\r\n\r\nHallo!\r\n"))
                .step(Step::Delivery(true))
                .send("QUIT\r\n"),
        ),
        (
            "wrong-password-then-right",
            implicit()
                .send("EHLO client.test\r\n")
                .send(format!("AUTH PLAIN {}\r\n", plain("alice", "guess")))
                .step(Step::Auth(AuthOutcome::Rejected))
                .send(format!("AUTH PLAIN {}\r\n", plain("alice", "s3cret")))
                .step(Step::Auth(AuthOutcome::TemporaryFailure))
                .send(&ir)
                .step(Step::Auth(AuthOutcome::Accepted))
                .send("AUTH LOGIN\r\nNOOP\r\nQUIT\r\n"),
        ),
        (
            "starttls-injection",
            plaintext()
                .send("EHLO c.test\r\nSTARTTLS\r\nMAIL FROM:<evil@x.test>\r\n")
                .send("RSET\r\n")
                .step(Step::TlsEstablished)
                .send("EHLO c.test\r\nSTARTTLS\r\nQUIT\r\n"),
        ),
        (
            "plaintext-refusals",
            plaintext()
                .send("HELO c.test\r\nAUTH PLAIN\r\nMAIL FROM:<a@b>\r\nVRFY bob\r\nHELP\r\n")
                .send("GET / HTTP/1.1\r\nHost: mx.test\r\n\r\n"),
        ),
        (
            "tls-on-plain-port",
            plaintext().send(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"),
        ),
        (
            "smuggling",
            implicit()
                .send("EHLO c.test\r\n")
                .send(&ir)
                .step(Step::Auth(AuthOutcome::Accepted))
                .send("MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n")
                .send("Subject: x\r\n\r\na\n.\nMAIL FROM:<ceo@example.org>\r\n")
                .send("b\r\n.\r\r\nc\r\n\0.\r\n..stuffed\r\n.")
                .send("\r\n")
                .send("QUIT\r\n"),
        ),
        (
            "received-loop-and-big-header",
            implicit()
                .send("EHLO c.test\r\n")
                .send(&ir)
                .step(Step::Auth(AuthOutcome::Accepted))
                .send("MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n")
                .send(data(
                    "Received: from a\r\nReceived: from b\r\nReceived: from c\r\n\
                     Received: from d\r\n\r\nloop\r\n",
                ))
                .send("MAIL FROM:<alice@example.org> SIZE=99999999\r\n")
                .send("MAIL FROM:<bob@example.org>\r\nMAIL FROM:<>\r\n"),
        ),
        (
            "slow-client-timeouts",
            implicit()
                .send("EHLO c.test\r\n")
                .step(Step::Wait(30))
                .send(&ir)
                .step(Step::Auth(AuthOutcome::Accepted))
                .send("MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n")
                .send("Subject: slow\r\n")
                .step(Step::Wait(50))
                .send("line\r\n")
                .step(Step::WaitForDeadline),
        ),
        (
            "shutdown-mid-transaction",
            implicit()
                .send("EHLO c.test\r\n")
                .send(&ir)
                .step(Step::Auth(AuthOutcome::Accepted))
                .send("MAIL FROM:<alice@example.org>\r\n")
                .step(Step::Shutdown)
                .send("RCPT TO:<bob@example.org>\r\nDATA\r\nhi\r\n.\r\n")
                .step(Step::Delivery(true))
                .send("NOOP\r\n"),
        ),
        (
            "peer-closes-mid-data",
            implicit()
                .send("EHLO c.test\r\n")
                .send(&ir)
                .step(Step::Auth(AuthOutcome::Accepted))
                .send("MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n")
                .send("Subject: cut\r\n\r\npartial")
                .step(Step::PeerClose),
        ),
        (
            "bad-commands-and-long-lines",
            plaintext()
                .send("EHLO a(b\r\nFOO\r\nMAIL TO:<x>\r\nNOOP\0\r\n")
                .send("x".repeat(300))
                .send("\r\n")
                .step(Step::ReceiveRaw(&[b'y'; 255]))
                .send("\r\nQUIT\r\n"),
        ),
        (
            "login-cancelled-and-bad-base64",
            implicit()
                .send("EHLO c.test\r\nAUTH LOGIN\r\n*\r\nAUTH PLAIN !!!\r\n")
                .send("AUTH PLAIN =\r\nAUTH LOGIN YWxpY2U=\r\n=\r\n")
                .send(format!("AUTH PLAIN {}\r\n", plain("bob", "x")))
                .step(Step::Auth(AuthOutcome::Accepted))
                .send("MAIL FROM:<alice@example.org>\r\nQUIT\r\n"),
        ),
        (
            // Issue 24: a MAIL below the free-space floor, then one whose login was revoked.
            "mail-checks-no-space-then-revoked",
            implicit()
                .send("EHLO c.test\r\n")
                .send(&ir)
                .step(Step::Auth(AuthOutcome::Accepted))
                .step(Step::MailVerdict(MailVerdict::InsufficientStorage))
                .send("MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@example.org>\r\n")
                .step(Step::MailVerdict(MailVerdict::Unavailable))
                .send("MAIL FROM:<alice@example.org>\r\n")
                .step(Step::MailVerdict(MailVerdict::Accepted))
                .send("MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n")
                .send(data("Subject: one\r\n\r\nhi\r\n"))
                .step(Step::Delivery(true))
                .step(Step::MailVerdict(MailVerdict::LoginRevoked))
                .send("MAIL FROM:<alice@example.org>\r\n"),
        ),
        (
            // Issue 24: NOOPs without a login until the preauth budget ends the session.
            "preauth-noop-flood",
            plaintext().send("NOOP\r\n".repeat(25)),
        ),
        (
            // Issue 24: a message trickled below the minimum rate past its grace period.
            "data-trickle",
            implicit()
                .send("EHLO c.test\r\n")
                .send(&ir)
                .step(Step::Auth(AuthOutcome::Accepted))
                .send("MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n")
                .step(Step::Wait(20))
                .send("x")
                .step(Step::Wait(20))
                .send("x")
                .step(Step::WaitForDeadline),
        ),
    ]
}
