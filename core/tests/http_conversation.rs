//! HTTP/1.1 conversations with the read side's connection (`atacama_core::http`), one per
//! rule and limit of issue 26, on a virtual clock. Every response is checked for the
//! headers all responses carry (`testing::http::parse_response`).

use std::time::{Duration, Instant};

use atacama_core::http::{
    CloseReason, EntityTag, HeadError, HttpConfig, HttpConn, Method, Response, Status, Version,
};
use atacama_core::testing::http::{HttpHarness, WALL_DATE, scripted_response};

fn harness() -> HttpHarness {
    HttpHarness::new(HttpConfig::default())
}

const GET: &str = "GET /messages/7 HTTP/1.1\r\nHost: blog.test\r\n\r\n";

fn json(body: &str) -> Response {
    Response::new(Status::OK, "application/json", body)
}

/// Serves the next request with the scripted application; returns it.
fn serve(h: &mut HttpHarness) -> atacama_core::http::Request {
    let request = h.expect_request();
    h.respond(scripted_response(&request));
    request
}

#[test]
fn a_get_is_served_with_the_headers_every_response_carries() {
    let mut h = harness();
    h.client("GET /messages/7?ignored=1 HTTP/1.1\r\nHost: blog.test\r\nAccept: */*\r\n\r\n");
    let request = h.expect_request();
    assert_eq!(request.method, Method::Get);
    assert_eq!(request.path, "/messages/7");
    assert_eq!(request.target, "/messages/7?ignored=1");
    assert_eq!(request.version, Version::Http11);
    assert_eq!(request.accept.as_deref(), Some("*/*"));
    assert!(request.keep_alive);
    h.respond(json("{\"id\":7}"));
    let response = h.expect_status(200);
    assert_eq!(response.header("Date"), Some(WALL_DATE));
    assert_eq!(response.header("Content-Length"), Some("8"));
    assert_eq!(response.header("Content-Type"), Some("application/json"));
    assert_eq!(response.header("Connection"), None);
    assert_eq!(response.header("Content-Security-Policy"), None);
    assert_eq!(response.text(), "{\"id\":7}");
    h.expect_nothing();
    assert!(h.conn.is_idle());
}

#[test]
fn the_date_follows_the_monotonic_clock() {
    let mut h = harness();
    h.advance(Duration::from_secs(3));
    h.client(GET);
    serve(&mut h);
    assert_eq!(
        h.expect_response().header("Date"),
        Some("Tue, 05 Mar 2024 09:00:05 GMT")
    );
}

#[test]
fn html_gets_the_content_security_policy() {
    let mut h = harness();
    h.client("GET / HTTP/1.1\r\nHost: b\r\nAccept: text/html\r\n\r\n");
    serve(&mut h);
    let response = h.expect_status(200);
    assert_eq!(
        response.header("Content-Security-Policy"),
        Some("default-src 'none'; style-src 'self'; img-src 'self'; frame-ancestors 'none'")
    );
    assert_eq!(response.header("Vary"), Some("Accept"));
}

#[test]
fn extra_headers_reach_the_client() {
    let mut h = harness();
    h.client("GET /private/1 HTTP/1.1\r\nHost: b\r\nAuthorization: Bearer wrong\r\n\r\n");
    let request = serve(&mut h);
    assert_eq!(request.authorization.as_deref(), Some("Bearer wrong"));
    let response = h.expect_status(401);
    assert_eq!(response.header("WWW-Authenticate"), Some("Bearer"));
}

#[test]
fn keep_alive_by_default_on_http_1_1() {
    let mut h = harness();
    for _ in 0..3 {
        h.client(GET);
        serve(&mut h);
        assert_eq!(h.expect_status(200).header("Connection"), None);
    }
    h.expect_nothing();
}

#[test]
fn connection_close_is_honoured() {
    let mut h = harness();
    h.client("GET / HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n");
    let request = serve(&mut h);
    assert!(!request.keep_alive);
    assert_eq!(h.expect_status(200).header("Connection"), Some("close"));
    h.expect_close();
    assert_eq!(h.conn.close_reason(), Some(CloseReason::ClientAsked));
    assert_eq!(h.conn.read_capacity(), 0);
}

