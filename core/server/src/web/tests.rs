//! The read side against a real store in a temporary directory: visibility, tokens, paging,
//! feeds, health and metrics.

use std::sync::Arc;
use std::time::UNIX_EPOCH;

use serde_json::{Value, json};

use super::*;
use atacama_core::channels::Channels;
use atacama_core::smtp::{AuthOutcome, AuthRequest, Delivery, Mechanism};
use atacama_core::web::{FEED_SIZE, content_type};
use atacama_store::Store;
use atacama_store::testing::new_message;

const HTML: Option<&[u8]> = Some(b"text/html,application/xhtml+xml,*/*;q=0.8");
const JSON: Option<&[u8]> = Some(b"application/json");

/// Services over a fresh store: `general` and `travel` public, `family` private.
fn services() -> (tempfile::TempDir, Services) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_in(dir.path(), 4).unwrap();
    let names = |n: &[&str]| n.iter().map(|c| c.to_string()).collect::<Vec<_>>();
    let channels =
        Channels::new(None, &names(&["general", "travel"]), &names(&["family"])).unwrap();
    (
        dir,
        Services::new(Arc::new(store), "mail.example").with_channels(channels),
    )
}

fn web() -> Web {
    Web::new(Site::new("Atacama", "http://127.0.0.1:2580"))
}

/// Stores a message in `channel` with Message-ID `<n@x>`, replying to `<parent@x>`; its id.
fn post(s: &Services, channel: &str, n: u32, parent: Option<u32>) -> u64 {
    let message_id = format!("{n}@x");
    let in_reply_to = parent.map(|p| format!("{p}@x"));
    let mut message = new_message("alice", Some(&message_id), in_reply_to.as_deref());
    message.channel = channel.into();
    message.parsed.headers.subject = Some(format!("post {n}"));
    s.store().insert_message(&message).unwrap().0
}

fn get(
    web: &Web,
    s: &Services,
    path: &str,
    accept: Option<&[u8]>,
    authorization: Option<&str>,
) -> WebResponse {
    let request = WebRequest {
        path,
        accept,
        authorization: authorization.map(str::as_bytes),
    };
    web.respond(s, &request, || s.counters().snapshot(0))
}

fn json_of(response: &WebResponse) -> Value {
    assert_eq!(response.page.content_type, content_type::JSON);
    serde_json::from_slice(&response.page.body).unwrap()
}

fn text_of(response: &WebResponse) -> String {
    String::from_utf8(response.page.body.clone()).unwrap()
}

fn ids(messages: &Value) -> Vec<u64> {
    messages
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_u64().unwrap())
        .collect()
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[test]
fn a_message_is_json_by_default_and_html_for_a_browser() {
    let (_dir, s) = services();
    let web = web();
    let id = post(&s, "general", 1, None);
    for accept in [None, JSON, Some(&b"*/*"[..])] {
        let response = get(&web, &s, &format!("/messages/{id}"), accept, None);
        assert_eq!(response.page.status, 200);
        assert!(response.page.vary_accept && !response.www_authenticate);
        assert!(response.headers().is_empty());
        assert_eq!(
            json_of(&response),
            json!({
                "id": id,
                "subject": "post 1",
                "content": "Hi *there*",
                "processed_content": "<p>Hi <b>there</b></p>",
                "created_at": "2026-03-03T14:05:09Z",
                "parent_id": null,
                "channel": "general",
            })
        );
    }
    let page = get(&web, &s, "/messages/1?utm=x", HTML, None);
    assert_eq!(
        (page.page.status, page.page.content_type, page.page.html),
        (200, content_type::HTML, true)
    );
    let body = text_of(&page);
    assert!(
        body.contains("post 1") && body.contains("<b>there</b>"),
        "{body}"
    );
    assert_ne!(
        page.page.etag,
        get(&web, &s, "/messages/1", None, None).page.etag
    );
}

