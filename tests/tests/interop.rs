//! Interop with the mail clients people use: swaks, msmtp, curl and Python's smtplib, over
//! STARTTLS (587) and implicit TLS (465), against both binaries. [`CASES`] is the table of
//! clients × ports (× logins); each binary runs every row of a client in one test, so a
//! failing row names its client, port and binary and hides none of the others. A sent message
//! is read back with `messages show --json` and checked field by field; the clients that can
//! check certificates trust only the server's own (self-signed) one.
//!
//! A client that is not installed fails its tests with the packages to install: CI
//! (`.ci/run`) installs them; silently skipping would make a green run mean nothing.

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use atacama_tests::tools::{self, ToolRun};
use atacama_tests::{Binary, Server, Settings};
use serde_json::{Value, json};

// --- the table ------------------------------------------------------------------------------

/// The mail clients driven.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Client {
    Swaks,
    Msmtp,
    Curl,
    Smtplib,
}

/// Which of the two ports a client uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tls {
    /// 587: plaintext, then STARTTLS.
    StartTls,
    /// 465: TLS from the first byte.
    Implicit,
}

/// What a client is given to send.
#[derive(Debug, Clone, Copy)]
enum Message {
    /// swaks makes it: `--header "Subject: …" --body …`.
    SubjectAndBody(&'static str, &'static str),
    /// These lines, CRLF-ended: a file to send, or msmtp's standard input.
    Lines(&'static [&'static str]),
    /// [`SMTPLIB_SCRIPT`] makes it (a non-ASCII subject and body).
    Script,
}

/// What must come of a row.
#[derive(Debug)]
enum Outcome {
    /// The client exits 0 and message 1 is stored as this says.
    Stored(Expected),
    /// The login is refused: the client exits with this code, and nothing is stored.
    Refused(i32),
}

/// One row: a client on one port, logging in one way, sending one message.
#[derive(Debug)]
struct Case {
    client: Client,
    tls: Tls,
    /// The SASL mechanism, as the server logs it (smtplib picks PLAIN itself).
    mechanism: &'static str,
    password: &'static str,
    message: Message,
    outcome: Outcome,
    /// What the client's output (stdout, then stderr) must hold: the replies it saw.
    said: &'static [&'static str],
    /// What it must not hold.
    not_said: &'static [&'static str],
}

/// The fields a sent message must have once stored. Every one is compared exactly.
#[derive(Debug)]
struct Expected {
    subject: &'static str,
    /// The `From:` header as stored (display name included).
    from: &'static str,
    /// The `To:` header as stored.
    to: &'static str,
    /// The text body as stored (the markup source).
    text: &'static str,
    /// The colour the first line's markup asks for: `color-<colour>` must be in the HTML.
    colour: &'static str,
    /// The `Message-ID:` it carries, if the message sent has one (clients make up their own).
    message_id: Option<&'static str>,
    /// The lines sent, when the stored bytes after our `Received:` field must be exactly them.
    raw: Option<&'static [&'static str]>,
}

const PASSWORD: &str = "s3cret";
const WRONG_PASSWORD: &str = "Wr0ngPass";

