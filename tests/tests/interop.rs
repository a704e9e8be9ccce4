//! Interop with the mail clients people use: swaks, msmtp, curl and Python's smtplib, over
//! STARTTLS (587) and implicit TLS (465), against both binaries. Each client sends a message
//! that is read back with `messages show --json` and checked field by field; the clients that
//! can check certificates trust only the server's own (self-signed) one.
//!
//! A client that is not installed fails its tests with the packages to install: CI
//! (`.ci/run`) installs them; silently skipping would make a green run mean nothing.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use atacama_tests::tools::{self, ToolRun};
use atacama_tests::{Binary, Server, Settings};
use serde_json::{Value, json};

// --- what each test checks ------------------------------------------------------------------

/// The fields a sent message must have once stored. Every one is compared exactly.
struct Expected<'a> {
    subject: &'a str,
    /// The `From:` header as stored (display name included).
    from: &'a str,
    /// The `To:` header as stored.
    to: &'a str,
    /// The text body as stored (the markup source).
    text: &'a str,
    /// The colour the first line's markup asks for: `color-<colour>` must be in the HTML.
    colour: &'a str,
    /// The SASL mechanism the client must have used, as the server logs it.
    mechanism: &'a str,
}

/// Which of the two ports a client uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tls {
    /// 587: plaintext, then STARTTLS.
    StartTls,
    /// 465: TLS from the first byte.
    Implicit,
}

impl Tls {
    fn port(self, server: &Server) -> String {
        match self {
            Tls::StartTls => server.submission.port().to_string(),
            Tls::Implicit => server.submissions.port().to_string(),
        }
    }
}

