//! Issue 24 item 2, end to end on both binaries: a full disk. The data directory is a small
//! tmpfs the test mounts (root only; CI runs as root), filled by deliveries until they get
//! `452 4.3.1`, then grown in place (`mount -o remount,size=…`): mail must flow again
//! without a restart, and every message that got `250` must be there.
//!
//! What a fresh data directory takes on the tmpfs before any mail: the journal is 16 MiB
//! long but sparse, and its zero-ahead thread fills 8–9 MiB of it with zeros; the database
//! file is kept 8 MiB of zeros ahead of its last write. So about 18 MiB go before the first
//! message; a 40 MiB tmpfs holds about 20 MiB of mail.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use atacama_tests::client::Reply;
use atacama_tests::{Binary, Client, Server, Settings, logged_in};
use serde_json::Value;

/// The tmpfs at first: full after some tens of messages.
const SMALL_MIB: u64 = 40;
/// The tmpfs once grown.
const GROWN_MIB: u64 = 200;
/// Each message: this much text lz4 cannot shrink much.
const MESSAGE_BYTES: usize = 256 << 10;
/// Bounds the filling: 400 messages of 256 KiB are 100 MiB, more than the tmpfs holds.
const MAX_MESSAGES: usize = 400;
/// Deliveries sent once they fail, to see that their log lines are held back.
const FAILURES: usize = 40;

// --- helpers ------------------------------------------------------------------------------