/// Every interop row. swaks is given its message both ways it takes one.
const CASES: &[Case] = &[
    Case {
        client: Client::Swaks,
        tls: Tls::StartTls,
        mechanism: "PLAIN",
        password: PASSWORD,
        message: Message::SubjectAndBody("swaks over STARTTLS", "<red>Red from swaks"),
        outcome: Outcome::Stored(Expected {
            subject: "swaks over STARTTLS",
            from: "alice@example.org",
            to: "bob@example.org",
            text: "<red>Red from swaks",
            colour: "red",
            message_id: None,
            raw: None,
        }),
        // swaks ran the whole dialogue itself: it saw TLS come up before AUTH.
        // (`<-` is a plaintext reply, `<~` one inside TLS.)
        said: &[
            "<-  220 2.0.0 Ready to start TLS",
            "=== TLS started with cipher TLSv1.3",
            "<~  235 2.7.0 Authentication successful",
        ],
        not_said: &["<-  235"],
    },
    Case {
        client: Client::Swaks,
        tls: Tls::Implicit,
        mechanism: "LOGIN",
        password: PASSWORD,
        message: Message::Lines(SWAKS_LINES),
        outcome: Outcome::Stored(Expected {
            subject: "swaks over implicit TLS",
            from: "Alice <alice@example.org>",
            to: "Bob <bob@example.org>",
            text: "<blue>Blue from swaks\nsecond line",
            colour: "blue",
            message_id: None,
            raw: None,
        }),
        said: &["<~  235 2.7.0 Authentication successful"],
        not_said: &[],
    },
    Case {
        mechanism: "PLAIN",
        tls: Tls::StartTls,
        ..MSMTP
    },
    Case {
        mechanism: "LOGIN",
        tls: Tls::Implicit,
        ..MSMTP
    },
    Case {
        password: WRONG_PASSWORD,
        // sysexits EX_NOPERM: msmtp's "authentication failed".
        outcome: Outcome::Refused(77),
        said: &["server message: 535 5.7.8 Authentication credentials invalid"],
        ..MSMTP
    },
    Case {
        mechanism: "PLAIN",
        tls: Tls::StartTls,
        ..CURL
    },
    Case {
        mechanism: "LOGIN",
        tls: Tls::Implicit,
        ..CURL
    },
    Case {
        tls: Tls::StartTls,
        ..SMTPLIB
    },
    Case {
        tls: Tls::Implicit,
        ..SMTPLIB
    },
    Case {
        password: WRONG_PASSWORD,
        outcome: Outcome::Refused(3),
        said: &["auth-error 535 5.7.8 Authentication credentials invalid"],
        ..SMTPLIB
    },
];

/// msmtp's rows: STARTTLS with PLAIN unless a row says otherwise.
const MSMTP: Case = Case {
    client: Client::Msmtp,
    tls: Tls::StartTls,
    mechanism: "PLAIN",
    password: PASSWORD,
    message: Message::Lines(&[
        "From: Alice <alice@example.org>",
        "To: bob@example.org",
        "Subject: msmtp",
        "",
        "<green>Green from msmtp",
    ]),
    outcome: Outcome::Stored(Expected {
        subject: "msmtp",
        from: "Alice <alice@example.org>",
        to: "bob@example.org",
        text: "<green>Green from msmtp",
        colour: "green",
        message_id: None,
        raw: None,
    }),
    said: &[],
    not_said: &[],
};

/// curl's rows: a body whose lines start with a dot (curl must stuff them, we unstuff), stored
/// byte for byte.
const CURL: Case = Case {
    client: Client::Curl,
    tls: Tls::StartTls,
    mechanism: "PLAIN",
    password: PASSWORD,
    message: Message::Lines(CURL_LINES),
    outcome: Outcome::Stored(Expected {
        subject: "curl",
        from: "Alice <alice@example.org>",
        to: "Bob <bob@example.org>",
        text: "<yellow>Yellow from curl\n.a line that starts with a dot\n..and two dots",
        colour: "yellow",
        message_id: Some("curl-interop@example.org"),
        raw: Some(CURL_LINES),
    }),
    said: &[],
    not_said: &[],
};

/// smtplib's rows: `login()` picks PLAIN (with an initial response) when CRAM-MD5 is not
/// offered.
const SMTPLIB: Case = Case {
    client: Client::Smtplib,
    tls: Tls::Implicit,
    mechanism: "PLAIN",
    password: PASSWORD,
    message: Message::Script,
    outcome: Outcome::Stored(Expected {
        subject: "Grüße aus Python",
        from: "Alice <alice@example.org>",
        to: "Bob <bob@example.org>",
        text: "<teal>Grün from smtplib\nzweite Zeile",
        colour: "teal",
        message_id: None,
        raw: None,
    }),
    said: &["sent, refused: {}"],
    not_said: &[],
};

const SWAKS_LINES: &[&str] = &[
    "From: Alice <alice@example.org>",
    "To: Bob <bob@example.org>",
    "Subject: swaks over implicit TLS",
    "",
    "<blue>Blue from swaks",
    "second line",
];

