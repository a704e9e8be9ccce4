//! A running server process for end-to-end tests: a temporary data directory, a config file
//! with free loopback ports and bcrypt cost 4, readiness by connecting, and kill on drop.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::{Binary, Run};

/// How long a server may take to start answering.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Settings beyond the harness defaults, written into the config file.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// `key = value` lines of `[limits]`.
    pub limits: Vec<(String, String)>,
    /// `key = value` lines of `[auth]` (`bcrypt_cost = 4` unless given here).
    pub auth: Vec<(String, String)>,
    /// `[tls]` certificate and key files; none means a generated self-signed pair.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Environment variables of the server process.
    pub env: Vec<(String, String)>,
    /// Hand the listeners over like systemd socket activation (fds 3, 4 and 5, named
    /// `submission`, `submissions` and `http`); `[listen]` and `[http] listen` then name
    /// ports nobody opens.
    pub socket_activation: bool,
    /// Listen on `[::1]` instead of 127.0.0.1.
    pub ipv6: bool,
    /// `key = value` lines of `[http]` (`listen` is the harness's free port unless given).
    pub http: Vec<(String, String)>,
    /// `key = value` lines of `[channels]`.
    pub channels: Vec<(String, String)>,
    /// Leave `[http] listen` to its default, 127.0.0.1:2580 (the README's quick start); a
    /// test doing so must be the only one on that port at a time.
    pub default_http_listen: bool,
    /// The store; none means the test's ([`crate::store_of_this_test`]): redb in the data
    /// dir, or a fresh database of the shared PostgreSQL.
    pub store: Option<StoreSetting>,
}

/// Where a server of the harness keeps its data: the `[store]` section it is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSetting {
    /// redb in the data directory (no `[store]` section: the default).
    Redb,
    /// `backend = "postgres"` with this URL: several servers given the same one share it.
    Postgres(String),
}

impl Settings {
    /// Adds `[limits] key = value`.
    pub fn limit(mut self, key: &str, value: impl ToString) -> Settings {
        self.limits.push((key.to_string(), value.to_string()));
        self
    }

    /// Adds `[auth] key = value`.
    pub fn auth(mut self, key: &str, value: impl ToString) -> Settings {
        self.auth.push((key.to_string(), value.to_string()));
        self
    }

    /// Adds `[http] key = value` (a TOML value: `"text"`, `["a", "b"]`, `30`).
    pub fn http(mut self, key: &str, value: impl ToString) -> Settings {
        self.http.push((key.to_string(), value.to_string()));
        self
    }

    /// Adds `[channels] key = value` (a TOML value).
    pub fn channels(mut self, key: &str, value: impl ToString) -> Settings {
        self.channels.push((key.to_string(), value.to_string()));
        self
    }

    /// Leaves `[http] listen` to its default, 127.0.0.1:2580.
    pub fn default_http_listen(mut self) -> Settings {
        self.default_http_listen = true;
        self
    }

    /// Sets an environment variable of the server process.
    pub fn env(mut self, key: &str, value: impl ToString) -> Settings {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// Passes the listeners as systemd socket activation does.
    pub fn socket_activation(mut self) -> Settings {
        self.socket_activation = true;
        self
    }

    /// Listens on the IPv6 loopback address instead of 127.0.0.1.
    pub fn ipv6(mut self) -> Settings {
        self.ipv6 = true;
        self
    }

    /// Keeps the data in `store` rather than the test's store.
    pub fn store(mut self, store: StoreSetting) -> Settings {
        self.store = Some(store);
        self
    }

    /// Uses these PEM files instead of a self-signed pair.
    pub fn tls(mut self, cert: &Path, key: &Path) -> Settings {
        self.tls = Some((cert.to_path_buf(), key.to_path_buf()));
        self
    }
}

/// A server process of one binary, killed when dropped.
pub struct Server {
    /// Which binary runs.
    pub binary: Binary,
    /// The plaintext + STARTTLS address.
    pub submission: SocketAddr,
    /// The implicit-TLS address.
    pub submissions: SocketAddr,
    /// The web address: a free loopback port of its own, so that tests never meet on the
    /// default 2580 (unless the test set `[http] listen` itself).
    pub http: SocketAddr,
    /// The config file.
    pub config: PathBuf,
    /// The data directory.
    pub data_dir: PathBuf,
    /// The `[listen]` addresses of the config file, when they differ from the ones served.
    pub configured: Option<(SocketAddr, SocketAddr)>,
    /// The `[http] listen` address of the config file, when it differs from the one served.
    pub configured_http: Option<SocketAddr>,
    env: Vec<(String, String)>,
    /// Listeners the harness opened for socket activation.
    activation: Option<[TcpListener; 3]>,
    log: PathBuf,
    child: Option<Child>,
    // Last: removed after the process is gone.
    dir: tempfile::TempDir,
}

impl Server {
    /// Starts `binary` with the harness defaults.
    pub fn start(binary: Binary) -> Server {
        Server::start_with(binary, Settings::default())
    }

