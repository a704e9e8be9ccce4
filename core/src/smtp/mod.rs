//! SMTP submission (RFC 5321, RFC 6409) as a pure state machine.
//!
//! The [`Session`] takes bytes and completions in, and hands out [`Event`]s: bytes to write,
//! and requests (TLS upgrade, authentication, delivery) that the runtime carries out and
//! reports back. It never reads a clock, touches a socket or spawns a thread.

mod address;
mod command;
mod config;
mod dot;
mod framing;
mod params;
pub mod reply;
mod session;
mod types;

pub use address::{AddressError, ForwardPath, Mailbox, ReversePath};
pub use command::{Command, CommandError, CommandErrorKind, Mechanism, Verb};
pub use config::{BareNewline, SessionConfig};
pub use dot::{DataOutcome, DataReader, DataStatus, dot_stuff};
pub use params::{Body, MailParams, ParamError};
pub use reply::{Code, Reply, Status};
pub use session::Session;
pub use types::{
    AuthOutcome, AuthRequest, Channel, CloseReason, ConnInfo, Delivery, DeliveryError,
    DeliveryFailure, Event, MailCheck, MailVerdict, MessageId, NotPending, TlsInfo,
};
