//! The daemon's side of the control socket: binding it privately, accepting, and serving
//! each client on a thread of its own under one deadline per request (see the module docs of
//! [`crate::control`]).

use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use super::{
    ANSWER_DEADLINE, BIND_DIR, CONTROL_SOCKET, HoldsStore, MAX_CLIENTS, MAX_REQUEST_BYTES,
    MAX_SOCKET_PATH_BYTES, REQUEST_DEADLINE, Request, execute, peer_uid, read_frame, write_frame,
};
use atacama_store::data_dir;

/// The socket's name inside [`BIND_DIR`]: short, because the whole path must fit
/// [`MAX_SOCKET_PATH_BYTES`].
const BIND_NAME: &str = "s";

/// The daemon's side: threads answering requests on `DATA_DIR/control.sock` until dropped
/// (see the module docs). Dropping it stops accepting and removes the socket, without
/// waiting for the clients being served.
pub struct ControlServer {
    socket: PathBuf,
    shared: Arc<Shared>,
    /// What the server serves, kept for as long as it runs; its threads hold it weakly.
    _holder: Arc<dyn HoldsStore>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for ControlServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlServer")
            .field("socket", &self.socket)
            .finish_non_exhaustive()
    }
}

/// What the accepting thread and the client threads share.
struct Shared {
    holder: Weak<dyn HoldsStore>,
    /// The data directory's owner: with root and this process's user, the peers answered.
    owner: u32,
    stop: AtomicBool,
    /// Clients being served.
    clients: Mutex<usize>,
    /// Signalled when a client ends, and when the server stops.
    freed: Condvar,
}

impl ControlServer {
    /// Listens on `data_dir/control.sock`. Call it only while holding the store: the lock on
    /// the file is what proves that a socket already there is a stopped daemon's, replaced
    /// here.
    pub fn start<S: HoldsStore>(data_dir: &Path, holder: Arc<S>) -> io::Result<ControlServer> {
        let owner = std::fs::metadata(data_dir)?.uid();
        let socket = data_dir.join(CONTROL_SOCKET);
        let listener = bind_private(data_dir, &socket)?;
        let holder: Arc<dyn HoldsStore> = holder;
        let shared = Arc::new(Shared {
            holder: Arc::downgrade(&holder),
            owner,
            stop: AtomicBool::new(false),
            clients: Mutex::new(0),
            freed: Condvar::new(),
        });
        let thread = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("atacama-control".into())
                .spawn(move || accept_loop(&listener, &shared))?
        };
        Ok(ControlServer {
            socket,
            shared,
            _holder: holder,
            thread: Some(thread),
        })
    }

    /// Where it listens.
    pub fn socket(&self) -> &Path {
        &self.socket
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        {
            // Under the lock: the accepting thread is either before its look at `stop` or
            // waiting on `freed`, never in between, so the notification is not lost.
            let _clients = self.shared.clients();
            self.shared.stop.store(true, Ordering::SeqCst);
        }
        self.shared.freed.notify_all();
        // Wakes a blocking accept, which then sees the flag. It cannot hang: a full listen
        // queue means the thread waits for a free slot, not in accept, so it has just been
        // notified, and the connect is refused once the thread drops the listener. If the
        // socket cannot be reached (removed by hand), the thread may be left in accept: it
        // is not waited for, and ends with the process.
        let woken = match UnixStream::connect(&self.socket) {
            Ok(_) => true,
            Err(e) => e.kind() == io::ErrorKind::ConnectionRefused,
        };
        if let Some(thread) = self.thread.take().filter(|_| woken) {
            let _ = thread.join();
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

impl Shared {
    fn clients(&self) -> MutexGuard<'_, usize> {
        // A count is never left half-updated: a panic elsewhere does not make it wrong.
        self.clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Waits for a free slot; `None` once the server stops.
    fn take_slot(self: &Arc<Self>) -> Option<Slot> {
        let mut clients = self.clients();
        while *clients >= MAX_CLIENTS && !self.stopping() {
            clients = self
                .freed
                .wait(clients)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        if self.stopping() {
            return None;
        }
        *clients += 1;
        Some(Slot(Arc::clone(self)))
    }
}

/// One client's place among [`MAX_CLIENTS`]; given back when dropped, even by a panic.
struct Slot(Arc<Shared>);

impl Drop for Slot {
    fn drop(&mut self) {
        *self.0.clients() -= 1;
        self.0.freed.notify_all();
    }
}

/// Binds `socket` without it ever being reachable with a wider mode than 0600: bound in
/// `data_dir/control.tmp` (0700, made afresh), set to 0600 there, renamed into place. The
/// rename also replaces the socket a stopped daemon left.
fn bind_private(data_dir: &Path, socket: &Path) -> io::Result<UnixListener> {
    let staging = data_dir.join(BIND_DIR);
    let bound = staging.join(BIND_NAME);
    for path in [&bound, socket] {
        if path.as_os_str().len() >= MAX_SOCKET_PATH_BYTES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "the path {} is {} bytes, and a Unix socket's must be under \
                     {MAX_SOCKET_PATH_BYTES}: choose a shorter data_dir",
                    path.display(),
                    path.as_os_str().len()
                ),
            ));
        }
    }
    // What a start that failed half-way left. Neither removal follows a link.
    match staging.symlink_metadata() {
        Ok(found) if found.is_dir() => std::fs::remove_dir_all(&staging)?,
        Ok(_) => std::fs::remove_file(&staging)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::fs::DirBuilder::new().mode(0o700).create(&staging)?;
    let bound_and_moved = UnixListener::bind(&bound).and_then(|listener| {
        std::fs::set_permissions(&bound, std::fs::Permissions::from_mode(0o600))?;
        std::fs::rename(&bound, socket)?;
        Ok(listener)
    });
    let removed = std::fs::remove_dir_all(&staging);
    let listener = bound_and_moved?;
    removed?;
    Ok(listener)
}