#[test]
fn a_private_message_chain_or_feed_without_a_token_is_the_missing_ones_404() {
    let (_dir, s) = services();
    let web = web();
    post(&s, "general", 1, None);
    let private = post(&s, "family", 2, None);
    for accept in [None, HTML] {
        let pairs = [
            (format!("/messages/{private}"), "/messages/99".to_string()),
            (
                format!("/messages/{private}/chain"),
                "/messages/99/chain".to_string(),
            ),
            (
                "/channel/family/feed.xml".to_string(),
                "/channel/nowhere/feed.xml".to_string(),
            ),
            (
                "/channel/family/feed.atom".to_string(),
                "/channel/nowhere/feed.atom".to_string(),
            ),
            (
                "/stream/channel/family".to_string(),
                "/stream/channel/nowhere".to_string(),
            ),
            (
                "/stream/channel/family/older/9".to_string(),
                "/no/such/route".to_string(),
            ),
        ];
        for (hidden, missing) in pairs {
            let hidden = get(&web, &s, &hidden, accept, None);
            assert_eq!(hidden.page.status, 404);
            assert_eq!(hidden, get(&web, &s, &missing, accept, None), "{missing}");
        }
    }
    let error = json_of(&get(&web, &s, "/messages/99", None, None));
    assert_eq!(error["error"], "not_found");
    // Nor does the stream or the feed of all channels show it.
    let stream = json_of(&get(&web, &s, "/stream", None, None));
    assert_eq!(ids(&stream["messages"]), [1]);
    let feed = text_of(&get(&web, &s, "/feed.xml", None, None));
    assert!(
        feed.contains("/messages/1<") && !feed.contains("/messages/2<"),
        "{feed}"
    );
}

#[test]
fn a_token_shows_private_channels_too() {
    let (_dir, s) = services();
    let web = web();
    post(&s, "general", 1, None);
    let private = post(&s, "family", 2, None);
    let token = s.store().add_token("reader", UNIX_EPOCH).unwrap();
    for authorization in [
        bearer(&token),
        format!("bearer   {token}"),
        format!(" BEARER {token} "),
    ] {
        let auth = Some(authorization.as_str());
        let response = get(&web, &s, &format!("/messages/{private}"), None, auth);
        assert_eq!(response.page.status, 200, "{authorization:?}");
        assert_eq!(json_of(&response)["channel"], "family");
    }
    let auth = bearer(&token);
    let auth = Some(auth.as_str());
    let stream = json_of(&get(&web, &s, "/", None, auth));
    assert_eq!(ids(&stream["messages"]), [2, 1]);
    let channel = json_of(&get(&web, &s, "/stream/channel/family", None, auth));
    assert_eq!(ids(&channel["messages"]), [2]);
    let feed = get(&web, &s, "/channel/family/feed.atom", None, auth);
    assert_eq!(feed.page.status, 200);
    assert!(text_of(&feed).contains("/messages/2<"));
}

#[test]
fn a_wrong_revoked_or_malformed_credential_is_401_on_every_route() {
    let (_dir, s) = services();
    let web = web();
    post(&s, "general", 1, None);
    let revoked = s.store().add_token("old", UNIX_EPOCH).unwrap();
    s.store().revoke_token("old").unwrap();
    let kept = s.store().add_token("kept", UNIX_EPOCH).unwrap();
    let wrong = bearer(&format!("{kept}x"));
    let revoked = bearer(&revoked);
    let credentials = [
        wrong.as_str(),
        revoked.as_str(),
        "Bearer",
        "Bearer ",
        "Bearer a b",
        "Bearer a=b",
        "Bearer\tabc",
        "Bearerabc",
        "Basic YWxpY2U6cHc=",
        "",
    ];
    for credential in credentials {
        for path in [
            "/messages/1",
            "/",
            "/feed.xml",
            "/healthz",
            "/style.css",
            "/nope",
        ] {
            for accept in [None, HTML] {
                let response = get(&web, &s, path, accept, Some(credential));
                assert_eq!(response.page.status, 401, "{credential:?} {path}");
                assert!(response.www_authenticate);
                assert_eq!(
                    response.headers(),
                    [("WWW-Authenticate", "Bearer")],
                    "{credential:?}"
                );
            }
        }
    }
    let error = json_of(&get(&web, &s, "/messages/1", None, Some(&wrong)));
    assert_eq!(error["error"], "unauthorized");
    // Not a byte of UTF-8: refused, not a panic.
    let request = WebRequest {
        path: "/",
        accept: None,
        authorization: Some(b"Bearer \xff\xfe"),
    };
    assert_eq!(
        web.respond(&s, &request, Counters::default).page.status,
        401
    );
}

