//! `user add|passwd|disable|enable|del|list`.

use std::io::{BufRead, Read};

use serde::Serialize;

use super::CliError;
use super::args::UserCommand;
use super::output::{table, terminal_safe, write_json, write_stdout};
use super::target::Target;
use crate::control::Request;
use atacama_store::{User, rfc3339_utc, validate_user_name};

/// Runs one `user` subcommand against `store`.
pub(super) fn run(store: &Target, command: UserCommand) -> Result<(), CliError> {
    let done = match command {
        UserCommand::Add {
            name,
            password_stdin,
        } => {
            // Refuse before asking for a password that would be thrown away.
            validate_user_name(&name)?;
            if store.user(&name).is_ok() {
                return Err(atacama_store::StoreError::UserExists(name).into());
            }
            let password = read_password(&name, password_stdin)?;
            store.change(&Request::AddUser {
                name: name.clone(),
                password,
            })?;
            format!("added user {name}")
        }
        UserCommand::Passwd {
            name,
            password_stdin,
        } => {
            store.user(&name)?;
            let password = read_password(&name, password_stdin)?;
            store.change(&Request::SetPassword {
                name: name.clone(),
                password,
            })?;
            format!("changed the password of {name}")
        }
        UserCommand::Disable { name } => {
            store.change(&Request::DisableUser { name: name.clone() })?;
            format!("disabled user {name}")
        }
        UserCommand::Enable { name } => {
            store.change(&Request::EnableUser { name: name.clone() })?;
            format!("enabled user {name}")
        }
        UserCommand::Del { name } => {
            store.change(&Request::DeleteUser { name: name.clone() })?;
            format!("deleted user {name}")
        }
        UserCommand::List { json } => return list(store, json),
    };
    write_stdout(format!("{}\n", terminal_safe(&done, false)).as_bytes())
}

fn list(store: &Target, json: bool) -> Result<(), CliError> {
    let users = store.users()?;
    if json {
        let users: Vec<UserJson<'_>> = users.iter().map(UserJson::from).collect();
        return write_json(&users);
    }
    let rows: Vec<Vec<String>> = users
        .iter()
        .map(|u| {
            vec![
                terminal_safe(&u.name, false),
                if u.active { "active" } else { "disabled" }.to_string(),
                rfc3339_utc(u.created),
                rfc3339_utc(u.updated),
            ]
        })
        .collect();
    write_stdout(table(&["NAME", "STATUS", "CREATED", "UPDATED"], &rows).as_bytes())
}

/// One entry of `user list --json`; the fields in the order of their names, as the
/// `json!` objects it replaced printed them.
#[derive(Serialize)]
struct UserJson<'a> {
    active: bool,
    created: String,
    name: &'a str,
    updated: String,
}

impl<'a> From<&'a User> for UserJson<'a> {
    fn from(u: &'a User) -> Self {
        UserJson {
            active: u.active,
            created: rfc3339_utc(u.created),
            name: &u.name,
            updated: rfc3339_utc(u.updated),
        }
    }
}

/// The new password: the first line of stdin, or typed twice at the terminal without echo.
fn read_password(name: &str, from_stdin: bool) -> Result<String, CliError> {
    if from_stdin {
        let mut line = String::new();
        // Bounded: a password is at most 71 bytes, and stdin might be a never-ending pipe.
        let mut stdin = std::io::stdin().lock().take(1024);
        let read = stdin.read_line(&mut line).map_err(|e| {
            CliError::Failed(format!("cannot read the password from standard input: {e}"))
        })?;
        if read == 0 {
            return Err(CliError::Failed("no password on standard input".into()));
        }
        let password = line.strip_suffix('\n').unwrap_or(&line);
        let password = password.strip_suffix('\r').unwrap_or(password);
        return Ok(password.to_string());
    }
    let prompt = |text: String| {
        rpassword::prompt_password(text).map_err(|e| {
            CliError::Failed(format!(
                "cannot read the password from the terminal ({e}); use --password-stdin"
            ))
        })
    };
    let first = prompt(format!("Password for {}: ", terminal_safe(name, false)))?;
    let second = prompt("Retype the password: ".to_string())?;
    if first != second {
        return Err(CliError::Failed("the passwords do not match".into()));
    }
    Ok(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The struct prints what the `json!` object it replaced printed, byte for byte.
    #[test]
    fn the_json_is_what_a_json_object_printed() {
        let user = User {
            name: "alice".into(),
            active: false,
            created: 0,
            updated: 86_400,
        };
        let before = serde_json::json!({
            "name": "alice",
            "active": false,
            "created": "1970-01-01T00:00:00Z",
            "updated": "1970-01-02T00:00:00Z",
        });
        assert_eq!(
            serde_json::to_string_pretty(&UserJson::from(&user)).unwrap(),
            serde_json::to_string_pretty(&before).unwrap()
        );
    }
}
