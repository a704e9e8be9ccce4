//! `bench-memory`: how much memory a daemon takes to store one worst-case message of the
//! largest size it accepts, and to show it again (issue 24, item 3; `tests/bench.sh memory`).
//!
//! For each binary and each shape of body, on a fresh data dir with `max_message_size` set:
//! start the daemon, store one small message (so that TLS, the store and the threads are
//! warm), read its resident set (`VmRSS`, the idle figure), reset its peak (`echo 5 >
//! /proc/PID/clear_refs`), send one message of `max_message_size` bytes of that shape, and read
//! the peak (`VmHWM`) once the `250` has come. Then the same around `messages show ID --json`
//! (the daemon answers it over the control socket): the daemon's peak over idle, and the
//! command line's own peak (`ru_maxrss` from `wait4`).
//!
//! The shapes are the bodies that cost the most per byte of mail:
//! - `wikilinks`: lines of `[[a]]`, each rendered to a 100-byte link;
//! - `colours`: lines of `<red>`, each an empty colour block of 120 bytes;
//! - `escapes`: `&` and `<`, each escaped to four or five bytes;
//! - `incompressible`: random letters, which lz4 cannot shrink (the stored value is then as
//!   large as data, text and HTML together);
//! - `quoted-printable`: the same letters with a soft line break every 75, so that the text
//!   is one line of 25 MB, and no copy of the data.
//!
//! One JSON line per binary and shape on stdout (`--json`), or a few words each. Every step is
//! bounded (`--timeout` for each reply); the daemons are killed on the way out.

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use atacama_tests::Client;
use atacama_tests::client::plain;
use atacama_tests::server::free_port;

const USAGE: &str = "\
Usage: bench-memory --binary PATH [--binary PATH…] [--max-message-size BYTES]
                    [--shape NAME…] [--dir DIR] [--timeout SECS] [--json]

  --binary PATH            a daemon to measure (atacama-mail or atacama-mail-std); repeatable
  --max-message-size N     [limits] max_message_size, and the size of the message sent
                           (default 26214400, the default limit: 25 MiB)
  --shape NAME             wikilinks, colours, escapes, incompressible or quoted-printable;
                           repeatable (default: all five)
  --dir DIR                where the data dirs go (default $TMPDIR or /tmp)
  --timeout SECS           the longest wait for one reply or one command (default 300)
  --json                   one JSON line per binary and shape
";

const SHAPES: [&str; 5] = [
    "wikilinks",
    "colours",
    "escapes",
    "incompressible",
    "quoted-printable",
];

struct Options {
    binaries: Vec<PathBuf>,
    max_message_size: usize,
    shapes: Vec<String>,
    dir: PathBuf,
    timeout: Duration,
    json: bool,
}

/// What one binary did with one shape.
struct Measure {
    binary: String,
    shape: String,
    message_bytes: usize,
    reply: u16,
    deliver_ms: u128,
    idle_rss_kib: u64,
    peak_rss_kib: u64,
    show_daemon_peak_kib: u64,
    show_cli_peak_kib: u64,
    show_output_bytes: usize,
}

