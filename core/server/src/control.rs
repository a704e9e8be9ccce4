//! The command line's way into the database while a daemon holds it.
//!
//! The daemon opens the database alone: one fsync per commit instead of two (see
//! [`atacama_store`]), and no other process may open the file. So while it runs it answers the
//! command line's store operations on a Unix socket, `DATA_DIR/control.sock`. Without a daemon
//! the command line opens the file itself and runs the same [`Request`] through [`execute`]:
//! what a command does to the store is one code path, whoever holds the file. A database that
//! several processes share needs no socket: the command line opens it itself
//! ([`crate::store::is_shared`]).
//!
//! The protocol is one request per connection: the client sends one frame holding a
//! [`Request`], the daemon answers with one frame holding a `Result<Answer, StoreError>`. A
//! frame is a 4-byte big-endian length, then that many bytes of JSON. Passwords are read by
//! the command line and travel only over this socket. The format has no version: both ends
//! are the same build (the daemon and the command line are one binary). A message's text and
//! HTML travel only when the request asks for them ([`Bodies`]): a 25 MB message once made
//! 1.64 GB of JSON for `messages show`, which prints one of them at most.
//!
//! Who may talk to whom: the socket is mode 0600 inside the 0700 data directory, and each end
//! checks the other's uid (`SO_PEERCRED`) against [`DataDir::trusts`]: root, its own user,
//! or the data directory's owner. The daemon refuses any other peer; the command line sends
//! nothing (a new user's password, say) to a listener of any other uid.
//!
//! The socket never exists at its name with a mode wider than 0600: it is bound inside a
//! private directory (`DATA_DIR/control.tmp`, 0700), made 0600 there, then renamed into
//! place. (A umask would do it too, but the umask is the whole process's: the committer,
//! zero-ahead and verifier threads already run when the socket is made, and in the tests
//! other threads create files and directories at any moment.)
//!
//! # Concurrency and deadlines
//! One thread accepts; each connection is served on a thread of its own, at most
//! [`MAX_CLIENTS`] at once. Past that, new connections wait in the socket's listen queue
//! until one ends (the command line waits up to [`CLIENT_ANSWER_TIMEOUT`] for its answer);
//! none is refused. A client has [`REQUEST_DEADLINE`] to send its whole request and
//! [`ANSWER_DEADLINE`] to take the whole answer, so a slot is held at most that long plus
//! the store operation: a client sending a byte every 8 s once held the only slot for
//! 34 s. Clients hold the store only while their request runs
//! ([`Weak`](std::sync::Weak) otherwise), and dropping the [`ControlServer`] waits for none
//! of them: it stops the accepting thread, and a request not yet run when the server stops is
//! not run (its client gets no answer).

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::service::Services;
use atacama_core::smtp::MessageId;
use atacama_store::data_dir::{DataDir, euid};
use atacama_store::{Backend, MessagePage, StoreError, StoredMessage, Token, User};

/// The socket's name inside the data directory.
pub const CONTROL_SOCKET: &str = "control.sock";

/// The private directory inside the data directory where the socket is bound before it is
/// renamed to [`CONTROL_SOCKET`]; it exists only while the daemon starts.
pub const BIND_DIR: &str = "control.tmp";

/// A Unix socket's path must fit `sockaddr_un.sun_path` (108 bytes on Linux, NUL included).
pub const MAX_SOCKET_PATH_BYTES: usize = 108;

/// The largest request the daemon reads: a user name and a password are well under it.
pub const MAX_REQUEST_BYTES: u32 = 64 * 1024;

/// How many clients the daemon serves at once; more wait in the listen queue.
pub const MAX_CLIENTS: usize = 4;

/// How long a client has to send its whole request, from the moment it is accepted.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(5);

/// How long a client has to take its whole answer: a message of the largest size is written
/// in milliseconds to a command line that reads it.
pub const ANSWER_DEADLINE: Duration = Duration::from_secs(10);

/// How long the command line waits for an answer: a bcrypt hash of the configured cost comes
/// first (about 0.3 s at cost 12 here; cost 16 takes seconds), behind any request before it.
pub const CLIENT_ANSWER_TIMEOUT: Duration = Duration::from_secs(300);

/// Which of a message's bodies a [`Request::Message`] brings back; those not asked for come
/// back empty. Each is as large as the message (the HTML several times that).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bodies {
    /// The text body.
    pub text: bool,
    /// The rendered HTML.
    pub html: bool,
}

impl Bodies {
    /// Neither body: the fields only.
    pub const NONE: Bodies = Bodies {
        text: false,
        html: false,
    };
    /// The text body only (`messages show`).
    pub const TEXT: Bodies = Bodies {
        text: true,
        html: false,
    };
    /// The HTML only (`messages show --html`).
    pub const HTML: Bodies = Bodies {
        text: false,
        html: true,
    };
    /// Both (`messages show --json`).
    pub const BOTH: Bodies = Bodies {
        text: true,
        html: true,
    };

    /// `message` with the bodies not asked for emptied.
    fn keep(self, mut message: StoredMessage) -> StoredMessage {
        if !self.text {
            message.text = String::new();
        }
        if !self.html {
            message.html = String::new();
        }
        message
    }
}

