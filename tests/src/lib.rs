//! Helpers for the end-to-end tests: the two binaries, built once per test process, a runner
//! that captures what a command printed, and [`end_to_end!`], which runs each test on both
//! binaries and both stores (redb, and a fresh database of a PostgreSQL the harness starts).

use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// One of the two binaries; both must behave the same wherever they share code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binary {
    /// `atacama-mail`, the smol daemon.
    Smol,
    /// `atacama-mail-std`, the thread-per-connection build.
    Std,
}

impl Binary {
    /// Both binaries, for tests that loop over them.
    pub const ALL: [Binary; 2] = [Binary::Smol, Binary::Std];

    /// The program name, as it prints in errors.
    pub fn name(self) -> &'static str {
        match self {
            Binary::Smol => "atacama-mail",
            Binary::Std => "atacama-mail-std",
        }
    }

    /// The built binary; the first call in a test process builds both.
    ///
    /// `cargo test` builds only the test targets, not the binaries of other packages, so we run
    /// `$CARGO build` once (cargo has released its lock by the time tests run).
    pub fn path(self) -> PathBuf {
        static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
        match BUILT.get_or_init(build) {
            Ok(dir) => dir.join(self.name()),
            Err(error) => panic!("building the binaries failed:\n{error}"),
        }
    }

    /// Runs the binary with `args`, feeding it `stdin` (or nothing: stdin is closed).
    pub fn run<I, S>(self, args: I, stdin: Option<&[u8]>) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut child = Command::new(self.path())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.name()));
        if let Some(mut pipe) = child.stdin.take() {
            // A command that exits without reading stdin closes the pipe: not our failure.
            let _ = pipe.write_all(stdin.unwrap_or_default());
        }
        let output = child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("cannot wait for {}: {e}", self.name()));
        Run {
            code: output.status.code(),
            stdout: output.stdout,
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

/// What a finished command did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// The exit status; `None` if a signal ended it.
    pub code: Option<i32>,
    /// Everything it wrote to stdout.
    pub stdout: Vec<u8>,
    /// Everything it wrote to stderr.
    pub stderr: String,
}

impl Run {
    /// stdout as text (lossy).
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Panics with everything it printed unless it exited 0.
    pub fn success(self) -> Run {
        assert_eq!(self.code, Some(0), "expected success; {self:?}");
        self
    }
}

/// Builds both binaries in the test's profile; returns the directory holding them.
fn build() -> Result<PathBuf, String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    // cargo sets CARGO_MANIFEST_DIR, CARGO_PKG_NAME… for the test process; ring's build
    // script watches them, so passing them on would rebuild ring, rustls and both binaries
    // on every test run (and again on the next plain cargo command).
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if key.starts_with("CARGO_PKG_")
            || key.starts_with("CARGO_MANIFEST_")
            || matches!(
                key.as_ref(),
                "CARGO_CRATE_NAME" | "CARGO_PRIMARY_PACKAGE" | "CARGO_TARGET_TMPDIR"
            )
        {
            command.env_remove(key.as_ref());
        }
    }
    command.args([
        "build",
        "--bins",
        "-p",
        "atacama-mail",
        "-p",
        "atacama-mail-std",
    ]);
    if !cfg!(debug_assertions) {
        command.arg("--release");
    }
    let output = command
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    profile_dir(&exe).ok_or_else(|| format!("no target directory above {}", exe.display()))
}

/// target/<profile>/deps/<test binary> → target/<profile>.
fn profile_dir(exe: &Path) -> Option<PathBuf> {
    let deps = exe.parent()?;
    let dir = if deps.file_name()? == "deps" {
        deps.parent()?
    } else {
        deps
    };
    Some(dir.to_path_buf())
}

pub mod browser;
pub mod client;
pub mod http;
pub mod load;
pub mod server;
pub mod tools;

pub use client::Client;
pub use server::{Server, Settings, StoreSetting};

/// The store an end-to-end test runs on: each [`end_to_end!`] test runs on both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StoreKind {
    /// redb in the server's data directory.
    #[default]
    Redb,
    /// A fresh database of the test binary's shared PostgreSQL per server.
    Postgres,
}

std::thread_local! {
    /// Set by the test [`end_to_end!`] generates, for the servers its thread starts: a
    /// thread-local rather than a parameter, so the tests stay functions of the [`Binary`].
    static STORE: std::cell::Cell<StoreKind> = const { std::cell::Cell::new(StoreKind::Redb) };
}

/// The store of the test running on this thread (redb unless [`on_store`] said otherwise).
pub fn store_of_this_test() -> StoreKind {
    STORE.with(std::cell::Cell::get)
}

