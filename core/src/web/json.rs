//! The JSON bodies, with the field names Atacama's clients know.
//!
//! serde structs, so a field cannot be misspelt in one place only; serde_json escapes every
//! string (control characters as `\u00XX`).

use serde::Serialize;

use super::{ErrorKind, Post, time};

/// One message: `/messages/{id}`, and each element of a stream or chain.
#[derive(Debug, Serialize)]
pub struct Message<'a> {
    /// The store's id.
    pub id: u64,
    /// The subject, `null` when the message had none.
    pub subject: Option<&'a str>,
    /// The text as written, markup included.
    pub content: &'a str,
    /// The rendered HTML.
    pub processed_content: &'a str,
    /// When it was received: RFC 3339, UTC, `Z`.
    pub created_at: String,
    /// The visible parent, or `null`.
    pub parent_id: Option<u64>,
    /// Its channel.
    pub channel: &'a str,
}

impl<'a> Message<'a> {
    /// The JSON view of a post.
    pub fn of(post: &'a Post) -> Message<'a> {
        Message {
            id: post.id,
            subject: post.subject.as_deref(),
            content: &post.content,
            processed_content: &post.processed_content,
            created_at: time::rfc3339(post.created_at),
            parent_id: post.parent_id,
            channel: &post.channel,
        }
    }
}

/// One element of `/messages/{id}/chain`: the message's fields and `is_target`.
#[derive(Debug, Serialize)]
pub struct ChainEntry<'a> {
    /// The fields of [`Message`].
    #[serde(flatten)]
    pub message: Message<'a>,
    /// Whether this is the message the chain was asked for.
    pub is_target: bool,
}

/// `{"chain":[…]}`.
#[derive(Debug, Serialize)]
pub struct Chain<'a> {
    /// Ancestors from the root down, the target, then its direct replies oldest first.
    pub chain: Vec<ChainEntry<'a>>,
}

/// `{"messages":[…],"older":"/stream/…/older/N"|null}`.
#[derive(Debug, Serialize)]
pub struct Stream<'a> {
    /// The page, newest first.
    pub messages: Vec<Message<'a>>,
    /// The path of the next older page, `public_url`'s prefix included, or `null`.
    pub older: Option<&'a str>,
}

/// `{"error":"not_found","message":"…"}`.
#[derive(Debug, Serialize)]
pub struct Error {
    /// A code a program can match: `not_found`, `unauthorized`, `method_not_allowed`,
    /// `unavailable`.
    pub error: &'static str,
    /// A sentence for a person.
    pub message: &'static str,
}

/// The body of `/messages/{id}`.
pub fn message(post: &Post) -> Vec<u8> {
    to_vec(&Message::of(post))
}

/// The body of `/messages/{id}/chain`; `is_target` is set where `id == target`.
pub fn chain(posts: &[Post], target: u64) -> Vec<u8> {
    let chain = posts
        .iter()
        .map(|post| ChainEntry {
            message: Message::of(post),
            is_target: post.id == target,
        })
        .collect();
    to_vec(&Chain { chain })
}

/// The body of a stream page.
pub fn stream(posts: &[Post], older: Option<&str>) -> Vec<u8> {
    let messages = posts.iter().map(Message::of).collect();
    to_vec(&Stream { messages, older })
}

/// The body of an error.
pub fn error(kind: ErrorKind) -> Vec<u8> {
    to_vec(&Error {
        error: kind.code(),
        message: kind.message(),
    })
}

fn to_vec<T: Serialize>(value: &T) -> Vec<u8> {
    // Invariant: these structs hold only strings, integers, options and sequences, which
    // serde_json always writes; the fallback is never sent.
    serde_json::to_vec(value)
        .unwrap_or_else(|_| br#"{"error":"internal","message":"unwritable"}"#.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn post() -> Post {
        Post {
            id: 7,
            subject: Some("Hi \"there\" \u{1}".into()),
            content: "<red>hot".into(),
            processed_content: "<p>hot</p>".into(),
            created_at: 1_796_591_439,
            parent_id: Some(3),
            channel: "general".into(),
        }
    }

    #[test]
    fn message_fields() {
        let value: Value = serde_json::from_slice(&message(&post())).unwrap();
        assert_eq!(
            value,
            json!({
                "id": 7,
                "subject": "Hi \"there\" \u{1}",
                "content": "<red>hot",
                "processed_content": "<p>hot</p>",
                "created_at": "2026-12-06T21:10:39Z",
                "parent_id": 3,
                "channel": "general",
            })
        );
        let bare = Post {
            subject: None,
            parent_id: None,
            ..post()
        };
        let value: Value = serde_json::from_slice(&message(&bare)).unwrap();
        assert_eq!(
            (&value["subject"], &value["parent_id"]),
            (&Value::Null, &Value::Null)
        );
    }

    #[test]
    fn chain_marks_the_target() {
        let posts = [Post { id: 3, ..post() }, post(), Post { id: 9, ..post() }];
        let value: Value = serde_json::from_slice(&chain(&posts, 7)).unwrap();
        let targets: Vec<(u64, bool)> = value["chain"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["id"].as_u64().unwrap(), e["is_target"].as_bool().unwrap()))
            .collect();
        assert_eq!(targets, [(3, false), (7, true), (9, false)]);
        assert_eq!(value["chain"][1]["created_at"], "2026-12-06T21:10:39Z");
    }

    #[test]
    fn empty_stream() {
        let value: Value = serde_json::from_slice(&stream(&[], None)).unwrap();
        assert_eq!(value, json!({"messages": [], "older": null}));
    }
}
