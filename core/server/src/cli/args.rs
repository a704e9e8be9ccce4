//! Parsing the command line (lexopt) into a [`Command`], and the usage texts.
//!
//! One pass collects global options, flags and words wherever they appear; the words then pick
//! the command, which says which options it takes. So `--data-dir` works before or after the
//! command, and every level answers `--help`.

use std::ffi::OsString;
use std::path::PathBuf;
use std::str::FromStr;

use lexopt::{Arg, Parser};

use super::{CliError, Globals};

/// A parsed command line.
pub(super) struct Parsed {
    pub globals: Globals,
    pub command: Command,
}

/// What to do.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Command {
    /// Print this usage text to stdout and exit 0.
    Help(String),
    Serve {
        log_level: Option<log::LevelFilter>,
    },
    Render {
        file: Option<PathBuf>,
    },
    User(UserCommand),
    Messages(MessagesCommand),
    Token(TokenCommand),
    Store(StoreCommand),
}

/// `store …`.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum StoreCommand {
    /// Bring the configured store's schema up to date.
    Migrate,
    /// Copy the configured store into another and verify the copy, or only compare the two.
    Copy { to: CopyTo, mode: CopyMode },
}

/// What `store copy|verify` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CopyMode {
    /// `copy`: into an empty store, then verify.
    Copy,
    /// `copy --resume`: go on with a copy that stopped, then verify.
    Resume,
    /// `verify`: compare only.
    Verify,
}

/// The store `store copy --to` names.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum CopyTo {
    /// `--to postgres [--url URL]`: `store.url` unless `--url` is given.
    Postgres { url: Option<String> },
    /// `--to redb`: the data directory `--data-dir` names (for this command, the target's).
    Redb,
}

/// `token …`.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum TokenCommand {
    Add { name: String },
    Revoke { name: String },
    List { json: bool },
}

/// `user …`.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum UserCommand {
    Add { name: String, password_stdin: bool },
    Passwd { name: String, password_stdin: bool },
    Disable { name: String },
    Enable { name: String },
    Del { name: String },
    List { json: bool },
}

/// `messages …`.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum MessagesCommand {
    List {
        json: bool,
        user: Option<String>,
        /// Only messages whose id is below this one (the next page).
        before: Option<u64>,
        limit: usize,
    },
    Show {
        id: u64,
        format: ShowFormat,
    },
}

/// How `messages show` prints a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ShowFormat {
    Summary,
    Json,
    Raw,
    Html,
}

/// Options that take a value, besides the global `--config` and `--data-dir`.
const VALUED: &[&str] = &["user", "limit", "before", "log-level", "to", "url"];

/// How many messages `messages list` prints when not given `--limit`.
pub(super) const DEFAULT_LIST_LIMIT: usize = 50;

/// The options a command was given, as (name, value).
struct Options(Vec<(String, Option<String>)>);

impl Options {
    /// Refuses any option `command` does not take.
    fn only(&self, allowed: &[&str], command: &str) -> Result<(), CliError> {
        match self
            .0
            .iter()
            .find(|(name, _)| !allowed.contains(&name.as_str()))
        {
            Some((name, _)) => Err(usage(format!("'{command}' does not take --{name}"))),
            None => Ok(()),
        }
    }

    fn flag(&self, name: &str) -> bool {
        self.0.iter().any(|(n, _)| n == name)
    }

    fn value(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.as_deref())
    }

    /// The value of `--name`, if given, as a number.
    fn number<T: FromStr>(&self, name: &str) -> Result<Option<T>, CliError> {
        self.value(name)
            .map(|n| {
                n.parse::<T>()
                    .map_err(|_| usage(format!("--{name} {n:?} is not a number")))
            })
            .transpose()
    }
}

/// Parses the arguments after the program name.
pub(super) fn parse(program: &str, args: Vec<OsString>) -> Result<Parsed, CliError> {
    let mut parser = Parser::from_args(args);
    let mut globals = Globals::default();
    let mut help = false;
    let mut words: Vec<OsString> = Vec::new();
    let mut options = Vec::new();
    while let Some(arg) = parser.next().map_err(lexopt_error)? {
        match arg {
            Arg::Short('h') | Arg::Long("help") => help = true,
            Arg::Long("config") => {
                globals.config = Some(parser.value().map_err(lexopt_error)?.into())
            }
            Arg::Long("data-dir") => {
                let dir = parser.value().map_err(lexopt_error)?;
                if dir.is_empty() {
                    return Err(usage("--data-dir must not be empty".into()));
                }
                globals.earlier_data_dir = globals.data_dir.replace(dir.into());
            }
            Arg::Long(name) if VALUED.contains(&name) => {
                let name = name.to_string();
                let value = utf8(parser.value().map_err(lexopt_error)?, &format!("--{name}"))?;
                options.push((name, Some(value)));
            }
            Arg::Long(name) => options.push((name.to_string(), None)),
            Arg::Short(c) => return Err(usage(format!("unknown option -{c}"))),
            Arg::Value(word) => words.push(word),
        }
    }
    let command = command(program, help, words, &Options(options))?;
    Ok(Parsed { globals, command })
}