const CURL_LINES: &[&str] = &[
    "From: Alice <alice@example.org>",
    "To: Bob <bob@example.org>",
    "Subject: curl",
    "Message-ID: <curl-interop@example.org>",
    "",
    "<yellow>Yellow from curl",
    ".a line that starts with a dot",
    "..and two dots",
];

// --- running a row --------------------------------------------------------------------------

/// Runs every row of `client` against `binary`, then fails naming each row that failed.
fn every_row_of(client: Client, binary: Binary) {
    let rows: Vec<&Case> = CASES.iter().filter(|c| c.client == client).collect();
    assert!(!rows.is_empty(), "no row for {client:?}");
    let failures: Vec<String> = rows
        .iter()
        .filter_map(|case| {
            let failed = catch_unwind(AssertUnwindSafe(|| case.run(binary))).err()?;
            let why = failed
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| failed.downcast_ref::<&str>().copied())
                .unwrap_or("(no message)");
            Some(format!("{case} against {}: {why}", binary.name()))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n\n")
    );
}

// One test per binary × client: its name says which client failed, its message which rows.

fn swaks_rows(binary: Binary) {
    every_row_of(Client::Swaks, binary);
}

fn msmtp_rows(binary: Binary) {
    every_row_of(Client::Msmtp, binary);
}

fn curl_rows(binary: Binary) {
    every_row_of(Client::Curl, binary);
}

fn smtplib_rows(binary: Binary) {
    every_row_of(Client::Smtplib, binary);
}

impl Case {
    /// Sends with a fresh server and checks everything the row says.
    fn run(&self, binary: Binary) {
        let server = server(binary);
        let run = match self.client {
            Client::Swaks => swaks(&server, self),
            Client::Msmtp => msmtp(&server, self),
            Client::Curl => curl_case(&server, self),
            Client::Smtplib => smtplib(&server, self),
        };
        let code = match self.outcome {
            Outcome::Stored(_) => 0,
            Outcome::Refused(code) => code,
        };
        assert_eq!(run.code, Some(code), "{run:?}");
        let output = format!("{}{}", run.stdout, run.stderr);
        for line in self.said {
            assert!(output.contains(line), "{line:?} not in the output: {run:?}");
        }
        for line in self.not_said {
            assert!(!output.contains(line), "{line:?} in the output: {run:?}");
        }
        match &self.outcome {
            Outcome::Stored(expected) => assert_stored(&server, expected, self.mechanism),
            Outcome::Refused(_) => assert_refused(&server, self.password),
        }
    }
}

/// `msmtp on 587 (STARTTLS) with AUTH PLAIN and a wrong password`.
impl fmt::Display for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let port = match self.tls {
            Tls::StartTls => "587 (STARTTLS)",
            Tls::Implicit => "465 (implicit TLS)",
        };
        let client = match self.client {
            Client::Swaks => "swaks",
            Client::Msmtp => "msmtp",
            Client::Curl => "curl",
            Client::Smtplib => "Python smtplib",
        };
        write!(f, "{client} on {port} with AUTH {}", self.mechanism)?;
        if self.password != PASSWORD {
            f.write_str(" and a wrong password")?;
        }
        Ok(())
    }
}

impl Tls {
    fn port(self, server: &Server) -> String {
        match self {
            Tls::StartTls => server.submission.port().to_string(),
            Tls::Implicit => server.submissions.port().to_string(),
        }
    }
}

// --- what each row checks -------------------------------------------------------------------

/// A server with user alice / s3cret (bcrypt cost 4, from the harness).
fn server(binary: Binary) -> Server {
    let server = Server::start(binary);
    server.add_user("alice", PASSWORD);
    server
}

/// The server's self-signed certificate file: the only trust anchor the clients get.
fn cert_file(server: &Server) -> PathBuf {
    server
        .data_dir
        .join(atacama_server::tls::SELF_SIGNED_CERT_FILE)
}

fn json(server: &Server, args: &[&str]) -> Value {
    let run = server.cli(args, None).success();
    serde_json::from_slice(&run.stdout).expect("JSON output")
}

