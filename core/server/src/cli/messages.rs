//! `messages list` and `messages show`.

//!
//! The JSON they print comes from the structs below, whose fields are in the order of their
//! names: the order `serde_json::json!` objects printed them in before, kept so that the
//! output stays the same byte for byte.

use std::io::Write as _;

use serde::Serialize;

use super::CliError;
use super::args::{MessagesCommand, ShowFormat};
use super::output::{table, terminal_safe, write_json, write_stdout};
use super::target::Target;
use crate::control::Bodies;
use atacama_core::message::Attachment;
use atacama_store::{MessagePage, MessageSummary, StoredMessage, rfc3339_utc};

/// Runs one `messages` subcommand against `store`.
pub(super) fn run(store: &Target, command: MessagesCommand) -> Result<(), CliError> {
    match command {
        MessagesCommand::List {
            json,
            user,
            before,
            limit,
        } => {
            let page = store.messages(user, before, limit)?;
            if json {
                let summaries: Vec<SummaryJson<'_>> =
                    page.messages.iter().map(SummaryJson::from).collect();
                write_json(&summaries)?;
                // stdout stays one JSON value: the word that there is more goes beside it.
                if let Some(hint) = more_hint(&page) {
                    let _ = writeln!(std::io::stderr(), "{hint}");
                }
                Ok(())
            } else {
                let mut out = list_table(&page.messages);
                if let Some(hint) = more_hint(&page) {
                    out.push_str(&hint);
                    out.push('\n');
                }
                write_stdout(out.as_bytes())
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

/// The line under a page that does not hold every message that matches: how to see the next.
fn more_hint(page: &MessagePage) -> Option<String> {
    if !page.more {
        return None;
    }
    Some(match page.messages.last() {
        Some(last) => format!("(more: add --before {} to list the next ones)", last.id),
        // Only `--limit 0` shows none of several.
        None => "(more: raise --limit to list them)".to_string(),
    })
}

/// One entry of `messages list --json`.
#[derive(Serialize)]
struct SummaryJson<'a> {
    channel: &'a str,
    id: u64,
    mail_from: &'a str,
    parent_id: Option<u64>,
    rcpt_to: &'a [String],
    received_at: String,
    size: u64,
    subject: &'a Option<String>,
    user: &'a str,
}

impl<'a> From<&'a MessageSummary> for SummaryJson<'a> {
    fn from(m: &'a MessageSummary) -> Self {
        SummaryJson {
            channel: &m.channel,
            id: m.id.0,
            mail_from: &m.mail_from,
            parent_id: m.parent_id.map(|p| p.0),
            rcpt_to: &m.rcpt_to,
            received_at: rfc3339_utc(m.received_at),
            size: m.size,
            subject: &m.subject,
            user: &m.user,
        }
    }
}

/// One attachment in `messages show --json`.
#[derive(Serialize)]
struct AttachmentJson<'a> {
    media_type: &'a str,
    name: &'a Option<String>,
    size: u64,
}

impl<'a> From<&'a Attachment> for AttachmentJson<'a> {
    fn from(a: &'a Attachment) -> Self {
        AttachmentJson {
            media_type: &a.media_type,
            name: &a.name,
            size: a.size,
        }
    }
}

/// `messages show --json`: the list fields plus every processed field; borrowed, so the text
/// and HTML are not copied to be printed.
#[derive(Serialize)]
struct MessageJson<'a> {
    attachments: Vec<AttachmentJson<'a>>,
    channel: &'a str,
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
    MessageJson {
        attachments: m.attachments.iter().map(AttachmentJson::from).collect(),
        channel: &m.channel,
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
        ("Channel", safe(&m.channel)),
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

#[cfg(test)]
mod tests {
    use super::*;
    use atacama_core::smtp::MessageId;
    use serde_json::json;

    fn pretty(value: &impl Serialize) -> String {
        serde_json::to_string_pretty(value).unwrap()
    }

    /// The structs print what the `json!` objects they replaced printed, byte for byte.
    #[test]
    fn the_json_is_what_json_objects_printed() {
        let summary = MessageSummary {
            id: MessageId(7),
            received_at: 86_400,
            user: "alice".into(),
            mail_from: "alice@example.org".into(),
            rcpt_to: vec!["bob@example.org".into(), "carol@example.org".into()],
            subject: Some("Hi".into()),
            size: 1234,
            parent_id: Some(MessageId(3)),
            channel: "travel".into(),
        };
        let before = json!({
            "channel": "travel",
            "id": 7,
            "received_at": "1970-01-02T00:00:00Z",
            "user": "alice",
            "mail_from": "alice@example.org",
            "rcpt_to": ["bob@example.org", "carol@example.org"],
            "subject": "Hi",
            "size": 1234,
            "parent_id": 3,
        });
        assert_eq!(pretty(&SummaryJson::from(&summary)), pretty(&before));
        let none = MessageSummary {
            subject: None,
            parent_id: None,
            ..summary
        };
        let before = json!({
            "channel": "travel",
            "id": 7, "received_at": "1970-01-02T00:00:00Z", "user": "alice",
            "mail_from": "alice@example.org",
            "rcpt_to": ["bob@example.org", "carol@example.org"],
            "subject": null, "size": 1234, "parent_id": null,
        });
        assert_eq!(pretty(&SummaryJson::from(&none)), pretty(&before));

        for attachment in [
            Attachment {
                name: Some("a.pdf".into()),
                media_type: "application/pdf".into(),
                size: 10,
            },
            Attachment {
                name: None,
                media_type: "image/png".into(),
                size: 0,
            },
        ] {
            let before = json!({
                "name": attachment.name,
                "media_type": attachment.media_type,
                "size": attachment.size,
            });
            assert_eq!(pretty(&AttachmentJson::from(&attachment)), pretty(&before));
        }
    }

    #[test]
    fn a_page_with_more_says_how_to_list_the_next() {
        let summary = |id| MessageSummary {
            id: MessageId(id),
            received_at: 0,
            user: "alice".into(),
            mail_from: String::new(),
            rcpt_to: Vec::new(),
            subject: None,
            size: 0,
            parent_id: None,
            channel: "general".into(),
        };
        let page = |ids: &[u64], more| MessagePage {
            messages: ids.iter().map(|&id| summary(id)).collect(),
            more,
        };
        assert_eq!(more_hint(&page(&[9, 8], false)), None);
        assert_eq!(more_hint(&page(&[], false)), None);
        assert_eq!(
            more_hint(&page(&[9, 8], true)).as_deref(),
            Some("(more: add --before 8 to list the next ones)")
        );
        assert_eq!(
            more_hint(&page(&[], true)).as_deref(),
            Some("(more: raise --limit to list them)")
        );
    }
}
