//! The command line's way into the database while a daemon holds it (cargo feature `store`).
//!
//! The daemon opens the database alone: one fsync per commit instead of two (see
//! [`crate::store`]), and no other process may open the file. So while it runs it answers the
//! command line's store operations on a Unix socket, `DATA_DIR/control.sock`. Without a daemon
//! the command line opens the file itself and runs the same [`Request`] through [`execute`]:
//! what a command does to the store is one code path, whoever holds the file.
//!
//! The protocol is one request per connection: the client sends one frame holding a
//! [`Request`], the daemon answers with one frame holding a `Result<Answer, StoreError>`. A
//! frame is a 4-byte big-endian length, then that many bytes of JSON. Passwords are read by
//! the command line and travel only over this socket.
//!
//! Who may connect: the socket is mode 0600 inside the 0700 data directory, and a peer whose
//! uid is neither the daemon's nor root's is refused (`SO_PEERCRED`), so the socket grants no
//! more than the file itself would.

use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::service::Services;
use crate::smtp::MessageId;
use crate::store::{MessageSummary, Store, StoreError, StoredMessage, User};

/// The socket's name inside the data directory.
pub const CONTROL_SOCKET: &str = "control.sock";

/// A Unix socket's path must fit `sockaddr_un.sun_path` (108 bytes on Linux, NUL included).
pub const MAX_SOCKET_PATH_BYTES: usize = 108;

/// The largest request the daemon reads: a user name and a password are well under it.
pub const MAX_REQUEST_BYTES: u32 = 64 * 1024;

/// How long the daemon waits for a request, and for the client to take the answer: a client
/// that stalls holds up the next one (requests are served one at a time).
pub const SERVER_IO_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the command line waits for an answer: a bcrypt hash of the configured cost comes
/// first (about 0.3 s at cost 12 here; cost 16 takes seconds), behind any request before it.
pub const CLIENT_ANSWER_TIMEOUT: Duration = Duration::from_secs(300);

/// A store operation of the command line.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// [`Store::user`].
    User {
        /// The login name.
        name: String,
    },
    /// [`Store::users`].
    Users,
    /// [`Store::add_user`].
    AddUser {
        /// The login name.
        name: String,
        /// The password, hashed by the store.
        password: String,
    },
    /// [`Store::set_password`].
    SetPassword {
        /// The login name.
        name: String,
        /// The new password.
        password: String,
    },
    /// [`Store::disable_user`].
    DisableUser {
        /// The login name.
        name: String,
    },
    /// [`Store::enable_user`].
    EnableUser {
        /// The login name.
        name: String,
    },
    /// [`Store::delete_user`].
    DeleteUser {
        /// The login name.
        name: String,
    },
    /// [`Store::messages`].
    Messages {
        /// Only this user's.
        user: Option<String>,
        /// At most this many.
        limit: Option<usize>,
    },
    /// [`Store::message`].
    Message {
        /// The message id.
        id: u64,
    },
    /// [`Store::raw_message`].
    RawMessage {
        /// The message id.
        id: u64,
    },
}