fn command(
    program: &str,
    help: bool,
    words: Vec<OsString>,
    options: &Options,
) -> Result<Command, CliError> {
    let mut words = words.into_iter();
    let first = words.next().map(|w| utf8(w, "the command")).transpose()?;
    let help_for = |text: fn(&str) -> String| Ok(Command::Help(text(program)));
    match first.as_deref() {
        None if help => help_for(top_usage),
        None => Err(usage(format!("no command given (see {program} --help)"))),
        Some("help") => help_for(top_usage),
        Some("serve") if help => help_for(serve_usage),
        Some("serve") => {
            options.only(&["log-level"], "serve")?;
            no_more(words, "serve")?;
            let log_level = options
                .value("log-level")
                .map(|level| {
                    log::LevelFilter::from_str(level).map_err(|_| {
                        usage(format!(
                            "--log-level {level:?} is not one of off, error, warn, info, debug, \
                             trace"
                        ))
                    })
                })
                .transpose()?;
            Ok(Command::Serve { log_level })
        }
        Some("render") if help => help_for(render_usage),
        Some("render") => {
            options.only(&[], "render")?;
            let file = words.next().map(PathBuf::from);
            no_more(words, "render")?;
            Ok(Command::Render { file })
        }
        Some("user") if help => help_for(user_usage),
        Some("user") => user_command(program, words, options).map(Command::User),
        Some("messages") if help => help_for(messages_usage),
        Some("messages") => messages_command(program, words, options).map(Command::Messages),
        Some("token") if help => help_for(token_usage),
        Some("token") => token_command(program, words, options).map(Command::Token),
        Some("store") if help => help_for(store_usage),
        Some("store") => store_command(program, words, options).map(Command::Store),
        Some(other) => Err(usage(format!(
            "unknown command {other:?} (see {program} --help)"
        ))),
    }
}

fn user_command(
    program: &str,
    mut words: impl Iterator<Item = OsString>,
    options: &Options,
) -> Result<UserCommand, CliError> {
    let sub = subcommand(program, "user", &mut words)?;
    let command = format!("user {sub}");
    let mut name = || named(&mut words, &command, "user");
    let parsed = match sub.as_str() {
        "add" | "passwd" => {
            options.only(&["password-stdin"], &command)?;
            let name = name()?;
            let password_stdin = options.flag("password-stdin");
            if sub == "add" {
                UserCommand::Add {
                    name,
                    password_stdin,
                }
            } else {
                UserCommand::Passwd {
                    name,
                    password_stdin,
                }
            }
        }
        "disable" | "enable" | "del" => {
            options.only(&[], &command)?;
            let name = name()?;
            match sub.as_str() {
                "disable" => UserCommand::Disable { name },
                "enable" => UserCommand::Enable { name },
                _ => UserCommand::Del { name },
            }
        }
        "list" => {
            options.only(&["json"], &command)?;
            UserCommand::List {
                json: options.flag("json"),
            }
        }
        other => return Err(unknown_subcommand(program, "user", other)),
    };
    no_more(words, &command)?;
    Ok(parsed)
}

fn token_command(
    program: &str,
    mut words: impl Iterator<Item = OsString>,
    options: &Options,
) -> Result<TokenCommand, CliError> {
    let sub = subcommand(program, "token", &mut words)?;
    let command = format!("token {sub}");
    let mut name = || named(&mut words, &command, "token");
    let parsed = match sub.as_str() {
        "add" | "revoke" => {
            options.only(&[], &command)?;
            let name = name()?;
            if sub == "add" {
                TokenCommand::Add { name }
            } else {
                TokenCommand::Revoke { name }
            }
        }
        "list" => {
            options.only(&["json"], &command)?;
            TokenCommand::List {
                json: options.flag("json"),
            }
        }
        other => return Err(unknown_subcommand(program, "token", other)),
    };
    no_more(words, &command)?;
    Ok(parsed)
}

