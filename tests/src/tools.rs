//! External programs the operations tests drive (mail clients, systemd and install tools):
//! found on `PATH` or the test fails saying what to install, and run with a deadline.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

/// How long one client or tool run may take before it is killed.
pub const TOOL_TIMEOUT: Duration = Duration::from_secs(60);

/// The path of `program` on `PATH`; panics naming the Debian packages that provide it.
///
/// A missing client must fail the test, never skip it: CI (`.ci/run`) installs them all.
pub fn require(program: &str, packages: &str) -> PathBuf {
    find(program).unwrap_or_else(|| {
        panic!(
            "`{program}` is not installed, and this test needs the real program. Install it \
             with `apt-get install -y --no-install-recommends {packages}` (.ci/run does)."
        )
    })
}

/// The path of `program` on `PATH`, if it is there and executable.
pub fn find(program: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| {
            std::fs::metadata(candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// What a finished external program did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolRun {
    /// The exit status; `None` if a signal ended it (or the deadline did).
    pub code: Option<i32>,
    /// Its stdout (lossy UTF-8).
    pub stdout: String,
    /// Its stderr (lossy UTF-8).
    pub stderr: String,
}

impl ToolRun {
    /// Panics with both outputs unless it exited 0.
    pub fn success(self, what: &str) -> ToolRun {
        assert_eq!(
            self.code,
            Some(0),
            "{what} failed\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.stdout,
            self.stderr
        );
        self
    }
}

/// Runs `command` with `stdin` (or an empty stdin), killing it after [`TOOL_TIMEOUT`].
///
/// Output goes through files, so a chatty program cannot block on a full pipe while we wait.
pub fn run(mut command: Command, stdin: Option<&[u8]>) -> ToolRun {
    let dir = tempfile::tempdir().expect("temporary directory");
    let input = dir.path().join("stdin");
    std::fs::write(&input, stdin.unwrap_or_default()).expect("write stdin");
    let (out, err) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let open = |path: &Path| File::create(path).expect("create an output file");
    let program = format!("{:?}", command.get_program());
    let mut child = command
        .stdin(File::open(&input).expect("open stdin"))
        .stdout(open(&out))
        .stderr(open(&err))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
    let status = wait_with_deadline(&mut child, TOOL_TIMEOUT);
    let read = |path: &Path| {
        String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned()
    };
    let run = ToolRun {
        code: status.and_then(|s| s.code()),
        stdout: read(&out),
        stderr: read(&err),
    };
    assert!(
        status.is_some(),
        "{program} did not finish within {TOOL_TIMEOUT:?}: {run:?}"
    );
    run
}

/// Waits for `child` at most `limit`; kills and reaps it past that and returns `None`.
fn wait_with_deadline(child: &mut std::process::Child, limit: Duration) -> Option<ExitStatus> {
    let started = Instant::now();
    while started.elapsed() < limit {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("cannot wait for a child process: {e}"),
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// Runs `program args…` (which must be on `PATH`, from `packages`) with an empty stdin.
pub fn run_program(program: &str, packages: &str, args: &[&str]) -> ToolRun {
    let mut command = Command::new(require(program, packages));
    command.args(args);
    run(command, None)
}