    /// Starts `binary` with `settings`, and waits until it answers.
    pub fn start_with(binary: Binary, settings: Settings) -> Server {
        let dir = tempfile::tempdir().expect("temporary directory");
        let data_dir = dir.path().join("data");
        let config = dir.path().join("atacama.toml");
        let (submission, submissions) = if settings.ipv6 {
            (free_port_v6(), free_port_v6())
        } else {
            (free_port(), free_port())
        };
        let http = if settings.default_http_listen {
            SocketAddr::from(([127, 0, 0, 1], 2580))
        } else if settings.ipv6 {
            free_port_v6()
        } else {
            free_port()
        };
        let (activation, configured, configured_http) = if settings.socket_activation {
            let plain = TcpListener::bind(submission).expect("bind the submission socket");
            let tls = TcpListener::bind(submissions).expect("bind the submissions socket");
            let web = TcpListener::bind(http).expect("bind the http socket");
            (
                Some([plain, tls, web]),
                Some((free_port(), free_port())),
                Some(free_port()),
            )
        } else {
            (None, None, None)
        };
        let (listen_plain, listen_tls) = configured.unwrap_or((submission, submissions));
        // One key takes an address, the other a list: both forms work in both binaries.
        let mut text = format!(
            "hostname = \"mail.example.test\"\ndata_dir = {:?}\n\n[listen]\n\
             submission = \"{listen_plain}\"\nsubmissions = [\"{listen_tls}\"]\n\n\
             [auth]\n",
            data_dir.display().to_string()
        );
        if !settings.auth.iter().any(|(key, _)| key == "bcrypt_cost") {
            text.push_str("bcrypt_cost = 4\n");
        }
        for (key, value) in &settings.auth {
            let _ = writeln!(text, "{key} = {value}");
        }
        text.push_str("\n[http]\n");
        if !settings.default_http_listen && !settings.http.iter().any(|(key, _)| key == "listen") {
            let listen = configured_http.unwrap_or(http);
            let _ = writeln!(text, "listen = [\"{listen}\"]");
        }
        for (key, value) in &settings.http {
            let _ = writeln!(text, "{key} = {value}");
        }
        text.push_str("\n[channels]\n");
        for (key, value) in &settings.channels {
            let _ = writeln!(text, "{key} = {value}");
        }
        text.push_str("\n[limits]\n");
        for (key, value) in &settings.limits {
            let _ = writeln!(text, "{key} = {value}");
        }
        let store = settings
            .store
            .unwrap_or_else(|| match crate::store_of_this_test() {
                crate::StoreKind::Redb => StoreSetting::Redb,
                crate::StoreKind::Postgres => StoreSetting::Postgres(
                    atacama_store::testing::Postgres::shared().fresh_database(),
                ),
            });
        if let StoreSetting::Postgres(url) = &store {
            let _ = write!(text, "\n[store]\nbackend = \"postgres\"\nurl = {url:?}\n");
        }
        if let Some((cert, key)) = &settings.tls {
            let _ = write!(
                text,
                "\n[tls]\ncert = {:?}\nkey = {:?}\n",
                cert.display().to_string(),
                key.display().to_string()
            );
        }
        std::fs::write(&config, text).expect("write config");
        let mut server = Server {
            binary,
            submission,
            submissions,
            http,
            config,
            data_dir,
            configured,
            configured_http,
            env: settings.env,
            activation,
            log: dir.path().join("server.log"),
            child: None,
            dir,
        };
        server.spawn();
        server
    }