fn main() -> ExitCode {
    let options = match parse() {
        Ok(Some(options)) => options,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("bench-memory: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let mut failed = false;
    for binary in &options.binaries {
        for shape in &options.shapes {
            match measure(&options, binary, shape) {
                Ok(m) => {
                    let line = if options.json {
                        json(&m, &options)
                    } else {
                        text(&m, &options)
                    };
                    let mut out = io::stdout().lock();
                    if out
                        .write_all(line.as_bytes())
                        .and_then(|()| out.flush())
                        .is_err()
                    {
                        return ExitCode::FAILURE; // nobody reads any more
                    }
                }
                Err(e) => {
                    eprintln!("bench-memory: {} {shape}: {e}", binary.display());
                    failed = true;
                }
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn parse() -> Result<Option<Options>, String> {
    use lexopt::prelude::*;
    let mut o = Options {
        binaries: Vec::new(),
        max_message_size: 25 << 20,
        shapes: Vec::new(),
        dir: std::env::temp_dir(),
        timeout: Duration::from_secs(300),
        json: false,
    };
    let value = |p: &mut lexopt::Parser| -> Result<String, String> {
        p.value()
            .map_err(|e| e.to_string())?
            .into_string()
            .map_err(|_| "not UTF-8".to_string())
    };
    let mut p = lexopt::Parser::from_env();
    while let Some(arg) = p.next().map_err(|e| e.to_string())? {
        match arg {
            Long("binary") => o.binaries.push(value(&mut p)?.into()),
            Long("max-message-size") => {
                o.max_message_size = value(&mut p)?
                    .parse()
                    .map_err(|e| format!("--max-message-size: {e}"))?;
            }
            Long("shape") => {
                let shape = value(&mut p)?;
                if !SHAPES.contains(&shape.as_str()) {
                    return Err(format!("--shape: {shape:?} is none of {SHAPES:?}"));
                }
                o.shapes.push(shape);
            }
            Long("dir") => o.dir = value(&mut p)?.into(),
            Long("timeout") => {
                let secs: u64 = value(&mut p)?
                    .parse()
                    .map_err(|e| format!("--timeout: {e}"))?;
                o.timeout = Duration::from_secs(secs);
            }
            Long("json") => o.json = true,
            Short('h') | Long("help") => return Ok(None),
            other => return Err(other.unexpected().to_string()),
        }
    }
    if o.binaries.is_empty() {
        return Err("no --binary".into());
    }
    if o.max_message_size < 4096 {
        return Err("--max-message-size: at least 4096".into());
    }
    if o.shapes.is_empty() {
        o.shapes = SHAPES.iter().map(|s| s.to_string()).collect();
    }
    Ok(Some(o))
}

/// A daemon on a data dir of its own, killed and removed on drop.
struct Daemon {
    binary: PathBuf,
    config: PathBuf,
    data_dir: PathBuf,
    submission: SocketAddr,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Daemon {
    fn start(o: &Options, binary: &Path) -> Result<Daemon, String> {
        let dir = tempfile::Builder::new()
            .prefix("atacama-memory.")
            .tempdir_in(&o.dir)
            .map_err(|e| format!("temporary directory in {}: {e}", o.dir.display()))?;
        let data_dir = dir.path().join("data");
        let config = dir.path().join("atacama.toml");
        let (submission, submissions) = (free_port(), free_port());
        let text = format!(
            "hostname = \"localhost\"\ndata_dir = {:?}\n\n[listen]\nsubmission = [\"{submission}\"]\n\
             submissions = [\"{submissions}\"]\n\n[http]\nlisten = []\n\n[auth]\nbcrypt_cost = 4\n\n[limits]\n\
             max_message_size = {}\n",
            data_dir.display().to_string(),
            o.max_message_size
        );
        std::fs::write(&config, text).map_err(|e| format!("{}: {e}", config.display()))?;
        let added = Command::new(binary)
            .arg("--config")
            .arg(&config)
            .args(["user", "add", "alice", "--password-stdin"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                if let Some(mut stdin) = child.stdin.take() {
                    stdin.write_all(b"s3cret\n")?;
                }
                child.wait_with_output()
            })
            .map_err(|e| format!("{} user add: {e}", binary.display()))?;
        if !added.status.success() {
            return Err(format!(
                "user add: {}",
                String::from_utf8_lossy(&added.stderr)
            ));
        }
        let log = std::fs::File::create(dir.path().join("server.log"))
            .map_err(|e| format!("server log: {e}"))?;
        let child = Command::new(binary)
            .arg("--config")
            .arg(&config)
            .args(["serve", "--log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        let mut daemon = Daemon {
            binary: binary.to_path_buf(),
            config,
            data_dir,
            submission,
            child,
            _dir: dir,
        };
        daemon.wait_ready()?;
        Ok(daemon)
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(30) {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("the daemon exited during start: {status}"));
            }
            if let Ok(mut c) = Client::connect(self.submission)
                && c.reply().is_ok_and(|r| r.code == 220)
            {
                let _ = c.send(b"QUIT\r\n");
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err("the daemon did not answer within 30 s".into())
    }

    /// STARTTLS, then AUTH as alice.
    fn session(&self) -> Result<Client, String> {
        let cert = std::fs::read(
            self.data_dir
                .join(atacama_server::tls::SELF_SIGNED_CERT_FILE),
        )
        .map_err(|e| format!("the generated certificate: {e}"))?;
        let mut c = Client::connect(self.submission).map_err(|e| format!("connect: {e}"))?;
        expect(&mut c, None, 220)?;
        expect(&mut c, Some("EHLO bench.test"), 250)?;
        expect(&mut c, Some("STARTTLS"), 220)?;
        c.start_tls(&cert).map_err(|e| format!("TLS: {e}"))?;
        expect(&mut c, Some("EHLO bench.test"), 250)?;
        let auth = format!("AUTH PLAIN {}", plain("alice", "s3cret"));
        expect(&mut c, Some(&auth), 235)?;
        Ok(c)
    }

    fn status_kib(&self, field: &str) -> Result<u64, String> {
        let path = format!("/proc/{}/status", self.child.id());
        let status = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
        status
            .lines()
            .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| format!("no {field} in {path}"))
    }

    /// Starts a new peak: VmHWM falls back to the current VmRSS.
    fn reset_peak(&self) -> Result<(), String> {
        let path = format!("/proc/{}/clear_refs", self.child.id());
        std::fs::write(&path, "5").map_err(|e| format!("{path}: {e}"))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn expect(c: &mut Client, command: Option<&str>, code: u16) -> Result<(), String> {
    if let Some(command) = command {
        c.send(format!("{command}\r\n"))
            .map_err(|e| format!("sending {command}: {e}"))?;
    }
    let reply = c
        .reply()
        .map_err(|e| format!("reply to {command:?}: {e}"))?;
    if reply.code == code {
        Ok(())
    } else {
        Err(format!(
            "{command:?}: expected {code}, got {} {:?}",
            reply.code, reply.lines
        ))
    }
}

/// Sends one message on a logged-in session; returns the code of the reply to the final dot,
/// waiting up to `timeout` for it (the client reads with a shorter timeout, and keeps what it
/// read when that runs out).
fn deliver(c: &mut Client, data: &[u8], timeout: Duration) -> Result<u16, String> {
    expect(c, Some("MAIL FROM:<alice@example.org>"), 250)?;
    expect(c, Some("RCPT TO:<bob@example.org>"), 250)?;
    expect(c, Some("DATA"), 354)?;
    c.send(data).map_err(|e| format!("sending the data: {e}"))?;
    c.send(b".\r\n")
        .map_err(|e| format!("sending the dot: {e}"))?;
    let started = Instant::now();
    loop {
        match c.reply() {
            Ok(reply) => return Ok(reply.code),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) && started.elapsed() < timeout => {}
            Err(e) => return Err(format!("reply to the data: {e}")),
        }
    }
}

fn measure(o: &Options, binary: &Path, shape: &str) -> Result<Measure, String> {
    let daemon = Daemon::start(o, binary)?;
    let mut c = daemon.session()?;
    let warm = deliver(
        &mut c,
        b"Subject: warm-up\r\n\r\n<red>Hello [[a]] & <b>\r\n",
        o.timeout,
    )?;
    if warm != 250 {
        return Err(format!("the warm-up message got {warm}"));
    }
    // The warm-up's work is done once its 250 is sent; let the commit thread go idle.
    std::thread::sleep(Duration::from_millis(300));
    let idle_rss_kib = daemon.status_kib("VmRSS")?;
    let data = body(shape, o.max_message_size);
    daemon.reset_peak()?;
    let started = Instant::now();
    let reply = deliver(&mut c, &data, o.timeout)?;
    let deliver_ms = started.elapsed().as_millis();
    let peak_rss_kib = daemon.status_kib("VmHWM")?;
    let _ = c.send(b"QUIT\r\n");
    drop(c);

    std::thread::sleep(Duration::from_millis(300));
    daemon.reset_peak()?;
    let (show_cli_peak_kib, show_output_bytes) = show(&daemon, "2", o.timeout)?;
    let show_daemon_peak_kib = daemon.status_kib("VmHWM")?;
    Ok(Measure {
        binary: binary.file_name().map_or_else(
            || binary.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        ),
        shape: shape.to_owned(),
        message_bytes: data.len(),
        reply,
        deliver_ms,
        idle_rss_kib,
        peak_rss_kib,
        show_daemon_peak_kib,
        show_cli_peak_kib,
        show_output_bytes,
    })
}

/// Runs `messages show ID --json`: its own peak RSS (KiB) and how many bytes it printed.
fn show(daemon: &Daemon, id: &str, timeout: Duration) -> Result<(u64, usize), String> {
    let mut child = Command::new(&daemon.binary)
        .arg("--config")
        .arg(&daemon.config)
        .args(["messages", "show", id, "--json"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("messages show: {e}"))?;
    let mut printed = 0;
    if let Some(mut stdout) = child.stdout.take() {
        let mut buf = vec![0u8; 1 << 16];
        let started = Instant::now();
        loop {
            match stdout.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => printed += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("messages show output: {e}")),
            }
            if started.elapsed() > timeout {
                let _ = child.kill();
                return Err("messages show took too long".into());
            }
        }
    }
    let (status, max_rss_kib) = wait4(&child)?;
    if status != 0 {
        return Err(format!("messages show exited with status {status}"));
    }
    Ok((max_rss_kib, printed))
}

/// Reaps `child` with wait4: its exit status word and its peak RSS in KiB.
#[allow(unsafe_code)] // wait4 has no safe wrapper in std
fn wait4(child: &Child) -> Result<(i32, u64), String> {
    let pid = libc::pid_t::try_from(child.id()).map_err(|e| e.to_string())?;
    let mut status = 0;
    // SAFETY: rusage is plain data that wait4 fills in; all zero is a valid value of it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our own child, not yet reaped; both pointers are to live locals.
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    if reaped != pid {
        return Err(format!("wait4: {}", io::Error::last_os_error()));
    }
    Ok((status, u64::try_from(usage.ru_maxrss).unwrap_or(0)))
}

/// A message of `size` bytes of `shape` (not dot-stuffed: no line starts with a dot).
fn body(shape: &str, size: usize) -> Vec<u8> {
    let mut out = String::with_capacity(size);
    out.push_str(
        "From: alice@example.org\r\nTo: bob@example.org\r\nSubject: worst case\r\n\
         Content-Type: text/plain; charset=utf-8\r\n",
    );
    if shape == "quoted-printable" {
        out.push_str("Content-Transfer-Encoding: quoted-printable\r\n");
    }
    out.push_str("\r\n");
    // splitmix64: the same letters on every run, and no repeats lz4 could use.
    let mut state = 0x5EED_u64;
    let mut random = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let z = (state ^ (state >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        let z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let line = |out: &mut String, random: &mut dyn FnMut() -> u64| match shape {
        "wikilinks" => out.push_str("[[a]]\r\n"),
        "colours" => out.push_str("<red>\r\n"),
        "escapes" => out.push_str(
            "&<&<&<&<&<&<&<&<&<&<&<&<&<&<&<&<&<&<&<&<&<&<&<&<&<&<&<&<&<&<&<&<&<&<&<&<\r\n",
        ),
        "quoted-printable" => {
            for _ in 0..75 {
                out.push(char::from(b'a' + (random() % 26) as u8));
            }
            out.push_str("=\r\n");
        }
        _ => {
            for _ in 0..76 {
                out.push(char::from(b'a' + (random() % 26) as u8));
            }
            out.push_str("\r\n");
        }
    };
    // Whole lines up to the size; the last one may be cut (it still ends with CR LF).
    while out.len() + 2 < size {
        line(&mut out, &mut random);
    }
    let mut bytes = out.into_bytes();
    bytes.truncate(size - 2);
    // Cut after a CR, or a soft break's `=`: a letter instead, so that no bare CR follows.
    for byte in bytes.iter_mut().rev() {
        match byte {
            b'\r' | b'=' => *byte = b'a',
            _ => break,
        }
    }
    bytes.extend_from_slice(b"\r\n");
    bytes
}

fn json(m: &Measure, o: &Options) -> String {
    let over_idle = m.peak_rss_kib.saturating_sub(m.idle_rss_kib);
    let show_over_idle = m.show_daemon_peak_kib.saturating_sub(m.idle_rss_kib);
    let max_kib = (o.max_message_size / 1024) as f64;
    let value = serde_json::json!({
        "binary": m.binary,
        "shape": m.shape,
        "max_message_size": o.max_message_size,
        "message_bytes": m.message_bytes,
        "reply": m.reply,
        "deliver_ms": m.deliver_ms,
        "idle_rss_kib": m.idle_rss_kib,
        "peak_rss_kib": m.peak_rss_kib,
        "peak_over_idle_kib": over_idle,
        "peak_over_idle_per_max": over_idle as f64 / max_kib,
        "show_daemon_peak_kib": m.show_daemon_peak_kib,
        "show_daemon_over_idle_kib": show_over_idle,
        "show_cli_peak_kib": m.show_cli_peak_kib,
        "show_output_bytes": m.show_output_bytes,
    });
    format!("{value}\n")
}

fn text(m: &Measure, o: &Options) -> String {
    let mib = |kib: u64| kib as f64 / 1024.0;
    let over_idle = m.peak_rss_kib.saturating_sub(m.idle_rss_kib);
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(
        out,
        "{} {}: {} bytes, {} in {} ms | idle {:.1} MiB, peak {:.1} MiB, {:.1} MiB over idle \
         = {:.2}× max_message_size | messages show: daemon {:.1} MiB over idle, command line \
         {:.1} MiB",
        m.binary,
        m.shape,
        m.message_bytes,
        m.reply,
        m.deliver_ms,
        mib(m.idle_rss_kib),
        mib(m.peak_rss_kib),
        mib(over_idle),
        over_idle as f64 * 1024.0 / o.max_message_size as f64,
        mib(m.show_daemon_peak_kib.saturating_sub(m.idle_rss_kib)),
        mib(m.show_cli_peak_kib),
    );
    out
}
