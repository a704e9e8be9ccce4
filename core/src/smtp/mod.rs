//! SMTP submission (RFC 5321, RFC 6409) as a pure state machine.
//!
//! The [`Session`] takes bytes and completions in, and hands out [`Event`]s: bytes to write,
//! and requests (TLS upgrade, authentication, delivery) that the runtime carries out and
//! reports back. It never reads a clock, touches a socket or spawns a thread.

mod config;
mod types;

pub use config::{BareNewline, SessionConfig};
pub use types::{
    AuthOutcome, AuthRequest, Channel, ConnInfo, Delivery, DeliveryError, Event, MessageId,
    NotPending, TlsInfo,
};