/// A store operation of the command line.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// [`Backend::user`].
    User {
        /// The login name.
        name: String,
    },
    /// [`Backend::users`].
    Users,
    /// [`Backend::add_user`].
    AddUser {
        /// The login name.
        name: String,
        /// The password, hashed by the store.
        password: String,
    },
    /// [`Backend::set_password`].
    SetPassword {
        /// The login name.
        name: String,
        /// The new password.
        password: String,
    },
    /// [`Backend::disable_user`].
    DisableUser {
        /// The login name.
        name: String,
    },
    /// [`Backend::enable_user`].
    EnableUser {
        /// The login name.
        name: String,
    },
    /// [`Backend::delete_user`].
    DeleteUser {
        /// The login name.
        name: String,
    },
    /// [`Backend::messages_page`].
    Messages {
        /// Only this user's.
        user: Option<String>,
        /// Only those whose id is below this one.
        before: Option<u64>,
        /// At most this many.
        limit: usize,
    },
    /// [`Backend::message`], with only the bodies asked for.
    Message {
        /// The message id.
        id: u64,
        /// The bodies to send back; the others come back empty.
        bodies: Bodies,
    },
    /// [`Backend::raw_message`].
    RawMessage {
        /// The message id.
        id: u64,
    },
    /// [`Backend::add_token`]: the answer carries the token, the only time it is seen.
    AddToken {
        /// The token's name.
        name: String,
    },
    /// [`Backend::tokens`].
    Tokens,
    /// [`Backend::revoke_token`].
    RevokeToken {
        /// The token's name.
        name: String,
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
            Request::Messages {
                user,
                before,
                limit,
            } => format!("messages list user={user:?} before={before:?} limit={limit}"),
            Request::Message { id, bodies } => format!(
                "messages show {id} text={} html={}",
                bodies.text, bodies.html
            ),
            Request::RawMessage { id } => format!("messages show {id} --raw"),
            Request::AddToken { name } => format!("token add {name:?}"),
            Request::Tokens => "token list".to_string(),
            Request::RevokeToken { name } => format!("token revoke {name:?}"),
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
    /// One page of message summaries.
    Messages(MessagePage),
    /// One message's fields, with the bodies the request asked for.
    Message(Box<StoredMessage>),
    /// One message's bytes (base64 on the wire: JSON has no byte strings).
    Raw(#[serde(with = "base64_bytes")] Vec<u8>),
    /// A new read token, the only time it is seen.
    Token(NewToken),
    /// Every token (names and dates, never the tokens).
    Tokens(Vec<Token>),
}

/// A token just made: its text, which `Debug` never shows (answers may be logged).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewToken(pub String);

impl std::fmt::Debug for NewToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NewToken(…)")
    }
}

/// Runs `request` against `store`; `now` stamps the changes it makes.
pub fn execute(
    store: &dyn Backend,
    request: &Request,
    now: SystemTime,
) -> Result<Answer, StoreError> {
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
        Request::Messages {
            user,
            before,
            limit,
        } => store
            .messages_page(user.as_deref(), before.map(MessageId), *limit)
            .map(Answer::Messages),
        Request::Message { id, bodies } => store
            .message(MessageId(*id))
            .map(|m| Answer::Message(Box::new(bodies.keep(m)))),
        Request::RawMessage { id } => store.raw_message(MessageId(*id)).map(Answer::Raw),
        Request::AddToken { name } => store
            .add_token(name, now)
            .map(|token| Answer::Token(NewToken(token))),
        Request::Tokens => store.tokens().map(Answer::Tokens),
        Request::RevokeToken { name } => store.revoke_token(name).map(done),
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
/// (no socket, or one a stopped daemon left behind). A listener whose uid the data directory
/// does not [trust](DataDir::trusts) is an error: nothing has been sent to it.
pub fn connect(data_dir: &DataDir) -> Result<Option<UnixStream>, ControlError> {
    let socket = data_dir.path().join(CONTROL_SOCKET);
    let failed = |problem: String| ControlError {
        socket: socket.clone(),
        problem,
    };
    let stream = match UnixStream::connect(&socket) {
        Ok(stream) => stream,
        // A path too long for a socket address (InvalidInput): no daemon can listen there.
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound
                    | io::ErrorKind::ConnectionRefused
                    | io::ErrorKind::InvalidInput
            ) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(failed(e.to_string())),
    };
    match peer_uid(&stream) {
        Ok(uid) if data_dir.trusts(uid) => Ok(Some(stream)),
        Ok(uid) => Err(failed(format!(
            "the process listening there runs as uid {uid}, which is neither root, this user \
             (uid {}) nor the data directory's owner (uid {}): nothing was sent to it",
            euid(),
            data_dir.owner()
        ))),
        Err(e) => Err(failed(format!("cannot tell who listens there: {e}"))),
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

/// What holds the store the control server works on.
pub trait HoldsStore: Send + Sync + 'static {
    /// The store.
    fn store(&self) -> &dyn Backend;
}

/// A store on its own, as the tests hold one.
impl<B: Backend + 'static> HoldsStore for B {
    fn store(&self) -> &dyn Backend {
        self
    }
}

impl HoldsStore for Services {
    fn store(&self) -> &dyn Backend {
        Services::store(self)
    }
}

pub(crate) fn write_frame(stream: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
    let length = u32::try_from(bytes.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "frame over 4 GiB"))?;
    stream.write_all(&length.to_be_bytes())?;
    stream.write_all(bytes)?;
    stream.flush()
}

/// One frame of at most `max` bytes. A clean end before the length is `UnexpectedEof`.
pub(crate) fn read_frame(stream: &mut impl Read, max: u32) -> io::Result<Vec<u8>> {
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

/// The uid of the process at the other end: for the daemon, the client's at `connect`; for
/// the command line, the daemon's at `listen`.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)] // getsockopt(SO_PEERCRED) has no safe wrapper in std
pub(crate) fn peer_uid(stream: &UnixStream) -> io::Result<u32> {
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
pub(crate) fn peer_uid(_stream: &UnixStream) -> io::Result<u32> {
    Ok(euid())
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

mod server;

pub use server::ControlServer;

#[cfg(test)]
mod tests;