#[test]
fn a_visible_message_whose_parent_is_private_has_no_parent_without_a_token() {
    let (_dir, s) = services();
    let web = web();
    let hidden = post(&s, "family", 1, None);
    let reply = post(&s, "general", 2, Some(1));
    let public_parent = post(&s, "general", 3, None);
    let public_reply = post(&s, "travel", 4, Some(3));
    let token = bearer(&s.store().add_token("reader", UNIX_EPOCH).unwrap());
    let message = |id: u64, auth: Option<&str>| {
        json_of(&get(&web, &s, &format!("/messages/{id}"), None, auth))
    };
    assert_eq!(message(reply, None)["parent_id"], Value::Null);
    assert_eq!(message(reply, Some(&token))["parent_id"], json!(hidden));
    // Both pages are kept now: each reader still gets their own.
    assert_eq!(message(reply, None)["parent_id"], Value::Null);
    assert_eq!(message(reply, Some(&token))["parent_id"], json!(hidden));
    assert_eq!(
        message(public_reply, None)["parent_id"],
        json!(public_parent)
    );
    // A kept page is not a way around the token: the private message is still the 404.
    assert_eq!(message(hidden, Some(&token))["id"], json!(hidden));
    let anonymous = get(&web, &s, &format!("/messages/{hidden}"), None, None);
    assert_eq!(anonymous.page.status, 404);
    // The same in the stream.
    let stream = json_of(&get(&web, &s, "/stream", None, None));
    let parents: Vec<&Value> = stream["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| &m["parent_id"])
        .collect();
    assert_eq!(parents, [&json!(public_parent), &Value::Null, &Value::Null]);
}

#[test]
fn a_chain_shows_only_what_the_reader_may_see() {
    let (_dir, s) = services();
    let web = web();
    let root = post(&s, "general", 1, None);
    let hidden = post(&s, "family", 2, Some(1));
    let target = post(&s, "general", 3, Some(2));
    let reply = post(&s, "travel", 4, Some(3));
    let hidden_reply = post(&s, "family", 5, Some(3));
    let token = bearer(&s.store().add_token("reader", UNIX_EPOCH).unwrap());
    let path = format!("/messages/{target}/chain");

    let chain = json_of(&get(&web, &s, &path, None, None));
    assert_eq!(ids(&chain["chain"]), [root, target, reply]);
    let targets: Vec<bool> = chain["chain"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["is_target"].as_bool().unwrap())
        .collect();
    assert_eq!(targets, [false, true, false]);
    assert_eq!(chain["chain"][1]["parent_id"], Value::Null, "hidden parent");
    assert_eq!(chain["chain"][2]["parent_id"], json!(target));

    let full = json_of(&get(&web, &s, &path, None, Some(&token)));
    assert_eq!(
        ids(&full["chain"]),
        [root, hidden, target, reply, hidden_reply]
    );
    assert_eq!(full["chain"][2]["parent_id"], json!(hidden));

    let page = get(&web, &s, &path, HTML, None);
    assert_eq!((page.page.status, page.page.html), (200, true));
    assert!(!text_of(&page).contains("post 2"));
}

#[test]
fn streams_page_by_ten_with_an_older_link_until_the_end() {
    let (_dir, s) = services();
    let web = web();
    for n in 1..=11 {
        post(&s, "general", n, None);
    }
    post(&s, "travel", 12, None);
    let stream = |path: &str| json_of(&get(&web, &s, path, JSON, None));

    let first = stream("/");
    assert_eq!(ids(&first["messages"]), (3..=12).rev().collect::<Vec<_>>());
    assert_eq!(first["older"], "/stream/older/3");
    assert_eq!(first, stream("/stream"));
    let last = stream("/stream/older/3");
    assert_eq!(ids(&last["messages"]), [2, 1]);
    assert_eq!(last["older"], Value::Null);

    let general = stream("/stream/channel/general");
    assert_eq!(
        ids(&general["messages"]),
        (2..=11).rev().collect::<Vec<_>>()
    );
    assert_eq!(general["older"], "/stream/channel/general/older/2");
    let end = stream("/stream/channel/general/older/2");
    assert_eq!(ids(&end["messages"]), [1]);
    assert_eq!(end["older"], Value::Null);

    let travel = stream("/stream/channel/travel");
    assert_eq!(ids(&travel["messages"]), [12]);
    assert_eq!(travel["older"], Value::Null);
    let empty = stream("/stream/older/1");
    assert_eq!(ids(&empty["messages"]), Vec::<u64>::new());

    let html = get(&web, &s, "/", HTML, None);
    assert_eq!((html.page.status, html.page.html), (200, true));
    assert!(text_of(&html).contains("href=\"/stream/older/3\""));
}

#[test]
fn feeds_hold_the_twenty_newest_of_all_or_one_channel() {
    let (_dir, s) = services();
    let web = web();
    for n in 1..=22 {
        post(&s, "general", n, None);
    }
    post(&s, "travel", 23, None);
    post(&s, "family", 24, None);
    let feed = |path: &str| {
        let response = get(&web, &s, path, HTML, None);
        assert_eq!(response.page.status, 200, "{path}");
        assert!(!response.page.vary_accept && response.page.etag.is_some());
        response
    };

    for path in ["/feed.xml", "/rss"] {
        let rss = feed(path);
        assert_eq!(rss.page.content_type, content_type::RSS);
        let body = text_of(&rss);
        assert_eq!(body.matches("<item>").count(), FEED_SIZE);
        assert!(body.contains("/messages/23<") && !body.contains("/messages/24<"));
        assert!(!body.contains("/messages/3<"), "21st newest left out");
    }
    let atom = feed("/feed.atom");
    assert_eq!(atom.page.content_type, content_type::ATOM);
    assert_eq!(text_of(&atom).matches("<entry>").count(), FEED_SIZE);

    let travel = text_of(&feed("/channel/travel/feed.xml"));
    assert_eq!(travel.matches("<item>").count(), 1);
    assert!(travel.contains("/messages/23<"));
    let general = text_of(&feed("/channel/general/feed.atom"));
    assert_eq!(general.matches("<entry>").count(), FEED_SIZE);
    assert!(general.contains("/messages/22<") && !general.contains("/messages/23<"));

    for path in ["/channel/family/feed.xml", "/channel/family/feed.atom"] {
        assert_eq!(get(&web, &s, path, None, None).page.status, 404);
    }
}

#[test]
fn health_style_and_unknown_routes() {
    let (_dir, s) = services();
    let web = web();
    let health = get(&web, &s, "/healthz", None, None);
    assert_eq!(
        (health.page.status, &health.page.body[..]),
        (200, &b"ok"[..])
    );
    let style = get(&web, &s, "/style.css", None, None);
    assert_eq!(
        (style.page.status, style.page.content_type),
        (200, content_type::CSS)
    );
    let json = get(&web, &s, "/stream/", None, None);
    assert_eq!(json_of(&json)["error"], "not_found");
    let html = get(&web, &s, "/stream/", HTML, None);
    assert_eq!((html.page.status, html.page.html), (404, true));
    let allowed = web.error(None, ErrorKind::MethodNotAllowed);
    assert_eq!(allowed.status, 405);
}

#[test]
fn metrics_report_the_live_counters() {
    let (_dir, s) = services();
    let web = web();
    s.store().add_user("alice", "pw", UNIX_EPOCH).unwrap();
    let delivery = Delivery {
        user: "alice".into(),
        helo: "client.example".into(),
        peer: "192.0.2.7:40000".parse().unwrap(),
        tls: None,
        mail_from: "alice".into(),
        rcpt_to: vec!["bob@example.test".into()],
        data: b"Subject: hi\r\n\r\nbody\r\n".to_vec(),
    };
    s.deliver(delivery.clone(), UNIX_EPOCH).unwrap();
    let batch = s.deliver_batch(vec![(delivery.clone(), UNIX_EPOCH), (delivery, UNIX_EPOCH)]);
    assert!(batch.iter().all(Result::is_ok));
    let wrong = AuthRequest {
        mechanism: Mechanism::Plain,
        username: "alice".into(),
        password: "nope".into(),
    };
    assert_eq!(s.authenticate(&wrong), AuthOutcome::Rejected);
    let c = s.counters();
    c.http_connection_opened();
    for status in [200, 200, 304, 404, 503] {
        c.record(status);
    }
    let request = WebRequest {
        path: "/metrics",
        accept: HTML,
        authorization: None,
    };
    let metrics = web.respond(&s, &request, || c.snapshot(4));
    assert_eq!(
        (metrics.page.status, metrics.page.content_type),
        (200, content_type::PROMETHEUS)
    );
    let body = text_of(&metrics);
    for line in [
        "atacama_connections_open{protocol=\"smtp\"} 4",
        "atacama_connections_open{protocol=\"http\"} 1",
        "atacama_messages_accepted_total 3",
        "atacama_deliveries_failed_total 0",
        "atacama_auth_failures_total 1",
        "atacama_http_requests_total{class=\"2xx\"} 2",
        "atacama_http_requests_total{class=\"3xx\"} 1",
        "atacama_http_requests_total{class=\"4xx\"} 1",
        "atacama_http_requests_total{class=\"5xx\"} 1",
    ] {
        assert!(body.lines().any(|l| l == line), "{line} in\n{body}");
    }
}

/// The server state answers with its own store, channels and site, and counts the SMTP
/// connections its gate holds.
#[test]
fn the_server_state_responds_with_its_config() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        data_dir: dir.path().join("data"),
        ..Config::default()
    };
    config.auth.bcrypt_cost = 4;
    config.http.site_name = "Field notes".into();
    config.http.public_url = "https://example.org/blog".into();
    let state = ServerState::open(&config).unwrap();
    for n in 1..=11 {
        post(&state.services, "general", n, None);
    }
    let get = |path: &str, accept: Option<&[u8]>| {
        state.respond(&WebRequest {
            path,
            accept,
            authorization: None,
        })
    };
    let stream = json_of(&get("/", None));
    assert_eq!(stream["older"], "/blog/stream/older/2");
    assert!(text_of(&get("/messages/1", HTML)).contains("Field notes"));
    let _admitted = state
        .admit("192.0.2.7:40000".parse().unwrap(), false)
        .unwrap();
    let metrics = text_of(&get("/metrics", None));
    assert!(
        metrics
            .lines()
            .any(|l| l == "atacama_connections_open{protocol=\"smtp\"} 1"),
        "{metrics}"
    );
}

