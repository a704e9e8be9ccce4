//! The limits and timeouts one HTTP connection runs under.

use std::time::Duration;

/// Settings of one HTTP connection. Every buffer [`HttpConn`](super::HttpConn) keeps is
/// bounded by one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpConfig {
    /// Largest request head (request line and header fields, the empty line included);
    /// past it, `431`. Also the size of the input buffer.
    pub max_head: usize,
    /// Most header fields in one head; past it, `431`.
    pub max_headers: usize,
    /// Longest request target; past it, `414`.
    pub max_target: usize,
    /// How long after the accept the first request's head may take to arrive (slowloris).
    pub first_head_timeout: Duration,
    /// How long any head may take to arrive after its first byte (slowloris).
    pub head_timeout: Duration,
    /// How long a keep-alive connection may wait, idle, for its next request
    /// (`http.idle_timeout_secs`).
    pub idle_timeout: Duration,
    /// Largest body of a refused request (`405`) that is read and skipped to keep the
    /// connection; a larger one gets `405` and a close.
    pub max_skipped_body: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            max_head: 16 * 1024,
            max_headers: 64,
            max_target: 8 * 1024,
            first_head_timeout: Duration::from_secs(10),
            head_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            max_skipped_body: 64 * 1024,
        }
    }
}