/// A tmpfs mounted on a directory, unmounted when dropped (even by a panic).
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `mib` MiB on `path`; fails the test, saying why, if it cannot.
    fn mount(path: &Path, mib: u64) -> Tmpfs {
        std::fs::create_dir_all(path).expect("the mount point");
        let output = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={mib}m,mode=0700"),
                "tmpfs",
            ])
            .arg(path)
            .output()
            .expect("run mount");
        assert!(
            output.status.success(),
            "this test mounts a tmpfs for the data directory, which needs root (CI runs as \
             root); mount said: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
        Tmpfs {
            path: path.to_path_buf(),
        }
    }

    /// Grows it in place to `mib` MiB, as an operator freeing space does.
    fn resize(&self, mib: u64) {
        let output = Command::new("mount")
            .args(["-o", &format!("remount,size={mib}m")])
            .arg(&self.path)
            .output()
            .expect("run mount");
        assert!(
            output.status.success(),
            "remount failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: the server may still have its files open.
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// A server whose data directory is a fresh tmpfs of [`SMALL_MIB`], with user alice / s3cret.
struct OnTmpfs {
    // Unmounted first, then the server is killed and its directory removed.
    fs: Tmpfs,
    server: Server,
}

fn on_tmpfs(binary: Binary, settings: Settings) -> OnTmpfs {
    // No free-space floor: the deliveries themselves must meet ENOSPC.
    let mut server = Server::start_with(binary, settings.limit("min_free_space_mb", 0));
    // The harness makes the data directory within its own; the tmpfs goes over it, and the
    // server starts again on it from nothing (a new certificate, an empty database).
    server.kill();
    let fs = Tmpfs::mount(&server.data_dir, SMALL_MIB);
    server.restart();
    server.add_user("alice", "s3cret");
    OnTmpfs { fs, server }
}

/// `len` bytes of base64-alphabet lines, different for each `seed`: lz4 saves a quarter.
fn body(seed: u64, len: usize) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + len / 76 * 2);
    while out.len() < len {
        for _ in 0..76 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            out.push(ALPHABET[(state % 64) as usize]);
        }
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Sends one message on a logged-in session; returns the reply to its end of data, or to
/// MAIL if MAIL was refused (a store that a full disk stopped refuses MAIL too).
fn send(c: &mut Client, subject: &str, seed: u64) -> Reply {
    c.send("MAIL FROM:<alice@example.org>\r\n")
        .expect("send MAIL");
    let mail = c.reply().expect("a reply to MAIL");
    if mail.code != 250 {
        return mail;
    }
    c.command("RCPT TO:<bob@example.org>", 250);
    c.command("DATA", 354);
    let mut message = format!("Subject: {subject}\r\n\r\n").into_bytes();
    message.extend_from_slice(&body(seed, MESSAGE_BYTES));
    message.extend_from_slice(b".\r\n");
    c.send(&message).expect("send the message");
    c.reply().expect("a reply to the end of the data")
}

/// Whether a failed delivery got what a full disk (or another store failure) should get.
fn is_temporary_store_failure(reply: &Reply) -> bool {
    let text = reply.lines.first().map_or("", String::as_str);
    (reply.code == 452 && text.starts_with("4.3.1 "))
        || (reply.code == 451 && text.starts_with("4.3.0 "))
}

/// Delivers until the disk is full, then [`FAILURES`] more; returns the subjects that got
/// `250` and how many got `452 4.3.1`.
fn fill(c: &mut Client) -> (Vec<String>, usize) {
    let mut acknowledged = Vec::new();
    let mut failed = 0;
    let mut no_space = 0;
    let started = Instant::now();
    for n in 0..MAX_MESSAGES {
        let subject = format!("fill {n}");
        let reply = send(c, &subject, n as u64);
        if reply.code == 250 {
            acknowledged.push(subject);
            continue;
        }
        assert!(
            is_temporary_store_failure(&reply),
            "a full disk is 452 4.3.1 (or 451 4.3.0), never {reply:?}"
        );
        no_space += usize::from(reply.code == 452);
        failed += 1;
        if failed > FAILURES {
            eprintln!(
                "{} accepted, then {no_space} of {failed} refused with 452 4.3.1 (the rest \
                 451 4.3.0), in {:?}",
                acknowledged.len(),
                started.elapsed()
            );
            return (acknowledged, no_space);
        }
    }
    panic!("{MAX_MESSAGES} messages of {MESSAGE_BYTES} bytes fitted in {SMALL_MIB} MiB");
}

/// Subjects `messages list --json` shows, asked of the daemon over its control socket.
fn stored_subjects(server: &Server) -> BTreeSet<String> {
    let run = server
        .cli(&["messages", "list", "--json", "--limit", "100000"], None)
        .success();
    let list: Value = serde_json::from_slice(&run.stdout).expect("JSON output");
    list.as_array()
        .expect("a JSON array")
        .iter()
        .map(|m| m["subject"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn error_lines(log: &str) -> usize {
    log.lines().filter(|line| line.contains(" ERROR ")).count()
}

// --- the tests ----------------------------------------------------------------------------

/// Fills the disk with deliveries (452 4.3.1, a few error lines however many fail), grows it,
/// and mail flows again without a restart; every message that got 250 is stored, and none of
/// those that did not.
fn a_full_disk_answers_452_then_mail_flows_again_once_it_is_grown(binary: Binary) {
    full_then_grown(binary, Settings::default());
}

/// The same with one transaction per delivery, stored by the runtime itself.
fn without_group_commit_a_full_disk_answers_452_then_mail_flows_again(binary: Binary) {
    full_then_grown(binary, Settings::default().limit("group_commit", false));
}

fn full_then_grown(binary: Binary, settings: Settings) {
    let OnTmpfs { fs, mut server } = on_tmpfs(binary, settings);
    let errors_before = error_lines(&server.log());
    let mut c = logged_in(&server);
    let (acknowledged, no_space) = fill(&mut c);
    assert!(
        acknowledged.len() >= 10,
        "only {} messages fitted",
        acknowledged.len()
    );
    assert!(no_space > 0, "not one 452 4.3.1 among the failures");
    let log = server.log();
    let errors = error_lines(&log) - errors_before;
    assert!(
        errors <= 4,
        "{errors} error lines for {FAILURES} failed deliveries:\n{log}"
    );

    fs.resize(GROWN_MIB);
    let grown = Instant::now();
    let mut tries = 0;
    let recovered = loop {
        tries += 1;
        let reply = send(&mut c, &format!("after growth {tries}"), 1_000_000 + tries);
        if reply.code == 250 {
            break grown.elapsed();
        }
        assert!(is_temporary_store_failure(&reply), "{reply:?}");
        assert!(
            grown.elapsed() < Duration::from_secs(30),
            "no 250 within 30 s of the remount:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    eprintln!(
        "{}: first 250 {recovered:?} after the remount ({tries} tries), {} messages fitted, \
         {errors} error lines",
        binary.name(),
        acknowledged.len()
    );
    assert!(recovered < Duration::from_secs(10), "{recovered:?}");
    assert!(
        server.wait_exit(Duration::from_millis(1)).is_none(),
        "the daemon still runs: no restart"
    );
    assert!(server.log().contains("store: database reopened after"));

    let mut expected: BTreeSet<String> = acknowledged.into_iter().collect();
    expected.insert(format!("after growth {tries}"));
    assert_eq!(
        stored_subjects(&server),
        expected,
        "every message that got 250 is stored, and only those"
    );
    // And more mail goes through.
    for n in 0..5 {
        assert_eq!(send(&mut c, &format!("later {n}"), 2_000_000 + n).code, 250);
    }
    c.command("QUIT", 221);
}

/// A database that cannot be opened again (here its file replaced by a directory once the
/// disk is full, then the disk grown so that reopening is tried) makes the daemon stop
/// pinging the watchdog, tell systemd it stops, and exit non-zero after
/// `limits.store_reopen_timeout_secs`, so that systemd restarts it.
fn a_database_that_cannot_be_reopened_makes_the_daemon_exit_non_zero(binary: Binary) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let notify = dir.path().join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&notify).expect("bind notify socket");
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    // Read as they come: a full queue (10 datagrams) would block the daemon's notifications.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let listening = std::sync::Arc::clone(&done);
    let listener = std::thread::spawn(move || {
        let mut heard = Vec::new();
        let mut buf = [0u8; 4096];
        while !listening.load(std::sync::atomic::Ordering::Acquire) {
            if let Ok(n) = socket.recv(&mut buf) {
                heard.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
        heard
    });
    let settings = Settings::default()
        .limit("store_reopen_timeout_secs", 2)
        .env("NOTIFY_SOCKET", notify.display())
        .env("WATCHDOG_USEC", 200_000);
    let OnTmpfs { fs, mut server } = on_tmpfs(binary, settings);
    let mut c = logged_in(&server);
    let (acknowledged, _) = fill(&mut c);
    assert!(!acknowledged.is_empty());
    let file = server.data_dir.join("atacama.redb");
    std::fs::rename(&file, server.data_dir.join("moved.redb")).expect("move the database");
    std::fs::create_dir(&file).expect("a directory in its place");
    fs.resize(GROWN_MIB);
    let status = server
        .wait_exit(Duration::from_secs(30))
        .unwrap_or_else(|| panic!("still running:\n{}", server.log()));
    assert_eq!(status.code(), Some(1), "{}", server.log());
    let log = server.log();
    assert!(
        log.contains("store: the database could not be reopened for 2 s"),
        "{log}"
    );
    assert!(
        log.contains("error: the database could not be reopened for 2 s after an I/O error"),
        "{log}"
    );
    // What systemd heard: STOPPING=1, and the watchdog pings stopped there (one may have
    // been on its way).
    done.store(true, std::sync::atomic::Ordering::Release);
    let heard = listener.join().expect("the notification reader");
    let stopping = heard
        .iter()
        .position(|n| n.contains("STOPPING=1"))
        .unwrap_or_else(|| panic!("no STOPPING=1 in {heard:?}"));
    let pings_after = heard[stopping..]
        .iter()
        .filter(|n| n.contains("WATCHDOG=1"))
        .count();
    assert!(pings_after <= 1, "{pings_after} pings after STOPPING=1");
    assert!(
        heard[..stopping].iter().any(|n| n.contains("WATCHDOG=1")),
        "it pinged before"
    );
}

// A full file system under the redb file, and a redb file that cannot be reopened.
atacama_tests::end_to_end!(;
    redb_only:
    a_full_disk_answers_452_then_mail_flows_again_once_it_is_grown,
    without_group_commit_a_full_disk_answers_452_then_mail_flows_again,
    a_database_that_cannot_be_reopened_makes_the_daemon_exit_non_zero,
);
