//! `messages list` and `messages show`.

use serde_json::{Value, json};

use super::CliError;
use super::args::{MessagesCommand, ShowFormat};
use super::output::{table, terminal_safe, write_json, write_stdout};
use super::target::Target;
use crate::control::Bodies;
use atacama_store::{MessageSummary, StoredMessage, rfc3339_utc};

/// Runs one `messages` subcommand against `store`.
pub(super) fn run(store: &Target, command: MessagesCommand) -> Result<(), CliError> {
    match command {
        MessagesCommand::List { json, user, limit } => {
            let messages = store.messages(user, limit)?;
            if json {
                write_json(&Value::Array(messages.iter().map(summary_json).collect()))
            } else {
                write_stdout(list_table(&messages).as_bytes())
            }
        }
        MessagesCommand::Show { id, format } => match format {
            ShowFormat::Raw => write_stdout(&store.raw_message(id)?),
            // The renderer writes no control character, but a message stored before it
            // stopped (issue 24) may hold one: an escape sequence for the terminal.
            ShowFormat::Html => {
                let html = store.message(id, Bodies::HTML)?.html;
                write_stdout(terminal_safe(&html, true).as_bytes())
            }
            ShowFormat::Json => write_json(&message_json(&store.message(id, Bodies::BOTH)?)),
            ShowFormat::Summary => {
                write_stdout(summary_text(&store.message(id, Bodies::TEXT)?).as_bytes())
            }
        },
    }
}

/// The fields of `messages list --json`.
fn summary_json(m: &MessageSummary) -> Value {
    json!({
        "id": m.id.0,
        "received_at": rfc3339_utc(m.received_at),
        "user": m.user,
        "mail_from": m.mail_from,
        "rcpt_to": m.rcpt_to,
        "subject": m.subject,
        "size": m.size,
        "parent_id": m.parent_id.map(|p| p.0),
    })
}

/// The list fields plus every processed field, in the order of their names (as `json!`
/// objects print); borrowed, so the text and HTML are not copied to be printed.
#[derive(serde::Serialize)]
struct MessageJson<'a> {
    attachments: Vec<Value>,
    date: &'a Option<String>,
    from: &'a Option<String>,
    html: &'a str,
    id: u64,
    in_reply_to: &'a Option<String>,
    mail_from: &'a str,
    message_id: &'a Option<String>,
    parent_id: Option<u64>,
    problems: &'a [String],
    rcpt_to: &'a [String],
    received_at: String,
    size: u64,
    subject: &'a Option<String>,
    text: &'a str,
    to: &'a Option<String>,
    user: &'a str,
}

fn message_json(m: &StoredMessage) -> MessageJson<'_> {
    let attachments: Vec<Value> = m
        .attachments
        .iter()
        .map(|a| json!({ "name": a.name, "media_type": a.media_type, "size": a.size }))
        .collect();
    MessageJson {
        attachments,
        date: &m.headers.date,
        from: &m.headers.from,
        html: &m.html,
        id: m.id.0,
        in_reply_to: &m.headers.in_reply_to,
        mail_from: &m.mail_from,
        message_id: &m.headers.message_id,
        parent_id: m.parent_id.map(|p| p.0),
        problems: &m.problems,
        rcpt_to: &m.rcpt_to,
        received_at: rfc3339_utc(m.received_at),
        size: m.size,
        subject: &m.headers.subject,
        text: &m.text,
        to: &m.headers.to,
        user: &m.user,
    }
}

fn list_table(messages: &[MessageSummary]) -> String {
    let safe = |s: &str| terminal_safe(s, false);
    let rows: Vec<Vec<String>> = messages
        .iter()
        .map(|m| {
            vec![
                m.id.to_string(),
                rfc3339_utc(m.received_at),
                safe(&m.user),
                safe(mail_from(&m.mail_from)),
                m.size.to_string(),
                m.parent_id
                    .map_or_else(|| "-".to_string(), |p| p.to_string()),
                m.subject.as_deref().map_or_else(|| "-".to_string(), safe),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "RECEIVED",
            "USER",
            "MAIL FROM",
            "SIZE",
            "PARENT",
            "SUBJECT",
        ],
        &rows,
    )
}

fn summary_text(m: &StoredMessage) -> String {
    let safe = |s: &str| terminal_safe(s, false);
    let opt = |s: &Option<String>| s.as_deref().map_or_else(|| "-".to_string(), safe);
    let rcpt: Vec<String> = m.rcpt_to.iter().map(|r| safe(r)).collect();
    let mut fields = vec![
        ("Message", m.id.to_string()),
        ("Received", rfc3339_utc(m.received_at)),
        ("User", safe(&m.user)),
        ("Mail from", safe(mail_from(&m.mail_from))),
        ("Rcpt to", rcpt.join(", ")),
        ("Subject", opt(&m.headers.subject)),
        ("From", opt(&m.headers.from)),
        ("To", opt(&m.headers.to)),
        ("Date", opt(&m.headers.date)),
        ("Message-ID", opt(&m.headers.message_id)),
        ("In-Reply-To", opt(&m.headers.in_reply_to)),
        (
            "Parent",
            m.parent_id
                .map_or_else(|| "-".to_string(), |p| p.to_string()),
        ),
        ("Size", format!("{} bytes", m.size)),
    ];
    for attachment in &m.attachments {
        let name = attachment
            .name
            .as_deref()
            .map_or_else(|| "(unnamed)".to_string(), safe);
        let detail = format!(
            "{name} ({}, {} bytes)",
            safe(&attachment.media_type),
            attachment.size
        );
        fields.push(("Attachment", detail));
    }
    for problem in &m.problems {
        fields.push(("Problem", safe(problem)));
    }
    let mut out = String::new();
    for (label, value) in fields {
        out.push_str(&format!("{:<13}{value}\n", format!("{label}:")));
    }
    out.push('\n');
    out.push_str(&terminal_safe(&m.text, true));
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out
}

/// The null reverse-path is stored empty; show it as SMTP writes it.
fn mail_from(mail_from: &str) -> &str {
    if mail_from.is_empty() {
        "<>"
    } else {
        mail_from
    }
}
