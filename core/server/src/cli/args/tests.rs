//! Argument parsing: every command, globals anywhere, and usage errors.

use super::*;

fn parse_ok(args: &[&str]) -> (Globals, Command) {
    let args = args.iter().map(OsString::from).collect();
    match parse("atacama-mail", args) {
        Ok(Parsed { globals, command }) => (globals, command),
        Err(e) => panic!("{args:?}: {e}", args = args_debug(&e)),
    }
}

fn args_debug(e: &CliError) -> String {
    format!("{e:?}")
}

fn command(args: &[&str]) -> Command {
    parse_ok(args).1
}

fn usage_error(args: &[&str]) -> String {
    let os = args.iter().map(OsString::from).collect();
    match parse("atacama-mail", os) {
        Err(CliError::Usage(message)) => message,
        Err(other) => panic!("{args:?}: expected a usage error, got {other:?}"),
        Ok(parsed) => panic!("{args:?}: expected a usage error, got {:?}", parsed.command),
    }
}

#[test]
fn every_command_parses() {
    use MessagesCommand as M;
    use UserCommand as U;
    let name = || "alice".to_string();
    let cases: Vec<(&[&str], Command)> = vec![
        (&["serve"], Command::Serve { log_level: None }),
        (
            &["serve", "--log-level", "debug"],
            Command::Serve {
                log_level: Some(log::LevelFilter::Debug),
            },
        ),
        (&["render"], Command::Render { file: None }),
        (
            &["render", "a.txt"],
            Command::Render {
                file: Some("a.txt".into()),
            },
        ),
        (
            &["user", "add", "alice"],
            Command::User(U::Add {
                name: name(),
                password_stdin: false,
            }),
        ),
        (
            &["user", "add", "--password-stdin", "alice"],
            Command::User(U::Add {
                name: name(),
                password_stdin: true,
            }),
        ),
        (
            &["user", "passwd", "alice", "--password-stdin"],
            Command::User(U::Passwd {
                name: name(),
                password_stdin: true,
            }),
        ),
        (
            &["user", "disable", "alice"],
            Command::User(U::Disable { name: name() }),
        ),
        (
            &["user", "enable", "alice"],
            Command::User(U::Enable { name: name() }),
        ),
        (
            &["user", "del", "alice"],
            Command::User(U::Del { name: name() }),
        ),
        (&["user", "list"], Command::User(U::List { json: false })),
        (
            &["user", "list", "--json"],
            Command::User(U::List { json: true }),
        ),
        (
            &["messages", "list"],
            Command::Messages(M::List {
                json: false,
                user: None,
                before: None,
                limit: 50,
            }),
        ),
        (
            &["messages", "list", "--json", "--user", "alice", "--limit=3"],
            Command::Messages(M::List {
                json: true,
                user: Some(name()),
                before: None,
                limit: 3,
            }),
        ),
        (
            &["messages", "list", "--before", "51", "--limit", "0"],
            Command::Messages(M::List {
                json: false,
                user: None,
                before: Some(51),
                limit: 0,
            }),
        ),
        (
            &["messages", "show", "7"],
            Command::Messages(M::Show {
                id: 7,
                format: ShowFormat::Summary,
            }),
        ),
        (
            &["messages", "show", "7", "--raw"],
            Command::Messages(M::Show {
                id: 7,
                format: ShowFormat::Raw,
            }),
        ),
        (
            &["messages", "show", "--html", "7"],
            Command::Messages(M::Show {
                id: 7,
                format: ShowFormat::Html,
            }),
        ),
        (
            &["messages", "show", "7", "--json"],
            Command::Messages(M::Show {
                id: 7,
                format: ShowFormat::Json,
            }),
        ),
        (&["store", "migrate"], Command::Store(StoreCommand::Migrate)),
        (
            &["store", "copy", "--to", "postgres"],
            Command::Store(StoreCommand::Copy {
                to: CopyTo::Postgres { url: None },
                mode: CopyMode::Copy,
            }),
        ),
        (
            &["store", "copy", "--resume", "--to", "postgres"],
            Command::Store(StoreCommand::Copy {
                to: CopyTo::Postgres { url: None },
                mode: CopyMode::Resume,
            }),
        ),
        (
            &[
                "store",
                "verify",
                "--to=postgres",
                "--url",
                "postgresql://db/a",
            ],
            Command::Store(StoreCommand::Copy {
                to: CopyTo::Postgres {
                    url: Some("postgresql://db/a".into()),
                },
                mode: CopyMode::Verify,
            }),
        ),
        (
            &["store", "copy", "--to", "redb", "--data-dir", "/backup"],
            Command::Store(StoreCommand::Copy {
                to: CopyTo::Redb,
                mode: CopyMode::Copy,
            }),
        ),
    ];
    for (args, expected) in cases {
        assert_eq!(command(args), expected, "{args:?}");
    }
}

