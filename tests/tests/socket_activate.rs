//! Socket activation end to end with systemd's own tool: `systemd-socket-activate` binds the
//! two ports, starts the daemon on the first connection with `LISTEN_FDS` and
//! `LISTEN_FDNAMES`, and the daemon reports READY=1 (then STOPPING=1) to a `NOTIFY_SOCKET`
//! this test listens on — what `atacama-mail-submission.socket` and friends do in production.

use std::os::unix::net::UnixDatagram;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use atacama_tests::Binary;
use atacama_tests::client::{Client, plain};
use atacama_tests::server::free_port;

/// Waits for a datagram on `notify` containing `needle`; returns everything received.
fn wait_for(notify: &UnixDatagram, needle: &str, limit: Duration) -> String {
    let started = Instant::now();
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    while started.elapsed() < limit {
        if let Ok(n) = notify.recv(&mut buf) {
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
            seen.push('\n');
            if seen.contains(needle) {
                return seen;
            }
        }
    }
    panic!("no {needle} within {limit:?}; received {seen:?}");
}

struct Activator(Child);

impl Drop for Activator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn socket_activate_serves_and_notifies(binary: Binary) {
    let tool = atacama_tests::tools::find("systemd-socket-activate")
        .unwrap_or_else(|| panic!("systemd-socket-activate is missing: apt-get install systemd"));
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let config = dir.path().join("config.toml");
    // [listen] names ports nobody uses: the daemon must serve the passed sockets instead.
    let (unused_a, unused_b) = (free_port(), free_port());
    std::fs::write(
        &config,
        format!(
            "hostname = \"localhost\"\ndata_dir = \"{}\"\n[listen]\nsubmission = [\"{unused_a}\"]\nsubmissions = [\"{unused_b}\"]\n[auth]\nbcrypt_cost = 4\n",
            data.display()
        ),
    )
    .expect("write config");
    let config_arg = config.display().to_string();
    binary
        .run(
            [
                "--config",
                &config_arg,
                "user",
                "add",
                "alice",
                "--password-stdin",
            ],
            Some(b"s3cret\n"),
        )
        .success();

    let notify_path = dir.path().join("notify");
    let notify = UnixDatagram::bind(&notify_path).expect("bind NOTIFY_SOCKET");
    notify
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let (submission, submissions) = (free_port(), free_port());
    let log = std::fs::File::create(dir.path().join("server.log")).expect("log file");
    let child = Command::new(tool)
        .arg(format!("--listen={submission}"))
        .arg(format!("--listen={submissions}"))
        .arg("--fdname=submission:submissions")
        .arg(format!("--setenv=NOTIFY_SOCKET={}", notify_path.display()))
        .arg("--setenv=RUST_LOG=info")
        .arg(binary.path())
        .args(["--config", &config_arg, "serve"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start systemd-socket-activate");
    let mut activator = Activator(child);

    // The listening sockets exist before the daemon does; the first connection starts it.
    let started = Instant::now();
    let mut client = loop {
        match Client::connect(submission) {
            Ok(client) => break client,
            Err(e) if started.elapsed() > Duration::from_secs(10) => panic!("no listener: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    client.expect(220);
    let ready = wait_for(&notify, "READY=1", Duration::from_secs(20));
    assert!(ready.contains("READY=1"));
    assert!(
        Client::connect(unused_a).is_err(),
        "[listen] is ignored under activation"
    );

    let cert = std::fs::read(data.join("self-signed-cert.pem")).expect("generated certificate");
    client.command("EHLO activation.test", 250);
    client.command("STARTTLS", 220);
    client
        .start_tls(&cert)
        .expect("TLS on the passed submission socket");
    client.command("EHLO activation.test", 250);
    client.command(&format!("AUTH PLAIN {}", plain("alice", "s3cret")), 235);
    client.command("MAIL FROM:<alice@example.org>", 250);
    client.command("RCPT TO:<bob@example.org>", 250);
    client.command("DATA", 354);
    client.command("Subject: activated\r\n\r\n<red>hello\r\n.", 250);
    client.command("QUIT", 221);

    let mut implicit =
        Client::connect_tls(submissions, &cert).expect("TLS on the passed submissions socket");
    implicit.expect(220);
    implicit.command("QUIT", 221);

    let list = binary
        .run(
            ["--config", &config_arg, "messages", "list", "--json"],
            None,
        )
        .success();
    let messages: serde_json::Value = serde_json::from_slice(&list.stdout).expect("JSON list");
    assert_eq!(messages[0]["subject"], "activated");

    // systemd-socket-activate execs the daemon: its pid is the daemon's.
    let pid = activator.0.id().to_string();
    let term = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(term.success());
    wait_for(&notify, "STOPPING=1", Duration::from_secs(10));
    let status = activator.0.wait().expect("wait");
    assert_eq!(status.code(), Some(0), "SIGTERM exits 0");
}

#[test]
fn smol_socket_activate_serves_and_notifies() {
    socket_activate_serves_and_notifies(Binary::Smol);
}

#[test]
fn std_socket_activate_serves_and_notifies() {
    socket_activate_serves_and_notifies(Binary::Std);
}