fn store_command(
    program: &str,
    mut words: impl Iterator<Item = OsString>,
    options: &Options,
) -> Result<StoreCommand, CliError> {
    let sub = subcommand(program, "store", &mut words)?;
    let command = format!("store {sub}");
    let parsed = match sub.as_str() {
        "migrate" => {
            options.only(&[], &command)?;
            StoreCommand::Migrate
        }
        "copy" | "verify" => {
            if sub == "copy" {
                options.only(&["to", "url", "resume"], &command)?;
            } else {
                options.only(&["to", "url"], &command)?;
            }
            let url = options.value("url").map(str::to_string);
            let to = match options.value("to") {
                Some("postgres") => CopyTo::Postgres { url },
                Some("redb") if url.is_none() => CopyTo::Redb,
                Some("redb") => {
                    return Err(usage(format!("'{command} --to redb' does not take --url")));
                }
                Some(other) => {
                    return Err(usage(format!(
                        "--to {other:?} is not one of postgres, redb"
                    )));
                }
                None => {
                    return Err(usage(format!(
                        "'{command}' needs --to postgres or --to redb"
                    )));
                }
            };
            let mode = match (sub.as_str(), options.flag("resume")) {
                ("verify", _) => CopyMode::Verify,
                (_, true) => CopyMode::Resume,
                (_, false) => CopyMode::Copy,
            };
            StoreCommand::Copy { to, mode }
        }
        other => return Err(unknown_subcommand(program, "store", other)),
    };
    no_more(words, &command)?;
    Ok(parsed)
}

/// The subcommand after `group` (`user add`…), or the usage error that names the help.
fn subcommand(
    program: &str,
    group: &str,
    words: &mut impl Iterator<Item = OsString>,
) -> Result<String, CliError> {
    let sub = words.next().ok_or_else(|| {
        usage(format!(
            "'{group}' needs a subcommand (see {program} {group} --help)"
        ))
    })?;
    utf8(sub, "the subcommand")
}

fn unknown_subcommand(program: &str, group: &str, other: &str) -> CliError {
    usage(format!(
        "unknown subcommand '{group} {other}' (see {program} {group} --help)"
    ))
}

/// The NAME `command` needs next: a `what` (user, token) name.
fn named(
    words: &mut impl Iterator<Item = OsString>,
    command: &str,
    what: &str,
) -> Result<String, CliError> {
    let name = words
        .next()
        .ok_or_else(|| usage(format!("'{command}' needs a {what} NAME")))?;
    utf8(name, &format!("the {what} name"))
}

fn messages_command(
    program: &str,
    mut words: impl Iterator<Item = OsString>,
    options: &Options,
) -> Result<MessagesCommand, CliError> {
    let sub = subcommand(program, "messages", &mut words)?;
    let parsed = match sub.as_str() {
        "list" => {
            options.only(&["json", "user", "limit", "before"], "messages list")?;
            let limit = options.number::<usize>("limit")?;
            MessagesCommand::List {
                json: options.flag("json"),
                user: options.value("user").map(str::to_string),
                before: options.number::<u64>("before")?,
                limit: limit.unwrap_or(DEFAULT_LIST_LIMIT),
            }
        }
        "show" => {
            options.only(&["json", "raw", "html"], "messages show")?;
            let id = words
                .next()
                .ok_or_else(|| usage("'messages show' needs a message ID".into()))?;
            let id = utf8(id, "the message ID")?;
            let id = id
                .parse::<u64>()
                .map_err(|_| usage(format!("message ID {id:?} is not a number")))?;
            let formats = [
                ("json", ShowFormat::Json),
                ("raw", ShowFormat::Raw),
                ("html", ShowFormat::Html),
            ];
            let mut chosen = formats.iter().filter(|(name, _)| options.flag(name));
            let format = match (chosen.next(), chosen.next()) {
                (None, _) => ShowFormat::Summary,
                (Some((_, format)), None) => *format,
                (Some(_), Some(_)) => {
                    return Err(usage("choose one of --json, --raw and --html".into()));
                }
            };
            MessagesCommand::Show { id, format }
        }
        other => return Err(unknown_subcommand(program, "messages", other)),
    };
    no_more(words, &format!("messages {sub}"))?;
    Ok(parsed)
}

fn no_more(mut words: impl Iterator<Item = OsString>, command: &str) -> Result<(), CliError> {
    match words.next() {
        Some(extra) => Err(usage(format!(
            "unexpected argument {:?} for '{command}'",
            extra.to_string_lossy()
        ))),
        None => Ok(()),
    }
}

fn utf8(value: OsString, what: &str) -> Result<String, CliError> {
    value.into_string().map_err(|v| {
        usage(format!(
            "{what} {:?} is not valid UTF-8",
            v.to_string_lossy()
        ))
    })
}

