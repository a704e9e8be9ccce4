//! The web read side end to end, on both binaries: a post mailed with a real client (lettre,
//! over STARTTLS) is fetched over HTTP with curl and with a small socket client
//! (`atacama_tests::http`): JSON fields and values, the HTML page and its headers, the stream,
//! RSS and Atom parsed back, ETag → `304`, a private channel with and without a token, `405`,
//! keep-alive, `/healthz`, `/metrics`, and the stop closing idle web connections.

use std::net::SocketAddr;
use std::time::Duration;

use atacama_tests::http::{HttpClient, get};
use atacama_tests::tools;
use atacama_tests::{Binary, Server, Settings, mailer, server_with};
use lettre::{Message, Transport};

// --- helpers ------------------------------------------------------------------------------

/// A post from alice to `to`.
fn post(to: &str, subject: &str) -> lettre::message::MessageBuilder {
    Message::builder()
        .from("Alice <alice@example.org>".parse().expect("address"))
        .to(to.parse().expect("address"))
        .subject(subject)
}

/// Mails a post as alice over STARTTLS to `to`.
fn mail(server: &Server, to: &str, subject: &str, body: &str) {
    let message = post(to, subject).body(body.to_string()).expect("message");
    mailer(server).send(&message).expect("sent over STARTTLS");
}

/// curl with `args` against `http://ADDRESS{path}`; stdout, after a zero exit.
fn curl(address: SocketAddr, path: &str, args: &[&str]) -> String {
    let url = format!("http://{address}{path}");
    let mut all: Vec<&str> = vec!["--silent", "--show-error", "--max-time", "20"];
    all.extend_from_slice(args);
    all.push(&url);
    tools::run_program("curl", "curl", &all)
        .success("curl")
        .stdout
}

const BODY: &str = "<red>forceful line\r\nplain line\r\n";

// --- tests ------------------------------------------------------------------------------

fn a_mailed_post_reads_back_as_json_html_and_feeds(binary: Binary) {
    let server = server_with(binary, Settings::default());
    mail(&server, "bob@example.org", "colours", BODY);
    let web = server.http;

    // curl, a real client: the JSON form, Atacama's field names.
    let json: serde_json::Value =
        serde_json::from_str(&curl(web, "/messages/1", &[])).expect("JSON from curl");
    assert_eq!(json["id"], 1);
    assert_eq!(json["subject"], "colours");
    assert_eq!(json["channel"], "general");
    assert_eq!(json["parent_id"], serde_json::Value::Null);
    let content = json["content"].as_str().expect("content");
    assert!(content.contains("<red>forceful line"), "{content:?}");
    let html = json["processed_content"]
        .as_str()
        .expect("processed_content");
    assert_eq!(html, atacama_core::markup::render(content));
    assert!(html.contains("color-red"), "{html}");
    let created = json["created_at"].as_str().expect("created_at");
    assert!(
        created.len() == 20 && created.ends_with('Z') && created.as_bytes()[10] == b'T',
        "RFC 3339 UTC: {created}"
    );

    // The page, for a browser: the colour class, the CSP, and the headers of every response.
    let page = get(web, "/messages/1", &[("Accept", "text/html")]);
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(
        page.header("content-security-policy"),
        Some(atacama_core::http::HTML_CSP)
    );
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(page.header("vary"), Some("Accept"));
    assert!(page.text().contains("color-red"), "{}", page.text());
    assert!(page.text().contains("colours"));

    // The stream, both forms.
    let stream = get(web, "/", &[("Accept", "text/html")]);
    assert_eq!(stream.status, 200);
    assert!(stream.text().contains("colours"), "{}", stream.text());
    let stream = get(web, "/stream", &[("Accept", "application/json")]).json();
    assert_eq!(stream["messages"][0]["id"], 1);
    assert_eq!(stream["older"], serde_json::Value::Null);

    // The feeds parse with real parsers and link where public_url says.
    let rss = get(web, "/feed.xml", &[]);
    assert_eq!(
        rss.header("content-type"),
        Some("application/rss+xml; charset=utf-8")
    );
    let channel = rss::Channel::read_from(&rss.body[..]).expect("RSS parses");
    let item = channel.items().first().expect("one item");
    assert_eq!(item.title(), Some("colours"));
    let link = format!("http://{web}/messages/1");
    assert_eq!(item.link(), Some(link.as_str()));
    assert!(item.description().unwrap_or_default().contains("color-red"));
    let atom = get(web, "/feed.atom", &[]);
    let feed = atom_syndication::Feed::read_from(&atom.body[..]).expect("Atom parses");
    assert_eq!(feed.entries().len(), 1);
    assert_eq!(feed.entries()[0].title().as_str(), "colours");

    // An unknown id and an unknown path: 404, in the form asked for.
    let missing = get(web, "/messages/99", &[]);
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["error"], "not_found");
    assert_eq!(get(web, "/nothing/here", &[]).status, 404);
}

