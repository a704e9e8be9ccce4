//! From raw message bytes to the fields Atacama Mail stores (mail-parser).
//!
//! PLACEHOLDER: the real implementation lands with issue 3.

/// One attachment of a message, as listed (never its contents).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Attachment {
    /// The file name the sender gave, if any.
    pub name: Option<String>,
    /// `type/subtype`, lower case.
    pub media_type: String,
    /// Decoded size in bytes.
    pub size: u64,
}

/// The processed fields of one message.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ParsedMessage {
    pub subject: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    /// RFC 3339.
    pub date: Option<String>,
    /// Without the angle brackets.
    pub message_id: Option<String>,
    /// Without the angle brackets.
    pub in_reply_to: Option<String>,
    /// The text that is rendered as Atacama markup.
    pub text: String,
    pub attachments: Vec<Attachment>,
    /// Set when mail-parser could not read the message: what went wrong.
    pub problem: Option<String>,
}

/// Parses raw message bytes. Never fails: an unreadable message keeps its body as lossy text.
pub fn parse(raw: &[u8]) -> ParsedMessage {
    ParsedMessage {
        text: String::from_utf8_lossy(raw).into_owned(),
        ..Default::default()
    }
}
