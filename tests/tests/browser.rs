//! The pages in a real browser, on both binaries: headless chromium (Debian's `chromium`,
//! driven over the DevTools pipe by `atacama_tests::browser`) opens the stream page and a
//! message page of posts that use every colour tag, and the test checks that each colour
//! class is drawn in the stylesheet's colour (read from the served `/style.css`), that the
//! "Older posts" link leads to the older posts, and that the browser reported no CSP
//! violation, console error or warning. A screenshot of each page is kept in
//! `target/test-artifacts/browser/` (the test prints the paths; `--nocapture` shows them).

use std::collections::BTreeMap;

use atacama_tests::browser::{Browser, artifacts_dir};
use atacama_tests::http::get;
use atacama_tests::{Binary, Settings, mailer, server_with};
use lettre::{Message, Transport};
use serde_json::Value;

/// Every colour tag of the markup (spec §4.1), each on a line of its own, and a coloured
/// quote block, which draws its colour on a `div`.
const COLOURFUL: &str = "<xantham>sarcastic\r\n<red>forceful\r\n<orange>counterpoint\r\n\
    <yellow>quoted\r\n<quote>also quoted\r\n<green>technical\r\n<acronym>TLA\r\n\
    <context>context\r\n<resource>a resource\r\n<teal>generated\r\n<blue>from beyond\r\n\
    <violet>serious\r\n<music>la la\r\n<mogue>did things\r\n<gray>long ago\r\n\
    <hazel>once upon a time\r\n\r\n<teal> <<< a generated quote\r\nin two lines >>>\r\n";

/// Posts mailed: more than a stream page holds, so the stream has an older page.
const POSTS: u64 = 12;

/// The colour of each `.color-…` rule of the served stylesheet, as the browser computes
/// it: `color-red` → `rgb(192, 23, 43)`.
fn stylesheet_colours(css: &str) -> BTreeMap<String, String> {
    css.lines()
        .filter_map(|line| {
            let rule = line.trim().strip_prefix('.')?;
            let (class, rest) = rule.split_once(" { color: #")?;
            let hex = rest.strip_suffix("; }")?;
            if !class.starts_with("color-") || hex.len() != 6 {
                return None;
            }
            let channel = |at: usize| u8::from_str_radix(hex.get(at..at + 2)?, 16).ok();
            let rgb = format!("rgb({}, {}, {})", channel(0)?, channel(2)?, channel(4)?);
            Some((class.to_owned(), rgb))
        })
        .collect()
}

/// The `color-…` class and computed colour of every element of the page that has one.
const COMPUTED_COLOURS: &str = "Array.from(document.querySelectorAll('[class*=\"color-\"]'))\
    .map((e) => [Array.from(e.classList).find((c) => c.startsWith('color-')), \
    getComputedStyle(e).color])";

/// Checks every coloured element of the open page against the stylesheet, and that the page
/// uses every class the renderer can write; `what` names the page in messages.
fn assert_colours(browser: &mut Browser, expected: &BTreeMap<String, String>, what: &str) {
    let found = browser.evaluate(COMPUTED_COLOURS);
    let found = found.as_array().expect("a list of [class, colour]");
    let mut seen: Vec<&str> = Vec::new();
    for pair in found {
        let (class, colour) = (pair[0].as_str().unwrap_or(""), pair[1].as_str());
        let wanted = expected
            .get(class)
            .unwrap_or_else(|| panic!("{what}: /style.css has no colour for {class}"));
        assert_eq!(
            colour,
            Some(wanted.as_str()),
            "{what}: the colour of .{class}"
        );
        seen.push(class);
    }
    for class in atacama_core::markup::colour_classes() {
        assert!(seen.contains(&class), "{what}: no element has .{class}");
    }
}

/// Asserts the browser reported nothing wrong, by DevTools events and by the page's
/// `securitypolicyviolation` listener. Every page names `/favicon.svg`, so the browser asks
/// for no `/favicon.ico` (a `404` here) and nothing needs letting through.
fn assert_clean(browser: &mut Browser, what: &str) {
    assert_eq!(
        browser.csp_violations(),
        Vec::<String>::new(),
        "{what}: CSP violations"
    );
    assert_eq!(
        browser.reports(),
        Vec::<String>::new(),
        "{what}: browser reports"
    );
}