fn replies_chain_and_the_stream_pages_ten_at_a_time(binary: Binary) {
    let server = server_with(binary, Settings::default());
    let mailer = mailer(&server);
    let root = post("bob@example.org", "root")
        .message_id(Some("<root@example.org>".into()))
        .body("first\r\n".to_string())
        .expect("message");
    mailer.send(&root).expect("root sent");
    let reply = post("bob@example.org", "Re: root")
        .in_reply_to("<root@example.org>".into())
        .body("second\r\n".to_string())
        .expect("message");
    mailer.send(&reply).expect("reply sent");
    for n in 3..=12 {
        let message = post("bob@example.org", &format!("post {n}"))
            .body(format!("number {n}\r\n"))
            .expect("message");
        mailer.send(&message).expect("sent");
    }
    let web = server.http;

    assert_eq!(get(web, "/messages/2", &[]).json()["parent_id"], 1);
    let links = get(web, "/messages/1/chain", &[]).chain_links();
    assert_eq!(links, [(1, true), (2, false)]);
    let page = get(web, "/messages/2/chain", &[("Accept", "text/html")]);
    assert_eq!(page.status, 200);
    assert!(page.text().contains("Re: root"));

    // Newest first, ten a page, then the older ones.
    let first = get(web, "/", &[("Accept", "application/json")]).json();
    let ids = |page: &serde_json::Value| -> Vec<u64> {
        page["messages"]
            .as_array()
            .expect("messages")
            .iter()
            .filter_map(|m| m["id"].as_u64())
            .collect()
    };
    assert_eq!(ids(&first), (3..=12).rev().collect::<Vec<_>>());
    let older = first["older"].as_str().expect("an older page").to_string();
    assert_eq!(older, "/stream/older/3");
    let second = get(web, &older, &[("Accept", "application/json")]).json();
    assert_eq!(ids(&second), [2, 1]);
    assert_eq!(second["older"], serde_json::Value::Null);
    let html = get(web, "/", &[("Accept", "text/html")]).text();
    assert!(html.contains("href=\"/stream/older/3\""), "{html}");
    let channel = get(
        web,
        "/stream/channel/general",
        &[("Accept", "application/json")],
    )
    .json();
    assert_eq!(ids(&channel), ids(&first));
}

fn etag_turns_into_304_and_keep_alive_serves_requests_in_turn(binary: Binary) {
    let server = server_with(binary, Settings::default());
    mail(&server, "bob@example.org", "cached", "<blue>twice\r\n");
    let mut client = HttpClient::connect(server.http).expect("connect");
    let first = client.get("/messages/1", &[]).expect("first request");
    assert_eq!(first.status, 200);
    let etag = first.header("etag").expect("an ETag").to_string();
    assert!(
        etag.starts_with('"') && etag.ends_with('"'),
        "strong: {etag}"
    );
    // The same connection: keep-alive by default.
    let second = client
        .get("/messages/1", &[("If-None-Match", &etag)])
        .expect("second request on the same connection");
    assert_eq!(second.status, 304);
    assert!(second.body.is_empty());
    assert_eq!(second.header("etag"), Some(etag.as_str()));
    // The HTML form is another representation: another tag, so no 304.
    let html = client
        .get(
            "/messages/1",
            &[("Accept", "text/html"), ("If-None-Match", &etag)],
        )
        .expect("third request");
    assert_eq!(html.status, 200);
    assert_ne!(html.header("etag"), Some(etag.as_str()));
    // curl sends If-None-Match as told and sees the 304.
    let code = curl(
        server.http,
        "/messages/1",
        &[
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
            &format!("If-None-Match: {etag}"),
        ],
    );
    assert_eq!(code, "304");
    // Connection: close is honoured.
    let last = client
        .get("/healthz", &[("Connection", "close")])
        .expect("last request");
    assert_eq!((last.status, last.text().as_str()), (200, "ok"));
    assert!(client.closed_within(Duration::from_secs(5)));
}