fn usage(message: String) -> CliError {
    CliError::Usage(message)
}

fn lexopt_error(error: lexopt::Error) -> CliError {
    usage(error.to_string())
}

fn top_usage(program: &str) -> String {
    format!(
        "{program}: the Atacama Mail SMTP submission server

Usage: {program} [--config FILE] [--data-dir DIR] COMMAND

Commands:
  serve [--log-level LEVEL]       run the server
  render [FILE]                   render Atacama markup (FILE or stdin) to HTML
  user SUBCOMMAND                 manage users (see '{program} user --help')
  messages SUBCOMMAND             read stored messages (see '{program} messages --help')
  token SUBCOMMAND                manage read tokens for private channels (see '{program} token --help')
  store SUBCOMMAND                migrate, copy the store (see '{program} store --help')

Options:
  --config FILE    the TOML configuration (default: built-in defaults)
  --data-dir DIR   where the database lives (overrides data_dir in the configuration)
  -h, --help       print help

The database commands work while the server runs.
"
    )
}

fn serve_usage(program: &str) -> String {
    format!(
        "Usage: {program} [--config FILE] [--data-dir DIR] serve [--log-level LEVEL]

Runs the server until SIGTERM or SIGINT.

Options:
  --log-level LEVEL   off, error, warn, info (default), debug or trace
"
    )
}

fn render_usage(program: &str) -> String {
    format!(
        "Usage: {program} render [FILE]

Reads Atacama markup from FILE, or standard input, and writes the HTML that a message with
that text body would store.
"
    )
}

fn user_usage(program: &str) -> String {
    format!(
        "Usage: {program} [--config FILE] [--data-dir DIR] user SUBCOMMAND

Subcommands:
  add NAME [--password-stdin]      add a user (prompts for the password unless --password-stdin)
  passwd NAME [--password-stdin]   change a user's password
  disable NAME                     stop a user from logging in
  enable NAME                      let a disabled user log in again
  del NAME                         delete a user (their messages stay)
  list [--json]                    list users

--password-stdin reads the password from the first line of standard input.
"
    )
}

fn token_usage(program: &str) -> String {
    format!(
        "Usage: {program} [--config FILE] [--data-dir DIR] token SUBCOMMAND

Subcommands:
  add NAME          make a read token and print it, alone on the first line: it is shown
                    only this once (only its hash is stored)
  revoke NAME       revoke a token: requests bearing it get 401 from now on
  list [--json]     list the tokens' names and when they were made (never the tokens)

A request with 'Authorization: Bearer TOKEN' also sees the private channels.
"
    )
}

fn messages_usage(program: &str) -> String {
    format!(
        "Usage: {program} [--config FILE] [--data-dir DIR] messages SUBCOMMAND

Subcommands:
  list [--json] [--user NAME] [--limit N] [--before ID]
                                      list messages, newest first: at most N (default
                                      {DEFAULT_LIST_LIMIT}), only those whose ID is below ID
  show ID [--json | --raw | --html]   show one message: a summary and its text, all fields
                                      as JSON, the stored bytes, or its HTML

When more messages match than the list shows, a last line says so and gives the --before
that lists the next ones (with --json, that line goes to standard error).
"
    )
}

fn store_usage(program: &str) -> String {
    format!(
        "Usage: {program} [--config FILE] [--data-dir DIR] store SUBCOMMAND

Subcommands:
  migrate                          bring the configured store's schema up to date, and say
                                   from which version to which
  copy --to postgres [--url URL]   copy the configured store into an empty PostgreSQL
                                   database: store.url unless --url is given, with
                                   store.password_file (or PGPASSFILE)
  copy --to redb [--data-dir DIR]  copy the configured store into an empty redb data
                                   directory: DIR, or data_dir when the store is PostgreSQL
  copy --resume --to ...           go on with a copy that stopped: copy what the target
                                   lacks, then verify
  verify --to ...                  compare the configured store with such a copy

copy moves users (with their password hashes), tokens and every message under its id, then
verifies: the same users and tokens, and the same messages, each with raw bytes of the same
SHA-256. A target that holds anything is refused: a copy never merges. A copy that
stopped (the database went away, the disk filled) leaves whole batches in the target, and
says so; --resume then copies only the messages after the target's newest, once it has
checked that the target holds the source's users and tokens and nothing the source lacks. With --to redb,
--data-dir names the target (given twice: the source, then the target). Stop the servers
first: copy refuses a redb file that a server holds, and mail delivered to a PostgreSQL
source meanwhile would differ.
"
    )
}

#[cfg(test)]
mod tests;
