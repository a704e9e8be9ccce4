//! The work behind a session's requests, one call each, shared by both runtimes
//! (cargo feature `store`).
//!
//! Both calls block (bcrypt, fsync): the smol runtime runs them on its blocking pool, the
//! threaded runtime on the connection's thread. Throttling AUTH is the caller's job.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::SystemTime;

use crate::config::Config;
use crate::smtp::{AuthOutcome, AuthRequest, Delivery, DeliveryError, MessageId};
use crate::store::{NewMessage, PackedData, PackedMessage, ReceivedTrace, Store, StoreError};
use crate::{markup, message};

/// The store plus the facts about this server that delivery needs.
/// How long a starting server waits for the database file: a command line holds it for one
/// command, a bcrypt hash at most. A second server holds it for good, and is reported after.
pub const OPEN_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Debug)]
pub struct Services {
    store: Store,
    hostname: String,
}

impl Services {
    /// Wraps an open store; `hostname` goes into `Received:` headers.
    pub fn new(store: Store, hostname: impl Into<String>) -> Services {
        Services {
            store,
            hostname: hostname.into(),
        }
    }

    /// Opens the store in `config.data_dir` with the configured bcrypt cost, waiting up to
    /// [`OPEN_WAIT`] for a command line that holds the file to finish.
    pub fn open(config: &Config) -> Result<Services, StoreError> {
        let store = Store::open_in_waiting(&config.data_dir, config.auth.bcrypt_cost, OPEN_WAIT)?;
        Ok(Services::new(store, config.hostname.clone()))
    }

    /// The underlying store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Our host name, as written into `Received:` headers.
    pub fn hostname(&self) -> &str {
        &self.hostname
    }

    /// The bcrypt cost of password hashes and of the dummy hash for unknown users.
    pub fn bcrypt_cost(&self) -> u32 {
        self.store.bcrypt_cost()
    }

    /// Checks credentials: the same bcrypt work whether or not the user exists.
    ///
    /// A store failure is a `TemporaryFailure` (454), so a broken disk never counts against
    /// the client as a wrong password. So is a panic below: every AUTH gets one reply (A16).
    pub fn authenticate(&self, request: &AuthRequest) -> AuthOutcome {
        let verified = catch_unwind(AssertUnwindSafe(|| {
            self.store.verify_user(&request.username, &request.password)
        }))
        .unwrap_or_else(|_| Err(StoreError::Database("panic while verifying".into())));
        match verified {
            Ok(true) => AuthOutcome::Accepted,
            Ok(false) => {
                // {:?} escapes control characters: the name is the client's, not ours.
                log::info!(
                    "authentication failed user={:?} mechanism={}",
                    request.username,
                    request.mechanism
                );
                AuthOutcome::Rejected
            }
            Err(error) => {
                log::error!(
                    "authentication of user={:?} could not be checked: {error}",
                    request.username
                );
                AuthOutcome::TemporaryFailure
            }
        }
    }

    /// Parses, renders and stores one message; returns once it is durably committed. A
    /// panic in parsing, rendering or storing is a failed delivery (`451 4.3.0`), not a
    /// lost connection.
    pub fn deliver(
        &self,
        delivery: Delivery,
        received_at: SystemTime,
    ) -> Result<MessageId, DeliveryError> {
        let (user, size) = (delivery.user.clone(), delivery.data.len());
        let stored = catch_unwind(AssertUnwindSafe(|| {
            let message = self.prepare(delivery, received_at)?;
            self.store.insert_packed(vec![message])
        }))
        .unwrap_or_else(|_| Err(StoreError::Database("panic while storing".into())));
        let id = stored
            .and_then(|ids| {
                // Invariant: one id per message stored.
                ids.first()
                    .copied()
                    .ok_or_else(|| StoreError::Database("insert returned no id".into()))
            })
            .map_err(|error| {
                log::error!("delivery for user={user:?} failed: {error}");
                DeliveryError(error.to_string())
            })?;
        log_accepted(id, &user, size);
        Ok(id)
    }

    /// Stores several messages in one durable transaction (group commit). Results are in
    /// the order of `batch`: a message whose processing panics fails alone (`451 4.3.0`);
    /// a failed transaction fails every other message with the same error.
    pub fn deliver_batch(
        &self,
        batch: Vec<(Delivery, SystemTime)>,
    ) -> Vec<Result<MessageId, DeliveryError>> {
        let prepared = batch
            .into_iter()
            .map(|(delivery, received_at)| self.prepare_checked(delivery, received_at))
            .collect();
        self.store_prepared(prepared)
    }