fn a_private_channel_needs_a_valid_token(binary: Binary) {
    let settings = Settings::default()
        .channels("public", "[\"general\"]")
        .channels("private", "[\"secret\"]");
    let server = server_with(binary, settings);
    mail(
        &server,
        "secret@example.org",
        "for readers only",
        "hush\r\n",
    );
    mail(&server, "bob@example.org", "for everyone", "hello\r\n");
    let web = server.http;

    // Without a token a private message is missing, exactly like a missing one.
    let hidden = get(web, "/messages/1", &[]);
    assert_eq!(hidden.status, 404);
    assert_eq!(hidden.body, get(web, "/messages/99", &[]).body);
    let stream = get(web, "/", &[]).json();
    let ids: Vec<u64> = stream["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(|m| m["id"].as_u64())
        .collect();
    assert_eq!(ids, [2]);

    let added = server.cli(&["token", "add", "reader"], None).success();
    let token = added
        .stdout_text()
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    assert!(token.len() >= 22, "{token:?}");
    let bearer = format!("Bearer {token}");
    let shown = get(web, "/messages/1", &[("Authorization", &bearer)]);
    assert_eq!(shown.status, 200);
    assert_eq!(shown.json()["channel"], "secret");
    let code = curl(
        web,
        "/messages/1",
        &[
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
            &format!("Authorization: {bearer}"),
        ],
    );
    assert_eq!(code, "200");

    // A wrong token is 401 on every route, public ones included.
    for path in ["/messages/1", "/messages/2", "/"] {
        let refused = get(web, path, &[("Authorization", "Bearer not-a-token")]);
        assert_eq!(refused.status, 401, "{path}");
        assert_eq!(refused.header("www-authenticate"), Some("Bearer"), "{path}");
    }
}

fn other_methods_health_and_metrics(binary: Binary) {
    let server = server_with(binary, Settings::default());
    mail(&server, "bob@example.org", "counted", "one\r\n");
    let web = server.http;

    let mut client = HttpClient::connect(web).expect("connect");
    let post = client.request("POST", "/", &[]).expect("POST");
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("GET, HEAD"));
    // The connection stays for the next request.
    let head = client.request("HEAD", "/messages/1", &[]).expect("HEAD");
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert!(head.header("content-length").is_some_and(|n| n != "0"));

    let health = get(web, "/healthz", &[]);
    assert_eq!((health.status, health.text().as_str()), (200, "ok"));

    // A closed connection is counted open until the server has drained it after its
    // response: scrape until only the scraping connection and the kept-alive one are left.
    // Each scrape before the last adds a 2xx of its own.
    let mut scrapes = 0;
    let mut metrics = String::new();
    let settled = atacama_tests::eventually(Duration::from_secs(10), || {
        metrics = get(web, "/metrics", &[]).text();
        scrapes += 1;
        let open = |line: &str| metrics.lines().any(|l| l == line);
        open("atacama_connections_open{protocol=\"http\"} 2")
            && open("atacama_connections_open{protocol=\"smtp\"} 0")
    });
    // The scraping connection, and the kept-alive one above.
    assert!(settled, "2 web and no SMTP connections open in:\n{metrics}");
    let successes = format!(
        "atacama_http_requests_total{{class=\"2xx\"}} {}",
        2 + scrapes - 1
    );
    for line in [
        "atacama_messages_accepted_total 1",
        "atacama_connections_open{protocol=\"smtp\"} 0",
        "atacama_http_requests_total{class=\"4xx\"} 1",
        successes.as_str(),
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in:\n{metrics}");
    }
}

/// Sends `bytes` on a fresh connection and reads the one response, which must close it.
fn refused(web: SocketAddr, bytes: &[u8]) -> atacama_tests::http::HttpResponse {
    let mut client = HttpClient::connect(web).expect("connect");
    std::io::Write::write_all(client.tcp(), bytes).expect("send");
    let response = client.response(false).expect("a response");
    assert!(
        client.closed_within(Duration::from_secs(5)),
        "closed after it"
    );
    response
}