#[test]
fn global_options_work_before_and_after_the_command() {
    let (globals, _) = parse_ok(&["--config", "a.toml", "user", "list", "--data-dir=/d"]);
    assert_eq!(globals.config, Some(PathBuf::from("a.toml")));
    assert_eq!(globals.data_dir, Some(PathBuf::from("/d")));
}

#[test]
fn help_works_at_every_level() {
    for (args, first_line) in [
        (
            &["--help"][..],
            "atacama-mail: the Atacama Mail SMTP submission server",
        ),
        (
            &["-h"],
            "atacama-mail: the Atacama Mail SMTP submission server",
        ),
        (
            &["help"],
            "atacama-mail: the Atacama Mail SMTP submission server",
        ),
        (
            &["serve", "--help"],
            "Usage: atacama-mail [--config FILE] [--data-dir DIR] serve",
        ),
        (&["render", "-h"], "Usage: atacama-mail render [FILE]"),
        (
            &["user", "--help"],
            "Usage: atacama-mail [--config FILE] [--data-dir DIR] user",
        ),
        (
            &["user", "add", "--help"],
            "Usage: atacama-mail [--config FILE] [--data-dir DIR] user",
        ),
        (
            &["messages", "show", "-h"],
            "Usage: atacama-mail [--config FILE] [--data-dir DIR] messages",
        ),
    ] {
        match command(args) {
            Command::Help(text) => assert!(text.starts_with(first_line), "{args:?}: {text}"),
            other => panic!("{args:?}: {other:?}"),
        }
    }
}

#[test]
fn bad_arguments_are_usage_errors() {
    for (args, message) in [
        (&[][..], "no command given (see atacama-mail --help)"),
        (
            &["frobnicate"],
            "unknown command \"frobnicate\" (see atacama-mail --help)",
        ),
        (
            &["user"],
            "'user' needs a subcommand (see atacama-mail user --help)",
        ),
        (&["user", "add"], "'user add' needs a user NAME"),
        (
            &["user", "rename", "a"],
            "unknown subcommand 'user rename' (see atacama-mail user --help)",
        ),
        (
            &["user", "del", "a", "b"],
            "unexpected argument \"b\" for 'user del'",
        ),
        (
            &["user", "list", "--raw"],
            "'user list' does not take --raw",
        ),
        (
            &["user", "del", "a", "--password-stdin"],
            "'user del' does not take --password-stdin",
        ),
        (
            &["messages"],
            "'messages' needs a subcommand (see atacama-mail messages --help)",
        ),
        (&["messages", "show"], "'messages show' needs a message ID"),
        (
            &["store", "copy"],
            "'store copy' needs --to postgres or --to redb",
        ),
        (
            &["store", "copy", "--to", "mysql"],
            "--to \"mysql\" is not one of postgres, redb",
        ),
        (
            &["store", "copy", "--to", "redb", "--url", "x"],
            "'store copy --to redb' does not take --url",
        ),
        (
            &["store", "verify", "--resume", "--to", "redb"],
            "'store verify' does not take --resume",
        ),
        (
            &["store", "migrate", "--to", "redb"],
            "'store migrate' does not take --to",
        ),
        (
            &["messages", "show", "x1"],
            "message ID \"x1\" is not a number",
        ),
        (
            &["messages", "show", "1", "--raw", "--json"],
            "choose one of --json, --raw and --html",
        ),
        (
            &["messages", "list", "--limit", "-1"],
            "--limit \"-1\" is not a number",
        ),
        (
            &["messages", "list", "--before", "x"],
            "--before \"x\" is not a number",
        ),
        (
            &["messages", "list", "--bogus"],
            "'messages list' does not take --bogus",
        ),
        (
            &["serve", "--log-level", "loud"],
            "--log-level \"loud\" is not one of off, error, warn, info, debug, trace",
        ),
        (
            &["render", "a", "b"],
            "unexpected argument \"b\" for 'render'",
        ),
        (&["render", "-x"], "unknown option -x"),
        (
            &["--data-dir", "", "user", "list"],
            "--data-dir must not be empty",
        ),
        (
            &["user", "list", "--config"],
            "missing argument for option '--config'",
        ),
    ] {
        assert_eq!(usage_error(args), message, "{args:?}");
    }
}