#[test]
fn http_1_0_closes_unless_asked() {
    let mut h = harness();
    h.client("GET / HTTP/1.0\r\n\r\n");
    assert_eq!(serve(&mut h).version, Version::Http10);
    assert_eq!(h.expect_status(200).header("Connection"), Some("close"));
    h.expect_close();

    let mut h = harness();
    h.client("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    serve(&mut h);
    assert_eq!(
        h.expect_status(200).header("Connection"),
        Some("keep-alive")
    );
    h.expect_nothing();
    h.client("GET / HTTP/1.0\r\n\r\n");
    serve(&mut h);
    h.expect_status(200);
    h.expect_close();
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let mut h = harness();
    h.client(
        "GET /a HTTP/1.1\r\nHost: b\r\n\r\nDELETE /b HTTP/1.1\r\nHost: b\r\n\r\n\
         GET /ccc HTTP/1.1\r\nHost: b\r\n\r\n",
    );
    // One request at a time: the DELETE's 405 waits for the answer to /a.
    assert_eq!(h.expect_request().path, "/a");
    h.expect_nothing();
    h.respond(json("1"));
    assert_eq!(h.expect_status(200).text(), "1");
    h.expect_status(405);
    assert_eq!(h.expect_request().path, "/ccc");
    h.respond(json("3"));
    assert_eq!(h.expect_status(200).text(), "3");
    h.expect_nothing();
}

#[test]
fn reading_stops_while_a_request_is_outstanding_and_the_buffer_is_full() {
    let mut h = harness();
    let many = GET.repeat(1000);
    let taken = h.client(&many);
    assert_eq!(taken, 16 * 1024);
    // The outstanding request's head left the buffer; pipelined bytes fill its place.
    h.expect_request();
    assert_eq!(h.client(&many), GET.len());
    assert_eq!(h.conn.read_capacity(), 0);
    assert_eq!(h.conn.poll_timeout(), None);
    h.respond(json("{}"));
    h.expect_status(200);
    h.expect_request();
    assert_eq!(h.conn.read_capacity(), GET.len());
    assert_eq!(h.conn.buffered(), 16 * 1024 - GET.len());
}

#[test]
fn a_1_1_request_without_host_is_400() {
    let mut h = harness();
    h.client("GET / HTTP/1.1\r\n\r\n");
    let response = h.expect_status(400);
    assert_eq!(response.header("Connection"), Some("close"));
    assert_eq!(response.header("Content-Type"), Some("application/json"));
    assert_eq!(
        response.text(),
        r#"{"error":"bad_request","message":"An HTTP/1.1 request needs exactly one Host field"}"#
    );
    h.expect_close();
    assert_eq!(
        h.conn.close_reason(),
        Some(CloseReason::Refused(HeadError::BadHost))
    );
}

#[test]
fn a_head_over_16_kib_is_431() {
    let mut h = harness();
    let mut head = String::from("GET / HTTP/1.1\r\nHost: b\r\n");
    while head.len() < 17 * 1024 {
        head.push_str("X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
    }
    // The buffer holds 16 KiB: the head has not ended there.
    let mut h2 = HttpHarness::new(HttpConfig {
        max_headers: 1000,
        ..HttpConfig::default()
    });
    h2.client(&head);
    h2.expect_status(431);
    h2.expect_close();
    // With the default field limit, the 65th field already refuses it.
    h.client(&head);
    h.expect_status(431);
    h.expect_close();
}

#[test]
fn a_head_of_exactly_16_kib_is_served() {
    let mut h = harness();
    let prefix = "GET / HTTP/1.1\r\nHost: b\r\nX: ";
    let filler = "a".repeat(16 * 1024 - prefix.len() - 4);
    h.client(format!("{prefix}{filler}\r\n\r\n"));
    serve(&mut h);
    h.expect_status(200);
}

#[test]
fn more_than_64_header_fields_is_431() {
    let mut h = harness();
    let mut head = String::from("GET / HTTP/1.1\r\nHost: b\r\n");
    for i in 0..64 {
        head.push_str(&format!("X-{i}: v\r\n"));
    }
    head.push_str("\r\n");
    h.client(&head);
    h.expect_status(431);
    h.expect_close();

    let mut h = harness();
    let mut head = String::from("GET / HTTP/1.1\r\nHost: b\r\n");
    for i in 0..63 {
        head.push_str(&format!("X-{i}: v\r\n"));
    }
    h.client(head + "\r\n");
    serve(&mut h);
    h.expect_status(200);
}

#[test]
fn a_target_over_8_kib_is_414_before_the_line_ends() {
    let mut h = harness();
    h.client(format!("GET /{}", "a".repeat(8 * 1024)));
    h.expect_status(414);
    h.expect_close();

    let mut h = harness();
    h.client(format!(
        "GET /{} HTTP/1.1\r\nHost: b\r\n\r\n",
        "a".repeat(8 * 1024 - 1)
    ));
    serve(&mut h);
    h.expect_status(200);
}

#[test]
fn a_get_or_head_with_a_body_is_400() {
    for method in ["GET", "HEAD"] {
        let mut h = harness();
        h.client(format!(
            "{method} / HTTP/1.1\r\nHost: b\r\nContent-Length: 2\r\n\r\nhi"
        ));
        let response = h.expect_status(400);
        assert_eq!(response.body.is_empty(), method == "HEAD");
        h.expect_close();
    }
    // Content-Length: 0 is no body.
    let mut h = harness();
    h.client("GET / HTTP/1.1\r\nHost: b\r\nContent-Length: 0\r\n\r\n");
    serve(&mut h);
    h.expect_status(200);
}

#[test]
fn any_transfer_encoding_is_400() {
    for method in ["GET", "POST"] {
        let mut h = harness();
        h.client(format!(
            "{method} / HTTP/1.1\r\nHost: b\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        ));
        h.expect_status(400);
        h.expect_close();
    }
}

#[test]
fn the_http2_preface_is_505() {
    let mut h = harness();
    h.client("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    let response = h.expect_status(505);
    assert_eq!(response.header("Connection"), Some("close"));
    h.expect_close();
}

#[test]
fn malformed_requests_are_400_and_close() {
    for input in [
        &b"GET /\r\n\r\n"[..],
        b"GET  / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: b\r\n folded\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\n",
        b"GET / HTTP/1.1\r\nHost: b\r\nContent-Length: 1, 1\r\n\r\n",
    ] {
        let mut h = harness();
        h.client(input);
        h.expect_status(400);
        h.expect_close();
    }
}

#[test]
fn other_methods_get_405_with_allow_and_the_connection_stays() {
    for method in ["POST", "PUT", "DELETE", "OPTIONS", "PATCH", "BREW"] {
        let mut h = harness();
        h.client(format!("{method} /messages/1 HTTP/1.1\r\nHost: b\r\n\r\n"));
        let response = h.expect_status(405);
        assert_eq!(response.header("Allow"), Some("GET, HEAD"));
        assert_eq!(response.header("Connection"), None);
        h.client(GET);
        serve(&mut h);
        h.expect_status(200);
    }
}

#[test]
fn a_405_body_is_skipped_when_small() {
    let mut h = harness();
    h.client("POST /x HTTP/1.1\r\nHost: b\r\nContent-Length: 11\r\n\r\nGET / HTTP/");
    h.expect_status(405);
    h.expect_nothing();
    // The body's bytes are never taken for a request; what follows it is.
    h.client(GET);
    assert_eq!(serve(&mut h).path, "/messages/7");
    h.expect_status(200);
}

#[test]
fn a_405_with_a_large_body_closes() {
    let mut h = harness();
    h.client("POST /x HTTP/1.1\r\nHost: b\r\nContent-Length: 1000000\r\n\r\n");
    assert_eq!(h.expect_status(405).header("Connection"), Some("close"));
    h.expect_close();
}

#[test]
fn a_405_without_host_is_still_405() {
    let mut h = harness();
    h.client("OPTIONS * HTTP/1.1\r\n\r\n");
    h.expect_status(405);
}

#[test]
fn head_gets_the_get_headers_without_the_body() {
    let mut h = harness();
    h.client("HEAD /messages/7 HTTP/1.1\r\nHost: b\r\n\r\n");
    assert_eq!(h.expect_request().method, Method::Head);
    h.respond(json("{\"id\":7}"));
    let response = h.expect_status(200);
    assert_eq!(response.header("Content-Length"), Some("8"));
    assert!(response.body.is_empty());
    // The next request is not mistaken for a body.
    h.client(GET);
    serve(&mut h);
    h.expect_status(200);
}

fn etagged() -> Response {
    json("{\"id\":7}")
        .with_etag(EntityTag::new("m7-json").unwrap())
        .vary_accept()
}

#[test]
fn if_none_match_gives_304_without_body() {
    for field in [
        "\"m7-json\"",
        "W/\"m7-json\"",
        "\"other\", \"m7-json\"",
        "*",
    ] {
        let mut h = harness();
        h.client(format!(
            "GET /m HTTP/1.1\r\nHost: b\r\nIf-None-Match: {field}\r\n\r\n"
        ));
        h.expect_request();
        h.respond(etagged());
        let response = h.expect_status(304);
        assert_eq!(response.header("ETag"), Some("\"m7-json\""), "{field}");
        assert_eq!(response.header("Vary"), Some("Accept"));
        assert_eq!(response.header("Content-Length"), None);
        assert_eq!(response.header("Content-Type"), None);
        assert!(response.body.is_empty());
    }
}

#[test]
fn if_none_match_that_differs_gives_200() {
    let mut h = harness();
    h.client("GET /m HTTP/1.1\r\nHost: b\r\nIf-None-Match: \"m7-html\"\r\n\r\n");
    h.expect_request();
    h.respond(etagged());
    let response = h.expect_status(200);
    assert_eq!(response.header("ETag"), Some("\"m7-json\""));
    assert_eq!(response.text(), "{\"id\":7}");
}

#[test]
fn if_none_match_leaves_errors_alone() {
    let mut h = harness();
    h.client("GET /missing HTTP/1.1\r\nHost: b\r\nIf-None-Match: *\r\n\r\n");
    serve(&mut h);
    h.expect_status(404);
}

#[test]
fn the_first_head_must_arrive_within_10_s_of_the_accept() {
    let mut h = harness();
    h.advance(Duration::from_secs(5));
    h.client("GET / HTTP/1.1\r\n");
    h.advance(Duration::from_secs(4));
    h.expect_nothing();
    h.advance(Duration::from_secs(1));
    h.expect_status(408);
    h.expect_close();
    assert_eq!(h.conn.close_reason(), Some(CloseReason::Timeout));
}

#[test]
fn a_silent_new_connection_closes_without_a_word() {
    let mut h = harness();
    h.advance(Duration::from_secs(10));
    h.expect_close();
    assert_eq!(h.conn.close_reason(), Some(CloseReason::Idle));
}

#[test]
fn any_head_must_arrive_within_10_s_of_its_first_byte() {
    let mut h = harness();
    h.client(GET);
    serve(&mut h);
    h.expect_status(200);
    h.advance(Duration::from_secs(20));
    // A byte every 9 s does not keep a head alive.
    h.client("G");
    h.advance(Duration::from_secs(9));
    h.client("E");
    h.expect_nothing();
    h.advance(Duration::from_secs(1));
    h.expect_status(408);
    h.expect_close();
}

#[test]
fn empty_lines_do_not_restart_the_head_clock() {
    let mut h = harness();
    h.client("\r\n");
    h.advance(Duration::from_secs(9));
    h.client("\r\n");
    h.advance(Duration::from_secs(1));
    h.expect_close();
}

#[test]
fn an_idle_keep_alive_connection_closes_after_the_idle_timeout() {
    let mut h = harness();
    h.client(GET);
    serve(&mut h);
    h.expect_status(200);
    assert_eq!(h.conn.poll_timeout(), Some(h.now + Duration::from_secs(30)));
    h.advance(Duration::from_secs(29));
    h.expect_nothing();
    h.advance(Duration::from_secs(1));
    h.expect_close();
    assert_eq!(h.conn.close_reason(), Some(CloseReason::Idle));
}

#[test]
fn the_idle_timeout_is_configurable() {
    let mut h = HttpHarness::new(HttpConfig {
        idle_timeout: Duration::from_secs(5),
        ..HttpConfig::default()
    });
    h.client(GET);
    serve(&mut h);
    h.expect_status(200);
    h.advance(Duration::from_secs(5));
    h.expect_close();
}

#[test]
fn no_deadline_while_the_application_works() {
    let mut h = harness();
    h.client(GET);
    h.expect_request();
    assert_eq!(h.conn.poll_timeout(), None);
    h.advance(Duration::from_secs(3600));
    h.expect_nothing();
    h.respond(json("{}"));
    h.expect_status(200);
}

#[test]
fn a_head_complete_before_its_deadline_is_served() {
    let mut h = harness();
    h.conn.receive(h.now, GET.as_bytes());
    h.now += Duration::from_secs(60);
    h.conn.handle_timeout(h.now);
    h.advance(Duration::ZERO);
    serve(&mut h);
    h.expect_status(200);
}

#[test]
fn requests_sent_before_the_client_closes_are_answered() {
    let mut h = harness();
    h.conn
        .receive(h.now, format!("{GET}{GET}GET /partial").as_bytes());
    h.client_closes();
    serve(&mut h);
    h.expect_status(200);
    serve(&mut h);
    h.expect_status(200);
    h.expect_close();
    assert_eq!(h.conn.close_reason(), Some(CloseReason::PeerClosed));
}

#[test]
fn shutdown_closes_an_idle_connection_at_once() {
    let mut h = harness();
    h.client(GET);
    serve(&mut h);
    h.expect_status(200);
    assert!(h.conn.is_idle());
    h.shutdown();
    h.expect_close();
    assert_eq!(h.conn.close_reason(), Some(CloseReason::Shutdown));
}

#[test]
fn shutdown_lets_the_outstanding_request_finish_with_close() {
    let mut h = harness();
    h.client(format!("{GET}{GET}"));
    h.expect_request();
    assert!(!h.conn.is_idle());
    h.shutdown();
    h.expect_nothing();
    h.respond(json("{}"));
    assert_eq!(h.expect_status(200).header("Connection"), Some("close"));
    h.expect_close();
}

#[test]
fn over_capacity_is_503_with_retry_after_then_close() {
    let now = Instant::now();
    let conn = HttpConn::over_capacity(now, HttpHarness::wall(), Duration::from_secs(5));
    assert_eq!(conn.read_capacity(), 0);
    assert_eq!(conn.poll_timeout(), None);
    let mut h = HttpHarness::from_conn(conn, now);
    h.advance(Duration::ZERO);
    let response = h.expect_status(503);
    assert_eq!(response.header("Retry-After"), Some("5"));
    assert_eq!(response.header("Connection"), Some("close"));
    h.expect_close();
    assert_eq!(h.conn.statuses().server_error, 1);
}

#[test]
fn absolute_form_targets_are_reduced_to_their_path() {
    let mut h = harness();
    h.client("GET http://blog.test/messages/7?x HTTP/1.1\r\nHost: blog.test\r\n\r\n");
    assert_eq!(serve(&mut h).path, "/messages/7");
}

#[test]
fn leading_empty_lines_are_ignored() {
    let mut h = harness();
    h.client(format!("\r\n\r\n{GET}"));
    serve(&mut h);
    h.expect_status(200);
}

#[test]
fn respond_without_a_request_is_not_pending() {
    let now = Instant::now();
    let mut conn = HttpConn::new(HttpConfig::default(), now, HttpHarness::wall());
    assert!(conn.respond(now, json("{}")).is_err());
    let mut h = HttpHarness::from_conn(conn, now);
    h.client("POST / HTTP/1.1\r\nHost: b\r\nContent-Length: 3\r\n\r\n");
    h.expect_status(405);
    // Skipping the body: a stray respond changes nothing.
    assert!(h.conn.respond(h.now, json("{}")).is_err());
    h.client(format!("abc{GET}"));
    serve(&mut h);
    h.expect_status(200);
    h.expect_nothing();
}

#[test]
fn statuses_are_counted_by_class() {
    let mut h = harness();
    h.client(format!(
        "{GET}POST / HTTP/1.1\r\nHost: b\r\n\r\nGET /missing HTTP/1.1\r\nHost: b\r\n\r\n"
    ));
    serve(&mut h);
    h.expect_status(200);
    h.expect_status(405);
    serve(&mut h);
    h.expect_status(404);
    let counts = h.conn.statuses();
    assert_eq!((counts.success, counts.client_error), (1, 2));
}

#[test]
fn a_405_body_that_never_comes_closes_without_a_second_response() {
    let mut h = harness();
    h.client("POST /x HTTP/1.1\r\nHost: b\r\nContent-Length: 10\r\n\r\nabc");
    h.expect_status(405);
    h.advance(Duration::from_secs(10));
    h.expect_close();
    assert_eq!(h.conn.close_reason(), Some(CloseReason::Timeout));
}

#[test]
fn a_405_to_a_client_expecting_100_continue_closes() {
    let mut h = harness();
    h.client("PUT /x HTTP/1.1\r\nHost: b\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n");
    assert_eq!(h.expect_status(405).header("Connection"), Some("close"));
    h.expect_close();
}

#[test]
fn a_405_to_http_1_0_keep_alive_says_keep_alive() {
    let mut h = harness();
    h.client("DELETE /x HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_eq!(
        h.expect_status(405).header("Connection"),
        Some("keep-alive")
    );
    h.expect_nothing();
    h.client("DELETE /x HTTP/1.0\r\n\r\n");
    assert_eq!(h.expect_status(405).header("Connection"), Some("close"));
    h.expect_close();
}

#[test]
fn a_refused_head_request_gets_no_body() {
    let mut h = harness();
    h.client("HEAD * HTTP/1.1\r\nHost: b\r\n\r\n");
    let response = h.expect_status(400);
    assert!(response.body.is_empty());
    assert!(response.header("Content-Length").is_some());
}

#[test]
fn a_line_gone_bad_is_refused_at_its_end_or_its_deadline() {
    let mut h = harness();
    h.client("GET / HTTP/1.1\r\n");
    h.client(b"Ho\x01st: b");
    h.expect_nothing();
    h.client("\r\n");
    h.expect_status(400);
    h.expect_close();

    let mut h = harness();
    h.client("GET / HTTP/1.1\r\n");
    h.client(b"Ho\x01st: b");
    h.advance(Duration::from_secs(10));
    h.expect_status(400);
    h.expect_close();
}
