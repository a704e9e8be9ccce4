//! Issue 24, items 9–12 and the control part of 3, on both binaries: the data directory is
//! made private and checked, its files are never opened through a link, the command line
//! talks only to a daemon of a trusted uid, a slow control client delays neither another
//! client nor the stop, and `messages show` asks the daemon only for what it prints.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use atacama_tests::client::plain;
use atacama_tests::server::free_port;
use atacama_tests::{Binary, Client, Run, Server, tools};

/// How long a command may take here before the test calls it hung.
const COMMAND_LIMIT: Duration = Duration::from_secs(30);

/// A config file with free ports and bcrypt cost 4, and the data directory it names (not
/// created), in a directory of their own.
struct Setup {
    dir: tempfile::TempDir,
    config: PathBuf,
    data: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let config = dir.path().join("atacama.toml");
        std::fs::write(
            &config,
            format!(
                "hostname = \"mail.example.test\"\ndata_dir = {:?}\n[listen]\n\
                 submission = [\"{}\"]\nsubmissions = [\"{}\"]\n[http]\nlisten = []\n[auth]\nbcrypt_cost = 4\n",
                data.display().to_string(),
                free_port(),
                free_port()
            ),
        )
        .unwrap();
        Setup { dir, config, data }
    }

    /// Runs `binary --config … args` to its end (at most [`COMMAND_LIMIT`]).
    fn run(&self, binary: Binary, args: &[&str], stdin: Option<&[u8]>) -> Run {
        run_limited(self.command(binary, args), stdin)
    }

    fn command(&self, binary: Binary, args: &[&str]) -> Command {
        let mut command = Command::new(binary.path());
        command.arg("--config").arg(&self.config).args(args);
        command
    }
}