/// Message 1 was stored exactly as `expected` says, for alice, from alice to bob, after a
/// login with `mechanism`.
fn assert_stored(server: &Server, expected: &Expected, mechanism: &str) {
    let listed = json(server, &["messages", "list", "--json"]);
    assert_eq!(
        listed.as_array().map(Vec::len),
        Some(1),
        "exactly one message: {listed:#}"
    );
    let shown = json(server, &["messages", "show", "1", "--json"]);
    assert_eq!(shown["id"], 1, "{shown:#}");
    assert_eq!(shown["user"], "alice", "{shown:#}");
    assert_eq!(shown["mail_from"], "alice@example.org", "{shown:#}");
    assert_eq!(shown["rcpt_to"], json!(["bob@example.org"]), "{shown:#}");
    assert_eq!(shown["subject"], expected.subject, "{shown:#}");
    assert_eq!(shown["from"], expected.from, "{shown:#}");
    assert_eq!(shown["to"], expected.to, "{shown:#}");
    assert_eq!(shown["text"], expected.text, "{shown:#}");
    if let Some(message_id) = expected.message_id {
        assert_eq!(shown["message_id"], message_id, "{shown:#}");
    }
    assert_eq!(shown["attachments"], json!([]), "{shown:#}");
    assert_eq!(shown["problems"], json!([]), "{shown:#}");
    let html = shown["html"].as_str().expect("html is a string");
    assert_eq!(html, atacama_core::markup::render(expected.text));
    assert!(
        html.contains(&format!("colorblock color-{}", expected.colour)),
        "the colour tag is rendered: {html}"
    );
    // Our Received: field names the client's EHLO name and an authenticated TLS session; the
    // bytes after it are what was sent, when the row says so.
    let (received, rest) = raw_without_received(server);
    assert!(received.contains("from client.example.org"), "{received}");
    assert!(
        received.contains("by mail.example.test with ESMTPSA id 1;"),
        "{received}"
    );
    if let Some(lines) = expected.raw {
        assert_eq!(rest, crlf_lines(lines));
    }
    // The one message came in over TLS, authenticated the way the client was told to.
    let login = format!("auth success user=alice ip=127.0.0.1 mechanism={mechanism}");
    assert!(
        eventually(|| server.log().contains(&login)),
        "{login:?} not in the log:\n{}",
        server.log()
    );
    assert!(server.log().contains("message accepted id=1"));
    // A client's habits (an IP address as SNI) are no server warning.
    assert!(
        !server.log().contains("Illegal SNI"),
        "rustls noise in the log:\n{}",
        server.log()
    );
}

/// The raw message as stored, split after the `Received:` field we prepend.
fn raw_without_received(server: &Server) -> (String, String) {
    let raw = server
        .cli(&["messages", "show", "1", "--raw"], None)
        .success()
        .stdout;
    let raw = String::from_utf8(raw).expect("the raw message is UTF-8 here");
    assert!(raw.starts_with("Received: from "), "{raw}");
    // The field ends at the first line break not followed by folding whitespace.
    let mut end = 0;
    while let Some(at) = raw[end..].find("\r\n") {
        end += at + 2;
        if !raw[end..].starts_with([' ', '\t']) {
            break;
        }
    }
    let (received, rest) = raw.split_at(end);
    (received.to_string(), rest.to_string())
}

/// Nothing was stored, and the log has one bad-credentials line (and no password).
fn assert_refused(server: &Server, password: &str) {
    let listed = json(server, &["messages", "list", "--json"]);
    assert_eq!(listed, json!([]), "nothing is stored");
    let failure = "auth failure user=alice ip=127.0.0.1 reason=bad_credentials";
    assert!(
        eventually(|| server.log().contains(failure)),
        "{failure:?} not in the log:\n{}",
        server.log()
    );
    assert!(!server.log().contains(password), "the password was logged");
}

/// Polls `condition` for at most 5 s (log lines may trail the client's exit).
fn eventually(condition: impl FnMut() -> bool) -> bool {
    atacama_tests::eventually(Duration::from_secs(5), condition)
}

/// `lines`, each ended by CRLF, as clients that send a file expect it.
fn crlf_lines(lines: &[&str]) -> String {
    let mut text = lines.join("\r\n");
    text.push_str("\r\n");
    text
}

