//! A real PostgreSQL for the tests: Debian's `postgresql` started in a temporary directory on a
//! Unix socket of its own (no TCP: `listen_addresses = ''`), with `fsync` and
//! `synchronous_commit` on as in production, stopped and removed when dropped.
//!
//! `initdb` and `pg_ctl` refuse to run as root, and CI runs as root: there they run as the
//! `postgres` user the Debian package creates, which is given the directory.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Where Debian installs each major version's server programs.
const DEBIAN_BIN: &str = "/usr/lib/postgresql";

/// The unprivileged user the servers run as when the tests run as root.
const SERVER_USER: &str = "postgres";

/// How long `kill` waits for the server's processes to be gone.
const GONE_WITHIN: Duration = Duration::from_secs(10);

/// A PostgreSQL server in a temporary directory; stopped (immediately) and removed when
/// dropped, also by a panic.
pub struct Postgres {
    bin: PathBuf,
    dir: tempfile::TempDir,
    /// `Some(user)` when the tests run as root and the server as `user`.
    run_as: Option<&'static str>,
    /// The password of the user `postgres`, unless it is trusted.
    password: Option<String>,
    /// The loopback port it also listens on, with TLS ([`Postgres::start_tls`]).
    tcp_port: Option<u16>,
    /// Names the next database [`Postgres::fresh_database`] creates.
    next_database: AtomicU64,
}

impl Postgres {
    /// Creates a cluster in a new temporary directory and starts it. Panics, saying what is
    /// missing, if PostgreSQL is not installed.
    pub fn start() -> Postgres {
        Postgres::start_with(None, None)
    }

    /// [`Postgres::start`], its user `postgres` logging in with `password` (SCRAM) rather
    /// than trusted: to test that the client sends one.
    pub fn start_with_password(password: &str) -> Postgres {
        Postgres::start_with(Some(password), None)
    }

    /// [`Postgres::start`], also listening on a free loopback port ([`Postgres::tcp_url`])
    /// with TLS, under the certificate chain `cert_pem` and its key `key_pem`.
    pub fn start_tls(cert_pem: &str, key_pem: &str) -> Postgres {
        Postgres::start_with(None, Some((cert_pem, key_pem)))
    }

    fn start_with(password: Option<&str>, tls: Option<(&str, &str)>) -> Postgres {
        let bin = server_bin().unwrap_or_else(|| {
            panic!(
                "the PostgreSQL tests need a PostgreSQL server: no {DEBIAN_BIN}/*/bin/initdb \
                 and pg_ctl (install the Debian package `postgresql`: tests/run.sh does)"
            )
        });
        let root = crate::data_dir::euid() == 0;
        let dir = tempfile::Builder::new()
            .prefix("atacama-pg-")
            .tempdir()
            .expect("a temporary directory for PostgreSQL");
        let run_as = root.then_some(SERVER_USER);
        let server = Postgres {
            bin,
            dir,
            run_as,
            password: password.map(str::to_string),
            tcp_port: tls.map(|_| free_port()),
            next_database: AtomicU64::new(0),
        };
        server.give(server.dir.path());
        if let Some((cert, key)) = tls {
            for (name, pem) in [("server.crt", cert), ("server.key", key)] {
                let path = server.dir.path().join(name);
                std::fs::write(&path, pem).expect("write the server's certificate and key");
                // The server refuses a key others may read.
                let private = std::fs::Permissions::from_mode(0o600);
                std::fs::set_permissions(&path, private).expect("chmod the key");
                server.give(&path);
            }
        }
        let data = server.data_dir();
        let mut args: Vec<std::ffi::OsString> = vec!["-D".into(), data.into()];
        args.extend(["-U", SERVER_USER, "-E", "UTF8"].map(Into::into));
        // The cluster is thrown away: only the server's own writes need fsync.
        args.push("--no-sync".into());
        match password {
            None => args.extend(["-A", "trust"].map(Into::into)),
            Some(password) => {
                let file = server.dir.path().join("password");
                std::fs::write(&file, password).expect("write the password file");
                server.give(&file);
                args.push(format!("--pwfile={}", file.display()).into());
                args.extend(["-A", "scram-sha-256"].map(Into::into));
            }
        }
        let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
        let initdb = server.run("initdb", &args);
        assert_ok("initdb", &initdb);
        server.start_server();
        server
    }

