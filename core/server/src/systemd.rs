//! systemd integration shared by both runtimes, matching
//! `systemd/atacama-mail.service` and `.socket`:
//!
//! - `Type=notify`: [`ready`] once the listeners accept, [`reloading`] around a certificate
//!   reload, [`stopping`] when shutdown begins;
//! - `WatchdogSec=`: call [`watchdog`] every [`watchdog_interval`] from the code that serves
//!   connections, so that a stuck server is restarted;
//! - socket activation: [`activated_listeners`] takes the sockets named `submission`,
//!   `submissions` and `http` (`FileDescriptorName=`) instead of binding the configured
//!   addresses.
//!
//! Outside systemd (no `NOTIFY_SOCKET`, no `LISTEN_FDS` for this process) every call does
//! nothing. Notification errors are logged, never fatal: systemd going away must not stop mail.

use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sd_notify::NotifyState;

/// Tells systemd the server is up, with a status line for `systemctl status`.
pub fn ready(status: &str) {
    notify(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// Tells systemd a reload has begun; call [`ready`] when it is over.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => notify(&[NotifyState::Reloading, now]),
        Err(_) => notify(&[NotifyState::Reloading]),
    }
}

/// Tells systemd the server is stopping.
pub fn stopping() {
    notify(&[NotifyState::Stopping, NotifyState::Status("shutting down")]);
}

/// How often to call [`watchdog`]: half the `WatchdogSec=` of the unit, if it set one.
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled().map(|timeout| timeout / 2)
}

/// Tells systemd the server is alive.
pub fn watchdog() {
    notify(&[NotifyState::Watchdog]);
}

fn notify(state: &[NotifyState<'_>]) {
    if let Err(error) = sd_notify::notify(state) {
        log::warn!("cannot notify systemd: {error}");
    }
}

/// Listening sockets handed over by systemd, by kind.
#[derive(Debug, Default)]
pub struct ActivatedListeners {
    /// Sockets named `submission`: plaintext with STARTTLS.
    pub submission: Vec<TcpListener>,
    /// Sockets named `submissions`: implicit TLS.
    pub submissions: Vec<TcpListener>,
    /// Sockets named `http`: the web read side, plaintext.
    pub http: Vec<TcpListener>,
}

/// Why socket activation could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActivationError {
    /// `LISTEN_FDS`, `LISTEN_PID` or `LISTEN_FDNAMES` could not be read.
    Environment(String),
    /// A socket has a name other than `submission`, `submissions` or `http`.
    UnknownName(String),
}

impl std::fmt::Display for ActivationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ActivationError::Environment(problem) => {
                write!(f, "socket activation: {problem}")
            }
            ActivationError::UnknownName(name) => write!(
                f,
                "socket activation: a socket is named {name:?}; name each one submission, \
                 submissions or http with FileDescriptorName="
            ),
        }
    }
}

impl std::error::Error for ActivationError {}

/// The sockets systemd passed to this process, or `None` if it passed none. Only the first
/// call can return sockets: each descriptor must have exactly one owner.
#[allow(unsafe_code)] // taking ownership of an inherited descriptor (FromRawFd)
pub fn activated_listeners() -> Result<Option<ActivatedListeners>, ActivationError> {
    static TAKEN: AtomicBool = AtomicBool::new(false);
    if TAKEN.swap(true, Ordering::AcqRel) {
        return Ok(None);
    }
    let fds = sd_notify::listen_fds_with_names()
        .map_err(|e| ActivationError::Environment(e.to_string()))?;
    if fds.len() == 0 {
        return Ok(None);
    }
    let mut listeners = ActivatedListeners::default();
    for (fd, name) in fds {
        // SAFETY: systemd passed `fd` to this process (LISTEN_PID matched) as a listening
        // socket, and the `TAKEN` flag makes this the only place that takes ownership of it.
        let listener = unsafe { <TcpListener as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        match name.as_str() {
            "submission" => listeners.submission.push(listener),
            "submissions" => listeners.submissions.push(listener),
            "http" => listeners.http.push(listener),
            _ => return Err(ActivationError::UnknownName(name)),
        }
    }
    Ok(Some(listeners))
}