fn the_limits_and_framing_errors_hold_end_to_end(binary: Binary) {
    let server = server_with(binary, Settings::default().http("idle_timeout_secs", 1));
    let web = server.http;
    let long_target = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(9000));
    let big_head = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Filler: {}\r\n\r\n",
        "b".repeat(16 * 1024)
    );
    let many_headers = format!(
        "GET / HTTP/1.1\r\nHost: x\r\n{}\r\n",
        "X-H: 1\r\n".repeat(70)
    );
    let cases: [(&[u8], u16); 6] = [
        (b"GET / HTTP/1.1\r\n\r\n", 400),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
            400,
        ),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
            400,
        ),
        (long_target.as_bytes(), 414),
        (big_head.as_bytes(), 431),
        (many_headers.as_bytes(), 431),
    ];
    for (bytes, status) in cases {
        let response = refused(web, bytes);
        let shown = String::from_utf8_lossy(&bytes[..bytes.len().min(60)]).into_owned();
        assert_eq!(response.status, status, "{shown:?}");
        assert_eq!(response.header("connection"), Some("close"), "{shown:?}");
        assert!(response.header("date").is_some() && response.header("content-length").is_some());
    }
    // The HTTP/2 preface: 505, or a close without a word.
    let mut h2 = HttpClient::connect(web).expect("connect");
    std::io::Write::write_all(h2.tcp(), b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").expect("send");
    match h2.response(false) {
        Ok(response) => assert_eq!(response.status, 505),
        Err(error) => assert_eq!(error.kind(), std::io::ErrorKind::UnexpectedEof),
    }

    // Pipelined requests in one write are answered in order on the same connection.
    let mut client = HttpClient::connect(web).expect("connect");
    std::io::Write::write_all(
        client.tcp(),
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /nothing HTTP/1.1\r\nHost: x\r\n\r\n\
          HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .expect("send");
    assert_eq!(client.response(false).expect("first").status, 200);
    assert_eq!(client.response(false).expect("second").status, 404);
    let head = client.response(true).expect("third");
    assert_eq!(
        (head.status, head.header("content-length")),
        (200, Some("2"))
    );
    // Idle past idle_timeout_secs (1 s here): closed without a word.
    assert!(client.closed_within(Duration::from_secs(5)));

    // HTTP/1.0 closes after its response unless asked to keep alive.
    let response = refused(web, b"GET /healthz HTTP/1.0\r\n\r\n");
    assert_eq!((response.status, response.text().as_str()), (200, "ok"));
}

fn the_stop_closes_idle_web_connections_at_once(binary: Binary) {
    let mut server = server_with(binary, Settings::default());
    let mut idle = HttpClient::connect(server.http).expect("connect");
    assert_eq!(idle.get("/healthz", &[]).expect("request").status, 200);
    server.signal("TERM");
    assert!(
        idle.closed_within(Duration::from_secs(3)),
        "the idle keep-alive connection is closed at the stop"
    );
    let status = server.wait_exit(Duration::from_secs(10)).expect("exited");
    assert!(status.success(), "{status:?}");
    let log = server.log();
    assert!(
        log.contains("outcome=shutdown") || log.contains("outcome=aborted"),
        "{log}"
    );
    assert!(
        !log.contains("outcome=aborted"),
        "closed by the stop, not the abort:\n{log}"
    );
}

/// While mail arrives the web side is paced (`priority::WEB_RATE_WHILE_MAIL`), never stopped:
/// readers get every answer, in order, on a kept-alive connection as on new ones.
fn readers_are_answered_while_mail_arrives(binary: Binary) {
    let server = server_with(binary, Settings::default());
    mail(&server, "bob@example.org", "first", "one\r\n");
    std::thread::scope(|scope| {
        let sending = scope.spawn(|| {
            for n in 0..20 {
                mail(
                    &server,
                    "bob@example.org",
                    &format!("during {n}"),
                    "more\r\n",
                );
            }
        });
        let mut kept = HttpClient::connect(server.http).expect("connect");
        let mut answered = 0;
        while !sending.is_finished() && answered < 2_000 {
            assert_eq!(kept.get("/messages/1", &[]).expect("request").status, 200);
            assert_eq!(get(server.http, "/healthz", &[]).status, 200);
            answered += 1;
        }
        sending.join().expect("mail sent");
        assert!(answered > 0);
    });
    let json: serde_json::Value =
        serde_json::from_str(&curl(server.http, "/messages/21", &[])).expect("JSON");
    assert_eq!(json["subject"], "during 19");
}

/// The name and nice value of a thread, from its `/proc/…/stat`; `None` if it has ended.
fn name_and_nice(stat: &std::path::Path) -> Option<(String, i64)> {
    let stat = std::fs::read_to_string(stat).ok()?;
    // `pid (comm) state ppid …`: the name is between the first `(` and the last `)`, and the
    // nice value is the 19th field, the 17th after the name.
    let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
        panic!("unreadable stat: {stat}");
    };
    let nice = stat[close + 1..]
        .split_whitespace()
        .nth(16)
        .and_then(|field| field.parse().ok())
        .unwrap_or_else(|| panic!("no nice value in {stat}"));
    Some((stat[open + 1..close].to_string(), nice))
}

