//! A scripted runtime: feeds chunks to a session and answers its requests the same way
//! every time, recording what the session did. Property tests and fuzz targets compare
//! and check these recordings.

use std::net::SocketAddr;
use std::time::Instant;

use super::harness::tls_info;
use super::invariants::{Checker, Violation};
use crate::smtp::{
    AuthOutcome, Channel, ConnInfo, DeliveryError, Event, MailVerdict, MessageId, Session,
    SessionConfig,
};

/// The password the scripted verifier accepts (for any user).
pub const PASSWORD: &str = "s3cret";

/// What the session did, with adjacent `Transmit`s merged so that chunking cannot show.
pub type Recording = Vec<Event>;

/// A runtime that answers every request at once: TLS always succeeds, [`PASSWORD`] is the
/// only right password, every MAIL check passes, and deliveries succeed with ids 1, 2, 3… unless the body contains
/// `FAIL-STORE`.
pub struct ScriptedRuntime {
    pub session: Session,
    pub checker: Checker,
    pub now: Instant,
    next_id: u64,
    recording: Recording,
}

impl ScriptedRuntime {
    /// A session on `channel`, greeting not yet drained.
    pub fn new(config: SessionConfig, channel: Channel) -> ScriptedRuntime {
        let now = Instant::now();
        let peer: SocketAddr = ([192, 0, 2, 9], 50000).into();
        ScriptedRuntime {
            session: Session::new(config, ConnInfo { peer, channel }, now),
            checker: Checker::new(),
            now,
            next_id: 1,
            recording: Vec::new(),
        }
    }

    /// Feeds `bytes` (respecting `read_capacity`) and processes everything it can.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Result<(), Violation> {
        self.drain()?;
        while !bytes.is_empty() {
            let n = bytes.len().min(self.session.read_capacity());
            if n == 0 {
                break;
            }
            let (now, later) = bytes.split_at_checked(n).unwrap_or((bytes, &[]));
            self.session.receive(self.now, now);
            bytes = later;
            self.drain()?;
        }
        Ok(())
    }

    /// Drains events, answering requests, until the session has nothing more to say.
    pub fn drain(&mut self) -> Result<(), Violation> {
        while let Some(event) = self.session.poll_event() {
            self.checker.on_event(&event, &self.session)?;
            let completion = match &event {
                Event::Transmit(_) | Event::Close => None,
                Event::StartTls => Some(Completion::Tls),
                Event::Authenticate(request) => {
                    Some(Completion::Auth(if request.password.expose() == PASSWORD {
                        AuthOutcome::Accepted
                    } else {
                        AuthOutcome::Rejected
                    }))
                }
                Event::CheckMail(_) => Some(Completion::Mail),
                Event::Deliver(delivery) => {
                    let fail = memchr::memmem::find(&delivery.data, b"FAIL-STORE").is_some();
                    Some(Completion::Delivery(!fail))
                }
            };
            self.record(event);
            match completion {
                None => {}
                Some(Completion::Tls) => {
                    self.session
                        .tls_established(self.now, tls_info())
                        .map_err(runtime_bug)?;
                    self.checker.tls_completed();
                }
                Some(Completion::Auth(outcome)) => {
                    self.session
                        .auth_result(self.now, outcome)
                        .map_err(runtime_bug)?;
                    self.checker.completed(self.session.user().is_some());
                }
                Some(Completion::Mail) => {
                    self.session
                        .mail_checked(self.now, MailVerdict::Accepted)
                        .map_err(runtime_bug)?;
                    self.checker.completed(self.session.user().is_some());
                }
                Some(Completion::Delivery(ok)) => {
                    let result = if ok {
                        self.next_id += 1;
                        Ok(MessageId(self.next_id - 1))
                    } else {
                        Err(DeliveryError::other("scripted failure"))
                    };
                    self.session
                        .delivery_result(self.now, result)
                        .map_err(runtime_bug)?;
                    self.checker.completed(self.session.user().is_some());
                }
            }
        }
        Ok(())
    }

    fn record(&mut self, event: Event) {
        if let (Some(Event::Transmit(last)), Event::Transmit(bytes)) =
            (self.recording.last_mut(), &event)
        {
            last.extend_from_slice(bytes);
            return;
        }
        self.recording.push(event);
    }

    /// What the session did so far.
    pub fn recording(&self) -> &Recording {
        &self.recording
    }

    /// Consumes the runtime, returning the recording.
    pub fn into_recording(self) -> Recording {
        self.recording
    }
}

enum Completion {
    Tls,
    Auth(AuthOutcome),
    Mail,
    Delivery(bool),
}

fn runtime_bug(e: crate::smtp::NotPending) -> Violation {
    Violation(format!("completion refused: {e}"))
}

/// Runs `chunks` through a fresh session and returns the recording.
pub fn run_chunks<'a>(
    config: SessionConfig,
    channel: Channel,
    chunks: impl IntoIterator<Item = &'a [u8]>,
) -> Result<Recording, Violation> {
    let mut runtime = ScriptedRuntime::new(config, channel);
    for chunk in chunks {
        runtime.feed(chunk)?;
    }
    runtime.drain()?;
    Ok(runtime.into_recording())
}