/// A message file of `lines` in the server's scratch directory.
fn write_message(server: &Server, name: &str, lines: &[&str]) -> PathBuf {
    let path = server.scratch().join(name);
    std::fs::write(&path, crlf_lines(lines)).expect("write the message file");
    path
}

// --- the clients ----------------------------------------------------------------------------

/// swaks, which checks no certificate (20201014 has no --tls-verify).
fn swaks(server: &Server, case: &Case) -> ToolRun {
    let packages = "swaks libnet-ssleay-perl libauthen-sasl-perl";
    let mut command = Command::new(tools::require("swaks", packages));
    command.args(["--timeout", "30", "--ehlo", "client.example.org"]);
    command.args(["--server", "127.0.0.1", "--port", &case.tls.port(server)]);
    command.arg(match case.tls {
        Tls::StartTls => "--tls",
        Tls::Implicit => "--tls-on-connect",
    });
    command.args(["--auth", case.mechanism, "--auth-user", "alice"]);
    command.args(["--auth-password", case.password]);
    command.args(["--from", "alice@example.org", "--to", "bob@example.org"]);
    match case.message {
        Message::SubjectAndBody(subject, body) => {
            command.args(["--header", &format!("Subject: {subject}"), "--body", body]);
        }
        Message::Lines(lines) => {
            command
                .arg("--data")
                .arg(write_message(server, "swaks.eml", lines));
        }
        Message::Script => panic!("swaks sends a message it is given, not a script"),
    }
    tools::run(command, None)
}

/// msmtp with no configuration file of its own, checking the server's certificate.
fn msmtp(server: &Server, case: &Case) -> ToolRun {
    let Message::Lines(lines) = case.message else {
        panic!("msmtp sends the lines of its standard input");
    };
    let starttls = match case.tls {
        Tls::StartTls => "on",
        Tls::Implicit => "off",
    };
    let mut command = Command::new(tools::require("msmtp", "msmtp"));
    command.args([
        "--file=/dev/null",
        "--host=127.0.0.1",
        &format!("--port={}", case.tls.port(server)),
        "--timeout=30",
        "--tls=on",
        &format!("--tls-starttls={starttls}"),
        &format!("--tls-trust-file={}", cert_file(server).display()),
        &format!("--auth={}", case.mechanism.to_ascii_lowercase()),
        "--user=alice",
        &format!("--passwordeval=echo {}", case.password),
        "--from=alice@example.org",
        "--domain=client.example.org",
        "bob@example.org",
    ]);
    tools::run(command, Some(crlf_lines(lines).as_bytes()))
}

/// curl for a row: `smtp://` with `--ssl-reqd` on 587, `smtps://` on 465.
fn curl_case(server: &Server, case: &Case) -> ToolRun {
    let Message::Lines(lines) = case.message else {
        panic!("curl uploads a file of lines");
    };
    let message = write_message(server, "curl.eml", lines);
    let user = format!("alice:{}", case.password);
    let login = format!("AUTH={}", case.mechanism);
    let mut extra = vec!["--user", &user, "--login-options", &login];
    let url = match case.tls {
        Tls::StartTls => {
            extra.push("--ssl-reqd");
            format!("smtp://{}/client.example.org", server.submission)
        }
        Tls::Implicit => format!("smtps://{}/client.example.org", server.submissions),
    };
    curl(&url, &cert_file(server), &extra, &message)
}

/// curl's SMTP client, trusting only `cert`. The URL path is the EHLO name (without one,
/// curl 7.88 says `EHLO <upload file name>`).
fn curl(url: &str, cert: &Path, extra: &[&str], message: &Path) -> ToolRun {
    let mut command = Command::new(tools::require("curl", "curl"));
    command.args([
        "--silent",
        "--show-error",
        "--max-time",
        "30",
        "--url",
        url,
        "--cacert",
        &cert.display().to_string(),
        "--mail-from",
        "alice@example.org",
        "--mail-rcpt",
        "bob@example.org",
        "--upload-file",
        &message.display().to_string(),
    ]);
    command.args(extra);
    tools::run(command, None)
}

