//! Where the database commands go: to the running daemon over its control socket, or, when no
//! daemon runs, to the file itself. Either way a command is a [`Request`] run by
//! [`control::execute`], so what a command does cannot depend on who holds the file. A
//! database that several processes share ([`store::is_shared`]) is always opened here.
//!
//! Before a redb file is opened or its daemon asked, the data directory is created `0700` or
//! checked ([`DataDir::prepare`]), and the daemon is asked only if it runs as a user the
//! directory trusts ([`control::connect`]).

use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::CliError;
use crate::control::{self, Answer, Bodies, Request};
use crate::store;
use atacama_core::config::Config;
use atacama_store::data_dir::DataDir;
use atacama_store::{Backend, IN_USE_RETRY, MessagePage, StoreError, StoredMessage, Token, User};

/// How long to wait for a file that another command line holds (for one command).
const IN_USE_WAIT: Duration = Duration::from_secs(5);

/// The store the commands run against.
pub(super) enum Target {
    /// The store, opened by this process: no daemon holds the file, or the database is
    /// shared.
    Local(Arc<dyn Backend>),
    /// The daemon that holds the file, asked over `DATA_DIR/control.sock`.
    Daemon {
        /// Its data directory.
        data_dir: DataDir,
    },
}

impl Target {
    /// The store `[store]` names: a shared database itself; for redb the daemon if one
    /// answers on the data directory's socket, else the file. A file that another command
    /// line holds is waited for, asking for a daemon again each time. A file from before
    /// channels gives its messages `channels.default`.
    pub(super) fn open(config: &Config) -> Result<Target, CliError> {
        if store::is_shared(config) {
            return Ok(Target::Local(store::open(config, Duration::ZERO)?));
        }
        let data_dir = &config.data_dir;
        let dir = DataDir::prepare(data_dir).map_err(|e| CliError::Failed(e.to_string()))?;
        let deadline = Instant::now() + IN_USE_WAIT;
        loop {
            if control::connect(&dir)
                .map_err(|e| CliError::Failed(e.to_string()))?
                .is_some()
            {
                return Ok(Target::Daemon { data_dir: dir });
            }
            match store::open(config, Duration::ZERO) {
                Ok(store) => {
                    if store.recovered() > 0 {
                        // The command line keeps no log: say it here, once, to whoever ran it.
                        let _ = writeln!(
                            std::io::stderr(),
                            "recovered {} messages from the journal: the server had not stopped \
                             cleanly",
                            store.recovered()
                        );
                    }
                    return Ok(Target::Local(store));
                }
                Err(StoreError::InUse(_)) if Instant::now() < deadline => {
                    std::thread::sleep(IN_USE_RETRY);
                }
                Err(error @ StoreError::InUse(_)) => {
                    return Err(CliError::Failed(format!(
                        "{error}, and no server answers on {}",
                        data_dir.join(control::CONTROL_SOCKET).display()
                    )));
                }
                Err(error) => return Err(error.into()),
            }
        }
    }

    fn call(&self, request: &Request) -> Result<Answer, CliError> {
        match self {
            Target::Local(store) => Ok(control::execute(&**store, request, SystemTime::now())?),
            Target::Daemon { data_dir } => {
                let socket = data_dir.path().join(control::CONTROL_SOCKET);
                let failed = |e: control::ControlError| CliError::Failed(e.to_string());
                let stream = control::connect(data_dir).map_err(failed)?.ok_or_else(|| {
                    CliError::Failed(format!(
                        "the server stopped answering on {} during the command",
                        socket.display()
                    ))
                })?;
                Ok(control::call(&socket, stream, request).map_err(failed)??)
            }
        }
    }

    pub(super) fn user(&self, name: &str) -> Result<User, CliError> {
        let request = Request::User { name: name.into() };
        match self.call(&request)? {
            Answer::User(user) => Ok(user),
            other => Err(unexpected(&request, &other)),
        }
    }

    pub(super) fn users(&self) -> Result<Vec<User>, CliError> {
        match self.call(&Request::Users)? {
            Answer::Users(users) => Ok(users),
            other => Err(unexpected(&Request::Users, &other)),
        }
    }

    /// One page of the list ([`atacama_store::Backend::messages_page`]).
    pub(super) fn messages(
        &self,
        user: Option<String>,
        before: Option<u64>,
        limit: usize,
    ) -> Result<MessagePage, CliError> {
        let request = Request::Messages {
            user,
            before,
            limit,
        };
        match self.call(&request)? {
            Answer::Messages(messages) => Ok(messages),
            other => Err(unexpected(&request, &other)),
        }
    }

    /// Message `id`, with only the `bodies` the command prints: each is as large as the
    /// message, or larger.
    pub(super) fn message(&self, id: u64, bodies: Bodies) -> Result<StoredMessage, CliError> {
        let request = Request::Message { id, bodies };
        match self.call(&request)? {
            Answer::Message(message) => Ok(*message),
            other => Err(unexpected(&request, &other)),
        }
    }

    pub(super) fn raw_message(&self, id: u64) -> Result<Vec<u8>, CliError> {
        let request = Request::RawMessage { id };
        match self.call(&request)? {
            Answer::Raw(bytes) => Ok(bytes),
            other => Err(unexpected(&request, &other)),
        }
    }

    /// A new read token named `name`, returned once ([`atacama_store::Backend::add_token`]).
    pub(super) fn add_token(&self, name: &str) -> Result<String, CliError> {
        let request = Request::AddToken { name: name.into() };
        match self.call(&request)? {
            Answer::Token(token) => Ok(token.0),
            other => Err(unexpected(&request, &other)),
        }
    }

    pub(super) fn tokens(&self) -> Result<Vec<Token>, CliError> {
        match self.call(&Request::Tokens)? {
            Answer::Tokens(tokens) => Ok(tokens),
            other => Err(unexpected(&Request::Tokens, &other)),
        }
    }

    /// A request that changes something and returns nothing.
    pub(super) fn change(&self, request: &Request) -> Result<(), CliError> {
        match self.call(request)? {
            Answer::Done => Ok(()),
            other => Err(unexpected(request, &other)),
        }
    }
}

/// An answer of the wrong kind: a daemon of another version, most likely.
fn unexpected(request: &Request, answer: &Answer) -> CliError {
    let kind = match answer {
        Answer::Done => "done",
        Answer::User(_) => "a user",
        Answer::Users(_) => "users",
        Answer::Messages(_) => "messages",
        Answer::Message(_) => "a message",
        Answer::Raw(_) => "message bytes",
        Answer::Token(_) => "a token",
        Answer::Tokens(_) => "tokens",
    };
    CliError::Failed(format!(
        "the server answered {} with {kind}",
        request.describe()
    ))
}