/// The name and nice value of each thread of process `pid`, and the main thread's nice value.
fn thread_priorities(pid: u32) -> (Vec<(String, i64)>, i64) {
    let task = std::path::PathBuf::from(format!("/proc/{pid}/task"));
    let threads = std::fs::read_dir(&task)
        .expect("/proc/PID/task")
        // A thread may end between the listing and the read.
        .filter_map(|entry| name_and_nice(&entry.expect("task").path().join("stat")))
        .collect();
    let (_, main) = name_and_nice(&task.join(pid.to_string()).join("stat")).expect("main");
    (threads, main)
}

/// Web requests yield the CPU to mail: the threads serving them (smol's web executor, std's
/// thread per connection) run at `WEB_NICE`, the mail side's threads at the daemon's own.
fn web_threads_yield_the_cpu_to_mail(binary: Binary) {
    let server = server_with(binary, Settings::default());
    // std's web threads exist while connections do: hold one open.
    let mut open = HttpClient::connect(server.http).expect("connect");
    assert_eq!(open.get("/healthz", &[]).expect("request").status, 200);
    mail(&server, "bob@example.org", "priority", "yes\r\n");
    let (threads, main) = thread_priorities(server.pid());
    let web_name = match binary {
        Binary::Smol => "web",
        Binary::Std => "http",
    };
    let web: Vec<i64> = threads
        .iter()
        .filter(|(name, _)| name == web_name)
        .map(|(_, nice)| *nice)
        .collect();
    assert!(!web.is_empty(), "no {web_name:?} thread in {threads:?}");
    // The daemon starts at this test's own nice value (0 in CI).
    let (_, own) = thread_priorities(std::process::id());
    let expected = (own + i64::from(atacama_server::priority::WEB_NICE)).min(19);
    assert!(web.iter().all(|&nice| nice == expected), "{threads:?}");
    // The main thread: the mail executor on smol, the accept loops' parent on std.
    assert_eq!(main, own, "{threads:?}");
}

atacama_tests::end_to_end!(
    a_mailed_post_reads_back_as_json_html_and_feeds,
    etag_turns_into_304_and_keep_alive_serves_requests_in_turn,
    a_private_channel_needs_a_valid_token,
    replies_chain_and_the_stream_pages_ten_at_a_time,
    other_methods_health_and_metrics,
    the_stop_closes_idle_web_connections_at_once,
    the_limits_and_framing_errors_hold_end_to_end,
    over_the_web_cap_a_client_gets_503_with_retry_after,
    web_threads_yield_the_cpu_to_mail,
    readers_are_answered_while_mail_arrives,
);

/// The README's quick start: on the defaults, the post is at http://127.0.0.1:2580/. The
/// only test on that port: both binaries in turn.
#[test]
fn readme_quick_start_shows_the_post_at_the_default_address() {
    for binary in Binary::ALL {
        let server = server_with(binary, Settings::default().default_http_listen());
        assert_eq!(server.http.to_string(), "127.0.0.1:2580");
        mail(
            &server,
            "bob@example.org",
            "hello",
            "<red>This line is red.\r\n",
        );
        let page = curl(server.http, "/", &["-H", "Accept: text/html"]);
        assert!(
            page.contains("hello") && page.contains("color-red"),
            "{page}"
        );
        let json: serde_json::Value =
            serde_json::from_str(&curl(server.http, "/messages/1", &[])).expect("JSON");
        assert_eq!(json["subject"], "hello");
        let feed = get(server.http, "/feed.xml", &[]);
        let channel = rss::Channel::read_from(&feed.body[..]).expect("RSS parses");
        assert_eq!(
            channel.items().first().and_then(|item| item.link()),
            Some("http://127.0.0.1:2580/messages/1")
        );
    }
}

fn over_the_web_cap_a_client_gets_503_with_retry_after(binary: Binary) {
    let server = server_with(binary, Settings::default().http("max_connections", 1));
    let mut first = HttpClient::connect(server.http).expect("connect");
    assert_eq!(first.get("/healthz", &[]).expect("request").status, 200);
    // The first one, idle and kept alive, holds the only place.
    let refused = get(server.http, "/healthz", &[]);
    assert_eq!(refused.status, 503);
    assert_eq!(refused.header("retry-after"), Some("5"));
    assert_eq!(refused.header("connection"), Some("close"));
    assert!(
        server
            .log()
            .contains("http connection refused peer=127.0.0.1:")
    );
    // SMTP has a gate of its own: mail still gets through.
    mail(&server, "bob@example.org", "still accepted", "yes\r\n");
    // The place comes back when the first connection ends.
    drop(first);
    assert!(atacama_tests::eventually(Duration::from_secs(5), || {
        get(server.http, "/healthz", &[]).status == 200
    }));
}