    /// [`Services::prepare`]: everything but the transaction. A panic in parsing or rendering
    /// is a failed delivery (logged), so one bad message cannot take its batch or its thread
    /// down.
    pub fn prepare_checked(
        &self,
        delivery: Delivery,
        received_at: SystemTime,
    ) -> Result<PackedMessage, DeliveryError> {
        let user = delivery.user.clone();
        let packed = catch_unwind(AssertUnwindSafe(|| self.prepare(delivery, received_at)))
            .unwrap_or_else(|_| Err(StoreError::Database("panic while processing".into())));
        packed.map_err(|error| {
            log::error!("delivery for user={user:?} failed: {error}");
            DeliveryError(error.to_string())
        })
    }

    /// Stores the prepared messages of a batch in one durable transaction; the second half
    /// of [`Services::deliver_batch`], for a committer that prepares ahead of its commits.
    /// Results are in the order of `prepared`: a message that failed to prepare keeps its
    /// error, the others share the transaction's fate.
    pub fn store_prepared(
        &self,
        prepared: Vec<Result<PackedMessage, DeliveryError>>,
    ) -> Vec<Result<MessageId, DeliveryError>> {
        let mut outcomes: Vec<Option<Result<MessageId, DeliveryError>>> = Vec::new();
        let mut messages = Vec::new();
        for message in prepared {
            match message {
                Ok(message) => {
                    messages.push(message);
                    outcomes.push(None);
                }
                Err(error) => outcomes.push(Some(Err(error))),
            }
        }
        // For the log lines: the store takes the messages.
        let accepted: Vec<(String, usize)> = messages
            .iter()
            .map(|message| (message.user().to_owned(), message.data_len()))
            .collect();
        let stored = catch_unwind(AssertUnwindSafe(|| self.store.insert_packed(messages)))
            .unwrap_or_else(|_| Err(StoreError::Database("panic while storing".into())));
        let stored: Vec<Result<MessageId, DeliveryError>> = match stored {
            Ok(ids) => ids.into_iter().map(Ok).collect(),
            Err(error) => {
                log::error!("delivery of a batch of {} failed: {error}", accepted.len());
                vec![Err(DeliveryError(error.to_string())); accepted.len()]
            }
        };
        // Paired with its message, each stored outcome logs its acceptance as it is used.
        let mut stored = stored
            .into_iter()
            .zip(&accepted)
            .map(|(outcome, (user, size))| {
                if let Ok(id) = outcome {
                    log_accepted(id, user, *size);
                }
                outcome
            });
        outcomes
            .into_iter()
            .map(|outcome| {
                outcome.or_else(|| stored.next()).unwrap_or_else(|| {
                    Err(DeliveryError(
                        "internal error: the store lost a message".into(),
                    ))
                })
            })
            .collect()
    }

    /// The record a delivery becomes, packed: parsed fields, rendered text, trace facts.
    ///
    /// The data is packed and let go as soon as it is parsed, before the text is rendered:
    /// at no time does the delivery hold the data, the text and the HTML all at once (issue
    /// 24: a delivery of the largest message stays within four times its size). HTML cut at
    /// its limit ([`markup::render_checked`]) is recorded as a problem.
    pub fn prepare(
        &self,
        delivery: Delivery,
        received_at: SystemTime,
    ) -> Result<PackedMessage, StoreError> {
        let Delivery {
            user,
            helo,
            peer,
            tls,
            mail_from,
            rcpt_to,
            data,
        } = delivery;
        let mut parsed = message::parse(&data);
        // Text renders to a little more than itself, mostly.
        let expected = data.len() + parsed.text.len().saturating_mul(2);
        let data = PackedData::new(data, expected)?;
        let rendered = markup::render_checked(&parsed.text);
        if let Some(cut) = rendered.cut {
            parsed.problems.push(cut.to_string());
        }
        let message = NewMessage {
            received_at,
            user,
            mail_from,
            rcpt_to,
            trace: ReceivedTrace {
                helo,
                peer: peer.ip(),
                hostname: self.hostname.clone(),
                tls,
            },
            parsed,
            html: rendered.html,
            data: Vec::new(),
        };
        message.pack_with(data)
    }
}