impl Request {
    /// What the request does, for the log: never the password.
    pub fn describe(&self) -> String {
        match self {
            Request::User { name } => format!("user show {name:?}"),
            Request::Users => "user list".to_string(),
            Request::AddUser { name, .. } => format!("user add {name:?}"),
            Request::SetPassword { name, .. } => format!("user passwd {name:?}"),
            Request::DisableUser { name } => format!("user disable {name:?}"),
            Request::EnableUser { name } => format!("user enable {name:?}"),
            Request::DeleteUser { name } => format!("user del {name:?}"),
            Request::Messages { user, limit } => {
                format!("messages list user={user:?} limit={limit:?}")
            }
            Request::Message { id } => format!("messages show {id}"),
            Request::RawMessage { id } => format!("messages show {id} --raw"),
        }
    }
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

/// What a request returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Answer {
    /// A change was made.
    Done,
    /// One user.
    User(User),
    /// Every user.
    Users(Vec<User>),
    /// Message summaries.
    Messages(Vec<MessageSummary>),
    /// One message's fields.
    Message(Box<StoredMessage>),
    /// One message's bytes (base64 on the wire: JSON has no byte strings).
    Raw(#[serde(with = "base64_bytes")] Vec<u8>),
}

/// Runs `request` against `store`; `now` stamps the changes it makes.
pub fn execute(store: &Store, request: &Request, now: SystemTime) -> Result<Answer, StoreError> {
    let done = |()| Answer::Done;
    match request {
        Request::User { name } => store.user(name).map(Answer::User),
        Request::Users => store.users().map(Answer::Users),
        Request::AddUser { name, password } => store.add_user(name, password, now).map(done),
        Request::SetPassword { name, password } => {
            store.set_password(name, password, now).map(done)
        }
        Request::DisableUser { name } => store.disable_user(name, now).map(done),
        Request::EnableUser { name } => store.enable_user(name, now).map(done),
        Request::DeleteUser { name } => store.delete_user(name).map(done),
        Request::Messages { user, limit } => store
            .messages(user.as_deref(), *limit)
            .map(Answer::Messages),
        Request::Message { id } => store
            .message(MessageId(*id))
            .map(|m| Answer::Message(Box::new(m))),
        Request::RawMessage { id } => store.raw_message(MessageId(*id)).map(Answer::Raw),
    }
}

/// Why talking to the daemon failed (not what it answered).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlError {
    /// The socket.
    pub socket: PathBuf,
    /// What went wrong.
    pub problem: String,
}

impl std::fmt::Display for ControlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "control socket {}: {}",
            self.socket.display(),
            self.problem
        )
    }
}

impl std::error::Error for ControlError {}

/// A connection to the daemon's socket in `data_dir`, or `None` if no daemon listens there
/// (no socket, or one a stopped daemon left behind).
pub fn connect(data_dir: &Path) -> Result<Option<UnixStream>, ControlError> {
    let socket = data_dir.join(CONTROL_SOCKET);
    match UnixStream::connect(&socket) {
        Ok(stream) => Ok(Some(stream)),
        // A path too long for a socket address (InvalidInput): no daemon can listen there.
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound
                    | io::ErrorKind::ConnectionRefused
                    | io::ErrorKind::InvalidInput
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(ControlError {
            socket,
            problem: e.to_string(),
        }),
    }
}

/// Sends `request` over `stream` (from [`connect`]) and returns the daemon's answer.
pub fn call(
    socket: &Path,
    mut stream: UnixStream,
    request: &Request,
) -> Result<Result<Answer, StoreError>, ControlError> {
    let failed = |problem: String| ControlError {
        socket: socket.to_path_buf(),
        problem,
    };
    let bytes = serde_json::to_vec(request).map_err(|e| failed(e.to_string()))?;
    stream
        .set_read_timeout(Some(CLIENT_ANSWER_TIMEOUT))
        .and_then(|()| write_frame(&mut stream, &bytes))
        .map_err(|e| failed(format!("cannot send the request: {e}")))?;
    let answer = read_frame(&mut stream, u32::MAX).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => {
            failed("the server closed the connection without an answer".to_string())
        }
        _ => failed(format!("no answer: {e}")),
    })?;
    serde_json::from_slice(&answer).map_err(|e| failed(format!("unreadable answer: {e}")))
}

/// The daemon's side: a thread answering requests on `DATA_DIR/control.sock`, one at a time,
/// until dropped. Dropping it stops the thread and removes the socket.
#[derive(Debug)]
pub struct ControlServer {
    socket: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// What holds the store the control server works on.
pub trait HoldsStore: Send + Sync + 'static {
    /// The store.
    fn store(&self) -> &Store;
}

impl HoldsStore for Store {
    fn store(&self) -> &Store {
        self
    }
}

impl HoldsStore for Services {
    fn store(&self) -> &Store {
        Services::store(self)
    }
}