    /// One server for a whole test binary, started by the first caller, stopped when the
    /// process exits. Tests that stop or kill their server start one of their own.
    pub fn shared() -> &'static Postgres {
        SHARED.get_or_init(|| {
            let server = Postgres::start();
            stop_at_exit();
            server
        })
    }

    /// The URL of database `name` on this server, for the client.
    pub fn url(&self, name: &str) -> String {
        let port = self.tcp_port.map(|port| format!("&port={port}"));
        format!(
            "postgresql://{SERVER_USER}@/{name}?host={}{}",
            self.dir.path().display(),
            port.unwrap_or_default()
        )
    }

    /// The URL of database `name` through the loopback port, as `localhost` (for the
    /// certificate's name): [`Postgres::start_tls`] only.
    pub fn tcp_url(&self, name: &str) -> Option<String> {
        let port = self.tcp_port?;
        Some(format!(
            "postgresql://{SERVER_USER}@localhost:{port}/{name}"
        ))
    }

    /// Creates a new, empty database and returns its URL: one per test.
    pub fn fresh_database(&self) -> String {
        let n = self.next_database.fetch_add(1, Ordering::Relaxed);
        let name = format!("test_{}_{n}", std::process::id());
        let mut config: postgres::Config = self.url("postgres").parse().expect("the URL parses");
        if let Some(password) = &self.password {
            config.password(password);
        }
        let mut client = config
            .connect(postgres::NoTls)
            .expect("connect to the test server's database \"postgres\"");
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("create a test database");
        self.url(&name)
    }

    /// Kills the server with SIGKILL, the postmaster and every process it started, as a crash
    /// would, and waits until they are gone.
    pub fn kill(&self) {
        let Some(postmaster) = self.postmaster_pid() else {
            return;
        };
        let mut pids = children(postmaster);
        pids.push(postmaster);
        // Not through pg_ctl: `pg_ctl kill` signals the postmaster alone.
        let _ = Command::new("kill")
            .arg("-KILL")
            .args(pids.iter().map(i32::to_string))
            .status();
        let deadline = Instant::now() + GONE_WITHIN;
        while pids
            .iter()
            .any(|pid| Path::new(&format!("/proc/{pid}")).exists())
        {
            assert!(
                Instant::now() < deadline,
                "PostgreSQL's processes outlived SIGKILL"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops the server with SIGSTOP, the postmaster and every process it started: a server
    /// that is there (its sockets accept, the kernel acknowledges) and answers nothing, as
    /// one stuck on a dead disk or a frozen host would be. [`Postgres::thaw`] goes on.
    pub fn freeze(&self) {
        self.signal_all("-STOP");
    }

    /// Lets a [`Postgres::freeze`]d server go on where it stopped.
    pub fn thaw(&self) {
        self.signal_all("-CONT");
    }

    /// The postmaster first, so that it starts no backend the listing below would miss; then
    /// its children, of which one may have ended since it was listed (a connection closing).
    fn signal_all(&self, signal: &str) {
        let Some(postmaster) = self.postmaster_pid() else {
            return;
        };
        let kill = |pid: i32| {
            Command::new("kill")
                .args([signal, &pid.to_string()])
                .stderr(std::process::Stdio::null())
                .status()
                .expect("run kill")
                .success()
        };
        assert!(kill(postmaster), "kill {signal} {postmaster} failed");
        for child in children(postmaster) {
            kill(child);
        }
    }

    /// Starts the server again after [`Postgres::kill`]: it recovers from its WAL.
    pub fn start_again(&self) {
        self.start_server();
    }

    /// The directory the server's socket is in.
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn start_server(&self) {
        let dir = self.dir.path().display();
        let listen = match self.tcp_port {
            None => "-c listen_addresses=''".to_string(),
            Some(port) => format!(
                "-c listen_addresses=127.0.0.1 -p {port} -c ssl=on \
                 -c ssl_cert_file={dir}/server.crt -c ssl_key_file={dir}/server.key"
            ),
        };
        let options = format!(
            "{listen} -k {dir} -c fsync=on -c synchronous_commit=on -c max_connections=200"
        );
        let log = self.dir.path().join("server.log");
        let started = self.run(
            "pg_ctl",
            &[
                "-D".as_ref(),
                self.data_dir().as_os_str(),
                "-l".as_ref(),
                log.as_os_str(),
                "-o".as_ref(),
                options.as_ref(),
                "-w".as_ref(),
                "start".as_ref(),
            ],
        );
        if !started.status.success() {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            panic!(
                "pg_ctl start failed: {}\nserver log:\n{log}",
                String::from_utf8_lossy(&started.stderr)
            );
        }
    }

    /// Stops the server at once (no checkpoint: the cluster is thrown away).
    fn stop(&self) {
        if self.postmaster_pid().is_some() {
            let _ = self.run(
                "pg_ctl",
                &[
                    "-D".as_ref(),
                    self.data_dir().as_os_str(),
                    "-m".as_ref(),
                    "immediate".as_ref(),
                    "-w".as_ref(),
                    "stop".as_ref(),
                ],
            );
        }
    }

    /// Gives `path` to the server's user, when the tests run as root.
    fn give(&self, path: &Path) {
        let Some(user) = self.run_as else {
            return;
        };
        let status = Command::new("chown")
            .arg(format!("{user}:"))
            .arg(path)
            .status()
            .expect("run chown");
        assert!(
            status.success(),
            "chown of {} to the user {user:?} failed: as root the PostgreSQL tests run the \
             server as {user:?}, which the Debian package `postgresql` creates",
            path.display()
        );
    }

    /// The postmaster's pid, from its pid file, if it runs.
    fn postmaster_pid(&self) -> Option<i32> {
        let text = std::fs::read_to_string(self.data_dir().join("postmaster.pid")).ok()?;
        let pid: i32 = text.lines().next()?.trim().parse().ok()?;
        Path::new(&format!("/proc/{pid}")).exists().then_some(pid)
    }

    /// Runs one of the server's programs, as the server's user when we are root.
    fn run(&self, program: &str, args: &[&std::ffi::OsStr]) -> Output {
        let path = self.bin.join(program);
        let mut command = match self.run_as {
            Some(user) => {
                let mut command = Command::new("runuser");
                command.args(["-u", user, "--"]).arg(&path);
                command
            }
            None => Command::new(&path),
        };
        command
            .args(args)
            // The server's user may not be allowed into the caller's working directory.
            .current_dir(self.dir.path())
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", path.display()))
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A static is never dropped: [`Postgres::shared`]'s server is stopped when the process exits.
#[allow(unsafe_code)] // atexit has no safe wrapper in std
fn stop_at_exit() {
    // SAFETY: `stop_shared` is an `extern "C" fn()` that catches any panic, so never unwinds.
    unsafe { libc::atexit(stop_shared) };
}

/// Stops [`Postgres::shared`]'s server and removes its directory as the process exits.
extern "C" fn stop_shared() {
    let stop = std::panic::catch_unwind(|| {
        if let Some(server) = SHARED.get() {
            server.stop();
            let _ = std::fs::remove_dir_all(server.dir.path());
        }
    });
    drop(stop);
}

/// The server of [`Postgres::shared`].
static SHARED: OnceLock<Postgres> = OnceLock::new();

/// The `bin` directory of the newest PostgreSQL Debian installed.
fn server_bin() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(DEBIAN_BIN)
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            (bin.join("initdb").exists() && bin.join("pg_ctl").exists()).then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// A loopback port nothing listens on now.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().expect("its address").port()
}

/// The processes whose parent is `parent`.
fn children(parent: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| {
            let pid: i32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // After the command, which is in parentheses and may hold spaces: state, ppid.
            let after = stat.rsplit_once(')')?.1;
            let ppid: i32 = after.split_whitespace().nth(1)?.parse().ok()?;
            (ppid == parent).then_some(pid)
        })
        .collect()
}

fn assert_ok(what: &str, output: &Output) {
    assert!(
        output.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