fn log_accepted(id: MessageId, user: &str, size: usize) {
    log::info!("message accepted id={id} user={user:?} size={size}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::TlsInfo;
    use std::time::{Duration, UNIX_EPOCH};

    fn services() -> (tempfile::TempDir, Services) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_in(dir.path(), 4).unwrap();
        (dir, Services::new(store, "mail.example"))
    }

    fn delivery(tls: bool) -> Delivery {
        Delivery {
            user: "alice".into(),
            helo: "client.example".into(),
            peer: "192.0.2.7:40000".parse().unwrap(),
            tls: tls.then(|| TlsInfo {
                version: "TLSv1.3".into(),
                cipher: "TLS13_AES_128_GCM_SHA256".into(),
            }),
            mail_from: "alice".into(),
            rcpt_to: vec!["bob@example.test".into()],
            data: b"Subject: hi\r\n\r\n<b>bold</b> & more\r\n".to_vec(),
        }
    }

    fn auth(user: &str, password: &str) -> AuthRequest {
        AuthRequest {
            mechanism: "PLAIN",
            username: user.into(),
            password: password.into(),
        }
    }

    #[test]
    fn services_can_be_shared_across_threads() {
        fn shared<T: Send + Sync>() {}
        shared::<Services>();
    }

    #[test]
    fn authenticate_accepts_only_an_active_user_with_the_right_password() {
        let (_dir, s) = services();
        s.store().add_user("alice", "pw", UNIX_EPOCH).unwrap();
        s.store().add_user("dora", "pw", UNIX_EPOCH).unwrap();
        s.store().disable_user("dora", UNIX_EPOCH).unwrap();
        assert_eq!(s.authenticate(&auth("alice", "pw")), AuthOutcome::Accepted);
        assert_eq!(
            s.authenticate(&auth("alice", "nope")),
            AuthOutcome::Rejected
        );
        assert_eq!(s.authenticate(&auth("nobody", "pw")), AuthOutcome::Rejected);
        assert_eq!(s.authenticate(&auth("dora", "pw")), AuthOutcome::Rejected);
        assert_eq!(s.authenticate(&auth("", "")), AuthOutcome::Rejected);
    }

    #[test]
    fn deliver_stores_trace_header_data_and_rendered_text() {
        let (_dir, s) = services();
        let received_at = UNIX_EPOCH + Duration::from_secs(1_772_546_709);
        let d = delivery(true);
        let id = s.deliver(d.clone(), received_at).unwrap();
        let raw = s.store().raw_message(id).unwrap();
        let expected_header = "Received: from client.example ([192.0.2.7])\r\n\
             \t(using TLSv1.3 with cipher TLS13_AES_128_GCM_SHA256)\r\n\
             \tby mail.example with ESMTPSA id 1;\r\n\
             \tTue, 03 Mar 2026 14:05:09 +0000\r\n";
        assert_eq!(raw, [expected_header.as_bytes(), &d.data].concat());
        let stored = s.store().message(id).unwrap();
        let parsed = message::parse(&d.data);
        assert_eq!(stored.text, parsed.text);
        assert_eq!(stored.html, markup::render(&parsed.text));
        assert_eq!(stored.subject, parsed.subject);
        assert_eq!(
            (stored.user.as_str(), stored.mail_from.as_str()),
            ("alice", "alice")
        );
        assert_eq!(stored.rcpt_to, d.rcpt_to);
        assert_eq!(stored.size, raw.len() as u64);
    }

    #[test]
    fn deliver_without_tls_says_esmtpa() {
        let (_dir, s) = services();
        let id = s.deliver(delivery(false), UNIX_EPOCH).unwrap();
        let raw = String::from_utf8(s.store().raw_message(id).unwrap()).unwrap();
        assert!(
            raw.contains("\r\n\tby mail.example with ESMTPA id 1;\r\n"),
            "{raw}"
        );
        assert!(!raw.contains("using"));
    }

    #[test]
    fn deliver_batch_returns_ids_in_order() {
        let (_dir, s) = services();
        let batch = vec![(delivery(true), UNIX_EPOCH), (delivery(false), UNIX_EPOCH)];
        let results = s.deliver_batch(batch);
        assert_eq!(results, [Ok(MessageId(1)), Ok(MessageId(2))]);
        assert_eq!(s.deliver_batch(Vec::new()), []);
    }

    #[test]
    fn store_prepared_keeps_a_failed_preparation_in_its_place() {
        let (_dir, s) = services();
        let (a, b) = (delivery(true), delivery(false));
        let failed = DeliveryError("panic while processing".into());
        let prepared = vec![
            s.prepare_checked(a, UNIX_EPOCH),
            Err(failed.clone()),
            s.prepare_checked(b.clone(), UNIX_EPOCH),
        ];
        let outcomes = s.store_prepared(prepared);
        assert_eq!(outcomes, [Ok(MessageId(1)), Err(failed), Ok(MessageId(2))]);
        let stored = s.store().messages(None, None).unwrap();
        assert_eq!(stored.len(), 2);
        assert!(
            s.store()
                .raw_message(MessageId(2))
                .unwrap()
                .ends_with(&b.data)
        );
    }
}