/// Sends one `EmailMessage` (non-ASCII subject and body) with smtplib; on a refused login it
/// prints `auth-error CODE MESSAGE` and exits 3.
const SMTPLIB_SCRIPT: &str = r#"
import smtplib, ssl, sys
from email.message import EmailMessage

mode, port, cafile, password = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
ctx = ssl.create_default_context(cafile=cafile)
msg = EmailMessage()
msg["From"] = "Alice <alice@example.org>"
msg["To"] = "Bob <bob@example.org>"
msg["Subject"] = "Grüße aus Python"
msg.set_content("<teal>Grün from smtplib\nzweite Zeile\n")
try:
    if mode == "starttls":
        s = smtplib.SMTP("127.0.0.1", port, local_hostname="client.example.org", timeout=30)
        s.starttls(context=ctx)
    else:
        s = smtplib.SMTP_SSL("127.0.0.1", port, local_hostname="client.example.org",
                             context=ctx, timeout=30)
    with s:
        s.login("alice", password)
        refused = s.send_message(msg, from_addr="alice@example.org", to_addrs=["bob@example.org"])
        print("sent, refused:", refused)
except smtplib.SMTPAuthenticationError as e:
    print("auth-error", e.smtp_code, e.smtp_error.decode())
    sys.exit(3)
"#;

fn smtplib(server: &Server, case: &Case) -> ToolRun {
    assert!(
        matches!(case.message, Message::Script),
        "smtplib sends the script's message"
    );
    let mode = match case.tls {
        Tls::StartTls => "starttls",
        Tls::Implicit => "ssl",
    };
    let mut command = Command::new(tools::require("python3", "python3"));
    command.args(["-c", SMTPLIB_SCRIPT, mode, &case.tls.port(server)]);
    command.arg(cert_file(server)).arg(case.password);
    tools::run(command, None)
}

// --- the README's certificate step ----------------------------------------------------------

/// The `openssl req …` command of README.md (without its `sudo`), continuation lines joined.
fn readme_openssl_command() -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    let start = |l: &str| {
        let l = l.trim_start();
        l.strip_prefix("sudo ")
            .unwrap_or(l)
            .starts_with("openssl req -x509")
    };
    let mut command = String::new();
    for line in readme.lines().skip_while(|l| !start(l)) {
        let text = line.trim();
        command.push_str(
            text.strip_prefix("sudo ")
                .unwrap_or(text)
                .trim_end_matches('\\'),
        );
        command.push(' ');
        if !line.trim_end().ends_with('\\') {
            break;
        }
    }
    assert!(
        command.starts_with("openssl req -x509"),
        "README.md has no `openssl req -x509` line"
    );
    command
}

/// The certificate the README tells operators to make is served, and curl verifies it for the
/// host name in it.
fn readme_openssl_certificate_is_served_and_verified(binary: Binary) {
    let files = tempfile::tempdir().expect("temporary directory");
    let mut openssl = Command::new("sh");
    openssl.args(["-c", &readme_openssl_command()]);
    openssl.current_dir(files.path());
    tools::require("openssl", "openssl");
    tools::run(openssl, None).success("the README's openssl command");
    let (cert, key) = (files.path().join("cert.pem"), files.path().join("key.pem"));
    let server = Server::start_with(binary, Settings::default().tls(&cert, &key));
    server.add_user("alice", PASSWORD);
    let message = write_message(&server, "curl.eml", CURL_LINES);
    let port = server.submissions.port();
    let resolve = format!("mail.example.org:{port}:127.0.0.1");
    let url = format!("smtps://mail.example.org:{port}/client.example.org");
    let extra = ["--user", "alice:s3cret", "--resolve", &resolve];
    curl(&url, &cert, &extra, &message).success("curl trusting the README certificate");
    let shown = json(&server, &["messages", "show", "1", "--json"]);
    assert_eq!(shown["subject"], "curl");
}

atacama_tests::end_to_end!(
    swaks_rows,
    msmtp_rows,
    curl_rows,
    smtplib_rows,
    readme_openssl_certificate_is_served_and_verified,
);