impl ControlServer {
    /// Listens on `data_dir/control.sock`. Call it only while holding the store: the lock on
    /// the file is what proves that a socket already there is a stopped daemon's, replaced here.
    pub fn start<S: HoldsStore>(data_dir: &Path, holder: Arc<S>) -> io::Result<ControlServer> {
        let socket = data_dir.join(CONTROL_SOCKET);
        if socket.as_os_str().len() >= MAX_SOCKET_PATH_BYTES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "the path is {} bytes, and a Unix socket's must be under \
                     {MAX_SOCKET_PATH_BYTES}: choose a shorter data_dir",
                    socket.as_os_str().len()
                ),
            ));
        }
        match std::fs::remove_file(&socket) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let listener = UnixListener::bind(&socket)?;
        // The data directory (0700) already keeps others out; this says so on the socket too.
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("atacama-control".into())
                .spawn(move || accept_loop(&listener, holder.store(), &stop))?
        };
        Ok(ControlServer {
            socket,
            stop,
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
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the blocking accept, which then sees the flag; if the socket cannot be reached
        // (removed by hand), the thread is left to end with the process.
        let woken = UnixStream::connect(&self.socket).is_ok();
        if let Some(thread) = self.thread.take().filter(|_| woken) {
            let _ = thread.join();
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

fn accept_loop(listener: &UnixListener, store: &Store, stop: &AtomicBool) {
    for stream in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        match stream {
            Ok(stream) => serve(store, stream),
            Err(error) => {
                crate::logging::control_failed(&error);
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// Answers the one request of `stream`.
fn serve(store: &Store, mut stream: UnixStream) {
    match peer_uid(&stream) {
        Ok(uid) if uid == 0 || uid == own_uid() => {}
        Ok(uid) => return crate::logging::control_refused(&format!("uid {uid}")),
        Err(error) => return crate::logging::control_refused(&error),
    }
    let request = stream
        .set_read_timeout(Some(SERVER_IO_TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(SERVER_IO_TIMEOUT)))
        .and_then(|()| read_frame(&mut stream, MAX_REQUEST_BYTES));
    let request: Request = match request {
        Ok(bytes) => match serde_json::from_slice(&bytes) {
            Ok(request) => request,
            Err(error) => return crate::logging::control_failed(&error),
        },
        // A client that connects to see whether a daemon listens, then goes.
        Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => return,
        Err(error) => return crate::logging::control_failed(&error),
    };
    let outcome = execute(store, &request, SystemTime::now());
    crate::logging::control_request(
        &request.describe(),
        outcome.as_ref().err().map(|e| e as &dyn std::fmt::Display),
    );
    let bytes = match serde_json::to_vec(&outcome) {
        Ok(bytes) => bytes,
        Err(error) => return crate::logging::control_failed(&error),
    };
    if let Err(error) = write_frame(&mut stream, &bytes) {
        crate::logging::control_failed(&error);
    }
}

fn write_frame(stream: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
    let length = u32::try_from(bytes.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "frame over 4 GiB"))?;
    stream.write_all(&length.to_be_bytes())?;
    stream.write_all(bytes)?;
    stream.flush()
}

/// One frame of at most `max` bytes. A clean end before the length is `UnexpectedEof`.
fn read_frame(stream: &mut impl Read, max: u32) -> io::Result<Vec<u8>> {
    let mut length = [0u8; 4];
    stream.read_exact(&mut length)?;
    let length = u32::from_be_bytes(length);
    if length > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a frame of {length} bytes is over the limit of {max}"),
        ));
    }
    // Grown as bytes arrive, not allocated from the length the peer claims.
    let mut bytes = Vec::new();
    stream.take(u64::from(length)).read_to_end(&mut bytes)?;
    if bytes.len() != length as usize {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("the frame ended after {} of {length} bytes", bytes.len()),
        ));
    }
    Ok(bytes)
}

#[cfg(target_os = "linux")]
fn peer_uid(stream: &UnixStream) -> io::Result<u32> {
    use std::os::fd::AsRawFd;
    let mut credentials = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut length = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: the buffer is a `ucred` and `length` says its size, as SO_PEERCRED requires.
    let result = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut credentials as *mut libc::ucred).cast(),
            &mut length,
        )
    };
    if result == 0 {
        Ok(credentials.uid)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Elsewhere the directory's and the socket's modes are the whole check.
#[cfg(not(target_os = "linux"))]
fn peer_uid(_stream: &UnixStream) -> io::Result<u32> {
    Ok(own_uid())
}

fn own_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

mod base64_bytes {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(deserializer)?;
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests;