/// A store that cannot be read answers `503` in the negotiated form, and `/healthz` says so
/// until it is reopened; the failed deliveries that broke it are counted.
#[cfg(target_os = "linux")]
#[test]
fn a_store_that_cannot_be_read_is_503_until_it_recovers() {
    let fs = atacama_store::testing::Tmpfs::mount(40);
    let store = Store::open_in(fs.path(), 4).unwrap();
    let s = Services::new(Arc::new(store), "mail.example");
    let web = web();
    let id = post(&s, "general", 1, None);
    // Random letters lz4 cannot shrink, 200 KB a message, until the disk is full.
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let alphabet = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .";
    let mut failed = None;
    for _ in 0..1000 {
        let mut data = b"Subject: filler\r\n\r\n".to_vec();
        data.extend((0..200_000).map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            alphabet[(seed % 64) as usize]
        }));
        let delivery = Delivery {
            user: "alice".into(),
            helo: "client.example".into(),
            peer: "192.0.2.7:40000".parse().unwrap(),
            tls: None,
            mail_from: "alice".into(),
            rcpt_to: vec!["bob@example.test".into()],
            data,
        };
        if let Err(error) = s.deliver(delivery, UNIX_EPOCH) {
            failed = Some(error);
            break;
        }
    }
    assert!(failed.is_some(), "1000 messages of 200 KB fitted in 40 MiB");
    let counters = s.counters().snapshot(0);
    assert_eq!(counters.deliveries_failed, 1);
    assert!(counters.messages_accepted > 10);

    let path = format!("/messages/{id}");
    let health = get(&web, &s, "/healthz", None, None);
    assert_eq!(health.page.status, 503);
    let json = get(&web, &s, &path, None, None);
    assert_eq!(json.page.status, 503);
    assert_eq!(json_of(&json)["error"], "unavailable");
    let html = get(&web, &s, &path, HTML, None);
    assert_eq!((html.page.status, html.page.html), (503, true));
    // A token cannot be checked either: 503, not 401.
    let token = get(&web, &s, "/", None, Some("Bearer abc"));
    assert_eq!((token.page.status, token.www_authenticate), (503, false));

    fs.resize(160);
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    while s.store().recover() != Health::Working {
        assert!(Instant::now() < deadline, "the store did not recover");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(get(&web, &s, "/healthz", None, None).page.status, 200);
    assert_eq!(get(&web, &s, &path, None, None).page.status, 200);
}
