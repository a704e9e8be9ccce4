//! The command line both binaries share exactly.
//!
//! ```text
//! atacama-mail [--config FILE] [--data-dir DIR] COMMAND
//!   serve [--log-level LEVEL]     render [FILE]
//!   user add|passwd NAME [--password-stdin]    user disable|enable|del NAME    user list [--json]
//!   messages list [--json] [--user NAME] [--limit N] [--before ID]
//!   messages show ID [--json | --raw | --html]
//!   token add|revoke NAME    token list [--json]
//!   store migrate    store copy|verify --to postgres [--url URL] | --to redb [--data-dir DIR]
//! ```
//! Each binary's `main` is `cli::main(NAME, serve)`; only `serve` differs between them. The
//! database commands work beside a running daemon: they ask it over its control socket, and
//! open the file themselves only when no daemon holds it (see [`target`]).
//!
//! Errors print one line, `NAME: error: …`, on stderr: exit status 2 for bad arguments, 1 for
//! anything else. `--help` at any level prints that level's usage and exits 0.

mod args;
mod messages;
mod output;
mod store;
mod target;
mod token;
mod user;

use std::ffi::OsString;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use atacama_core::config::{Config, ConfigError};
use atacama_store::StoreError;

use args::{Command, Parsed};

/// What `serve` gets: the loaded configuration and the command line's own serve options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeContext {
    /// The configuration, with `--data-dir` applied.
    pub config: Config,
    /// `--log-level`, if given.
    pub log_level: Option<log::LevelFilter>,
}

/// The runtime's server: runs until shutdown; an error is printed and exits 1.
pub type ServeFn = fn(&ServeContext) -> Result<(), Box<dyn std::error::Error>>;

/// Why a command failed.
#[derive(Debug)]
pub enum CliError {
    /// Bad arguments (exit status 2).
    Usage(String),
    /// Anything else (exit status 1).
    Failed(String),
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Usage(message) | CliError::Failed(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for CliError {}

impl From<StoreError> for CliError {
    fn from(error: StoreError) -> Self {
        CliError::Failed(error.to_string())
    }
}

impl From<ConfigError> for CliError {
    fn from(error: ConfigError) -> Self {
        CliError::Failed(error.to_string())
    }
}

impl From<std::io::Error> for CliError {
    fn from(error: std::io::Error) -> Self {
        CliError::Failed(error.to_string())
    }
}

/// The whole of a binary's `main`: parses `std::env::args_os`, runs the command, reports.
pub fn main(program: &str, serve: ServeFn) -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    match run(program, args, serve) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // One line, whatever the error says: newlines from deeper layers become spaces.
            let line = error.to_string().replace(['\r', '\n'], " ");
            let _ = writeln!(std::io::stderr(), "{program}: error: {line}");
            match error {
                CliError::Usage(_) => ExitCode::from(2),
                CliError::Failed(_) => ExitCode::FAILURE,
            }
        }
    }
}

/// Runs one command line (without the program name) to completion.
pub fn run(program: &str, args: Vec<OsString>, serve: ServeFn) -> Result<(), CliError> {
    let Parsed { globals, command } = args::parse(program, args)?;
    let load_config = || -> Result<Config, CliError> {
        let mut config = crate::config::load(globals.config.as_deref())?;
        if let Some(dir) = &globals.data_dir {
            config.data_dir = dir.clone();
        }
        Ok(config)
    };
    let open_store =
        || -> Result<target::Target, CliError> { target::Target::open(&load_config()?) };
    match command {
        Command::Help(text) => output::write_stdout(text.as_bytes()),
        Command::Serve { log_level } => {
            let context = ServeContext {
                config: load_config()?,
                log_level,
            };
            serve(&context).map_err(|e| CliError::Failed(e.to_string()))
        }
        Command::Render { file } => render(file.as_deref()),
        Command::User(command) => user::run(&open_store()?, command),
        Command::Messages(command) => messages::run(&open_store()?, command),
        Command::Token(command) => token::run(&open_store()?, command),
        Command::Store(command) => {
            // Unapplied: with `--to redb`, --data-dir names the target.
            let config = crate::config::load(globals.config.as_deref())?;
            let data_dirs = (globals.earlier_data_dir, globals.data_dir);
            store::run(config, data_dirs, command)
        }
    }
}

/// `render [FILE]`: Atacama markup in, the HTML a message with that text would store, out.
fn render(file: Option<&Path>) -> Result<(), CliError> {
    let (name, bytes) = match file {
        Some(path) => (
            path.display().to_string(),
            std::fs::read(path)
                .map_err(|e| CliError::Failed(format!("cannot read {}: {e}", path.display())))?,
        ),
        None => {
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut bytes)
                .map_err(|e| CliError::Failed(format!("cannot read standard input: {e}")))?;
            ("standard input".to_string(), bytes)
        }
    };
    let text = String::from_utf8(bytes)
        .map_err(|_| CliError::Failed(format!("{name} is not valid UTF-8")))?;
    output::write_stdout(atacama_core::markup::render(&text).as_bytes())
}

/// Global options, accepted before or after the command.
#[derive(Debug, Default)]
struct Globals {
    config: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    /// The `--data-dir` before the last, if it was given twice: `store copy --to redb`'s
    /// source.
    earlier_data_dir: Option<PathBuf>,
}
