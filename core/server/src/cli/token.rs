//! `token add|revoke|list`: the read tokens that let a request see the private channels.

use serde::Serialize;

use super::CliError;
use super::args::TokenCommand;
use super::output::{table, terminal_safe, write_json, write_stdout};
use super::target::Target;
use crate::control::Request;
use atacama_store::{Token, rfc3339_utc, validate_token_name};

/// Runs one `token` subcommand against `store`.
pub(super) fn run(store: &Target, command: TokenCommand) -> Result<(), CliError> {
    let done = match command {
        TokenCommand::Add { name } => {
            validate_token_name(&name)?;
            let token = store.add_token(&name)?;
            // The token alone on the first line, for scripts: `token add x | head -1`.
            return write_stdout(
                format!(
                    "{token}\nadded token {name}: it is shown only this once; send it as \
                     'Authorization: Bearer TOKEN'\n"
                )
                .as_bytes(),
            );
        }
        TokenCommand::Revoke { name } => {
            store.change(&Request::RevokeToken { name: name.clone() })?;
            format!("revoked token {name}")
        }
        TokenCommand::List { json } => return list(store, json),
    };
    write_stdout(format!("{}\n", terminal_safe(&done, false)).as_bytes())
}

fn list(store: &Target, json: bool) -> Result<(), CliError> {
    let tokens = store.tokens()?;
    if json {
        let tokens: Vec<TokenJson<'_>> = tokens.iter().map(TokenJson::from).collect();
        return write_json(&tokens);
    }
    let rows: Vec<Vec<String>> = tokens
        .iter()
        .map(|t| vec![terminal_safe(&t.name, false), rfc3339_utc(t.created)])
        .collect();
    write_stdout(table(&["NAME", "CREATED"], &rows).as_bytes())
}

/// One entry of `token list --json`.
#[derive(Serialize)]
struct TokenJson<'a> {
    created: String,
    name: &'a str,
}

impl<'a> From<&'a Token> for TokenJson<'a> {
    fn from(t: &'a Token) -> Self {
        TokenJson {
            created: rfc3339_utc(t.created),
            name: &t.name,
        }
    }
}
