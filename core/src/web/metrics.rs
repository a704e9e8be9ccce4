//! `/metrics` in the Prometheus text exposition format (version 0.0.4), and `/healthz`.

use std::fmt::Write as _;

use super::{Page, content_type};

/// What the server has counted, handed in by the glue at the moment of the request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// SMTP connections open now (a gauge).
    pub smtp_connections_open: u64,
    /// HTTP connections open now, idle keep-alive ones included (a gauge).
    pub http_connections_open: u64,
    /// Messages committed to the store since the start.
    pub messages_accepted: u64,
    /// Deliveries that failed (the client got a 4xx or 5xx after DATA) since the start.
    pub deliveries_failed: u64,
    /// Failed AUTH attempts since the start.
    pub auth_failures: u64,
    /// HTTP responses sent since the start, by status class.
    pub http_requests: HttpRequests,
}

/// HTTP responses by status class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HttpRequests {
    /// 200–299.
    pub class_2xx: u64,
    /// 300–399 (the 304s).
    pub class_3xx: u64,
    /// 400–499.
    pub class_4xx: u64,
    /// 500–599.
    pub class_5xx: u64,
}

impl HttpRequests {
    /// Counts one response of `status`; a status outside 200–599 is not counted.
    pub fn count(&mut self, status: u16) {
        let class = match status {
            200..=299 => &mut self.class_2xx,
            300..=399 => &mut self.class_3xx,
            400..=499 => &mut self.class_4xx,
            500..=599 => &mut self.class_5xx,
            _ => return,
        };
        *class = class.saturating_add(1);
    }
}

/// `/metrics`: every counter with its `# HELP` and `# TYPE`. No ETag: it changes with every
/// request.
pub fn metrics(counters: &Counters) -> Page {
    let c = counters;
    let mut text = String::with_capacity(1024);
    let families: [Family; 5] = [
        (
            "atacama_connections_open",
            "gauge",
            "Connections open now, by protocol.",
            &[
                ("protocol=\"smtp\"", c.smtp_connections_open),
                ("protocol=\"http\"", c.http_connections_open),
            ],
        ),
        (
            "atacama_messages_accepted_total",
            "counter",
            "Messages committed to the store.",
            &[("", c.messages_accepted)],
        ),
        (
            "atacama_deliveries_failed_total",
            "counter",
            "Deliveries that failed after DATA.",
            &[("", c.deliveries_failed)],
        ),
        (
            "atacama_auth_failures_total",
            "counter",
            "Failed AUTH attempts.",
            &[("", c.auth_failures)],
        ),
        (
            "atacama_http_requests_total",
            "counter",
            "HTTP responses sent, by status class.",
            &[
                ("class=\"2xx\"", c.http_requests.class_2xx),
                ("class=\"3xx\"", c.http_requests.class_3xx),
                ("class=\"4xx\"", c.http_requests.class_4xx),
                ("class=\"5xx\"", c.http_requests.class_5xx),
            ],
        ),
    ];
    for (name, kind, help, samples) in families {
        // Writing to a String cannot fail.
        let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = if labels.is_empty() {
                writeln!(text, "{name} {value}")
            } else {
                writeln!(text, "{name}{{{labels}}} {value}")
            };
        }
    }
    plain(200, content_type::PROMETHEUS, text.into_bytes())
}

/// A metric family: name, type, help text, and its samples as (labels, value).
type Family<'a> = (
    &'static str,
    &'static str,
    &'static str,
    &'a [(&'static str, u64)],
);

/// `/healthz`: `200` and `ok` while the store is usable, `503` when it is not.
pub fn health(store_usable: bool) -> Page {
    match store_usable {
        true => plain(200, content_type::TEXT, b"ok".to_vec()),
        false => plain(503, content_type::TEXT, b"store unavailable".to_vec()),
    }
}

fn plain(status: u16, content_type: &'static str, body: Vec<u8>) -> Page {
    Page {
        status,
        content_type,
        body,
        etag: None,
        vary_accept: false,
        html: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition() {
        let mut counters = Counters {
            smtp_connections_open: 2,
            http_connections_open: 5,
            messages_accepted: 10,
            deliveries_failed: 1,
            auth_failures: 3,
            ..Counters::default()
        };
        for status in [200, 200, 304, 404, 503, 101, 600] {
            counters.http_requests.count(status);
        }
        let page = metrics(&counters);
        let text = String::from_utf8(page.body).unwrap();
        let samples: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            samples,
            [
                "atacama_connections_open{protocol=\"smtp\"} 2",
                "atacama_connections_open{protocol=\"http\"} 5",
                "atacama_messages_accepted_total 10",
                "atacama_deliveries_failed_total 1",
                "atacama_auth_failures_total 3",
                "atacama_http_requests_total{class=\"2xx\"} 2",
                "atacama_http_requests_total{class=\"3xx\"} 1",
                "atacama_http_requests_total{class=\"4xx\"} 1",
                "atacama_http_requests_total{class=\"5xx\"} 1",
            ]
        );
        assert!(text.contains("# TYPE atacama_connections_open gauge\n"));
        assert!(text.contains("# TYPE atacama_auth_failures_total counter\n"));
        assert!(text.ends_with('\n'));
        assert_eq!(page.content_type, content_type::PROMETHEUS);
    }

    #[test]
    fn healthz() {
        assert_eq!(
            (health(true).status, health(true).body),
            (200, b"ok".to_vec())
        );
        assert_eq!(health(false).status, 503);
    }
}