/// A server with user alice / s3cret (bcrypt cost 4, from the harness).
fn server(binary: Binary) -> Server {
    let server = Server::start(binary);
    server.add_user("alice", "s3cret");
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

/// Message 1 was stored exactly as `expected` says, for alice, from alice to bob.
fn assert_stored(server: &Server, expected: &Expected) {
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
    assert_eq!(shown["attachments"], json!([]), "{shown:#}");
    assert_eq!(shown["problems"], json!([]), "{shown:#}");
    let html = shown["html"].as_str().expect("html is a string");
    assert_eq!(html, atacama_core::markup::render(expected.text));
    assert!(
        html.contains(&format!("colorblock color-{}", expected.colour)),
        "the colour tag is rendered: {html}"
    );
    // The one message came in over TLS, authenticated the way the client was told to.
    let login = format!(
        "auth success user=alice ip=127.0.0.1 mechanism={}",
        expected.mechanism
    );
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

/// The raw message as stored, without the `Received:` field we prepend.
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

/// A message file with CRLF line ends, as clients that upload a file expect it.
fn write_message(server: &Server, name: &str, lines: &[&str]) -> PathBuf {
    let path = server.scratch().join(name);
    let mut text = lines.join("\r\n");
    text.push_str("\r\n");
    std::fs::write(&path, text).expect("write the message file");
    path
}

// --- swaks ------------------------------------------------------------------------------------

const SWAKS_PACKAGES: &str = "swaks libnet-ssleay-perl libauthen-sasl-perl";

/// swaks, which checks no certificate (20201014 has no --tls-verify).
fn swaks(args: &[&str]) -> ToolRun {
    let mut command = Command::new(tools::require("swaks", SWAKS_PACKAGES));
    command.args(["--timeout", "30", "--ehlo", "client.example.org"]);
    command.args(args);
    tools::run(command, None)
}

fn swaks_starttls_auth_plain(binary: Binary) {
    let server = server(binary);
    let run = swaks(&[
        "--server",
        "127.0.0.1",
        "--port",
        &Tls::StartTls.port(&server),
        "--tls",
        "--auth",
        "PLAIN",
        "--auth-user",
        "alice",
        "--auth-password",
        "s3cret",
        "--from",
        "alice@example.org",
        "--to",
        "bob@example.org",
        "--header",
        "Subject: swaks over STARTTLS",
        "--body",
        "<red>Red from swaks",
    ])
    .success("swaks STARTTLS + AUTH PLAIN");
    // swaks ran the whole dialogue itself: it saw TLS come up before AUTH.
    // (`<-` is a plaintext reply, `<~` one inside TLS.)
    let out = &run.stdout;
    assert!(out.contains("<-  220 2.0.0 Ready to start TLS"), "{out}");
    assert!(out.contains("=== TLS started with cipher TLSv1.3"), "{out}");
    assert!(
        out.contains("<~  235 2.7.0 Authentication successful"),
        "{out}"
    );
    assert!(!out.contains("<-  235"), "AUTH only inside TLS: {out}");
    assert_stored(
        &server,
        &Expected {
            subject: "swaks over STARTTLS",
            from: "alice@example.org",
            to: "bob@example.org",
            text: "<red>Red from swaks",
            colour: "red",
            mechanism: "PLAIN",
        },
    );
}

fn swaks_implicit_tls_auth_login(binary: Binary) {
    let server = server(binary);
    let message = write_message(
        &server,
        "swaks.eml",
        &[
            "From: Alice <alice@example.org>",
            "To: Bob <bob@example.org>",
            "Subject: swaks over implicit TLS",
            "",
            "<blue>Blue from swaks",
            "second line",
        ],
    );
    swaks(&[
        "--server",
        "127.0.0.1",
        "--port",
        &Tls::Implicit.port(&server),
        "--tls-on-connect",
        "--auth",
        "LOGIN",
        "--auth-user",
        "alice",
        "--auth-password",
        "s3cret",
        "--from",
        "alice@example.org",
        "--to",
        "bob@example.org",
        "--data",
        &message.display().to_string(),
    ])
    .success("swaks implicit TLS + AUTH LOGIN");
    assert_stored(
        &server,
        &Expected {
            subject: "swaks over implicit TLS",
            from: "Alice <alice@example.org>",
            to: "Bob <bob@example.org>",
            text: "<blue>Blue from swaks\nsecond line",
            colour: "blue",
            mechanism: "LOGIN",
        },
    );
}

// --- msmtp ------------------------------------------------------------------------------------

/// msmtp with no configuration file of its own, checking the server's certificate.
fn msmtp(server: &Server, tls: Tls, auth: &str, password: &str, message: &[u8]) -> ToolRun {
    let port = tls.port(server);
    let starttls = match tls {
        Tls::StartTls => "on",
        Tls::Implicit => "off",
    };
    let mut command = Command::new(tools::require("msmtp", "msmtp"));
    command.args([
        "--file=/dev/null",
        "--host=127.0.0.1",
        &format!("--port={port}"),
        "--timeout=30",
        "--tls=on",
        &format!("--tls-starttls={starttls}"),
        &format!("--tls-trust-file={}", cert_file(server).display()),
        &format!("--auth={auth}"),
        "--user=alice",
        &format!("--passwordeval=echo {password}"),
        "--from=alice@example.org",
        "--domain=client.example.org",
        "bob@example.org",
    ]);
    tools::run(command, Some(message))
}

const MSMTP_MESSAGE: &[u8] = b"From: Alice <alice@example.org>\r\nTo: bob@example.org\r\n\
    Subject: msmtp\r\n\r\n<green>Green from msmtp\r\n";

fn msmtp_starttls_auth_plain(binary: Binary) {
    let server = server(binary);
    msmtp(&server, Tls::StartTls, "plain", "s3cret", MSMTP_MESSAGE).success("msmtp STARTTLS");
    assert_stored(
        &server,
        &Expected {
            subject: "msmtp",
            from: "Alice <alice@example.org>",
            to: "bob@example.org",
            text: "<green>Green from msmtp",
            colour: "green",
            mechanism: "PLAIN",
        },
    );
}

fn msmtp_implicit_tls_auth_login(binary: Binary) {
    let server = server(binary);
    msmtp(&server, Tls::Implicit, "login", "s3cret", MSMTP_MESSAGE).success("msmtp implicit TLS");
    assert_stored(
        &server,
        &Expected {
            subject: "msmtp",
            from: "Alice <alice@example.org>",
            to: "bob@example.org",
            text: "<green>Green from msmtp",
            colour: "green",
            mechanism: "LOGIN",
        },
    );
}

fn msmtp_wrong_password_exits_77_with_535(binary: Binary) {
    let server = server(binary);
    let run = msmtp(&server, Tls::StartTls, "plain", "Wr0ngPass", MSMTP_MESSAGE);
    // sysexits EX_NOPERM: msmtp's "authentication failed".
    assert_eq!(run.code, Some(77), "{run:?}");
    assert!(
        run.stderr
            .contains("server message: 535 5.7.8 Authentication credentials invalid"),
        "{run:?}"
    );
    assert_refused(&server, "Wr0ngPass");
}

// --- curl -------------------------------------------------------------------------------------

/// curl's SMTP client, trusting only the server's certificate. The URL path is the EHLO name
/// (without one, curl 7.88 says `EHLO <upload file name>`).
fn curl(url: &str, cert: &std::path::Path, extra: &[&str], message: &std::path::Path) -> ToolRun {
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
        "--user",
        "alice:s3cret",
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

/// A message whose body has lines that start with a dot: curl must stuff them, we unstuff.
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

fn curl_starttls_auth_plain(binary: Binary) {
    let server = server(binary);
    let message = write_message(&server, "curl.eml", CURL_LINES);
    let url = format!("smtp://{}/client.example.org", server.submission);
    curl(
        &url,
        &cert_file(&server),
        &["--ssl-reqd", "--login-options", "AUTH=PLAIN"],
        &message,
    )
    .success("curl STARTTLS + AUTH PLAIN");
    assert_stored(
        &server,
        &Expected {
            subject: "curl",
            from: "Alice <alice@example.org>",
            to: "Bob <bob@example.org>",
            text: "<yellow>Yellow from curl\n.a line that starts with a dot\n..and two dots",
            colour: "yellow",
            mechanism: "PLAIN",
        },
    );
}

fn curl_implicit_tls_auth_login_raw_is_the_file(binary: Binary) {
    let server = server(binary);
    let message = write_message(&server, "curl.eml", CURL_LINES);
    let url = format!("smtps://{}/client.example.org", server.submissions);
    curl(
        &url,
        &cert_file(&server),
        &["--login-options", "AUTH=LOGIN"],
        &message,
    )
    .success("curl implicit TLS + AUTH LOGIN");
    assert_stored(
        &server,
        &Expected {
            subject: "curl",
            from: "Alice <alice@example.org>",
            to: "Bob <bob@example.org>",
            text: "<yellow>Yellow from curl\n.a line that starts with a dot\n..and two dots",
            colour: "yellow",
            mechanism: "LOGIN",
        },
    );
    // The stored bytes are the file, byte for byte, under our Received: field.
    let (received, rest) = raw_without_received(&server);
    let sent = std::fs::read_to_string(&message).expect("the message file");
    assert_eq!(rest, sent);
    assert!(received.contains("from client.example.org"), "{received}");
    assert!(
        received.contains("by mail.example.test with ESMTPSA id 1;"),
        "{received}"
    );
    let shown = json(&server, &["messages", "show", "1", "--json"]);
    assert_eq!(shown["message_id"], "curl-interop@example.org");
}

// --- Python smtplib ---------------------------------------------------------------------------

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

fn smtplib(server: &Server, tls: Tls, password: &str) -> ToolRun {
    let mode = match tls {
        Tls::StartTls => "starttls",
        Tls::Implicit => "ssl",
    };
    let mut command = Command::new(tools::require("python3", "python3"));
    command.args(["-c", SMTPLIB_SCRIPT, mode, &tls.port(server)]);
    command.arg(cert_file(server)).arg(password);
    tools::run(command, None)
}

/// smtplib's `login()` picks PLAIN (with an initial response) when CRAM-MD5 is not offered.
const SMTPLIB_EXPECTED: Expected<'static> = Expected {
    subject: "Grüße aus Python",
    from: "Alice <alice@example.org>",
    to: "Bob <bob@example.org>",
    text: "<teal>Grün from smtplib\nzweite Zeile",
    colour: "teal",
    mechanism: "PLAIN",
};

fn smtplib_starttls_login(binary: Binary) {
    let server = server(binary);
    let run = smtplib(&server, Tls::StartTls, "s3cret").success("smtplib starttls + login");
    assert_eq!(run.stdout.trim(), "sent, refused: {}");
    assert_stored(&server, &SMTPLIB_EXPECTED);
}

fn smtplib_smtp_ssl_login(binary: Binary) {
    let server = server(binary);
    let run = smtplib(&server, Tls::Implicit, "s3cret").success("smtplib SMTP_SSL + login");
    assert_eq!(run.stdout.trim(), "sent, refused: {}");
    assert_stored(&server, &SMTPLIB_EXPECTED);
}

fn smtplib_wrong_password_raises_535(binary: Binary) {
    let server = server(binary);
    let run = smtplib(&server, Tls::Implicit, "Wr0ngPass");
    assert_eq!(run.code, Some(3), "{run:?}");
    assert_eq!(
        run.stdout.trim(),
        "auth-error 535 5.7.8 Authentication credentials invalid"
    );
    assert_refused(&server, "Wr0ngPass");
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
    server.add_user("alice", "s3cret");
    let message = write_message(&server, "curl.eml", CURL_LINES);
    let port = server.submissions.port();
    let resolve = format!("mail.example.org:{port}:127.0.0.1");
    let url = format!("smtps://mail.example.org:{port}/client.example.org");
    curl(&url, &cert, &["--resolve", &resolve], &message)
        .success("curl trusting the README certificate");
    let shown = json(&server, &["messages", "show", "1", "--json"]);
    assert_eq!(shown["subject"], "curl");
}

/// Instantiates every test for both binaries.
macro_rules! interop {
    ($($test:ident),* $(,)?) => {
        mod smol {
            $( #[test] fn $test() { super::$test(atacama_tests::Binary::Smol) } )*
        }
        // Not `mod std`: that would shadow the standard library in this file.
        mod std_threads {
            $( #[test] fn $test() { super::$test(atacama_tests::Binary::Std) } )*
        }
    };
}

interop!(
    swaks_starttls_auth_plain,
    swaks_implicit_tls_auth_login,
    msmtp_starttls_auth_plain,
    msmtp_implicit_tls_auth_login,
    msmtp_wrong_password_exits_77_with_535,
    curl_starttls_auth_plain,
    curl_implicit_tls_auth_login_raw_is_the_file,
    smtplib_starttls_login,
    smtplib_smtp_ssl_login,
    smtplib_wrong_password_raises_535,
    readme_openssl_certificate_is_served_and_verified,
);