fn accept_loop(listener: &UnixListener, shared: &Arc<Shared>) {
    while let Some(slot) = shared.take_slot() {
        let accepted = listener.accept();
        if shared.stopping() {
            return;
        }
        match accepted {
            Ok((stream, _)) => {
                let spawned = std::thread::Builder::new()
                    .name("atacama-control-client".into())
                    .spawn(move || serve(&slot.0, stream));
                if let Err(error) = spawned {
                    atacama_core::logging::control_failed(&error);
                }
            }
            Err(error) => {
                atacama_core::logging::control_failed(&error);
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// Answers the one request of `stream`.
fn serve(shared: &Shared, stream: UnixStream) {
    match peer_uid(&stream) {
        Ok(uid) if data_dir::trusted(uid, shared.owner) => {}
        Ok(uid) => return atacama_core::logging::control_refused(&format!("uid {uid}")),
        Err(error) => return atacama_core::logging::control_refused(&error),
    }
    let mut reading = Deadline::new(&stream, REQUEST_DEADLINE);
    let request: Request = match read_frame(&mut reading, MAX_REQUEST_BYTES) {
        Ok(bytes) => match serde_json::from_slice(&bytes) {
            Ok(request) => request,
            Err(error) => return atacama_core::logging::control_failed(&error),
        },
        // A client that connects to see whether a daemon listens, then goes.
        Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => return,
        Err(error) => return atacama_core::logging::control_failed(&reading.explain(error)),
    };
    // The server stopped while the request came: the store is closing, or closed.
    let Some(holder) = shared.holder.upgrade().filter(|_| !shared.stopping()) else {
        return;
    };
    let outcome = execute(holder.store(), &request, SystemTime::now());
    drop(holder);
    atacama_core::logging::control_request(
        &request.describe(),
        outcome.as_ref().err().map(|e| e as &dyn std::fmt::Display),
    );
    let bytes = match serde_json::to_vec(&outcome) {
        Ok(bytes) => bytes,
        Err(error) => return atacama_core::logging::control_failed(&error),
    };
    let mut writing = Deadline::new(&stream, ANSWER_DEADLINE);
    if let Err(error) = write_frame(&mut writing, &bytes) {
        atacama_core::logging::control_failed(&writing.explain(error));
    }
}

/// A stream whose reads and writes, all together, end by one deadline: each waits at most
/// the time left.
pub(super) struct Deadline<'a> {
    stream: &'a UnixStream,
    started: Instant,
    limit: Duration,
}

impl<'a> Deadline<'a> {
    pub(super) fn new(stream: &'a UnixStream, limit: Duration) -> Deadline<'a> {
        Deadline {
            stream,
            started: Instant::now(),
            limit,
        }
    }

    /// The time left, or `TimedOut` once there is none.
    fn left(&self) -> io::Result<Duration> {
        match self.limit.checked_sub(self.started.elapsed()) {
            Some(left) if !left.is_zero() => Ok(left),
            _ => Err(io::Error::from(io::ErrorKind::TimedOut)),
        }
    }

    /// An error of this stream, for the log: a timeout names the deadline.
    pub(super) fn explain(&self, error: io::Error) -> io::Error {
        match error.kind() {
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => io::Error::new(
                io::ErrorKind::TimedOut,
                format!("a client took more than {:?}: closed", self.limit),
            ),
            _ => error,
        }
    }
}

impl Read for Deadline<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream.set_read_timeout(Some(self.left()?))?;
        (&mut &*self.stream).read(buf)
    }
}

impl Write for Deadline<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stream.set_write_timeout(Some(self.left()?))?;
        (&mut &*self.stream).write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