/// Runs `test` with the servers it starts on this thread keeping their data in `store`.
pub fn on_store<T>(store: StoreKind, test: impl FnOnce() -> T) -> T {
    /// Puts the previous store back, also when the test panics: with `--test-threads=1` the
    /// next test runs on the same thread.
    struct Restore(StoreKind);
    impl Drop for Restore {
        fn drop(&mut self) {
            STORE.with(|cell| cell.set(self.0));
        }
    }
    let _restore = Restore(STORE.with(|cell| cell.replace(store)));
    test()
}

/// Starts `binary` with `settings` and the user alice / s3cret.
pub fn server_with(binary: Binary, settings: Settings) -> Server {
    let server = Server::start_with(binary, settings);
    server.add_user("alice", "s3cret");
    server
}

/// Implicit TLS, EHLO, and AUTH PLAIN as alice: a session ready for MAIL.
pub fn logged_in(server: &Server) -> Client {
    let mut c = Client::connect_tls(server.submissions, &server.cert_pem()).expect("connect");
    c.expect(220);
    c.command("EHLO client.test", 250);
    c.command(
        &format!("AUTH PLAIN {}", client::plain("alice", "s3cret")),
        235,
    );
    c
}

/// The reply code to AUTH PLAIN as `user` with `password`, on a new implicit-TLS session
/// (QUIT after).
pub fn login_code(server: &Server, user: &str, password: &str) -> u16 {
    let mut c = Client::connect_tls(server.submissions, &server.cert_pem()).expect("connect");
    c.expect(220);
    c.command("EHLO client.test", 250);
    c.send(format!("AUTH PLAIN {}\r\n", client::plain(user, password)))
        .expect("send");
    let code = c.reply().expect("a reply to AUTH").code;
    c.command("QUIT", 221);
    code
}

/// A lettre mailer logged in as alice (password `s3cret`) over STARTTLS, trusting the
/// server's generated certificate.
pub fn mailer(server: &Server) -> lettre::SmtpTransport {
    use lettre::transport::smtp::authentication::{Credentials, Mechanism};
    use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
    let tls = TlsParameters::builder("localhost".to_owned())
        .add_root_certificate(Certificate::from_pem(&server.cert_pem()).expect("PEM"))
        .build_rustls()
        .expect("TLS parameters");
    lettre::SmtpTransport::builder_dangerous("127.0.0.1")
        .port(server.submission.port())
        .tls(Tls::Required(tls))
        .credentials(Credentials::new("alice".into(), "s3cret".into()))
        .authentication(vec![Mechanism::Plain])
        .timeout(Some(std::time::Duration::from_secs(20)))
        .build()
}

/// Sends like a real client: a temporary failure is tried again (clients that share
/// 127.0.0.1 may have only 5 logins in flight at once: `454 4.7.0` for the others).
pub fn send_retrying(
    mailer: &lettre::SmtpTransport,
    message: &lettre::Message,
) -> Result<(), lettre::transport::smtp::Error> {
    use lettre::Transport as _;
    // Bounded by time, not by tries: on a loaded machine 50 clients take turns for long.
    let give_up = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let mut attempts: u64 = 0;
    loop {
        match mailer.send(message) {
            Err(error) if error.is_transient() && std::time::Instant::now() < give_up => {
                attempts += 1;
                std::thread::sleep(std::time::Duration::from_millis(10 + attempts * 7 % 50));
            }
            result => return result.map(drop),
        }
    }
}

/// Whether `condition` holds within `limit`, looking every 20 ms (log lines trail the
/// events they report).
pub fn eventually(limit: std::time::Duration, mut condition: impl FnMut() -> bool) -> bool {
    let started = std::time::Instant::now();
    while started.elapsed() < limit {
        if condition() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    condition()
}

/// Instantiates each end-to-end test of a file, a function of the [`Binary`], for both
/// binaries and both stores: `mod smol` and `mod std_threads` on redb (not `mod std`, which
/// would shadow the standard library in the file), `mod smol_postgres` and `mod std_postgres`
/// on PostgreSQL. Tests after `; redb_only:` run on redb alone: they are about the data
/// directory's file, its journal or the control socket; the file says why for each.
#[macro_export]
macro_rules! end_to_end {
    ($($test:ident),* $(,)? $(; redb_only: $($redb:ident),* $(,)?)?) => {
        mod smol {
            $( #[test] fn $test() { super::$test($crate::Binary::Smol) } )*
            $($( #[test] fn $redb() { super::$redb($crate::Binary::Smol) } )*)?
        }
        mod std_threads {
            $( #[test] fn $test() { super::$test($crate::Binary::Std) } )*
            $($( #[test] fn $redb() { super::$redb($crate::Binary::Std) } )*)?
        }
        mod smol_postgres {
            $( #[test] fn $test() {
                $crate::on_store($crate::StoreKind::Postgres, || super::$test($crate::Binary::Smol))
            } )*
        }
        mod std_postgres {
            $( #[test] fn $test() {
                $crate::on_store($crate::StoreKind::Postgres, || super::$test($crate::Binary::Std))
            } )*
        }
    };
}