    /// Starts the process again (after it exited or was killed): same ports, same data.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open server log");
        let mut command = match &self.activation {
            None => Command::new(self.binary.path()),
            Some(sockets) => activation_command(&self.binary.path(), sockets),
        };
        let child = command
            .arg("--config")
            .arg(&self.config)
            .args(["serve", "--log-level", "debug"])
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.binary.name()));
        self.child = Some(child);
        self.wait_ready();
    }

    /// Connects until the greeting comes, then QUITs and waits for the server's close, so
    /// the probe no longer counts against any connection limit.
    fn wait_ready(&mut self) {
        let started = Instant::now();
        while started.elapsed() < START_TIMEOUT {
            if let Some(status) = self.try_exit_status() {
                panic!("server exited during start with {status}:\n{}", self.log());
            }
            if let Ok(mut tcp) =
                TcpStream::connect_timeout(&self.submission, Duration::from_secs(1))
            {
                let _ = tcp.set_read_timeout(Some(Duration::from_secs(5)));
                let mut greeting = [0u8; 512];
                if matches!(tcp.read(&mut greeting), Ok(n) if greeting.get(..n).is_some_and(|g| g.starts_with(b"220 ")))
                {
                    let _ = tcp.write_all(b"QUIT\r\n");
                    let mut rest = Vec::new();
                    let _ = tcp.read_to_end(&mut rest);
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!(
            "server did not answer within {START_TIMEOUT:?}:\n{}",
            self.log()
        );
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Sends a signal by name (`TERM`, `HUP`, `KILL`…) to the server process.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits at most `limit` for the process to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let started = Instant::now();
        while started.elapsed() < limit {
            if let Some(status) = self.try_exit_status() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    fn try_exit_status(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Kills the process (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Everything the server logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs a command-line subcommand of the same binary against this server's config.
    pub fn cli(&self, args: &[&str], stdin: Option<&[u8]>) -> Run {
        let mut all = vec!["--config".to_string(), self.config.display().to_string()];
        all.extend(args.iter().map(|a| a.to_string()));
        self.binary.run(all, stdin)
    }

    /// Adds a user with `user add NAME --password-stdin`.
    pub fn add_user(&self, name: &str, password: &str) {
        self.cli(
            &["user", "add", name, "--password-stdin"],
            Some(format!("{password}\n").as_bytes()),
        )
        .success();
    }

    /// The self-signed certificate the server generated in its data directory.
    pub fn cert_pem(&self) -> Vec<u8> {
        std::fs::read(
            self.data_dir
                .join(atacama_server::tls::SELF_SIGNED_CERT_FILE),
        )
        .expect("the generated certificate")
    }

    /// A directory that lives as long as the server, for the test's own files.
    pub fn scratch(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            // The log is the first thing one wants when an end-to-end test fails.
            eprintln!("--- {} log ---\n{}", self.binary.name(), self.log());
        }
    }
}

/// A command that runs `program` the way systemd runs a socket-activated service: the three
/// listeners as fds 3, 4 and 5, `LISTEN_FDS=3`, `LISTEN_FDNAMES=submission:submissions:http`,
/// and `LISTEN_PID` set to the program's own pid (`sh` sets it to `$$`, then `exec`s in
/// place).
#[allow(unsafe_code)] // pre_exec: the descriptors are moved between fork and exec
fn activation_command(program: &Path, sockets: &[TcpListener; 3]) -> Command {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let fds = sockets.each_ref().map(AsRawFd::as_raw_fd);
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg("LISTEN_PID=$$ exec \"$0\" \"$@\"")
        .arg(program)
        .env("LISTEN_FDS", "3")
        .env("LISTEN_FDNAMES", "submission:submissions:http");
    // SAFETY: between fork and exec only async-signal-safe calls (fcntl, dup2, close).
    unsafe {
        command.pre_exec(move || {
            // Move all out of the way first, in case any already is fd 3, 4 or 5.
            let mut high = [0; 3];
            for (slot, fd) in high.iter_mut().zip(fds) {
                *slot = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 10);
                if *slot < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            for (target, fd) in [3, 4, 5].into_iter().zip(high) {
                // dup2 clears close-on-exec on the target: it survives the exec.
                if libc::dup2(fd, target) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::close(fd);
            }
            Ok(())
        });
    }
    command
}

/// A port on `[::1]` nobody listens on now (from bind(0): IPv6 tests are few).
pub fn free_port_v6() -> SocketAddr {
    let listener = TcpListener::bind("[::1]:0").expect("bind an IPv6 loopback port");
    listener.local_addr().expect("its address")
}

/// A loopback port no one holds, below the kernel's ephemeral range (32768 and up here): a
/// port from bind(0) can be taken by another test's outgoing connection before the server
/// binds it, which made a server fail to start now and then.
pub fn free_port() -> SocketAddr {
    use std::sync::atomic::{AtomicU16, Ordering};
    const FIRST: u16 = 20_000;
    const SPAN: u16 = 12_000;
    // Test binaries run one after another, threads within one at once: a per-process start
    // and an atomic step keep them apart.
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let base = (std::process::id() % u32::from(SPAN)) as u16;
    for _ in 0..SPAN {
        let step = NEXT.fetch_add(1, Ordering::Relaxed) % SPAN;
        let port = FIRST + (base + step) % SPAN;
        let address = SocketAddr::from(([127, 0, 0, 1], port));
        if TcpListener::bind(address).is_ok() {
            return address;
        }
    }
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("its address")
}