/// Runs `command` feeding it `stdin`; kills it past [`COMMAND_LIMIT`] (a panic then).
fn run_limited(mut command: Command, stdin: Option<&[u8]>) -> Run {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(mut pipe) = child.stdin.take() {
        let _ = pipe.write_all(stdin.unwrap_or_default());
    }
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > COMMAND_LIMIT {
            let _ = child.kill();
            let output = child.wait_with_output().unwrap();
            panic!(
                "{command:?} did not end within {COMMAND_LIMIT:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let output = child.wait_with_output().unwrap();
    Run {
        code: output.status.code(),
        stdout: output.stdout,
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().mode() & 0o7777
}

fn make_dir(path: &Path, mode: u32) {
    std::fs::create_dir(path).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Exit status 1 and one line on stderr that holds every one of `parts`.
fn assert_failed_saying(run: &Run, parts: &[&str]) {
    assert_eq!(run.code, Some(1), "{run:?}");
    assert_eq!(run.stderr.lines().count(), 1, "{run:?}");
    for part in parts {
        assert!(run.stderr.contains(part), "{part:?} not in {run:?}");
    }
}

// --- item 9: the data directory ----------------------------------------------------------

fn a_data_dir_open_to_others_is_refused_naming_it_and_the_fix(binary: Binary) {
    for mode in [0o755, 0o770] {
        let setup = Setup::new();
        make_dir(&setup.data, mode);
        let data = setup.data.display().to_string();
        let said = format!("data directory {data} is open to other users (mode {mode:04o})");
        let fix = format!("chmod 700 {data}");
        let serve = setup.run(binary, &["serve"], None);
        assert_failed_saying(&serve, &[&said, &fix]);
        let list = setup.run(binary, &["user", "list"], None);
        assert_failed_saying(&list, &[&said, &fix]);
        // Refused before anything was written there, and left as it was.
        assert_eq!(std::fs::read_dir(&setup.data).unwrap().count(), 0);
        assert_eq!(mode_of(&setup.data), mode);
    }
}

fn a_fresh_start_creates_the_data_dir_0700_with_the_generated_certificate(binary: Binary) {
    let server = Server::start(binary);
    assert_eq!(mode_of(&server.data_dir), 0o700);
    let key = server
        .data_dir
        .join(atacama_server::tls::SELF_SIGNED_KEY_FILE);
    assert_eq!(mode_of(&key), 0o600);
    assert!(!server.cert_pem().is_empty());
    // The command line run first makes it the same way.
    let setup = Setup::new();
    setup.run(binary, &["user", "list"], None).success();
    assert_eq!(mode_of(&setup.data), 0o700);
}

/// A user other than root (uid 65534 here, through `setpriv`) is refused a directory it does
/// not own; root may use another user's, and gives it the files it creates there.
fn a_data_dir_of_another_user_is_refused_unless_root_runs(binary: Binary) {
    let setpriv = tools::require("setpriv", "util-linux");
    let setup = Setup::new();
    make_dir(&setup.data, 0o700);
    let mut command = Command::new(setpriv);
    command
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(binary.path())
        .arg("--config")
        .arg(&setup.config)
        .args(["user", "list"]);
    let run = run_limited(command, None);
    let data = setup.data.display().to_string();
    assert_failed_saying(
        &run,
        &[
            &format!("data directory {data} belongs to uid 0, not to uid 65534"),
            &format!("chown -R 65534 {data}"),
        ],
    );

    std::os::unix::fs::chown(&setup.data, Some(65534), Some(65534)).unwrap();
    setup
        .run(
            binary,
            &["user", "add", "alice", "--password-stdin"],
            Some(b"pw\n"),
        )
        .success();
    for file in ["atacama.redb", "atacama.journal"] {
        let metadata = std::fs::metadata(setup.data.join(file)).unwrap();
        assert_eq!((metadata.uid(), metadata.gid()), (65534, 65534), "{file}");
    }
    let list = setup.run(binary, &["user", "list"], None).success();
    assert!(list.stdout_text().contains("alice"), "{list:?}");
}

// --- item 10: files through links -----------------------------------------------------------

fn a_linked_journal_or_certificate_is_refused_and_its_target_untouched(binary: Binary) {
    let setup = Setup::new();
    make_dir(&setup.data, 0o700);
    let target = setup.dir.path().join("precious");
    std::fs::write(&target, "twelve bytes").unwrap();
    let journal = setup.data.join("atacama.journal");
    std::os::unix::fs::symlink(&target, &journal).unwrap();
    let run = setup.run(binary, &["user", "list"], None);
    assert_failed_saying(
        &run,
        &[&format!("{}: is a symbolic link", journal.display())],
    );
    // It once grew to 16 MiB of zeros.
    assert_eq!(std::fs::read(&target).unwrap(), b"twelve bytes");

    std::fs::remove_file(&journal).unwrap();
    let cert = setup.data.join(atacama_server::tls::SELF_SIGNED_CERT_FILE);
    let key = setup.data.join(atacama_server::tls::SELF_SIGNED_KEY_FILE);
    std::os::unix::fs::symlink(&target, &cert).unwrap();
    std::os::unix::fs::symlink(&target, &key).unwrap();
    let run = setup.run(binary, &["serve"], None);
    assert_failed_saying(&run, &[&format!("{}: is a symbolic link", cert.display())]);
    assert_eq!(std::fs::read(&target).unwrap(), b"twelve bytes");
}

// --- item 11: who listens on the socket -----------------------------------------------------

/// Binds a Unix socket at the path given as root (into the root-owned data directory), then
/// becomes uid 65534 before listen, so that SO_PEERCRED shows 65534. It counts the bytes and
/// the passwords that reach it over every connection, until its stdin closes.
const FAKE_LISTENER: &str = r#"
import os, select, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(sys.argv[1])
os.setgroups([])
os.setresgid(65534, 65534, 65534)
os.setresuid(65534, 65534, 65534)
s.listen(16)
print("ready", os.geteuid(), flush=True)
got, conns = b"", []
while True:
    ready, _, _ = select.select([s, sys.stdin] + conns, [], [], 60)
    if not ready or sys.stdin in ready:
        break
    for x in ready:
        if x is s:
            conns.append(s.accept()[0])
        else:
            data = x.recv(65536)
            if data:
                got += data
            else:
                conns.remove(x)
                x.close()
print("received", len(got), got.count(b"hunter2"), flush=True)
"#;

fn a_listener_of_another_uid_is_sent_nothing(binary: Binary) {
    let python = tools::require("python3", "python3");
    let setup = Setup::new();
    make_dir(&setup.data, 0o700);
    let socket = setup.data.join("control.sock");
    let mut fake = Command::new(python)
        .arg("-c")
        .arg(FAKE_LISTENER)
        .arg(&socket)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(fake.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready 65534");

    let run = setup.run(
        binary,
        &["user", "add", "alice", "--password-stdin"],
        Some(b"hunter2\n"),
    );
    assert_failed_saying(
        &run,
        &[
            &format!("control socket {}", socket.display()),
            "runs as uid 65534",
            "nothing was sent to it",
        ],
    );
    drop(fake.stdin.take());
    assert_eq!(lines.next().unwrap().unwrap(), "received 0 0");
    fake.wait().unwrap();
}

// --- item 12: a slow client on the control socket -------------------------------------------

/// Sends a `user list` request to `socket` a byte every `pause`, for at most 20 bytes, in a
/// thread; it stops at the first refused write.
fn trickle(socket: &Path, pause: Duration) -> std::thread::JoinHandle<()> {
    let mut stream = UnixStream::connect(socket).unwrap();
    std::thread::spawn(move || {
        let mut frame = 16u32.to_be_bytes().to_vec();
        frame.extend_from_slice(b"\"Users\"         ");
        for byte in frame {
            if stream.write_all(&[byte]).is_err() {
                return;
            }
            std::thread::sleep(pause);
        }
        let _ = stream.read_to_end(&mut Vec::new());
    })
}

/// One message over implicit TLS as alice.
fn deliver(server: &Server, subject: &str) {
    let mut c = Client::connect_tls(server.submissions, &server.cert_pem()).unwrap();
    c.expect(220);
    c.command("EHLO client.test", 250);
    c.command(&format!("AUTH PLAIN {}", plain("alice", "s3cret")), 235);
    c.command("MAIL FROM:<alice@example.org>", 250);
    c.command("RCPT TO:<bob@example.org>", 250);
    c.command("DATA", 354);
    c.send(format!("Subject: {subject}\r\n\r\nbody\r\n.\r\n"))
        .unwrap();
    c.expect(250);
    c.command("QUIT", 221);
}

fn a_trickling_control_client_delays_neither_the_command_line_nor_the_stop(binary: Binary) {
    let mut server = Server::start(binary);
    server.add_user("alice", "s3cret");
    let socket = server.data_dir.join("control.sock");
    let timed_list = || {
        let started = Instant::now();
        server.cli(&["user", "list"], None).success();
        started.elapsed()
    };
    let unhindered = timed_list();
    // A byte every 0.8 s: under the old per-read timeout of 10 s this held the only slot for
    // as long as it went on.
    let trickler = trickle(&socket, Duration::from_millis(800));
    std::thread::sleep(Duration::from_millis(300));
    let beside_it = timed_list();
    assert!(
        beside_it < unhindered + Duration::from_secs(1),
        "user list took {beside_it:?} beside a trickling client, {unhindered:?} alone"
    );

    // A message only the journal holds (the idle checkpoint comes after a second), then the
    // stop while the trickler is still at it.
    let _second = trickle(&socket, Duration::from_millis(800));
    deliver(&server, "just before the stop");
    server.signal("TERM");
    let stopping = Instant::now();
    let status = server.wait_exit(COMMAND_LIMIT).expect("exited");
    let stop_took = stopping.elapsed();
    assert_eq!(status.code(), Some(0), "{}", server.log());
    assert!(
        stop_took < Duration::from_millis(1500),
        "the stop took {stop_took:?}\n{}",
        server.log()
    );
    eprintln!(
        "{}: user list {unhindered:?} alone, {beside_it:?} beside a trickler; stop {stop_took:?}",
        binary.name()
    );
    let log = server.log();
    assert!(log.contains("stopped"), "{log}");
    assert!(!log.contains("store still in use"), "{log}");
    // The clean stop checkpointed: the command line, opening the file itself, finds nothing
    // to recover.
    let list = server.cli(&["messages", "list"], None).success();
    assert!(!list.stderr.contains("recovered"), "{list:?}");
    assert!(
        list.stdout_text().contains("just before the stop"),
        "{list:?}"
    );
    trickler.join().unwrap();
}

// --- item 3, the control part: only the bodies printed cross the socket ---------------------

fn messages_show_asks_the_daemon_only_for_the_bodies_it_prints(binary: Binary) {
    let server = Server::start(binary);
    server.add_user("alice", "s3cret");
    deliver(&server, "bodies");
    for (args, asked) in [
        (
            &["messages", "show", "1"][..],
            "messages show 1 text=true html=false",
        ),
        (
            &["messages", "show", "1", "--html"][..],
            "messages show 1 text=false html=true",
        ),
        (
            &["messages", "show", "1", "--json"][..],
            "messages show 1 text=true html=true",
        ),
        (
            &["messages", "show", "1", "--raw"][..],
            "messages show 1 --raw",
        ),
    ] {
        server.cli(args, None).success();
        let line = format!("control: {asked}: ok");
        assert!(
            server.log().contains(&line),
            "{line:?} not in\n{}",
            server.log()
        );
    }
}

// All about the data directory, its files and the control socket, which a daemon on
// PostgreSQL does not use for its data.
atacama_tests::end_to_end!(;
    redb_only:
    a_data_dir_open_to_others_is_refused_naming_it_and_the_fix,
    a_fresh_start_creates_the_data_dir_0700_with_the_generated_certificate,
    a_data_dir_of_another_user_is_refused_unless_root_runs,
    a_linked_journal_or_certificate_is_refused_and_its_target_untouched,
    a_listener_of_another_uid_is_sent_nothing,
    a_trickling_control_client_delays_neither_the_command_line_nor_the_stop,
    messages_show_asks_the_daemon_only_for_the_bodies_it_prints,
);
