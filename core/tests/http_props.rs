//! Properties of the HTTP connection that hold for any input (proptest): any split of a
//! pipelined byte stream gives the same requests and the same responses, and arbitrary
//! bytes never break an invariant (`testing::http`: responses well formed and in order,
//! the buffer within `max_head`, nothing after the close, a close once the client closes).

use atacama_core::http::{HttpConfig, HttpEvent};
use atacama_core::testing::http::{
    GOOD_TOKEN, HttpRecording, StreamEnd, run_http, run_http_chunks,
};
use atacama_core::testing::split_at_points;
use proptest::prelude::*;

/// One request a client might pipeline, good or bad.
fn request() -> impl Strategy<Value = String> {
    let path = prop_oneof![
        Just("/".to_string()),
        Just("/messages/7".to_string()),
        Just("/missing/1".to_string()),
        Just("/private/2".to_string()),
        "/[a-z0-9/?=&%.-]{0,30}",
    ];
    let header = prop_oneof![
        Just("Accept: text/html".to_string()),
        Just("Accept: application/json".to_string()),
        Just("If-None-Match: \"j-11\"".to_string()),
        Just("If-None-Match: W/\"h-2\", *".to_string()),
        Just(format!("Authorization: {GOOD_TOKEN}")),
        Just("Connection: close".to_string()),
        Just("Connection: keep-alive".to_string()),
        Just("X-Noise: a b c".to_string()),
        Just("Content-Length: 0".to_string()),
    ];
    let method = prop_oneof![
        6 => Just("GET"),
        2 => Just("HEAD"),
        1 => Just("POST"),
        1 => Just("DELETE"),
    ];
    let version = prop_oneof![8 => Just("HTTP/1.1"), 1 => Just("HTTP/1.0"), 1 => Just("HTTP/2.0")];
    let eol = prop_oneof![4 => Just("\r\n"), 1 => Just("\n")];
    let body = prop_oneof![4 => Just(String::new()), 1 => "[a-zA-Z \r\n]{1,40}"];
    let well_formed = (
        method,
        path,
        version,
        prop::bool::weighted(0.9),
        prop::collection::vec(header, 0..4),
        eol,
        body,
    )
        .prop_map(|(method, path, version, host, headers, eol, body)| {
            let mut text = format!("{method} {path} {version}{eol}");
            if host {
                text.push_str(&format!("Host: blog.test{eol}"));
            }
            for header in headers {
                text.push_str(&format!("{header}{eol}"));
            }
            if !body.is_empty() {
                text.push_str(&format!("Content-Length: {}{eol}", body.len()));
            }
            text.push_str(eol);
            text + &body
        });
    prop_oneof![
        20 => well_formed,
        1 => Just("\r\n".to_string()),
        1 => Just("GET /x HTTP/1.1\r\nHost: b\r\nTransfer-Encoding: chunked\r\n\r\n".to_string()),
        1 => "[ -~\r\n]{0,60}",
    ]
}

fn stream() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(request(), 0..12).prop_map(|requests| requests.concat().into_bytes())
}

/// Limits small enough for short inputs to reach them.
fn small() -> HttpConfig {
    HttpConfig {
        max_head: 256,
        max_headers: 6,
        max_target: 64,
        max_skipped_body: 16,
        ..HttpConfig::default()
    }
}

fn run<'a>(
    config: HttpConfig,
    chunks: impl IntoIterator<Item = &'a [u8]>,
) -> Result<HttpRecording, TestCaseError> {
    run_http_chunks(config, chunks).map_err(|v| TestCaseError::fail(v.0))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn any_split_gives_the_same_events(
        input in stream(),
        points in prop::collection::vec(any::<usize>(), 0..8),
        limited in any::<bool>(),
    ) {
        let config = if limited { small() } else { HttpConfig::default() };
        let whole = run(config, [&input[..]])?;
        let chunked = run(config, split_at_points(&input, points))?;
        prop_assert_eq!(whole, chunked);
    }

    #[test]
    fn bytewise_feeding_gives_the_same_events(input in stream(), limited in any::<bool>()) {
        let config = if limited { small() } else { HttpConfig::default() };
        let whole = run(config, [&input[..]])?;
        let bytewise = run(config, input.chunks(1))?;
        prop_assert_eq!(whole, bytewise);
    }

    #[test]
    fn pipelined_and_lock_step_clients_get_the_same_responses(
        requests in prop::collection::vec(request(), 0..12),
    ) {
        let input = requests.concat().into_bytes();
        let pipelined = run(HttpConfig::default(), [&input[..]])?;
        let lock_step = run(HttpConfig::default(), requests.iter().map(|r| r.as_bytes()))?;
        prop_assert_eq!(pipelined, lock_step);
    }

    #[test]
    fn silence_or_a_stop_ends_any_stream_the_same_way_for_any_split(
        input in stream(),
        points in prop::collection::vec(any::<usize>(), 0..8),
        stop in any::<bool>(),
    ) {
        let end = if stop { StreamEnd::Shutdown } else { StreamEnd::Silence };
        let whole = run_http(small(), [&input[..]], end).map_err(|v| TestCaseError::fail(v.0))?;
        let chunked = run_http(small(), split_at_points(&input, points), end)
            .map_err(|v| TestCaseError::fail(v.0))?;
        prop_assert_eq!(whole, chunked);
    }

    #[test]
    fn arbitrary_bytes_keep_the_invariants(
        chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..600), 0..12),
        limited in any::<bool>(),
    ) {
        let config = if limited { small() } else { HttpConfig::default() };
        let recording = run(config, chunks.iter().map(Vec::as_slice))?;
        prop_assert_eq!(recording.last(), Some(&HttpEvent::Close));
        let whole: Vec<u8> = chunks.concat();
        prop_assert_eq!(recording, run(config, [&whole[..]])?);
    }
}