/// The ids of the posts the open stream page lists, from their links.
fn listed_ids(browser: &mut Browser) -> Vec<u64> {
    let ids = browser.evaluate(
        "Array.from(document.querySelectorAll('article.post h2 a'))\
         .map((a) => Number(new URL(a.href).pathname.split('/').pop()))",
    );
    ids.as_array()
        .expect("a list of ids")
        .iter()
        .filter_map(Value::as_u64)
        .collect()
}

fn the_pages_render_in_a_real_browser_with_the_stylesheets_colours(binary: Binary) {
    let mut browser = Browser::launch();
    let server = server_with(binary, Settings::default());
    let mailer = mailer(&server);
    for n in 1..=POSTS {
        let message = Message::builder()
            .from("Alice <alice@example.org>".parse().expect("address"))
            .to("bob@example.org".parse().expect("address"))
            .subject(format!("colours {n}"))
            .body(format!("post {n}\r\n{COLOURFUL}"))
            .expect("message");
        mailer.send(&message).expect("sent over STARTTLS");
    }
    let web = server.http;
    let css = get(web, "/style.css", &[]);
    assert_eq!(css.status, 200);
    let expected = stylesheet_colours(&css.text());
    assert!(!expected.is_empty(), "no colour rules in /style.css");
    let shots = artifacts_dir().join("browser");
    let shot = |name: &str| shots.join(format!("{}-{name}.png", binary.name()));
    // Printed first: cargo shows a failed test's output, and each page is shot before it is
    // judged.
    println!("screenshots: {}/{}-*.png", shots.display(), binary.name());

    // The stream: the newest ten, every colour, and a screenshot.
    let home = format!("http://{web}/");
    browser.open(&home);
    browser.screenshot(&shot("stream"));
    assert_colours(&mut browser, &expected, "the stream page");
    assert_eq!(
        listed_ids(&mut browser),
        (3..=POSTS).rev().collect::<Vec<_>>()
    );
    assert_clean(&mut browser, "the stream page");

    // "Older posts", clicked with the mouse, leads to the two oldest.
    let older = browser.evaluate("document.querySelector('a.older').href");
    let older = older.as_str().expect("an \"Older posts\" link").to_owned();
    assert_eq!(older, format!("http://{web}/stream/older/3"));
    browser.click("a.older");
    browser.wait_for_page(&older);
    browser.screenshot(&shot("stream-older"));
    assert_eq!(listed_ids(&mut browser), [2, 1]);
    assert_eq!(
        browser.evaluate("document.querySelector('a.older') === null"),
        true,
        "the last page links to no older one"
    );
    assert_colours(&mut browser, &expected, "the older page");
    assert_clean(&mut browser, "the older page");

    // A message page.
    browser.open(&format!("http://{web}/messages/1"));
    browser.screenshot(&shot("message"));
    assert_eq!(
        browser.evaluate("document.querySelector('h1').textContent"),
        "colours 1"
    );
    assert_colours(&mut browser, &expected, "the message page");
    assert_clean(&mut browser, "the message page");

    // The watchers are not blind: an inline script, which the CSP forbids, is reported.
    browser.evaluate(
        "const s = document.createElement('script'); s.textContent = '1'; \
         document.body.append(s); new Promise((done) => setTimeout(done, 100))",
    );
    let violations = browser.csp_violations();
    assert!(
        violations.iter().any(|v| v.contains("script-src")),
        "the CSP watcher missed an inline script: {violations:?}"
    );
    let reports = browser.reports();
    assert!(
        reports
            .iter()
            .any(|r| r.contains("Content Security Policy")),
        "DevTools did not report the inline script: {reports:?}"
    );
}

atacama_tests::end_to_end!(the_pages_render_in_a_real_browser_with_the_stylesheets_colours);
